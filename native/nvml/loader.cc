#include "loader.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#include <unistd.h>
extern char** environ;
#endif

namespace taskmeter {
namespace nvml {

const char* ErrorName(Return r) {
  switch (r) {
    case kSuccess: return "NVML_SUCCESS";
    case kErrorUninitialized: return "NVML_ERROR_UNINITIALIZED";
    case kErrorInvalidArgument: return "NVML_ERROR_INVALID_ARGUMENT";
    case kErrorNotSupported: return "NVML_ERROR_NOT_SUPPORTED";
    case kErrorNoPermission: return "NVML_ERROR_NO_PERMISSION";
    case kErrorAlreadyInitialized: return "NVML_ERROR_ALREADY_INITIALIZED";
    case kErrorNotFound: return "NVML_ERROR_NOT_FOUND";
    case kErrorInsufficientSize: return "NVML_ERROR_INSUFFICIENT_SIZE";
    case kErrorInsufficientPower: return "NVML_ERROR_INSUFFICIENT_POWER";
    case kErrorDriverNotLoaded: return "NVML_ERROR_DRIVER_NOT_LOADED";
    case kErrorTimeout: return "NVML_ERROR_TIMEOUT";
    case kErrorIrqIssue: return "NVML_ERROR_IRQ_ISSUE";
    case kErrorLibraryNotFound: return "NVML_ERROR_LIBRARY_NOT_FOUND";
    case kErrorFunctionNotFound: return "NVML_ERROR_FUNCTION_NOT_FOUND";
    case kErrorCorruptedInforom: return "NVML_ERROR_CORRUPTED_INFOROM";
    case kErrorGpuIsLost: return "NVML_ERROR_GPU_IS_LOST";
    case kErrorResetRequired: return "NVML_ERROR_RESET_REQUIRED";
    case kErrorOperatingSystem: return "NVML_ERROR_OPERATING_SYSTEM";
    case kErrorLibRmVersionMismatch: return "NVML_ERROR_LIB_RM_VERSION_MISMATCH";
    case kErrorInUse: return "NVML_ERROR_IN_USE";
    case kErrorMemory: return "NVML_ERROR_MEMORY";
    case kErrorNoData: return "NVML_ERROR_NO_DATA";
    case kErrorUnknown: return "NVML_ERROR_UNKNOWN";
    default: return "NVML_ERROR_UNRECOGNIZED";
  }
}

std::string Describe(Return r) {
  const char* what;
  switch (r) {
    case kErrorDriverNotLoaded: what = "the NVIDIA driver is not loaded"; break;
    case kErrorNoPermission: what = "insufficient permissions to talk to the NVIDIA driver"; break;
    case kErrorLibRmVersionMismatch:
      what =
          "the NVML library does not match the loaded NVIDIA driver version (driver/library version mismatch; "
          "a reboot after a driver update usually fixes it)";
      break;
    case kErrorGpuIsLost: what = "the GPU has fallen off the bus or is otherwise lost"; break;
    case kErrorNotSupported: what = "not supported by this GPU or driver"; break;
    case kErrorTimeout: what = "the driver timed out"; break;
    case kErrorUninitialized: what = "NVML is not initialised"; break;
    case kErrorInsufficientSize: what = "the answer did not fit (the list kept growing)"; break;
    case kErrorFunctionNotFound: what = "the driver lacks this function"; break;
    case kErrorResetRequired: what = "the GPU needs a reset"; break;
    case kErrorOperatingSystem: what = "the operating system refused the call"; break;
    case kErrorNotFound: what = "not found"; break;
    case kErrorMemory: what = "the driver ran out of memory"; break;
    default: what = "NVML call failed"; break;
  }
  return std::string(what) + " (" + ErrorName(r) + ")";
}

namespace {

// The few dynamic-loading calls, per OS.
#ifdef _WIN32
std::wstring Widen(const char* s) {
  int n = MultiByteToWideChar(CP_UTF8, 0, s, -1, nullptr, 0);
  std::wstring w(n > 0 ? n - 1 : 0, L'\0');
  if (n > 0) MultiByteToWideChar(CP_UTF8, 0, s, -1, &w[0], n);
  return w;
}
void* DynOpen(const char* path, bool absolute) {
  // Never the current directory or PATH: System32 for the bare name, the given file for an absolute path.
  DWORD flags = absolute ? LOAD_WITH_ALTERED_SEARCH_PATH : LOAD_LIBRARY_SEARCH_SYSTEM32;
  return reinterpret_cast<void*>(LoadLibraryExW(Widen(path).c_str(), nullptr, flags));
}
void* DynSym(void* h, const char* name) {
  return reinterpret_cast<void*>(GetProcAddress(reinterpret_cast<HMODULE>(h), name));
}
void DynClose(void* h) {
  FreeLibrary(reinterpret_cast<HMODULE>(h));
}
std::string DynError() {
  return "Windows error " + std::to_string(GetLastError());
}
std::string DynPath(void* h, void*) {
  wchar_t buf[MAX_PATH];
  DWORD n = GetModuleFileNameW(reinterpret_cast<HMODULE>(h), buf, MAX_PATH);
  if (n == 0) return "";
  int len = WideCharToMultiByte(CP_UTF8, 0, buf, static_cast<int>(n), nullptr, 0, nullptr, nullptr);
  std::string out(len, '\0');
  WideCharToMultiByte(CP_UTF8, 0, buf, static_cast<int>(n), &out[0], len, nullptr, nullptr);
  return out;
}
bool IsAbsolute(const char* p) {
  return (p[0] && p[1] == ':' && (p[2] == '\\' || p[2] == '/')) || (p[0] == '\\' && p[1] == '\\');
}
const char* const kCandidates[] = {"nvml.dll", "C:\\Program Files\\NVIDIA Corporation\\NVSMI\\nvml.dll"};
const char* const kLookedIn = "nvml.dll in System32 and C:\\Program Files\\NVIDIA Corporation\\NVSMI";
#else
void* DynOpen(const char* path, bool) {
  return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}
void* DynSym(void* h, const char* name) {
  return dlsym(h, name);
}
void DynClose(void* h) {
  dlclose(h);
}
std::string DynError() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}
std::string DynPath(void*, void* sym) {
  Dl_info info;
  if (sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr) return info.dli_fname;
  return "";
}
bool IsAbsolute(const char* p) {
  return p[0] == '/';
}
const char* const kWslLibrary = "/usr/lib/wsl/lib/libnvidia-ml.so.1";
const char* const kCandidates[] = {"libnvidia-ml.so.1", kWslLibrary};
const char* const kLookedIn =
    "libnvidia-ml.so.1 in the dynamic linker's search path and /usr/lib/wsl/lib/libnvidia-ml.so.1";
#endif

template <typename Fn>
Fn Sym(void* handle, const char* name) {
  return reinterpret_cast<Fn>(DynSym(handle, name));
}

// The first of the names that the library exports; `found` gets its name.
template <typename Fn>
Fn FirstSym(void* handle, std::initializer_list<const char*> names, const char** found = nullptr) {
  for (const char* n : names) {
    if (Fn f = Sym<Fn>(handle, n)) {
      if (found) *found = n;
      return f;
    }
  }
  return nullptr;
}

}  // namespace

Env ReadEnv() {
  Env e;
  auto get = [](const char* name, std::string* out) -> bool {
    const char* v = std::getenv(name);
    if (v == nullptr) return false;
    *out = v;
    return true;
  };
  std::string disabled;
  if (get("TASKMETER_DISABLE_GPU", &disabled)) e.disabled = !disabled.empty() && disabled != "0" && disabled != "false";
  get("TASKMETER_NVML_LIBRARY", &e.library);
  e.cvd_set = get("CUDA_VISIBLE_DEVICES", &e.cvd);
  get("CUDA_DEVICE_ORDER", &e.device_order);
  get("TASKMETER_PID_NAMESPACE", &e.pid_namespace);
#ifndef _WIN32
  for (char** v = environ; v != nullptr && *v != nullptr; v++) e.environment.push_back(*v);
#endif
  std::string helper;
  if (get("TASKMETER_CUDA_ORDER_HELPER", &helper)) e.cuda_helper = helper != "0" && helper != "false";
#if defined(__linux__)
  e.wsl = access("/dev/dxg", F_OK) == 0;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) e.node_path.assign(exe, static_cast<size_t>(n));
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ReadEnv), &info) != 0 && info.dli_fname != nullptr) e.addon_path = info.dli_fname;
#endif
  return e;
}

// Looks up every symbol in handle_; false (with why) when a required one is missing.
bool Library::Resolve(std::string* why) {
  api_ = Api();
  api_.init = FirstSym<InitFn>(handle_, {"nvmlInit_v2", "nvmlInit"}, &api_.init_symbol);
  api_.shutdown = Sym<ShutdownFn>(handle_, "nvmlShutdown");
  api_.device_get_count = FirstSym<DeviceGetCountFn>(handle_, {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"});
  api_.device_get_handle_by_index =
      FirstSym<DeviceGetHandleByIndexFn>(handle_, {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"});
  std::string missing;
  if (!api_.init) missing += " nvmlInit_v2";
  if (!api_.shutdown) missing += " nvmlShutdown";
  if (!api_.device_get_count) missing += " nvmlDeviceGetCount_v2";
  if (!api_.device_get_handle_by_index) missing += " nvmlDeviceGetHandleByIndex_v2";
  if (!missing.empty()) {
    reason_code_ = "NVML_LIBRARY_INCOMPLETE";
    *why = "the NVML library at " + path_ + " lacks required functions:" + missing;
    return false;
  }
  api_.error_string = Sym<ErrorStringFn>(handle_, "nvmlErrorString");
  api_.system_get_driver_version = Sym<SystemGetStringFn>(handle_, "nvmlSystemGetDriverVersion");
  api_.system_get_nvml_version = Sym<SystemGetStringFn>(handle_, "nvmlSystemGetNVMLVersion");
  api_.device_get_uuid = Sym<DeviceGetStringFn>(handle_, "nvmlDeviceGetUUID");
  api_.device_get_name = Sym<DeviceGetStringFn>(handle_, "nvmlDeviceGetName");
  api_.device_get_memory_info_v2 = Sym<DeviceGetMemoryInfoV2Fn>(handle_, "nvmlDeviceGetMemoryInfo_v2");
  api_.device_get_memory_info = Sym<DeviceGetMemoryInfoFn>(handle_, "nvmlDeviceGetMemoryInfo");
  // Process lists: newest version first, and every list from the same version so one entry size serves all.
  static const struct {
    const char* compute;
    const char* graphics;
    const char* mps;
    int version;
    size_t entry;
  } kProcessVersions[] = {
      {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v3",
       "nvmlDeviceGetMPSComputeRunningProcesses_v3", 3, sizeof(ProcessInfoV2)},
      {"nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetGraphicsRunningProcesses_v2",
       "nvmlDeviceGetMPSComputeRunningProcesses_v2", 2, sizeof(ProcessInfoV2)},
      {"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
       "nvmlDeviceGetMPSComputeRunningProcesses", 1, sizeof(ProcessInfoV1)},
  };
  for (const auto& v : kProcessVersions) {
    auto compute = Sym<DeviceGetProcessesFn>(handle_, v.compute);
    if (compute == nullptr) continue;
    api_.compute_processes = compute;
    api_.graphics_processes = Sym<DeviceGetProcessesFn>(handle_, v.graphics);
    api_.mps_processes = Sym<DeviceGetProcessesFn>(handle_, v.mps);
    api_.process_list_version = v.version;
    api_.process_entry_size = v.entry;
    break;
  }
  api_.wide_v3_by_symbols = api_.process_list_version == 3 &&
                            DynSym(handle_, "nvmlDeviceGetConfComputeMemSizeInfo") != nullptr &&
                            DynSym(handle_, "nvmlDeviceGetRunningProcessDetailList") == nullptr;
  api_.device_get_utilization_rates = Sym<DeviceGetUtilizationRatesFn>(handle_, "nvmlDeviceGetUtilizationRates");
  api_.device_get_power_usage = Sym<DeviceGetUintFn>(handle_, "nvmlDeviceGetPowerUsage");
  api_.device_get_total_energy_consumption = Sym<DeviceGetUllFn>(handle_, "nvmlDeviceGetTotalEnergyConsumption");
  api_.device_get_mig_mode = Sym<DeviceGetMigModeFn>(handle_, "nvmlDeviceGetMigMode");
  api_.device_get_max_mig_device_count = Sym<DeviceGetUintFn>(handle_, "nvmlDeviceGetMaxMigDeviceCount");
  api_.device_get_mig_device_handle_by_index =
      Sym<DeviceGetMigDeviceHandleByIndexFn>(handle_, "nvmlDeviceGetMigDeviceHandleByIndex");
  api_.device_get_device_handle_from_mig_device_handle =
      Sym<DeviceGetDeviceHandleFromMigDeviceHandleFn>(handle_, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle");
  api_.device_get_gpu_instance_id = Sym<DeviceGetUintFn>(handle_, "nvmlDeviceGetGpuInstanceId");
  api_.device_get_compute_instance_id = Sym<DeviceGetUintFn>(handle_, "nvmlDeviceGetComputeInstanceId");
  api_.device_get_accounting_mode = Sym<DeviceGetIntFn>(handle_, "nvmlDeviceGetAccountingMode");
  api_.device_get_accounting_stats = Sym<DeviceGetAccountingStatsFn>(handle_, "nvmlDeviceGetAccountingStats");
  api_.device_get_process_utilization = Sym<DeviceGetProcessUtilizationFn>(handle_, "nvmlDeviceGetProcessUtilization");
  api_.device_get_field_values = Sym<DeviceGetFieldValuesFn>(handle_, "nvmlDeviceGetFieldValues");
  return true;
}

bool Library::Open(const Env& env) {
  // A library still loaded or initialised (a GPU thread that ended without closing it, a close at exit) is closed
  // first: this detection loads what env names, from a clean state, never the old library.
  if (initialized_ || handle_ != nullptr) Close(true);
  reason_.clear();
  reason_code_ = "";
#ifdef __APPLE__
  reason_ = "NVIDIA's NVML is not available on macOS";
  reason_code_ = "GPU_UNSUPPORTED_PLATFORM";
  return false;
#endif
  // Never the unversioned libnvidia-ml.so: drivers >= 560 no longer ship it, and it may be a dev symlink.
  std::vector<std::string> candidates;
  if (!env.library.empty()) {
    if (!IsAbsolute(env.library.c_str())) {
      reason_code_ = "NVML_LIBRARY_PATH_NOT_ABSOLUTE";
      reason_ = "TASKMETER_NVML_LIBRARY must be an absolute path, got \"" + env.library +
                "\" (a relative path would be searched for in unsafe places)";
      return false;
    }
    candidates.push_back(env.library);
  } else {
#ifndef _WIN32
    // Under WSL (/dev/dxg), WSL's own library first: a Linux driver package installed inside WSL would otherwise
    // shadow it, and its init fails.
    if (env.wsl) candidates.push_back(kWslLibrary);
#endif
    for (const char* c : kCandidates)
      if (std::find(candidates.begin(), candidates.end(), c) == candidates.end()) candidates.push_back(c);
  }
  std::string errors;
  const char* first_code = nullptr;  // the code of the first candidate that loaded but could not be used
  bool any_loaded = false;
  for (const std::string& c : candidates) {
    handle_ = DynOpen(c.c_str(), IsAbsolute(c.c_str()));
    if (handle_ == nullptr) {
      if (!env.library.empty()) {
        reason_ = "could not load TASKMETER_NVML_LIBRARY=" + c + ": " + DynError();
        reason_code_ = "NVML_LIBRARY_LOAD_FAILED";
      }
      continue;
    }
    any_loaded = true;
    path_ = c;
    // Report the file actually loaded (a bare name resolves through the loader's search).
    void* any = DynSym(handle_, "nvmlInit_v2");
    if (any == nullptr) any = DynSym(handle_, "nvmlInit");
    std::string real = DynPath(handle_, any);
    if (!real.empty()) path_ = real;
    std::string why;
    Return r = kSuccess;
    if (Resolve(&why)) {
      r = api_.init();
      if (r == kSuccess) {
        initialized_ = true;
        return true;
      }
      why = "NVML could not start: " + Describe(r);
      reason_code_ = ErrorName(r);
    }
    if (first_code == nullptr) first_code = reason_code_;  // Resolve set NVML_LIBRARY_INCOMPLETE, or init's error
    // Don't keep a library we cannot use (and don't leak its handle); try the next candidate.
    errors += errors.empty() ? why : "; then " + path_ + ": " + why;
    DynClose(handle_);
    handle_ = nullptr;
    api_ = Api();
  }
  if (!env.library.empty() && !any_loaded) return false;  // reason_ set above
  if (!any_loaded) {
    reason_ = std::string("NVIDIA's NVML library was not found (looked for ") + kLookedIn +
              "; it comes with the NVIDIA driver)";
    reason_code_ = "NVML_LIBRARY_NOT_FOUND";
    return false;
  }
  reason_ = errors;
  reason_code_ = first_code;
  return false;
}

void Library::Close(bool unload) {
  if (initialized_ && api_.shutdown) api_.shutdown();
  initialized_ = false;
  if (unload && handle_ != nullptr) {
    DynClose(handle_);
    handle_ = nullptr;
    api_ = Api();
  }
}

}  // namespace nvml
}  // namespace taskmeter
