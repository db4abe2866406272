// The only place that loads the native addon. Everything else talks to it through this typed surface.
import { isAbsolute, join } from 'node:path';
import loadBinding from 'node-gyp-build';

export interface NativeGpuInfo {
  state: 'pending' | 'ready' | 'unavailable' | 'disabled';
  reason: string | null;
  library: string | null;
  driverVersion: string | null;
  nvmlVersion: string | null;
  ownPidNamespace: boolean;
  processListVersion: number;
  processEntryBytes: number;
  devices: { index: number; uuid: string; name: string; memoryTotalBytes: number | null }[];
}

export interface NativeBinding {
  readonly SNAPSHOT_SLOTS: number;
  readonly WINDOW_SLOTS: number;
  readonly GPU_WINDOW_SLOTS: number;
  readonly GPU_SNAPSHOT_SLOTS: number;
  /** Fills the process slots and, if `out` is longer, the cached GPU slots (never an NVML call). */
  snapshot(out: Float64Array, withThreadCpu?: boolean): void;
  /** Keeps `out` for snapshotBound(), windowOpen(interval) and windowClose(id) (the hot paths: no argument to unwrap). */
  bindSnapshotBuffer(out: Float64Array): void;
  /** snapshot() into the bound buffer. */
  snapshotBound(): void;
  /** Where windowClose(id) writes the window's stats. */
  bindWindowBuffer(out: Float64Array): void;
  /** Opens a sampler window; fills `startSnapshot` (or the bound snapshot buffer) right after opening. */
  windowOpen(intervalMs: number, startSnapshot?: Float64Array): number;
  /** The pids whose GPU memory the window counts (default: this process). */
  windowSetPids(id: number, pids: number[]): boolean;
  windowRead(id: number, out: Float64Array): boolean;
  /** Fills `endSnapshot` (if given), then closes the window and fills `out` with its stats; with the id alone, the
   *  bound buffers. */
  windowClose(id: number, out?: Float64Array, endSnapshot?: Float64Array): boolean;
  /** threadError: why the last sampler thread start failed (null if none did); ownCpuMs: CPU of taskmeter's own
   *  threads since the addon was loaded. */
  samplerState(): { openWindows: number; threadRunning: boolean; threadError: string | null; ownCpuMs: number };
  /** For the tests only: 'nextWindowId' (the id the next window gets), 'failThreadStarts' (the next n thread starts
   *  fail as they do under a pids limit). */
  testHook(name: 'nextWindowId' | 'failThreadStarts', value: number): void;
  readonly SPAWN_SLOTS: number;
  readonly TIMELINE_COLUMNS: number;
  /** Makes a window follow a process tree and/or record a timeline. */
  windowConfigure(id: number, rootPid: number, baselineExisting: boolean, descendants: boolean, timeline: boolean): boolean;
  /** Moves the window's timeline points out (TIMELINE_COLUMNS per point). */
  windowTimeline(id: number): { points: Float64Array; maxHwmComm: string } | null;
  /** fork + exec; stdio entries: -1 inherit, -2 /dev/null, -3 pipe, >= 0 a descriptor. Throws with .code. */
  spawn(file: string, argv: string[], env: string[], cwd: string | null, stdio: number[]): { pid: number; id: number; fds: number[] };
  /** The waiter's record of a spawned command (SPAWN_* slots); false for an unknown id. */
  spawnPoll(id: number, out: Float64Array, release: boolean): boolean;
  /** Waits at most timeoutMs for GPU detection (runs on the GPU thread); true when finished. */
  gpuWait(timeoutMs: number): boolean;
  gpuInfo(): NativeGpuInfo;
  nvmlErrorText(code: number): string;
}

// Slot order of native/proc/proc.h (SnapshotSlot) and native/sampler.h (WindowSlot, GpuWindowSlot, GpuSnapshotSlot).
export const SNAP_TIME_MS = 0;
export const SNAP_EPOCH_MS = 1;
export const SNAP_CPU_USER_MS = 2;
export const SNAP_CPU_SYSTEM_MS = 3;
export const SNAP_RSS_BYTES = 4;
export const SNAP_VMS_BYTES = 5;
export const SNAP_PEAK_RSS_BYTES = 6;
export const SNAP_THREAD_CPU_MS = 7;

export const WIN_MAX_RSS_BYTES = 0;
export const WIN_SAMPLES = 1;
export const WIN_INTERVAL_MS = 2;
export const WIN_GPU_SAMPLES = 3;
export const WIN_GPU_INTERVAL_MS = 4;
export const WIN_GPU_STALE_MS = 5;
export const WIN_GPU_FROM_CACHE = 6;
export const WIN_TREE_RSS = 7;
export const WIN_TREE_RSS_PEAK = 8;
export const WIN_TREE_MAX_HWM = 9;
export const WIN_TREE_MAX_HWM_PID = 10;
export const WIN_TREE_CPU_USER_MS = 11;
export const WIN_TREE_CPU_SYSTEM_MS = 12;
export const WIN_TREE_PROCESSES = 13;
export const WIN_TREE_ROOT_ALIVE = 14;
export const WIN_TREE_SAMPLES = 15;
export const WIN_TREE_RSS_FIRST = 16;
export const WIN_SAMPLER_CPU_MS = 17;

export const SP_EXITED = 0;
export const SP_EXIT_CODE = 1;
export const SP_SIGNAL = 2;
export const SP_USER_MS = 3;
export const SP_SYSTEM_MS = 4;
export const SP_MAX_RSS = 5;
export const SP_START_MONO_MS = 6;
export const SP_END_MONO_MS = 7;
export const SP_END_EPOCH_MS = 8;
export const SP_CONTAMINATION_BYTES = 9;

export const TL_TIME_MS = 0;
export const TL_RSS = 1;
export const TL_TREE_RSS = 2;
export const TL_GPU_PROCESS = 3;
export const TL_GPU_UTIL = 4;
export const TL_CPU_PERCENT = 5;

export const GW_MEMORY_USED_PEAK = 0;
export const GW_PROCESS_MEMORY_PEAK = 1;
export const GW_PROCESS_MEMORY_END = 2;
export const GW_ENERGY_J = 3;
export const GW_UTILIZATION_AVG = 4;
export const GW_PROCESS_REASON = 5;
export const GW_DEVICE_ERROR = 6;
export const GW_ENERGY_REASON = 7;

export const GS_MEMORY_USED = 0;
export const GS_MEMORY_TOTAL = 1;
export const GS_PROCESS_MEMORY = 2;
export const GS_UTILIZATION = 3;
export const GS_POWER_W = 4;
export const GS_ENERGY_J = 5;
export const GS_AGE_MS = 6;
export const GS_PROCESS_REASON = 7;

export const packageRoot = join(__dirname, '..');

function load(): NativeBinding {
  // Development hook: load a specific build (the sanitizer build of `npm run test:asan`, the cmake-js build).
  const override = process.env.TASKMETER_ADDON;
  if (override) {
    if (!isAbsolute(override)) throw new Error(`taskmeter: TASKMETER_ADDON must be an absolute path, got "${override}"`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(override) as NativeBinding;
  }
  try {
    return loadBinding(packageRoot) as NativeBinding;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const e = new Error(
      `taskmeter: could not load its native addon for ${process.platform}-${process.arch} ` +
        `(Node ${process.versions.node}, N-API ${process.versions.napi}).\n${reason}\n` +
        'Possible solutions:\n' +
        '- reinstall so that the prebuilt binary for this platform is used: npm install taskmeter\n' +
        '- or build it from source, which needs python3, make and a C++17 compiler: npm rebuild taskmeter\n' +
        '- check that the package folder holds prebuilds/<platform>-<arch>/taskmeter.node or build/Release/taskmeter.node',
    );
    (e as Error & { code: string }).code = 'ERR_TASKMETER_NATIVE_LOAD';
    throw e;
  }
}

export const native: NativeBinding = load();
if (
  native.SNAPSHOT_SLOTS !== 8 ||
  native.WINDOW_SLOTS !== 18 ||
  native.GPU_WINDOW_SLOTS !== 8 ||
  native.GPU_SNAPSHOT_SLOTS !== 8 ||
  native.SPAWN_SLOTS !== 10 ||
  native.TIMELINE_COLUMNS !== 6
) {
  throw new Error('taskmeter: the native addon does not match this version of the package (rebuild it)');
}
