#include "gpu.h"

#include "cuda_order.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
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

}  // namespace

// Drivers 535.43 to 535.86 wrote nvmlProcessInfo_t entries of 32 bytes from the _v3 calls. Kept as a second signal
// beside the loader's symbol rule (Windows/WSL report Windows driver numbers such as 536.xx, so the version alone
// misses them).
bool DriverHasWideV3Entries(const std::string& v) {
  unsigned major = 0, minor = 0;
  if (std::sscanf(v.c_str(), "%u.%u", &major, &minor) != 2) return false;
  return major == 535 && minor >= 43 && minor <= 86;
}

// NVIDIA's open kernel modules translate the process list's PIDs into the caller's PID namespace since 535.113.01
// and match per-PID memory in it since 565.57.01.
int PidMatchForDriver(const std::string& v) {
  unsigned major = 0, minor = 0, patch = 0;
  int n = std::sscanf(v.c_str(), "%u.%u.%u", &major, &minor, &patch);
  if (n < 2) return kPidsForeign;
  auto at_least = [&](unsigned M, unsigned m, unsigned p) {
    if (major != M) return major > M;
    if (minor != m) return minor > m;
    return patch >= p;
  };
  if (at_least(565, 57, 1)) return kPidsTranslated;
  if (at_least(535, 113, 1)) return kPidsListOnly;
  return kPidsForeign;
}

// NVML reports PIDs as seen from the driver. If ours is another PID namespace (a container), older drivers hand out
// host PIDs. 4026531836 is the inode of the initial PID namespace (PROC_PID_INIT_INO).
bool InOwnPidNamespace(const std::string& declared) {
  // TASKMETER_PID_NAMESPACE=host declares that NVML's PIDs are ours (e.g. a container run with --pid=host);
  // =own declares the opposite.
  if (declared == "host") return false;
  if (declared == "own") return true;
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

namespace {

void ReadStatic(const Api& api, DeviceStatic* d) {
  char s[kUuidBufferSize];
  if (api.device_get_uuid && api.device_get_uuid(d->handle, s, sizeof(s)) == kSuccess) {
    s[sizeof(s) - 1] = '\0';
    d->uuid = s;
  }
  if (api.device_get_name && api.device_get_name(d->handle, s, sizeof(s)) == kSuccess) {
    s[sizeof(s) - 1] = '\0';
    d->name = s;
  }
  if (api.device_get_memory_info_v2) {
    MemoryV2 mem{};
    mem.version = kMemoryV2Version;
    if (api.device_get_memory_info_v2(d->handle, &mem) == kSuccess)
      d->memory_total_bytes = static_cast<double>(mem.total);
  }
  if (d->memory_total_bytes < 0 && api.device_get_memory_info) {
    Memory mem{};
    if (api.device_get_memory_info(d->handle, &mem) == kSuccess) d->memory_total_bytes = static_cast<double>(mem.total);
  }
  if (!d->mig && api.device_get_accounting_mode) {
    int mode = 0;
    Return r = api.device_get_accounting_mode(d->handle, &mode);
    d->accounting = r == kSuccess ? (mode == kEnableStateEnabled ? 1 : 0) : -1;
  }
  if (!d->mig && api.device_get_field_values) {
    FieldValue fv{};
    fv.fieldId = kFieldPowerInstant;
    d->power_instant = api.device_get_field_values(d->handle, 1, &fv) == kSuccess && fv.nvmlReturn == kSuccess;
  }
}

}  // namespace

bool Gpus::Detect(const Env& env, uint32_t self_pid) {
  // A detection starts from nothing: no value of an earlier one (a driver version after a failed load, a device
  // order note appended to) may survive into this one's result.
  devices_.clear();
  util_last_seen_us_.clear();
  reason_.clear();
  reason_code_ = "";
  driver_version_.clear();
  nvml_version_.clear();
  own_pid_namespace_ = false;
  pid_match_ = kPidsHost;
  process_stride_ = 0;
  device_order_ = "PCI_BUS_ID";
  device_order_certain_ = true;
  device_order_note_.clear();
  self_pid_ = self_pid;
  if (!lib_.Open(env)) {
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
  if (api.process_list_version == 3 && (api.wide_v3_by_symbols || DriverHasWideV3Entries(driver_version_)))
    process_stride_ = sizeof(ProcessInfoV3Cc);
  own_pid_namespace_ = InOwnPidNamespace(env.pid_namespace);
  if (!own_pid_namespace_) {
    pid_match_ = kPidsHost;
  } else if (env.pid_namespace == "own") {
    pid_match_ = kPidsForeign;
  } else {
    pid_match_ = PidMatchForDriver(driver_version_);
  }

  unsigned count = 0;
  Return r = api.device_get_count(&count);
  if (r != kSuccess) {
    reason_ = "NVML could not count the GPUs: " + Describe(r);
    reason_code_ = ErrorName(r);
    return false;
  }
  if (count > 64) count = 64;  // nothing real has more; a garbage count must not drive allocation
  std::vector<DeviceStatic> whole, slices;
  std::string first_error;
  for (unsigned i = 0; i < count; i++) {
    DeviceStatic d;
    d.nvml_index = i;
    r = api.device_get_handle_by_index(i, &d.handle);
    if (r != kSuccess) {
      if (first_error.empty()) first_error = "GPU " + std::to_string(i) + ": " + Describe(r);
      continue;
    }
    ReadStatic(api, &d);
    unsigned current = 0, pending = 0;
    if (api.device_get_mig_mode && api.device_get_mig_mode(d.handle, &current, &pending) == kSuccess)
      d.mig_mode = current == kMigModeEnabled;
    if (d.mig_mode && api.device_get_max_mig_device_count && api.device_get_mig_device_handle_by_index) {
      unsigned max = 0;
      if (api.device_get_max_mig_device_count(d.handle, &max) != kSuccess) max = 0;
      if (max > 64) max = 64;
      for (unsigned j = 0; j < max; j++) {
        DeviceStatic m;
        m.mig = true;
        m.mig_index = static_cast<int>(j);
        m.nvml_index = i;
        if (api.device_get_mig_device_handle_by_index(d.handle, j, &m.handle) != kSuccess) continue;  // a gap
        m.parent_uuid = d.uuid;
        m.parent_name = d.name;
        ReadStatic(api, &m);
        if (api.device_get_gpu_instance_id) api.device_get_gpu_instance_id(m.handle, &m.gpu_instance_id);
        if (api.device_get_compute_instance_id) api.device_get_compute_instance_id(m.handle, &m.compute_instance_id);
        slices.push_back(m);
      }
    }
    whole.push_back(d);
  }
  if (!SelectVisible(env, whole, slices)) return false;
  if (devices_.empty()) {
    reason_ = count == 0 ? "NVML found no NVIDIA GPU" : "no GPU could be opened: " + first_error;
    reason_code_ = count == 0 ? "GPU_NONE_FOUND" : "GPU_OPEN_FAILED";
    return false;
  }
  util_last_seen_us_.assign(devices_.size(), 0);
  return true;
}

// CUDA_VISIBLE_DEVICES, as CUDA reads it: a comma-separated list of indexes, GPU UUIDs (prefixes allowed), MIG UUIDs
// (MIG-<uuid>) or the older MIG-GPU-<uuid>/<gi>/<ci>; the list ends at the first entry that matches nothing. Set but
// empty hides every GPU. Bare indexes follow CUDA_DEVICE_ORDER.
bool Gpus::SelectVisible(const Env& env, const std::vector<DeviceStatic>& whole,
                         const std::vector<DeviceStatic>& slices) {
  // CUDA's order: PCI_BUS_ID is NVML's order. FASTEST_FIRST (the default) puts the fastest first and breaks ties by
  // PCI bus id: the same as NVML's when every GPU is the same model; otherwise NVML cannot tell CUDA's ranking.
  device_order_ = env.device_order == "PCI_BUS_ID" ? "PCI_BUS_ID" : "FASTEST_FIRST";
  bool same_model = true;
  for (const auto& d : whole) same_model &= d.name == whole.front().name;
  device_order_certain_ = device_order_ == "PCI_BUS_ID" || same_model;
  if (!device_order_certain_) {
    device_order_note_ =
        "different GPU models and CUDA_DEVICE_ORDER=FASTEST_FIRST (CUDA's default): NVML cannot tell which GPU CUDA "
        "numbers 0, 1 …; set CUDA_DEVICE_ORDER=PCI_BUS_ID or name GPUs by UUID in CUDA_VISIBLE_DEVICES";
  }
  auto expand = [&](const DeviceStatic& d) {
    // A whole GPU in MIG mode is used through its slices: each is a device of its own.
    if (!d.mig_mode) {
      devices_.push_back(d);
      return;
    }
    bool any = false;
    for (const auto& m : slices)
      if (m.nvml_index == d.nvml_index) {
        devices_.push_back(m);
        any = true;
      }
    if (!any) devices_.push_back(d);
  };
  if (!env.cvd_set) {
    for (const auto& d : whole) expand(d);
    return true;
  }
  const std::string& list = env.cvd;
  size_t pos = 0;
  std::vector<const DeviceStatic*> chosen;
  bool by_index = false;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string entry = Trim(list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    pos = comma == std::string::npos ? list.size() + 1 : comma + 1;
    if (entry.empty()) break;
    const DeviceStatic* match = nullptr;
    bool ambiguous = false;
    auto by_prefix = [&](const std::vector<DeviceStatic>& from, const std::string& prefix) {
      for (const auto& d : from)
        if (d.uuid.rfind(prefix, 0) == 0) {
          if (match != nullptr) ambiguous = true;  // an ambiguous prefix matches nothing
          match = &d;
        }
    };
    unsigned idx;
    if (ParseIndex(entry, &idx)) {
      by_index = true;
      for (const auto& d : whole)
        if (d.nvml_index == idx) match = &d;
    } else if (entry.rfind("MIG-GPU-", 0) == 0) {
      // MIG-GPU-<uuid>/<gi>/<ci> (CUDA < 11.1 drivers' form)
      std::string rest = entry.substr(4);
      size_t s1 = rest.find('/');
      size_t s2 = s1 == std::string::npos ? std::string::npos : rest.find('/', s1 + 1);
      unsigned gi, ci;
      if (s2 != std::string::npos && ParseIndex(rest.substr(s1 + 1, s2 - s1 - 1), &gi) &&
          ParseIndex(rest.substr(s2 + 1), &ci)) {
        std::string parent = rest.substr(0, s1);
        for (const auto& m : slices)
          if (m.parent_uuid.rfind(parent, 0) == 0 && m.gpu_instance_id == gi && m.compute_instance_id == ci) {
            if (match != nullptr) ambiguous = true;
            match = &m;
          }
      }
    } else if (entry.rfind("MIG-", 0) == 0) {
      by_prefix(slices, entry);
    } else if (entry.rfind("GPU-", 0) == 0) {
      by_prefix(whole, entry);
    }
    if (ambiguous) match = nullptr;
    if (match == nullptr) break;
    bool dup = false;
    for (const auto* d : chosen) dup |= d == match;
    if (dup) break;
    chosen.push_back(match);
  }
  if (by_index && !device_order_certain_ && env.cuda_helper) {
    // Ask CUDA itself, in a helper process, which devices it sees and in which order.
    std::vector<std::string> cuda;
    std::string why;
    if (CudaOrderFromHelper(env, 20000, &cuda, &why)) {
      std::vector<const DeviceStatic*> from_cuda;
      for (const auto& hex : cuda) {
        const DeviceStatic* m = nullptr;
        for (const auto& d : whole)
          if (UuidHex(d.uuid) == hex) m = &d;
        for (const auto& d : slices)
          if (UuidHex(d.uuid) == hex) m = &d;
        if (m == nullptr) {
          from_cuda.clear();
          why = "CUDA sees a device NVML does not list";
          break;
        }
        from_cuda.push_back(m);
      }
      if (!from_cuda.empty() || cuda.empty()) {
        chosen = from_cuda;
        device_order_certain_ = true;
        device_order_note_ = "CUDA's order of these GPUs was read from the CUDA driver library in a helper process";
      }
    }
    if (!device_order_certain_) device_order_note_ += " (asking CUDA in a helper process failed: " + why + ")";
  }
  if (by_index && !device_order_certain_) {
    // Which physical GPU a bare index names is unknown: attribute nothing to a guess. The one safe case is a list
    // naming every GPU by index (the set is certain; only the labels are not).
    bool all = chosen.size() == whole.size();
    for (const auto* d : chosen) all &= !d->mig;
    if (!all) {
      reason_ = "CUDA_VISIBLE_DEVICES=\"" + list +
                "\" names GPUs by index, but CUDA's order of these GPUs is "
                "unknown: " +
                device_order_note_;
      reason_code_ = "GPU_CUDA_ORDER_UNKNOWN";
      return false;
    }
  }
  for (const auto* d : chosen) {
    if (d->mig) {
      devices_.push_back(*d);
    } else {
      expand(*d);
    }
  }
  if (devices_.empty() && !whole.empty()) {
    reason_ = "CUDA_VISIBLE_DEVICES=\"" + list + "\" hides every GPU";
    reason_code_ = "GPU_HIDDEN_BY_CUDA_VISIBLE_DEVICES";
    return false;
  }
  return true;
}

Return Gpus::FetchList(DeviceGetProcessesFn fn, const DeviceStatic& d,
                       std::vector<std::pair<uint32_t, unsigned long long>>* out, bool* malformed) {
  const size_t stride = process_stride_;
  Return r = kErrorInsufficientSize;
  for (int attempt = 0; attempt < 5; attempt++) {
    unsigned cap = list_capacity_;
    // Room for the widest entry layout whatever the stride we expect, so a driver that writes more per entry than
    // its header says cannot overrun the buffer.
    list_buf_.assign(static_cast<size_t>(cap) * sizeof(ProcessInfoV3Cc) + 64, 0);
    unsigned count = cap;
    r = fn(d.handle, &count, list_buf_.data());
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
      if (stride >= sizeof(ProcessInfoV2) && !d.mig && !d.mig_mode) {
        // Stride check: on a GPU without MIG every entry's instance ids are 0xFFFFFFFF; anything else means the
        // entries are not laid out as we read them.
        unsigned gi, ci;
        std::memcpy(&gi, e + offsetof(ProcessInfoV2, gpuInstanceId), sizeof(gi));
        std::memcpy(&ci, e + offsetof(ProcessInfoV2, computeInstanceId), sizeof(ci));
        if (gi != kNoInstanceId || ci != kNoInstanceId) *malformed = true;
      }
      out->emplace_back(pid, mem);
    }
    return kSuccess;
  }
  return r;
}

namespace {
bool PidExistsHere(uint32_t pid) {
#ifdef __linux__
  char path[32];
  std::snprintf(path, sizeof(path), "/proc/%u", pid);
  return access(path, F_OK) == 0;
#else
  (void)pid;
  return true;
#endif
}
}  // namespace

void Gpus::ReadProcesses(const DeviceStatic& d, DeviceReading* out) {
  const Api& api = lib_.api();
  ProcessList& pl = out->processes;
  pl.entries.clear();
  if (api.compute_processes == nullptr) {
    pl.reason = kProcNoFunction;
    return;
  }
  std::vector<std::pair<uint32_t, unsigned long long>> raw;
  bool malformed = false;
  Return r = FetchList(api.compute_processes, d, &raw, &malformed);
  if (r == kSuccess && !malformed && api.graphics_processes != nullptr) {
    Return g = FetchList(api.graphics_processes, d, &raw, &malformed);
    if (g != kSuccess && g != kErrorNotSupported) r = g;
  }
  // MPS clients appear only in the MPS list.
  bool mps_ok = false;
  if (r == kSuccess && !malformed && api.mps_processes != nullptr) {
    Return m = FetchList(api.mps_processes, d, &raw, &malformed);
    mps_ok = m == kSuccess;
  }
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
  if (pid_match_ == kPidsTranslated) {
    // Do not trust the version alone: every PID the driver lists must exist in this namespace. A driver that
    // hands out host PIDs fails this, and a host PID that happens to equal ours is then never read as ours.
    for (const auto& e : raw)
      if (!PidExistsHere(e.first)) {
        pl.reason = kProcHostPids;
        return;
      }
  }
  // A pid can be in several lists (a process doing compute and graphics): count it once.
  std::sort(raw.begin(), raw.end());
  for (const auto& e : raw) {
    if (!pl.entries.empty() && pl.entries.back().first == e.first) {
      auto& prev = pl.entries.back().second;
      if (prev == kValueNotAvailable || (e.second != kValueNotAvailable && e.second > prev)) prev = e.second;
    } else {
      pl.entries.push_back(e);
    }
  }
#ifdef _WIN32
  (void)mps_ok;
  pl.absence_is_zero = false;  // WDDM: the lists do not name every process using the GPU
#else
  pl.absence_is_zero = mps_ok && !d.mig;
#endif
  pl.reason = kProcOk;
}

Return Gpus::ReadProcessUtilization(size_t i, std::vector<ProcessUtil>* out, double now_us, double recent_us) {
  out->clear();
  if (i >= devices_.size()) return kErrorInvalidArgument;
  const Api& api = lib_.api();
  const DeviceStatic& d = devices_[i];
  if (d.mig) return kErrorNotSupported;
  if (api.device_get_process_utilization == nullptr) return kErrorFunctionNotFound;
  if (util_buf_.size() < 64) util_buf_.resize(64);
  auto recent = static_cast<unsigned long long>(std::max(0.0, recent_us));
  // Only samples newer than the newest one already returned: read at any pace, none is counted twice or lost
  // (within what the driver keeps).
  unsigned long long since = UtilSinceUs(util_last_seen_us_[i], now_us, recent_us);
  unsigned count = static_cast<unsigned>(util_buf_.size());
  Return r = api.device_get_process_utilization(d.handle, util_buf_.data(), &count, since);
  if (r == kErrorInsufficientSize && count > util_buf_.size()) {
    // More samples than the buffer holds: grow it (bounded), else ask only for the last period's (older ones are
    // lost, never the read: an ever-failing read would never move lastSeen on).
    util_buf_.resize(std::min<size_t>(static_cast<size_t>(count) + 16, kMaxUtilSamples));
    if (count > util_buf_.size()) since = std::max(since, recent);
    count = static_cast<unsigned>(util_buf_.size());
    r = api.device_get_process_utilization(d.handle, util_buf_.data(), &count, since);
    if (r == kErrorInsufficientSize && since < recent) {
      since = recent;
      count = static_cast<unsigned>(util_buf_.size());
      r = api.device_get_process_utilization(d.handle, util_buf_.data(), &count, since);
    }
  }
  if (r == kErrorInsufficientSize) {
    // Even the last period's samples do not fit: skip to now, so that the next read asks for fewer.
    util_last_seen_us_[i] = std::max(util_last_seen_us_[i], static_cast<unsigned long long>(std::max(0.0, now_us)));
    return r;
  }
  if (r == kErrorNotFound) return kSuccess;  // no process used the GPU since then
  if (r != kSuccess) return r;
  if (count > util_buf_.size()) count = static_cast<unsigned>(util_buf_.size());
  if (since > util_last_seen_us_[i] || util_last_seen_us_[i] > now_us) util_last_seen_us_[i] = since;
  for (unsigned k = 0; k < count; k++) {
    const auto& s = util_buf_[k];
    if (s.timeStamp > util_last_seen_us_[i]) util_last_seen_us_[i] = s.timeStamp;
    if (s.smUtil > 100 || s.memUtil > 100) continue;
    out->push_back(ProcessUtil{s.pid, s.smUtil, s.memUtil, s.timeStamp});
  }
  return kSuccess;
}

unsigned long long UtilSinceUs(unsigned long long last_seen_us, double now_us, double recent_us) {
  // The wall clock behind the newest sample read: it stepped back, and the driver stamps new samples with it, all
  // older than last_seen (none would be returned until the clock caught up). Ask from one period ago instead.
  if (static_cast<double>(last_seen_us) > now_us) return static_cast<unsigned long long>(std::max(0.0, recent_us));
  return last_seen_us;
}

double Gpus::ReadEnergyMj(size_t i) {
  if (i >= devices_.size()) return -1;
  const Api& api = lib_.api();
  const DeviceStatic& d = devices_[i];
  // A MIG slice has no energy of its own in NVML: never read the parent's in its place.
  if (d.mig || api.device_get_total_energy_consumption == nullptr) return -1;
  unsigned long long mj = 0;
  if (api.device_get_total_energy_consumption(d.handle, &mj) != kSuccess || mj == kValueNotAvailable) return -1;
  return static_cast<double>(mj);
}

void Gpus::ReadDevice(size_t i, DeviceReading* out) {
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
  // A MIG slice has no utilization, power or energy of its own in NVML: never read the parent's in its place.
  if (!d.mig) {
    if (api.device_get_utilization_rates) {
      Utilization u{};
      if (api.device_get_utilization_rates(d.handle, &u) == kSuccess && u.gpu <= 100) out->utilization_percent = u.gpu;
    }
    // Power: the instantaneous field where the driver has it (nvmlDeviceGetPowerUsage is a 1 s average on Ampere
    // and newer), else nvmlDeviceGetPowerUsage.
    if (d.power_instant && api.device_get_field_values) {
      FieldValue fv{};
      fv.fieldId = kFieldPowerInstant;
      if (api.device_get_field_values(d.handle, 1, &fv) == kSuccess && fv.nvmlReturn == kSuccess) {
        double mw = fv.valueType == kValueTypeUnsignedInt ? fv.value.uiVal : static_cast<double>(fv.value.ullVal);
        out->power_watts = mw / 1000.0;
        out->power_source = kPowerInstant;
      }
    }
    if (out->power_source == kPowerNone && api.device_get_power_usage) {
      unsigned int mw = 0;
      if (api.device_get_power_usage(d.handle, &mw) == kSuccess) {
        out->power_watts = mw / 1000.0;
        out->power_source = kPowerAverage;
      }
    }
    if (d.accounting == 1 && api.device_get_accounting_stats) {
      AccountingStats st{};
      int rc = api.device_get_accounting_stats(d.handle, self_pid_, &st);
      if (rc == kSuccess && st.maxMemoryUsage != kValueNotAvailable)
        out->accounting_max_bytes = static_cast<double>(st.maxMemoryUsage);
      else if (rc == kErrorNotFound)
        out->accounting_max_bytes = 0;  // no record: this process has not used the GPU yet (a failure stays -1)
    }
  }
  ReadProcesses(d, out);
  if (out->processes.reason == kProcCallFailed && out->processes.error == kErrorGpuIsLost) {
    out->device_error = kErrorGpuIsLost;
  }
}

}  // namespace nvml
}  // namespace taskmeter
