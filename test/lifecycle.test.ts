// Lifecycle under workers, exits and signals: each case in a child process with a timeout, asserting how it ended.
//
// Worker churn, bounded: 12 workers created and ended continuously (10 s each case when CI=true, 3 s locally), each
// loading taskmeter and measuring. The process must never abort (it did: "terminate called without an active
// exception" in about 1 of 3 runs of 10 s), no worker may lose its GPU readings to another's teardown, and threads and
// descriptors must be back to their baseline afterwards. Longer runs by hand: node test/children/churn.cjs
// '{"durationMs":10000}' (see docs/reliability.md).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeNvml, gpuEnv, lastJson, root, runChild } from './helpers';

const script = join(root, 'test/children/lifecycle.cjs');
const withFakeGpu = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full') });

describe('lifecycle', () => {
  for (const [label, env] of [
    ['no GPU', gpuEnv({ TASKMETER_DISABLE_GPU: '1' })],
    ['fake GPU', withFakeGpu],
  ] as const) {
    it(`8 workers with open windows, terminated mid-window (${label})`, async () => {
      const r = await runChild('lifecycle.cjs', ['workers-terminate'], { env, timeoutMs: 30_000 });
      expect(r.timedOut).toBe(false);
      expect(r.signal).toBeNull();
      expect(r.code, r.stderr).toBe(0);
      const out = lastJson(r.stdout);
      expect(out.codes).toHaveLength(8);
      expect(out.openWindowsAfter).toBe(0); // each worker's teardown closed its windows
      expect(out.mainWorks).toBe(true);
    });
  }

  it('a worker that spawned a command and is terminated before it ends: the process survives the unload', async () => {
    // the main thread never loads taskmeter, so terminating the worker unloads the addon while `sleep 1` runs
    const r = await runChild('worker-unload.cjs', ['spawn', '1', '1500'], { timeoutMs: 30_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(lastJson(r.stdout).codes).toEqual([1]);
  });

  for (const which of ['sampler-state', 'window-close'] as const) {
    it(`a worker terminated while it calls ${which === 'sampler-state' ? 'samplerState()' : 'windowClose()'} in a loop: no abort`, async () => {
      const r = await runChild('worker-unload.cjs', [which, '10', '0'], { timeoutMs: 30_000 });
      expect(r.signal, r.stderr).toBeNull();
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toContain('FATAL ERROR');
      expect(lastJson(r.stdout).codes).toHaveLength(10);
    });
  }

  it('workers that end by themselves with open windows leave none behind', async () => {
    const r = await runChild('lifecycle.cjs', ['workers-finish'], { env: withFakeGpu, timeoutMs: 30_000 });
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(lastJson(r.stdout).openWindowsAfter).toBe(0);
  });

  it('process.exit() with the sampler running exits cleanly and promptly', async () => {
    for (const env of [gpuEnv({}), withFakeGpu]) {
      const r = await runChild('lifecycle.cjs', ['exit-sampler-running'], { env, timeoutMs: 10_000 });
      expect(r.signal).toBeNull();
      expect(r.code, r.stderr).toBe(0);
      expect(r.elapsedMs).toBeLessThan(3000);
    }
  });

  it('a natural end with an open window: teardown joins the sampler, exit 0', async () => {
    const r = await runChild('lifecycle.cjs', ['natural-end'], { env: withFakeGpu, timeoutMs: 10_000 });
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(lastJson(r.stdout).threadRunning).toBe(true);
  });

  for (const [which, code, signal] of [
    ['sigterm-window', 0, null],
    ['sigterm-default', null, 'SIGTERM'],
  ] as const) {
    it(`SIGTERM during a window (${which === 'sigterm-window' ? 'handled' : 'default action'})`, async () => {
      const child = spawn(process.execPath, [script, which], { env: withFakeGpu, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      await new Promise<void>((res) =>
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('ready')) res();
        }),
      );
      const t0 = performance.now();
      child.kill('SIGTERM');
      const [c, s] = await new Promise<[number | null, NodeJS.Signals | null]>((res) =>
        child.on('exit', (cc, ss) => res([cc, ss])),
      );
      expect(performance.now() - t0).toBeLessThan(3000);
      expect(c, err).toBe(code);
      expect(s).toBe(signal);
      if (which === 'sigterm-window') expect(out).toContain('got SIGTERM');
    });
  }

  it('a sampler thread that cannot be started (EAGAIN under a pids limit) is reported, never an abort', async () => {
    const r = await runChild('lifecycle.cjs', ['thread-start-fails'], {
      env: gpuEnv({ TASKMETER_DISABLE_GPU: '1' }),
      timeoutMs: 10_000,
    });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.error).toBeNull(); // the window still measured: endpoints only
    expect(out.firstWall).toBeGreaterThanOrEqual(19);
    expect(out.firstSamples).toBe(0);
    expect(out.stateAfterFailure.threadRunning).toBe(false);
    expect(out.stateAfterFailure.threadError).toMatch(
      /could not start the RSS sampler thread: Resource temporarily unavailable/,
    );
    // the next window starts the thread and is sampled
    expect(out.threadRunning).toBe(true);
    expect(out.secondSamples).toBeGreaterThan(0);
  });

  it('an exception inside the RSS or GPU thread (std::bad_alloc) is reported through samplerState()/gpuInfo(), never an abort', async () => {
    const r = await runChild('lifecycle.cjs', ['thread-throws'], { env: withFakeGpu, timeoutMs: 20_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.wall).toBeGreaterThan(50);
    expect(out.state.threadError).toMatch(/thread failed: std::bad_alloc/);
    expect(out.gpu.state).toBe('unavailable');
    expect(out.gpu.reasonCode).toBe('GPU_THREAD_FAILED');
  });

  it('a GPU thread that cannot be started leaves gpuInfo() saying why, and measuring works', async () => {
    const env = gpuEnv({ TASKMETER_DISABLE_GPU: '1', TASKMETER_NVML_LIBRARY: fakeNvml('full') });
    const r = await runChild('lifecycle.cjs', ['gpu-thread-start-fails'], { env, timeoutMs: 10_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.available).toBe(false);
    expect(out.reason).toBe('could not start the GPU thread: Resource temporarily unavailable');
    expect(out.reasonCode).toBe('GPU_THREAD_START_FAILED');
    expect(out.wall).toBeGreaterThanOrEqual(0);
  });

  it('window ids past 2^32 and at the 2^53 wrap never land on a window still open', async () => {
    const r = await runChild('lifecycle.cjs', ['ids'], {
      env: gpuEnv({ TASKMETER_DISABLE_GPU: '1' }),
      timeoutMs: 10_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    const [a, b, c, d, e] = out.ids;
    expect(b).toBe(2 ** 32 - 1);
    expect(c).toBe(2 ** 32); // a 32-bit counter wrapped to 0/1 here, onto open windows
    expect(d).toBe(2 ** 53 - 1);
    expect(e).not.toBe(a); // the counter landed on a's id while a was open: skipped
    expect(new Set(out.ids).size).toBe(5);
    expect(out.closed).toEqual([true, true, true, true, true]);
    expect(out.closedTwice).toBe(false);
    expect(out.open).toBe(0);
  });

  it("an idle window reports ≈ 0 ms of CPU: the sampler thread's own CPU is left out", async () => {
    const r = await runChild('lifecycle.cjs', ['sampler-cpu', '1000'], {
      env: gpuEnv({ TASKMETER_DISABLE_GPU: '1' }),
      timeoutMs: 15_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.samples).toBeGreaterThan(100); // sampled at 1 ms all along
    expect(out.samplerCpuMs).toBeGreaterThan(0); // the sampler did cost something…
    expect(out.ownCpuMs).toBeGreaterThanOrEqual(out.samplerCpuMs);
    // …and none of it is billed to the idle task (what is left is the event loop's own few ms)
    expect(out.cpuTimeMs).toBeLessThan(out.samplerCpuMs);
    expect(out.cpuTimeMs).toBeLessThan(25);
    expect(out.threadCpuMs).toBeGreaterThanOrEqual(0);
    // the process clock brings other threads up to date at scheduler ticks: a few ms either way
    expect(out.threadCpuMs).toBeLessThanOrEqual(out.cpuTimeMs + 5);
  });
});

// Worker churn: each case runs test/children/churn.cjs for durationMs (10 s when CI=true, 3 s locally).
const durationMs = process.env.CI === 'true' ? 10_000 : 3_000;
const timeoutMs = durationMs + 30_000;

interface ChurnResult {
  runs: number;
  failures: string[];
  failureCount: number;
  gpuNull: number;
  before: { threads: number; fds: number };
  after: { threads: number; fds: number };
  mainWindows: number;
  mainSamples: number[];
  mainGpuNull: number;
  openWindowsAfter: number | null;
  commands: number;
  commandsFailed: number;
  commandFailures: unknown[];
}

async function churn(options: Record<string, unknown>, env: NodeJS.ProcessEnv): Promise<ChurnResult> {
  const r = await runChild('churn.cjs', [JSON.stringify({ durationMs, ...options })], { env, timeoutMs });
  expect(r.timedOut).toBe(false);
  expect(r.stderr).not.toMatch(/terminate called/);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  const out = lastJson<ChurnResult>(r.stdout);
  expect(out.failures).toEqual([]);
  expect(out.runs).toBeGreaterThanOrEqual(12);
  // Back to baseline: every sampler thread a worker's teardown stopped was joined, and Node's unloading and
  // reloading the addon between workers leaks no descriptor.
  expect(out.after.threads).toBe(out.before.threads);
  expect(out.after.fds).toBe(out.before.fds);
  return out;
}

describe('worker churn', () => {
  it(
    'workers loading taskmeter and ending continuously never abort the process (nothing on the main thread)',
    async () => {
      await churn({}, gpuEnv({ TASKMETER_DISABLE_GPU: '1' }));
    },
    timeoutMs + 5_000,
  );

  it(
    'with the fake GPU loaded, no worker loses its GPU readings to another worker ending',
    async () => {
      const out = await churn({ workerWindowMs: 60, gpu: true }, withFakeGpu);
      expect(out.gpuNull).toBe(0);
    },
    timeoutMs + 5_000,
  );

  it(
    'windows open on the main thread keep being sampled, with GPU values, through the churn',
    async () => {
      const out = await churn({ mainWindows: 3, gpu: true }, withFakeGpu);
      expect(out.mainWindows).toBe(3);
      expect(out.mainGpuNull).toBe(0);
      // sampled all along at 1 ms: far more than one sample per 10 ms, even on a loaded machine
      for (const s of out.mainSamples) expect(s).toBeGreaterThan(durationMs / 10);
      expect(out.openWindowsAfter).toBe(0);
    },
    timeoutMs + 5_000,
  );

  it(
    'commands measured and process trees followed on the main thread meanwhile all complete',
    async () => {
      const out = await churn({ spawn: true }, gpuEnv({ TASKMETER_DISABLE_GPU: '1' }));
      expect(out.commands).toBeGreaterThan(0);
      expect(out.commandsFailed, JSON.stringify(out.commandFailures)).toBe(0);
      expect(out.openWindowsAfter).toBe(0);
    },
    timeoutMs + 5_000,
  );
});
