import {
  KIND_DEVICE,
  KIND_ENERGY,
  KIND_PROCESS_UTIL,
  native,
  WIN_GPU_ENERGY_INTERVAL_MS,
  WIN_GPU_INTERVAL_MS,
  WIN_GPU_PROCESS_INTERVAL_MS,
  WIN_GPU_PROCESS_UTIL_INTERVAL_MS,
  WIN_GPU_STRETCHED,
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
  WIN_TREE_FS_IN_BLOCKS,
  WIN_TREE_FS_OUT_BLOCKS,
  WIN_TREE_PSS_RSS_BYTES,
  WIN_TREE_IO_READ_BYTES,
  WIN_TREE_IO_WRITE_BYTES,
  WIN_TREE_MAJOR_FAULTS,
  WIN_TREE_MINOR_FAULTS,
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
  SNAP_MINOR_FAULTS,
  WIN_INTERVAL_MS,
  WIN_MAX_RSS_BYTES,
  WIN_SAMPLES,
} from './binding';
import { availableParallelism, cpus } from 'node:os';
import { describe } from './options';
import type { Timeline } from './timeline';
import { gpuDevices, GpuSnapshot, gpuSnapshotsFrom, GpuUsage, gpuUsagesFrom } from './gpu';
import { rangeError, typeError } from './errors';
import type { NodeFigures } from './nodefigures';

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
 * - 'sampled': the largest of the sampler's readings (its thread's samples and the edges of windows that opened or
 *   closed meanwhile) and the endpoints;
 * - 'endpoints': nothing was read inside the window; the larger endpoint.
 */
export type PeakRssSource = 'hwm' | 'sampled' | 'endpoints';

/** With the rest of GNU time's -v (UsageCounters): each null where it was not measured. */
export interface ResourceUsage extends UsageCounters {
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
  /**
   * With measure(fn, { taskCpu: true }): the CPU this thread spent running the task's own code — its synchronous part
   * and every callback and continuation that runs in its async context (AsyncLocalStorage's propagation), not the
   * other tasks' in flight at the same time. null otherwise, with taskCpuReason saying why.
   */
  taskCpuMs: number | null;
  taskCpuReason: string | null;
  /**
   * How many other in-process windows (measure, measureSync, ResourceTracker) were open on this thread at some
   * moment of this one: when > 0, cpuTimeMs and threadCpuMs include their work too. null for usageBetween() and
   * tracked processes.
   */
  overlappingWindows: number | null;
  /** performance.eventLoopUtilization() between the window's edges (0–1); null with the reason where not measured. */
  eventLoopUtilization: number | null;
  eventLoopUtilizationReason: string | null;
  /** V8 heap used (v8.getHeapStatistics().used_heap_size) at the window's start and end, bytes. */
  heapUsedStartBytes: number | null;
  heapUsedEndBytes: number | null;
  /**
   * The largest heap used read on this thread while the window was open (its edges, other windows' edges, taskCpu
   * switches): sampled, so a peak that a garbage collection undid between two readings is missed. null, with
   * heapUsedPeakReason, when no reading fell inside the window.
   */
  heapUsedPeakBytes: number | null;
  heapUsedPeakReason: string | null;
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
  /** This process's (or the tracked tree's) SM utilization of the GPUs: per GPU the mean of the driver's samples
   *  in the window (nvmlDeviceGetProcessUtilization, the question `nvidia-smi pmon` answers), then the mean over GPUs
   *  that report it; null where none does (see gpus[].processUtilizationReason). */
  gpuProcessUtilizationPercent: number | null;
  /** How often the process lists were read, ms: with the device readings (gpuSampleIntervalMs); null without a GPU. */
  gpuProcessSampleIntervalMs: number | null;
  /** Energy of all GPUs in the window, J (null without GPU data). */
  gpuEnergyJoules: number | null;
  /** GPU device readings (memory, utilization, power, process lists) inside the window; with none, the GPU memory and
   *  utilization figures are null (reason code GPU_NOT_SAMPLED): no value from before a window is its value. */
  gpuSamples: number;
  /** How often the device readings came, ms: the window's interval unless stretched to the GPU thread's budget
   *  (see gpuSamplingNote); null without a GPU. */
  gpuSampleIntervalMs: number | null;
  /** How often each GPU's energy counter was read, ms (energy between readings follows the power draw). */
  gpuEnergyIntervalMs: number | null;
  /** How often each GPU's per-process utilization was read, ms (the driver keeps the samples in between). */
  gpuProcessUtilizationIntervalMs: number | null;
  /** Which readings ran slower than wanted to keep the GPU thread within 1 % of a core, or null. */
  gpuSamplingNote: string | null;
  /** True when an NVML call had hung at the window's end: GPU values stop at the last good reading. */
  gpuStale: boolean;
  gpuStaleReason: string | null;
  /** The window's timeline, when asked for (option `timeline`); see renderTimeline(). */
  timeline?: Timeline;
}

/**
 * The rest of GNU time's -v, counted over a window (the process, all threads, less taskmeter's own threads where the
 * OS counts per thread: Linux) or a command (it and every descendant it reaped, from wait4). null where nothing
 * measured it: usageBetween() of two snapshots, a platform without the counter (Windows; I/O bytes outside Linux), a
 * tracked process whose tree sampler does not read it.
 */
export interface UsageCounters {
  /** Page faults that had to read from storage (GNU time's %F, ru_majflt). */
  majorPageFaults: number | null;
  /** Page faults served without I/O (%R, ru_minflt). */
  minorPageFaults: number | null;
  /** Times it gave up the CPU to wait, e.g. for I/O or a sleep (%w, ru_nvcsw). */
  voluntaryContextSwitches: number | null;
  /** Times it was preempted (%c, ru_nivcsw). */
  involuntaryContextSwitches: number | null;
  /** File-system inputs and outputs, in 512-byte blocks (%I and %O, ru_inblock and ru_oublock): storage I/O. */
  fsInputBlocks: number | null;
  fsOutputBlocks: number | null;
  /**
   * Bytes passed to read()- and write()-like calls, whatever they reached (files, the page cache, pipes, sockets,
   * terminals): rchar and wchar of /proc/<pid>/io (Linux). In-process windows read them only with the option
   * `ioBytes: true` (a /proc/self/io read at each edge, ~2 µs), and count every thread, taskmeter's own reads of /proc
   * included (tens of bytes per sample).
   */
  ioReadBytes: number | null;
  ioWriteBytes: number | null;
}

/** Nothing measured. */
export const NO_COUNTERS: Readonly<UsageCounters> = Object.freeze({
  majorPageFaults: null,
  minorPageFaults: null,
  voluntaryContextSwitches: null,
  involuntaryContextSwitches: null,
  fsInputBlocks: null,
  fsOutputBlocks: null,
  ioReadBytes: null,
  ioWriteBytes: null,
});

/** Every counter; the first SNAP_COUNTERS are a snapshot's slots from SNAP_MINOR_FAULTS on, in this order. */
export const COUNTER_KEYS = [
  'minorPageFaults',
  'majorPageFaults',
  'voluntaryContextSwitches',
  'involuntaryContextSwitches',
  'fsInputBlocks',
  'fsOutputBlocks',
  'ioReadBytes',
  'ioWriteBytes',
] as const satisfies readonly (keyof UsageCounters)[];

/** A copy of an edge snapshot's counter slots (kept by a window from its start; a plain array is the cheapest). */
export function edgeCounters(snap: Float64Array): number[] {
  const i = SNAP_MINOR_FAULTS;
  return [snap[i], snap[i + 1], snap[i + 2], snap[i + 3], snap[i + 4], snap[i + 5]];
}

/**
 * The counters between a window's start (edgeCounters) and an end snapshot, and the I/O bytes between two
 * readSelfIo() readings when the window took them; null where either edge was not read.
 */
export function countersBetween(
  start: readonly number[],
  end: Float64Array,
  io: { start: Float64Array; end: Float64Array } | null = null,
): UsageCounters {
  // Taskmeter's own threads' counts are published when they park, so a window's edges can each be one off: never
  // below 0.
  const delta = (v: number): number | null => (Number.isFinite(v) ? Math.max(0, Math.round(v)) : null);
  const d = (i: number) => delta(end[SNAP_MINOR_FAULTS + i] - start[i]);
  return {
    minorPageFaults: d(0),
    majorPageFaults: d(1),
    voluntaryContextSwitches: d(2),
    involuntaryContextSwitches: d(3),
    fsInputBlocks: d(4),
    fsOutputBlocks: d(5),
    ioReadBytes: io ? delta(io.end[0] - io.start[0]) : null,
    ioWriteBytes: io ? delta(io.end[1] - io.start[1]) : null,
  };
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
  /** the largest RSS sum a PSS pass with a figure read at once: how near the tree's RSS peak the passes came */
  pssRssBytes: number;
  /** processes found alive but unreadable (EPERM, hidepid) */
  unreadable: number;
  /**
   * The tree's counters (UsageCounters' names), summed over its processes since tracking began, a departed child's
   * counted once (native/tree.h); NaN where the tree sampler does not read them (context switches: /proc has no
   * count of a process's waited-for children's).
   */
  counters: Record<keyof UsageCounters, number>;
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
  gpuEnergyIntervalMs: number;
  gpuProcessUtilIntervalMs: number;
  /** bit per GpuKind (binding.ts KIND_*) read slower than wanted */
  gpuStretched: number;
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
      pssRssBytes: buf[WIN_TREE_PSS_RSS_BYTES],
      unreadable: buf[WIN_TREE_UNREADABLE],
      counters: {
        minorPageFaults: buf[WIN_TREE_MINOR_FAULTS],
        majorPageFaults: buf[WIN_TREE_MAJOR_FAULTS],
        voluntaryContextSwitches: NaN,
        involuntaryContextSwitches: NaN,
        fsInputBlocks: buf[WIN_TREE_FS_IN_BLOCKS],
        fsOutputBlocks: buf[WIN_TREE_FS_OUT_BLOCKS],
        ioReadBytes: buf[WIN_TREE_IO_READ_BYTES],
        ioWriteBytes: buf[WIN_TREE_IO_WRITE_BYTES],
      },
    },
    maxRssBytes: buf[WIN_MAX_RSS_BYTES],
    samples: buf[WIN_SAMPLES],
    intervalMs: buf[WIN_INTERVAL_MS],
    gpuSamples: buf[WIN_GPU_SAMPLES],
    gpuIntervalMs: buf[WIN_GPU_INTERVAL_MS],
    gpuStaleMs: buf[WIN_GPU_STALE_MS],
    gpuProcessIntervalMs: buf[WIN_GPU_PROCESS_INTERVAL_MS],
    gpuEnergyIntervalMs: buf[WIN_GPU_ENERGY_INTERVAL_MS],
    gpuProcessUtilIntervalMs: buf[WIN_GPU_PROCESS_UTIL_INTERVAL_MS],
    gpuStretched: buf[WIN_GPU_STRETCHED] || 0,
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
  | 'gpuEnergyIntervalMs'
  | 'gpuProcessUtilizationIntervalMs'
  | 'gpuSamplingNote'
>;

const finiteOrNull = (v: number | undefined): number | null => (v !== undefined && Number.isFinite(v) ? v : null);

function gpuSamplingNote(win: WindowStats, gpus: number): string | null {
  const parts: string[] = [];
  const ms = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
  if (win.gpuStretched & (1 << KIND_DEVICE))
    parts.push(`memory, utilization, power and process lists every ${ms(win.gpuIntervalMs)}`);
  if (win.gpuStretched & (1 << KIND_PROCESS_UTIL))
    parts.push(`per-process utilization every ${ms(win.gpuProcessUtilIntervalMs)}`);
  if (win.gpuStretched & (1 << KIND_ENERGY)) parts.push(`the energy counter every ${ms(win.gpuEnergyIntervalMs)}`);
  if (parts.length === 0) return null;
  return (
    `to keep NVML within 1 % of a core with ${gpus} GPU${gpus === 1 ? '' : 's'}, read slower than wanted ` +
    `(cheapest to lose first): ${parts.reverse().join('; ')}`
  );
}

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
      gpuEnergyIntervalMs: null,
      gpuProcessUtilizationIntervalMs: null,
      gpuSamplingNote: null,
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
    gpuEnergyIntervalMs: finiteOrNull(win?.gpuEnergyIntervalMs),
    gpuProcessUtilizationIntervalMs: finiteOrNull(win?.gpuProcessUtilIntervalMs),
    gpuSamplingNote: win ? gpuSamplingNote(win, gpus.length) : null,
  };
}

const TASK_CPU_NOT_REQUESTED = 'not requested: measure(fn, { taskCpu: true }) measures it';

/** Node's figures of a usage that has none (two snapshots, another process), each null with `reason`. */
export function noNodeFigures(reason: string): NodeFigures {
  return {
    overlappingWindows: null,
    eventLoopUtilization: null,
    eventLoopUtilizationReason: reason,
    heapUsedStartBytes: null,
    heapUsedEndBytes: null,
    heapUsedPeakBytes: null,
    heapUsedPeakReason: reason,
  };
}
const NO_WINDOW = noNodeFigures('not measured: a usage between two snapshots has no window');

/** Builds the usage of a window from its endpoint snapshots and, when it had one, the sampler's record. */
export function buildUsage(
  start: Snapshot,
  end: Snapshot,
  win: WindowStats | null,
  threadCpuMs: number | null = null,
  node: NodeFigures = NO_WINDOW,
  counters: UsageCounters | null = null,
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
  // The sampler's largest reading since the window opened: its thread's samples and every window edge on any thread
  // meanwhile (a nested window's endpoints are its enclosing windows' observations too).
  const observed = win ? win.maxRssBytes : NaN;
  const samples = win && Number.isFinite(observed) ? win.samples : 0;
  if (end.peakRssBytes > start.peakRssBytes) {
    // The lifetime high-water mark rose inside the window, so the window holds the new mark: exact.
    peakRssBytes = peakAtLeast(end.peakRssBytes, endpointsMax, observed);
    peakRssSource = 'hwm';
  } else if (samples > 0 || observed > endpointsMax) {
    peakRssBytes = peakAtLeast(observed, endpointsMax);
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
    taskCpuMs: null,
    taskCpuReason: TASK_CPU_NOT_REQUESTED,
    overlappingWindows: node.overlappingWindows,
    eventLoopUtilization: node.eventLoopUtilization,
    eventLoopUtilizationReason: node.eventLoopUtilizationReason,
    heapUsedStartBytes: node.heapUsedStartBytes,
    heapUsedEndBytes: node.heapUsedEndBytes,
    heapUsedPeakBytes: node.heapUsedPeakBytes,
    heapUsedPeakReason: node.heapUsedPeakReason,
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
    majorPageFaults: counters ? counters.majorPageFaults : null,
    minorPageFaults: counters ? counters.minorPageFaults : null,
    voluntaryContextSwitches: counters ? counters.voluntaryContextSwitches : null,
    involuntaryContextSwitches: counters ? counters.involuntaryContextSwitches : null,
    fsInputBlocks: counters ? counters.fsInputBlocks : null,
    fsOutputBlocks: counters ? counters.fsOutputBlocks : null,
    ioReadBytes: counters ? counters.ioReadBytes : null,
    ioWriteBytes: counters ? counters.ioWriteBytes : null,
    gpuEnergyIntervalMs: g.gpuEnergyIntervalMs,
    gpuProcessUtilizationIntervalMs: g.gpuProcessUtilizationIntervalMs,
    gpuSamplingNote: g.gpuSamplingNote,
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
