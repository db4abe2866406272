// The exporters on the real SDKs: @opentelemetry/sdk-metrics with an in-memory exporter, and prom-client behind a
// real HTTP server on 127.0.0.1 — with the fake NVML for the GPU instruments, and on a GPU-less host.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fakeNvml, gpuEnv, lastJson, MiB, runChild } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'taskmeter-exporters-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const UUID = 'GPU-11111111-2222-3333-4444-555555555555';

function envWithGpu(): NodeJS.ProcessEnv {
  const scenario = join(work, 'scenario.txt');
  writeFileSync(
    scenario,
    ['count=1', 'dev0.name=Fake H100', `dev0.uuid=${UUID}`, `dev0.total=${80 * 1024 * MiB}`, `dev0.used=${3 * 1024 * MiB}`, 'dev0.util=42', 'dev0.power_mw=275000', `dev0.procs=999:${MiB},self:${256 * MiB}`, 'dev0.putil=self:30:5,999:60:60'].join('\n'),
  );
  return gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
}
const envWithoutGpu = () => gpuEnv({ TASKMETER_DISABLE_GPU: '1' });

async function child(mode: 'otel' | 'prometheus', env: NodeJS.ProcessEnv) {
  const r = await runChild('exporters-child.cjs', [mode], { env, timeoutMs: 30_000 });
  expect(r.code, r.stderr).toBe(0);
  return lastJson(r.stdout);
}

// InstrumentType and DataPointType of @opentelemetry/sdk-metrics
const OBSERVABLE_COUNTER = 'OBSERVABLE_COUNTER';
const OBSERVABLE_UP_DOWN_COUNTER = 'OBSERVABLE_UP_DOWN_COUNTER';
const OBSERVABLE_GAUGE = 'OBSERVABLE_GAUGE';
const HISTOGRAM = 'HISTOGRAM';

describe('OpenTelemetry (taskmeter/otel)', () => {
  it('exports the semantic-convention names, units and instrument kinds, GPU ones through the fake NVML', async () => {
    const { metrics, errors, hasGpu } = await child('otel', envWithGpu());
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
    const { metrics, errors, hasGpu } = await child('otel', envWithoutGpu());
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
    expect(() => registerTaskmeterMetrics({} as any)).toThrow(TypeError);
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

describe('Prometheus (taskmeter/prometheus)', () => {
  it('serves parseable metrics with the GPU series, beside collectDefaultMetrics', async () => {
    const { status, contentType, text, afterHasTaskmeter, hasGpu } = await child('prometheus', envWithGpu());
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
    const { text, hasGpu } = await child('prometheus', envWithoutGpu());
    expect(hasGpu).toBe(false);
    const { samples } = parseExposition(text);
    expect(samples.filter((s) => s.name.startsWith('taskmeter_gpu_'))).toEqual([]);
    expect(samples.some((s) => s.name === 'taskmeter_process_resident_memory_bytes')).toBe(true);
  });

  it('validates its options', async () => {
    const { createTaskmeterCollector } = await import('../dist/exporters/prometheus.js');
    expect(() => createTaskmeterCollector({ prefix: 'bad prefix' })).toThrow(TypeError);
    expect(() => createTaskmeterCollector({ labelNames: ['ok', 'not ok'] })).toThrow(/labelNames/);
    expect(() => createTaskmeterCollector({ gpuIntervalMs: 5 })).toThrow(RangeError);
    expect(() => createTaskmeterCollector({ registry: {} as any })).toThrow(/registry/);
  });
});
