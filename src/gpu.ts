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
  GS_POWER_SOURCE,
  GW_POWER_SOURCE,
  GW_PROCESS_PEAK_FROM_ACCOUNTING,
  GW_PROCESS_SAMPLES,
  GW_PROCESS_UTIL_SAMPLES,
  GW_SAMPLES,
  GW_PROCESS_UTIL_ERROR,
  GW_PROCESS_UTIL_MEM_PERCENT,
  GW_PROCESS_UTIL_SM_PERCENT,
  GW_DEVICE_ERROR,
  GW_ENERGY_JOULES,
  GW_ENERGY_REASON,
  GW_MEMORY_USED_PEAK_BYTES,
  GW_PROCESS_MEMORY_END_BYTES,
  GW_PROCESS_MEMORY_PEAK_BYTES,
  GW_PROCESS_REASON,
  GW_UTILIZATION_AVG_PERCENT,
  ENERGY_COUNTER_BACKWARDS,
  ENERGY_MIG,
  ENERGY_NO_SOURCE,
  ENERGY_NOT_SAMPLED,
  ENERGY_OK,
  POWER_AVERAGE,
  POWER_INSTANT,
  POWER_NONE,
  PROC_ABSENCE_UNCERTAIN,
  PROC_HOST_PIDS,
  PROC_NS_MEMORY_NOT_MATCHED,
  PROC_CALL_FAILED,
  PROC_MALFORMED,
  PROC_NO_DATA,
  PROC_NO_FUNCTION,
  PROC_NOT_AVAILABLE,
  PROC_NOT_SAMPLED,
  PROC_OK,
  PROC_PID_NAMESPACE,
  expectedLayouts,
  native,
  NativeGpuDevice,
  NativeMigSlice,
  NativeGpuInfo,
} from './binding';

export interface GpuDevice {
  /** NVML's index of the device — for a MIG slice, its parent's (CUDA_VISIBLE_DEVICES may show a subset). */
  index: number;
  /** GPU-… for a whole GPU, MIG-… for a MIG slice. */
  uuid: string;
  name: string;
  /** For a MIG slice: the slice's own memory, not the parent's. */
  memoryTotalBytes: number | null;
  /** A MIG slice (a device of its own): its parent GPU and instance ids; null for a whole GPU. */
  mig: NativeMigSlice | null;
  /** Accounting mode ('enabled': exact per-process GPU memory peaks); null for a MIG slice. */
  accountingMode: 'enabled' | 'disabled' | 'unsupported' | null;
  /** What gpuInfo() advises about accounting mode, or null. */
  accountingHint: string | null;
  /** Which power this device reports: 'instant' (NVML_FI_DEV_POWER_INSTANT) or 'average' (nvmlDeviceGetPowerUsage,
   *  a 1-second average on Ampere and newer); null for a MIG slice (no power of its own). */
  powerReported: 'instant' | 'average' | null;
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
  /** Why per-process GPU memory cannot be attributed, or null. */
  processAttributionReason: string | null;
  /** The reason's stable code, the name of native/nvml/gpu.h's ProcReason: PROC_NO_FUNCTION, PROC_PID_NAMESPACE,
   *  PROC_NS_MEMORY_NOT_MATCHED; null when attributable. */
  processAttributionReasonCode: 'PROC_NO_FUNCTION' | 'PROC_PID_NAMESPACE' | 'PROC_NS_MEMORY_NOT_MATCHED' | null;
  /** How NVML's PIDs relate to ours: 'host' (same PID namespace), 'translated' (a container on a driver ≥ 565.57,
   *  checked at run time), 'list-only' (a container on 535.113–565.56: PIDs translated, memory not), 'foreign'. */
  pidMatch: 'host' | 'translated' | 'list-only' | 'foreign';
  /** CUDA_DEVICE_ORDER as CUDA applies it ('FASTEST_FIRST' is CUDA's default). */
  deviceOrder: 'PCI_BUS_ID' | 'FASTEST_FIRST';
  /** False when CUDA's numbering of these GPUs is unknown (different models with FASTEST_FIRST, and asking libcuda in
   *  a helper process failed): bare indexes in CUDA_VISIBLE_DEVICES are then not resolved to a guess (see
   *  deviceOrderNote). */
  deviceOrderCertain: boolean;
  deviceOrderNote: string | null;
}

/** Latest cached values of one GPU, as the GPU thread last read them (never an NVML call on the JS thread). */
export interface GpuSnapshot {
  index: number;
  uuid: string;
  name: string;
  /** A MIG slice's parent and instance ids (see GpuDevice.mig); null for a whole GPU. */
  mig: GpuDevice['mig'];
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
  /** Which power powerWatts is: 'instant' or 'average' (1 s average on Ampere and newer); null without power. */
  powerSource: 'instant' | 'average' | null;
  /** Why utilization, power and energy are null on this device (a MIG slice), or null. */
  deviceMetricsReason: string | null;
}

/** What one GPU did during a window. */
export interface GpuUsage {
  index: number;
  uuid: string;
  name: string;
  mig: GpuDevice['mig'];
  /** Device readings (memory, utilization, power, process lists) inside the window. */
  samples: number;
  /** 'GPU_NOT_SAMPLED' when no reading fell inside the window: memoryUsedPeakBytes and utilizationAvgPercent are
   *  then null; else null. */
  reasonCode: 'GPU_NOT_SAMPLED' | null;
  memoryUsedPeakBytes: number | null;
  /** The window's processes' largest GPU memory: bytes seen in a process list; 0 when they were looked for
   *  (processSamples times) while they lived and were in no list; null (processMemoryReason) when never looked for
   *  while alive, or when the lists cannot be attributed. */
  processMemoryPeakBytes: number | null;
  processMemoryEndBytes: number | null;
  processMemoryReason: string | null;
  /** The stable code of processMemoryReason: GPU_NOT_SAMPLED (no reading inside the window while its processes
   *  lived: a value from before it is never its value) or a PROC_* name (README); null when the figure is not. */
  processMemoryReasonCode: string | null;
  energyJoules: number | null;
  energyReason: string | null;
  utilizationAvgPercent: number | null;
  /** Why utilizationAvgPercent is null, or a caveat about it (windows shorter than the driver's sample period). */
  utilizationNote: string | null;
  /** 'accounting': the driver's exact maximum (accounting mode), 'sampled': the largest process-list reading. */
  processMemoryPeakSource: 'accounting' | 'sampled' | null;
  /** The window's pids' SM (and memory-controller) utilization of this GPU: the mean of the driver's samples taken
   *  in the window (a sample period in which they ran no kernel has no sample: `nvidia-smi pmon`'s average). */
  processSmUtilizationPercent: number | null;
  processMemoryUtilizationPercent: number | null;
  processUtilizationReason: string | null;
  /** The driver's per-process utilization samples the figures above average. */
  processUtilizationSamples: number;
  /** Process-list readings inside the window that saw its processes or looked for them while they lived. */
  processSamples: number;
  powerSource: 'instant' | 'average' | null;
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
  [PROC_NS_MEMORY_NOT_MATCHED]:
    'this process is in its own PID namespace (a container) and the driver (535.113 to 565.56) translates the ' +
    "process list's PIDs but not their memory; drivers from 565.57 on attribute it",
  [PROC_HOST_PIDS]:
    "this process is in its own PID namespace and a PID in NVML's process list does not exist here: the driver " +
    'reports host PIDs, which cannot be matched to this process',
  [PROC_ABSENCE_UNCERTAIN]:
    'this process is in no NVML process list, but that does not prove 0 bytes here (no MPS client list from this ' +
    'driver, a MIG slice, or Windows WDDM)',
  [PROC_NOT_SAMPLED]:
    'not sampled: no process-list reading inside this window while its processes lived (GPU_NOT_SAMPLED; ' +
    'a value from before the window is never its value)',
};
const NOT_SAMPLED = 'GPU_NOT_SAMPLED';
const MIG_METRICS =
  "a MIG slice has no utilization, power or energy of its own in NVML; the parent GPU's figures are not the slice's";
const POWER_SOURCES: Record<number, 'instant' | 'average' | null> = {
  [POWER_NONE]: null,
  [POWER_INSTANT]: 'instant',
  [POWER_AVERAGE]: 'average',
};
const ENERGY_REASONS: Record<number, string | null> = {
  [ENERGY_OK]: null,
  [ENERGY_NO_SOURCE]: 'the GPU reports neither an energy counter nor power draw',
  [ENERGY_COUNTER_BACKWARDS]:
    'the energy counter went backwards (driver reload?); that stretch was integrated from power draw instead',
  [ENERGY_MIG]: MIG_METRICS,
  [ENERGY_NOT_SAMPLED]:
    'not sampled: no GPU reading recent enough to integrate the power draw over this window (GPU_NOT_SAMPLED)',
};

// ProcReason index → its name (the stable code), from the layout list in binding.ts.
function procReasonName(index: number): string | null {
  for (const [name, i] of Object.entries(expectedLayouts.ProcReason)) {
    if (i === index) return name;
  }
  return null;
}
const procReasonCode = (index: number) => procReasonName(index) as GpuInfo['processAttributionReasonCode'];

const num = (v: number): number | null => (Number.isFinite(v) && v >= 0 ? v : null);

function detectTimeoutMs(): number {
  const raw = process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS;
  if (raw === undefined || raw === '') return DETECT_WAIT_MS;
  const v = Number(raw);
  return Number.isFinite(v) && v >= 0 ? Math.min(v, 60_000) : DETECT_WAIT_MS;
}

// Detection runs on the addon's GPU thread from the moment the addon loads; importing waits for it at most
// TASKMETER_GPU_DETECT_TIMEOUT_MS (default 500 ms; NVML without a driver answers in ~10 ms). Nothing else ever waits
// for detection: neither exit nor a worker's end (an nvmlInit of 6 s without persistence mode keeps
// `node -e "require('taskmeter')"` under a second).
const DETECT_WAIT_MS = 500;
native.gpuWait(detectTimeoutMs());
let nativeInfo: NativeGpuInfo = native.gpuInfo();

/** The devices the GPU thread reads, in the order of the cached slots. Re-read while detection is pending. */
export function gpuDevices(): NativeGpuDevice[] {
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
  const attribution = !available
    ? PROC_OK
    : i.processListVersion === 0
      ? PROC_NO_FUNCTION
      : i.pidMatch === 'foreign'
        ? PROC_PID_NAMESPACE
        : i.pidMatch === 'list-only'
          ? PROC_NS_MEMORY_NOT_MATCHED
          : PROC_OK;
  return {
    available,
    reason: available ? null : (i.reason ?? 'no GPU'),
    reasonCode: available ? null : (i.reasonCode ?? 'GPU_NONE_FOUND'),
    library: i.library,
    driverVersion: i.driverVersion,
    nvmlVersion: i.nvmlVersion,
    devices: available ? i.devices.map(publicDevice) : [],
    pending: i.state === 'pending',
    processAttribution: available && (i.pidMatch === 'host' || i.pidMatch === 'translated') && i.processListVersion > 0,
    processAttributionReason: PROCESS_REASONS[attribution] ?? null,
    processAttributionReasonCode: attribution === PROC_OK ? null : procReasonCode(attribution),
    pidMatch: i.pidMatch,
    processListVersion: i.processListVersion,
    processEntryBytes: i.processEntryBytes,
    deviceOrder: i.deviceOrder,
    deviceOrderCertain: i.deviceOrderCertain,
    deviceOrderNote: i.deviceOrderNote,
  };
}

function publicDevice(d: NativeGpuDevice): GpuDevice {
  return {
    index: d.index,
    uuid: d.uuid,
    name: d.name,
    memoryTotalBytes: d.memoryTotalBytes,
    mig: d.mig ? { ...d.mig } : null,
    accountingMode: d.accountingMode,
    accountingHint:
      d.accountingMode === 'disabled'
        ? 'accounting mode is off: per-process GPU memory peaks are sampled. An administrator can enable exact ' +
          'peaks with `nvidia-smi -am 1` (add `-i <index>` for one GPU; it persists until reboot)'
        : d.accountingMode === 'unsupported'
          ? 'this GPU or driver does not support accounting mode: per-process GPU memory peaks are sampled'
          : null,
    powerReported: d.mig ? null : d.powerInstant ? 'instant' : 'average',
  };
}

export function gpuSnapshotsFrom(buf: Float64Array, offset: number, devices: NativeGpuDevice[]): GpuSnapshot[] {
  const out: GpuSnapshot[] = [];
  for (let i = 0; i < devices.length; i++) {
    const o = offset + i * native.GPU_SNAPSHOT_SLOTS;
    const d = devices[i];
    const proc = num(buf[o + GS_PROCESS_MEMORY_BYTES]);
    out.push({
      index: d.index,
      uuid: d.uuid,
      name: d.name,
      mig: d.mig ? { ...d.mig } : null,
      memoryUsedBytes: num(buf[o + GS_MEMORY_USED_BYTES]),
      memoryTotalBytes: num(buf[o + GS_MEMORY_TOTAL_BYTES]),
      processMemoryBytes: proc,
      processMemoryReason: proc === null ? (PROCESS_REASONS[buf[o + GS_PROCESS_REASON]] ?? 'no GPU reading yet') : null,
      utilizationPercent: num(buf[o + GS_UTILIZATION_PERCENT]),
      powerWatts: num(buf[o + GS_POWER_WATTS]),
      energyJoules: d.mig ? null : num(buf[o + GS_ENERGY_JOULES]),
      ageMs: num(buf[o + GS_AGE_MS]),
      powerSource: POWER_SOURCES[buf[o + GS_POWER_SOURCE]] ?? null,
      deviceMetricsReason: d.mig ? MIG_METRICS : null,
    });
  }
  return out;
}

export function gpuUsagesFrom(buf: Float64Array, offset: number, devices: NativeGpuDevice[]): GpuUsage[] {
  const out: GpuUsage[] = [];
  for (let i = 0; i < devices.length; i++) {
    const o = offset + i * native.GPU_WINDOW_SLOTS;
    const d = devices[i];
    const procPeak = num(buf[o + GW_PROCESS_MEMORY_PEAK_BYTES]);
    const energy = num(buf[o + GW_ENERGY_JOULES]);
    const err = buf[o + GW_DEVICE_ERROR];
    const reasonCode = buf[o + GW_PROCESS_REASON];
    const samples = buf[o + GW_SAMPLES] || 0;
    const putilSamples = buf[o + GW_PROCESS_UTIL_SAMPLES] || 0;
    out.push({
      index: d.index,
      uuid: d.uuid,
      name: d.name,
      mig: d.mig ? { ...d.mig } : null,
      samples,
      reasonCode: samples === 0 ? NOT_SAMPLED : null,
      memoryUsedPeakBytes: num(buf[o + GW_MEMORY_USED_PEAK_BYTES]),
      processMemoryPeakBytes: procPeak,
      processMemoryEndBytes: num(buf[o + GW_PROCESS_MEMORY_END_BYTES]),
      processMemoryReason:
        procPeak === null
          ? reasonCode === PROC_CALL_FAILED && err > 0
            ? `the process-list call failed: ${native.nvmlErrorText(err)}`
            : (PROCESS_REASONS[reasonCode] ?? PROCESS_REASONS[PROC_NOT_SAMPLED])
          : null,
      processMemoryReasonCode:
        procPeak === null
          ? reasonCode === PROC_NOT_SAMPLED || PROCESS_REASONS[reasonCode] === undefined
            ? NOT_SAMPLED
            : procReasonName(reasonCode)
          : null,
      energyJoules: energy,
      energyReason:
        ENERGY_REASONS[buf[o + GW_ENERGY_REASON]] ?? (energy === null ? ENERGY_REASONS[ENERGY_NOT_SAMPLED] : null),
      utilizationAvgPercent: num(buf[o + GW_UTILIZATION_AVG_PERCENT]),
      utilizationNote: d.mig ? MIG_METRICS : samples === 0 ? 'not sampled: no GPU reading inside this window' : null,
      processMemoryPeakSource:
        procPeak === null ? null : buf[o + GW_PROCESS_PEAK_FROM_ACCOUNTING] === 1 ? 'accounting' : 'sampled',
      processSmUtilizationPercent: num(buf[o + GW_PROCESS_UTIL_SM_PERCENT]),
      processMemoryUtilizationPercent: num(buf[o + GW_PROCESS_UTIL_MEM_PERCENT]),
      processUtilizationReason: processUtilReason(
        buf[o + GW_PROCESS_UTIL_SM_PERCENT],
        buf[o + GW_PROCESS_UTIL_ERROR],
        d,
      ),
      processUtilizationSamples: putilSamples,
      processSamples: buf[o + GW_PROCESS_SAMPLES] || 0,
      powerSource: d.mig ? null : (POWER_SOURCES[buf[o + GW_POWER_SOURCE]] ?? null),
      error: err > 0 ? native.nvmlErrorText(err) : null,
    });
  }
  return out;
}

function processUtilReason(sm: number, err: number, d: NativeGpuDevice): string | null {
  if (Number.isFinite(sm)) return null;
  if (d.mig) return 'NVML has no per-process utilization for a MIG slice';
  if (err === 13) return 'this NVML library has no nvmlDeviceGetProcessUtilization';
  if (err > 0) return `nvmlDeviceGetProcessUtilization failed: ${native.nvmlErrorText(err)}`;
  if (err === 0) {
    return (
      "no sample of the window's processes up to the last reading in it: the driver has samples only of " +
      'processes that ran GPU kernels'
    );
  }
  return 'no per-process utilization reading inside this window (see gpuProcessUtilizationIntervalMs)';
}
