// Property-based tests (fast-check) over the inputs users hand us: options, snapshots, usages, timelines.
// Whatever comes in, the answer is a clear TypeError/RangeError or a record with no NaN, no Infinity, no negative
// duration, valid against the schema.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { recordValidator } from './helpers';
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
        const u = clearError(() => tm.usageBetween(a as unknown as tm.Snapshot, b as unknown as tm.Snapshot)) as tm.ResourceUsage | undefined;
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
    const n = () => fc.oneof({ arbitrary: fc.double({ min: 0, max: 1e300, noNaN: true }), weight: 12 }, { arbitrary: anything, weight: 1 });
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
