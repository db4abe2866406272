// GPU figures that hold on a real driver (issue 16), on the fake NVML with the H200 profile: per-call costs that
// burn CPU as the real ones do (the energy counter ~3 ms, per-process utilization ~1.8 ms), counters that move in
// 100 ms steps. A GPU "job" is a command that writes the fake's scenario file itself: its own pid in the process
// list with 1 GiB, and the device's used memory 1 GiB higher, for as long as it holds it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  fakeNvml,
  gpuEnv,
  lastJson,
  MiB,
  recordValidator,
  root,
  run,
  runCli,
  python3Path,
  runScenario,
  type Scenario,
  writeFakeNvmlScenario,
} from './helpers';

const validate = recordValidator();
const work = mkdtempSync(join(tmpdir(), 'taskmeter-h200-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const GiB = 1024 * MiB;
const USED = 2 * GiB; // the device's used memory without the job
const h200 = (extra = '') =>
  ['profile=h200', 'count=1', `dev0.used=${USED}`, 'dev0.util=90', 'dev0.power_mw=300000', extra].join('\n') + '\n';

/** A fake scenario file, its base text beside it (for the job to restore) and the list-read counter file. */
function setup(text: string) {
  const scenario = writeFakeNvmlScenario(work, text);
  const base = `${scenario}.base`;
  writeFileSync(base, text);
  const count = `${scenario}.lists`;
  writeFileSync(count, '0\n');
  const env = gpuEnv({
    TASKMETER_NVML_LIBRARY: fakeNvml('full'),
    FAKE_NVML_SCENARIO: scenario,
    FAKE_NVML_LIST_COUNT: count,
    JOB_BASE: base,
  });
  return { scenario, env };
}

// sh: holds 1 GiB "on the GPU" for `seconds`, and on past them until a process-list reading happened while it held
// it (so a machine too busy to schedule the GPU thread cannot fail the test; on a quiet one this adds nothing).
const job = (seconds: number) =>
  [
    'S="$FAKE_NVML_SCENARIO"',
    `{ cat "$JOB_BASE"; echo "dev0.procs=$$:${GiB}"; echo "dev0.used=${USED + GiB}"; } > "$S.tmp" && mv "$S.tmp" "$S"`,
    'n0=$(cat "$FAKE_NVML_LIST_COUNT")',
    `sleep ${seconds}`,
    'while [ "$(cat "$FAKE_NVML_LIST_COUNT")" -le "$n0" ]; do sleep 0.01; done',
    'cp "$JOB_BASE" "$S.tmp" && mv "$S.tmp" "$S"',
  ].join('\n');

async function scenarioCase(code: Scenario, env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<any> {
  const r = await runScenario(code, { env, timeoutMs });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return { ...lastJson(r.stdout), elapsedMs: r.elapsedMs };
}

const measureJob: Scenario = async ({ tm }) => {
  const r = await tm.measureCommand('sh', ['-c', process.env.JOB!], { stdio: 'ignore' });
  return { usage: r.usage, record: tm.toRecord(r.usage) };
};

describe('a command that holds GPU memory briefly (H200 profile, default settings)', () => {
  for (const seconds of [0.3, 0.1]) {
    it(`holding 1 GiB for ${seconds * 1000} ms: it is the process peak and in the device peak`, async () => {
      const { env } = setup(h200());
      const { usage, record } = await scenarioCase(measureJob, { ...env, JOB: job(seconds) });
      const g = usage.gpus[0];
      expect(g.processMemoryPeakBytes).toBe(GiB);
      expect(g.processMemoryReasonCode).toBeNull();
      expect(g.processSamples).toBeGreaterThan(0);
      expect(g.memoryUsedPeakBytes).toBe(USED + GiB);
      expect(usage.gpuMemoryPeakBytes).toBe(GiB);
      expect(usage.gpuMemoryPeakSource).toBe('process');
      expect(record.gpu_memory_peak_bytes).toBe(GiB);
      expect(validate(record), JSON.stringify(validate.errors)).toBe(true);
    });
  }

  it('the CLI --json record of such a job has it', async () => {
    const { env } = setup(h200());
    const r = await runCli(['--json', '--', 'sh', '-c', job(0.1)], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(''); // the CLI never writes to stdout: the record goes to stderr
    const rec = JSON.parse(r.stderr);
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
    expect(rec.gpu_memory_peak_bytes).toBe(GiB);
    expect(rec.gpu_memory_peak_source).toBe('process');
    expect(rec.gpus[0]).toMatchObject({
      process_memory_peak_bytes: GiB,
      memory_used_peak_bytes: USED + GiB,
      process_memory_reason_code: null,
    });
    expect(rec.gpus[0].process_samples).toBeGreaterThan(0);
  });

  it('a command too short for any reading has null with GPU_NOT_SAMPLED, or 0 with processSamples > 0 — never a bare 0', async () => {
    const { env } = setup(h200());
    const many: Scenario = async ({ tm }) => {
      const usages = [];
      for (let i = 0; i < 6; i++) usages.push((await tm.measureCommand('true', [], { stdio: 'ignore' })).usage);
      return { gpus: usages.map((u: any) => u.gpus[0]), records: usages.map((u: any) => tm.toRecord(u)) };
    };
    const { gpus, records } = await scenarioCase(many, env);
    for (const [i, g] of gpus.entries()) {
      if (g.processMemoryPeakBytes === null) {
        expect(g.processMemoryReasonCode).toBe('GPU_NOT_SAMPLED');
        expect(g.processMemoryReason).toMatch(/^not sampled/);
        expect(records[i].gpus[0].process_memory_reason_code).toBe('GPU_NOT_SAMPLED');
      } else {
        expect(g.processMemoryPeakBytes).toBe(0);
        expect(g.processSamples).toBeGreaterThan(0);
        expect(records[i].gpus[0].process_samples).toBeGreaterThan(0);
      }
      expect(validate(records[i]), JSON.stringify(validate.errors)).toBe(true);
    }
  });

  it('the CLI says "not sampled" for a command no reading saw', async () => {
    // every device reading takes 300 ms (a sleep): `true` ends before one can start inside its window
    const { env } = setup(h200('delay.nvmlDeviceGetMemoryInfo_v2=300'));
    const r = await runCli(['--', 'true'], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/process peak n\/a \(not sampled/);
    expect(r.stderr).toMatch(/device peak n\/a \(not sampled\)/);
  });

  it("back to back: the second command never shows the first one's memory", async () => {
    const { env } = setup(h200());
    const pair: Scenario = async ({ tm }) => {
      const first = await tm.measureCommand('sh', ['-c', process.env.JOB!], { stdio: 'ignore' });
      const second = await tm.measureCommand('sleep', ['0.2'], { stdio: 'ignore' });
      return { first: first.usage.gpus[0], second: second.usage.gpus[0] };
    };
    const { first, second } = await scenarioCase(pair, { ...env, JOB: job(0.2) });
    expect(first.processMemoryPeakBytes).toBe(GiB);
    expect(second.memoryUsedPeakBytes).toBe(USED);
    expect(second.processMemoryPeakBytes).toBe(0); // looked for while it lived: in no list
    expect(second.processSamples).toBeGreaterThan(0);
  });
});

describe('window values come from readings inside the window', () => {
  // 40 GiB used and 1 GiB of this process's for 200 ms; then both gone, and only then a window opens.
  const before: Scenario = ({ tm, sleep, write, base, MiB, waitFor }) => {
    write(base + `\ndev0.used=${40 * 1024 * MiB}\ndev0.procs=self:${1024 * MiB}\n`);
    const outer = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start(); // keeps readings coming
    sleep(200);
    waitFor(() => outer.usage!.gpus[0]?.processMemoryPeakBytes === 1024 * MiB); // readings saw it
    write(base);
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(300);
    waitFor(() => t.usage!.gpuSamples > 0);
    const usage = t.stop();
    outer.stop();
    return { usage };
  };
  it('a window never shows memory from before it opened', async () => {
    const { env } = setup(h200());
    const { usage } = await scenarioCase(before, env);
    const g = usage.gpus[0];
    expect(g.samples).toBeGreaterThan(0);
    expect(g.memoryUsedPeakBytes).toBe(USED);
    expect(g.processMemoryPeakBytes).toBe(0);
    expect(g.processSamples).toBeGreaterThan(0);
  });
});

describe('energy from the counter and the power draw', () => {
  const energy: Scenario = ({ tm, sleep }) => {
    const outer = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    sleep(300);
    const long = tm.measureSync(() => sleep(2000), { sampleIntervalMs: 10 }).usage;
    const short = tm.measureSync(() => sleep(50), { sampleIntervalMs: 10 }).usage;
    const tiny = tm.measureSync(() => 0).usage;
    // consecutive windows inside an enclosing one
    const around = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    const a = tm.measureSync(() => sleep(300), { sampleIntervalMs: 10 }).usage;
    const b = tm.measureSync(() => sleep(300), { sampleIntervalMs: 10 }).usage;
    const all = around.stop();
    outer.stop();
    return { long, short, tiny, a, b, all };
  };
  it('a 2 s window at 300 W reports 600 J ± 5 %; 50 ms and instant windows on a busy GPU get their share', async () => {
    const { env } = setup(h200());
    const { long, short, tiny, a, b, all } = await scenarioCase(energy, env);
    const expected = (300 * long.wallTimeMs) / 1000;
    expect(long.gpus[0].energyJoules).toBeGreaterThan(expected * 0.95);
    expect(long.gpus[0].energyJoules).toBeLessThan(expected * 1.05);
    expect(long.gpus[0].energyReason).toBeNull();
    expect(short.gpus[0].energyJoules).toBeGreaterThan(0);
    expect(short.gpus[0].energyJoules).toBeCloseTo((300 * short.wallTimeMs) / 1000, 0);
    expect(tiny.gpus[0].energyJoules).toBeGreaterThan(0); // even with no reading inside: the draw over its time
    // no gap, no double count: the two windows add up to the one around them (which opened and closed a few µs
    // outside them)
    const sum = a.gpus[0].energyJoules + b.gpus[0].energyJoules;
    expect(Math.abs(all.gpus[0].energyJoules - sum)).toBeLessThan(0.01 * sum);
  });
});

describe('each kind of reading at its own pace', () => {
  const window3s: Scenario = async ({ tm }) => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    await new Promise((r) => setTimeout(r, 3000));
    const usage = t.stop();
    return { usage, record: tm.toRecord(usage) };
  };
  // Open until the driver's samples of two reads or more came in (a second apart at this pace, or more on a loaded
  // machine).
  const putilWindow: Scenario = ({ tm, sleep, waitFor }) => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 50 }).start();
    sleep(2000);
    waitFor(() => t.usage!.gpus[0]?.processUtilizationSamples >= 18, 40_000);
    return { usage: t.stop() };
  };
  it('8 H200s: the energy counter and per-process utilization are stretched first, and the usage says so', async () => {
    const { env } = setup(h200().replace('count=1', 'count=8'));
    const { usage, record } = await scenarioCase(window3s, env);
    expect(usage.gpus).toHaveLength(8);
    expect(usage.gpuEnergyIntervalMs).toBe(30000);
    expect(usage.gpuProcessUtilizationIntervalMs).toBe(10000);
    expect(usage.gpuSamplingNote).toMatch(/energy counter every 30\.0 s/);
    expect(usage.gpuSamplingNote).toMatch(/per-process utilization every 10\.0 s/);
    expect(usage.gpuSamplingNote).toMatch(/8 GPUs/);
    expect(record.gpu_sampling_note).toBe(usage.gpuSamplingNote);
    // device readings still come well inside a second (the bench measures their pace and the thread's CPU)
    expect(usage.gpuSamples).toBeGreaterThan(3);
    for (const g of usage.gpus) expect(g.samples).toBe(usage.gpuSamples);
  });

  // Back-to-back 3 s windows at a 5 s interval: the windows' interval alone would space each GPU's readings further
  // apart than the energy model integrates (EnergyModel::kMaxGapMs), and a window would get no energy.
  const backToBack: Scenario = ({ tm, sleep }) => {
    const windows = [];
    for (let i = 0; i < 3; i++) {
      const t = new tm.ResourceTracker({ sampleIntervalMs: 5000 }).start();
      sleep(3000);
      const u = t.stop();
      windows.push({ wallMs: u.wallTimeMs, gpus: u.gpus.map((g: any) => [g.energyJoules, g.energyReason]) });
    }
    return { windows };
  };
  it('8 H200s at a 5 s interval: every one of back-to-back 3 s windows gets its energy share', async () => {
    const { env } = setup(h200().replace('count=1', 'count=8'));
    const { windows } = await scenarioCase(backToBack, env, 60_000);
    for (const w of windows) {
      expect(w.gpus).toHaveLength(8);
      for (const [joules, reason] of w.gpus) {
        expect(reason, JSON.stringify(w)).toBeNull();
        expect(joules).not.toBeNull();
      }
      // dev0 draws 300 W, the others the fake's default 100 W
      expect(w.gpus[0][0]).toBeGreaterThan(0.9 * 0.3 * w.wallMs);
      expect(w.gpus[0][0]).toBeLessThan(1.1 * 0.3 * w.wallMs);
      expect(w.gpus[7][0]).toBeGreaterThan(0.9 * 0.1 * w.wallMs);
      expect(w.gpus[7][0]).toBeLessThan(1.1 * 0.1 * w.wallMs);
    }
  });

  it('process utilization is read with lastSeenTimeStamp: the driver samples between two reads are all counted', async () => {
    // the plain fake (no costs): per-process utilization every second, one driver sample per 100 ms
    const scenario = writeFakeNvmlScenario(work, 'count=1\ndev0.util=50\ndev0.putil=self:60:30\n');
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
    const { usage } = await scenarioCase(putilWindow, env);
    const g = usage.gpus[0];
    expect(g.processSmUtilizationPercent).toBe(60);
    expect(g.processMemoryUtilizationPercent).toBe(30);
    // several reads' worth of samples (the window stays open until then), one per 100 ms step since the window
    // opened: none lost between reads, none counted twice
    expect(g.processUtilizationSamples).toBeGreaterThanOrEqual(18);
    expect(g.processUtilizationSamples).toBeLessThanOrEqual(Math.ceil(usage.wallTimeMs / 100) + 1);
  });

  it('per-process utilization is still read when the driver keeps more samples than one read can take', async () => {
    // 64 processes and 1000 steps kept: 64,000 samples newer than lastSeen=0, more than any bounded buffer holds
    const others = Array.from({ length: 63 }, (_, k) => `${100001 + k}:10:5`).join(',');
    const scenario = writeFakeNvmlScenario(
      work,
      `count=1\ndev0.util=50\ndev0.putil=self:60:30,${others}\nputil_keep=1000\n`,
    );
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
    const { usage } = await scenarioCase(({ tm, sleep, waitFor }) => {
      const t = new tm.ResourceTracker({ sampleIntervalMs: 50 }).start();
      sleep(2000);
      waitFor(() => t.usage!.gpus[0]?.processUtilizationSamples >= 18);
      return { usage: t.stop() };
    }, env);
    const g = usage.gpus[0];
    expect(g.processUtilizationReason).toBeNull();
    expect(g.processSmUtilizationPercent).toBe(60);
    expect(g.processUtilizationSamples).toBeGreaterThanOrEqual(18);
  });
});

describe('the timeline', () => {
  // This process's GPU memory rises to 512 MiB for 150 ms in the middle of a 600 ms window (longer, until a reading
  // saw it, on a loaded machine).
  const timeline: Scenario = ({ tm, sleep, write, base, MiB, waitFor }) => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10, timeline: true }).start();
    sleep(200);
    write(base + `\ndev0.procs=self:${512 * MiB}\n`);
    sleep(150);
    waitFor(() => t.usage!.gpus[0]?.processMemoryPeakBytes === 512 * MiB);
    write(base);
    sleep(250);
    const usage = t.stop();
    return { points: usage.timeline!.points, gpuSamples: usage.gpuSamples, interval: usage.gpuSampleIntervalMs };
  };
  it("has GPU memory from readings at the window's pace", async () => {
    const { env } = setup(h200());
    const { points, gpuSamples } = await scenarioCase(timeline, env);
    expect(gpuSamples).toBeGreaterThan(2);
    // from the first reading on (a window's edge asks for one at once) every tick has a value: the largest reading
    // since the previous tick, or the last one held
    const withGpu = points.filter((p: any) => p.gpuProcessMemoryBytes !== null);
    expect(withGpu.length).toBeGreaterThan(0.8 * points.length);
    const spike = withGpu.filter((p: any) => p.gpuProcessMemoryBytes === 512 * MiB);
    expect(spike.length).toBeGreaterThanOrEqual(1); // ≈ 15 ticks held it on a quiet machine; the others 0
    expect(withGpu.every((p: any) => p.gpuProcessMemoryBytes === 0 || p.gpuProcessMemoryBytes === 512 * MiB)).toBe(
      true,
    );
    expect(points.filter((p: any) => p.gpuUtilizationPercent === 90).length).toBe(withGpu.length);
  });
});

describe('exit and worker.terminate() never wait for GPU detection', () => {
  it(`node -e "require('taskmeter')" exits at once while nvmlInit takes 6 s`, async () => {
    const scenario = writeFakeNvmlScenario(work, h200('init_delay_ms=6000'));
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
    const code = "const tm = require('taskmeter'); console.log(JSON.stringify(tm.gpuInfo()))";
    const r = await run(process.execPath, ['-e', code], { env, cwd: root, timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(lastJson(r.stdout)).toMatchObject({ pending: true, reasonCode: 'GPU_PENDING' }); // nvmlInit still sleeping
    // the import waits at most 500 ms for detection; exit does not wait for it at all (bench: under 1 s)
    expect(r.elapsedMs).toBeLessThan(3000);
  });

  it('a worker that loaded taskmeter during a 6 s nvmlInit terminates at once', async () => {
    const scenario = writeFakeNvmlScenario(work, h200('init_delay_ms=6000'));
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
    const code = `
      const { Worker } = require('node:worker_threads');
      const w = new Worker("require('taskmeter'); require('node:worker_threads').parentPort.postMessage(1)", { eval: true });
      w.once('message', async () => {
        const t0 = performance.now();
        await w.terminate();
        console.log(JSON.stringify({ terminateMs: performance.now() - t0 }));
      });`;
    const r = await run(process.execPath, ['-e', code], { env, cwd: root, timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(lastJson(r.stdout).terminateMs).toBeLessThan(2000);
    expect(r.elapsedMs).toBeLessThan(4000);
  });
});

// The fixture itself, called directly (python's ctypes, the calling thread's CPU clock): the profile's costs burn CPU
// and the energy counter and power move in 100 ms steps, as on the H200.
/** Runs a Python script against the fake NVML (argv[1]; more arguments after it) and returns its last JSON line. */
async function runPython(py: string, scenario: string, ...args: string[]): Promise<any> {
  const r = await run(python3Path(), ['-c', py, fakeNvml('full'), ...args], {
    env: gpuEnv({ FAKE_NVML_SCENARIO: scenario }),
    timeoutMs: 20_000,
  });
  expect(r.code, r.stderr).toBe(0);
  return lastJson(r.stdout);
}

/** Python lines that load the fake NVML (argv[1]), open GPU 0 as `h`, with `mj` for the energy counter. */
const openGpu0 = [
  'import ctypes, json, os, sys, time',
  'lib = ctypes.CDLL(sys.argv[1])',
  'assert lib.nvmlInit_v2() == 0',
  'h = ctypes.c_void_p()',
  'assert lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h)) == 0',
  'mj = ctypes.c_ulonglong()',
];

describe('the fake NVML models the real driver', () => {
  it("H200 profile: the energy call burns ~3 ms of the caller's CPU (its first ~17–28 ms); the counter steps every 100 ms", async () => {
    const scenario = writeFakeNvmlScenario(work, h200());
    const py = [
      ...openGpu0,
      'def energy():',
      '    c0 = time.thread_time()',
      '    assert lib.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(mj)) == 0',
      '    return mj.value, (time.thread_time() - c0) * 1000',
      'first = energy()',
      'costs, values = [], []',
      'for i in range(12):',
      '    v, c = energy(); costs.append(c); values.append((time.monotonic(), v))',
      '    time.sleep(0.025)',
      'steps = sorted(set(v for _, v in values))',
      'print(json.dumps({"firstMs": first[1], "costsMs": costs, "steps": [b - a for a, b in zip(steps, steps[1:])]}))',
    ].join('\n');
    const { firstMs, costsMs, steps } = await runPython(py, scenario);
    expect(firstMs).toBeGreaterThanOrEqual(17); // the slow first call after nvmlInit
    const sorted = [...costsMs].sort((x: number, y: number) => x - y);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeGreaterThanOrEqual(2.8); // CPU, not a sleep
    // 12 readings 25 ms apart span 3+ steps of 100 ms; each step adds 300 W × 0.1 s = 30 J
    expect(steps.length).toBeGreaterThanOrEqual(2);
    for (const d of steps) expect(d % 30000).toBe(0);
  });

  it("H200 profile: each GPU's first energy call after nvmlInit is the slow one", async () => {
    const scenario = writeFakeNvmlScenario(work, h200().replace('count=1', 'count=2'));
    const py = [
      'import ctypes, json, sys, time',
      'lib = ctypes.CDLL(sys.argv[1])',
      'assert lib.nvmlInit_v2() == 0',
      'mj = ctypes.c_ulonglong()',
      'def cost(i):',
      '    h = ctypes.c_void_p()',
      '    assert lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h)) == 0',
      '    c0 = time.thread_time()',
      '    assert lib.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(mj)) == 0',
      '    return (time.thread_time() - c0) * 1000',
      'print(json.dumps({"ms": [cost(0), cost(0), cost(1), cost(1)]}))',
    ].join('\n');
    const [first0, second0, first1, second1] = (await runPython(py, scenario)).ms;
    expect(first0).toBeGreaterThanOrEqual(17);
    expect(first1).toBeGreaterThanOrEqual(17);
    expect(second0).toBeLessThan(first0);
    expect(second1).toBeLessThan(first1);
  });

  it('a change of power counts from the step after it was written, however long before the next call', async () => {
    const scenario = writeFakeNvmlScenario(work, h200());
    const py = [
      ...openGpu0,
      'def energy():',
      '    assert lib.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(mj)) == 0',
      '    return mj.value, time.monotonic()',
      'e0, t0 = energy()',
      'time.sleep(1)', // no call: 300 W all along
      'text = open(sys.argv[2]).read().replace("dev0.power_mw=300000", "dev0.power_mw=100000")',
      'open(sys.argv[2] + ".tmp", "w").write(text); os.rename(sys.argv[2] + ".tmp", sys.argv[2]); tw = time.monotonic()',
      'time.sleep(1)',
      'e1, t1 = energy()',
      'print(json.dumps({"joules": (e1 - e0) / 1000, "before": tw - t0, "after": t1 - tw}))',
    ].join('\n');
    const { joules, before, after } = await runPython(py, scenario, scenario);
    // 300 W until the change, 100 W after it (not 100 W for every step since the last call), within a step or two
    const expected = 300 * before + 100 * after;
    expect(Math.abs(joules - expected), JSON.stringify({ joules, expected })).toBeLessThan(60);
  });
});
