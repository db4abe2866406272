// Node's own figures for an in-process window: event-loop utilization between its edges, and the V8 heap used at
// its start and end with a sampled peak (null, with the reason, where no reading fell inside the window).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as tm from '../dist/index.js';
import { native } from '../dist/binding.js';
import { HeapSampler, MaxSince } from '../dist/nodefigures.js';
import { lastJson, MiB, recordValidator, run, runScenario } from './helpers';

function burn(ms: number): void {
  const end = native.threadCpuMs() + ms;
  while (native.threadCpuMs() < end);
}
const tick = () => new Promise<void>((r) => setImmediate(r));
/** About `mib` MiB of live JS objects (on the V8 heap, unlike a Buffer's bytes). */
const objects = (mib: number) => Array.from({ length: (mib * MiB) / 32 }, (_, i) => ({ i }));

describe('eventLoopUtilization', () => {
  it('is 1 for a window that never let the loop turn, and low for one that waited', async () => {
    const busy = tm.measureSync(() => burn(20));
    expect(busy.usage.eventLoopUtilization).toBe(1);
    expect(busy.usage.eventLoopUtilizationReason).toBeNull();
    const idle = await tm.measure(() => new Promise((r) => setTimeout(r, 300)));
    expect(idle.usage.eventLoopUtilization).toBeGreaterThanOrEqual(0);
    expect(idle.usage.eventLoopUtilization!).toBeLessThan(0.5);
    expect(tm.toRecord(idle.usage).event_loop_utilization).toBeCloseTo(idle.usage.eventLoopUtilization!, 3);
  });

  it('is null with the reason in a window opened before the event loop started', async () => {
    const code = `
      const tm = require(${JSON.stringify(require.resolve('../dist/index.js'))});
      const { usage } = tm.measureSync(() => 0);
      console.log(JSON.stringify({ elu: usage.eventLoopUtilization, reason: usage.eventLoopUtilizationReason }));`;
    const r = await run(process.execPath, ['-e', code]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out.elu).toBeNull();
    expect(out.reason).toMatch(/event loop had not started/);
  });
});

describe('heapUsedStartBytes, heapUsedEndBytes, heapUsedPeakBytes', () => {
  it('shows the heap a synchronous function left behind, and no peak: nothing read the heap inside it', () => {
    let kept: unknown[] = [];
    const { usage } = tm.measureSync(() => {
      kept = objects(16);
    });
    expect(usage.heapUsedEndBytes! - usage.heapUsedStartBytes!).toBeGreaterThan(8 * MiB);
    expect(usage.heapUsedPeakBytes).toBeNull();
    expect(usage.heapUsedPeakReason).toMatch(/no heap reading fell inside the window/);
    expect(kept.length).toBeGreaterThan(0);
    const rec = tm.toRecord(usage);
    expect(rec.heap_used_start_bytes).toBe(usage.heapUsedStartBytes);
    expect(rec.heap_used_end_bytes).toBe(usage.heapUsedEndBytes);
    expect(rec.heap_used_peak_bytes).toBeNull();
    expect(recordValidator()(rec)).toBe(true);
  });

  it("an outer window's heap peak is never below what a window nested in it read", () => {
    const outer = new tm.ResourceTracker().start();
    let kept: unknown[] | null = null;
    const { usage: inner } = tm.measureSync(() => {
      kept = objects(16);
    });
    kept = null; // garbage now: the outer window's end may read less than the inner's
    const o = outer.stop();
    expect(kept).toBeNull();
    expect(o.heapUsedPeakBytes).not.toBeNull();
    expect(o.heapUsedPeakBytes!).toBeGreaterThanOrEqual(inner.heapUsedEndBytes!);
    expect(o.heapUsedPeakBytes!).toBeGreaterThanOrEqual(Math.max(o.heapUsedStartBytes!, o.heapUsedEndBytes!));
  });

  it('a taskCpu task is sampled at its switches: an allocating task alone has a peak', async () => {
    const { usage } = await tm.measure(
      async () => {
        const keep: unknown[] = [];
        for (let i = 0; i < 5; i++) {
          keep.push(objects(2));
          burn(2);
          await tick();
        }
        return keep.length;
      },
      { taskCpu: true },
    );
    expect(usage.heapUsedPeakReason).toBeNull();
    expect(usage.heapUsedPeakBytes!).toBeGreaterThanOrEqual(
      Math.max(usage.heapUsedStartBytes!, usage.heapUsedEndBytes!),
    );
  });

  it('tracker.usage while running reads the heap too', () => {
    const t = new tm.ResourceTracker().start();
    const live = t.usage!;
    const done = t.stop();
    expect(live.heapUsedEndBytes).toBeGreaterThan(0);
    expect(done.heapUsedPeakBytes).not.toBeNull(); // the live read fell inside the window
  });
});

describe('MaxSince (the heap readings shared by the windows of a thread)', () => {
  it("answers each window's largest reading since it opened as brute force does; past its cap, never higher", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e9, noNaN: true }), { maxLength: 300 }),
        fc.integer({ min: 2, max: 400 }),
        (values, cap) => {
          const m = new MaxSince(cap);
          for (const v of values) m.push(v);
          expect(m.size).toBeLessThanOrEqual(cap);
          for (let from = 0; from <= values.length; from++) {
            const rest = values.slice(from);
            const got = m.maxSince(from);
            if (rest.length === 0) expect(got).toBeNaN();
            else if (cap >= values.length) expect(got).toBe(Math.max(...rest));
            else expect(got).toBeLessThanOrEqual(Math.max(...rest));
          }
          if (values.length > 0) {
            expect(m.maxSince(values.length - 1)).toBe(values[values.length - 1]);
            expect(m.maxSince(0)).toBe(Math.max(...values)); // the front entry (the oldest window's answer) stays
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("HeapSampler (a thread's heap readings, kept for its open windows)", () => {
  it('a window opened alone keeps its exact peak however many readings fall inside it', () => {
    let heap = 1;
    const h = new HeapSampler(() => heap, 8);
    const outer = h.open();
    heap = 2e9; // the spike, then a slow fall through many distinct readings, with windows opening and closing
    h.read();
    for (let k = 1; k <= 1000; k++) {
      heap = 1e9 - 2 * k;
      const inner = h.open();
      heap = 1e9 - 2 * k - 1;
      h.read();
      expect(h.readings.maxSince(inner.seq)).toBe(1e9 - 2 * k);
      h.close(inner.seq);
      expect(h.readings.size).toBeLessThanOrEqual(8);
    }
    expect(h.readings.maxSince(outer.seq)).toBe(2e9);
    expect(h.openWindows).toBe(1);
    h.close(outer.seq);
    expect(h.openWindows).toBe(0);
    expect(h.readings.size).toBe(0); // the last window to close takes the readings with it
  });

  it('windows opening and closing in any order: the oldest (opened alone) exact, the others never higher', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.nat(1000), fc.nat(1e6)), { maxLength: 300 }),
        fc.integer({ min: 2, max: 12 }),
        (ops, cap) => {
          let heap = 0;
          const h = new HeapSampler(() => heap, cap);
          const all: number[] = []; // every reading, by number
          const open: number[] = []; // the open windows' numbers, oldest first
          let frontWasFirst = false;
          const brute = (from: number) => Math.max(...all.slice(from));
          for (const [op, pick, value] of ops) {
            heap = value;
            if (op === 0) {
              if (open.length === 0) frontWasFirst = true;
              const r = h.open();
              all[r.seq] = value;
              open.push(r.seq);
            } else if (op === 1 && open.length > 0) {
              const i = pick % open.length;
              h.close(open[i]);
              open.splice(i, 1);
              if (i === 0) frontWasFirst = false;
              if (open.length === 0) expect(h.readings.size).toBe(0);
            } else {
              all[h.read().seq] = value;
            }
            expect(h.openWindows).toBe(open.length);
            expect(h.readings.size).toBeLessThanOrEqual(cap);
            for (const from of open) expect(h.readings.maxSince(from)).toBeLessThanOrEqual(brute(from));
            if (frontWasFirst) expect(h.readings.maxSince(open[0])).toBe(brute(open[0]));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a window whose owner was garbage-collected while open leaves the thread's heap readings as a close does", async () => {
    const r = await runScenario(async ({ tm, require }) => {
      const { heapSampler } = require('../../dist/nodefigures.js');
      require('node:v8').setFlagsFromString('--expose-gc');
      const gc = require('node:vm').runInNewContext('gc');
      (() => {
        new tm.ResourceTracker().start(); // dropped while open
      })();
      const during = { open: heapSampler.openWindows, readings: heapSampler.readings.size };
      for (let i = 0; i < 50 && heapSampler.openWindows > 0; i++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return { during, open: heapSampler.openWindows, readings: heapSampler.readings.size };
    });
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.during).toEqual({ open: 1, readings: 1 });
    expect(out.open).toBe(0);
    expect(out.readings).toBe(0);
  });
});
