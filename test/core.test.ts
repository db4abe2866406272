import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { lastJson, MiB, runChild } from './helpers';
// The built package, loaded as users load it.
import * as tm from '../dist/index.js';
import { native } from '../dist/binding.js';

function busyCpu(ms: number): void {
  const start = process.cpuUsage();
  for (;;) {
    const d = process.cpuUsage(start);
    if (d.user + d.system >= ms * 1000) return;
  }
}

function vmRssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmRSS');
  return Number(m[1]) * 1024;
}

describe('snapshot()', () => {
  it('returns every field as a finite number and an empty gpus array', () => {
    const s = tm.snapshot();
    for (const k of [
      'timeMs',
      'epochMs',
      'cpuUserMs',
      'cpuSystemMs',
      'rssBytes',
      'vmsBytes',
      'peakRssBytes',
    ] as const) {
      expect(Number.isFinite(s[k]), k).toBe(true);
      expect(s[k], k).toBeGreaterThan(0);
    }
    expect(Array.isArray(s.gpus)).toBe(true);
    expect(Math.abs(s.epochMs - Date.now())).toBeLessThan(1000);
    expect(s.vmsBytes).toBeGreaterThanOrEqual(s.rssBytes);
    expect(s.peakRssBytes).toBeGreaterThanOrEqual(s.rssBytes * 0.9);
  });

  it('agrees with /proc/self/status VmRSS within 5%', () => {
    const before = vmRssBytes();
    const ours = tm.snapshot().rssBytes;
    const after = vmRssBytes();
    const ref = (before + after) / 2;
    expect(Math.abs(ours - ref) / ref).toBeLessThan(0.05);
  });

  it('has monotonic time and non-decreasing CPU counters', () => {
    const a = tm.snapshot();
    busyCpu(5);
    const b = tm.snapshot();
    expect(b.timeMs).toBeGreaterThan(a.timeMs);
    expect(b.cpuUserMs + b.cpuSystemMs).toBeGreaterThan(a.cpuUserMs + a.cpuSystemMs);
  });
});

describe('CPU accounting', () => {
  it('a 300 ms busy loop measures about 300 ms of CPU', () => {
    const ref = process.cpuUsage();
    const { usage } = tm.measureSync(() => busyCpu(300));
    const refMs = (process.cpuUsage(ref).user + process.cpuUsage(ref).system) / 1000;
    expect(usage.cpuTimeMs).toBeGreaterThanOrEqual(290);
    expect(usage.cpuTimeMs).toBeLessThan(400);
    expect(Math.abs(usage.cpuTimeMs - refMs)).toBeLessThan(20);
    expect(usage.cpuTimeMs).toBeCloseTo(usage.cpuUserMs + usage.cpuSystemMs, 6);
    expect(usage.wallTimeMs).toBeGreaterThanOrEqual(290);
    expect(usage.cpuPercent).toBeCloseTo((usage.cpuTimeMs / usage.wallTimeMs) * 100, 6);
  });

  it('an idle wait costs little CPU', async () => {
    const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 200)));
    expect(usage.wallTimeMs).toBeGreaterThanOrEqual(195);
    expect(usage.cpuTimeMs).toBeLessThan(100);
    expect(usage.cpuPercent).toBeLessThan(50);
  });
});

describe('true peak memory', () => {
  it('catches a freed 256 MiB spike (hwm) and a smaller later spike below the lifetime HWM (sampled)', async () => {
    const r = await runChild('peaks.cjs', [], { nodeArgs: ['--expose-gc'], timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const { w1, w2, lifetimePeak } = lastJson(r.stdout);
    // Window 1: the HWM rose, so its peak is exact, and the endpoints alone would have missed it.
    expect(w1.peakRssSource).toBe('hwm');
    expect(w1.peakRssBytes).toBeGreaterThanOrEqual(w1.rssStartBytes + 240 * MiB);
    expect(w1.rssEndBytes).toBeLessThan(w1.rssStartBytes + 240 * MiB);
    // Window 2: only the sampler saw it.
    expect(w2.peakRssSource).toBe('sampled');
    expect(w2.samples).toBeGreaterThan(5);
    expect(w2.peakRssBytes).toBeGreaterThanOrEqual(w2.rssStartBytes + 120 * MiB);
    expect(w2.peakRssBytes).toBeLessThan(lifetimePeak);
    expect(w2.rssEndBytes).toBeLessThan(w2.rssStartBytes + 120 * MiB);
  });

  it('falls back to the endpoints for a window too short for a sample', () => {
    const { usage } = tm.measureSync(() => 1, { sampleIntervalMs: 60_000 });
    expect(usage.samples).toBe(0);
    if (usage.peakRssSource !== 'hwm') {
      expect(usage.peakRssSource).toBe('endpoints');
      expect(usage.peakRssBytes).toBe(Math.max(usage.rssStartBytes, usage.rssEndBytes));
    }
  });
});

describe('usageBetween()', () => {
  it('computes deltas between two snapshots', () => {
    const a = tm.snapshot();
    busyCpu(20);
    const b = tm.snapshot();
    const u = tm.usageBetween(a, b);
    expect(u.wallTimeMs).toBeCloseTo(b.timeMs - a.timeMs, 9);
    expect(u.cpuUserMs).toBeCloseTo(b.cpuUserMs - a.cpuUserMs, 9);
    expect(u.cpuTimeMs).toBeGreaterThanOrEqual(15);
    expect(u.rssStartBytes).toBe(a.rssBytes);
    expect(u.rssEndBytes).toBe(b.rssBytes);
    expect(u.samples).toBe(0);
    expect(u.sampleIntervalMs).toBeNull();
    expect(u.startedAt).toBe(a.epochMs);
    expect(u.gpus).toEqual([]);
    expect(u.gpuMemoryPeakBytes).toBeNull();
  });

  it('uses the HWM rule on plain snapshots', () => {
    const a = {
      timeMs: 0,
      epochMs: 1e12,
      cpuUserMs: 0,
      cpuSystemMs: 0,
      rssBytes: 100,
      vmsBytes: 1000,
      peakRssBytes: 200,
      gpus: [],
    };
    const b = { ...a, timeMs: 10, rssBytes: 150, peakRssBytes: 900 };
    expect(tm.usageBetween(a, b)).toMatchObject({ peakRssBytes: 900, peakRssSource: 'hwm' });
    const c = { ...a, timeMs: 10, rssBytes: 150, peakRssBytes: 200 };
    expect(tm.usageBetween(a, c)).toMatchObject({ peakRssBytes: 150, peakRssSource: 'endpoints' });
  });

  it('rejects bad input with errors naming the field', () => {
    const a = tm.snapshot();
    expect(() => tm.usageBetween(null as any, a)).toThrow(TypeError);
    expect(() => tm.usageBetween(a, { ...a, rssBytes: 'x' } as any)).toThrow(/end\.rssBytes/);
    expect(() => tm.usageBetween(a, { ...a, cpuUserMs: NaN })).toThrow(RangeError);
    expect(() => tm.usageBetween({ ...a, timeMs: a.timeMs + 1000 }, a)).toThrow(RangeError);
  });
});

describe('measureSync() and measure()', () => {
  it('return the result and a usage', async () => {
    const s = tm.measureSync(() => 42);
    expect(s.result).toBe(42);
    expect(s.usage.wallTimeMs).toBeGreaterThanOrEqual(0);
    expect(s.usage.sampleIntervalMs).toBe(tm.DEFAULT_SAMPLE_INTERVAL_MS);
    const a = await tm.measure(async () => {
      await new Promise((r) => setTimeout(r, 30));
      return 'ok';
    });
    expect(a.result).toBe('ok');
    expect(a.usage.wallTimeMs).toBeGreaterThanOrEqual(25);
    expect(a.usage.samples).toBeGreaterThan(0);
    const sync = await tm.measure(() => 7);
    expect(sync.result).toBe(7);
  });

  it('propagate the same error with the usage attached', async () => {
    const boom = new Error('boom');
    let caught: any;
    try {
      tm.measureSync(() => {
        busyCpu(10);
        throw boom;
      });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBe(boom);
    expect(caught.usage.cpuTimeMs).toBeGreaterThanOrEqual(8);
    const rej = new RangeError('async boom');
    const p = tm.measure(async () => {
      throw rej;
    });
    await expect(p).rejects.toBe(rej);
    expect((rej as any).usage.wallTimeMs).toBeGreaterThanOrEqual(0);
    // a thrown primitive propagates unchanged
    expect(() =>
      tm.measureSync(() => {
        throw 'str';
      }),
    ).toThrow('str');
  });

  it('reject bad arguments with TypeError / RangeError naming the option', async () => {
    expect(() => tm.measureSync(123 as any)).toThrow(TypeError);
    expect(() => tm.measureSync(123 as any)).toThrow(/fn must be a function/);
    await expect(tm.measure('x' as any)).rejects.toThrow(TypeError);
    expect(() => tm.measureSync(() => 0, { sampleIntervalMs: '5' as any })).toThrow(TypeError);
    expect(() => tm.measureSync(() => 0, { sampleIntervalMs: '5' as any })).toThrow(/sampleIntervalMs/);
    for (const bad of [0, -1, 60_001, 1.5, NaN, Infinity]) {
      expect(() => tm.measureSync(() => 0, { sampleIntervalMs: bad }), String(bad)).toThrow(RangeError);
      expect(() => new tm.ResourceTracker({ sampleIntervalMs: bad }), String(bad)).toThrow(/sampleIntervalMs/);
    }
    expect(() => tm.measureSync(() => 0, { sampleIntervalMs: 1 })).not.toThrow();
    expect(() => tm.measureSync(() => 0, { sampleIntervalMs: 60_000 })).not.toThrow();
    expect(() => tm.measureSync(() => 0, 5 as any)).toThrow(TypeError);
    expect(() => tm.measureSync(() => 0, { sampleInterval: 5 } as any)).toThrow(/unknown option "sampleInterval"/);
  });

  it('leave no window open behind them', async () => {
    const before = native.samplerState().openWindows;
    tm.measureSync(() => 0);
    expect(() =>
      tm.measureSync(() => {
        throw new Error('x');
      }),
    ).toThrow();
    await expect(
      tm.measure(async () => {
        throw new Error('y');
      }),
    ).rejects.toThrow('y');
    const t = new tm.ResourceTracker().start();
    expect(native.samplerState().openWindows).toBe(before + 1);
    t.stop();
    expect(native.samplerState().openWindows).toBe(before);
    expect(native.samplerState().threadRunning).toBe(true);
  });
});

describe('ResourceTracker', () => {
  it('measures between start() and stop(), and exposes usage', () => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 2 });
    expect(t.usage).toBeNull();
    expect(t.running).toBe(false);
    t.start();
    expect(t.running).toBe(true);
    busyCpu(30);
    const live = t.usage!;
    expect(live.cpuTimeMs).toBeGreaterThanOrEqual(25);
    const u = t.stop();
    expect(u.cpuTimeMs).toBeGreaterThanOrEqual(live.cpuTimeMs);
    expect(u.samples).toBeGreaterThan(0);
    expect(t.usage).toBe(u);
    expect(t.stop()).toBe(u); // idempotent
    t.start(); // a new window after stop()
    expect(t.stop()).not.toBe(u);
  });

  it('gives clear errors for stop() before start() and a second start()', () => {
    const t = new tm.ResourceTracker();
    expect(() => t.stop()).toThrow(expect.objectContaining({ code: 'ERR_TRACKER_NOT_STARTED' }));
    t.start();
    expect(() => t.start()).toThrow(expect.objectContaining({ code: 'ERR_TRACKER_RUNNING' }));
    t.stop();
  });

  it('works with Symbol.dispose and Symbol.asyncDispose', async () => {
    const t = new tm.ResourceTracker().start();
    t[Symbol.dispose]();
    expect(t.running).toBe(false);
    expect(t.usage).not.toBeNull();
    const t2 = new tm.ResourceTracker().start();
    await t2[Symbol.asyncDispose]();
    expect(t2.running).toBe(false);
    new tm.ResourceTracker()[Symbol.dispose](); // never started: a no-op
  });
});

describe('lifecycle', () => {
  it('loads in worker_threads (several addon instances at once)', async () => {
    const r = await runChild('worker.cjs', ['3']);
    expect(r.code, r.stderr).toBe(0);
    const { results, mainSnapshot } = lastJson(r.stdout);
    expect(results).toHaveLength(3);
    for (const m of results) {
      expect(m.rss).toBeGreaterThan(0);
      expect(m.cpu).toBeGreaterThan(0);
    }
    expect(mainSnapshot.rssBytes).toBeGreaterThan(0);
  });

  it('exits cleanly and promptly on process.exit() with open windows', async () => {
    const r = await runChild('exit-open-window.cjs', [], { timeoutMs: 10_000 });
    expect(r.timedOut).toBe(false);
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(r.elapsedMs).toBeLessThan(3000);
  });

  it('an idle or running tracker does not keep the process alive', async () => {
    const r = await runChild('idle-tracker.cjs', [], { timeoutMs: 10_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('script done');
  });
});
