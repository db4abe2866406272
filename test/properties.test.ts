// Property-based tests (fast-check) over the inputs users hand us: options, snapshots, usages, timelines.
// Whatever comes in, the answer is a clear TypeError/RangeError or a record with no NaN, no Infinity, no negative
// duration, valid against the schema.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lastJson, recordValidator, runScenario } from './helpers';
import * as tm from '../dist/index.js';

const validate = recordValidator();

const anything = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1, 60_000, 60_001, 2 ** 53),
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.object({ maxDepth: 1 }),
);

function allFinite(v: unknown): boolean {
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(allFinite);
  if (v && typeof v === 'object') return Object.values(v).every(allFinite);
  return true;
}

function clearError(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (e) {
    expect(e instanceof TypeError || e instanceof RangeError, String(e)).toBe(true);
    expect(String((e as Error).message)).toMatch(/^taskmeter: /);
    return undefined;
  }
}

const snapshotArb = fc.record({
  timeMs: anything,
  epochMs: anything,
  cpuUserMs: anything,
  cpuSystemMs: anything,
  rssBytes: anything,
  vmsBytes: anything,
  peakRssBytes: anything,
  gpus: fc.constant([]),
});
const goodSnapshot = fc.record({
  timeMs: fc.double({ min: 0, max: 1e12, noNaN: true }),
  epochMs: fc.double({ min: 0, max: 4e12, noNaN: true }),
  cpuUserMs: fc.double({ min: 0, max: 1e9, noNaN: true }),
  cpuSystemMs: fc.double({ min: 0, max: 1e9, noNaN: true }),
  rssBytes: fc.double({ min: 0, max: 2 ** 50, noNaN: true }),
  vmsBytes: fc.double({ min: 0, max: 2 ** 50, noNaN: true }),
  peakRssBytes: fc.double({ min: 0, max: 2 ** 50, noNaN: true }),
  gpus: fc.constant([]),
});

describe('properties', () => {
  it('options: accepted only when valid, else a TypeError/RangeError naming the option', () => {
    fc.assert(
      fc.property(anything, (v) => {
        let threw: unknown = null;
        try {
          tm.measureSync(() => 0, { sampleIntervalMs: v as number });
        } catch (e) {
          threw = e;
        }
        const valid = v === undefined || (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 60_000);
        if (valid) expect(threw).toBeNull();
        else {
          expect(threw instanceof TypeError || threw instanceof RangeError).toBe(true);
          expect(String(threw)).toMatch(/sampleIntervalMs/);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('usageBetween(random snapshots) → a clear error or a schema-valid record', () => {
    fc.assert(
      fc.property(fc.oneof(snapshotArb, goodSnapshot), fc.oneof(snapshotArb, goodSnapshot), (a, b) => {
        const u = clearError(() => tm.usageBetween(a as unknown as tm.Snapshot, b as unknown as tm.Snapshot)) as
          | tm.ResourceUsage
          | undefined;
        if (!u) return;
        expect(u.wallTimeMs).toBeGreaterThanOrEqual(0);
        const rec = clearError(() => tm.toRecord(u));
        if (!rec) return;
        expect(allFinite(rec)).toBe(true);
        expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('toRecord(random usage) → a clear error or a schema-valid record with no NaN/Infinity', () => {
    const gpu = fc.record({
      index: anything,
      uuid: anything,
      name: anything,
      memoryUsedPeakBytes: anything,
      processMemoryPeakBytes: anything,
      processMemoryEndBytes: anything,
      processMemoryReason: anything,
      energyJoules: anything,
      energyReason: anything,
      utilizationAvgPercent: anything,
      error: anything,
    });
    // mostly plausible numbers (so that most records get built), sometimes anything at all
    const n = () =>
      fc.oneof(
        { arbitrary: fc.double({ min: 0, max: 1e300, noNaN: true }), weight: 12 },
        { arbitrary: anything, weight: 1 },
      );
    const time = () =>
      fc.oneof(
        { arbitrary: fc.double({ min: 0, max: 4e12, noNaN: true }), weight: 12 },
        { arbitrary: fc.double({ min: 0, max: 1e300, noNaN: true }), weight: 1 },
        { arbitrary: anything, weight: 1 },
      );
    const usage = fc.record({
      wallTimeMs: n(),
      cpuUserMs: n(),
      cpuSystemMs: n(),
      cpuTimeMs: n(),
      cpuPercent: n(),
      rssStartBytes: n(),
      rssEndBytes: n(),
      peakRssBytes: n(),
      peakRssSource: fc.constantFrom('hwm', 'sampled', 'endpoints', 'hwm', 'sampled', 'endpoints', 'x', 3),
      samples: n(),
      sampleIntervalMs: n(),
      startedAt: time(),
      endedAt: time(),
      gpus: fc.oneof(fc.array(gpu, { maxLength: 3 }), anything),
      gpuMemoryPeakBytes: anything,
      gpuMemoryPeakSource: anything,
      gpuStale: anything,
      pid: fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 6 },
        { arbitrary: fc.integer({ min: 1, max: 1 << 22 }), weight: 6 },
        { arbitrary: anything, weight: 1 },
      ),
      maxRssBytes: anything,
      treePeakRssBytes: anything,
      processes: anything,
    });
    let built = 0;
    fc.assert(
      fc.property(usage, (u) => {
        const rec = clearError(() => tm.toRecord(u as unknown as tm.ResourceUsage));
        if (!rec) return;
        built++;
        expect(allFinite(rec)).toBe(true);
        expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
        expect(JSON.parse(JSON.stringify(rec))).toEqual(rec);
      }),
      { numRuns: 2000 },
    );
    expect(built).toBeGreaterThan(10); // the property reached the record-building path, not only the errors
  });

  it('renderTimeline(random points) never writes NaN or Infinity into the chart', () => {
    const num = fc.oneof(fc.constant(null), fc.double({ min: 0, max: 2 ** 45, noNaN: true }));
    const point = fc.record({
      tMs: fc.double({ min: 0, max: 1e7, noNaN: true }),
      rssBytes: num,
      treeRssBytes: num,
      gpuProcessMemoryBytes: num,
      gpuUtilizationPercent: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 100, noNaN: true })),
      cpuPercent: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 6400, noNaN: true })),
    });
    fc.assert(
      fc.property(fc.array(point, { maxLength: 50 }), fc.constantFrom('svg', 'html', 'csv'), (points, format) => {
        points.sort((a, b) => a.tMs - b.tMs);
        const out = tm.renderTimeline({ startedAt: 0, sampleIntervalMs: 10, points }, { format: format as 'svg' });
        expect(out).not.toMatch(/NaN|Infinity/);
      }),
      { numRuns: 300 },
    );
  });
});

// ---- Invariants (issue 10), enforced in src/usage.ts (peakAtLeast, cpuRate) and checked here.
import { buildUsage, cores, CPU_CLOCK_RESOLUTION_MS, cpuRate, peakAtLeast } from '../dist/usage.js';
import type { WindowStats } from '../dist/usage.js';

describe('invariants', () => {
  const bytes = fc.oneof(fc.double({ min: 0, max: 2 ** 50, noNaN: true }), fc.constant(NaN));

  it('peakAtLeast is never below any of its values (NaN only when every value is)', () => {
    fc.assert(
      fc.property(fc.array(bytes, { minLength: 2, maxLength: 4 }), (vs) => {
        const p = peakAtLeast(vs[0], vs[1], vs[2], vs[3]);
        const known = vs.filter((v) => !Number.isNaN(v));
        if (known.length === 0) expect(p).toBeNaN();
        else for (const v of known) expect(p).toBeGreaterThanOrEqual(v);
      }),
      { numRuns: 2000 },
    );
  });

  it("a window's peak is never below its start, its end or any sample it took", () => {
    const snap = (rss: number, peak: number, t: number) => ({
      timeMs: t,
      epochMs: t,
      cpuUserMs: 0,
      cpuSystemMs: 0,
      rssBytes: rss,
      vmsBytes: rss,
      peakRssBytes: peak,
      threadCpuMs: 0,
      gpus: [],
    });
    const pos = fc.double({ min: 0, max: 2 ** 50, noNaN: true });
    fc.assert(
      fc.property(pos, pos, pos, pos, pos, fc.integer({ min: 0, max: 1000 }), (rs, ps, re, pe, maxRss, samples) => {
        const win = {
          maxRssBytes: samples > 0 ? maxRss : NaN,
          samples,
          intervalMs: 10,
          gpuSamples: 0,
          gpuIntervalMs: NaN,
          gpuStaleMs: 0,
          samplerCpuMs: 0,
          gpus: [],
          tree: {},
        } as unknown as WindowStats;
        const u = buildUsage(snap(rs, ps, 0), snap(re, pe, 100), win);
        expect(u.peakRssBytes).toBeGreaterThanOrEqual(rs);
        expect(u.peakRssBytes).toBeGreaterThanOrEqual(re);
        if (samples > 0) expect(u.peakRssBytes).toBeGreaterThanOrEqual(maxRss);
      }),
      { numRuns: 3000 },
    );
  });

  it('cpuPercent is null with a reason below the clock resolution, else within 0 … cores × 100', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1e7, noNaN: true }),
        fc.double({ min: 0, max: 1e7, noNaN: true }),
        (cpu, wall) => {
          const r = cpuRate(cpu, wall);
          if (wall < CPU_CLOCK_RESOLUTION_MS) {
            expect(r.cpuPercent).toBeNull();
            expect(r.cpuPercentReason).toMatch(/shorter than the CPU clock's resolution/);
          } else if (r.cpuPercent === null) {
            expect((cpu / wall) * 100).toBeGreaterThan(cores() * 100);
            expect(r.cpuPercentReason).toMatch(/more than \d+ cores/);
          } else {
            expect(r.cpuPercent).toBeGreaterThanOrEqual(0);
            expect(r.cpuPercent).toBeLessThanOrEqual(cores() * 100);
            expect(r.cpuPercentReason).toBeNull();
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('a window of a few µs reports cpuPercent null with the reason, in the usage and in its record', () => {
    const { usage } = tm.measureSync(() => 0);
    expect(usage.wallTimeMs).toBeLessThan(CPU_CLOCK_RESOLUTION_MS);
    expect(usage.cpuPercent).toBeNull();
    expect(usage.cpuPercentReason).toMatch(/shorter than the CPU clock's resolution/);
    const rec = tm.toRecord(usage);
    expect(rec.cpu_percent).toBeNull();
    expect(rec.cpu_percent_reason).toBe(usage.cpuPercentReason);
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
  });

  it('snapshot().peakRssBytes is never below snapshot().rssBytes, while memory grows and shrinks', () => {
    const keep: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 2) keep.pop();
      else keep.push(Buffer.alloc(256 * 1024, 1)); // touched pages: RSS moves in steps
      const s = tm.snapshot();
      expect(s.peakRssBytes).toBeGreaterThanOrEqual(s.rssBytes);
    }
  });

  it("an outer window's peak is never below the peak of a window nested in it", () => {
    for (let run = 0; run < 6; run++) {
      const outer = new tm.ResourceTracker({ sampleIntervalMs: 50 }).start();
      const { usage: inner } = tm.measureSync(
        () => {
          const bufs: Buffer[] = [];
          const end = Date.now() + 30;
          while (Date.now() < end) bufs.push(Buffer.alloc(64 * 1024, 2));
          return bufs.length;
        },
        { sampleIntervalMs: 1 },
      );
      const o = outer.stop();
      expect(o.peakRssBytes).toBeGreaterThanOrEqual(inner.peakRssBytes);
    }
  });

  it("an outer window's peak covers a nested window's endpoints even when no sample falls between them", async () => {
    // Deterministic: no RSS thread (its start fails, as under a pids limit), so the only readings are the windows'
    // own edges. The RSS rises (150 MiB) for the inner window's life and falls before the outer window ends, below
    // a lifetime high-water mark raised beforehand, so neither window's peak comes from the kernel's mark.
    const r = await runScenario(async ({ tm, require, MiB }) => {
      const { native } = require('../../dist/binding.js');
      require('node:v8').setFlagsFromString('--expose-gc');
      const gc = require('node:vm').runInNewContext('gc');
      const settle = () => new Promise((resolve) => setTimeout(resolve, 50)); // freed backing stores are unmapped
      native.testHook('failThreadStarts', 1000);
      let big: Buffer | null = Buffer.alloc(300 * MiB, 1);
      big = null;
      gc();
      await settle();
      const outer = new tm.ResourceTracker().start();
      let mid: Buffer | null = Buffer.alloc(150 * MiB, 1);
      const { usage: inner } = tm.measureSync(() => 0);
      mid = null;
      gc();
      await settle();
      const o = outer.stop();
      return {
        threadError: native.samplerState().threadError,
        big,
        mid,
        outer: { peak: o.peakRssBytes, end: o.rssEndBytes, samples: o.samples, source: o.peakRssSource },
        inner: { peak: inner.peakRssBytes, source: inner.peakRssSource },
      };
    });
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    // the premise: no sampler thread, and the RSS the inner window saw was gone by the outer window's end
    expect(out.threadError).toMatch(/could not start the RSS sampler thread/);
    expect(out.outer.samples).toBe(0);
    expect(out.inner.source).toBe('endpoints');
    expect(out.inner.peak - out.outer.end).toBeGreaterThan(100 * 2 ** 20);
    // the property
    expect(out.outer.peak).toBeGreaterThanOrEqual(out.inner.peak);
    expect(out.outer.source).toBe('sampled');
  });

  it('measureSync(fn) with fn returning a promise throws a TypeError pointing to measure()', () => {
    let err: unknown;
    try {
      tm.measureSync(async () => 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(/returned a promise.*measure\(fn\)/);
    expect((err as { code: string }).code).toBe('ERR_TASKMETER_ASYNC_FN');
    expect((err as { usage: tm.ResourceUsage }).usage.wallTimeMs).toBeGreaterThanOrEqual(0);
    // a plain thenable too
    // biome-ignore lint/suspicious/noThenProperty: a plain thenable is the input under test
    expect(() => tm.measureSync(() => ({ then() {} }))).toThrow(TypeError);
  });

  it('usage.threadCpuMs is the calling thread alone: a busy worker does not show in it', async () => {
    const { Worker } = await import('node:worker_threads');
    const w = new Worker(
      "require('node:worker_threads').parentPort.postMessage('spinning'); const end = Date.now() + 500; while (Date.now() < end);",
      { eval: true },
    );
    await new Promise((r) => w.once('message', r));
    const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 300)));
    await new Promise((r) => w.on('exit', r));
    // the process CPU holds the worker's spin; this thread only waited
    expect(usage.cpuTimeMs).toBeGreaterThan(50);
    expect(usage.threadCpuMs).not.toBeNull();
    expect(usage.threadCpuMs!).toBeLessThan(usage.cpuTimeMs / 2);
    expect(tm.toRecord(usage).thread_cpu_seconds).toBeCloseTo(usage.threadCpuMs! / 1000, 5);
  });
});
