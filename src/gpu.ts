/** What taskmeter found of the GPUs when it loaded. */
export interface GpuDevice {
  index: number;
  uuid: string;
  name: string;
  memoryTotalBytes: number | null;
}

export interface GpuInfo {
  available: boolean;
  /** Why the GPU is unavailable (null when available). */
  reason: string | null;
  /** The NVML library path actually loaded, or null. */
  library: string | null;
  driverVersion: string | null;
  nvmlVersion: string | null;
  devices: GpuDevice[];
}

const info: GpuInfo = {
  available: false,
  reason: 'GPU support is not built into this version of taskmeter',
  library: null,
  driverVersion: null,
  nvmlVersion: null,
  devices: [],
};

/** True when an NVIDIA GPU is usable (library loaded, driver initialised, at least one device visible). */
export const hasGpu: boolean = info.available;

export function gpuInfo(): GpuInfo {
  return { ...info, devices: info.devices.map((d) => ({ ...d })) };
}
