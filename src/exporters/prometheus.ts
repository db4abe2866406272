// taskmeter/prometheus: a prom-client collector whose metrics are read at scrape time (collect()), with
// Prometheus-style names under a prefix (default "taskmeter_") that never clash with collectDefaultMetrics().
// prom-client is a peer dependency, loaded when the collector is created.
import type { Registry } from 'prom-client';
import { describe, intOption, optionsObject } from '../options';
import type { ResourceUsage } from '../usage';
import type { ProcessUsage } from '../process';
import {
  BYTES_BUCKETS,
  currentReadings,
  DURATION_SECONDS_BUCKETS,
  ENERGY_JOULES_BUCKETS,
  RATIO_BUCKETS,
  keepGpuFresh,
  Readings,
  taskFigures,
} from './readings';
import { codedError, typeError } from '../errors';

export interface TaskmeterCollectorOptions {
  /** Where to register (default: prom-client's global register). */
  registry?: Registry;
  /** Metric name prefix, default "taskmeter_". */
  prefix?: string;
  /** Label names observeUsage() accepts (default ["task"]). */
  labelNames?: string[];
  /** How often the GPU is read while the collector lives, ms. Default 1000. */
  gpuIntervalMs?: number;
}

export interface TaskmeterCollector {
  /** Records a finished window into the task histograms. */
  observeUsage(usage: ResourceUsage | ProcessUsage, labels?: Record<string, string>): void;
  /** Removes the metrics from the registry and stops the background GPU readings. */
  unregister(): void;
}

type PromClient = typeof import('prom-client');

function loadPromClient(): PromClient {
  try {
    return require('prom-client') as PromClient;
  } catch {
    const message = 'taskmeter/prometheus needs prom-client: npm install prom-client';
    throw codedError(Error, message, 'ERR_TASKMETER_MISSING_PEER');
  }
}

/** Creates and registers taskmeter's Prometheus metrics. */
export function createTaskmeterCollector(options?: TaskmeterCollectorOptions): TaskmeterCollector {
  const o = optionsObject('createTaskmeterCollector', options, ['registry', 'prefix', 'labelNames', 'gpuIntervalMs']);
  const prefix = o.prefix === undefined ? 'taskmeter_' : o.prefix;
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) {
    throw typeError(
      `taskmeter: option "prefix" must be a valid Prometheus metric name prefix, got ${describe(prefix)}`,
      typeof prefix === 'string' ? 'ERR_INVALID_ARG_VALUE' : 'ERR_INVALID_ARG_TYPE',
    );
  }
  const labelNames = (o.labelNames ?? ['task']) as string[];
  if (
    !Array.isArray(labelNames) ||
    !labelNames.every((l) => typeof l === 'string' && /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(l))
  ) {
    throw typeError(
      `taskmeter: option "labelNames" must be an array of label names, got ${describe(o.labelNames)}`,
      Array.isArray(labelNames) && labelNames.every((l) => typeof l === 'string')
        ? 'ERR_INVALID_ARG_VALUE'
        : 'ERR_INVALID_ARG_TYPE',
    );
  }
  const gpuIntervalMs = intOption('gpuIntervalMs', o.gpuIntervalMs, 20, 60_000, 1000);
  const prom = loadPromClient();
  const registry = (o.registry as Registry | undefined) ?? prom.register;
  if (!registry || typeof (registry as Registry).registerMetric !== 'function') {
    throw typeError(`taskmeter: option "registry" must be a prom-client Registry, got ${describe(o.registry)}`);
  }
  const reg = [registry];
  // One reading per scrape, shared by every metric's collect() of that scrape.
  let cached: { at: number; r: Readings } | null = null;
  const read = (): Readings => {
    const now = performance.now();
    if (!cached || now - cached.at > 50) cached = { at: now, r: currentReadings() };
    return cached.r;
  };
  const n = (s: string) => prefix + s;

  const metrics = [
    new prom.Counter({
      name: n('process_cpu_seconds_total'),
      help: 'CPU time of this process, by mode.',
      labelNames: ['mode'],
      registers: reg,
      collect() {
        const r = read();
        this.reset();
        this.inc({ mode: 'user' }, r.cpuUserSeconds);
        this.inc({ mode: 'system' }, r.cpuSystemSeconds);
      },
    }),
    new prom.Gauge({
      name: n('process_resident_memory_bytes'),
      help: 'Resident memory of this process.',
      registers: reg,
      collect() {
        this.set(read().rssBytes);
      },
    }),
    new prom.Gauge({
      name: n('process_resident_memory_peak_bytes'),
      help: 'Peak resident memory of this process (kernel high-water mark).',
      registers: reg,
      collect() {
        this.set(read().peakRssBytes);
      },
    }),
    new prom.Gauge({
      name: n('process_virtual_memory_bytes'),
      help: 'Virtual memory of this process.',
      registers: reg,
      collect() {
        this.set(read().vmsBytes);
      },
    }),
    gpuGauge(
      prom,
      reg,
      n('gpu_memory_used_bytes'),
      'GPU memory used (all processes).',
      ['uuid', 'name'],
      (g) => g.memoryUsedBytes,
      read,
    ),
    gpuGauge(
      prom,
      reg,
      n('gpu_memory_total_bytes'),
      'GPU memory size.',
      ['uuid', 'name'],
      (g) => g.memoryTotalBytes,
      read,
    ),
    gpuGauge(
      prom,
      reg,
      n('gpu_process_memory_bytes'),
      "This process's GPU memory.",
      ['uuid'],
      (g) => g.processMemoryBytes,
      read,
    ),
    gpuGauge(
      prom,
      reg,
      n('gpu_utilization_ratio'),
      'Fraction of time the GPU was busy (0-1).',
      ['uuid'],
      (g) => g.utilizationRatio,
      read,
    ),
    gpuGauge(prom, reg, n('gpu_power_watts'), 'GPU board power draw.', ['uuid'], (g) => g.powerWatts, read),
    new prom.Counter({
      name: n('gpu_energy_joules_total'),
      help: 'GPU energy since taskmeter began reading it.',
      labelNames: ['uuid'],
      registers: reg,
      collect() {
        this.reset();
        for (const g of read().gpus) if (g.energyJoules !== null) this.inc({ uuid: g.uuid }, g.energyJoules);
      },
    }),
  ];
  const hist = (name: string, help: string, buckets: number[]) =>
    new prom.Histogram({ name: n(name), help, labelNames, buckets, registers: reg });
  const seconds = [...DURATION_SECONDS_BUCKETS];
  const bytes = [...BYTES_BUCKETS];
  const histograms = {
    duration: hist('task_duration_seconds', 'Wall-clock duration of measured tasks.', seconds),
    cpu: hist('task_cpu_seconds', 'CPU time of measured tasks.', seconds),
    peak: hist('task_memory_peak_bytes', 'Peak resident memory of measured tasks.', bytes),
    gpuPeak: hist('task_gpu_memory_peak_bytes', 'Peak GPU memory of measured tasks.', bytes),
    gpuEnergy: hist('task_gpu_energy_joules', 'GPU energy of measured tasks.', [...ENERGY_JOULES_BUCKETS]),
    gpuProcUtil: hist(
      'task_gpu_process_utilization_ratio',
      "Measured tasks' own SM utilization of the GPUs (0-1, averaged over the task).",
      [...RATIO_BUCKETS],
    ),
  };
  const stopGpu = keepGpuFresh(gpuIntervalMs);
  let live = true;
  return {
    observeUsage(usage: ResourceUsage | ProcessUsage, labels: Record<string, string> = {}): void {
      const f = taskFigures(usage);
      if (labels === null || typeof labels !== 'object') {
        throw typeError(`taskmeter: observeUsage(usage, labels): labels must be an object, got ${describe(labels)}`);
      }
      for (const k of Object.keys(labels)) {
        if (!labelNames.includes(k))
          throw typeError(
            `taskmeter: observeUsage(): unknown label "${k}" (declared: ${labelNames.join(', ')})`,
            'ERR_INVALID_ARG_VALUE',
          );
      }
      histograms.duration.observe(labels, f.durationSeconds);
      if (f.cpuSeconds !== null) histograms.cpu.observe(labels, f.cpuSeconds);
      if (f.memoryPeakBytes !== null) histograms.peak.observe(labels, f.memoryPeakBytes);
      if (f.gpuMemoryPeakBytes !== null) histograms.gpuPeak.observe(labels, f.gpuMemoryPeakBytes);
      if (f.gpuEnergyJoules !== null) histograms.gpuEnergy.observe(labels, f.gpuEnergyJoules);
      if (f.gpuProcessUtilizationRatio !== null) histograms.gpuProcUtil.observe(labels, f.gpuProcessUtilizationRatio);
    },
    unregister(): void {
      if (!live) return;
      live = false;
      for (const m of [...metrics, ...Object.values(histograms)])
        registry.removeSingleMetric((m as unknown as { name: string }).name);
      stopGpu();
    },
  };
}

function gpuGauge(
  prom: PromClient,
  registers: Registry[],
  name: string,
  help: string,
  labelNames: ('uuid' | 'name')[],
  value: (g: Readings['gpus'][number]) => number | null,
  read: () => Readings,
) {
  return new prom.Gauge({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const g of read().gpus) {
        const v = value(g);
        if (v === null) continue;
        this.set(labelNames.includes('name') ? { uuid: g.uuid, name: g.name } : { uuid: g.uuid }, v);
      }
    },
  });
}
