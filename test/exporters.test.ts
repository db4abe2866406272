// The exporters on the real SDKs: @opentelemetry/sdk-metrics with an in-memory exporter, and prom-client behind a
// real HTTP server on 127.0.0.1 — with the fake NVML for the GPU instruments, and on a GPU-less host. Each scenario
// runs in a child process (runScenario), so the GPU environment of the test applies.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as tm from '../dist/index.js';
import { fakeNvml, gpuEnv, lastJson, MiB, runScenario, type Scenario, writeFakeNvmlScenario } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'taskmeter-exporters-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const UUID = 'GPU-11111111-2222-3333-4444-555555555555';

function envWithGpu(): NodeJS.ProcessEnv {
  const scenario = writeFakeNvmlScenario(
    work,
    [
      'count=1',
      'dev0.name=Fake H100',
      `dev0.uuid=${UUID}`,
      `dev0.total=${80 * 1024 * MiB}`,
      `dev0.used=${3 * 1024 * MiB}`,
      'dev0.util=42',
      'dev0.power_mw=275000',
      `dev0.procs=999:${MiB},self:${256 * MiB}`,
      'dev0.putil=self:30:5,999:60:60',
    ].join('\n'),
  );
  return gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
}
const envWithoutGpu = () => gpuEnv({ TASKMETER_DISABLE_GPU: '1' });

/** Runs an exporter scenario in a fresh process (so the GPU environment of the test applies); returns its JSON. */
async function child(scenario: Scenario, env: NodeJS.ProcessEnv): Promise<any> {
  const r = await runScenario(scenario, { env, timeoutMs: 30_000 });
  expect(r.code, r.stderr).toBe(0);
  return lastJson(r.stdout);
}

// InstrumentType and DataPointType of @opentelemetry/sdk-metrics
const OBSERVABLE_COUNTER = 'OBSERVABLE_COUNTER';
const OBSERVABLE_UP_DOWN_COUNTER = 'OBSERVABLE_UP_DOWN_COUNTER';
const OBSERVABLE_GAUGE = 'OBSERVABLE_GAUGE';
const HISTOGRAM = 'HISTOGRAM';

// The real SDK with an in-memory exporter: what one measured task and the observable instruments export.
const otel: Scenario = async ({ tm, require }) => {
  const {
    MeterProvider,
    PeriodicExportingMetricReader,
    InMemoryMetricExporter,
    AggregationTemporality,
  } = require('@opentelemetry/sdk-metrics');
  const { registerTaskmeterMetrics } = require('../../dist/exporters/otel.js');
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ readers: [reader] });
  const errors: string[] = [];
  process.on('uncaughtException', (e) => errors.push(String(e)));
  const metrics = registerTaskmeterMetrics(provider.getMeter('taskmeter-test'), { gpuIntervalMs: 20 });
  await new Promise((r) => setTimeout(r, 200));
  // 1.5 s: per-process GPU utilization is read about once a second (at a 50 ms interval the GPU thread's budget
  // leaves room for it even on a loaded machine)
  const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 1500)), { sampleIntervalMs: 50 });
  metrics.recordUsage(usage, { task: 'sleep' });
  await reader.forceFlush();
  const out = [];
  for (const rm of exporter.getMetrics()) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        out.push({
          name: m.descriptor.name,
          unit: m.descriptor.unit,
          type: m.descriptor.type,
          dataPointType: m.dataPointType,
          isMonotonic: m.isMonotonic,
          points: m.dataPoints.map((p: any) => ({ attributes: p.attributes, value: p.value })),
        });
      }
    }
  }
  metrics.unregister();
  await provider.shutdown();
  return { metrics: out, errors, hasGpu: tm.hasGpu };
};

describe('OpenTelemetry (taskmeter/otel)', () => {
  it('exports the semantic-convention names, units and instrument kinds, GPU ones through the fake NVML', async () => {
    const { metrics, errors, hasGpu } = await child(otel, envWithGpu());
    expect(hasGpu).toBe(true);
    expect(errors).toEqual([]);
    const by = Object.fromEntries(metrics.map((m: any) => [m.name, m]));
    const expectMetric = (name: string, unit: string, type: string) => {
      expect(by[name], name).toBeDefined();
      expect(by[name].unit, name).toBe(unit);
      expect(by[name].type, name).toBe(type);
    };
    expectMetric('process.cpu.time', 's', OBSERVABLE_COUNTER);
    expectMetric('process.memory.usage', 'By', OBSERVABLE_UP_DOWN_COUNTER);
    expectMetric('process.memory.virtual', 'By', OBSERVABLE_UP_DOWN_COUNTER);
    expectMetric('taskmeter.process.memory.peak', 'By', OBSERVABLE_GAUGE);
    expectMetric('hw.gpu.memory.usage', 'By', OBSERVABLE_UP_DOWN_COUNTER);
    expectMetric('hw.gpu.memory.limit', 'By', OBSERVABLE_UP_DOWN_COUNTER);
    expectMetric('hw.gpu.utilization', '1', OBSERVABLE_GAUGE);
    expectMetric('hw.power', 'W', OBSERVABLE_GAUGE);
    expectMetric('hw.energy', 'J', OBSERVABLE_COUNTER);
    expectMetric('taskmeter.gpu.process.memory.usage', 'By', OBSERVABLE_UP_DOWN_COUNTER);
    for (const h of ['taskmeter.task.duration', 'taskmeter.task.cpu.time']) expectMetric(h, 's', HISTOGRAM);
    expectMetric('taskmeter.task.memory.peak', 'By', HISTOGRAM);
    expectMetric('taskmeter.task.gpu.memory.peak', 'By', HISTOGRAM);
    expectMetric('taskmeter.task.gpu.energy', 'J', HISTOGRAM);
    expectMetric('taskmeter.task.gpu.process.utilization', '1', HISTOGRAM);

    const modes = by['process.cpu.time'].points.map((p: any) => p.attributes['cpu.mode']).sort();
    expect(modes).toEqual(['system', 'user']);
    expect(by['process.cpu.time'].points.every((p: any) => p.value > 0)).toBe(true);
    expect(by['process.memory.usage'].points[0].value).toBeGreaterThan(10 * MiB);
    const gpuAttrs = { 'hw.id': UUID, 'hw.name': 'Fake H100', 'hw.type': 'gpu' };
    expect(by['hw.gpu.memory.usage'].points).toEqual([{ attributes: gpuAttrs, value: 3 * 1024 * MiB }]);
    expect(by['hw.gpu.memory.limit'].points).toEqual([{ attributes: gpuAttrs, value: 80 * 1024 * MiB }]);
    expect(by['hw.gpu.utilization'].points).toEqual([{ attributes: gpuAttrs, value: 0.42 }]); // a ratio, not %
    expect(by['hw.power'].points).toEqual([{ attributes: gpuAttrs, value: 275 }]);
    expect(by['taskmeter.gpu.process.memory.usage'].points).toEqual([{ attributes: gpuAttrs, value: 256 * MiB }]);
    expect(by['hw.energy'].points[0].value).toBeGreaterThan(0);
    const duration = by['taskmeter.task.duration'].points[0];
    expect(duration.attributes).toEqual({ task: 'sleep' });
    expect(duration.value.count).toBe(1);
    expect(duration.value.sum).toBeGreaterThan(0.09);
    expect(by['taskmeter.task.gpu.memory.peak'].points[0].value.sum).toBe(256 * MiB);
    // the task's own SM utilization (30 %), as a ratio, not the other process's 60 %
    expect(by['taskmeter.task.gpu.process.utilization'].points[0].value.sum).toBeCloseTo(0.3, 6);
  });

  it('a GPU-less host exports no GPU series and raises no errors', async () => {
    const { metrics, errors, hasGpu } = await child(otel, envWithoutGpu());
    expect(hasGpu).toBe(false);
    expect(errors).toEqual([]);
    for (const m of metrics) {
      if (m.name.startsWith('hw.') || m.name.startsWith('taskmeter.gpu.') || m.name.startsWith('taskmeter.task.gpu.')) {
        expect(m.points, m.name).toEqual([]);
      }
    }
    expect(metrics.find((m: any) => m.name === 'process.memory.usage').points).toHaveLength(1);
  });

  it('rejects what is not a meter', async () => {
    const { registerTaskmeterMetrics } = await import('../dist/exporters/otel.js');
    expect(() => registerTaskmeterMetrics({} as any)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
    );
  });
});

/** A strict reader of the Prometheus text exposition format (0.0.4): every line must parse. */
function parseExposition(text: string) {
  const types = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$/.exec(line);
    if (m) continue;
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      types.set(m[1], m[2]);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.eE+]+|NaN|[+-]Inf)$/.exec(line);
    if (!m) throw new Error(`unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      for (const part of m[2].match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) {
        const eq = part.indexOf('=');
        labels[part.slice(0, eq)] = JSON.parse(part.slice(eq + 1));
      }
    }
    const family = m[1].replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]) && !types.has(family)) throw new Error(`sample without a TYPE: ${line}`);
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { types, samples };
}

// prom-client behind a real HTTP server on 127.0.0.1, beside collectDefaultMetrics: what a scrape gets.
const prometheus: Scenario = async ({ tm, require }) => {
  const http = require('node:http');
  const prom = require('prom-client');
  const { createTaskmeterCollector } = require('../../dist/exporters/prometheus.js');
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry });
  const collector = createTaskmeterCollector({ registry, gpuIntervalMs: 20 });
  await new Promise((r) => setTimeout(r, 200));
  // 1.5 s: per-process GPU utilization is read about once a second (see the OpenTelemetry scenario)
  const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 1500)), { sampleIntervalMs: 50 });
  collector.observeUsage(usage, { task: 'sleep' });
  const server = http.createServer(async (_req: unknown, res: any) => {
    res.setHeader('content-type', registry.contentType);
    res.end(await registry.metrics());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  const resp = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await resp.text();
  server.close();
  collector.unregister();
  const after = await registry.metrics();
  return {
    status: resp.status,
    contentType: resp.headers.get('content-type'),
    text,
    afterHasTaskmeter: after.includes('taskmeter_'),
    hasGpu: tm.hasGpu,
  };
};

describe('Prometheus (taskmeter/prometheus)', () => {
  it('serves parseable metrics with the GPU series, beside collectDefaultMetrics', async () => {
    const { status, contentType, text, afterHasTaskmeter, hasGpu } = await child(prometheus, envWithGpu());
    expect(hasGpu).toBe(true);
    expect(status).toBe(200);
    expect(contentType).toMatch(/text\/plain/);
    const { types, samples } = parseExposition(text);
    const one = (name: string, labels: Record<string, string> = {}) => {
      const s = samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
      expect(s, `${name} ${JSON.stringify(labels)}`).toHaveLength(1);
      return s[0].value;
    };
    expect(types.get('taskmeter_process_cpu_seconds_total')).toBe('counter');
    expect(one('taskmeter_process_cpu_seconds_total', { mode: 'user' })).toBeGreaterThan(0);
    expect(one('taskmeter_process_cpu_seconds_total', { mode: 'system' })).toBeGreaterThanOrEqual(0);
    expect(one('taskmeter_process_resident_memory_peak_bytes')).toBeGreaterThan(10 * MiB);
    expect(one('taskmeter_gpu_memory_used_bytes', { uuid: UUID, name: 'Fake H100' })).toBe(3 * 1024 * MiB);
    expect(one('taskmeter_gpu_process_memory_bytes', { uuid: UUID })).toBe(256 * MiB);
    expect(one('taskmeter_gpu_utilization_ratio', { uuid: UUID })).toBe(0.42);
    expect(one('taskmeter_gpu_power_watts', { uuid: UUID })).toBe(275);
    expect(types.get('taskmeter_gpu_energy_joules_total')).toBe('counter');
    expect(one('taskmeter_gpu_energy_joules_total', { uuid: UUID })).toBeGreaterThan(0);
    expect(types.get('taskmeter_task_duration_seconds')).toBe('histogram');
    expect(one('taskmeter_task_duration_seconds_count', { task: 'sleep' })).toBe(1);
    expect(types.get('taskmeter_task_gpu_process_utilization_ratio')).toBe('histogram');
    expect(one('taskmeter_task_gpu_process_utilization_ratio_sum', { task: 'sleep' })).toBeCloseTo(0.3, 6);
    // prom-client's own default metrics are there too, under their names
    expect(types.get('process_cpu_seconds_total')).toBe('counter');
    expect(afterHasTaskmeter).toBe(false); // unregister() removed ours
  });

  it('a GPU-less host exports no GPU series and raises no errors', async () => {
    const { text, hasGpu } = await child(prometheus, envWithoutGpu());
    expect(hasGpu).toBe(false);
    const { samples } = parseExposition(text);
    expect(samples.filter((s) => s.name.startsWith('taskmeter_gpu_'))).toEqual([]);
    expect(samples.some((s) => s.name === 'taskmeter_process_resident_memory_bytes')).toBe(true);
  });

  it('validates its options', async () => {
    const { createTaskmeterCollector } = await import('../dist/exporters/prometheus.js');
    const code = (options: object) => {
      try {
        createTaskmeterCollector(options as any);
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return 'did not throw';
    };
    expect(code({ prefix: 'bad prefix' })).toBe('ERR_INVALID_ARG_VALUE');
    expect(code({ prefix: 5 })).toBe('ERR_INVALID_ARG_TYPE');
    expect(code({ labelNames: ['ok', 'not ok'] })).toBe('ERR_INVALID_ARG_VALUE');
    expect(code({ labelNames: 'task' })).toBe('ERR_INVALID_ARG_TYPE');
    expect(code({ gpuIntervalMs: 5 })).toBe('ERR_OUT_OF_RANGE');
    expect(code({ registry: {} })).toBe('ERR_INVALID_ARG_TYPE');
    expect(code({ labels: ['task'] })).toBe('ERR_INVALID_ARG_VALUE');
  });
});

describe('task histogram buckets fit tasks (ms to hours, MiB to TiB)', () => {
  // Real usages with the figures set to what long and big tasks produce.
  const usageWith = (wallTimeMs: number, peakRssBytes: number): tm.ResourceUsage => {
    const { usage } = tm.measureSync(() => 0);
    return { ...usage, wallTimeMs, cpuTimeMs: wallTimeMs / 2, peakRssBytes };
  };
  const tasks = [usageWith(5, 64 * MiB), usageWith(1200, 3 * 1024 * MiB), usageWith(2 * 3600 * 1000, 700 * 1024 * MiB)];
  // Which bucket (index into counts) a value fell in, for boundaries b: (b[i-1], b[i]].
  const bucketOf = (bounds: number[], v: number) => bounds.findIndex((b) => v <= b);

  it('OpenTelemetry: the SDK takes the advised boundaries; 5 ms, 1.2 s and 2 h land in different finite buckets', async () => {
    const { MeterProvider, MetricReader, DataPointType } = await import('@opentelemetry/sdk-metrics');
    const { registerTaskmeterMetrics } = await import('../dist/exporters/otel.js');
    class Reader extends MetricReader {
      protected async onForceFlush() {}
      protected async onShutdown() {}
    }
    const reader = new Reader();
    const provider = new MeterProvider({ readers: [reader] });
    const metrics = registerTaskmeterMetrics(provider.getMeter('buckets'), { gpuIntervalMs: 1000 });
    for (const u of tasks) metrics.recordUsage(u, { task: 't' });
    const { resourceMetrics } = await reader.collect();
    metrics.unregister();
    await provider.shutdown();
    const all = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const hist = (name: string) => {
      const m = all.find((x) => x.descriptor.name === name)!;
      expect(m.dataPointType, name).toBe(DataPointType.HISTOGRAM);
      return (m.dataPoints[0].value as { buckets: { boundaries: number[]; counts: number[] } }).buckets;
    };
    const duration = hist('taskmeter.task.duration');
    expect(duration.boundaries[0]).toBe(0.001);
    expect(duration.boundaries.at(-1)).toBeGreaterThanOrEqual(4 * 3600);
    const occupied = duration.counts.flatMap((c, i) => (c > 0 ? [i] : []));
    expect(occupied).toHaveLength(3);
    expect(occupied.at(-1)).toBeLessThan(duration.boundaries.length); // not the overflow bucket
    expect(occupied).toEqual([0.005, 1.2, 7200].map((v) => bucketOf(duration.boundaries, v)));
    const memory = hist('taskmeter.task.memory.peak');
    expect(memory.boundaries[0]).toBe(MiB);
    expect(memory.boundaries.at(-1)).toBe(1024 * 1024 * MiB);
    const memOccupied = memory.counts.flatMap((c, i) => (c > 0 ? [i] : []));
    expect(memOccupied).toHaveLength(3);
    expect(memOccupied.at(-1)).toBeLessThan(memory.boundaries.length);
    expect(hist('taskmeter.task.cpu.time').boundaries).toEqual(duration.boundaries);
  });

  it('Prometheus: the same boundaries; each task in its own finite bucket', async () => {
    const prom = await import('prom-client');
    const { createTaskmeterCollector } = await import('../dist/exporters/prometheus.js');
    const registry = new prom.Registry();
    const collector = createTaskmeterCollector({ registry });
    for (const u of tasks) collector.observeUsage(u, { task: 't' });
    const text = await registry.metrics();
    collector.unregister();
    const buckets = (name: string) =>
      [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)",task="t"\\} (\\d+)$`, 'gm'))].map((m) => ({
        le: m[1] === '+Inf' ? Infinity : Number(m[1]),
        count: Number(m[2]),
      }));
    const d = buckets('taskmeter_task_duration_seconds');
    expect(d[0].le).toBe(0.001);
    // Cumulative counts: the step from 0 to 3 happens in three separate places, all below +Inf.
    const steps = d.flatMap((b, i) => (b.count > (i > 0 ? d[i - 1].count : 0) ? [b.le] : []));
    expect(steps).toEqual([0.005, 2.5, 7200]);
    const m = buckets('taskmeter_task_memory_peak_bytes');
    const memSteps = m.flatMap((b, i) => (b.count > (i > 0 ? m[i - 1].count : 0) ? [b.le] : []));
    expect(memSteps).toEqual([64 * MiB, 4 * 1024 * MiB, 1024 * 1024 * MiB]);
  });
});
