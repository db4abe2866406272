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
    expect(rec.peak_memory_mib).toBe(Math.round((usage.peakRssBytes / 2 ** 20) * 100) / 100);
    expect(rec.rss_start_mib).toBe(Math.round((usage.rssStartBytes / 2 ** 20) * 100) / 100);
    expect(rec.rss_end_mib).toBe(Math.round((usage.rssEndBytes / 2 ** 20) * 100) / 100);
    expect(rec.peak_memory_source).toBe(usage.peakRssSource);
    expect(rec.gpu_available).toBe(tm.hasGpu);
    expect(rec.gpu_memory_peak_bytes).toBeNull();
    expect(rec.gpu_memory_peak_mib).toBeNull();
    expect(rec.gpus).toEqual([]);
  });

  it('converts units exactly: _mib keys are bytes / 2^20 to 2 decimals, durations in seconds', () => {
    const usage: tm.ResourceUsage = {
      wallTimeMs: 1500,
      cpuUserMs: 1000,
      cpuSystemMs: 250,
      cpuTimeMs: 1250,
      cpuPercent: 83.333,
      cpuPercentReason: null,
      threadCpuMs: 900,
      samplerCpuMs: 0.5,
      taskCpuMs: 412.3456789,
      taskCpuReason: null,
      overlappingWindows: 3,
      eventLoopUtilization: 0.123456,
      eventLoopUtilizationReason: null,
      heapUsedStartBytes: 5_000_000,
      heapUsedEndBytes: 6_000_000,
      heapUsedPeakBytes: 9_000_000.4,
      heapUsedPeakReason: null,
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
      majorPageFaults: 2,
      minorPageFaults: 1500,
      voluntaryContextSwitches: 10,
      involuntaryContextSwitches: 3,
      fsInputBlocks: 8,
      fsOutputBlocks: 97656,
      ioReadBytes: 4096,
      ioWriteBytes: 50_000_000,
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
      peak_memory_mib: 3072,
      rss_start_mib: 10,
      rss_end_mib: 12.5,
      samples: 150,
      sample_interval_ms: 10,
      task_cpu_seconds: 0.412346,
      overlapping_windows: 3,
      event_loop_utilization: 0.1235,
      heap_used_start_bytes: 5_000_000,
      heap_used_end_bytes: 6_000_000,
      heap_used_peak_bytes: 9_000_000,
      major_page_faults: 2,
      minor_page_faults: 1500,
      voluntary_context_switches: 10,
      involuntary_context_switches: 3,
      fs_input_blocks: 8,
      fs_output_blocks: 97656,
      io_read_bytes: 4096,
      io_write_bytes: 50_000_000,
    });
    // a counter nothing measured (usageBetween, or a usage made before the counters existed) is null, never 0
    const bare = tm.toRecord(tm.usageBetween(tm.snapshot(), tm.snapshot()));
    expect(bare.minor_page_faults).toBeNull();
    expect(bare.io_write_bytes).toBeNull();
    const { majorPageFaults, ...older } = usage;
    expect(tm.toRecord(older as tm.ResourceUsage).major_page_faults).toBeNull();
    expectValid(bare);
  });

  it('schema 3: every MiB field is named _mib, and no _mb name is left in records or the schema', () => {
    expect(tm.RECORD_SCHEMA_VERSION).toBe(3);
    expect(schema.properties.schema_version.const).toBe(3);
    const keys = (o: unknown): string[] =>
      o && typeof o === 'object' ? Object.entries(o).flatMap(([k, v]) => [k, ...keys(v)]) : [];
    const { usage } = tm.measureSync(() => 0);
    const rec = tm.toRecord(usage);
    expect(keys(rec).filter((k) => /_mb$/.test(k))).toEqual([]);
    expect(keys(rec)).toEqual(expect.arrayContaining(['peak_memory_mib', 'rss_start_mib', 'gpu_memory_peak_mib']));
    expect(JSON.stringify(schema)).not.toMatch(/_mb"/);
    // the schema says what became of the old names
    expect(schema.properties.schema_version.description).toMatch(/_mb.*_mib/);
  });

  it('a window record carries its own getrusage counters, schema-valid', () => {
    const { usage } = tm.measureSync(() => Buffer.alloc(32 * 1024 * 1024, 1).length);
    const rec = tm.toRecord(usage);
    expectValid(rec);
    if (process.platform === 'linux') {
      // 32 MiB touched: at least one minor fault per 4 KiB page (fewer only with huge pages)
      expect(rec.minor_page_faults).toBeGreaterThan(0);
      expect(rec.io_read_bytes).toBeNull(); // not asked for (ioBytes)
      expect(tm.toRecord(tm.measureSync(() => 0, { ioBytes: true }).usage).io_read_bytes).not.toBeNull();
    }
  });

  it("Node's figures that a record leaves null have their reason beside them (and none beside a figure)", async () => {
    const plain = tm.toRecord((await tm.measure(async () => 0)).usage);
    const task = tm.toRecord((await tm.measure(async () => 0, { taskCpu: true })).usage);
    const command = tm.toRecord(await tm.measureCommand(process.execPath, ['-e', '0'], { stdio: 'ignore' }));
    for (const rec of [plain, task, command]) {
      expectValid(rec);
      for (const [figure, reason] of [
        ['task_cpu_seconds', 'task_cpu_reason'],
        ['event_loop_utilization', 'event_loop_utilization_reason'],
        ['heap_used_peak_bytes', 'heap_used_peak_reason'],
      ] as const) {
        if (rec[figure] === null) expect(rec[reason], reason).toMatch(/\w/);
        else expect(rec[reason], reason).toBeNull();
      }
    }
    expect(plain.task_cpu_reason).toMatch(/taskCpu/); // not asked for
    expect(task.task_cpu_seconds).not.toBeNull();
    expect(command.event_loop_utilization_reason).toMatch(/another process/);
  });

  it('gpu_reason_code stands beside every gpu_reason', () => {
    const { usage } = tm.measureSync(() => 0);
    const rec = tm.toRecord(usage);
    if (rec.gpu_reason === null) expect(rec.gpu_reason_code).toBeNull();
    else expect(rec.gpu_reason_code).toBe(tm.gpuInfo().reasonCode);
    expect(rec.gpu_reason_code === null).toBe(rec.gpu_reason === null);
  });

  it.runIf(process.platform !== 'win32')(
    "toRecord(measureCommand's result) fills command, exit_code, signal and ended_by",
    async () => {
      const r = await tm.measureCommand('sh', ['-c', 'kill -TERM $$'], { stdio: 'ignore' });
      const rec = tm.toRecord(r);
      expectValid(rec);
      expect(rec).toMatchObject({
        command: ['sh', '-c', 'kill -TERM $$'],
        exit_code: null,
        signal: 'SIGTERM',
        ended_by: null,
        pid: r.pid,
      });
      const t = await tm.measureCommand('sleep', ['5'], { timeout: 100 });
      expect(tm.toRecord(t)).toMatchObject({ command: ['sleep', '5'], signal: 'SIGTERM', ended_by: 'timeout' });
      const ok = tm.toRecord(await tm.measureCommand('true', []));
      expect(ok).toMatchObject({ exit_code: 0, signal: null, ended_by: null });
      // the usage alone gives the usage's record, without the command's fields
      expect(tm.toRecord(r.usage).command).toBeUndefined();
    },
  );

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
