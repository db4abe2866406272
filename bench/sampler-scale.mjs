// What open windows cost the process (issue 19): the process's CPU per second while N windows are open and idle,
// for N = 1, 10, 100, 500, as N ResourceTrackers and as N concurrent measure()s, opened at scattered moments (as a
// server's requests are) with the default 10 ms interval. No GPU.
//   node bench/sampler-scale.mjs                        the table (exit 1 if 500 windows cost > 1.5× one)
//   BENCH_COMPARE_ROOT=<package root> node bench/...    the same cases for another build too, interleaved
//   node bench/sampler-scale.mjs child <root> <kind> <n> <ms>   one case: prints JSON
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const here = join(dirname(self), '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function child(root, kind, n, ms) {
  const require = createRequire(join(root, 'package.json'));
  const tm = require(join(root, 'dist/index.js'));
  const { native } = require(join(root, 'dist/binding.js'));
  const open = [];
  const done = [];
  let release;
  const gate = new Promise((r) => (release = r));
  // Scattered over 40 ms: windows of a server open whenever requests arrive, not on one clock edge.
  for (let i = 0; i < n; i++) {
    if (kind === 'trackers') open.push(new tm.ResourceTracker().start());
    else done.push(tm.measure(() => gate));
    if (i % Math.max(1, Math.floor(n / 20)) === 0) await sleep(2);
  }
  await sleep(200); // settle
  const c0 = cpuMs();
  const s0 = native.samplerState().ownCpuMs;
  const t0 = performance.now();
  await sleep(ms);
  const wall = performance.now() - t0;
  const c1 = cpuMs();
  const s1 = native.samplerState().ownCpuMs;
  release();
  for (const t of open) t.stop();
  await Promise.all(done);
  return { processMsPerSec: ((c1 - c0) / wall) * 1000, samplerMsPerSec: ((s1 - s0) / wall) * 1000 };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export function samplerScaleBench() {
  const rounds = Number(process.env.BENCH_ROUNDS_SCALE || 3);
  const ms = Number(process.env.BENCH_SCALE_MS || 2000);
  const roots = [['this build', here]];
  if (process.env.BENCH_COMPARE_ROOT) roots.push(['compared build', process.env.BENCH_COMPARE_ROOT]);
  const counts = [1, 10, 100, 500];
  const kinds = ['trackers', 'measures'];
  const got = {};
  for (let r = 0; r < rounds; r++) {
    for (const kind of kinds) {
      for (const n of counts) {
        for (const [name, root] of roots) {
          const out = execFileSync(process.execPath, [self, 'child', root, kind, String(n), String(ms)], {
            env: { ...process.env, TASKMETER_DISABLE_GPU: '1' },
          });
          const key = `${name}|${kind}|${n}`;
          got[key] ??= { p: [], s: [] };
          const x = JSON.parse(out.toString().trim().split('\n').pop());
          got[key].p.push(x.processMsPerSec);
          got[key].s.push(x.samplerMsPerSec);
        }
      }
    }
  }
  console.log(
    `\nOpen windows and what they cost (no GPU; default 10 ms interval; windows opened over 40 ms, then ${ms} ms ` +
      `idle measured; process CPU per second, taskmeter's threads' part in brackets; median of ${rounds} rounds, ` +
      'fresh process each, builds interleaved):\n',
  );
  const head = roots.map(([name]) => name).join(' | ');
  console.log(`| windows open | ${head} |\n|---|${roots.map(() => '---:').join('|')}|`);
  let ok = true;
  for (const kind of kinds) {
    for (const n of counts) {
      const cells = roots.map(([name]) => {
        const g = got[`${name}|${kind}|${n}`];
        return `${median(g.p).toFixed(2)} ms/s (${median(g.s).toFixed(2)})`;
      });
      console.log(
        `| ${n} ${kind === 'trackers' ? 'ResourceTrackers' : 'concurrent measure()s'} | ${cells.join(' | ')} |`,
      );
    }
    const one = median(got[`this build|${kind}|1`].p);
    const many = median(got[`this build|${kind}|500`].p);
    const met = many <= 1.5 * one;
    ok &&= met;
    console.log(
      `| **500 / 1, ${kind === 'trackers' ? 'trackers' : 'measure()s'} (this build)** | **${(many / one).toFixed(2)}×** (target ≤ 1.5×: ${met ? 'yes' : 'NO'}) |${roots.length > 1 ? ` ${(median(got[`compared build|${kind}|500`].p) / median(got[`compared build|${kind}|1`].p)).toFixed(2)}× |` : ''}`,
    );
  }
  return ok;
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'child') {
  console.log(JSON.stringify(await child(args[0], args[1], Number(args[2]), Number(args[3]))));
} else if (process.argv[1] === self) {
  process.exitCode = samplerScaleBench() ? 0 : 1;
}
