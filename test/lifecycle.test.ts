// Lifecycle under workers, exits and signals: each case in a child process with a timeout, asserting how it ended.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeNvml, gpuEnv, lastJson, root, runChild } from './helpers';

const script = join(root, 'test/children/lifecycle.cjs');
const withFakeGpu = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full') });

describe('lifecycle', () => {
  for (const [label, env] of [['no GPU', gpuEnv({ TASKMETER_DISABLE_GPU: '1' })], ['fake GPU', withFakeGpu]] as const) {
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
      await new Promise<void>((res) => child.stdout.on('data', (d) => { out += d; if (out.includes('ready')) res(); }));
      const t0 = performance.now();
      child.kill('SIGTERM');
      const [c, s] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.on('exit', (cc, ss) => res([cc, ss])));
      expect(performance.now() - t0).toBeLessThan(3000);
      expect(c, err).toBe(code);
      expect(s).toBe(signal);
      if (which === 'sigterm-window') expect(out).toContain('got SIGTERM');
    });
  }
});

describe('soak', () => {
  it('1e6 snapshots and 1e4 windows: RSS grows < 2 MB, threads back to baseline', async () => {
    const r = await runChild('soak.cjs', ['1000000', '10000'], { nodeArgs: ['--expose-gc'], timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const s = lastJson(r.stdout);
    expect(s.totalGrowthBytes).toBeLessThan(2 * 1024 * 1024);
    expect(s.threadsAfter).toBe(s.baseThreads);
    expect(s.openWindows).toBe(0);
  }, 180_000);

  it('100 concurrent async windows, some nested, give consistent results', async () => {
    const r = await runChild('concurrent.cjs', [], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const { results, openWindows } = lastJson(r.stdout);
    expect(results).toHaveLength(100);
    expect(openWindows).toBe(0);
    for (const { delay, usage, inner } of results) {
      expect(usage.wallTimeMs).toBeGreaterThanOrEqual(delay * 0.75 - 2);
      expect(usage.cpuTimeMs).toBeGreaterThanOrEqual(0);
      expect(usage.peakRssBytes).toBeGreaterThanOrEqual(Math.max(usage.rssStartBytes, usage.rssEndBytes));
      if (inner) {
        expect(inner.wallTimeMs).toBeLessThanOrEqual(usage.wallTimeMs);
        expect(inner.startedAt).toBeGreaterThanOrEqual(usage.startedAt);
        expect(inner.endedAt).toBeLessThanOrEqual(usage.endedAt + 0.001);
        expect(inner.cpuTimeMs).toBeGreaterThanOrEqual(1.5); // its 2 ms burst
        expect(inner.cpuTimeMs).toBeLessThanOrEqual(usage.cpuTimeMs + 0.001);
      }
    }
  });
});
