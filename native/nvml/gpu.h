// Device and process queries built on the loader's table. Called from the GPU poller thread only.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../layout.h"
#include "loader.h"

namespace taskmeter {
namespace nvml {

// Why a process's GPU memory is null (exported as layouts.ProcReason; src/gpu.ts has a sentence per name).
#define TASKMETER_PROC_REASONS(X) \
  X(ProcOk) \
  X(ProcPidNamespace)  /* this process is in its own PID namespace; NVML reports host PIDs */ \
  X(ProcNotAvailable)  /* NVML_VALUE_NOT_AVAILABLE (e.g. Windows WDDM, or no permission to see it) */ \
  X(ProcCallFailed)  /* the process-list call returned an error */ \
  X(ProcMalformed)  /* the list failed validation (pid 0, memory above the device total, bad count) */ \
  X(ProcNoFunction)  /* the library has no process-list function */ \
  X(ProcNoData)  /* no reading yet */ \
  /* end */
TASKMETER_ENUM(ProcReason, TASKMETER_PROC_REASONS, kProcReasons)

struct DeviceStatic {
  unsigned nvml_index = 0;
  Device handle = nullptr;
  std::string uuid;
  std::string name;
  double memory_total_bytes = -1;  // -1: unknown
};

struct ProcessList {
  int reason = kProcNoData;
  Return error = kSuccess;
  // pid → bytes, compute and graphics lists merged (a pid in both counts once, the larger value);
  // kValueNotAvailable kept as such.
  std::vector<std::pair<uint32_t, unsigned long long>> entries;
};

struct DeviceReading {
  Return device_error = kSuccess;  // set when the device itself failed (e.g. GPU_IS_LOST)
  double memory_used_bytes = -1;   // -1: unavailable
  double memory_total_bytes = -1;
  double utilization_percent = -1;
  double power_watts = -1;
  double energy_counter_mj = -1;   // the device's total-energy counter (Volta+), -1 if absent
  ProcessList processes;
  double process_list_ms = 0;      // what the process-list calls cost
};

class Gpus {
 public:
  // Loads NVML, initialises it and enumerates the devices (honouring CUDA_VISIBLE_DEVICES). Returns whether at
  // least one device is visible; reason() says why not.
  bool Detect();
  void Read(size_t i, DeviceReading* out);
  void Shutdown(bool unload) { lib_.Close(unload); }

  const std::vector<DeviceStatic>& devices() const { return devices_; }
  const Library& library() const { return lib_; }
  const std::string& reason() const { return reason_; }
  const char* reason_code() const { return reason_code_; }  // see Library::reason_code()
  const std::string& driver_version() const { return driver_version_; }
  const std::string& nvml_version() const { return nvml_version_; }
  bool own_pid_namespace() const { return own_pid_namespace_; }
  size_t process_entry_stride() const { return process_stride_; }

 private:
  void ReadProcesses(const DeviceStatic& d, DeviceReading* out);
  Return FetchList(DeviceGetProcessesFn fn, Device dev, std::vector<std::pair<uint32_t, unsigned long long>>* out,
                   bool* malformed);

  Library lib_;
  std::vector<DeviceStatic> devices_;
  std::string reason_;
  const char* reason_code_ = "";
  std::string driver_version_;
  std::string nvml_version_;
  bool own_pid_namespace_ = false;
  size_t process_stride_ = 0;
  unsigned list_capacity_ = 32;
  std::vector<unsigned char> list_buf_;
};

// Exposed for tests of the parsing rules.
bool DriverHasWideV3Entries(const std::string& driver_version);
bool InOwnPidNamespace();

}  // namespace nvml
}  // namespace taskmeter
