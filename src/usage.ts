import {
  native,
  SNAP_CPU_SYSTEM_MS,
  SNAP_CPU_USER_MS,
  SNAP_EPOCH_MS,
  SNAP_PEAK_RSS_BYTES,
  SNAP_RSS_BYTES,
  SNAP_TIME_MS,
  SNAP_VMS_BYTES,
  WIN_INTERVAL_MS,
  WIN_MAX_RSS_BYTES,
  WIN_SAMPLES,
} from './binding';
import { describe } from './options';

/** Latest cached values of one GPU, as the sampler thread last read them (never an NVML call on the JS thread). */
export interface GpuSnapshot {
  index: number;
  uuid: string;
  name: string;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  /** GPU memory of this process (compute and graphics lists); null when NVML cannot attribute it. */
  processMemoryBytes: number | null;
  utilizationPercent: number | null;
  powerWatts: number | null;
  energyJoules: number | null;
  /** How old these values are, in ms. */
  ageMs: number | null;
}

/** What one GPU did during a window. */
export interface GpuUsage {
  index: number;
  uuid: string;
  name: string;
  memoryUsedPeakBytes: number | null;
  processMemoryPeakBytes: number | null;
  processMemoryEndBytes: number | null;
  energyJoules: number | null;
  utilizationAvgPercent: number | null;
}

export interface Snapshot {
  /** Monotonic clock, ms (only differences are meaningful). */
  timeMs: number;
  /** Wall clock, ms since the Unix epoch. */
  epochMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  rssBytes: number;
  vmsBytes: number;
  /** Process-lifetime peak RSS (the kernel's high-water mark). */
  peakRssBytes: number;
  gpus: GpuSnapshot[];
}

/**
 * How the window's peak RSS was found:
 * - 'hwm': the process high-water mark rose during the window, so the new mark is the exact peak;
 * - 'sampled': the largest of the sampler's readings and the endpoints;
 * - 'endpoints': no sample fell inside the window; the larger endpoint.
 */
export type PeakRssSource = 'hwm' | 'sampled' | 'endpoints';

export interface ResourceUsage {
  wallTimeMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  cpuTimeMs: number;
  /** cpuTimeMs / wallTimeMs × 100 (can exceed 100 with several threads busy); 0 for a zero-length window. */
  cpuPercent: number;
  rssStartBytes: number;
  rssEndBytes: number;
  peakRssBytes: number;
  peakRssSource: PeakRssSource;
  /** RSS samples the sampler took inside the window. */
  samples: number;
  /** The sampler interval the window asked for, ms; null for usageBetween() of two bare snapshots. */
  sampleIntervalMs: number | null;
  /** Epoch ms at the start and end of the window. */
  startedAt: number;
  endedAt: number;
  gpus: GpuUsage[];
  gpuMemoryPeakBytes: number | null;
}

const snapBuf = new Float64Array(native.SNAPSHOT_SLOTS);

/** Builds a Snapshot from a buffer the addon filled (slot order: native/proc/proc.h). */
export function snapshotFrom(buf: Float64Array): Snapshot {
  return {
    timeMs: buf[SNAP_TIME_MS],
    epochMs: buf[SNAP_EPOCH_MS],
    cpuUserMs: buf[SNAP_CPU_USER_MS],
    cpuSystemMs: buf[SNAP_CPU_SYSTEM_MS],
    rssBytes: buf[SNAP_RSS_BYTES],
    vmsBytes: buf[SNAP_VMS_BYTES],
    peakRssBytes: buf[SNAP_PEAK_RSS_BYTES],
    gpus: [],
  };
}

/** Reads this process's CPU time, memory and clocks now (about a microsecond; no GPU driver call). */
export function snapshot(): Snapshot {
  native.snapshot(snapBuf);
  return snapshotFrom(snapBuf);
}

const SNAPSHOT_NUMBERS = [
  'timeMs',
  'epochMs',
  'cpuUserMs',
  'cpuSystemMs',
  'rssBytes',
  'vmsBytes',
  'peakRssBytes',
] as const;

function checkSnapshot(name: string, s: unknown): Snapshot {
  if (s === null || typeof s !== 'object') {
    throw new TypeError(`taskmeter: ${name} must be a Snapshot object, got ${describe(s)}`);
  }
  const o = s as Record<string, unknown>;
  for (const key of SNAPSHOT_NUMBERS) {
    const v = o[key];
    if (typeof v !== 'number') throw new TypeError(`taskmeter: ${name}.${key} must be a number, got ${describe(v)}`);
    if (!Number.isFinite(v)) throw new RangeError(`taskmeter: ${name}.${key} must be finite, got ${v}`);
    if (v < 0) throw new RangeError(`taskmeter: ${name}.${key} must not be negative, got ${v}`);
  }
  return s as Snapshot;
}

/** The sampler's record of one window (see native/sampler.h). */
export interface WindowStats {
  maxRssBytes: number;
  samples: number;
  intervalMs: number;
}

export function windowStats(buf: Float64Array): WindowStats {
  return { maxRssBytes: buf[WIN_MAX_RSS_BYTES], samples: buf[WIN_SAMPLES], intervalMs: buf[WIN_INTERVAL_MS] };
}

/** Builds the usage of a window from its endpoint snapshots and, when it had one, the sampler's record. */
export function buildUsage(start: Snapshot, end: Snapshot, win: WindowStats | null): ResourceUsage {
  // Clamp at 0: CPU counters and clocks are monotonic, but a user-made snapshot pair may round the other way.
  const wallTimeMs = Math.max(0, end.timeMs - start.timeMs);
  const cpuUserMs = Math.max(0, end.cpuUserMs - start.cpuUserMs);
  const cpuSystemMs = Math.max(0, end.cpuSystemMs - start.cpuSystemMs);
  const cpuTimeMs = cpuUserMs + cpuSystemMs;
  const endpointsMax = Math.max(start.rssBytes, end.rssBytes);
  let peakRssBytes: number;
  let peakRssSource: PeakRssSource;
  const samples = win && Number.isFinite(win.maxRssBytes) ? win.samples : 0;
  if (end.peakRssBytes > start.peakRssBytes) {
    // The lifetime high-water mark rose inside the window, so the window holds the new mark: exact.
    peakRssBytes = Math.max(end.peakRssBytes, endpointsMax);
    peakRssSource = 'hwm';
  } else if (win && samples > 0) {
    peakRssBytes = Math.max(win.maxRssBytes, endpointsMax);
    peakRssSource = 'sampled';
  } else {
    peakRssBytes = endpointsMax;
    peakRssSource = 'endpoints';
  }
  return {
    wallTimeMs,
    cpuUserMs,
    cpuSystemMs,
    cpuTimeMs,
    cpuPercent: wallTimeMs > 0 ? (cpuTimeMs / wallTimeMs) * 100 : 0,
    rssStartBytes: start.rssBytes,
    rssEndBytes: end.rssBytes,
    peakRssBytes,
    peakRssSource,
    samples,
    sampleIntervalMs: win ? win.intervalMs : null,
    startedAt: start.epochMs,
    endedAt: Math.max(end.epochMs, start.epochMs),
    gpus: [],
    gpuMemoryPeakBytes: null,
  };
}

/**
 * The usage between two snapshots. Without a sampler window the peak is exact when the process high-water mark rose
 * between them ('hwm'), else the larger endpoint ('endpoints').
 */
export function usageBetween(start: Snapshot, end: Snapshot): ResourceUsage {
  checkSnapshot('start', start);
  checkSnapshot('end', end);
  if (end.timeMs < start.timeMs) {
    throw new RangeError(
      `taskmeter: usageBetween(start, end): end.timeMs (${end.timeMs}) is before start.timeMs (${start.timeMs})`,
    );
  }
  return buildUsage(start, end, null);
}
