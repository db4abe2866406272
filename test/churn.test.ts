// Worker churn, bounded: 12 workers created and ended continuously (10 s each case when CI=true, 3 s locally), each
// loading taskmeter and measuring. The process must never abort (it did: "terminate called without an active
// exception" in about 1 of 3 runs of 10 s), no worker may lose its GPU readings to another's teardown, and threads and
// descriptors must be back to their baseline afterwards. Longer runs by hand: node test/children/churn.cjs
// '{"durationMs":10000}' (see docs/reliability.md).
import { describe, expect, it } from 'vitest';
import { fakeNvml, gpuEnv, lastJson, runChild } from './helpers';

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

const fakeGpu = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full') });

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
      const out = await churn({ workerWindowMs: 60, gpu: true }, fakeGpu);
      expect(out.gpuNull).toBe(0);
    },
    timeoutMs + 5_000,
  );

  it(
    'windows open on the main thread keep being sampled, with GPU values, through the churn',
    async () => {
      const out = await churn({ mainWindows: 3, gpu: true }, fakeGpu);
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
      expect(out.commandsFailed).toBe(0);
      expect(out.openWindowsAfter).toBe(0);
    },
    timeoutMs + 5_000,
  );
});
