// The only place that loads the native addon. Everything else talks to it through this typed surface.
import { isAbsolute, join } from 'node:path';
import loadBinding from 'node-gyp-build';
import { codedError, nativeLoadError, typeError } from './errors';

export interface NativeGpuInfo {
  state: 'pending' | 'ready' | 'unavailable' | 'disabled';
  reason: string | null;
  reasonCode: string | null;
  library: string | null;
  driverVersion: string | null;
  nvmlVersion: string | null;
  ownPidNamespace: boolean;
  processListVersion: number;
  processEntryBytes: number;
  pidMatch: 'host' | 'translated' | 'list-only' | 'foreign';
  deviceOrder: 'PCI_BUS_ID' | 'FASTEST_FIRST';
  deviceOrderCertain: boolean;
  deviceOrderNote: string | null;
  devices: NativeGpuDevice[];
}

/** A MIG slice's parent GPU and instance ids. */
export interface NativeMigSlice {
  parentIndex: number;
  parentUuid: string;
  parentName: string;
  /** The slice's index under its parent (nvmlDeviceGetMigDeviceHandleByIndex). */
  index: number;
  gpuInstanceId: number | null;
  computeInstanceId: number | null;
}

export interface NativeGpuDevice {
  index: number;
  uuid: string;
  name: string;
  memoryTotalBytes: number | null;
  mig: NativeMigSlice | null;
  accountingMode: 'enabled' | 'disabled' | 'unsupported' | null;
  powerInstant: boolean;
}

export interface NativeBinding {
  readonly SNAPSHOT_SLOTS: number;
  readonly WINDOW_SLOTS: number;
  readonly GPU_WINDOW_SLOTS: number;
  readonly GPU_SNAPSHOT_SLOTS: number;
  /** The share of a core a tree's PSS passes may take (native/tree.h). */
  readonly PSS_CPU_BUDGET: number;
  /** Every shared layout and reason list: { List: { NAME: index } } (native/layout.h). */
  readonly layouts: Record<string, Record<string, number>>;
  /** Fills the process slots and, if `out` is longer, the cached GPU slots (never an NVML call). */
  snapshot(out: Float64Array, withThreadCpu?: boolean): void;
  /** Keeps `out` for snapshotBound(), windowOpen(interval) and windowClose(id) (the hot paths: no argument to
   *  unwrap). */
  bindSnapshotBuffer(out: Float64Array): void;
  /** snapshot() into the bound buffer. */
  snapshotBound(): void;
  /** The calling thread's CPU time (user + system), ms; NaN if unreadable. */
  threadCpuMs(): number;
  /** Where windowClose(id) writes the window's stats. */
  bindWindowBuffer(out: Float64Array): void;
  /** Opens a sampler window; fills `startSnapshot` (or the bound snapshot buffer) right after opening. */
  windowOpen(intervalMs: number, startSnapshot?: Float64Array): number;
  /** The pids whose GPU memory the window counts (default: this process). */
  windowSetPids(id: number, pids: number[]): boolean;
  /** The window's stats so far; with `snapshot`, a snapshot (with the thread clock) taken first, whose RSS counts
   *  for every open window. */
  windowRead(id: number, out: Float64Array, snapshot?: Float64Array): boolean;
  /** Fills `endSnapshot` (if given), then closes the window and fills `out` with its stats; with the id alone, the
   *  bound buffers. */
  windowClose(id: number, out?: Float64Array, endSnapshot?: Float64Array): boolean;
  /** threadError: why the last sampler thread start failed (null if none did); ownCpuMs: CPU of taskmeter's own
   *  threads since the addon was loaded. */
  samplerState(): { openWindows: number; threadRunning: boolean; threadError: string | null; ownCpuMs: number };
  /** For the tests only: 'nextWindowId' (the id the next window gets), 'failThreadStarts' (the next n thread starts
   *  fail as they do under a pids limit), 'throwInThreads' (the RSS (1) and/or GPU (2) thread throws at its next
   *  round), 'throwBadAlloc' (the next allocation in a window's opening (1) and/or in adding the next RSS reading (2)
   *  throws std::bad_alloc), 'failRssReads' (the RSS thread's next n readings fail), 'holdNextFork' and
   *  'releaseFork' (POSIX, value 1: the next spawn holds its copy of Node between fork and exec until released
   *  twice, once before it registers the copy as its own and once before the copy may exec; spawn.h),
   *  'holdFirstTreeRead' (the next first sample of a tree holds after reading its root (1) or before reading it
   *  again (2), until 0 releases it; tree.h) and 'firstTreeReadHeld' (returns whether a sample holds now). */
  testHook(
    name:
      | 'nextWindowId'
      | 'failThreadStarts'
      | 'throwInThreads'
      | 'throwBadAlloc'
      | 'failRssReads'
      | 'holdNextFork'
      | 'releaseFork'
      | 'holdFirstTreeRead'
      | 'firstTreeReadHeld',
    value: number,
  ): boolean | undefined;
  readonly SPAWN_SLOTS: number;
  readonly TIMELINE_COLUMNS: number;
  /** Makes a window follow a process tree and/or record a timeline. */
  windowConfigure(
    id: number,
    rootPid: number,
    baselineExisting: boolean,
    descendants: boolean,
    timeline: boolean,
  ): boolean;
  /** Moves the window's timeline points out (TIMELINE_COLUMNS per point). */
  windowTimeline(id: number): { points: Float64Array; maxHwmComm: string } | null;
  /**
   * Starts the command (POSIX: fork + exec through the exec helper; Windows: CreateProcessW in a job object); stdio
   * entries: -1 inherit, -2 /dev/null, -3 pipe, >= 0 a descriptor. onExit gets the SPAWN_* slots once, when the
   * command has been reaped; until then the event loop stays alive. Piped streams: POSIX returns their descriptors
   * in fds; Windows reads them itself and passes onExit what they held (at most 256 MiB each; overflow when a
   * stream held more). Throws with .code (the errno's name), .errno and .stage (SPAWN_STAGE_*).
   */
  spawn(
    file: string,
    argv: string[],
    env: string[],
    cwd: string | null,
    stdio: number[],
    onExit: (slots: Float64Array, stdout?: Buffer, stderr?: Buffer, overflow?: boolean) => void,
  ): { pid: number; fds: number[] };
  /** Spawned commands whose waiter or result is still alive. */
  spawnPending(): number;
  /** Sends signal `signo` to a spawned command while it has not ended: 0 when sent, ESRCH (3) once it has ended (its
   *  pid may soon be another process's), ENOSYS on Windows, else kill's errno. */
  spawnSignal(pid: number, signo: number): number;
  /** Sends signo to a spawned command that has not ended and all its descendants (frozen first); how many were
   *  signalled, or -errno (-ESRCH: ended, or not a command of ours). POSIX only. */
  killTree(pid: number, signo: number): number;
  /** out[0], out[1] = this process's rchar and wchar (/proc/self/io; NaN where there is none). */
  readSelfIo(out: Float64Array): void;
  /** Waits at most timeoutMs for GPU detection (runs on the GPU thread); true when finished. */
  gpuWait(timeoutMs: number): boolean;
  gpuInfo(): NativeGpuInfo;
  nvmlErrorText(code: number): string;
}

// The layouts shared with the addon, one line per slot in slot order. Each native list (an X-macro in the header
// named) is exported by the addon as layouts.<List> = { NAME: index }, and checkLayouts() compares it with these at
// load: a missing or moved name throws ERR_TASKMETER_ABI_MISMATCH. Adding a slot: one X(...) line at the end of the
// C++ list, one line at the end of its list here.
export const expectedLayouts: Record<string, Record<string, number>> = {};
function layout(list: string): (name: string) => number {
  const names: Record<string, number> = {};
  expectedLayouts[list] = names;
  let next = 0;
  return (name) => {
    names[name] = next;
    return next++;
  };
}

// native/proc/proc.h SnapshotSlot
const snap = layout('SnapshotSlot');
export const SNAP_TIME_MS = snap('SNAP_TIME_MS');
export const SNAP_EPOCH_MS = snap('SNAP_EPOCH_MS');
export const SNAP_CPU_USER_MS = snap('SNAP_CPU_USER_MS');
export const SNAP_CPU_SYSTEM_MS = snap('SNAP_CPU_SYSTEM_MS');
export const SNAP_RSS_BYTES = snap('SNAP_RSS_BYTES');
export const SNAP_VMS_BYTES = snap('SNAP_VMS_BYTES');
export const SNAP_PEAK_RSS_BYTES = snap('SNAP_PEAK_RSS_BYTES');
export const SNAP_THREAD_CPU_MS = snap('SNAP_THREAD_CPU_MS');
export const SNAP_MINOR_FAULTS = snap('SNAP_MINOR_FAULTS');
export const SNAP_MAJOR_FAULTS = snap('SNAP_MAJOR_FAULTS');
export const SNAP_VOLUNTARY_CTX_SWITCHES = snap('SNAP_VOLUNTARY_CTX_SWITCHES');
export const SNAP_INVOLUNTARY_CTX_SWITCHES = snap('SNAP_INVOLUNTARY_CTX_SWITCHES');
export const SNAP_FS_INPUT_BLOCKS = snap('SNAP_FS_INPUT_BLOCKS');
export const SNAP_FS_OUTPUT_BLOCKS = snap('SNAP_FS_OUTPUT_BLOCKS');

// native/sampler.h WindowSlot
const win = layout('WindowSlot');
export const WIN_MAX_RSS_BYTES = win('WIN_MAX_RSS_BYTES');
export const WIN_SAMPLES = win('WIN_SAMPLES');
export const WIN_INTERVAL_MS = win('WIN_INTERVAL_MS');
export const WIN_GPU_SAMPLES = win('WIN_GPU_SAMPLES');
export const WIN_GPU_INTERVAL_MS = win('WIN_GPU_INTERVAL_MS');
export const WIN_GPU_STALE_MS = win('WIN_GPU_STALE_MS');
export const WIN_GPU_ENERGY_INTERVAL_MS = win('WIN_GPU_ENERGY_INTERVAL_MS');
export const WIN_TREE_RSS_BYTES = win('WIN_TREE_RSS_BYTES');
export const WIN_TREE_RSS_PEAK_BYTES = win('WIN_TREE_RSS_PEAK_BYTES');
export const WIN_TREE_MAX_HWM_BYTES = win('WIN_TREE_MAX_HWM_BYTES');
export const WIN_TREE_MAX_HWM_PID = win('WIN_TREE_MAX_HWM_PID');
export const WIN_TREE_CPU_USER_MS = win('WIN_TREE_CPU_USER_MS');
export const WIN_TREE_CPU_SYSTEM_MS = win('WIN_TREE_CPU_SYSTEM_MS');
export const WIN_TREE_PROCESSES = win('WIN_TREE_PROCESSES');
export const WIN_TREE_ROOT_ALIVE = win('WIN_TREE_ROOT_ALIVE');
export const WIN_TREE_SAMPLES = win('WIN_TREE_SAMPLES');
export const WIN_TREE_RSS_FIRST_BYTES = win('WIN_TREE_RSS_FIRST_BYTES');
export const WIN_TREE_INTERVAL_MS = win('WIN_TREE_INTERVAL_MS');
export const WIN_GPU_PROCESS_INTERVAL_MS = win('WIN_GPU_PROCESS_INTERVAL_MS');
export const WIN_SAMPLER_CPU_MS = win('WIN_SAMPLER_CPU_MS');
export const WIN_GPU_PROCESS_UTIL_INTERVAL_MS = win('WIN_GPU_PROCESS_UTIL_INTERVAL_MS');
export const WIN_GPU_STRETCHED = win('WIN_GPU_STRETCHED');
export const WIN_TREE_PSS_PEAK_BYTES = win('WIN_TREE_PSS_PEAK_BYTES');
export const WIN_TREE_PSS_SAMPLES = win('WIN_TREE_PSS_SAMPLES');
export const WIN_TREE_PSS_INTERVAL_MS = win('WIN_TREE_PSS_INTERVAL_MS');
export const WIN_TREE_PSS_DENIED = win('WIN_TREE_PSS_DENIED');
export const WIN_TREE_UNREADABLE = win('WIN_TREE_UNREADABLE');
export const WIN_TREE_IO_READ_BYTES = win('WIN_TREE_IO_READ_BYTES');
export const WIN_TREE_IO_WRITE_BYTES = win('WIN_TREE_IO_WRITE_BYTES');
export const WIN_TREE_MINOR_FAULTS = win('WIN_TREE_MINOR_FAULTS');
export const WIN_TREE_MAJOR_FAULTS = win('WIN_TREE_MAJOR_FAULTS');
export const WIN_TREE_FS_IN_BLOCKS = win('WIN_TREE_FS_IN_BLOCKS');
export const WIN_TREE_FS_OUT_BLOCKS = win('WIN_TREE_FS_OUT_BLOCKS');
export const WIN_TREE_PSS_RSS_BYTES = win('WIN_TREE_PSS_RSS_BYTES');

// native/spawn.h SpawnSlot
const sp = layout('SpawnSlot');
export const SP_EXITED = sp('SP_EXITED');
export const SP_EXIT_CODE = sp('SP_EXIT_CODE');
export const SP_SIGNAL = sp('SP_SIGNAL');
export const SP_USER_MS = sp('SP_USER_MS');
export const SP_SYSTEM_MS = sp('SP_SYSTEM_MS');
export const SP_MAX_RSS_BYTES = sp('SP_MAX_RSS_BYTES');
export const SP_START_MONO_MS = sp('SP_START_MONO_MS');
export const SP_END_MONO_MS = sp('SP_END_MONO_MS');
export const SP_END_EPOCH_MS = sp('SP_END_EPOCH_MS');
export const SP_CONTAMINATION_BYTES = sp('SP_CONTAMINATION_BYTES');
/** Windows: the job's PeakJobMemoryUsed (commit charge of the whole tree at once); NaN elsewhere. */
export const SP_TREE_PEAK_BYTES = sp('SP_TREE_PEAK_BYTES');
/** The rest of the reaped rusage and the I/O bytes (native/spawn.h); NaN where unknown. */
export const SP_MINOR_FAULTS = sp('SP_MINOR_FAULTS');
export const SP_MAJOR_FAULTS = sp('SP_MAJOR_FAULTS');
export const SP_VOLUNTARY_CTX_SWITCHES = sp('SP_VOLUNTARY_CTX_SWITCHES');
export const SP_INVOLUNTARY_CTX_SWITCHES = sp('SP_INVOLUNTARY_CTX_SWITCHES');
export const SP_FS_INPUT_BLOCKS = sp('SP_FS_INPUT_BLOCKS');
export const SP_FS_OUTPUT_BLOCKS = sp('SP_FS_OUTPUT_BLOCKS');
export const SP_IO_READ_BYTES = sp('SP_IO_READ_BYTES');
export const SP_IO_WRITE_BYTES = sp('SP_IO_WRITE_BYTES');

// native/spawn.h SpawnStage: where a failed start failed.
const stage = layout('SpawnStage');
export const SPAWN_STAGE_SETUP = stage('SPAWN_STAGE_SETUP');
export const SPAWN_STAGE_CHDIR = stage('SPAWN_STAGE_CHDIR');
export const SPAWN_STAGE_EXEC = stage('SPAWN_STAGE_EXEC');
export const SPAWN_STAGE_THREAD = stage('SPAWN_STAGE_THREAD');

// native/timeline.h TimelineColumn
const tl = layout('TimelineColumn');
export const TL_TIME_MS = tl('TL_TIME_MS');
export const TL_RSS_BYTES = tl('TL_RSS_BYTES');
export const TL_TREE_RSS_BYTES = tl('TL_TREE_RSS_BYTES');
export const TL_GPU_PROCESS_BYTES = tl('TL_GPU_PROCESS_BYTES');
export const TL_GPU_UTIL_PERCENT = tl('TL_GPU_UTIL_PERCENT');
export const TL_CPU_PERCENT = tl('TL_CPU_PERCENT');

// native/gpu_sampler.h GpuWindowSlot
const gw = layout('GpuWindowSlot');
export const GW_MEMORY_USED_PEAK_BYTES = gw('GW_MEMORY_USED_PEAK_BYTES');
export const GW_PROCESS_MEMORY_PEAK_BYTES = gw('GW_PROCESS_MEMORY_PEAK_BYTES');
export const GW_PROCESS_MEMORY_END_BYTES = gw('GW_PROCESS_MEMORY_END_BYTES');
export const GW_ENERGY_JOULES = gw('GW_ENERGY_JOULES');
export const GW_UTILIZATION_AVG_PERCENT = gw('GW_UTILIZATION_AVG_PERCENT');
export const GW_PROCESS_REASON = gw('GW_PROCESS_REASON');
export const GW_DEVICE_ERROR = gw('GW_DEVICE_ERROR');
export const GW_ENERGY_REASON = gw('GW_ENERGY_REASON');
export const GW_PROCESS_PEAK_FROM_ACCOUNTING = gw('GW_PROCESS_PEAK_FROM_ACCOUNTING');
export const GW_PROCESS_UTIL_SM_PERCENT = gw('GW_PROCESS_UTIL_SM_PERCENT');
export const GW_PROCESS_UTIL_MEM_PERCENT = gw('GW_PROCESS_UTIL_MEM_PERCENT');
export const GW_PROCESS_UTIL_ERROR = gw('GW_PROCESS_UTIL_ERROR');
export const GW_POWER_SOURCE = gw('GW_POWER_SOURCE');
export const GW_PROCESS_SAMPLES = gw('GW_PROCESS_SAMPLES');
export const GW_SAMPLES = gw('GW_SAMPLES');
export const GW_PROCESS_UTIL_SAMPLES = gw('GW_PROCESS_UTIL_SAMPLES');

// native/gpu_sampler.h GpuSnapshotSlot
const gs = layout('GpuSnapshotSlot');
export const GS_MEMORY_USED_BYTES = gs('GS_MEMORY_USED_BYTES');
export const GS_MEMORY_TOTAL_BYTES = gs('GS_MEMORY_TOTAL_BYTES');
export const GS_PROCESS_MEMORY_BYTES = gs('GS_PROCESS_MEMORY_BYTES');
export const GS_UTILIZATION_PERCENT = gs('GS_UTILIZATION_PERCENT');
export const GS_POWER_WATTS = gs('GS_POWER_WATTS');
export const GS_ENERGY_JOULES = gs('GS_ENERGY_JOULES');
export const GS_AGE_MS = gs('GS_AGE_MS');
export const GS_PROCESS_REASON = gs('GS_PROCESS_REASON');
export const GS_POWER_SOURCE = gs('GS_POWER_SOURCE');

// native/nvml/gpu.h ProcReason
const procReason = layout('ProcReason');
export const PROC_OK = procReason('PROC_OK');
export const PROC_PID_NAMESPACE = procReason('PROC_PID_NAMESPACE');
export const PROC_NOT_AVAILABLE = procReason('PROC_NOT_AVAILABLE');
export const PROC_CALL_FAILED = procReason('PROC_CALL_FAILED');
export const PROC_MALFORMED = procReason('PROC_MALFORMED');
export const PROC_NO_FUNCTION = procReason('PROC_NO_FUNCTION');
export const PROC_NO_DATA = procReason('PROC_NO_DATA');
export const PROC_NS_MEMORY_NOT_MATCHED = procReason('PROC_NS_MEMORY_NOT_MATCHED');
export const PROC_HOST_PIDS = procReason('PROC_HOST_PIDS');
export const PROC_ABSENCE_UNCERTAIN = procReason('PROC_ABSENCE_UNCERTAIN');
export const PROC_NOT_SAMPLED = procReason('PROC_NOT_SAMPLED');

// native/gpu_window.h EnergyReason
const energyReason = layout('EnergyReason');
export const ENERGY_OK = energyReason('ENERGY_OK');
export const ENERGY_NO_SOURCE = energyReason('ENERGY_NO_SOURCE');
export const ENERGY_COUNTER_BACKWARDS = energyReason('ENERGY_COUNTER_BACKWARDS');
export const ENERGY_MIG = energyReason('ENERGY_MIG');
export const ENERGY_NOT_SAMPLED = energyReason('ENERGY_NOT_SAMPLED');

// native/gpu_window.h GpuKind: bits of WIN_GPU_STRETCHED
const gpuKind = layout('GpuKind');
export const KIND_ENERGY = gpuKind('KIND_ENERGY');
export const KIND_PROCESS_UTIL = gpuKind('KIND_PROCESS_UTIL');
export const KIND_DEVICE = gpuKind('KIND_DEVICE');

// native/nvml/gpu.h PowerSource
const powerSource = layout('PowerSource');
export const POWER_NONE = powerSource('POWER_NONE');
export const POWER_INSTANT = powerSource('POWER_INSTANT');
export const POWER_AVERAGE = powerSource('POWER_AVERAGE');

export const packageRoot = join(__dirname, '..');

function load(): NativeBinding {
  // Development hook: load a specific build (the sanitizer build of `npm run test:asan`, the cmake-js build).
  const override = process.env.TASKMETER_ADDON;
  if (override) {
    if (!isAbsolute(override)) {
      const message = `taskmeter: TASKMETER_ADDON must be an absolute path, got "${override}"`;
      throw typeError(message, 'ERR_INVALID_ARG_VALUE');
    }
    try {
      return require(override) as NativeBinding;
    } catch (err) {
      throw nativeLoadError(err);
    }
  }
  try {
    return loadBinding(packageRoot) as NativeBinding;
  } catch (err) {
    throw nativeLoadError(err);
  }
}

/**
 * Throws ERR_TASKMETER_ABI_MISMATCH unless every name this package uses sits at the same index in the addon's
 * layouts (`native.layouts`). Exported for the test that feeds it a swapped map.
 */
export function checkLayouts(
  nativeLayouts: unknown,
  expected: Record<string, Record<string, number>> = expectedLayouts,
): void {
  const problems: string[] = [];
  const have = (nativeLayouts ?? {}) as Record<string, Record<string, number> | undefined>;
  for (const [list, names] of Object.entries(expected)) {
    const map = have[list];
    if (map === undefined || map === null || typeof map !== 'object') {
      problems.push(`${list} is missing`);
      continue;
    }
    for (const [name, index] of Object.entries(names)) {
      if (map[name] === undefined) problems.push(`${list}.${name} is missing`);
      else if (map[name] !== index) problems.push(`${list}.${name} is slot ${map[name]} in the addon, ${index} here`);
    }
  }
  if (problems.length > 0) {
    throw codedError(
      Error,
      'taskmeter: the native addon does not match this version of the package (rebuild it: npm rebuild taskmeter): ' +
        problems.join('; '),
      'ERR_TASKMETER_ABI_MISMATCH',
    );
  }
}

export const native: NativeBinding = load();
checkLayouts(native.layouts);
