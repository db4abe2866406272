// Everything about finding, loading and initialising NVML. One pointer table, filled once per load; versioned
// symbols newest first; required symbols missing → the GPU is unavailable with a reason; optional ones may be NULL.
#pragma once
#include <string>

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
  int process_list_version = 0;  // 3, 2 or 1: which symbols were found (both lists use the same version)
  size_t process_entry_size = 0;  // 24 for _v3/_v2, 16 for v1
  DeviceGetUtilizationRatesFn device_get_utilization_rates = nullptr;
  DeviceGetUintFn device_get_power_usage = nullptr;
  DeviceGetUllFn device_get_total_energy_consumption = nullptr;
  const char* init_symbol = "";
};

// The stable name of an nvmlReturn_t ("NVML_ERROR_DRIVER_NOT_LOADED"); works without the library.
const char* ErrorName(Return r);
// A sentence a person understands, e.g. "the NVIDIA driver is not loaded (NVML_ERROR_DRIVER_NOT_LOADED)".
std::string Describe(Return r);

// The library handle and table. Used from the GPU poller thread only (see gpu.h), so it needs no locking.
class Library {
 public:
  // Loads the library and calls nvmlInit. On failure returns false and sets reason(). Idempotent while loaded.
  bool Open();
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
  bool Load(std::string* why);
  void* handle_ = nullptr;
  bool initialized_ = false;
  Api api_;
  std::string path_;
  std::string reason_;
  const char* reason_code_ = "";
};

}  // namespace nvml
}  // namespace taskmeter
