import {
  native,
  WIN_GPU_FROM_CACHE,
  WIN_GPU_INTERVAL_MS,
  WIN_GPU_PROCESS_INTERVAL_MS,
  WIN_GPU_SAMPLES,
  WIN_GPU_STALE_MS,
  WIN_TREE_CPU_SYSTEM_MS,
  WIN_TREE_CPU_USER_MS,
  WIN_TREE_MAX_HWM_BYTES,
  WIN_TREE_MAX_HWM_PID,
  WIN_TREE_PROCESSES,
  WIN_TREE_ROOT_ALIVE,
  WIN_TREE_RSS_BYTES,
  WIN_TREE_RSS_FIRST_BYTES,
  WIN_TREE_RSS_PEAK_BYTES,
  WIN_TREE_SAMPLES,
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
import type { Timeline } from './timeline';
import { gpuDevices, GpuSnapshot, gpuSnapshotsFrom, GpuUsage, gpuUsagesFrom } from './gpu';
import { rangeError, typeError } from './errors';

export type { GpuSnapshot, GpuUsage } from './gpu';

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
  /** Per GPU: peaks, energy and average utilization in the window ([] without a GPU). */
  gpus: GpuUsage[];
  /**
   * The window's GPU memory peak: the sum over GPUs of this process's peak ('process'), or where that cannot be
   * attributed, of the devices' used-memory peaks ('device'); null without GPU data.
   */
  gpuMemoryPeakBytes: number | null;
  gpuMemoryPeakSource: 'accounting' | 'process' | 'device' | null;
  /** This process's (or the tracked tree's) SM utilization of the GPUs, mean over GPUs that report it and over the
   *  window's readings (nvmlDeviceGetProcessUtilization); null where no GPU reports it
   *  (see gpus[].processUtilizationReason). */
  gpuProcessUtilizationPercent: number | null;
  /** The effective interval of the process-list readings (process memory, per-process utilization), ms: paced by
   *  what the calls cost, separately from the device readings; null without a GPU. */
  gpuProcessSampleIntervalMs: number | null;
  /** Energy of all GPUs in the window, J (null without GPU data). */
  gpuEnergyJoules: number | null;
  /** GPU readings inside the window; 0 for a short window, whose GPU values are then the latest reading. */
  gpuSamples: number;
  /** The effective GPU reading interval (stretched when NVML is slow), ms; null without a GPU. */
  gpuSampleIntervalMs: number | null;
  /** True when an NVML call had hung at the window's end: GPU values stop at the last good reading. */
  gpuStale: boolean;
  gpuStaleReason: string | null;
  /** The window's timeline, when asked for (option `timeline`); see renderTimeline(). */
  timeline?: Timeline;
}

// The buffers the addon writes into on the hot paths (bound once, re-bound when the GPU count changes).
let snapBuf = new Float64Array(native.SNAPSHOT_SLOTS);
native.bindSnapshotBuffer(snapBuf);
let winBuf = new Float64Array(native.WINDOW_SLOTS);
native.bindWindowBuffer(winBuf);

/** The bound snapshot buffer, sized for the GPUs now known. */
export function boundSnapshotBuffer(): Float64Array {
  const len = native.SNAPSHOT_SLOTS + gpuDevices().length * native.GPU_SNAPSHOT_SLOTS;
  if (snapBuf.length !== len) {
    snapBuf = new Float64Array(len);
    native.bindSnapshotBuffer(snapBuf);
  }
  return snapBuf;
}

/** The bound window buffer, sized for the GPUs now known. */
export function boundWindowBuffer(): Float64Array {
  const len = windowBufferLength();
  if (winBuf.length !== len) {
    winBuf = new Float64Array(len);
    native.bindWindowBuffer(winBuf);
  }
  return winBuf;
}

/** Builds a Snapshot from a buffer the addon filled (slot order: native/proc/proc.h, then GPU slots). */
export function snapshotFrom(buf: Float64Array, withGpus = false): Snapshot {
  const devices = withGpus ? gpuDevices() : [];
  return {
    timeMs: buf[SNAP_TIME_MS],
    epochMs: buf[SNAP_EPOCH_MS],
    cpuUserMs: buf[SNAP_CPU_USER_MS],
    cpuSystemMs: buf[SNAP_CPU_SYSTEM_MS],
    rssBytes: buf[SNAP_RSS_BYTES],
    vmsBytes: buf[SNAP_VMS_BYTES],
    peakRssBytes: buf[SNAP_PEAK_RSS_BYTES],
    gpus: devices.length > 0 ? gpuSnapshotsFrom(buf, native.SNAPSHOT_SLOTS, devices) : [],
  };
}

/**
 * Reads this process's CPU time, memory and clocks now (about two microseconds), and the GPU values the GPU thread
 * read last (cached: never a driver call on this thread).
 */
export function snapshot(): Snapshot {
  const buf = boundSnapshotBuffer();
  native.snapshotBound();
  return snapshotFrom(buf, buf.length > native.SNAPSHOT_SLOTS);
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
    throw typeError(`taskmeter: ${name} must be a Snapshot object, got ${describe(s)}`);
  }
  const o = s as Record<string, unknown>;
  for (const key of SNAPSHOT_NUMBERS) {
    const v = o[key];
    if (typeof v !== 'number') throw typeError(`taskmeter: ${name}.${key} must be a number, got ${describe(v)}`);
    if (!Number.isFinite(v)) throw rangeError(`taskmeter: ${name}.${key} must be finite, got ${v}`);
    if (v < 0) throw rangeError(`taskmeter: ${name}.${key} must not be negative, got ${v}`);
  }
  return s as Snapshot;
}

/**
 * CPU time / wall time × 100. A window shorter than a microsecond has no meaningful rate: 0 (never Infinity).
 */
export function cpuPercent(cpuTimeMs: number, wallTimeMs: number): number {
  if (!(wallTimeMs >= 0.001)) return 0;
  const p = (cpuTimeMs / wallTimeMs) * 100;
  return Number.isFinite(p) ? p : 0;
}

/** The sampler's record of one window (see native/sampler.h). */
/** What the sampler saw of a tracked process tree (NaN where it saw nothing). */
export interface TreeStats {
  rssBytes: number;
  rssFirstBytes: number;
  rssPeakBytes: number;
  maxHwmBytes: number;
  maxHwmPid: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  processes: number;
  rootAlive: boolean;
  samples: number;
}

export interface WindowStats {
  tree: TreeStats;
  maxRssBytes: number;
  samples: number;
  intervalMs: number;
  gpuSamples: number;
  gpuIntervalMs: number;
  gpuStaleMs: number;
  gpuProcessIntervalMs: number;
  gpus: GpuUsage[];
}

/** The length of a window buffer for the GPUs now known. */
export function windowBufferLength(): number {
  return native.WINDOW_SLOTS + gpuDevices().length * native.GPU_WINDOW_SLOTS;
}

export function windowStats(buf: Float64Array): WindowStats {
  const devices = gpuDevices();
  const n = Math.min(devices.length, Math.floor((buf.length - native.WINDOW_SLOTS) / native.GPU_WINDOW_SLOTS));
  return {
    tree: {
      rssBytes: buf[WIN_TREE_RSS_BYTES],
      rssFirstBytes: buf[WIN_TREE_RSS_FIRST_BYTES],
      rssPeakBytes: buf[WIN_TREE_RSS_PEAK_BYTES],
      maxHwmBytes: buf[WIN_TREE_MAX_HWM_BYTES],
      maxHwmPid: buf[WIN_TREE_MAX_HWM_PID],
      cpuUserMs: buf[WIN_TREE_CPU_USER_MS],
      cpuSystemMs: buf[WIN_TREE_CPU_SYSTEM_MS],
      processes: buf[WIN_TREE_PROCESSES],
      rootAlive: buf[WIN_TREE_ROOT_ALIVE] === 1,
      samples: buf[WIN_TREE_SAMPLES],
    },
    maxRssBytes: buf[WIN_MAX_RSS_BYTES],
    samples: buf[WIN_SAMPLES],
    intervalMs: buf[WIN_INTERVAL_MS],
    gpuSamples: buf[WIN_GPU_FROM_CACHE] === 1 ? 0 : buf[WIN_GPU_SAMPLES],
    gpuIntervalMs: buf[WIN_GPU_INTERVAL_MS],
    gpuStaleMs: buf[WIN_GPU_STALE_MS],
    gpuProcessIntervalMs: buf[WIN_GPU_PROCESS_INTERVAL_MS],
    gpus: n > 0 ? gpuUsagesFrom(buf, native.WINDOW_SLOTS, devices.slice(0, n)) : [],
  };
}

function sumOrNull(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? null : known.reduce((a, b) => a + b, 0);
}

type GpuSummary = Pick<
  ResourceUsage,
  | 'gpus'
  | 'gpuMemoryPeakBytes'
  | 'gpuMemoryPeakSource'
  | 'gpuEnergyJoules'
  | 'gpuSamples'
  | 'gpuSampleIntervalMs'
  | 'gpuStale'
  | 'gpuStaleReason'
  | 'gpuProcessUtilizationPercent'
  | 'gpuProcessSampleIntervalMs'
>;

function gpuSummary(win: WindowStats | null, wallMs: number): GpuSummary {
  const gpus = (win ? win.gpus : []).map((g) =>
    g.utilizationNote === null && g.utilizationAvgPercent !== null && wallMs < 1000
      ? {
          ...g,
          utilizationNote:
            "the driver's utilization covers its last sample period (1/6 s to 1 s), longer than this " +
            `${Math.round(wallMs)} ms window: it includes time before the window opened`,
        }
      : g,
  );
  if (gpus.length === 0) {
    return {
      gpus,
      gpuMemoryPeakBytes: null,
      gpuMemoryPeakSource: null,
      gpuEnergyJoules: null,
      gpuSamples: 0,
      gpuSampleIntervalMs: null,
      gpuStale: false,
      gpuStaleReason: null,
      gpuProcessUtilizationPercent: null,
      gpuProcessSampleIntervalMs: null,
    };
  }
  const allProcess = gpus.length > 0 && gpus.every((g) => g.processMemoryPeakBytes !== null);
  const anyAccounting = gpus.some((g) => g.processMemoryPeakSource === 'accounting');
  const utils = gpus.map((g) => g.processSmUtilizationPercent).filter((v): v is number => v !== null);
  const devicePeak = sumOrNull(gpus.map((g) => g.memoryUsedPeakBytes));
  const stale = !!win && win.gpuStaleMs > 0;
  return {
    gpus,
    gpuMemoryPeakBytes: allProcess ? sumOrNull(gpus.map((g) => g.processMemoryPeakBytes)) : devicePeak,
    gpuMemoryPeakSource: allProcess
      ? anyAccounting
        ? 'accounting'
        : 'process'
      : devicePeak !== null
        ? 'device'
        : null,
    gpuProcessUtilizationPercent: utils.length > 0 ? utils.reduce((a, b) => a + b, 0) / utils.length : null,
    gpuProcessSampleIntervalMs: win && Number.isFinite(win.gpuProcessIntervalMs) ? win.gpuProcessIntervalMs : null,
    gpuEnergyJoules: sumOrNull(gpus.map((g) => g.energyJoules)),
    gpuSamples: win ? win.gpuSamples : 0,
    gpuSampleIntervalMs: win && gpus.length > 0 && Number.isFinite(win.gpuIntervalMs) ? win.gpuIntervalMs : null,
    gpuStale: stale,
    gpuStaleReason: stale
      ? `an NVML call had not returned for ${Math.round(win!.gpuStaleMs)} ms at the window's end; ` +
        'GPU values stop at the last reading'
      : null,
  };
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
  const g = gpuSummary(win, wallTimeMs);
  return {
    wallTimeMs,
    cpuUserMs,
    cpuSystemMs,
    cpuTimeMs,
    cpuPercent: cpuPercent(cpuTimeMs, wallTimeMs),
    rssStartBytes: start.rssBytes,
    rssEndBytes: end.rssBytes,
    peakRssBytes,
    peakRssSource,
    samples,
    sampleIntervalMs: win ? win.intervalMs : null,
    startedAt: start.epochMs,
    endedAt: Math.max(end.epochMs, start.epochMs),
    gpus: g.gpus,
    gpuMemoryPeakBytes: g.gpuMemoryPeakBytes,
    gpuMemoryPeakSource: g.gpuMemoryPeakSource,
    gpuEnergyJoules: g.gpuEnergyJoules,
    gpuSamples: g.gpuSamples,
    gpuSampleIntervalMs: g.gpuSampleIntervalMs,
    gpuStale: g.gpuStale,
    gpuStaleReason: g.gpuStaleReason,
    gpuProcessUtilizationPercent: g.gpuProcessUtilizationPercent,
    gpuProcessSampleIntervalMs: g.gpuProcessSampleIntervalMs,
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
    throw rangeError(
      `taskmeter: usageBetween(start, end): end.timeMs (${end.timeMs}) is before start.timeMs (${start.timeMs})`,
    );
  }
  return buildUsage(start, end, null);
}
