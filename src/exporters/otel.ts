// taskmeter/otel: OpenTelemetry metrics with the semantic conventions' names and units (process.*, hw.*), fed from
// one batch callback over cached readings. @opentelemetry/api is a peer dependency; only its types are used here.
import type { Attributes, BatchObservableResult, Meter, Observable } from '@opentelemetry/api';
import { intOption, optionsObject, describe } from '../options';
import type { ResourceUsage } from '../usage';
import type { ProcessUsage } from '../process';
import {
  BYTES_BUCKETS,
  currentReadings,
  DURATION_SECONDS_BUCKETS,
  ENERGY_JOULES_BUCKETS,
  RATIO_BUCKETS,
  keepGpuFresh,
  taskFigures,
} from './readings';
import { typeError } from '../errors';

export interface TaskmeterMetricsOptions {
  /** How often the GPU is read while registered, ms (the age of GPU values at collection). Default 1000. */
  gpuIntervalMs?: number;
}

export interface TaskmeterMetrics {
  /** Records a finished window (measure(), a tracker, measureCommand()) into the task histograms. */
  recordUsage(usage: ResourceUsage | ProcessUsage, attributes?: Attributes): void;
  /** Stops the observations (the batch callback) and the background GPU readings. */
  unregister(): void;
}

const VALUE_TYPE_DOUBLE = 1; // ValueType.DOUBLE, without a runtime import of @opentelemetry/api

/** Registers taskmeter's instruments on a meter. */
export function registerTaskmeterMetrics(meter: Meter, options?: TaskmeterMetricsOptions): TaskmeterMetrics {
  if (!meter || typeof meter !== 'object' || typeof (meter as Meter).createObservableCounter !== 'function') {
    throw typeError(
      `taskmeter: registerTaskmeterMetrics(meter): expected an OpenTelemetry Meter, got ${describe(meter)}`,
    );
  }
  const o = optionsObject('registerTaskmeterMetrics', options, ['gpuIntervalMs']);
  const gpuIntervalMs = intOption('gpuIntervalMs', o.gpuIntervalMs, 20, 60_000, 1000);
  const d = { valueType: VALUE_TYPE_DOUBLE } as const;
  const cpuTime = meter.createObservableCounter('process.cpu.time', {
    unit: 's',
    description: 'Total CPU seconds broken down by mode.',
    ...d,
  });
  const memUsage = meter.createObservableUpDownCounter('process.memory.usage', {
    unit: 'By',
    description: 'The amount of physical memory in use.',
  });
  const memVirtual = meter.createObservableUpDownCounter('process.memory.virtual', {
    unit: 'By',
    description: 'The amount of committed virtual memory.',
  });
  const memPeak = meter.createObservableGauge('taskmeter.process.memory.peak', {
    unit: 'By',
    description: "The process's peak resident memory (kernel high-water mark).",
  });
  const gpuMem = meter.createObservableUpDownCounter('hw.gpu.memory.usage', {
    unit: 'By',
    description: 'GPU memory used (all processes).',
  });
  const gpuLimit = meter.createObservableUpDownCounter('hw.gpu.memory.limit', {
    unit: 'By',
    description: 'GPU memory size.',
  });
  const gpuUtil = meter.createObservableGauge('hw.gpu.utilization', {
    unit: '1',
    description: 'Fraction of time the GPU was busy.',
    ...d,
  });
  const power = meter.createObservableGauge('hw.power', { unit: 'W', description: 'GPU board power draw.', ...d });
  const energy = meter.createObservableCounter('hw.energy', {
    unit: 'J',
    description: 'GPU energy since taskmeter began reading it.',
    ...d,
  });
  const gpuProc = meter.createObservableUpDownCounter('taskmeter.gpu.process.memory.usage', {
    unit: 'By',
    description: "This process's GPU memory.",
  });
  const observables: Observable[] = [
    cpuTime,
    memUsage,
    memVirtual,
    memPeak,
    gpuMem,
    gpuLimit,
    gpuUtil,
    power,
    energy,
    gpuProc,
  ];

  const callback = (r: BatchObservableResult): void => {
    const x = currentReadings();
    r.observe(cpuTime, x.cpuUserSeconds, { 'cpu.mode': 'user' });
    r.observe(cpuTime, x.cpuSystemSeconds, { 'cpu.mode': 'system' });
    r.observe(memUsage, x.rssBytes);
    r.observe(memVirtual, x.vmsBytes);
    r.observe(memPeak, x.peakRssBytes);
    for (const g of x.gpus) {
      const a = { 'hw.id': g.uuid, 'hw.name': g.name, 'hw.type': 'gpu' };
      if (g.memoryUsedBytes !== null) r.observe(gpuMem, g.memoryUsedBytes, a);
      if (g.memoryTotalBytes !== null) r.observe(gpuLimit, g.memoryTotalBytes, a);
      if (g.utilizationRatio !== null) r.observe(gpuUtil, g.utilizationRatio, a);
      if (g.powerWatts !== null) r.observe(power, g.powerWatts, a);
      if (g.energyJoules !== null) r.observe(energy, g.energyJoules, a);
      if (g.processMemoryBytes !== null) r.observe(gpuProc, g.processMemoryBytes, a);
    }
  };
  meter.addBatchObservableCallback(callback, observables);
  const stopGpu = keepGpuFresh(gpuIntervalMs);

  const duration = meter.createHistogram('taskmeter.task.duration', {
    unit: 's',
    description: 'Wall-clock duration of measured tasks.',
    advice: { explicitBucketBoundaries: [...DURATION_SECONDS_BUCKETS] },
  });
  const cpu = meter.createHistogram('taskmeter.task.cpu.time', {
    unit: 's',
    description: 'CPU time of measured tasks.',
    advice: { explicitBucketBoundaries: [...DURATION_SECONDS_BUCKETS] },
  });
  const peak = meter.createHistogram('taskmeter.task.memory.peak', {
    unit: 'By',
    description: 'Peak resident memory of measured tasks.',
    advice: { explicitBucketBoundaries: [...BYTES_BUCKETS] },
  });
  const gpuPeak = meter.createHistogram('taskmeter.task.gpu.memory.peak', {
    unit: 'By',
    description: 'Peak GPU memory of measured tasks.',
    advice: { explicitBucketBoundaries: [...BYTES_BUCKETS] },
  });
  const gpuEnergy = meter.createHistogram('taskmeter.task.gpu.energy', {
    unit: 'J',
    description: 'GPU energy of measured tasks.',
    advice: { explicitBucketBoundaries: [...ENERGY_JOULES_BUCKETS] },
  });
  const gpuProcUtil = meter.createHistogram('taskmeter.task.gpu.process.utilization', {
    unit: '1',
    description: "Measured tasks' own SM utilization of the GPUs (0-1, averaged over the task).",
    advice: { explicitBucketBoundaries: [...RATIO_BUCKETS] },
  });

  let registered = true;
  return {
    recordUsage(usage: ResourceUsage | ProcessUsage, attributes?: Attributes): void {
      const f = taskFigures(usage);
      if (attributes !== undefined && (attributes === null || typeof attributes !== 'object')) {
        throw typeError(
          `taskmeter: recordUsage(usage, attributes): attributes must be an object, got ${describe(attributes)}`,
        );
      }
      duration.record(f.durationSeconds, attributes);
      if (f.cpuSeconds !== null) cpu.record(f.cpuSeconds, attributes);
      if (f.memoryPeakBytes !== null) peak.record(f.memoryPeakBytes, attributes);
      if (f.gpuMemoryPeakBytes !== null) gpuPeak.record(f.gpuMemoryPeakBytes, attributes);
      if (f.gpuEnergyJoules !== null) gpuEnergy.record(f.gpuEnergyJoules, attributes);
      if (f.gpuProcessUtilizationRatio !== null) gpuProcUtil.record(f.gpuProcessUtilizationRatio, attributes);
    },
    unregister(): void {
      if (!registered) return;
      registered = false;
      meter.removeBatchObservableCallback(callback, observables);
      stopGpu();
    },
  };
}
