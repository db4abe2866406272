// Everything about finding, loading and initialising NVML. One pointer table, filled once per load; versioned
// symbols newest first; required symbols missing → the GPU is unavailable with a reason; optional ones may be NULL.
#pragma once
#include <string>
#include <vector>

#include "nvml_api.h"

namespace taskmeter {
namespace nvml {

struct Api {
  // Required: without these nothing works.
  InitFn init = nullptr;
  ShutdownFn shutdown = nullptr;
  DeviceGetCountFn device_get_count = nullptr;
  DeviceGetHandleByIndexFn device_get_handle_by_index = nullptr;
  // Optional: a feature whose function is missing reports null.
  ErrorStringFn error_string = nullptr;
  SystemGetStringFn system_get_driver_version = nullptr;
  SystemGetStringFn system_get_nvml_version = nullptr;
  DeviceGetStringFn device_get_uuid = nullptr;
  DeviceGetStringFn device_get_name = nullptr;
  DeviceGetMemoryInfoV2Fn device_get_memory_info_v2 = nullptr;
  DeviceGetMemoryInfoFn device_get_memory_info = nullptr;
  DeviceGetProcessesFn compute_processes = nullptr;
  DeviceGetProcessesFn graphics_processes = nullptr;
  int process_list_version = 0;   // 3, 2 or 1: which symbols were found (both lists use the same version)
  size_t process_entry_size = 0;  // 24 for _v3/_v2, 16 for v1
  DeviceGetUtilizationRatesFn device_get_utilization_rates = nullptr;
  DeviceGetUintFn device_get_power_usage = nullptr;
  DeviceGetUllFn device_get_total_energy_consumption = nullptr;
  DeviceGetProcessesFn mps_processes = nullptr;  // same version (entry size) as compute_processes
  // The 32-byte _v3 entry layout (drivers 535.43–535.86), detected by symbols as nvitop does: that driver family
  // exports nvmlDeviceGetConfComputeMemSizeInfo but not yet nvmlDeviceGetRunningProcessDetailList.
  bool wide_v3_by_symbols = false;
  // MIG.
  DeviceGetMigModeFn device_get_mig_mode = nullptr;
  DeviceGetUintFn device_get_max_mig_device_count = nullptr;
  DeviceGetMigDeviceHandleByIndexFn device_get_mig_device_handle_by_index = nullptr;
  DeviceGetDeviceHandleFromMigDeviceHandleFn device_get_device_handle_from_mig_device_handle = nullptr;
  DeviceGetUintFn device_get_gpu_instance_id = nullptr;
  DeviceGetUintFn device_get_compute_instance_id = nullptr;
  // Accounting mode, per-process utilization, field values (instant power).
  DeviceGetIntFn device_get_accounting_mode = nullptr;
  DeviceGetAccountingStatsFn device_get_accounting_stats = nullptr;
  DeviceGetProcessUtilizationFn device_get_process_utilization = nullptr;
  DeviceGetFieldValuesFn device_get_field_values = nullptr;
  const char* init_symbol = "";
};

// The environment variables the GPU code reads, captured once on the JS thread (at the addon's load): the GPU thread
// never calls getenv, which races with `process.env.X = …` on the JS thread (glibc may move `environ`).
struct Env {
  bool disabled = false;  // TASKMETER_DISABLE_GPU
  std::string library;    // TASKMETER_NVML_LIBRARY ("" unset)
  bool cvd_set = false;   // CUDA_VISIBLE_DEVICES set (even empty)
  std::string cvd;
  std::string device_order;   // CUDA_DEVICE_ORDER
  std::string pid_namespace;  // TASKMETER_PID_NAMESPACE
  bool wsl = false;           // /dev/dxg exists
  // For the CUDA-order helper (cuda_order.h): this node executable and this addon's file;
  // TASKMETER_CUDA_ORDER_HELPER=0 turns the helper off (the helper reads TASKMETER_CUDA_LIBRARY itself).
  std::string node_path;
  std::string addon_path;
  bool cuda_helper = true;
  std::vector<std::string> environment;  // a copy of the whole environment, for the helper (CUDA reads many)
};
// Reads them; call on the JS thread only.
Env ReadEnv();

// The stable name of an nvmlReturn_t ("NVML_ERROR_DRIVER_NOT_LOADED"); works without the library.
const char* ErrorName(Return r);
// A sentence a person understands, e.g. "the NVIDIA driver is not loaded (NVML_ERROR_DRIVER_NOT_LOADED)".
std::string Describe(Return r);

// The library handle and table. Used from the GPU poller thread only (see gpu.h), so it needs no locking.
class Library {
 public:
  // Loads the library and calls nvmlInit, trying each candidate in turn (a library that loads but whose init fails
  // — e.g. a Linux driver package shadowing WSL's — gives way to the next). On failure returns false and sets
  // reason(). A library still open is closed first (nvmlShutdown, dlclose).
  bool Open(const Env& env);
  // nvmlShutdown; with unload, also dlclose (skipped at process exit, where unloading code gains nothing).
  void Close(bool unload);
  bool loaded() const { return handle_ != nullptr; }
  bool initialized() const { return initialized_; }
  const Api& api() const { return api_; }
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }
  // The reason's stable code (gpuInfo().reasonCode): NVML_LIBRARY_NOT_FOUND, an NVML_ERROR_* name, …
  const char* reason_code() const { return reason_code_; }

 private:
  bool Resolve(std::string* why);
  void* handle_ = nullptr;
  bool initialized_ = false;
  Api api_;
  std::string path_;
  std::string reason_;
  const char* reason_code_ = "";
};

}  // namespace nvml
}  // namespace taskmeter
