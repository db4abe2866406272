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
  X(ProcPidNamespace)       /* this process is in its own PID namespace and the driver reports host PIDs */ \
  X(ProcNotAvailable)       /* NVML_VALUE_NOT_AVAILABLE (e.g. Windows WDDM, or no permission to see it) */ \
  X(ProcCallFailed)         /* the process-list call returned an error */ \
  X(ProcMalformed)          /* the list failed validation (pid 0, memory above the device total, bad count, stride) */ \
  X(ProcNoFunction)         /* the library has no process-list function */ \
  X(ProcNoData)             /* no reading yet */ \
  X(ProcNsMemoryNotMatched) /* own PID namespace, driver 535.113–565.56: PIDs translated, per-PID memory not */ \
  X(ProcHostPids)           /* own PID namespace: a listed PID does not exist in this namespace's /proc */ \
  X(ProcAbsenceUncertain)   /* in no list, but absence is not proof of 0 here (no MPS list, a MIG slice, WDDM) */ \
  X(ProcNotSampled) /* no process-list reading inside the window while its processes lived (GPU_NOT_SAMPLED) */ \
  /* end */
TASKMETER_ENUM(ProcReason, TASKMETER_PROC_REASONS, kProcReasons)

// How this process's PIDs relate to NVML's (decided once at detection).
enum PidMatch : int {
  kPidsHost = 0,        // same PID namespace as the driver (or TASKMETER_PID_NAMESPACE=host)
  kPidsTranslated = 1,  // own namespace, driver ≥ 565.57: PIDs and per-PID memory translated (checked at run time)
  kPidsListOnly = 2,    // own namespace, driver 535.113–565.56: PIDs translated, memory not matched
  kPidsForeign = 3,     // own namespace, older driver or TASKMETER_PID_NAMESPACE=own: host PIDs
};

struct DeviceStatic {
  unsigned nvml_index = 0;  // for a MIG slice: its parent's index
  Device handle = nullptr;
  std::string uuid;
  std::string name;
  double memory_total_bytes = -1;  // -1: unknown
  // MIG: a slice is a device of its own.
  bool mig = false;
  int mig_index = -1;  // the slice's index under its parent (nvmlDeviceGetMigDeviceHandleByIndex)
  std::string parent_uuid;
  std::string parent_name;
  unsigned gpu_instance_id = kNoInstanceId;
  unsigned compute_instance_id = kNoInstanceId;
  bool mig_mode = false;       // a whole GPU with MIG mode on (its process-list entries carry instance ids)
  int accounting = -1;         // accounting mode: 1 enabled, 0 disabled, -1 unsupported or unknown
  bool power_instant = false;  // NVML_FI_DEV_POWER_INSTANT answers on this device
};

struct ProcessList {
  int reason = kProcNoData;
  Return error = kSuccess;
  // pid → bytes, compute, graphics and MPS lists merged (a pid in several counts once, the largest value);
  // kValueNotAvailable kept as such.
  std::vector<std::pair<uint32_t, unsigned long long>> entries;
  bool absence_is_zero = false;  // a pid in no list certainly has 0 bytes (no MIG, MPS list read, not WDDM)
};

struct ProcessUtil {
  uint32_t pid;
  unsigned sm;
  unsigned mem;
  unsigned long long timestamp_us;  // the driver's sample time (CPU wall clock, µs since the epoch)
};

#define TASKMETER_POWER_SOURCES(X) \
  X(PowerNone) \
  X(PowerInstant) /* NVML_FI_DEV_POWER_INSTANT */ \
  X(PowerAverage) /* nvmlDeviceGetPowerUsage (averaged by the driver) */ \
  /* end */
TASKMETER_ENUM(PowerSource, TASKMETER_POWER_SOURCES, kPowerSources)

// One device reading: memory, utilization, power and the process lists (the readings taken at a window's pace).
struct DeviceReading {
  Return device_error = kSuccess;  // set when the device itself failed (e.g. GPU_IS_LOST)
  double memory_used_bytes = -1;   // -1: unavailable
  double memory_total_bytes = -1;
  double utilization_percent = -1;
  double power_watts = -1;
  int power_source = kPowerNone;
  double accounting_max_bytes = -1;  // this process's accounting high-water mark (accounting mode; 0 when it has no
                                     // record yet), -1 when not read
  ProcessList processes;
};

class Gpus {
 public:
  // Loads NVML, initialises it and enumerates the devices (honouring CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER
  // from env, read on the JS thread). Returns whether at least one device is visible; reason() says why not.
  bool Detect(const Env& env, uint32_t self_pid);
  // Each kind of reading is a call of its own, so that the GPU thread can pace each by its own cost:
  // device i's memory, utilization, power, accounting maximum and process lists;
  void ReadDevice(size_t i, DeviceReading* out);
  // its energy counter (mJ since the driver loaded; -1 when absent, failed or a MIG slice);
  double ReadEnergyMj(size_t i);
  // the per-process utilization samples the driver took since the last call's newest one (nvmlReturn_t: 0 with or
  // without samples; NOT_SUPPORTED on a MIG slice…). now_us: the wall clock (µs since the epoch, the driver's sample
  // clock); recent_us: one period ago on it, where a read starts when the driver keeps more samples than
  // kMaxUtilSamples or the wall clock went back past the newest sample read (UtilSinceUs).
  Return ReadProcessUtilization(size_t i, std::vector<ProcessUtil>* out, double now_us, double recent_us);
  // The most per-process utilization samples one read takes (32 bytes each: 512 KiB).
  static constexpr size_t kMaxUtilSamples = 16384;
  void Shutdown(bool unload) { lib_.Close(unload); }

  const std::vector<DeviceStatic>& devices() const { return devices_; }
  const Library& library() const { return lib_; }
  const std::string& reason() const { return reason_; }
  const char* reason_code() const { return reason_code_; }  // see Library::reason_code()
  const std::string& driver_version() const { return driver_version_; }
  const std::string& nvml_version() const { return nvml_version_; }
  bool own_pid_namespace() const { return own_pid_namespace_; }
  int pid_match() const { return pid_match_; }
  size_t process_entry_stride() const { return process_stride_; }
  const std::string& device_order() const { return device_order_; }
  bool device_order_certain() const { return device_order_certain_; }
  const std::string& device_order_note() const { return device_order_note_; }

 private:
  void ReadProcesses(const DeviceStatic& d, DeviceReading* out);
  Return FetchList(DeviceGetProcessesFn fn, const DeviceStatic& d,
                   std::vector<std::pair<uint32_t, unsigned long long>>* out, bool* malformed);
  bool SelectVisible(const Env& env, const std::vector<DeviceStatic>& whole, const std::vector<DeviceStatic>& slices);

  Library lib_;
  std::vector<DeviceStatic> devices_;
  std::vector<unsigned long long> util_last_seen_us_;
  std::string reason_;
  const char* reason_code_ = "";
  std::string driver_version_;
  std::string nvml_version_;
  bool own_pid_namespace_ = false;
  int pid_match_ = kPidsHost;
  uint32_t self_pid_ = 0;
  size_t process_stride_ = 0;
  unsigned list_capacity_ = 32;
  std::vector<unsigned char> list_buf_;
  std::vector<ProcessUtilizationSample> util_buf_;
  std::string device_order_ = "PCI_BUS_ID";
  bool device_order_certain_ = true;
  std::string device_order_note_;
};

// The lastSeenTimeStamp of the next per-process utilization read: last_seen_us (the newest sample read), or recent_us
// when the wall clock (now_us) is behind it.
unsigned long long UtilSinceUs(unsigned long long last_seen_us, double now_us, double recent_us);

// Exposed for tests of the parsing rules.
bool DriverHasWideV3Entries(const std::string& driver_version);
bool InOwnPidNamespace(const std::string& declared);
// Which PID matching a driver allows for a process in its own PID namespace ("570.86.15" → kPidsTranslated).
int PidMatchForDriver(const std::string& driver_version);

}  // namespace nvml
}  // namespace taskmeter
