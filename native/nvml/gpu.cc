#include "gpu.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>

#ifdef __linux__
#include <unistd.h>
#endif

namespace taskmeter {
namespace nvml {

namespace {

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t");
  return s.substr(a, b - a + 1);
}

bool ParseIndex(const std::string& s, unsigned* out) {
  if (s.empty() || s.size() > 6) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  *out = v;
  return true;
}

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

// Drivers 535.43 to 535.86 wrote nvmlProcessInfo_t entries of 32 bytes from the _v3 calls.
bool DriverHasWideV3Entries(const std::string& v) {
  unsigned major = 0, minor = 0;
  if (std::sscanf(v.c_str(), "%u.%u", &major, &minor) != 2) return false;
  return major == 535 && minor >= 43 && minor <= 86;
}

// NVML reports PIDs of the host's PID namespace. If ours is another one (a container), no pid in its lists can be
// matched to ours. 4026531836 is the inode of the initial PID namespace (PROC_PID_INIT_INO).
bool InOwnPidNamespace() {
  // TASKMETER_PID_NAMESPACE=host declares that NVML's PIDs are ours (e.g. a container run with --pid=host);
  // =own declares the opposite.
  const char* declared = std::getenv("TASKMETER_PID_NAMESPACE");
  if (declared != nullptr && std::strcmp(declared, "host") == 0) return false;
  if (declared != nullptr && std::strcmp(declared, "own") == 0) return true;
#ifdef __linux__
  char buf[64];
  ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof(buf) - 1);
  if (n <= 0) return false;  // no /proc: assume the host's view
  buf[n] = '\0';
  return std::strcmp(buf, "pid:[4026531836]") != 0;
#else
  return false;  // Windows containers share the host's PID space as NVML sees it
#endif
}

bool Gpus::Detect() {
  devices_.clear();
  if (!lib_.Open()) {
    reason_ = lib_.reason();
    reason_code_ = lib_.reason_code();
    return false;
  }
  const Api& api = lib_.api();
  char buf[kDriverVersionBufferSize + kNvmlVersionBufferSize];
  if (api.system_get_driver_version && api.system_get_driver_version(buf, kDriverVersionBufferSize) == kSuccess) {
    buf[kDriverVersionBufferSize - 1] = '\0';
    driver_version_ = buf;
  }
  if (api.system_get_nvml_version && api.system_get_nvml_version(buf, kNvmlVersionBufferSize) == kSuccess) {
    buf[kNvmlVersionBufferSize - 1] = '\0';
    nvml_version_ = buf;
  }
  process_stride_ = api.process_entry_size;
  if (api.process_list_version == 3 && DriverHasWideV3Entries(driver_version_)) process_stride_ = sizeof(ProcessInfoV3Cc);
  own_pid_namespace_ = InOwnPidNamespace();

  unsigned count = 0;
  Return r = api.device_get_count(&count);
  if (r != kSuccess) {
    reason_ = "NVML could not count the GPUs: " + Describe(r);
    reason_code_ = ErrorName(r);
    return false;
  }
  if (count > 64) count = 64;  // nothing real has more; a garbage count must not drive allocation
  std::vector<DeviceStatic> all;
  std::string first_error;
  for (unsigned i = 0; i < count; i++) {
    DeviceStatic d;
    d.nvml_index = i;
    r = api.device_get_handle_by_index(i, &d.handle);
    if (r != kSuccess) {
      if (first_error.empty()) first_error = "GPU " + std::to_string(i) + ": " + Describe(r);
      continue;
    }
    char s[kUuidBufferSize];
    if (api.device_get_uuid && api.device_get_uuid(d.handle, s, sizeof(s)) == kSuccess) {
      s[sizeof(s) - 1] = '\0';
      d.uuid = s;
    }
    if (api.device_get_name && api.device_get_name(d.handle, s, sizeof(s)) == kSuccess) {
      s[sizeof(s) - 1] = '\0';
      d.name = s;
    }
    if (api.device_get_memory_info_v2) {
      MemoryV2 mem{};
      mem.version = kMemoryV2Version;
      if (api.device_get_memory_info_v2(d.handle, &mem) == kSuccess) d.memory_total_bytes = static_cast<double>(mem.total);
    }
    if (d.memory_total_bytes < 0 && api.device_get_memory_info) {
      Memory mem{};
      if (api.device_get_memory_info(d.handle, &mem) == kSuccess) d.memory_total_bytes = static_cast<double>(mem.total);
    }
    all.push_back(d);
  }

  // CUDA_VISIBLE_DEVICES, as CUDA reads it: a comma-separated list of indexes or UUIDs (prefixes allowed); the
  // list ends at the first entry that matches nothing. Set but empty hides every GPU.
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  if (cvd != nullptr) {
    std::string list = cvd;
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t comma = list.find(',', pos);
      std::string entry = Trim(list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
      pos = comma == std::string::npos ? list.size() + 1 : comma + 1;
      if (entry.empty()) break;
      const DeviceStatic* match = nullptr;
      unsigned idx;
      if (ParseIndex(entry, &idx)) {
        for (const auto& d : all)
          if (d.nvml_index == idx) match = &d;
      } else if (entry.rfind("GPU-", 0) == 0) {
        for (const auto& d : all)
          if (d.uuid.rfind(entry, 0) == 0) {
            if (match != nullptr) {  // an ambiguous prefix matches nothing
              match = nullptr;
              break;
            }
            match = &d;
          }
      }
      if (match == nullptr) break;
      bool dup = false;
      for (const auto& d : devices_) dup |= d.nvml_index == match->nvml_index;
      if (dup) break;
      devices_.push_back(*match);
    }
    if (devices_.empty() && !all.empty()) {
      reason_ = std::string("CUDA_VISIBLE_DEVICES=\"") + cvd + "\" hides every GPU";
      reason_code_ = "GPU_HIDDEN_BY_CUDA_VISIBLE_DEVICES";
      return false;
    }
  } else {
    devices_ = all;
  }
  if (devices_.empty()) {
    reason_ = count == 0 ? "NVML found no NVIDIA GPU" : "no GPU could be opened: " + first_error;
    reason_code_ = count == 0 ? "GPU_NONE_FOUND" : "GPU_OPEN_FAILED";
    return false;
  }
  return true;
}

Return Gpus::FetchList(DeviceGetProcessesFn fn, Device dev,
                       std::vector<std::pair<uint32_t, unsigned long long>>* out, bool* malformed) {
  const size_t stride = process_stride_;
  Return r = kErrorInsufficientSize;
  for (int attempt = 0; attempt < 5; attempt++) {
    unsigned cap = list_capacity_;
    // Room for the widest entry layout whatever the stride we expect, so a driver that writes more per entry than
    // its header says cannot overrun the buffer.
    list_buf_.assign(static_cast<size_t>(cap) * sizeof(ProcessInfoV3Cc) + 64, 0);
    unsigned count = cap;
    r = fn(dev, &count, list_buf_.data());
    if (r == kErrorInsufficientSize) {
      // The list grew between the size query and the call: retry with the new size plus headroom.
      unsigned want = std::max(count, cap) + 16;
      list_capacity_ = std::min(want, 4096u);
      continue;
    }
    if (r != kSuccess) return r;
    if (count > cap) {
      *malformed = true;
      return kSuccess;
    }
    for (unsigned i = 0; i < count; i++) {
      const unsigned char* e = list_buf_.data() + static_cast<size_t>(i) * stride;
      unsigned int pid;
      unsigned long long mem;
      std::memcpy(&pid, e + offsetof(ProcessInfoV1, pid), sizeof(pid));
      std::memcpy(&mem, e + offsetof(ProcessInfoV1, usedGpuMemory), sizeof(mem));
      out->emplace_back(pid, mem);
    }
    return kSuccess;
  }
  return r;
}

void Gpus::ReadProcesses(const DeviceStatic& d, DeviceReading* out) {
  const Api& api = lib_.api();
  ProcessList& pl = out->processes;
  pl.entries.clear();
  if (api.compute_processes == nullptr) {
    pl.reason = kProcNoFunction;
    return;
  }
  double t0 = NowMs();
  std::vector<std::pair<uint32_t, unsigned long long>> raw;
  bool malformed = false;
  Return r = FetchList(api.compute_processes, d.handle, &raw, &malformed);
  if (r == kSuccess && !malformed && api.graphics_processes != nullptr) {
    Return g = FetchList(api.graphics_processes, d.handle, &raw, &malformed);
    if (g != kSuccess && g != kErrorNotSupported) r = g;
  }
  out->process_list_ms = NowMs() - t0;
  if (r != kSuccess) {
    pl.reason = kProcCallFailed;
    pl.error = r;
    return;
  }
  double total = out->memory_total_bytes >= 0 ? out->memory_total_bytes : d.memory_total_bytes;
  for (const auto& e : raw) {
    if (e.first == 0) malformed = true;
    if (e.second != kValueNotAvailable && total >= 0 && static_cast<double>(e.second) > total) malformed = true;
  }
  if (malformed) {
    pl.reason = kProcMalformed;
    return;
  }
  // A pid can be in both lists (a process doing compute and graphics): count it once.
  std::sort(raw.begin(), raw.end());
  for (const auto& e : raw) {
    if (!pl.entries.empty() && pl.entries.back().first == e.first) {
      auto& prev = pl.entries.back().second;
      if (prev == kValueNotAvailable || (e.second != kValueNotAvailable && e.second > prev)) prev = e.second;
    } else {
      pl.entries.push_back(e);
    }
  }
  pl.reason = kProcOk;
}

void Gpus::Read(size_t i, DeviceReading* out) {
  if (i >= devices_.size()) return;
  const DeviceStatic& d = devices_[i];
  const Api& api = lib_.api();
  *out = DeviceReading();
  Return r;
  bool have_mem = false;
  if (api.device_get_memory_info_v2) {
    MemoryV2 mem{};
    mem.version = kMemoryV2Version;
    r = api.device_get_memory_info_v2(d.handle, &mem);
    if (r == kSuccess) {
      out->memory_used_bytes = static_cast<double>(mem.used);
      out->memory_total_bytes = static_cast<double>(mem.total);
      have_mem = true;
    } else if (r == kErrorGpuIsLost) {
      out->device_error = r;
    }
  }
  if (!have_mem && out->device_error == kSuccess && api.device_get_memory_info) {
    Memory mem{};
    r = api.device_get_memory_info(d.handle, &mem);
    if (r == kSuccess) {
      out->memory_used_bytes = static_cast<double>(mem.used);
      out->memory_total_bytes = static_cast<double>(mem.total);
    } else if (r == kErrorGpuIsLost) {
      out->device_error = r;
    }
  }
  if (out->memory_used_bytes > out->memory_total_bytes && out->memory_total_bytes >= 0) {
    out->memory_used_bytes = -1;  // impossible: used above total is not a reading
  }
  if (out->device_error != kSuccess) {
    out->processes.reason = kProcCallFailed;
    out->processes.error = out->device_error;
    return;
  }
  if (api.device_get_utilization_rates) {
    Utilization u{};
    if (api.device_get_utilization_rates(d.handle, &u) == kSuccess && u.gpu <= 100) out->utilization_percent = u.gpu;
  }
  if (api.device_get_power_usage) {
    unsigned int mw = 0;
    if (api.device_get_power_usage(d.handle, &mw) == kSuccess) out->power_watts = mw / 1000.0;
  }
  if (api.device_get_total_energy_consumption) {
    unsigned long long mj = 0;
    if (api.device_get_total_energy_consumption(d.handle, &mj) == kSuccess && mj != kValueNotAvailable) {
      out->energy_counter_mj = static_cast<double>(mj);
    }
  }
  ReadProcesses(d, out);
  if (out->processes.reason == kProcCallFailed && out->processes.error == kErrorGpuIsLost) {
    out->device_error = kErrorGpuIsLost;
  }
}

}  // namespace nvml
}  // namespace taskmeter
