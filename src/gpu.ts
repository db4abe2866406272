// The GPU as the JS thread sees it: detection results and the parsing of the sampler's cached readings. Every NVML
// call happens on the addon's GPU thread; nothing here can wait on the driver (except the bounded wait at import).
import {
  GS_AGE_MS,
  GS_ENERGY_JOULES,
  GS_MEMORY_TOTAL_BYTES,
  GS_MEMORY_USED_BYTES,
  GS_POWER_WATTS,
  GS_PROCESS_MEMORY_BYTES,
  GS_PROCESS_REASON,
  GS_UTILIZATION_PERCENT,
  GW_DEVICE_ERROR,
  GW_ENERGY_JOULES,
  GW_ENERGY_REASON,
  GW_MEMORY_USED_PEAK_BYTES,
  GW_PROCESS_MEMORY_END_BYTES,
  GW_PROCESS_MEMORY_PEAK_BYTES,
  GW_PROCESS_REASON,
  GW_UTILIZATION_AVG_PERCENT,
  ENERGY_COUNTER_BACKWARDS,
  ENERGY_NO_SOURCE,
  ENERGY_OK,
  PROC_CALL_FAILED,
  PROC_MALFORMED,
  PROC_NO_DATA,
  PROC_NO_FUNCTION,
  PROC_NOT_AVAILABLE,
  PROC_OK,
  PROC_PID_NAMESPACE,
  native,
  NativeGpuInfo,
} from './binding';

export interface GpuDevice {
  /** NVML's index of the device (CUDA_VISIBLE_DEVICES may show a subset, in its own order). */
  index: number;
  uuid: string;
  name: string;
  memoryTotalBytes: number | null;
}

/** What taskmeter found of the GPUs. */
export interface GpuInfo {
  available: boolean;
  /** Why the GPU is unavailable (null when available). */
  reason: string | null;
  /** The reason's stable code (README, "GPU reason codes"): e.g. NVML_LIBRARY_NOT_FOUND, GPU_DISABLED, or the
   *  NVML_ERROR_* name NVML's init returned. Null when available. */
  reasonCode: string | null;
  /** The NVML library file actually loaded, or null. */
  library: string | null;
  driverVersion: string | null;
  nvmlVersion: string | null;
  devices: GpuDevice[];
  /** True while detection is still running (NVML can take seconds to open a GPU without persistence mode). */
  pending: boolean;
  /** Whether a process's GPU memory can be attributed: false inside its own PID namespace (see README). */
  processAttribution: boolean;
  /** Which process-list call version the library offers (3, 2, 1; 0 none) and the entry size read. */
  processListVersion: number;
  processEntryBytes: number;
}

/** Latest cached values of one GPU, as the GPU thread last read them (never an NVML call on the JS thread). */
export interface GpuSnapshot {
  index: number;
  uuid: string;
  name: string;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  /** GPU memory of this process (compute and graphics lists); null when it cannot be attributed (see reason). */
  processMemoryBytes: number | null;
  processMemoryReason: string | null;
  utilizationPercent: number | null;
  powerWatts: number | null;
  /** Energy the GPU used since taskmeter first read it, J. */
  energyJoules: number | null;
  /** How old these values are, ms. */
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
  processMemoryReason: string | null;
  energyJoules: number | null;
  energyReason: string | null;
  utilizationAvgPercent: number | null;
  /** A device-wide failure seen in the window (e.g. the GPU fell off the bus), else null. */
  error: string | null;
}

const PROCESS_REASONS: Record<number, string | null> = {
  [PROC_OK]: null,
  [PROC_PID_NAMESPACE]:
    "this process is in its own PID namespace (a container): NVML reports the host's PIDs, which cannot be matched " +
    "to this process's (set TASKMETER_PID_NAMESPACE=host if it shares the host's PID namespace)",
  [PROC_NOT_AVAILABLE]:
    'NVML reports the process memory as not available (NVML_VALUE_NOT_AVAILABLE: Windows WDDM, or no permission)',
  [PROC_CALL_FAILED]: 'the process-list call failed',
  [PROC_MALFORMED]:
    'NVML returned a malformed process list (pid 0, memory above the device total or an impossible count); discarded',
  [PROC_NO_FUNCTION]: 'this NVML library has no process-list function',
  [PROC_NO_DATA]: 'no GPU reading yet',
};
const ENERGY_REASONS: Record<number, string | null> = {
  [ENERGY_OK]: null,
  [ENERGY_NO_SOURCE]: 'the GPU reports neither an energy counter nor power draw',
  [ENERGY_COUNTER_BACKWARDS]:
    'the energy counter went backwards (driver reload?); that stretch was integrated from power draw instead',
};

const num = (v: number): number | null => (Number.isFinite(v) && v >= 0 ? v : null);

function detectTimeoutMs(): number {
  const raw = process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS;
  if (raw === undefined || raw === '') return 1000;
  const v = Number(raw);
  return Number.isFinite(v) && v >= 0 ? Math.min(v, 60_000) : 1000;
}

// Detection runs on the addon's GPU thread from the moment the addon loads; importing waits for it at most
// TASKMETER_GPU_DETECT_TIMEOUT_MS (default 1000 ms; NVML without a driver answers in ~10 ms).
native.gpuWait(detectTimeoutMs());
let nativeInfo: NativeGpuInfo = native.gpuInfo();

/** The devices the GPU thread reads, in the order of the cached slots. Re-read while detection is pending. */
export function gpuDevices(): NativeGpuInfo['devices'] {
  if (nativeInfo.state === 'pending') nativeInfo = native.gpuInfo();
  return nativeInfo.state === 'ready' ? nativeInfo.devices : [];
}

/** True when an NVIDIA GPU is usable (library loaded, driver initialised, at least one device visible), as found
 *  when taskmeter was imported. */
export const hasGpu: boolean = nativeInfo.state === 'ready' && nativeInfo.devices.length > 0;

export function gpuInfo(): GpuInfo {
  if (nativeInfo.state === 'pending') nativeInfo = native.gpuInfo();
  const i = nativeInfo;
  const available = i.state === 'ready' && i.devices.length > 0;
  return {
    available,
    reason: available ? null : (i.reason ?? 'no GPU'),
    reasonCode: available ? null : (i.reasonCode ?? 'GPU_NONE_FOUND'),
    library: i.library,
    driverVersion: i.driverVersion,
    nvmlVersion: i.nvmlVersion,
    devices: available ? i.devices.map((d) => ({ ...d })) : [],
    pending: i.state === 'pending',
    processAttribution: available && !i.ownPidNamespace && i.processListVersion > 0,
    processListVersion: i.processListVersion,
    processEntryBytes: i.processEntryBytes,
  };
}

export function gpuSnapshotsFrom(buf: Float64Array, offset: number, devices: NativeGpuInfo['devices']): GpuSnapshot[] {
  const out: GpuSnapshot[] = [];
  for (let i = 0; i < devices.length; i++) {
    const o = offset + i * native.GPU_SNAPSHOT_SLOTS;
    const d = devices[i];
    const proc = num(buf[o + GS_PROCESS_MEMORY_BYTES]);
    out.push({
      index: d.index,
      uuid: d.uuid,
      name: d.name,
      memoryUsedBytes: num(buf[o + GS_MEMORY_USED_BYTES]),
      memoryTotalBytes: num(buf[o + GS_MEMORY_TOTAL_BYTES]),
      processMemoryBytes: proc,
      processMemoryReason: proc === null ? (PROCESS_REASONS[buf[o + GS_PROCESS_REASON]] ?? 'no GPU reading yet') : null,
      utilizationPercent: num(buf[o + GS_UTILIZATION_PERCENT]),
      powerWatts: num(buf[o + GS_POWER_WATTS]),
      energyJoules: num(buf[o + GS_ENERGY_JOULES]),
      ageMs: num(buf[o + GS_AGE_MS]),
    });
  }
  return out;
}

export function gpuUsagesFrom(buf: Float64Array, offset: number, devices: NativeGpuInfo['devices']): GpuUsage[] {
  const out: GpuUsage[] = [];
  for (let i = 0; i < devices.length; i++) {
    const o = offset + i * native.GPU_WINDOW_SLOTS;
    const d = devices[i];
    const procPeak = num(buf[o + GW_PROCESS_MEMORY_PEAK_BYTES]);
    const energy = num(buf[o + GW_ENERGY_JOULES]);
    const err = buf[o + GW_DEVICE_ERROR];
    const reasonCode = buf[o + GW_PROCESS_REASON];
    out.push({
      index: d.index,
      uuid: d.uuid,
      name: d.name,
      memoryUsedPeakBytes: num(buf[o + GW_MEMORY_USED_PEAK_BYTES]),
      processMemoryPeakBytes: procPeak,
      processMemoryEndBytes: num(buf[o + GW_PROCESS_MEMORY_END_BYTES]),
      processMemoryReason:
        procPeak === null
          ? reasonCode === PROC_CALL_FAILED && err > 0
            ? `the process-list call failed: ${native.nvmlErrorText(err)}`
            : (PROCESS_REASONS[reasonCode] ?? 'no GPU reading in this window')
          : null,
      energyJoules: energy,
      energyReason:
        ENERGY_REASONS[buf[o + GW_ENERGY_REASON]] ?? (energy === null ? 'no GPU reading in this window' : null),
      utilizationAvgPercent: num(buf[o + GW_UTILIZATION_AVG_PERCENT]),
      error: err > 0 ? native.nvmlErrorText(err) : null,
    });
  }
  return out;
}
