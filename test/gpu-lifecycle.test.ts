// GPU threads across environments (sampler.h L3, L9): a stop never waits for the driver, a thread left to finish its
// NVML work owns the library until it exits, and the next thread waits for it before it touches NVML. Each case runs
// test/children/gpu-orphan.cjs (workers only: the main thread never loads taskmeter) against the fake NVML, whose
// call log shows which NVML calls were made.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fakeNvml, gpuEnv, lastJson, MiB, runChild, runScenario, writeFakeNvmlScenario } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'taskmeter-gpulife-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// nvmlShutdown sleeps this long once a case turns it on: far longer than a stop that does not wait for it takes.
const SHUTDOWN_MS = 4000;
const BASE = ['count=1', `dev0.used=${2048 * MiB}`, `dev0.procs=self:${64 * MiB}`, 'dev0.power_mw=200000'].join('\n');

let logs = 0;
async function orphanCase(args: string[], scenario: string): Promise<any> {
  const env = gpuEnv({
    TASKMETER_NVML_LIBRARY: fakeNvml('full'),
    FAKE_NVML_SCENARIO: writeFakeNvmlScenario(work, scenario),
    FAKE_NVML_LOG: join(work, `calls-${logs++}.log`),
    SHUTDOWN_DELAY_MS: String(SHUTDOWN_MS),
  });
  const r = await runChild('gpu-orphan.cjs', args, { env, timeoutMs: 60_000 });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return lastJson(r.stdout);
}

describe('GPU threads across environments', () => {
  it('a GPU thread stopped while it waits for the one before it ends at once; the next waits for that one to exit before it touches NVML', async () => {
    // thread A is left to finish a slow detection, then sits in a slow nvmlShutdown; B (worker 2) waits for it and
    // is stopped; C (worker 3) starts while A is still in nvmlShutdown
    const out = await orphanCase(['waiter', 'window'], `${BASE}\ninit_delay_ms=1500\n`);
    expect(out.terminate2Ms).toBeLessThan(SHUTDOWN_MS / 2); // B was told it is not wanted (it took ~4 s)
    // C waited for A: it initialised NVML itself (B never did), and its readings are real
    expect(out.inits).toBe(2);
    expect(out.third.info.available, JSON.stringify(out.third.info)).toBe(true);
    expect(out.third.info.reasonCode).toBeNull(); // A's slow shutdown is not a hung driver
    expect(out.third.gpuSamples).toBeGreaterThan(0);
    expect(out.third.gpus[0].memoryUsedPeakBytes).toBe(2048 * MiB);
    expect(out.third.gpus[0].processMemoryPeakBytes).toBe(64 * MiB);
  });

  it('worker.terminate() never waits for nvmlShutdown; the next detection waits for it and works', async () => {
    const out = await orphanCase(['release-shutdown'], BASE);
    expect(out.first.gpus[0].memoryUsedPeakBytes).toBe(2048 * MiB);
    expect(out.terminate1Ms).toBeLessThan(SHUTDOWN_MS / 2); // it waited for the whole nvmlShutdown
    expect(out.shutdowns).toBeGreaterThanOrEqual(1);
    expect(out.inits).toBe(2);
    expect(out.second.info.available, JSON.stringify(out.second.info)).toBe(true);
    expect(out.second.info.reasonCode).toBeNull();
    expect(out.second.gpus[0].memoryUsedPeakBytes).toBe(2048 * MiB);
  });

  it('process exit never waits for a slow nvmlShutdown', async () => {
    const env = gpuEnv({
      TASKMETER_NVML_LIBRARY: fakeNvml('full'),
      FAKE_NVML_SCENARIO: writeFakeNvmlScenario(work, BASE),
    });
    const started = Date.now();
    const r = await runScenario(
      ({ tm, sleep, write, base, waitFor }) => {
        const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
        sleep(100);
        waitFor(() => t.usage!.gpuSamples > 0);
        const usage = t.stop();
        write(`${base}\ndelay.nvmlShutdown=8000\n`);
        return { samples: usage.gpuSamples, endedAt: Date.now() };
      },
      { env, timeoutMs: 30_000 },
    );
    const exitedAt = Date.now();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.samples).toBeGreaterThan(0);
    expect(out.endedAt).toBeGreaterThan(started);
    expect(exitedAt - out.endedAt).toBeLessThan(4000); // bounded by the exit's own wait (400 ms)
  });

  it('a GPU thread that ends on an exception shuts NVML down: a later detection loads the library it is told to', async () => {
    const out = await orphanCase(['throw-redetect'], BASE);
    expect(out.first.info.reasonCode).toBe('GPU_THREAD_FAILED');
    expect(out.shutdownsAfterFailure).toBe(1);
    expect(out.second.info.available).toBe(false);
    expect(out.second.info.reasonCode).toBe('NVML_LIBRARY_LOAD_FAILED');
  });
});
