import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, recordValidator } from './helpers';
import * as tm from '../dist/index.js';

const schema = JSON.parse(readFileSync(join(root, 'schema/record.schema.json'), 'utf8'));
const validate = recordValidator();

function expectValid(record: unknown): void {
  const ok = validate(record);
  expect(ok, JSON.stringify(validate.errors, null, 2)).toBe(true);
}

describe('toRecord()', () => {
  it('produces a schema-valid, JSON-safe record of a real measurement', () => {
    const { usage } = tm.measureSync(() => Buffer.alloc(8 * 1024 * 1024, 1).length);
    const rec = tm.toRecord(usage);
    expectValid(rec);
    expect(JSON.parse(JSON.stringify(rec))).toEqual(rec);
    expect(rec.schema_version).toBe(tm.RECORD_SCHEMA_VERSION);
    expect(rec.started_at).toBe(new Date(Math.round(usage.startedAt)).toISOString());
    expect(rec.wall_time_seconds).toBeCloseTo(usage.wallTimeMs / 1000, 5);
    expect(rec.cpu_time_seconds).toBeCloseTo(usage.cpuTimeMs / 1000, 5);
    expect(rec.peak_memory_bytes).toBe(usage.peakRssBytes);
    expect(rec.peak_memory_mb).toBe(Math.round((usage.peakRssBytes / 2 ** 20) * 100) / 100);
    expect(rec.rss_start_mb).toBe(Math.round((usage.rssStartBytes / 2 ** 20) * 100) / 100);
    expect(rec.rss_end_mb).toBe(Math.round((usage.rssEndBytes / 2 ** 20) * 100) / 100);
    expect(rec.peak_memory_source).toBe(usage.peakRssSource);
    expect(rec.gpu_available).toBe(tm.hasGpu);
    expect(rec.gpu_memory_peak_bytes).toBeNull();
    expect(rec.gpu_memory_peak_mb).toBeNull();
    expect(rec.gpus).toEqual([]);
  });

  it('converts units exactly: _mb keys are bytes / 2^20 to 2 decimals, durations in seconds', () => {
    const usage: tm.ResourceUsage = {
      wallTimeMs: 1500,
      cpuUserMs: 1000,
      cpuSystemMs: 250,
      cpuTimeMs: 1250,
      cpuPercent: 83.333,
      cpuPercentReason: null,
      threadCpuMs: 900,
      samplerCpuMs: 0.5,
      rssStartBytes: 10 * 2 ** 20,
      rssEndBytes: 12.5 * 2 ** 20,
      peakRssBytes: 3 * 2 ** 30 + 123,
      peakRssSource: 'sampled',
      samples: 150,
      sampleIntervalMs: 10,
      startedAt: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
      endedAt: Date.UTC(2026, 0, 2, 3, 4, 6, 506),
      gpus: [],
      gpuMemoryPeakBytes: null,
      gpuMemoryPeakSource: null,
      gpuEnergyJoules: null,
      gpuSamples: 0,
      gpuSampleIntervalMs: null,
      gpuStale: false,
      gpuStaleReason: null,
      gpuProcessUtilizationPercent: null,
      gpuProcessSampleIntervalMs: null,
      gpuEnergyIntervalMs: null,
      gpuProcessUtilizationIntervalMs: null,
      gpuSamplingNote: null,
    };
    const rec = tm.toRecord(usage);
    expectValid(rec);
    expect(rec).toMatchObject({
      started_at: '2026-01-02T03:04:05.006Z',
      ended_at: '2026-01-02T03:04:06.506Z',
      wall_time_seconds: 1.5,
      cpu_user_seconds: 1,
      cpu_system_seconds: 0.25,
      cpu_time_seconds: 1.25,
      cpu_percent: 83.33,
      peak_memory_bytes: 3 * 2 ** 30 + 123,
      peak_memory_mb: 3072,
      rss_start_mb: 10,
      rss_end_mb: 12.5,
      samples: 150,
      sample_interval_ms: 10,
    });
  });

  it('rejects malformed usage with errors naming the field, never writes garbage', () => {
    const { usage } = tm.measureSync(() => 0);
    expect(() => tm.toRecord(null as any)).toThrow(TypeError);
    expect(() => tm.toRecord({ ...usage, wallTimeMs: NaN })).toThrow(/wallTimeMs/);
    expect(() => tm.toRecord({ ...usage, wallTimeMs: -1 })).toThrow(RangeError);
    expect(() => tm.toRecord({ ...usage, peakRssBytes: Infinity })).toThrow(RangeError);
    expect(() => tm.toRecord({ ...usage, cpuUserMs: '1' as any })).toThrow(TypeError);
    expect(() => tm.toRecord({ ...usage, peakRssSource: 'guess' as any })).toThrow(/peakRssSource/);
    // a GPU value that is not a real measurement becomes null, not a number
    const rec = tm.toRecord({ ...usage, gpuMemoryPeakBytes: NaN as any });
    expect(rec.gpu_memory_peak_bytes).toBeNull();
    expectValid(rec);
  });

  it('ships the schema in the package', () => {
    const require = createRequire(__filename);
    const resolved = require.resolve('taskmeter/record.schema.json', { paths: [root] });
    expect(JSON.parse(readFileSync(resolved, 'utf8')).$id).toBe(schema.$id);
  });
});
