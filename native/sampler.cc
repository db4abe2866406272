#include "sampler.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>

#include "gpu_window.h"
#include "proc/proc.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace taskmeter {

namespace {

constexpr double kMinGpuIntervalMs = 20;
// The GPU thread may spend at most 1% of a core in NVML, split between the cheap readings (device memory, power,
// energy, accounting: ≤ 0.2%, so a round costing c ms repeats at most every 500 × c ms) and the expensive process
// lists (≤ 0.8%: every 125 × their cost). Each kind is paced by its own measured cost, so slow process lists never
// slow the device-memory readings down.
constexpr double kCheapCostFactor = 500;
constexpr double kListCostFactor = 125;
// An NVML reading in flight for longer than this is treated as hung: GPU data is marked stale.
constexpr double kHangMs = 1000;
// Detection (nvmlInit, the device walk, the CUDA-order helper which is killed after 20 s) and nvmlShutdown may be
// slow without being hung: a stop treats such a call as hung only past this.
constexpr double kSlowCallHangMs = 25000;
// With no window open, snapshot() asks for a fresh GPU reading when the cache is older than this.
constexpr double kIdleRefreshMs = 500;
constexpr double kIdleIntervalMs = 1000;

// At exit() (and when Node unloads the addon): stop the threads, bounded, so that process exit stays prompt even if
// a thread is stuck in a driver call. No dlclose of NVML then. A static object's destructor rather than atexit():
// it is registered with this module's DSO handle, so it runs when the module is unloaded and never afterwards, also
// under sanitizer runtimes whose atexit() takes no DSO handle.
struct StopAtExitHook {
  ~StopAtExitHook() { Sampler::Instance().StopAtExit(std::chrono::milliseconds(400)); }
} g_stop_at_exit;

// Ids stay exact in a JS number (L6).
constexpr uint64_t kMaxWindowId = (uint64_t{1} << 53) - 1;

std::chrono::steady_clock::time_point DeadlineIn(double ms) {
  return std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0) + 1);
}

}  // namespace

// Keeps this module loaded for the life of the process (L3): a detached thread will return into its code.
void PinThisModule() {
  static std::once_flag pinned;
  std::call_once(pinned, [] {
#ifdef _WIN32
    HMODULE h;
    GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                       reinterpret_cast<LPCWSTR>(&PinThisModule), &h);
#else
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&PinThisModule), &info) != 0 && info.dli_fname != nullptr) {
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);  // one more reference, never released
    }
#endif
  });
}

namespace {
// Constant-initialized (no write when the addon is loaded): Node unloads the addon after the last environment that
// used it and may load it again at the same address, and a static initialized at load would be a plain write there.
std::atomic<Sampler*> g_instance{nullptr};
}  // namespace

Sampler& Sampler::Instance() {
  Sampler* s = g_instance.load(std::memory_order_acquire);
  if (s != nullptr) return *s;
  Sampler* fresh = new Sampler();  // leaked on purpose, see header
  if (g_instance.compare_exchange_strong(s, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread won
  return *s;
}

void Sampler::Retain(nvml::Env env) {
  std::lock_guard<std::mutex> life(lifecycle_mu_);  // L1
  refs_++;
  if (env.disabled) {
    std::lock_guard<std::mutex> lock(mu_);
    if (gpu_.active_gen == 0) {
      gpu_state_ = GpuState::kDisabled;
      gpu_info_ = GpuInfoSnapshot{GpuState::kDisabled, "disabled by TASKMETER_DISABLE_GPU", "", "", "", {}, false, 0, 0,
                                  "GPU_DISABLED"};
      gpu_cache_.clear();
    }
    return;
  }
  EnsureGpuThread(std::move(env));
}

void Sampler::Release() {
  std::lock_guard<std::mutex> life(lifecycle_mu_);  // L1, L2: the check and the stop are one step
  if (refs_ > 0) refs_--;
  if (refs_ == 0) StopLocked(std::chrono::milliseconds(500), true);
}

void Sampler::StopAtExit(std::chrono::milliseconds wait) {
  // L5 first: even when lifecycle_mu_ cannot be taken in time below, no thread starts after this point (every start
  // checks it under lifecycle_mu_, and a stop in progress bounds its waits by it).
  exiting_.store(true);
  auto deadline = std::chrono::steady_clock::now() + wait;
  // Another thread may be in the middle of a bounded stop (its own release); wait for it, but not past the bound.
  // Polled with try_lock rather than a timed mutex: pthread_mutex_clocklock is invisible to ThreadSanitizer's
  // runtime in GCC 12, and this runs once per process.
  std::unique_lock<std::mutex> life(lifecycle_mu_, std::try_to_lock);
  while (!life.owns_lock()) {
    if (std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    life.try_lock();
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  StopLocked(std::max(left, std::chrono::milliseconds(1)), false);
  // No environment left (the module is being unloaded, or every one ended before exit) and the RSS thread was
  // joined at the last release: nothing reads /proc/self/statm any more.
  if (refs_ == 0) proc::CloseSelfFiles();
}

template <typename Fn>
bool Sampler::StartThread(Thread& t, Fn fn, const char* what) {
  // lifecycle_mu_ is held (L1); mu_ is held across the construction and the assignment (L4).
  std::lock_guard<std::mutex> lock(mu_);
  if (t.active_gen != 0) return true;
  if (t.thread.joinable()) {  // L3: never reached while L1–L4 hold; refuse rather than std::terminate
    thread_error_ = std::string("could not start the ") + what + " thread: the previous one was not joined";
    return false;
  }
  uint64_t gen = last_gen_ + 1;
  // Not waiting yet: the RSS thread reads the window table when it first takes mu_. Set in this same hold of mu_,
  // before the thread exists: set after, it could overwrite the thread's own INFINITY (parked, no window yet) and
  // Open() would then never wake it.
  if (&t == &rss_) thread_wake_ms_ = -INFINITY;
  try {
    if (fail_thread_starts_ > 0) {
      fail_thread_starts_--;
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    }
    t.thread = std::thread(fn, gen);
  } catch (const std::exception& e) {
    thread_error_ = std::string("could not start the ") + what + " thread: " + e.what();
    return false;
  }
  last_gen_ = gen;
  t.active_gen = gen;  // L4: the thread exists; it blocks on mu_ until we return
  return true;
}

void Sampler::ThreadStarted(Thread& t, uint64_t gen) {
  // A detached predecessor's last published CPU stays counted (it adds nothing more).
  retired_cpu_ms_ += t.parked_cpu_ms;
  t.parked_cpu_ms = 0;
  t.cpu_gen = gen;
}

void Sampler::ThreadParking(Thread& t) {
  double ms = proc::SelfThreadCpuMs();
  if (!std::isnan(ms)) t.parked_cpu_ms = ms;
}

void Sampler::ThreadExiting(Thread& t, uint64_t gen) {
  if (t.cpu_gen != gen) return;  // detached and replaced: see ThreadStarted
  double ms = proc::SelfThreadCpuMs();
  retired_cpu_ms_ += std::isnan(ms) ? t.parked_cpu_ms : ms;
  t.parked_cpu_ms = 0;
}

double Sampler::OwnCpuMsLocked() {
  return retired_cpu_ms_ + rss_.parked_cpu_ms + gpu_.parked_cpu_ms;
}

double Sampler::OwnCpuMs() {
  std::lock_guard<std::mutex> lock(mu_);
  return OwnCpuMsLocked();
}

void Sampler::EnsureRssThread() {
  if (exiting_) return;  // L5
  bool ok = StartThread(
      rss_, [this](uint64_t gen) { RunRss(gen); }, "RSS sampler");
  if (ok) rss_started_.store(true, std::memory_order_release);
}

void Sampler::EnsureGpuThread(nvml::Env env) {
  if (exiting_) return;  // L5
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (gpu_.active_gen != 0) return;
    if (gpu_abandoned_) {
      gpu_state_ = GpuState::kUnavailable;
      gpu_info_ =
          GpuInfoSnapshot{GpuState::kUnavailable,
                          "an earlier NVML call never returned; GPU readings are off for the rest of this process",
                          "",
                          "",
                          "",
                          {},
                          false,
                          0,
                          0,
                          "GPU_HUNG"};
      gpu_cache_.clear();
      for (auto& kv : windows_) kv.second.gpu.clear();
      return;
    }
    // L8: only the Retain that starts a GPU thread hands its environment over, before the thread exists.
    gpu_env_ = std::move(env);
    gpu_state_ = GpuState::kPending;
    gpu_info_ = GpuInfoSnapshot{GpuState::kPending, "GPU detection is still running", "", "", "", {}, false, 0, 0,
                                "GPU_PENDING"};
  }
  if (!StartThread(
          gpu_, [this](uint64_t gen) { RunGpu(gen); }, "GPU")) {
    std::lock_guard<std::mutex> lock(mu_);
    gpu_state_ = GpuState::kUnavailable;
    gpu_info_.state = GpuState::kUnavailable;
    gpu_info_.reason = thread_error_;
    gpu_info_.reason_code = "GPU_THREAD_START_FAILED";
    state_cv_.notify_all();
  }
}

uint64_t Sampler::Open(uint32_t interval_ms, const void* owner) {
  if (!rss_started_.load(std::memory_order_acquire)) {
    // The caller's environment holds a reference, so no Release can be stopping the threads meanwhile (L2).
    std::lock_guard<std::mutex> life(lifecycle_mu_);  // L1
    EnsureRssThread();
  }
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t id = next_id_;
  while (windows_.count(id) != 0) id = id >= kMaxWindowId ? 1 : id + 1;  // L6: skip ids still in use
  next_id_ = id >= kMaxWindowId ? 1 : id + 1;
  double now = proc::MonotonicMs();
  double due = now + interval_ms;
  Window& w = windows_[id];
  w.owner = owner;
  w.own_cpu_open_ms = OwnCpuMsLocked();
  w.interval_ms = interval_ms;
  w.open_ms = now;
  w.next_due_ms = due;
  w.max_rss_bytes = NAN;
  w.samples = 0;
  w.gpu_samples = 0;
  if (!gpu_cache_.empty()) {
    w.gpu.resize(gpu_cache_.size());
    if (gpu_parked_) gpu_cv_.notify_one();  // it parks while no window is open
  }
  if (due < thread_wake_ms_) cv_.notify_all();
  return id;
}

bool Sampler::SetPids(uint64_t id, std::vector<uint32_t> pids) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  it->second.pids = std::move(pids);
  return true;
}

bool Sampler::Configure(uint64_t id, uint32_t root_pid, bool baseline_existing, bool descendants, bool timeline) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  Window& w = it->second;
  if (root_pid != 0) {
    w.tree.reset(new TreeState());
    w.tree->root = root_pid;
    w.tree->baseline_existing = baseline_existing;
    w.tree->descendants = descendants;
    w.is_tree = true;
    w.last_tree.root = root_pid;
    w.pids = {root_pid};
    // Sample at once, then every 1, 2, 4 … ms up to the interval: a command that lives 20 ms is still seen.
    w.ramp_ms = std::min(1.0, w.interval_ms);
    w.next_due_ms = proc::MonotonicMs();
  }
  w.timeline = timeline;
  if (timeline) w.tl.points.reserve(256 * kTimelineColumns);
  if (w.next_due_ms < thread_wake_ms_) cv_.notify_all();
  return true;
}

bool Sampler::TakeTimeline(uint64_t id, std::vector<double>* points, std::string* max_hwm_comm) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  Window& w = it->second;
  TimelineTake(&w.tl, points);
  if (w.is_tree) *max_hwm_comm = w.last_tree.max_hwm_comm;
  return true;
}

void Sampler::AppendTimelineLocked(Window& w, double now, double rss, double self_cpu_ms) {
  double p[kTimelineColumns];
  p[kTlTimeMs] = now - w.open_ms;
  // A tree window describes the tree: this process's own RSS is no part of it.
  p[kTlRssBytes] = rss >= 0 && !w.is_tree ? rss : NAN;
  p[kTlTreeRssBytes] = w.is_tree && w.last_tree.rss_sum_bytes >= 0 ? w.last_tree.rss_sum_bytes : NAN;
  // CPU: the tree's sampled CPU for a tree window, else this process's.
  double cpu = !w.is_tree                       ? self_cpu_ms
               : w.last_tree.processes_seen > 0 ? w.last_tree.cpu_user_ms + w.last_tree.cpu_system_ms
                                                : NAN;  // no sample has seen the tree yet
  p[kTlCpuPercent] = TimelineCpuPercent(&w.tl, now, cpu);
  double gpu_bytes = NAN, util_sum = 0;
  int util_n = 0;
  for (const auto& c : gpu_cache_) {
    if (std::isnan(c.t_ms)) continue;
    int reason;
    double b = ProcessBytes(c.processes, w.pids, &reason);
    if (!std::isnan(b)) gpu_bytes = (std::isnan(gpu_bytes) ? 0 : gpu_bytes) + b;
    if (c.reading.utilization_percent >= 0) {
      util_sum += c.reading.utilization_percent;
      util_n++;
    }
  }
  p[kTlGpuProcessBytes] = gpu_bytes;
  p[kTlGpuUtilPercent] = util_n > 0 ? util_sum / util_n : NAN;
  TimelineAppend(&w.tl, p);
}

double Sampler::GpuIntervalLocked() const {
  double base = INFINITY;
  for (const auto& kv : windows_) base = std::min(base, kv.second.interval_ms);
  if (!std::isfinite(base)) base = kIdleIntervalMs;
  return std::max({base, kMinGpuIntervalMs, gpu_cost_ms_ * kCheapCostFactor});
}

double Sampler::ProcessIntervalLocked() const {
  return std::max(GpuIntervalLocked(), list_cost_ms_ * kListCostFactor);
}

double Sampler::ProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, int* reason) const {
  gpuwin::Attribution a = gpuwin::AttributeProcessBytes(pl, pids, self_pid_, gpu_info_.pid_match);
  *reason = a.reason;
  return a.bytes;
}

void Sampler::FillStatsLocked(const Window& w, double* out, size_t len) {
  double now = proc::MonotonicMs();
  out[kWinMaxRssBytes] = w.max_rss_bytes;
  out[kWinSamples] = w.samples;
  for (int i = kWinTreeRssBytes; i <= kWinTreeRssFirstBytes; i++) out[i] = NAN;
  out[kWinTreeIntervalMs] = NAN;
  if (w.is_tree) {
    const TreeResults& t = w.last_tree;
    out[kWinTreeRssBytes] = t.rss_last_bytes >= 0 ? t.rss_last_bytes : NAN;  // the last sample that saw the tree
    out[kWinTreeRssPeakBytes] = t.rss_sum_peak_bytes >= 0 ? t.rss_sum_peak_bytes : NAN;
    out[kWinTreeMaxHwmBytes] = t.max_hwm_bytes >= 0 ? t.max_hwm_bytes : NAN;
    out[kWinTreeMaxHwmPid] = t.max_hwm_pid ? t.max_hwm_pid : NAN;
    // CPU only once a sample has read a process of the tree: never a 0 for what nothing saw.
    out[kWinTreeCpuUserMs] = t.processes_seen > 0 ? t.cpu_user_ms : NAN;
    out[kWinTreeCpuSystemMs] = t.processes_seen > 0 ? t.cpu_system_ms : NAN;
    out[kWinTreeProcesses] = t.processes_seen;
    out[kWinTreeRootAlive] = t.root_alive ? 1 : 0;
    out[kWinTreeSamples] = w.tree_samples;
    out[kWinTreeRssFirstBytes] = t.rss_first_bytes >= 0 ? t.rss_first_bytes : NAN;
    out[kWinTreeIntervalMs] = w.tree_steps > 0 ? w.tree_step_sum_ms / w.tree_steps : w.interval_ms;
  }
  out[kWinIntervalMs] = w.interval_ms;
  out[kWinSamplerCpuMs] = std::max(0.0, OwnCpuMsLocked() - w.own_cpu_open_ms);
  for (int i = kWinTreePssPeakBytes; i <= kWinTreeIoWriteBytes; i++) out[i] = NAN;
  if (w.is_tree) {
    const TreeResults& t = w.last_tree;
    out[kWinTreePssPeakBytes] = t.pss_sum_peak_bytes >= 0 ? t.pss_sum_peak_bytes : NAN;
    out[kWinTreePssSamples] = t.pss_passes;
    out[kWinTreePssIntervalMs] = PssIntervalMs(t);
    out[kWinTreePssDenied] = t.pss_denied ? 1 : 0;
    out[kWinTreeUnreadable] = t.processes_unreadable;
    out[kWinTreeIoReadBytes] = t.io_read_bytes >= 0 ? t.io_read_bytes : NAN;
    out[kWinTreeIoWriteBytes] = t.io_write_bytes >= 0 ? t.io_write_bytes : NAN;
  }
  out[kWinGpuSamples] = w.gpu_samples;
  out[kWinGpuIntervalMs] = gpu_cache_.empty() ? NAN : GpuIntervalLocked();
  out[kWinGpuProcessIntervalMs] = gpu_cache_.empty() ? NAN : ProcessIntervalLocked();
  double hang = std::isnan(gpu_poll_started_ms_) ? 0 : now - gpu_poll_started_ms_;
  out[kWinGpuStaleMs] = hang > kHangMs ? hang : 0;
  bool from_cache = false;
  size_t n = std::min(gpu_cache_.size(), (len - kWindowSlots) / kGpuWindowSlots);
  for (size_t i = 0; i < n; i++) {
    double* g = out + kWindowSlots + i * kGpuWindowSlots;
    const GpuCache& c = gpu_cache_[i];
    GpuWindow gw = i < w.gpu.size() ? w.gpu[i] : GpuWindow();
    bool mig = i < gpu_info_.devices.size() && gpu_info_.devices[i].mig;
    double power = c.reading.power_watts;
    double fresh_limit = std::max(1000.0, 2 * GpuIntervalLocked());
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
    if (w.gpu_samples == 0) {
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
      if (power >= 0 && !std::isnan(last_gpu_poll_ms_)) {
        // The stretch since the last reading, at the last power draw.
        gw.energy_j += power * std::max(0.0, now - std::max(last_gpu_poll_ms_, w.open_ms)) / 1000.0;
      }
    }
    if (mig) {
      gw.energy_valid = false;
      gw.energy_reason = gpuwin::kEnergyMig;
    }
    // Accounting mode: the driver's own high-water mark of this process, exact where it rose inside the window.
    double acct = w.pids.empty() && gpu_info_.pid_match == nvml::kPidsHost
                      ? gpuwin::AccountingPeak(gw.acct_base, gw.acct_end)
                      : NAN;
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

bool Sampler::Read(uint64_t id, double* out, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  FillStatsLocked(it->second, out, len);
  return true;
}

bool Sampler::Close(uint64_t id, double* out, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  if (out) FillStatsLocked(it->second, out, len);
  windows_.erase(it);  // no wake-up needed: the threads park by themselves if nothing is left
  return true;
}

void Sampler::CloseOwnedBy(const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (it->second.owner == owner) {
      it = windows_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Sampler::ThreadRunning() {
  std::lock_guard<std::mutex> lock(mu_);
  return rss_.active_gen != 0;
}

size_t Sampler::GpuCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_cache_.size();
}

size_t Sampler::ReadGpuCache(double* out, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = std::min(gpu_cache_.size(), len / kGpuSnapshotSlots);
  double now = proc::MonotonicMs();
  double oldest = 0;
  for (size_t i = 0; i < n; i++) {
    const GpuCache& c = gpu_cache_[i];
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
    gpu_refresh_requested_ = true;
    gpu_cv_.notify_one();
  }
  return n;
}

bool Sampler::WaitGpuDetection(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return state_cv_.wait_for(lock, timeout, [this] { return gpu_state_ != GpuState::kPending; });
}

GpuInfoSnapshot Sampler::GpuInfo() {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_info_;
}

void Sampler::StopThreadLocked(std::unique_lock<std::mutex>& lock, Thread& t,
                               std::chrono::steady_clock::time_point deadline) {
  uint64_t gen = t.active_gen;
  if (gen == 0) return;
  t.active_gen = 0;
  cv_.notify_all();
  gpu_cv_.notify_all();
  auto exited = [&t, gen] { return t.exited_gen >= gen; };
  bool done = state_cv_.wait_until(lock, deadline, exited);
  if (!done && &t == &gpu_ && !exiting_) {
    // Slow is not hung: the GPU thread is abandoned (detached, never replaced) only when its call in flight has
    // really been running past its bound. Otherwise wait on, bounded: the thread ends as soon as the call returns.
    double cap = proc::MonotonicMs() + kSlowCallHangMs + kHangMs;
    while (!done && !exiting_) {  // at exit, the exit's own bound applies
      double now = proc::MonotonicMs();
      double hung_at = !std::isnan(gpu_slow_call_started_ms_) ? gpu_slow_call_started_ms_ + kSlowCallHangMs
                       : !std::isnan(gpu_poll_started_ms_)    ? gpu_poll_started_ms_ + kHangMs
                                                              : now + kHangMs;
      hung_at = std::min(hung_at, cap);
      if (now >= hung_at) break;
      done = state_cv_.wait_until(lock, DeadlineIn(std::min(hung_at - now, 100.0)), exited);
    }
  }
  std::thread th = std::move(t.thread);
  if (!done && &t == &gpu_) gpu_abandoned_ = true;
  lock.unlock();
  if (done) {
    th.join();
  } else {
    PinThisModule();
    th.detach();  // stuck in a call we cannot interrupt; it only touches this leaked object
  }
  lock.lock();
}

void Sampler::StopLocked(std::chrono::milliseconds wait, bool unload) {
  std::unique_lock<std::mutex> lock(mu_);
  unload_on_stop_ = unload;
  rss_started_.store(false, std::memory_order_release);
  auto deadline = std::chrono::steady_clock::now() + wait;
  // At the last release the RSS thread is joined whatever it takes (L3): it makes no call that can hang, and Node
  // unloads the module right after. At exit it gets the same bound as the GPU thread.
  StopThreadLocked(lock, rss_, exiting_ ? deadline : std::chrono::steady_clock::now() + std::chrono::hours(24));
  StopThreadLocked(lock, gpu_, deadline);
}

size_t Sampler::OpenCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return windows_.size();
}

std::string Sampler::ThreadError() {
  std::lock_guard<std::mutex> lock(mu_);
  return thread_error_;
}

void Sampler::SetNextIdForTest(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  next_id_ = id >= 1 && id <= kMaxWindowId ? id : 1;
}

void Sampler::FailThreadStartsForTest(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_thread_starts_ = n;
}

void Sampler::RunRssLoop(uint64_t gen) {
  proc::NameThisThread("taskmeter-rss");
  std::unique_lock<std::mutex> lock(mu_);
  ThreadStarted(rss_, gen);
  struct TreeJob {
    uint64_t id;
    std::unique_ptr<TreeState> state;
  };
  std::vector<TreeJob> jobs;
  while (rss_.active_gen == gen) {
    if (windows_.empty()) {
      thread_wake_ms_ = INFINITY;
      ThreadParking(rss_);
      cv_.wait(lock, [this, gen] { return rss_.active_gen != gen || !windows_.empty(); });
      continue;
    }
    double now = proc::MonotonicMs();
    double next_due = INFINITY;
    for (auto& kv : windows_) next_due = std::min(next_due, kv.second.next_due_ms);
    if (now < next_due) {
      thread_wake_ms_ = next_due;
      ThreadParking(rss_);
      cv_.wait_until(lock, DeadlineIn(next_due - now));
      continue;
    }
    if (throw_in_threads_ & 1) {
      throw_in_threads_ &= ~1;
      throw std::bad_alloc();
    }
    // Take the due trees out so that /proc is read without the lock (window ends never wait for it).
    bool want_cpu = false;
    bool want_rss = false;  // this process's RSS: not wanted by a tree window, which describes the tree
    jobs.clear();
    for (auto& kv : windows_) {
      Window& w = kv.second;
      if (w.next_due_ms > now) continue;
      want_cpu |= w.timeline && !w.is_tree;
      want_rss |= !w.is_tree;
      if (w.tree && !w.tree_busy) {
        w.tree_busy = true;
        jobs.push_back(TreeJob{kv.first, std::move(w.tree)});
      }
    }
    lock.unlock();
    double read_ms = proc::MonotonicMs();  // windows opened after this did not exist at the reading
    int64_t rss = want_rss ? proc::ReadSelfRssBytes() : -1;
    double self_cpu = NAN;
    if (want_cpu) {
      double s[proc::kSnapshotSlots];
      proc::ReadSelf(s);
      self_cpu = s[proc::kCpuUserMs] + s[proc::kCpuSystemMs];
    }
    for (auto& job : jobs) SampleTree(job.state.get());
    lock.lock();
    bool orphaned = false;
    for (auto& job : jobs) {
      auto it = windows_.find(job.id);
      if (it == windows_.end()) {
        orphaned = true;  // closed meanwhile
        continue;
      }
      Window& w = it->second;
      w.tree = std::move(job.state);
      w.tree_busy = false;
      w.tree_samples++;
      // Publish the results (everything but the per-process tracks) for readers that come while it is out.
      const TreeState& t = *w.tree;
      w.last_tree = t;
      w.pids = t.live_pids;
      // No live process: the root while its pid is still its own, else pid 0, which names no process (an empty
      // list would mean this process).
      if (w.pids.empty()) w.pids = {t.root_gone ? 0u : t.root};
      std::sort(w.pids.begin(), w.pids.end());
    }
    if (orphaned) {
      // The trees of windows closed while they were sampled end now, outside the lock: their kept-open /proc
      // descriptors must not wait for the next round, which may be a long interval away or never come (parked).
      lock.unlock();
      jobs.clear();
      lock.lock();
    }
    // Due means due at the first pass (`now`), which chose what to read: a window that became due during a long
    // tree read was not read for, and keeps its tick for the next round.
    double done_ms = proc::MonotonicMs();
    for (auto& kv : windows_) {
      Window& w = kv.second;
      // A reading is an observation for every window open at the time, due or not: so a window's peak is never
      // below one its nested windows saw (windows keep their own cadence, but share every reading).
      if (rss >= 0 && w.open_ms <= read_ms) {
        double r = static_cast<double>(rss);
        if (std::isnan(w.max_rss_bytes) || r > w.max_rss_bytes) w.max_rss_bytes = r;
        w.samples++;
      }
      if (w.next_due_ms > now) continue;
      if (w.timeline) AppendTimelineLocked(w, done_ms, static_cast<double>(rss), self_cpu);
      double step = w.interval_ms;
      bool ramping = w.ramp_ms > 0;
      if (w.ramp_ms > 0) {
        step = w.ramp_ms;
        w.ramp_ms *= 2;
        if (w.ramp_ms >= w.interval_ms) w.ramp_ms = 0;
      }
      if (w.tree) {
        // A big tree stretches the interval so that sampling stays within its CPU budget (tree.h).
        step = EffectiveIntervalMs(*w.tree, step);
        if (!ramping) {
          w.tree_step_sum_ms += step;
          w.tree_steps++;
        }
      }
      // Keep the cadence; if we fell behind (suspended, overloaded), skip the missed ticks instead of bursting.
      w.next_due_ms += step;
      if (w.next_due_ms <= done_ms) w.next_due_ms = done_ms + step;
    }
  }
  ThreadExiting(rss_, gen);
  if (gen > rss_.exited_gen) rss_.exited_gen = gen;
  state_cv_.notify_all();
}

void Sampler::ApplyGpuReadingsLocked(double t_prev, double t_start, double t_now,
                                     std::vector<nvml::DeviceReading>& readings) {
  // A reading counts for the windows open when it started (t_start); one opened while it was in flight gets only
  // its share of the energy up to its end (t_now).
  for (auto& kv : windows_) {
    if (kv.second.open_ms <= t_start) kv.second.gpu_samples++;
  }
  double cheap_iv = GpuIntervalLocked();
  for (size_t i = 0; i < readings.size() && i < gpu_cache_.size(); i++) {
    GpuCache& c = gpu_cache_[i];
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
    auto add_energy = [&](const Window& w, GpuWindow& g) {
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
      if (w.gpu.size() < gpu_cache_.size()) w.gpu.resize(gpu_cache_.size());
      GpuWindow& g = w.gpu[i];
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

void Sampler::RunGpuLoop(uint64_t gen) {
  proc::NameThisThread("taskmeter-gpu");
  nvml::Env env;
  uint32_t self_pid;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ThreadStarted(gpu_, gen);
    self_pid_ = proc::SelfPid();
    self_pid = self_pid_;
    env = gpu_env_;  // L8: written before this thread existed
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    gpu_slow_call_started_ms_ = proc::MonotonicMs();
  }
  bool ok = gpus_.Detect(env, self_pid);
  std::unique_lock<std::mutex> lock(mu_);
  gpu_slow_call_started_ms_ = NAN;
  // Published only by the thread still wanted: one stopped meanwhile (its last environment ended during detection)
  // must not overwrite what a stop or a later thread set.
  ok = ok && gpu_.active_gen == gen;
  if (gpu_.active_gen == gen) {
    gpu_info_.state = ok ? GpuState::kReady : GpuState::kUnavailable;
    gpu_info_.reason = ok ? "" : gpus_.reason();
    gpu_info_.reason_code = ok ? "" : gpus_.reason_code();
    gpu_info_.library = gpus_.library().path();
    gpu_info_.driver_version = gpus_.driver_version();
    gpu_info_.nvml_version = gpus_.nvml_version();
    gpu_info_.devices = ok ? gpus_.devices() : std::vector<nvml::DeviceStatic>();
    gpu_info_.own_pid_namespace = gpus_.own_pid_namespace();
    gpu_info_.process_list_version = gpus_.library().api().process_list_version;
    gpu_info_.process_entry_stride = gpus_.process_entry_stride();
    gpu_info_.pid_match = gpus_.pid_match();
    gpu_info_.device_order = gpus_.device_order();
    gpu_info_.device_order_certain = gpus_.device_order_certain();
    gpu_info_.device_order_note = gpus_.device_order_note();
    gpu_cache_.assign(ok ? gpus_.devices().size() : 0, GpuCache());
    for (auto& kv : windows_) kv.second.gpu.resize(gpu_cache_.size());
    gpu_state_ = gpu_info_.state;
    last_gpu_poll_ms_ = NAN;
    last_list_ms_ = NAN;
    gpu_refresh_requested_ = ok;  // a first reading right away, so snapshot() has values early
    state_cv_.notify_all();
  }
  std::vector<nvml::DeviceReading> readings;
  // Without a usable GPU the thread ends here: nothing is left for it to do, and every extra thread makes
  // getrusage(RUSAGE_SELF) (which sums over threads) a little slower.
  while (ok && gpu_.active_gen == gen) {
    if (windows_.empty() && !gpu_refresh_requested_) {
      gpu_parked_ = true;
      ThreadParking(gpu_);
      gpu_cv_.wait(lock, [this, gen] { return gpu_.active_gen != gen || !windows_.empty() || gpu_refresh_requested_; });
      gpu_parked_ = false;
      continue;
    }
    double now = proc::MonotonicMs();
    double due = std::isnan(last_gpu_poll_ms_) ? now : last_gpu_poll_ms_ + GpuIntervalLocked();
    if (gpu_refresh_requested_ && windows_.empty()) due = now;
    if (now < due) {
      ThreadParking(gpu_);
      gpu_cv_.wait_until(lock, DeadlineIn(due - now));
      continue;
    }
    if (throw_in_threads_ & 2) {
      throw_in_threads_ &= ~2;
      throw std::bad_alloc();
    }
    // The process lists at their own pace (their cost can be milliseconds on real drivers), the rest every round.
    bool with_lists =
        std::isnan(last_list_ms_) || gpu_refresh_requested_ || now - last_list_ms_ >= ProcessIntervalLocked() - 1;
    gpu_refresh_requested_ = false;
    gpu_poll_started_ms_ = now;
    size_t n = gpu_cache_.size();
    lock.unlock();
    readings.assign(n, nvml::DeviceReading());
    for (size_t i = 0; i < n; i++) gpus_.Read(i, &readings[i], with_lists);
    double t1 = proc::MonotonicMs();
    lock.lock();
    gpu_poll_started_ms_ = NAN;
    if (gpu_.active_gen != gen) break;  // stopped (or abandoned) meanwhile: the cache may no longer be ours
    double list_ms = 0;
    for (const auto& r : readings) list_ms += r.process_list_ms;
    cheap_costs_.Add(std::max(0.0, t1 - now - list_ms));
    gpu_cost_ms_ = cheap_costs_.Ms();
    if (with_lists) {
      list_costs_.Add(list_ms);
      list_cost_ms_ = list_costs_.Ms();
      last_list_ms_ = now;
    }
    double t_prev = last_gpu_poll_ms_;
    last_gpu_poll_ms_ = t1;
    ApplyGpuReadingsLocked(t_prev, now, t1, readings);
  }
  bool unload = unload_on_stop_;
  gpu_cache_.clear();
  gpu_slow_call_started_ms_ = proc::MonotonicMs();
  lock.unlock();
  gpus_.Shutdown(unload);
  lock.lock();
  gpu_slow_call_started_ms_ = NAN;
  ThreadExiting(gpu_, gen);
  if (gen > gpu_.exited_gen) gpu_.exited_gen = gen;
  state_cv_.notify_all();
}

// No exception may end a thread through std::terminate (a std::bad_alloc in a reading, say): it is reported through
// samplerState().threadError (and gpuInfo() for the GPU thread) and the thread ends as it would when stopped.
void Sampler::RunRss(uint64_t gen) {
  try {
    RunRssLoop(gen);
  } catch (const std::exception& e) {
    ThreadFailed(rss_, gen, e.what());
  } catch (...) {
    ThreadFailed(rss_, gen, "unknown exception");
  }
}

void Sampler::RunGpu(uint64_t gen) {
  try {
    RunGpuLoop(gen);
  } catch (const std::exception& e) {
    ThreadFailed(gpu_, gen, e.what());
  } catch (...) {
    ThreadFailed(gpu_, gen, "unknown exception");
  }
}

void Sampler::ThreadFailed(Thread& t, uint64_t gen, const char* what) {
  bool gpu = &t == &gpu_;
  try {
    std::lock_guard<std::mutex> lock(mu_);
    thread_error_ = std::string("the ") + (gpu ? "GPU" : "RSS sampler") + " thread failed: " + what;
    if (gpu && (gpu_.active_gen == gen || gpu_.active_gen == 0)) {
      gpu_state_ = GpuState::kUnavailable;
      gpu_info_.state = GpuState::kUnavailable;
      gpu_info_.reason = thread_error_;
      gpu_info_.reason_code = "GPU_THREAD_FAILED";
      gpu_info_.devices.clear();
      gpu_cache_.clear();
      for (auto& kv : windows_) kv.second.gpu.clear();
    }
  } catch (...) {
    // no memory for the message: the thread still ends cleanly below
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (gpu) {
    gpu_poll_started_ms_ = NAN;
    gpu_slow_call_started_ms_ = NAN;
    gpu_parked_ = false;
  }
  ThreadExiting(t, gen);
  if (gen > t.exited_gen) t.exited_gen = gen;
  state_cv_.notify_all();
}

void Sampler::ThrowInThreadsForTest(int which) {
  std::lock_guard<std::mutex> lock(mu_);
  throw_in_threads_ = which;
  cv_.notify_all();
  gpu_refresh_requested_ = (which & 2) != 0 || gpu_refresh_requested_;
  gpu_cv_.notify_all();
}

}  // namespace taskmeter
