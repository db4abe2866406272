#include "gpu_sampler.h"

#include <algorithm>
#include <new>

#include "proc/proc.h"
#include "sampler.h"

namespace taskmeter {

namespace {

constexpr double kMinGpuIntervalMs = 20;
// The GPU thread may spend at most 1% of a core in NVML, split between the cheap readings (device memory, power,
// energy, accounting: ≤ 0.2%, so a round costing c ms repeats at most every 500 × c ms) and the expensive process
// lists (≤ 0.8%: every 125 × their cost). Each kind is paced by its own measured cost, so slow process lists never
// slow the device-memory readings down.
constexpr double kCheapCostFactor = 500;
constexpr double kListCostFactor = 125;
// With no window open, snapshot() asks for a fresh GPU reading when the cache is older than this.
constexpr double kIdleRefreshMs = 500;
constexpr double kIdleIntervalMs = 1000;

std::chrono::steady_clock::time_point DeadlineIn(double ms) {
  return std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0) + 1);
}

}  // namespace

void GpuSampler::SetDisabledLocked() {
  state_ = GpuState::kDisabled;
  info_ = GpuInfoSnapshot{GpuState::kDisabled, "disabled by TASKMETER_DISABLE_GPU", "", "", "", {}, false, 0, 0,
                          "GPU_DISABLED"};
  cache_.clear();
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
  for (auto& kv : windows_) kv.second.gpu.clear();
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

void GpuSampler::ThreadFailedLocked(const std::string& why, bool current) {
  if (!current) return;
  state_ = GpuState::kUnavailable;
  info_.state = GpuState::kUnavailable;
  info_.reason = why;
  info_.reason_code = "GPU_THREAD_FAILED";
  info_.devices.clear();
  cache_.clear();
  for (auto& kv : windows_) kv.second.gpu.clear();
}

void GpuSampler::ClearInFlightLocked() {
  poll_started_ms_ = NAN;
  slow_call_started_ms_ = NAN;
  parked_ = false;
  detected_cv_.notify_all();
}

double GpuSampler::HungAtLocked(double now) const {
  if (!std::isnan(slow_call_started_ms_)) return slow_call_started_ms_ + kSlowCallHangMs;
  if (!std::isnan(poll_started_ms_)) return poll_started_ms_ + kHangMs;
  return now + kHangMs;
}

void GpuSampler::OpenLocked(uint64_t id, double open_ms, double interval_ms) {
  Window& w = windows_[id];
  w.open_ms = open_ms;
  w.interval_ms = interval_ms;
  w.samples = 0;
  w.pids.clear();
  w.gpu.assign(cache_.size(), PerGpu());
  if (!cache_.empty() && parked_) cv_.notify_one();  // it parks while no window is open
}

void GpuSampler::SetPidsLocked(uint64_t id, std::vector<uint32_t> pids) {
  auto it = windows_.find(id);
  if (it != windows_.end()) it->second.pids = std::move(pids);
}

void GpuSampler::CloseLocked(uint64_t id) {
  windows_.erase(id);
}

double GpuSampler::IntervalLocked() const {
  double base = INFINITY;
  for (const auto& kv : windows_) base = std::min(base, kv.second.interval_ms);
  if (!std::isfinite(base)) base = kIdleIntervalMs;
  return std::max({base, kMinGpuIntervalMs, cost_ms_ * kCheapCostFactor});
}

double GpuSampler::ProcessIntervalLocked() const {
  return std::max(IntervalLocked(), list_cost_ms_ * kListCostFactor);
}

double GpuSampler::ProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, int* reason) const {
  gpuwin::Attribution a = gpuwin::AttributeProcessBytes(pl, pids, self_pid_, info_.pid_match);
  *reason = a.reason;
  return a.bytes;
}

void GpuSampler::TimelineLocked(uint64_t id, double* process_bytes, double* util_percent) {
  auto it = windows_.find(id);
  static const std::vector<uint32_t> kNone;
  const std::vector<uint32_t>& pids = it != windows_.end() ? it->second.pids : kNone;
  double gpu_bytes = NAN, util_sum = 0;
  int util_n = 0;
  for (const auto& c : cache_) {
    if (std::isnan(c.t_ms)) continue;
    int reason;
    double b = ProcessBytes(c.processes, pids, &reason);
    if (!std::isnan(b)) gpu_bytes = (std::isnan(gpu_bytes) ? 0 : gpu_bytes) + b;
    if (c.reading.utilization_percent >= 0) {
      util_sum += c.reading.utilization_percent;
      util_n++;
    }
  }
  *process_bytes = gpu_bytes;
  *util_percent = util_n > 0 ? util_sum / util_n : NAN;
}

void GpuSampler::FillLocked(uint64_t id, double now, double* out, size_t len) {
  auto it = windows_.find(id);
  static const Window kEmpty{};
  const Window& w = it != windows_.end() ? it->second : kEmpty;
  out[kWinGpuSamples] = w.samples;
  out[kWinGpuIntervalMs] = cache_.empty() ? NAN : IntervalLocked();
  out[kWinGpuProcessIntervalMs] = cache_.empty() ? NAN : ProcessIntervalLocked();
  double hang = std::isnan(poll_started_ms_) ? 0 : now - poll_started_ms_;
  out[kWinGpuStaleMs] = hang > kHangMs ? hang : 0;
  bool from_cache = false;
  size_t n = std::min(cache_.size(), (len - kWindowSlots) / kGpuWindowSlots);
  for (size_t i = 0; i < n; i++) {
    double* g = out + kWindowSlots + i * kGpuWindowSlots;
    const Cache& c = cache_[i];
    PerGpu gw = i < w.gpu.size() ? w.gpu[i] : PerGpu();
    bool mig = i < info_.devices.size() && info_.devices[i].mig;
    double power = c.reading.power_watts;
    double fresh_limit = std::max(1000.0, 2 * IntervalLocked());
    // Process memory from the latest list when no list reading fell inside the window (lists are paced by their
    // cost, so a window can be shorter than their interval).
    auto process_from_cache = [&]() {
      if (std::isnan(c.processes_t_ms) || now - c.processes_t_ms > std::max(1000.0, 2 * ProcessIntervalLocked()))
        return;
      int reason;
      double pb = ProcessBytes(c.processes, w.pids, &reason);
      gw.process_peak = gw.process_end = pb;
      gw.process_reason = reason;
      double sm, mem;
      if (c.process_util_error == 0 && gpuwin::ProcessUtilization(c.process_util, w.pids, self_pid_, &sm, &mem)) {
        gw.putil_sm_sum = sm;
        gw.putil_mem_sum = mem;
        gw.putil_n = 1;
      } else if (c.process_util_error > 0) {
        gw.putil_error = c.process_util_error;
      }
    };
    if (w.samples == 0) {
      // No reading fell inside the window (it was short): report the latest reading if it is recent.
      if (!std::isnan(c.t_ms) && now - c.t_ms <= fresh_limit) {
        from_cache = true;
        gw.memory_used_peak = c.reading.memory_used_bytes >= 0 ? c.reading.memory_used_bytes : NAN;
        process_from_cache();
        gw.device_error = c.reading.device_error;
        gw.power_source = c.reading.power_source;
        if (c.reading.utilization_percent >= 0) {
          gw.util_sum = c.reading.utilization_percent;
          gw.util_n = 1;
        }
        gw.energy_j = 0;
        gw.energy_valid = power >= 0;
        if (!gw.energy_valid) gw.energy_reason = gpuwin::kEnergyNoSource;
        if (power >= 0) gw.energy_j = power * std::max(0.0, now - w.open_ms) / 1000.0;
      } else {
        gw.energy_valid = false;
      }
    } else {
      if (gw.process_samples == 0) process_from_cache();
      if (power >= 0 && !std::isnan(last_poll_ms_)) {
        // The stretch since the last reading, at the last power draw.
        gw.energy_j += power * std::max(0.0, now - std::max(last_poll_ms_, w.open_ms)) / 1000.0;
      }
    }
    if (mig) {
      gw.energy_valid = false;
      gw.energy_reason = gpuwin::kEnergyMig;
    }
    // Accounting mode: the driver's own high-water mark of this process, exact where it rose inside the window.
    double acct =
        w.pids.empty() && info_.pid_match == nvml::kPidsHost ? gpuwin::AccountingPeak(gw.acct_base, gw.acct_end) : NAN;
    bool from_acct = !std::isnan(acct) && gw.process_reason == nvml::kProcOk;
    g[kGwMemoryUsedPeakBytes] = gw.memory_used_peak;
    g[kGwProcessMemoryPeakBytes] =
        from_acct ? std::max(acct, std::isnan(gw.process_peak) ? 0 : gw.process_peak) : gw.process_peak;
    g[kGwProcessMemoryEndBytes] = gw.process_end;
    g[kGwEnergyJoules] = gw.energy_valid ? gw.energy_j : NAN;
    g[kGwUtilizationAvgPercent] = gw.util_n > 0 ? gw.util_sum / gw.util_n : NAN;
    g[kGwProcessReason] = gw.process_reason;
    g[kGwDeviceError] = gw.device_error;
    g[kGwEnergyReason] =
        gw.energy_valid ? gw.energy_reason : (gw.energy_reason ? gw.energy_reason : gpuwin::kEnergyNoSource);
    g[kGwProcessPeakFromAccounting] = from_acct ? 1 : 0;
    g[kGwProcessUtilSmPercent] = gw.putil_n > 0 ? gw.putil_sm_sum / gw.putil_n : NAN;
    g[kGwProcessUtilMemPercent] = gw.putil_n > 0 ? gw.putil_mem_sum / gw.putil_n : NAN;
    g[kGwProcessUtilError] = gw.putil_n > 0 ? 0 : (mig ? nvml::kErrorNotSupported : gw.putil_error);
    g[kGwPowerSource] = gw.power_source;
    g[kGwProcessSamples] = gw.process_samples;
  }
  for (size_t i = kWindowSlots + n * kGpuWindowSlots; i < len; i++) out[i] = NAN;
  out[kWinGpuFromCache] = from_cache ? 1 : 0;
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
    g[kGsEnergyJoules] = c.energy_known ? c.energy_total_j : NAN;
    g[kGsAgeMs] = std::isnan(c.t_ms) ? NAN : now - c.t_ms;
    g[kGsProcessReason] = c.self_reason;
    g[kGsPowerSource] = r.power_source;
    if (!std::isnan(c.t_ms)) oldest = std::max(oldest, now - c.t_ms);
  }
  for (size_t i = n * kGpuSnapshotSlots; i < len; i++) out[i] = NAN;
  if (n > 0 && windows_.empty() && oldest > kIdleRefreshMs && now - last_refresh_request_ms_ > kIdleRefreshMs) {
    last_refresh_request_ms_ = now;
    refresh_requested_ = true;
    cv_.notify_one();
  }
  return n;
}

bool GpuSampler::WaitDetection(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return detected_cv_.wait_for(lock, timeout, [this] { return state_ != GpuState::kPending; });
}

void GpuSampler::ApplyReadingsLocked(double t_prev, double t_start, double t_now,
                                     std::vector<nvml::DeviceReading>& readings) {
  // A reading counts for the windows open when it started (t_start); one opened while it was in flight gets only
  // its share of the energy up to its end (t_now).
  for (auto& kv : windows_) {
    if (kv.second.open_ms <= t_start) kv.second.samples++;
  }
  double cheap_iv = IntervalLocked();
  for (size_t i = 0; i < readings.size() && i < cache_.size(); i++) {
    Cache& c = cache_[i];
    nvml::DeviceReading& r = readings[i];
    // Energy since the previous reading (the device counter, else power integrated; see gpu_window.h).
    double dt = t_now - t_prev;
    bool have_prev = !std::isnan(t_prev) && dt > 0;
    gpuwin::EnergyStep step = gpuwin::StepEnergy(&c.last_counter_mj, r.energy_counter_mj, c.reading.power_watts,
                                                 r.power_watts, dt, have_prev);
    double inc = step.joules;
    if (!have_prev && (r.energy_counter_mj >= 0 || r.power_watts >= 0)) c.energy_known = true;  // 0 J at the first
    if (!std::isnan(inc)) {
      c.energy_total_j += inc;
      c.energy_known = true;
    }
    if (r.has_processes) {
      c.processes = r.processes;
      c.processes_t_ms = t_now;
      c.process_util = r.process_util;
      c.process_util_error = r.process_util_error;
      c.self_process_bytes = ProcessBytes(r.processes, {}, &c.self_reason);
    }
    // The window's share of the energy since the previous reading, up to this reading's end.
    auto add_energy = [&](const Window& w, PerGpu& g) {
      if (have_prev) {
        double frac = gpuwin::WindowShare(t_prev, t_now, w.open_ms);
        if (std::isnan(inc)) {
          g.energy_valid = false;
        } else {
          g.energy_j += inc * frac;
        }
      } else if (r.power_watts >= 0) {
        g.energy_j += r.power_watts * (t_now - w.open_ms) / 1000.0;
      } else {
        g.energy_valid = false;
      }
    };
    for (auto& kv : windows_) {
      Window& w = kv.second;
      if (t_now <= w.open_ms) continue;
      if (w.gpu.size() < cache_.size()) w.gpu.resize(cache_.size());
      PerGpu& g = w.gpu[i];
      if (w.open_ms > t_start) {  // opened during the reading: energy only
        add_energy(w, g);
        continue;
      }
      g.device_error = r.device_error;
      g.power_source = r.power_source;
      if (r.memory_used_bytes >= 0)
        g.memory_used_peak =
            std::isnan(g.memory_used_peak) ? r.memory_used_bytes : std::max(g.memory_used_peak, r.memory_used_bytes);
      if (r.has_processes) {
        g.process_samples++;
        int reason;
        double pb = ProcessBytes(r.processes, w.pids, &reason);
        if (!std::isnan(pb)) {
          g.process_peak = std::isnan(g.process_peak) ? pb : std::max(g.process_peak, pb);
          g.process_end = pb;
        } else {
          g.process_end = NAN;
        }
        g.process_reason = reason;
        if (r.process_util_error == 0) {
          double sm, mem;
          if (gpuwin::ProcessUtilization(r.process_util, w.pids, self_pid_, &sm, &mem)) {
            g.putil_sm_sum += sm;
            g.putil_mem_sum += mem;
            g.putil_n++;
          }
        } else if (r.process_util_error > 0) {
          g.putil_error = r.process_util_error;
        }
      }
      if (!g.acct_base_set) {
        // The accounting maximum before the window: the previous reading's, when it was taken close to the window's
        // opening and succeeded; else this reading's (a rise before it is then not attributed to the window:
        // conservative); when this one failed too, the next reading's. A failed read is never a base of 0: the
        // lifetime maximum would then count as a rise.
        bool prev_close = !std::isnan(c.t_ms) && c.t_ms >= w.open_ms - 2 * cheap_iv;
        if (prev_close && c.reading.accounting_max_bytes >= 0) {
          g.acct_base = c.reading.accounting_max_bytes;
          g.acct_base_set = true;
        } else if (r.accounting_max_bytes >= 0) {
          g.acct_base = r.accounting_max_bytes;
          g.acct_base_set = true;
        }
      }
      if (r.accounting_max_bytes >= 0) g.acct_end = r.accounting_max_bytes;
      if (r.utilization_percent >= 0) {
        g.util_sum += r.utilization_percent;
        g.util_n++;
      }
      if (step.reason) g.energy_reason = step.reason;
      add_energy(w, g);
    }
    c.reading = std::move(r);
    c.t_ms = t_now;
  }
}

void GpuSampler::Run(uint64_t gen, std::unique_lock<std::mutex>& lock) {
  self_pid_ = proc::SelfPid();
  uint32_t self_pid = self_pid_;
  nvml::Env env = env_;  // L8: written before this thread existed
  slow_call_started_ms_ = proc::MonotonicMs();
  lock.unlock();
  bool ok = gpus_.Detect(env, self_pid);
  lock.lock();
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
    for (auto& kv : windows_) kv.second.gpu.resize(cache_.size());
    state_ = info_.state;
    last_poll_ms_ = NAN;
    last_list_ms_ = NAN;
    refresh_requested_ = ok;  // a first reading right away, so snapshot() has values early
    detected_cv_.notify_all();
  }
  std::vector<nvml::DeviceReading> readings;
  // Without a usable GPU the thread ends here: nothing is left for it to do, and every extra thread makes
  // getrusage(RUSAGE_SELF) (which sums over threads) a little slower.
  while (ok && host_.GpuThreadWanted(gen)) {
    if (windows_.empty() && !refresh_requested_) {
      parked_ = true;
      host_.GpuThreadParking();
      cv_.wait(lock, [this, gen] { return !host_.GpuThreadWanted(gen) || !windows_.empty() || refresh_requested_; });
      parked_ = false;
      continue;
    }
    double now = proc::MonotonicMs();
    double due = std::isnan(last_poll_ms_) ? now : last_poll_ms_ + IntervalLocked();
    if (refresh_requested_ && windows_.empty()) due = now;
    if (now < due) {
      host_.GpuThreadParking();
      cv_.wait_until(lock, DeadlineIn(due - now));
      continue;
    }
    if (host_.TakeGpuThrowForTest()) throw std::bad_alloc();
    // The process lists at their own pace (their cost can be milliseconds on real drivers), the rest every round.
    bool with_lists =
        std::isnan(last_list_ms_) || refresh_requested_ || now - last_list_ms_ >= ProcessIntervalLocked() - 1;
    refresh_requested_ = false;
    poll_started_ms_ = now;
    size_t n = cache_.size();
    lock.unlock();
    readings.assign(n, nvml::DeviceReading());
    for (size_t i = 0; i < n; i++) gpus_.Read(i, &readings[i], with_lists);
    double t1 = proc::MonotonicMs();
    lock.lock();
    poll_started_ms_ = NAN;
    if (!host_.GpuThreadWanted(gen)) break;  // stopped (or abandoned) meanwhile: the cache may no longer be ours
    double list_ms = 0;
    for (const auto& r : readings) list_ms += r.process_list_ms;
    cheap_costs_.Add(std::max(0.0, t1 - now - list_ms));
    cost_ms_ = cheap_costs_.Ms();
    if (with_lists) {
      list_costs_.Add(list_ms);
      list_cost_ms_ = list_costs_.Ms();
      last_list_ms_ = now;
    }
    double t_prev = last_poll_ms_;
    last_poll_ms_ = t1;
    ApplyReadingsLocked(t_prev, now, t1, readings);
  }
  bool unload = host_.GpuUnloadOnStop();
  cache_.clear();
  slow_call_started_ms_ = proc::MonotonicMs();
  lock.unlock();
  gpus_.Shutdown(unload);
  lock.lock();
  slow_call_started_ms_ = NAN;
}

}  // namespace taskmeter
