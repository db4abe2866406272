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
  WIN_TREE_INTERVAL_MS,
  WIN_TREE_SAMPLES,
  WIN_TREE_IO_READ_BYTES,
  WIN_TREE_IO_WRITE_BYTES,
  WIN_TREE_PSS_DENIED,
  WIN_TREE_PSS_INTERVAL_MS,
  WIN_TREE_PSS_PEAK_BYTES,
  WIN_TREE_PSS_SAMPLES,
  WIN_TREE_UNREADABLE,
  SNAP_CPU_SYSTEM_MS,
  SNAP_CPU_USER_MS,
  SNAP_EPOCH_MS,
  SNAP_PEAK_RSS_BYTES,
  SNAP_RSS_BYTES,
  WIN_SAMPLER_CPU_MS,
  SNAP_TIME_MS,
  SNAP_VMS_BYTES,
  WIN_INTERVAL_MS,
  WIN_MAX_RSS_BYTES,
  WIN_SAMPLES,
} from './binding';
import { availableParallelism, cpus } from 'node:os';
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
  /**
   * Process-lifetime peak RSS: the kernel's high-water mark, or the current RSS where that is higher (the kernel
   * updates its mark lazily, so it can lag the current value by a few pages). Never below rssBytes.
   */
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
  /**
   * cpuTimeMs / wallTimeMs × 100 (can exceed 100 with several threads busy, never cores × 100). null, with
   * cpuPercentReason saying why, for a window shorter than the CPU clock's resolution (CPU_CLOCK_RESOLUTION_MS).
   */
  cpuPercent: number | null;
  cpuPercentReason: string | null;
  /**
   * CPU time of the calling thread alone during the window, ms: what this thread (the main thread, or this worker)
   * used, unlike cpuTimeMs, which is the whole process's and so includes other threads and concurrent windows.
   */
  threadCpuMs: number | null;
  /** CPU taskmeter's own sampler threads used during the window, ms: left out of cpuTimeMs. 0 without a sampler. */
  samplerCpuMs: number;
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

// The buffers the addon writes into on the hot paths (bound once, re-bound when the GPU count changes). They live on
// the addon's exports object, which Node loads once per thread: a second copy of this module in the same thread (a
// test runner's or a bundler's module graph) must write into the same buffers, or each would read the other's binding.
type Bound = { snap: Float64Array; win: Float64Array };
const holder = native as unknown as { __taskmeterBound?: Bound };
if (!holder.__taskmeterBound) {
  const b: Bound = { snap: new Float64Array(native.SNAPSHOT_SLOTS), win: new Float64Array(native.WINDOW_SLOTS) };
  native.bindSnapshotBuffer(b.snap);
  native.bindWindowBuffer(b.win);
  Object.defineProperty(holder, '__taskmeterBound', { value: b, enumerable: false });
}
const bound = holder.__taskmeterBound as Bound;

/** The bound snapshot buffer, sized for the GPUs now known. */
export function boundSnapshotBuffer(): Float64Array {
  const len = native.SNAPSHOT_SLOTS + gpuDevices().length * native.GPU_SNAPSHOT_SLOTS;
  if (bound.snap.length !== len) {
    bound.snap = new Float64Array(len);
    native.bindSnapshotBuffer(bound.snap);
  }
  return bound.snap;
}

/** The bound window buffer, sized for the GPUs now known. */
export function boundWindowBuffer(): Float64Array {
  const len = windowBufferLength();
  if (bound.win.length !== len) {
    bound.win = new Float64Array(len);
    native.bindWindowBuffer(bound.win);
  }
  return bound.win;
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
    peakRssBytes: peakAtLeast(buf[SNAP_PEAK_RSS_BYTES], buf[SNAP_RSS_BYTES]),
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

// ---- The invariants every usage keeps, enforced here and only here (property-tested in test/properties.test.ts).

/**
 * A peak is never below a value observed in its window or snapshot. NaN (unread) values do not count; the result is
 * NaN only if every value is.
 */
export function peakAtLeast(a: number, b: number, c = NaN, d = NaN): number {
  // Fixed arity (no rest array): this runs on every snapshot and window end.
  let m = a;
  if (b > m || Number.isNaN(m)) m = b;
  if (c > m || Number.isNaN(m)) m = c;
  if (d > m || Number.isNaN(m)) m = d;
  return m;
}

/**
 * The resolution of the process CPU clock, ms. Linux and macOS bring the CPU time of other running threads up to
 * date at scheduler ticks (up to 10 ms apart at HZ=100), Windows at the 15.625 ms timer tick: a window shorter than
 * this can show CPU that another thread spent before it began.
 */
export const CPU_CLOCK_RESOLUTION_MS = process.platform === 'win32' ? 15.625 : 10;

let coreCount = 0;
/** The CPUs this process can run on at most (online CPUs; affinity can change, so the larger count). */
export function cores(): number {
  if (coreCount === 0) {
    const online = cpus().length;
    const affinity = typeof availableParallelism === 'function' ? availableParallelism() : 1;
    coreCount = Math.max(1, online, affinity);
  }
  return coreCount;
}

/** cpuPercent and why it is null where it is. */
export function cpuRate(
  cpuTimeMs: number,
  wallTimeMs: number,
): { cpuPercent: number | null; cpuPercentReason: string | null } {
  if (!(wallTimeMs >= CPU_CLOCK_RESOLUTION_MS)) {
    return {
      cpuPercent: null,
      cpuPercentReason:
        `the window (${Math.round(wallTimeMs * 1000) / 1000} ms) is shorter than the CPU clock's resolution ` +
        `(${CPU_CLOCK_RESOLUTION_MS} ms)`,
    };
  }
  const p = (cpuTimeMs / wallTimeMs) * 100;
  const max = cores() * 100;
  if (!Number.isFinite(p) || p < 0 || p > max) {
    return {
      cpuPercent: null,
      cpuPercentReason:
        `the CPU time (${+cpuTimeMs.toPrecision(3)} ms) is more than ${cores()} cores can use in ` +
        `${+wallTimeMs.toPrecision(3)} ms: a clock step, not a rate`,
    };
  }
  return { cpuPercent: p, cpuPercentReason: null };
}

/** CPU time / wall time × 100, or null (see cpuRate for why). */
export function cpuPercent(cpuTimeMs: number, wallTimeMs: number): number | null {
  return cpuRate(cpuTimeMs, wallTimeMs).cpuPercent;
}

/** The calling thread's CPU between two readings of the thread clock (window endpoints), or null if either is NaN. */
export function threadCpuBetween(startMs: number, endMs: number): number | null {
  return Number.isFinite(startMs) && Number.isFinite(endMs) ? Math.max(0, endMs - startMs) : null;
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
  /** the tree sampler's mean interval, stretched to its cost budget, ms */
  intervalMs: number;
  /** the largest summed PSS of the tree's PSS passes, their count and mean interval (paced by their cost) */
  pssPeakBytes: number;
  pssSamples: number;
  pssIntervalMs: number;
  /** a live process's PSS was not ours to read (such a pass gives no figure) */
  pssDenied: boolean;
  /** processes found alive but unreadable (EPERM, hidepid) */
  unreadable: number;
  /** storage bytes the tree read and wrote since tracking began (/proc/<pid>/io read_bytes, write_bytes) */
  ioReadBytes: number;
  ioWriteBytes: number;
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
  /** CPU taskmeter's own threads used while the window was open, ms. */
  samplerCpuMs: number;
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
      intervalMs: buf[WIN_TREE_INTERVAL_MS],
      pssPeakBytes: buf[WIN_TREE_PSS_PEAK_BYTES],
      pssSamples: buf[WIN_TREE_PSS_SAMPLES],
      pssIntervalMs: buf[WIN_TREE_PSS_INTERVAL_MS],
      pssDenied: buf[WIN_TREE_PSS_DENIED] === 1,
      unreadable: buf[WIN_TREE_UNREADABLE],
      ioReadBytes: buf[WIN_TREE_IO_READ_BYTES],
      ioWriteBytes: buf[WIN_TREE_IO_WRITE_BYTES],
    },
    maxRssBytes: buf[WIN_MAX_RSS_BYTES],
    samples: buf[WIN_SAMPLES],
    intervalMs: buf[WIN_INTERVAL_MS],
    gpuSamples: buf[WIN_GPU_FROM_CACHE] === 1 ? 0 : buf[WIN_GPU_SAMPLES],
    gpuIntervalMs: buf[WIN_GPU_INTERVAL_MS],
    gpuStaleMs: buf[WIN_GPU_STALE_MS],
    gpuProcessIntervalMs: buf[WIN_GPU_PROCESS_INTERVAL_MS],
    samplerCpuMs: Math.max(buf[WIN_SAMPLER_CPU_MS], 0),
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
export function buildUsage(
  start: Snapshot,
  end: Snapshot,
  win: WindowStats | null,
  threadCpuMs: number | null = null,
): ResourceUsage {
  // Clamp at 0: CPU counters and clocks are monotonic, but a user-made snapshot pair may round the other way.
  const wallTimeMs = Math.max(0, end.timeMs - start.timeMs);
  let cpuUserMs = Math.max(0, end.cpuUserMs - start.cpuUserMs);
  let cpuSystemMs = Math.max(0, end.cpuSystemMs - start.cpuSystemMs);
  // The measurement does not measure itself: the sampler threads' CPU in the window is left out. Their time is
  // almost all system time (a pread and a futex wait per sample), so it comes off system time first.
  const samplerCpuMs = win ? Math.min(win.samplerCpuMs, cpuUserMs + cpuSystemMs) : 0;
  const fromSystem = Math.min(samplerCpuMs, cpuSystemMs);
  cpuSystemMs -= fromSystem;
  cpuUserMs = Math.max(0, cpuUserMs - (samplerCpuMs - fromSystem));
  const cpuTimeMs = cpuUserMs + cpuSystemMs;
  const endpointsMax = Math.max(start.rssBytes, end.rssBytes);
  let peakRssBytes: number;
  let peakRssSource: PeakRssSource;
  const samples = win && Number.isFinite(win.maxRssBytes) ? win.samples : 0;
  if (end.peakRssBytes > start.peakRssBytes) {
    // The lifetime high-water mark rose inside the window, so the window holds the new mark: exact.
    peakRssBytes = peakAtLeast(end.peakRssBytes, endpointsMax, samples > 0 ? win!.maxRssBytes : NaN);
    peakRssSource = 'hwm';
  } else if (win && samples > 0) {
    peakRssBytes = peakAtLeast(win.maxRssBytes, endpointsMax);
    peakRssSource = 'sampled';
  } else {
    peakRssBytes = endpointsMax;
    peakRssSource = 'endpoints';
  }
  const g = gpuSummary(win, wallTimeMs);
  const rate = cpuRate(cpuTimeMs, wallTimeMs);
  return {
    wallTimeMs,
    cpuUserMs,
    cpuSystemMs,
    cpuTimeMs,
    cpuPercent: rate.cpuPercent, // fields written out, not spread: a spread makes a slow (dictionary) object
    cpuPercentReason: rate.cpuPercentReason,
    threadCpuMs,
    samplerCpuMs,
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
 * The usage between two snapshots (threadCpuMs is null: snapshots do not read the thread clock). Without a sampler
 * window the peak is exact when the process high-water mark rose between them ('hwm'), else the larger endpoint
 * ('endpoints').
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
