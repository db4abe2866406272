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

