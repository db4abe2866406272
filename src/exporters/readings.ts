// What the exporters report at collection time: one snapshot() — the process now and the GPU thread's cached
// readings — never an NVML call on the JS thread. Shared by the OpenTelemetry and Prometheus exporters.
import { native } from '../binding';
import { boundWindowBuffer, snapshot, Snapshot } from '../usage';
import type { ResourceUsage } from '../usage';
import { typeError } from '../errors';
import type { ProcessUsage } from '../process';

export interface GpuReading {
  uuid: string;
  name: string;
  index: number;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  processMemoryBytes: number | null;
  utilizationRatio: number | null;
  powerWatts: number | null;
  energyJoules: number | null;
}

export interface Readings {
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  rssBytes: number;
  vmsBytes: number;
  peakRssBytes: number;
  gpus: GpuReading[];
}

export function readingsFrom(s: Snapshot): Readings {
  return {
    cpuUserSeconds: s.cpuUserMs / 1000,
    cpuSystemSeconds: s.cpuSystemMs / 1000,
    rssBytes: s.rssBytes,
    vmsBytes: s.vmsBytes,
    peakRssBytes: s.peakRssBytes,
    gpus: s.gpus.map((g) => ({
      uuid: g.uuid,
      name: g.name,
      index: g.index,
      memoryUsedBytes: g.memoryUsedBytes,
      memoryTotalBytes: g.memoryTotalBytes,
      processMemoryBytes: g.processMemoryBytes,
      utilizationRatio: g.utilizationPercent === null ? null : g.utilizationPercent / 100,
      powerWatts: g.powerWatts,
      energyJoules: g.energyJoules,
    })),
  };
}

export const currentReadings = (): Readings => readingsFrom(snapshot());

/**
 * Keeps the GPU thread reading while an exporter is registered (a window open at `intervalMs`), so that each
 * collection finds values at most that old. Returns a function that closes it.
 */
export function keepGpuFresh(intervalMs: number): () => void {
  boundWindowBuffer();
  const id = native.windowOpen(intervalMs);
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    native.windowClose(id, new Float64Array(boundWindowBuffer().length));
  };
}

// Histogram bucket boundaries that fit tasks (the OTel SDK's default, 0 … 10000, puts every task from 5 ms to 1.2 s
// in one bucket and every memory peak in the overflow). Shared by both exporters.

/** Seconds, 1 ms to 4 h: a 1-2.5-5 ladder up to a minute, then minutes and hours. */
export const DURATION_SECONDS_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200,
  14400,
];
/** Bytes, 1 MiB to 1 TiB in factors of 2. */
export const BYTES_BUCKETS: readonly number[] = Array.from({ length: 21 }, (_, i) => 2 ** (20 + i));
/** Joules, 0.1 J to 10 MJ (a 700 W GPU for 4 h is 10 MJ) in factors of 10. */
export const ENERGY_JOULES_BUCKETS: readonly number[] = [0.1, 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7];
/** A ratio 0–1 (a task's own GPU SM utilization). */
export const RATIO_BUCKETS: readonly number[] = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1];

/** The figures of a finished window that the exporters record into histograms. */
export function taskFigures(usage: ResourceUsage | ProcessUsage): {
  durationSeconds: number;
  /** null: a process usage whose CPU nothing measured (a tree no sample read) */
  cpuSeconds: number | null;
  /** null: a process usage whose memory nothing measured (a command that ended before the first sample) */
  memoryPeakBytes: number | null;
  gpuMemoryPeakBytes: number | null;
  gpuEnergyJoules: number | null;
  /** The task's own SM utilization of the GPUs, 0..1 (nvmlDeviceGetProcessUtilization), or null. */
  gpuProcessUtilizationRatio: number | null;
} {
  const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (
    !usage ||
    typeof usage !== 'object' ||
    !finite(usage.wallTimeMs) ||
    !(finite(usage.cpuTimeMs) || (usage.cpuTimeMs === null && 'pid' in usage)) ||
    !(finite(usage.peakRssBytes) || (usage.peakRssBytes === null && 'pid' in usage))
  ) {
    throw typeError('taskmeter: expected a ResourceUsage (from measure(), a tracker or measureCommand())');
  }
  return {
    durationSeconds: usage.wallTimeMs / 1000,
    cpuSeconds: finite(usage.cpuTimeMs) ? usage.cpuTimeMs / 1000 : null,
    memoryPeakBytes: finite(usage.peakRssBytes) ? usage.peakRssBytes : null,
    gpuMemoryPeakBytes: finite(usage.gpuMemoryPeakBytes) ? usage.gpuMemoryPeakBytes : null,
    gpuEnergyJoules: finite(usage.gpuEnergyJoules) ? usage.gpuEnergyJoules : null,
    gpuProcessUtilizationRatio:
      finite(usage.gpuProcessUtilizationPercent) && usage.gpuProcessUtilizationPercent <= 100
        ? usage.gpuProcessUtilizationPercent / 100
        : null,
  };
}
