// Open windows beside the GPU thread (issue 16): one fake H200 (profile=h200, busy, per-process utilization samples
// of this process and one other), n windows at 10 ms left open, counting this process or a pid of their own each
// (bench/gpu-child.mjs windows). The GPU thread's work per reading must not grow with them.
//   node bench/gpu-windows.mjs                                    the table (this build)
//   BENCH_COMPARE_ROOT=<package root> node bench/gpu-windows.mjs   the same cases for another build too, interleaved
//   BENCH_ROUNDS_GPU_WINDOWS=3 …                                  rounds (default 1): each cell min–max over them
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const here = join(dirname(self), '..');

// The fake's H200 scenario bench/run.mjs uses: gpus busy GPUs, then extra lines.
export function h200Scenario(gpus, extra = '') {
  return `profile=h200\ncount=${gpus}\n${Array.from({ length: gpus }, (_, i) => `dev${i}.util=90\ndev${i}.used=${20 * 2 ** 30}\ndev${i}.procs=4242:${16 * 2 ** 30}\n`).join('')}${extra}`;
}

// Prints the table; lib: the fake NVML, scenario: a file of h200Scenario(1, <per-process utilization line>).
export function gpuWindowsBench(lib, scenario) {
  const rounds = Number(process.env.BENCH_ROUNDS_GPU_WINDOWS || 1);
  const roots = [['this build', here]];
  if (process.env.BENCH_COMPARE_ROOT) roots.push(['compared build', process.env.BENCH_COMPARE_ROOT]);
  const cases = [
    [1, 'self'],
    [500, 'self'],
    [500, 'pids'],
  ];
  const got = {};
  for (let r = 0; r < rounds; r++) {
    for (const [open, kind] of cases) {
      for (const [name, root] of roots) {
        const out = execFileSync(process.execPath, [join(here, 'bench/gpu-child.mjs'), 'windows', String(open), kind], {
          env: { ...process.env, TASKMETER_NVML_LIBRARY: lib, FAKE_NVML_SCENARIO: scenario, BENCH_PACKAGE_ROOT: root },
        });
        const key = `${open} ${kind} ${name}`;
        if (!got[key]) got[key] = [];
        got[key].push(JSON.parse(out.toString().trim().split('\n').pop()));
      }
    }
  }
  const range = (xs, k, scale, digits) => {
    const v = xs.map((x) => x[k] / scale);
    const lo = Math.min(...v).toFixed(digits);
    const hi = Math.max(...v).toFixed(digits);
    return lo === hi ? lo : `${lo}–${hi}`;
  };
  console.log(
    `\n| open windows (1 H200) | build | GPU thread CPU | device readings every | per-process utilization every | measureSync(() => 0) median | p99 | max |\n|---|---|---:|---:|---:|---:|---:|---:|`,
  );
  for (const [open, kind] of cases) {
    for (const [name] of roots) {
      const xs = got[`${open} ${kind} ${name}`];
      console.log(
        `| ${open} (${kind === 'self' ? 'this process' : 'a pid each'}) | ${name} | ${range(xs, 'gpuMsPerSec', 1, 2)} ms/s | ${range(xs, 'deviceMs', 1, 1)} ms | ${range(xs, 'putilMs', 1000, 1)} s | ${range(xs, 'measureSyncMedianNs', 1000, 1)} µs | ${range(xs, 'measureSyncP99Ns', 1000, 1)} µs | ${range(xs, 'measureSyncMaxNs', 1000, 0)} µs |`,
      );
    }
  }
}

if (process.argv[1] === self) {
  const { buildFakeNvml } = await import('../test/fixtures/fake-nvml/build.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'taskmeter-bench-gpu-windows-'));
  try {
    const scenario = join(dir, 'h200.txt');
    writeFileSync(scenario, h200Scenario(1, 'dev0.putil=self:50:20,4242:30:10\n'));
    gpuWindowsBench(buildFakeNvml().full, scenario);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
