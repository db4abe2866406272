#include "gpu_sampler.h"

#include <algorithm>
#include <cerrno>
#include <new>

#include <cstdio>
#include <cstring>

#ifdef __linux__
#include <fcntl.h>
#include <unistd.h>
#elif !defined(_WIN32)
#include <signal.h>
#endif

#include "proc/proc.h"
#include "sampler.h"

namespace taskmeter {

namespace {

// The device readings want the shortest open window's interval (at least kMinDeviceMs); the other periods and the
// stretch stages are gpuwin::DefaultSchedule's.
constexpr double kMinDeviceMs = 1;
// Until a kind's cost is measured, the schedule assumes what it cost per GPU on an H200 (issue 16): so the first
// readings of 8 GPUs' energy counters (each ~20 ms the first time) are spread over the stretched period, not
// bunched into the first second.
constexpr double kPriorCostMs[gpuwin::kGpuKinds] = {3.0, 1.8, 0.06};  // energy, process utilization, device
// With no window open, snapshot() asks for a fresh GPU reading when the cache is older than this.
constexpr double kIdleRefreshMs = 500;
constexpr double kIdleIntervalMs = 1000;
// A device round checks whether at most this many of a window's pids are alive (kill(pid, 0)).
constexpr size_t kProbePidsPerWindow = 8;

// Whether a process lives (a zombie does not: its GPU memory is released, and a reading then proves nothing of what
// it held). Linux: its state in /proc/<pid>/stat; other POSIX systems: kill(pid, 0).
bool PidAlive(uint32_t pid) {
#if defined(_WIN32)
  (void)pid;
  return true;  // WDDM's lists do not prove absence anyway (absence_is_zero is false there)
#elif defined(__linux__)
  char path[32];
  std::snprintf(path, sizeof(path), "/proc/%u/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT && errno != ESRCH;  // not readable (EACCES…): it exists
  char buf[512];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');
  return paren != nullptr && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
#else
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
#endif
}

std::chrono::steady_clock::time_point DeadlineIn(double ms) {
  return std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0) + 1);
}

}  // namespace

void GpuSampler::SetDisabledLocked() {
  state_ = GpuState::kDisabled;
  info_ = GpuInfoSnapshot{GpuState::kDisabled, "disabled by TASKMETER_DISABLE_GPU", "", "", "", {}, false, 0, 0,
                          "GPU_DISABLED"};
  cache_.clear();
  ResetWindowsLocked();
}

void GpuSampler::SetHungLocked() {
  state_ = GpuState::kUnavailable;
  info_ = GpuInfoSnapshot{GpuState::kUnavailable,
                          "an earlier NVML call never returned; GPU readings are off for the rest of this process",
                          "",
                          "",
                          "",
                          {},
                          false,
                          0,
                          0,
                          "GPU_HUNG"};
  cache_.clear();
  ResetWindowsLocked();
  detected_cv_.notify_all();
}

void GpuSampler::SetPendingLocked(nvml::Env env) {
  env_ = std::move(env);
  state_ = GpuState::kPending;
  info_ =
      GpuInfoSnapshot{GpuState::kPending, "GPU detection is still running", "", "", "", {}, false, 0, 0, "GPU_PENDING"};
}

void GpuSampler::StartFailedLocked(const std::string& why) {
  state_ = GpuState::kUnavailable;
  info_.state = GpuState::kUnavailable;
  info_.reason = why;
  info_.reason_code = "GPU_THREAD_START_FAILED";
  detected_cv_.notify_all();
}

void GpuSampler::StoppedLocked() {
  cv_.notify_all();
  // No GPU figure is read from here on (FillLocked and ReadCacheLocked read cache_'s GPUs); the windows' GPU state
  // starts afresh at the next detection (ResetWindowsLocked). Nothing allocates here: exit calls it.
  cache_.clear();
}

void GpuSampler::ThreadFailedLocked(const std::string& why) {
  state_ = GpuState::kUnavailable;
  info_.state = GpuState::kUnavailable;
  info_.reason = why;
  info_.reason_code = "GPU_THREAD_FAILED";
  info_.devices.clear();
  cache_.clear();
  ResetWindowsLocked();
}

void GpuSampler::ClearInFlightLocked() {
  poll_started_ms_ = NAN;
  slow_call_started_ms_ = NAN;
  detecting_ = false;
  detected_cv_.notify_all();
}

double GpuSampler::HungAtLocked(double now) const {
  if (!std::isnan(slow_call_started_ms_)) return slow_call_started_ms_ + kSlowCallHangMs;
  if (!std::isnan(poll_started_ms_)) return poll_started_ms_ + kHangMs;
  return now + kHangMs;
}

void GpuSampler::OpenLocked(uint64_t id, double open_ms, double interval_ms) {
  // No GPU (none found, disabled, or its thread failed): nothing to keep for the window.
  if (state_ == GpuState::kUnavailable || state_ == GpuState::kDisabled) return;
  // All or nothing: what allocates comes first, undone if a later step throws (std::bad_alloc), so that a window
  // that fails to open (Sampler::Open) leaves no count behind.
  auto iv = intervals_.try_emplace(interval_ms, 0).first;
  auto it = windows_.end();
  bool epoch = false;
  try {
    it = windows_.try_emplace(id).first;
    it->second.gpu.assign(cache_.size(), PerGpu());
    it->second.open_epoch_us = proc::EpochMs() * 1000.0;  // the driver stamps per-process samples with the wall clock
    it->second.epoch_it = open_epochs_.insert(it->second.open_epoch_us);
    epoch = true;
    ReserveOne(fresh_);  // ListAdd below cannot throw
  } catch (...) {
    if (epoch) open_epochs_.erase(it->second.epoch_it);
    if (it != windows_.end()) windows_.erase(it);
    if (iv->second == 0) intervals_.erase(iv);
    throw;
  }
  Window& w = it->second;
  w.id = id;
  w.open_ms = open_ms;
  w.interval_ms = interval_ms;
  for (size_t i = 0; i < w.gpu.size() && i < shared_.size(); i++) w.gpu[i].base_putil_reads = shared_[i].putil_reads;
  ListAdd(fresh_, &Window::fresh_at, w);
  // The shortest interval sets the device readings' period: the GPU thread plans anew (not this JS thread).
  if (iv->second++ == 0 && interval_ms <= intervals_.begin()->first) plan_dirty_ = true;
  InitEnergyLocked(w, open_ms);
  RequestEdgeLocked(open_ms);
}

void GpuSampler::InitEnergyLocked(Window& w, double now) {
  last_eval_ms_ = std::max(last_eval_ms_, now);
  for (size_t i = 0; i < w.gpu.size() && i < cache_.size(); i++) {
    const gpuwin::EnergyModel& m = cache_[i].energy;
    PerGpu& g = w.gpu[i];
    g.e_open = m.At(now);  // NaN before the first reading: set at the window's first reading
    g.backwards_open = m.backwards();
    g.no_source_open = m.no_source();
    g.source_at_open = m.has_source();
  }
}

void GpuSampler::ReserveOne(std::vector<Window*>& list) {
  if (list.size() == list.capacity()) list.reserve(std::max<size_t>(16, 2 * list.capacity()));
}

void GpuSampler::ListAdd(std::vector<Window*>& list, size_t Window::*at, Window& w) {
  if (w.*at != SIZE_MAX) return;
  w.*at = list.size();
  list.push_back(&w);
}

void GpuSampler::ListRemove(std::vector<Window*>& list, size_t Window::*at, Window& w) {
  size_t k = w.*at;
  if (k == SIZE_MAX) return;
  Window* last = list.back();
  list[k] = last;
  last->*at = k;
  list.pop_back();
  w.*at = SIZE_MAX;
}

void GpuSampler::DropSharedLocked(Window& w) {
  if (!w.shared) return;
  if (w.based) bases_.erase(w.base_it);
  open_epochs_.erase(w.epoch_it);
  w.shared = false;
  DropUnneededLocked();
}

void GpuSampler::DropUnneededLocked() {
  if (bases_.empty()) {
    for (auto& sh : shared_) {
      sh.memory_used.Clear();
      sh.self_bytes.Clear();
    }
    self_sum_.Clear();
  } else {
    uint64_t oldest = *bases_.begin();
    for (auto& sh : shared_) {
      sh.memory_used.DropBefore(oldest);
      sh.self_bytes.DropBefore(oldest);
    }
    self_sum_.DropBefore(oldest);
  }
  for (auto& sh : shared_) {
    if (open_epochs_.empty()) {
      sh.putil.clear();
    } else {
      double oldest = *open_epochs_.begin();
      while (!sh.putil.empty() && static_cast<double>(sh.putil.front().timestamp_us) <= oldest) sh.putil.pop_front();
    }
  }
}

void GpuSampler::ResetWindowsLocked() {
  shared_.assign(cache_.size(), Shared());
  bases_.clear();
  self_sum_.Clear();
  self_sum_last_ = NAN;
  fresh_.clear();
  own_.clear();
  acct_pending_.clear();
  for (auto& kv : windows_) {
    Window& w = kv.second;
    w.fresh_at = w.own_at = w.acct_at = SIZE_MAX;
    w.based = false;
    w.samples = 0;
    w.tl_max = w.tl_last = NAN;
    w.gpu.assign(cache_.size(), PerGpu());  // E(open) too: from the window's first reading
    ListAdd(fresh_, &Window::fresh_at, w);
    if (!w.shared) ListAdd(own_, &Window::own_at, w);
  }
}

GpuSampler::PerGpu GpuSampler::ViewLocked(const Window& w, size_t i) const {
  PerGpu g = i < w.gpu.size() ? w.gpu[i] : PerGpu();
  if (!w.shared || i >= shared_.size() || i >= cache_.size()) return g;
  const Shared& sh = shared_[i];
  // Per-process utilization: this process's samples taken since the window opened, and the reads since then. Both
  // bounds: a wall clock stepped back leaves marks from before the opening stamped after it (held at the last time),
  // which only the read number tells apart.
  auto mark = std::upper_bound(sh.putil.begin(), sh.putil.end(), w.open_epoch_us,
                               [](double t, const PutilMark& m) { return t < static_cast<double>(m.timestamp_us); });
  auto first_read = std::upper_bound(sh.putil.begin(), sh.putil.end(), g.base_putil_reads,
                                     [](uint64_t r, const PutilMark& m) { return r < m.read; });
  if (first_read > mark) mark = first_read;
  if (mark != sh.putil.end()) {
    g.putil.sm_sum = sh.putil_sm - mark->sm_before;
    g.putil.mem_sum = sh.putil_mem - mark->mem_before;
    g.putil.n = static_cast<uint32_t>(sh.putil_n - mark->n_before);
  }
  if (sh.putil_reads > g.base_putil_reads)
    g.putil_error = sh.putil_error_read > g.base_putil_reads ? sh.putil_error : 0;
  if (!w.based) return g;
  // Device readings: the totals since the window's first reading, the largest since its number.
  auto n = static_cast<uint32_t>(device_num_ - w.base_num);
  g.samples = g.list_reads = n;
  if (n == 0) return g;
  const Cache& c = cache_[i];
  g.memory_used_peak = sh.memory_used.Since(w.base_num);
  g.util_sum = sh.util_sum - g.base_util_sum;
  g.util_n = static_cast<uint32_t>(sh.util_n - g.base_util_n);
  g.util_last = sh.util_n > g.base_util_n ? sh.util_last : NAN;
  g.device_error = c.reading.device_error;  // the last reading's, which is inside the window
  g.power_source = c.reading.power_source;
  g.process_samples = static_cast<uint32_t>(sh.self_ok - g.base_self_ok);
  g.process_peak = sh.self_bytes.Since(w.base_num);
  g.process_end = sh.self_ok > g.base_self_ok ? sh.self_end : NAN;
  g.process_reason = c.self_reason;
  g.acct_end = sh.acct_end_num >= w.base_num ? sh.acct_end : NAN;
  return g;
}

uint32_t GpuSampler::SamplesLocked(const Window& w) const {
  if (!w.shared) return w.samples;
  return w.based ? static_cast<uint32_t>(device_num_ - w.base_num) : 0;
}

void GpuSampler::MakeOwnLocked(Window& w) {
  if (!w.shared) return;
  ReserveOne(own_);  // what may throw comes first
  // Its figures so far, as a window of its own would have them; from now on it accumulates its own.
  for (size_t i = 0; i < w.gpu.size(); i++) w.gpu[i] = ViewLocked(w, i);
  w.samples = SamplesLocked(w);
  if (w.based) {
    w.tl_max = self_sum_.Since(w.tl_num);
    w.tl_last = self_sum_last_num_ >= w.base_num ? self_sum_last_ : NAN;
  }
  ListRemove(acct_pending_, &Window::acct_at, w);  // a window of its own tries its accounting base at each reading
  DropSharedLocked(w);
  ListAdd(own_, &Window::own_at, w);
}

void GpuSampler::SetPidsLocked(uint64_t id, std::vector<uint32_t> pids, bool fresh) {
  auto it = windows_.find(id);
  if (it == windows_.end()) return;
  Window& w = it->second;
  if (w.shared && pids.empty() && !fresh) return;  // this process, as it was
  MakeOwnLocked(w);
  w.pids = std::move(pids);
  if (!fresh) return;
  // The window follows other processes from now on: what readings since its opening attributed to this process
  // is not theirs.
  for (auto& g : w.gpu) {
    g.process_peak = g.process_end = NAN;
    g.process_reason = nvml::kProcNotSampled;
    g.process_samples = g.list_reads = 0;
    g.acct_base_set = false;
    g.putil = gpuwin::UtilAcc();
    g.putil_error = -1;
  }
  w.tl_max = w.tl_last = NAN;
}

void GpuSampler::CloseLocked(uint64_t id) {
  auto it = windows_.find(id);
  if (it == windows_.end()) return;
  Window& w = it->second;
  ListRemove(fresh_, &Window::fresh_at, w);
  ListRemove(own_, &Window::own_at, w);
  ListRemove(acct_pending_, &Window::acct_at, w);
  DropSharedLocked(w);
  auto iv = intervals_.find(w.interval_ms);
  if (iv != intervals_.end() && --iv->second == 0) {
    if (iv == intervals_.begin()) plan_dirty_ = true;
    intervals_.erase(iv);
  }
  windows_.erase(it);
  RequestEdgeLocked(proc::MonotonicMs());
}

void GpuSampler::RequestEdgeLocked(double now) {
  if (cache_.empty() || state_ != GpuState::kReady) return;
  if (!edge_pending_) {
    edge_pending_ = true;
    edge_ms_ = now;
  }
  for (auto& c : cache_) c.energy_edge = true;
  // Wake the thread only when the edge's reading would come before its own next wake-up: a burst of short windows
  // costs the JS thread no futex call each.
  double due =
      std::isnan(last_device_ms_) ? now : std::max(now, last_device_ms_ + plan_.edge_spacing_ms[gpuwin::kKindDevice]);
  if (due + 0.2 < wake_at_ms_) {
    wake_at_ms_ = due;
    cv_.notify_one();
  }
}

void GpuSampler::ReplanLocked() {
  double n = static_cast<double>(cache_.size());
  gpuwin::ScheduleInput in =
      gpuwin::DefaultSchedule(intervals_.empty() ? kIdleIntervalMs : std::max(kMinDeviceMs, intervals_.begin()->first));
  // A round: every GPU once (the device readings of all GPUs are one round already).
  for (int k = 0; k < gpuwin::kGpuKinds; k++) {
    double per = gpuwin::PacedCostMs(costs_[k], kPriorCostMs[k] * (k == gpuwin::kKindDevice ? n : 1),
                                     gpuwin::kThreadClockStepMs);
    in.cost_ms[k] = k == gpuwin::kKindDevice ? per : per * n;
  }
  in.budget = kBudget;
  // The energy model's bound on the gap between readings applies where there is energy to model (not on MIG slices).
  bool energy = false;
  for (const auto& d : info_.devices) energy = energy || !d.mig;
  if (!energy) in.cover_ms = 0;
  plan_ = gpuwin::PlanSchedule(in);
  plan_dirty_ = false;
}

double GpuSampler::ProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, int* reason) const {
  gpuwin::Attribution a = gpuwin::AttributeProcessBytes(pl, pids, self_pid_, info_.pid_match);
  *reason = a.reason;
  return a.bytes;
}

void GpuSampler::TimelineLocked(uint64_t id, double* process_bytes, double* util_percent) {
  *process_bytes = *util_percent = NAN;
  auto it = windows_.find(id);
  if (it == windows_.end()) return;
  Window& w = it->second;
  // The largest reading since the last tick (device readings come at the window's pace, or slower when stretched:
  // then the last one is held).
  if (w.shared) {
    if (!w.based) return;
    double m = self_sum_.Since(w.tl_num);
    *process_bytes = !std::isnan(m) ? m : self_sum_last_num_ >= w.base_num ? self_sum_last_ : NAN;
    w.tl_num = device_num_;
  } else {
    *process_bytes = !std::isnan(w.tl_max) ? w.tl_max : w.tl_last;
    w.tl_max = NAN;
  }
  double sum = 0;
  int n = 0;
  for (size_t i = 0; i < w.gpu.size(); i++) {
    double u = w.shared ? ViewLocked(w, i).util_last : w.gpu[i].util_last;
    if (!std::isnan(u)) {
      sum += u;
      n++;
    }
  }
  if (n > 0) *util_percent = sum / n;
}

void GpuSampler::FillLocked(uint64_t id, double now, double* out, size_t len) {
  auto it = windows_.find(id);
  static const Window kEmpty = [] {
    Window w;
    w.shared = false;  // never registered (opened while the GPU was off): nothing, not every shared figure kept
    return w;
  }();
  const Window& w = it != windows_.end() ? it->second : kEmpty;
  last_eval_ms_ = std::max(last_eval_ms_, now);
  const gpuwin::Schedule& plan = plan_;
  bool gpu = !cache_.empty();
  out[kWinGpuSamples] = SamplesLocked(w);
  out[kWinGpuIntervalMs] = gpu ? plan.period_ms[gpuwin::kKindDevice] : NAN;
  out[kWinGpuProcessIntervalMs] = gpu ? plan.period_ms[gpuwin::kKindDevice] : NAN;
  out[kWinGpuEnergyIntervalMs] = gpu ? plan.period_ms[gpuwin::kKindEnergy] : NAN;
  out[kWinGpuProcessUtilIntervalMs] = gpu ? plan.period_ms[gpuwin::kKindProcessUtil] : NAN;
  out[kWinGpuStretched] = gpu ? plan.stretched : 0;
  double hang = std::isnan(poll_started_ms_) ? 0 : now - poll_started_ms_;
  out[kWinGpuStaleMs] = hang > kHangMs ? hang : 0;
  size_t n = len > kWindowSlots ? std::min(cache_.size(), (len - kWindowSlots) / kGpuWindowSlots) : 0;
  for (size_t i = 0; i < n; i++) {
    double* g = out + kWindowSlots + i * kGpuWindowSlots;
    const Cache& c = cache_[i];
    PerGpu gw = ViewLocked(w, i);
    bool mig = i < info_.devices.size() && info_.devices[i].mig;
    // Energy: E(now) − E(open), while E has a source and a recent reading to integrate from.
    const gpuwin::EnergyModel& m = c.energy;
    double energy = NAN;
    int energy_reason = gpuwin::kEnergyOk;
    if (mig) {
      energy_reason = gpuwin::kEnergyMig;
    } else if (std::isnan(gw.e_open) || !m.defined() || now - m.last_ms() > gpuwin::EnergyModel::kMaxGapMs) {
      energy_reason = gpuwin::kEnergyNotSampled;
    } else if (!gw.source_at_open || !m.has_source() || m.no_source() != gw.no_source_open) {
      energy_reason = gpuwin::kEnergyNoSource;
    } else {
      energy = std::max(0.0, m.At(now) - gw.e_open);
      if (m.backwards() != gw.backwards_open) energy_reason = gpuwin::kEnergyCounterBackwards;
    }
    // Process memory, three states: bytes seen; 0 after readings that looked while the processes lived; null.
    bool process_known = gw.process_samples > 0 || !std::isnan(gw.process_peak);
    int process_reason = process_known                                             ? nvml::kProcOk
                         : gw.list_reads > 0 && gw.process_reason != nvml::kProcOk ? gw.process_reason
                                                                                   : nvml::kProcNotSampled;
    // Accounting mode: the driver's own high-water mark of this process, exact where it rose inside the window.
    double acct = w.pids.empty() && info_.pid_match == nvml::kPidsHost && gw.samples > 0
                      ? gpuwin::AccountingPeak(gw.acct_base, gw.acct_end)
                      : NAN;
    bool from_acct = !std::isnan(acct) && process_known;
    double process_peak = process_known ? (std::isnan(gw.process_peak) ? 0 : gw.process_peak) : NAN;
    g[kGwMemoryUsedPeakBytes] = gw.samples > 0 ? gw.memory_used_peak : NAN;
    g[kGwProcessMemoryPeakBytes] = from_acct ? std::max(acct, process_peak) : process_peak;
    g[kGwProcessMemoryEndBytes] = process_known ? gw.process_end : NAN;
    g[kGwEnergyJoules] = energy;
    g[kGwUtilizationAvgPercent] = gw.util_n > 0 ? gw.util_sum / gw.util_n : NAN;
    g[kGwProcessReason] = process_reason;
    g[kGwDeviceError] = gw.device_error;
    g[kGwEnergyReason] = energy_reason;
    g[kGwProcessPeakFromAccounting] = from_acct ? 1 : 0;
    // The mean of the driver's samples. None: null, also after a read inside the window (it covers the window
    // only up to that read, and the driver has samples only of processes that ran kernels): the error slot then
    // says 0 (read, no sample), -1 (not read inside the window) or the call's error.
    g[kGwProcessUtilSmPercent] = gw.putil.n > 0 ? gw.putil.sm_sum / gw.putil.n : NAN;
    g[kGwProcessUtilMemPercent] = gw.putil.n > 0 ? gw.putil.mem_sum / gw.putil.n : NAN;
    g[kGwProcessUtilError] = gw.putil.n > 0 ? 0 : (mig ? nvml::kErrorNotSupported : gw.putil_error);
    g[kGwPowerSource] = gw.power_source;
    g[kGwProcessSamples] = gw.process_samples;
    g[kGwSamples] = gw.samples;
    g[kGwProcessUtilSamples] = gw.putil.n;
  }
  for (size_t i = kWindowSlots + n * kGpuWindowSlots; i < len; i++) out[i] = NAN;
}

size_t GpuSampler::ReadCacheLocked(double* out, size_t len) {
  size_t n = std::min(cache_.size(), len / kGpuSnapshotSlots);
  double now = proc::MonotonicMs();
  double oldest = 0;
  for (size_t i = 0; i < n; i++) {
    const Cache& c = cache_[i];
    const nvml::DeviceReading& r = c.reading;
    double* g = out + i * kGpuSnapshotSlots;
    auto v = [](double x) { return x >= 0 ? x : NAN; };
    g[kGsMemoryUsedBytes] = v(r.memory_used_bytes);
    g[kGsMemoryTotalBytes] = v(r.memory_total_bytes);
    g[kGsProcessMemoryBytes] = c.self_process_bytes;
    g[kGsUtilizationPercent] = v(r.utilization_percent);
    g[kGsPowerWatts] = v(r.power_watts);
    // E up to the last reading (no extrapolation here: this does not fix E's value at now, see last_eval_ms_).
    g[kGsEnergyJoules] = c.energy.defined() && c.energy.has_source() ? c.energy.At(c.energy.last_ms()) : NAN;
    g[kGsAgeMs] = std::isnan(c.t_ms) ? NAN : now - c.t_ms;
    g[kGsProcessReason] = c.self_reason;
    g[kGsPowerSource] = r.power_source;
    if (!std::isnan(c.t_ms)) oldest = std::max(oldest, now - c.t_ms);
  }
  for (size_t i = n * kGpuSnapshotSlots; i < len; i++) out[i] = NAN;
  if (n > 0 && windows_.empty() && oldest > kIdleRefreshMs && now - last_refresh_request_ms_ > kIdleRefreshMs) {
    last_refresh_request_ms_ = now;
    RequestEdgeLocked(now);
  }
  return n;
}

bool GpuSampler::WaitDetection(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return detected_cv_.wait_for(lock, timeout, [this] { return state_ != GpuState::kPending; });
}

void GpuSampler::ProbePidsLocked(std::vector<uint32_t>* out) const {
  out->clear();
  for (const Window* w : own_) {
    const auto& pids = w->pids;
    for (size_t k = 0; k < pids.size() && k < kProbePidsPerWindow; k++) out->push_back(pids[k]);
  }
  std::sort(out->begin(), out->end());
  out->erase(std::unique(out->begin(), out->end()), out->end());
}

void GpuSampler::AcctBase(PerGpu& g, const Window& w, const Cache& c, const nvml::DeviceReading& r) {
  if (g.acct_base_set) return;
  // The accounting maximum before the window: the previous reading's, when it was taken close to the window's
  // opening and succeeded; else this reading's (a rise before it is then not attributed to the window:
  // conservative); when this one failed too, the next reading's. A failed read is never a base of 0: the lifetime
  // maximum would then count as a rise.
  bool prev_close = !std::isnan(c.t_ms) && c.t_ms >= w.open_ms - 2 * std::max(w.interval_ms, 20.0);
  if (prev_close && c.reading.accounting_max_bytes >= 0) {
    g.acct_base = c.reading.accounting_max_bytes;
    g.acct_base_set = true;
  } else if (r.accounting_max_bytes >= 0) {
    g.acct_base = r.accounting_max_bytes;
    g.acct_base_set = true;
  }
}

void GpuSampler::ApplyDeviceLocked(double t_start, double t_end, std::vector<nvml::DeviceReading>& readings,
                                   const std::vector<uint32_t>& alive) {
  // A reading counts for the windows open when it started; one opened while it was in flight (or after) gets
  // nothing from it but what its energy model gives from then on. Its number: device_num_.
  double t = EvalTimeLocked((t_start + t_end) / 2);
  uint64_t num = device_num_;
  // The windows whose first reading this is: their base is taken before it counts. Only they, the windows of their
  // own and those still missing an accounting base are visited: the work does not grow with the shared windows.
  basing_.clear();
  for (size_t k = 0; k < fresh_.size();) {
    Window* w = fresh_[k];
    if (w->open_ms > t_start) {
      k++;
      continue;
    }
    ListRemove(fresh_, &Window::fresh_at, *w);  // the last one moves to k
    basing_.push_back(w);
  }
  for (Window* w : basing_)
    if (w->gpu.size() < cache_.size()) w->gpu.resize(cache_.size());
  for (Window* w : own_) {
    if (w->open_ms > t_start) continue;
    w->samples++;
    if (w->gpu.size() < cache_.size()) w->gpu.resize(cache_.size());
  }
  // Whether a window's processes were alive at the reading: alive after it means alive during it.
  auto lived = [&](const Window& w) {
    if (w.pids.empty()) return true;  // this process
    for (size_t k = 0; k < w.pids.size() && k < kProbePidsPerWindow; k++)
      if (std::binary_search(alive.begin(), alive.end(), w.pids[k])) return true;
    return false;
  };
  tl_sum_.assign(own_.size(), NAN);
  double self_sum = 0;
  bool self_any = false;
  for (size_t i = 0; i < readings.size() && i < cache_.size() && i < shared_.size(); i++) {
    Cache& c = cache_[i];
    Shared& sh = shared_[i];
    nvml::DeviceReading& r = readings[i];
    c.energy.Power(t, r.power_watts);
    c.self_process_bytes = ProcessBytes(r.processes, {}, &c.self_reason);
    for (Window* w : basing_) {
      PerGpu& g = w->gpu[i];
      if (std::isnan(g.e_open) && c.energy.defined()) {
        // No reading before the window opened: E from its first one, back to the opening at this reading's power.
        double p = r.power_watts >= 0 ? r.power_watts : 0;
        g.e_open = c.energy.At(t) - p * std::max(0.0, t - w->open_ms) / 1000.0;
        g.backwards_open = c.energy.backwards();
        g.no_source_open = c.energy.no_source();
        g.source_at_open = c.energy.has_source();
      }
      g.base_util_sum = sh.util_sum;
      g.base_util_n = sh.util_n;
      g.base_self_ok = sh.self_ok;
      if (w->shared) AcctBase(g, *w, c, r);
    }
    for (Window* w : acct_pending_) AcctBase(w->gpu[i], *w, c, r);
    // What every shared window reads (this process's figures).
    if (r.memory_used_bytes >= 0) sh.memory_used.Add(num, r.memory_used_bytes);
    if (r.utilization_percent >= 0) {
      sh.util_sum += r.utilization_percent;
      sh.util_n++;
      sh.util_last = r.utilization_percent;
    }
    if (c.self_reason == nvml::kProcOk) {
      sh.self_ok++;
      sh.self_bytes.Add(num, c.self_process_bytes);
      sh.self_end = c.self_process_bytes;
      self_sum += c.self_process_bytes;
      self_any = true;
    }
    if (r.accounting_max_bytes >= 0) {
      sh.acct_end = r.accounting_max_bytes;
      sh.acct_end_num = num;
    }
    // Windows of their own (processes of a tree, a command): their pids in this reading.
    for (size_t k = 0; k < own_.size(); k++) {
      Window& w = *own_[k];
      if (w.open_ms > t_start) continue;
      PerGpu& g = w.gpu[i];
      g.samples++;
      g.device_error = r.device_error;
      g.power_source = r.power_source;
      if (r.memory_used_bytes >= 0)
        g.memory_used_peak =
            std::isnan(g.memory_used_peak) ? r.memory_used_bytes : std::max(g.memory_used_peak, r.memory_used_bytes);
      if (r.utilization_percent >= 0) {
        g.util_sum += r.utilization_percent;
        g.util_n++;
        g.util_last = r.utilization_percent;
      }
      g.list_reads++;
      gpuwin::Attribution a = gpuwin::AttributeProcessBytes(r.processes, w.pids, self_pid_, info_.pid_match);
      if (a.reason == nvml::kProcOk && (a.found > 0 || lived(w))) {
        // Seen, or looked for while alive and in no list (absence is 0 here): a sample of the process.
        g.process_samples++;
        g.process_peak = std::isnan(g.process_peak) ? a.bytes : std::max(g.process_peak, a.bytes);
        g.process_end = a.bytes;
        g.process_reason = nvml::kProcOk;
        tl_sum_[k] = (std::isnan(tl_sum_[k]) ? 0 : tl_sum_[k]) + a.bytes;
      } else if (a.reason == nvml::kProcOk) {
        g.process_end = 0;  // gone: its memory is released (not a sample: it was not looked for while it lived)
      } else {
        g.process_reason = a.reason;
      }
      AcctBase(g, w, c, r);
      if (r.accounting_max_bytes >= 0) g.acct_end = r.accounting_max_bytes;
    }
    c.reading = std::move(r);
    c.t_ms = t_end;
  }
  device_num_++;
  if (self_any) {
    self_sum_.Add(num, self_sum);
    self_sum_last_ = self_sum;
    self_sum_last_num_ = num;
  }
  for (size_t k = 0; k < own_.size(); k++) {
    Window& w = *own_[k];
    double v = tl_sum_[k];
    if (std::isnan(v)) continue;
    w.tl_max = std::isnan(w.tl_max) ? v : std::max(w.tl_max, v);
    w.tl_last = v;
  }
  for (Window* w : basing_) {
    if (w->shared) w->base_it = bases_.insert(num);  // first: a throw leaves the window unbased, as it was
    w->based = true;
    w->base_num = w->tl_num = num;
    if (!w->shared) continue;
    // An accounting base still unknown on a GPU in accounting mode: the next readings are tried.
    for (size_t i = 0; i < w->gpu.size() && i < info_.devices.size(); i++)
      if (info_.devices[i].accounting == 1 && !w->gpu[i].acct_base_set) ListAdd(acct_pending_, &Window::acct_at, *w);
  }
  for (size_t k = 0; k < acct_pending_.size();) {
    Window* w = acct_pending_[k];
    bool done = true;
    for (size_t i = 0; i < w->gpu.size() && i < info_.devices.size(); i++)
      done = done && (info_.devices[i].accounting != 1 || w->gpu[i].acct_base_set);
    if (done) {
      ListRemove(acct_pending_, &Window::acct_at, *w);
    } else {
      k++;
    }
  }
  DropUnneededLocked();
}

void GpuSampler::ApplyEnergyLocked(size_t i, double t, double mj) {
  if (i >= cache_.size()) return;
  cache_[i].energy.Counter(EvalTimeLocked(t), mj);
}

void GpuSampler::ApplyProcessUtilLocked(size_t i, int error, std::vector<nvml::ProcessUtil>& samples) {
  if (i >= cache_.size() || i >= shared_.size()) return;
  Shared& sh = shared_[i];
  sh.putil_reads++;
  if (error != 0) {
    sh.putil_error = error;
    sh.putil_error_read = sh.putil_reads;
    for (Window* w : own_) {
      if (w->gpu.size() < cache_.size()) w->gpu.resize(cache_.size());
      w->gpu[i].putil_error = error;
    }
    return;
  }
  // One sort per read; then each window's pids are found by binary search.
  gpuwin::SortProcessUtilization(&samples);
  // This process's samples, in time order after those already kept (a wall clock stepped back is held at the last
  // time, so that the order holds).
  gpuwin::GroupProcessUtilization(samples, {}, self_pid_, -INFINITY, INFINITY, &util_scratch_);
  if (!open_epochs_.empty()) {
    for (const auto& u : util_scratch_) {
      unsigned long long ts =
          sh.putil.empty() ? u.timestamp_us : std::max(u.timestamp_us, sh.putil.back().timestamp_us);
      sh.putil.push_back(PutilMark{ts, sh.putil_sm, sh.putil_mem, sh.putil_n, sh.putil_reads});
      sh.putil_sm += u.sm;
      sh.putil_mem += u.mem;
      sh.putil_n++;
    }
    if (sh.putil.size() > kMaxPutilMarks) {
      // Thin the older half (a window that opened among them misses samples; it never gets one from before it).
      size_t half = sh.putil.size() / 2;
      std::deque<PutilMark> kept;
      for (size_t k = 0; k < sh.putil.size(); k++)
        if (k >= half || k % 2 == 1) kept.push_back(sh.putil[k]);
      sh.putil.swap(kept);
    }
  }
  double now_us = proc::EpochMs() * 1000.0;
  for (Window* w : own_) {
    if (w->gpu.size() < cache_.size()) w->gpu.resize(cache_.size());
    PerGpu& g = w->gpu[i];
    gpuwin::AddProcessUtilization(samples, w->pids, self_pid_, w->open_epoch_us, now_us, &g.putil, &util_scratch_);
    if (g.putil_error < 0) g.putil_error = 0;  // read inside the window
  }
  DropUnneededLocked();
}

void GpuSampler::Run(uint64_t gen, std::unique_lock<std::mutex>& lock) {
  self_pid_ = proc::SelfPid();
  uint32_t self_pid = self_pid_;
  nvml::Env env = env_;  // L8: written before this thread existed
  slow_call_started_ms_ = proc::MonotonicMs();
  detecting_ = true;
  lock.unlock();
  bool ok = gpus_.Detect(env, self_pid);
  if (gpus_.library().loaded()) host_.GpuLibraryLoaded();
  lock.lock();
  detecting_ = false;
  slow_call_started_ms_ = NAN;
  // Published only by the thread still wanted: one stopped meanwhile (its last environment ended during detection)
  // must not overwrite what a stop or a later thread set.
  bool wanted = host_.GpuThreadWanted(gen);
  ok = ok && wanted;
  if (wanted) {
    info_.state = ok ? GpuState::kReady : GpuState::kUnavailable;
    info_.reason = ok ? "" : gpus_.reason();
    info_.reason_code = ok ? "" : gpus_.reason_code();
    info_.library = gpus_.library().path();
    info_.driver_version = gpus_.driver_version();
    info_.nvml_version = gpus_.nvml_version();
    info_.devices = ok ? gpus_.devices() : std::vector<nvml::DeviceStatic>();
    info_.own_pid_namespace = gpus_.own_pid_namespace();
    info_.process_list_version = gpus_.library().api().process_list_version;
    info_.process_entry_stride = gpus_.process_entry_stride();
    info_.pid_match = gpus_.pid_match();
    info_.device_order = gpus_.device_order();
    info_.device_order_certain = gpus_.device_order_certain();
    info_.device_order_note = gpus_.device_order_note();
    cache_.assign(ok ? gpus_.devices().size() : 0, Cache());
    for (auto& c : costs_) c.Reset();
    ResetWindowsLocked();
    state_ = info_.state;
    last_device_ms_ = NAN;
    ReplanLocked();
    edge_pending_ = ok;  // a first reading right away, so snapshot() has values early
    edge_ms_ = proc::MonotonicMs();
    detected_cv_.notify_all();
  }
  std::vector<nvml::DeviceReading> readings;
  std::vector<uint32_t> probe, alive, dead_pids, still_dead;
  std::vector<nvml::ProcessUtil> putil;
  // What a reading costs is all the thread's CPU since the previous one ended: its calls and their use, and the
  // waking up for it (timer, futex, the lock). The budget is the thread's whole CPU.
  double cpu0 = proc::SelfThreadCpuMs();
  if (ok) {
    // The energy and per-process utilization readings of the GPUs are spread over their period.
    double now = proc::MonotonicMs();
    for (size_t i = 0; i < cache_.size(); i++) {
      double frac = static_cast<double>(i) / static_cast<double>(cache_.size());
      cache_[i].energy_due_ms = now + frac * plan_.period_ms[gpuwin::kKindEnergy];
      cache_[i].putil_due_ms = now + frac * plan_.period_ms[gpuwin::kKindProcessUtil];
    }
  }
  // Without a usable GPU the thread ends here: nothing is left for it to do, and every extra thread makes
  // getrusage(RUSAGE_SELF) (which sums over threads) a little slower.
  while (ok && host_.GpuThreadWanted(gen)) {
    bool idle = windows_.empty();
    if (idle && !edge_pending_) {
      wake_at_ms_ = INFINITY;
      host_.GpuThreadParking(gen);
      cv_.wait(lock, [this, gen] { return !host_.GpuThreadWanted(gen) || !windows_.empty() || edge_pending_; });
      continue;
    }
    if (plan_dirty_) ReplanLocked();
    double now = proc::MonotonicMs();
    const gpuwin::Schedule& plan = plan_;
    // Device readings at their period while a window is open, and for an edge (a window opening or closing, an old
    // snapshot) as soon as the budget allows.
    double device_due = idle                          ? INFINITY
                        : std::isnan(last_device_ms_) ? now
                                                      : last_device_ms_ + plan.period_ms[gpuwin::kKindDevice];
    if (edge_pending_) {
      double edge = std::isnan(last_device_ms_)
                        ? edge_ms_
                        : std::max(edge_ms_, last_device_ms_ + plan.edge_spacing_ms[gpuwin::kKindDevice]);
      device_due = std::min(device_due, edge);
    }
    // The GPU whose energy or per-process utilization reading is the most overdue (one GPU per pass, so that a
    // device round never waits behind more than one slow call). Only while a window is open.
    size_t pick = SIZE_MAX;
    int pick_kind = -1;
    double pick_due = INFINITY;
    if (!idle) {
      for (size_t i = 0; i < cache_.size(); i++) {
        Cache& c = cache_[i];
        double e_due = c.energy_due_ms;
        if (c.energy_edge && c.energy_read_once)
          e_due = std::min(e_due, std::max(edge_ms_, c.energy_due_ms - plan.period_ms[gpuwin::kKindEnergy] +
                                                         plan.edge_spacing_ms[gpuwin::kKindEnergy]));
        if (e_due < pick_due) {
          pick_due = e_due;
          pick = i;
          pick_kind = gpuwin::kKindEnergy;
        }
        if (c.putil_due_ms < pick_due) {
          pick_due = c.putil_due_ms;
          pick = i;
          pick_kind = gpuwin::kKindProcessUtil;
        }
      }
    }
    double next = std::min(device_due, pick_due);
    if (now < next) {
      wake_at_ms_ = next;
      host_.GpuThreadParking(gen);
      cv_.wait_until(lock, DeadlineIn(next - now));
      continue;
    }
    wake_at_ms_ = -INFINITY;  // busy: an edge needs no wake-up
    if (host_.TakeGpuThrowForTest()) throw std::bad_alloc();
    size_t n = cache_.size();
    bool device = device_due <= now;
    if (device) {
      edge_pending_ = false;
      ProbePidsLocked(&probe);
    }
    double putil_period_ms = plan.period_ms[gpuwin::kKindProcessUtil];
    poll_started_ms_ = now;
    lock.unlock();
    double t0 = proc::MonotonicMs();
    double mj = -1;
    int putil_error = 0;
    if (device) {
      readings.resize(n);
      for (size_t i = 0; i < n; i++) gpus_.ReadDevice(i, &readings[i]);
      // A pid in a process list holds GPU memory: alive, no /proc read needed. One found gone stays gone (a process
      // that reuses its pid is not the one the window follows). The others are probed.
      alive.clear();
      still_dead.clear();
      for (uint32_t pid : probe) {
        bool listed = false;
        for (size_t i = 0; i < n && !listed; i++) {
          const auto& e = readings[i].processes.entries;
          auto it = std::lower_bound(e.begin(), e.end(), std::make_pair(pid, 0ULL));
          listed = it != e.end() && it->first == pid;
        }
        if (listed) {
          alive.push_back(pid);
        } else if (std::binary_search(dead_pids.begin(), dead_pids.end(), pid) || !PidAlive(pid)) {
          still_dead.push_back(pid);
        } else {
          alive.push_back(pid);
        }
      }
      dead_pids.swap(still_dead);  // only the pids still probed (sorted, as probe is)
    } else if (pick_kind == gpuwin::kKindEnergy) {
      mj = gpus_.ReadEnergyMj(pick);
    } else {
      double now_us = proc::EpochMs() * 1000.0;
      putil_error = gpus_.ReadProcessUtilization(pick, &putil, now_us, now_us - putil_period_ms * 1000.0);
    }
    double t1 = proc::MonotonicMs();
    lock.lock();
    poll_started_ms_ = NAN;
    if (!host_.GpuThreadWanted(gen)) break;  // stopped (or abandoned) meanwhile: the cache may no longer be ours
    if (device) {
      last_device_ms_ = t0;
      ApplyDeviceLocked(t0, t1, readings, alive);
      double cpu1 = proc::SelfThreadCpuMs();
      costs_[gpuwin::kKindDevice].Add(std::max(0.0, cpu1 - cpu0));
      cpu0 = cpu1;
      ReplanLocked();
    } else if (pick < cache_.size()) {
      Cache& c = cache_[pick];
      if (pick_kind == gpuwin::kKindEnergy) {
        ApplyEnergyLocked(pick, (t0 + t1) / 2, mj);
      } else {
        ApplyProcessUtilLocked(pick, putil_error, putil);
      }
      double cpu1 = proc::SelfThreadCpuMs();
      double cpu = std::max(0.0, cpu1 - cpu0);
      cpu0 = cpu1;
      if (pick_kind == gpuwin::kKindEnergy) {
        if (c.energy_read_once) costs_[gpuwin::kKindEnergy].Add(cpu);  // each GPU's first call is not the rule
        c.energy_read_once = true;
        c.energy_edge = false;
        ReplanLocked();
        c.energy_due_ms = t0 + plan_.period_ms[gpuwin::kKindEnergy];
      } else {
        if (c.putil_read_once) costs_[gpuwin::kKindProcessUtil].Add(cpu);
        c.putil_read_once = true;
        ReplanLocked();
        c.putil_due_ms = t0 + plan_.period_ms[gpuwin::kKindProcessUtil];
      }
    }
  }
  if (host_.GpuThreadWanted(gen)) {  // a stop cleared it already (StoppedLocked)
    cache_.clear();
    ResetWindowsLocked();
  }
  ShutdownLocked(lock);
}

void GpuSampler::ShutdownLocked(std::unique_lock<std::mutex>& lock) {
  // Once exit has begun no new NVML call is made: the driver's own exit handlers may be running (sampler.h L3), and
  // the process's end releases what NVML holds.
  if (host_.GpuProcessExiting()) return;
  bool unload = host_.GpuUnloadOnStop();
  slow_call_started_ms_ = proc::MonotonicMs();
  lock.unlock();
  gpus_.Shutdown(unload);
  lock.lock();
  slow_call_started_ms_ = NAN;
}

}  // namespace taskmeter
