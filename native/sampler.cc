#include "sampler.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>

#include "proc/proc.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace taskmeter {

namespace {

// At exit() (and when Node unloads the addon): stop the threads, bounded, so that process exit stays prompt even if
// a thread is stuck in a driver call. No dlclose of NVML then. A static object's destructor rather than atexit():
// it is registered with this module's DSO handle, so it runs when the module is unloaded and never afterwards, also
// under sanitizer runtimes whose atexit() takes no DSO handle.
constexpr std::chrono::milliseconds kExitWait{400};
struct StopAtExitHook {
  ~StopAtExitHook() { Sampler::Instance().StopAtExit(kExitWait); }
} g_stop_at_exit;
// The same, registered each time NVML is loaded: exit handlers run in the reverse order of their registration, so
// this one runs before the destructors of the NVML just loaded (registered as it loaded), and a GPU thread still in
// an NVML call then gets the exit's bound to return from it before they run.
void StopAtExitNow() {
  Sampler::Instance().StopAtExit(kExitWait);
}

// Ids stay exact in a JS number (L6).
constexpr uint64_t kMaxWindowId = (uint64_t{1} << 53) - 1;

// ms from now; NaN, infinite or past a day is a day (the int64 conversion of an infinite value is undefined). Callers
// that may have nothing due wait without a deadline instead.
std::chrono::steady_clock::time_point DeadlineIn(double ms) {
  constexpr double kMaxMs = 24 * 3600 * 1000.0;
  if (!(ms < kMaxMs)) ms = kMaxMs;
  if (!(ms > 0)) ms = 0;
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

void Sampler::GpuLibraryLoaded() {
  std::atexit(&StopAtExitNow);
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
    if (gpu_thread_.active_gen == 0) gpu_.SetDisabledLocked();
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
  // checks it under lifecycle_mu_, and a stop in progress bounds its waits by it). Once only (StopAtExitNow and the
  // static destructor both call it).
  if (exiting_.exchange(true)) return;
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

void Sampler::GpuThreadStarted(uint64_t gen) {
  gpu_cpu_.push_back(GpuCpu{gen, 0, {}});  // may throw (bad_alloc): the thread then ends through ThreadFailed
}

Sampler::GpuCpu* Sampler::GpuCpuOf(uint64_t gen) {
  for (auto& c : gpu_cpu_)
    if (c.gen == gen) return &c;
  return nullptr;
}

void Sampler::GpuThreadParking(uint64_t gen) {
  GpuCpu* c = GpuCpuOf(gen);
  if (c == nullptr) return;
  double ms = proc::SelfThreadCpuMs();
  if (!std::isnan(ms)) c->cpu_ms = ms;
  proc::SelfThreadCounters(c->counters);
}

void Sampler::ThreadStarted(Thread& t, uint64_t gen) {
  // A detached predecessor's last published CPU stays counted (it adds nothing more).
  retired_cpu_ms_ += t.parked_cpu_ms;
  t.parked_cpu_ms = 0;
  for (int i = 0; i < proc::kCounterSlots; i++) {
    retired_counters_[i] += t.parked_counters[i];
    t.parked_counters[i] = 0;
  }
  t.cpu_gen = gen;
}

void Sampler::ThreadParking(Thread& t) {
  double ms = proc::SelfThreadCpuMs();
  if (!std::isnan(ms)) t.parked_cpu_ms = ms;
  proc::SelfThreadCounters(t.parked_counters);  // unchanged where the OS has none
}

void Sampler::ThreadExiting(Thread& t, uint64_t gen) {
  if (t.cpu_gen != gen) return;  // detached and replaced: see ThreadStarted
  double ms = proc::SelfThreadCpuMs();
  retired_cpu_ms_ += std::isnan(ms) ? t.parked_cpu_ms : ms;
  t.parked_cpu_ms = 0;
  proc::SelfThreadCounters(t.parked_counters);
  for (int i = 0; i < proc::kCounterSlots; i++) {
    retired_counters_[i] += t.parked_counters[i];
    t.parked_counters[i] = 0;
  }
}

void Sampler::SubtractOwnCounters(double* snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < proc::kCounterSlots; i++) {
    double own = retired_counters_[i] + rss_.parked_counters[i];
    for (const auto& c : gpu_cpu_) own += c.counters[i];
    snapshot[proc::kMinorFaults + i] -= own;
  }
}

double Sampler::OwnCpuMsLocked() {
  double ms = retired_cpu_ms_ + rss_.parked_cpu_ms;
  for (const auto& c : gpu_cpu_) ms += c.cpu_ms;
  return ms;
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
    if (gpu_thread_.active_gen != 0) return;
    if (gpu_orphan_alive_) {
      // L9: a GPU thread left to finish its NVML work. Its call in flight past its bound: the driver is hung, no GPU
      // thread starts again. Still detecting: adopted (it keeps the ended environment's settings). Otherwise the new
      // thread waits for it to exit.
      double now = proc::MonotonicMs();
      if (now >= gpu_.HungAtLocked(now)) {
        gpu_abandoned_ = true;
      } else if (gpu_.DetectingLocked()) {
        gpu_thread_.active_gen = gpu_orphan_gen_;
        gpu_orphan_alive_ = false;  // the wanted thread again
        return;
      }
    }
    if (gpu_abandoned_) {
      gpu_.SetHungLocked();
      return;
    }
    // L8: only the Retain that starts a GPU thread hands its environment over, before the thread exists.
    gpu_.SetPendingLocked(std::move(env));
  }
  if (!StartThread(
          gpu_thread_, [this](uint64_t gen) { RunGpu(gen); }, "GPU")) {
    std::lock_guard<std::mutex> lock(mu_);
    gpu_.StartFailedLocked(thread_error_);
  }
}

uint64_t Sampler::Open(uint32_t interval_ms, const void* owner, uint64_t* edge_seq) {
  if (!rss_started_.load(std::memory_order_acquire)) {
    // The caller's environment holds a reference, so no Release can be stopping the threads meanwhile (L2).
    std::lock_guard<std::mutex> life(lifecycle_mu_);  // L1
    EnsureRssThread();
  }
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t id = next_id_;
  while (windows_.count(id) != 0) id = id >= kMaxWindowId ? 1 : id + 1;  // L6: skip ids still in use
  double now = proc::MonotonicMs();
  // What allocates comes first, each step undone if a later one throws (std::bad_alloc reaches JS as an error): a
  // window that fails to open leaves the tables as they were. Linking and counting, which cannot throw, come last.
  auto git = groups_.find(interval_ms);
  bool new_group = git == groups_.end();
  if (new_group) git = groups_.emplace(interval_ms, Group{}).first;
  std::unordered_map<uint64_t, Window>::iterator it;
  try {
    it = windows_.try_emplace(id).first;
    try {
      MaybeThrowBadAllocLocked(kBadAllocOpen);
      gpu_.OpenLocked(id, now, interval_ms);  // all or nothing
    } catch (...) {
      windows_.erase(it);
      throw;
    }
  } catch (...) {
    if (new_group) groups_.erase(git);
    throw;
  }
  next_id_ = id >= kMaxWindowId ? 1 : id + 1;
  Window& w = it->second;
  w.id = id;
  w.owner = owner;
  w.own_cpu_open_ms = OwnCpuMsLocked();
  w.interval_ms = interval_ms;
  w.open_ms = now;
  // The window's number: readings reserved from now on are its (its own start reading first, when edge_seq asks).
  w.rss_seq = edge_seq != nullptr ? rss_seq_.fetch_add(1) : rss_seq_.load();
  if (edge_seq != nullptr) *edge_seq = w.rss_seq;
  w.rss_samples = rss_samples_ + (rss_in_flight_ ? 1 : 0);
  w.older = newest_;
  w.newer = nullptr;
  if (newest_ != nullptr) newest_->newer = &w;
  newest_ = &w;
  if (oldest_ == nullptr) oldest_ = &w;
  Group& g = git->second;
  if (g.windows++ == 0) {
    // The group's ticks fall on the multiples of its interval, so groups of different intervals share ticks.
    g.next_due_ms = (std::floor(now / interval_ms) + 1) * interval_ms;
    if (g.next_due_ms < thread_wake_ms_) cv_.notify_all();
  }
  return id;
}

void Sampler::ObserveRss(uint64_t seq, double rss_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  AddRssLocked(seq, rss_bytes);
}

void Sampler::RssReadingDoneLocked(bool counted) {
  rss_in_flight_ = false;
  if (counted) {
    rss_samples_++;
    return;
  }
  // Not counted: the windows that opened while it was in flight counted it as taken before them (one more in their
  // rss_samples); they take it back. They are the newest ones, numbered after it: amortized O(1) per window opened.
  for (Window* w = newest_; w != nullptr && w->rss_seq > rss_flight_seq_; w = w->older) w->rss_samples--;
}

void Sampler::AddRssLocked(uint64_t seq, double rss_bytes) {
  if (oldest_ == nullptr) {
    rss_max_.Clear();
    return;
  }
  if (!(rss_bytes >= 0)) return;
  // First the floor: a reading numbered before the oldest open window opened is no window's, and is not added (it
  // would sit in front of that window's answer, which compaction keeps only while it is the front entry).
  rss_max_.DropBefore(oldest_->rss_seq);
  // Out of memory (the stack grows, or compacts into a new one): the reading is dropped, which can only lower a
  // window's peak. Thrown on, it would reach JS at a window's edge: a close after JS marked the window closed (the
  // native window would stay open), an open whose id never came back.
  try {
    MaybeThrowBadAllocLocked(kBadAllocRssAdd);
    rss_max_.Add(seq, rss_bytes);
  } catch (const std::bad_alloc&) {}
}

void Sampler::MakeSpecialLocked(Window& w) {
  if (w.special) return;
  auto g = groups_.find(static_cast<uint32_t>(w.interval_ms));
  if (g != groups_.end() && --g->second.windows == 0) groups_.erase(g);
  w.special = true;
  w.special_index = specials_.size();
  specials_.push_back(&w);
  w.next_due_ms = (std::floor(proc::MonotonicMs() / w.interval_ms) + 1) * w.interval_ms;  // on the groups' grid
}

void Sampler::UnscheduleLocked(Window& w) {
  if (w.special) {
    Window* last = specials_.back();
    specials_[w.special_index] = last;
    last->special_index = w.special_index;
    specials_.pop_back();
  } else {
    auto g = groups_.find(static_cast<uint32_t>(w.interval_ms));
    if (g != groups_.end() && --g->second.windows == 0) groups_.erase(g);
  }
  (w.older != nullptr ? w.older->newer : oldest_) = w.newer;
  (w.newer != nullptr ? w.newer->older : newest_) = w.older;
  if (oldest_ == nullptr) {
    rss_max_.Clear();
  } else {
    rss_max_.DropBefore(oldest_->rss_seq);
  }
}

void Sampler::EraseLocked(std::unordered_map<uint64_t, Window>::iterator it) {
  UnscheduleLocked(it->second);
  gpu_.CloseLocked(it->first);
  windows_.erase(it);  // no wake-up needed: the threads park by themselves if nothing is left
}

bool Sampler::SetPids(uint64_t id, std::vector<uint32_t> pids) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  gpu_.SetPidsLocked(id, std::move(pids));
  return true;
}

bool Sampler::Configure(uint64_t id, uint32_t root_pid, bool baseline_existing, bool descendants, bool timeline) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  Window& w = it->second;
  if (root_pid != 0 || timeline) MakeSpecialLocked(w);
  if (root_pid != 0) {
    w.tree.reset(new TreeState());
    w.tree->root = root_pid;
    w.tree->baseline_existing = baseline_existing;
    w.tree->descendants = descendants;
    w.is_tree = true;
    w.last_tree.root = root_pid;
    gpu_.SetPidsLocked(id, {root_pid}, true);
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

void Sampler::AppendTimelineLocked(uint64_t id, Window& w, double now, double rss, double self_cpu_ms) {
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
  gpu_.TimelineLocked(id, &p[kTlGpuProcessBytes], &p[kTlGpuUtilPercent]);
  TimelineAppend(&w.tl, p);
}

void Sampler::FillStatsLocked(uint64_t id, const Window& w, double* out, size_t len) {
  double now = proc::MonotonicMs();
  out[kWinMaxRssBytes] = rss_max_.Since(w.rss_seq);
  out[kWinSamples] = static_cast<double>(rss_samples_ > w.rss_samples ? rss_samples_ - w.rss_samples : 0);
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
  // the tree-only slots from kWinTreePssPeakBytes to the last
  static_assert(kWinTreePssRssBytes == kWindowSlots - 1, "a slot after kWinTreePssRssBytes: set it to NaN here");
  for (int i = kWinTreePssPeakBytes; i <= kWinTreePssRssBytes; i++) out[i] = NAN;
  if (w.is_tree) {
    const TreeResults& t = w.last_tree;
    out[kWinTreePssPeakBytes] = t.pss_sum_peak_bytes >= 0 ? t.pss_sum_peak_bytes : NAN;
    out[kWinTreePssSamples] = t.pss_passes;
    out[kWinTreePssIntervalMs] = PssIntervalMs(t);
    out[kWinTreePssDenied] = t.pss_denied ? 1 : 0;
    out[kWinTreeUnreadable] = t.processes_unreadable;
    out[kWinTreeIoReadBytes] = t.totals[kTcIoReadBytes];
    out[kWinTreeIoWriteBytes] = t.totals[kTcIoWriteBytes];
    out[kWinTreeMinorFaults] = t.totals[kTcMinorFaults];
    out[kWinTreeMajorFaults] = t.totals[kTcMajorFaults];
    out[kWinTreeFsInBlocks] = std::floor(t.totals[kTcFsReadBytes] / 512);
    out[kWinTreeFsOutBlocks] = std::floor(t.totals[kTcFsWriteBytes] / 512);
    out[kWinTreePssRssBytes] = t.pss_rss_sum_bytes >= 0 ? t.pss_rss_sum_bytes : NAN;
  }
  gpu_.FillLocked(id, now, out, len);
}

bool Sampler::Read(uint64_t id, double* out, size_t len, uint64_t rss_seq, double rss_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  AddRssLocked(rss_seq, rss_bytes);
  FillStatsLocked(id, it->second, out, len);
  return true;
}

bool Sampler::Close(uint64_t id, double* out, size_t len, uint64_t rss_seq, double rss_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  AddRssLocked(rss_seq, rss_bytes);  // the window's end counts for every window open with it
  if (out) FillStatsLocked(id, it->second, out, len);
  EraseLocked(it);
  return true;
}

void Sampler::CloseOwnedBy(const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = windows_.begin(); it != windows_.end();) {
    auto next = std::next(it);
    if (it->second.owner == owner) EraseLocked(it);
    it = next;
  }
}

bool Sampler::ThreadRunning() {
  std::lock_guard<std::mutex> lock(mu_);
  return rss_.active_gen != 0;
}

size_t Sampler::GpuCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_.CountLocked();
}

size_t Sampler::ReadGpuCache(double* out, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_.ReadCacheLocked(out, len);
}

bool Sampler::WaitGpuDetection(std::chrono::milliseconds timeout) {
  return gpu_.WaitDetection(timeout);
}

GpuInfoSnapshot Sampler::GpuInfo() {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_.InfoLocked();
}

void Sampler::StopThreadLocked(std::unique_lock<std::mutex>& lock, Thread& t,
                               std::chrono::steady_clock::time_point deadline) {
  uint64_t gen = t.active_gen;
  if (gen == 0) return;
  t.active_gen = 0;
  cv_.notify_all();
  bool done = state_cv_.wait_until(lock, deadline, [&t, gen] { return t.exited_gen >= gen; });
  std::thread th = std::move(t.thread);
  lock.unlock();
  if (th.joinable()) {
    if (done) {
      th.join();
    } else {
      PinThisModule();
      th.detach();  // at exit only: past the exit's bound
    }
  }
  lock.lock();
}

void Sampler::StopGpuThreadLocked(std::unique_lock<std::mutex>& lock) {
  uint64_t gen = gpu_thread_.active_gen;
  if (gen == 0) return;
  gpu_thread_.active_gen = 0;
  gpu_.StoppedLocked();    // wakes it; nothing it had is read any more
  state_cv_.notify_all();  // a GPU thread waiting for an orphan (L9) learns that it is not wanted: it ends at once
  bool running = gpu_thread_.exited_gen < gen;
  // L9: the stopped thread owns the NVML state until it exits, unless an orphan still does (then the stopped thread
  // was waiting for it and has touched nothing).
  if (running && !gpu_orphan_alive_) {
    gpu_orphan_gen_ = gen;
    gpu_orphan_alive_ = true;
  }
  std::thread th = std::move(gpu_thread_.thread);
  lock.unlock();
  if (th.joinable()) {
    if (running) {
      // L3: never waited for, whatever it is doing (a reading, nvmlShutdown, detection: seconds without persistence
      // mode); finding itself unwanted it publishes nothing, shuts NVML down and exits.
      PinThisModule();
      th.detach();
    } else {
      th.join();  // it has reported its exit: only its return is left
    }
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
  StopGpuThreadLocked(lock);
  if (exiting_) {
    // At exit the GPU thread left running gets what is left of the bound to end the call it is in (it makes no new
    // NVML call once exit began: GpuProcessExiting). Not for detection (L9).
    state_cv_.wait_until(lock, deadline, [this] { return !gpu_orphan_alive_ || gpu_.DetectingLocked(); });
  }
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
  std::vector<uint64_t> due_specials;  // ids: a window may close while the lock is released
  while (rss_.active_gen == gen) {
    if (windows_.empty()) {
      thread_wake_ms_ = INFINITY;
      ThreadParking(rss_);
      cv_.wait(lock, [this, gen] { return rss_.active_gen != gen || !windows_.empty(); });
      continue;
    }
    // What is due: a group (O(distinct intervals)) or a window with a schedule of its own; never a walk over the
    // plain windows.
    double now = proc::MonotonicMs();
    double next_due = INFINITY;
    for (const auto& kv : groups_) next_due = std::min(next_due, kv.second.next_due_ms);
    for (const Window* w : specials_) next_due = std::min(next_due, w->next_due_ms);
    if (now < next_due) {
      thread_wake_ms_ = next_due;
      ThreadParking(rss_);
      if (std::isfinite(next_due)) {
        cv_.wait_until(lock, DeadlineIn(next_due - now));
      } else {
        cv_.wait(lock);  // open windows, none scheduled (never while the tables agree): until a change wakes it
      }
      continue;
    }
    if (throw_in_threads_ & 1) {
      throw_in_threads_ &= ~1;
      throw std::bad_alloc();
    }
    bool want_rss = false;  // this process's RSS: not wanted by a tree window, which describes the tree
    bool want_cpu = false;
    for (const auto& kv : groups_) want_rss |= kv.second.next_due_ms <= now;
    // Take the due trees out so that /proc is read without the lock (window ends never wait for it).
    jobs.clear();
    due_specials.clear();
    for (Window* w : specials_) {
      if (w->next_due_ms > now) continue;
      due_specials.push_back(w->id);
      want_cpu |= w->timeline && !w->is_tree;
      want_rss |= !w->is_tree;
      if (w->tree && !w->tree_busy) {
        w->tree_busy = true;
        jobs.push_back(TreeJob{w->id, std::move(w->tree)});
      }
    }
    // The reading's number is taken now: a window opened while it is read without the lock comes after it, so a
    // reading from before a window opened is never that window's.
    uint64_t seq = 0;
    if (want_rss) {
      seq = rss_seq_.fetch_add(1);
      rss_in_flight_ = true;
      rss_flight_seq_ = seq;
    }
    bool fail_read = want_rss && fail_rss_reads_ > 0;
    if (fail_read) fail_rss_reads_--;
    lock.unlock();
    int64_t rss = want_rss ? proc::ReadSelfRssBytes() : -1;
    if (fail_read) {  // a slow failure, so that windows open while it is in flight
      rss = -1;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    double self_cpu = NAN;
    if (want_cpu) {
      double s[proc::kSnapshotSlots];
      proc::ReadSelf(s);
      self_cpu = s[proc::kCpuUserMs] + s[proc::kCpuSystemMs];
    }
    for (auto& job : jobs) SampleTree(job.state.get());
    lock.lock();
    if (want_rss) {
      RssReadingDoneLocked(rss >= 0);
      AddRssLocked(seq, rss >= 0 ? static_cast<double>(rss) : NAN);
    }
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
      // No live process: the root while its pid is still its own, else pid 0, which names no process (an empty
      // list would mean this process).
      std::vector<uint32_t> pids = t.live_pids.empty() ? std::vector<uint32_t>{t.root_gone ? 0u : t.root} : t.live_pids;
      std::sort(pids.begin(), pids.end());
      gpu_.SetPidsLocked(job.id, std::move(pids));
    }
    if (orphaned) {
      // The trees of windows closed while they were sampled end now, outside the lock: their kept-open /proc
      // descriptors must not wait for the next round, which may be a long interval away or never come (parked).
      lock.unlock();
      jobs.clear();
      lock.lock();
    }
    // Due means due at the first pass (`now`), which chose what to read: a window that became due during a long
    // tree read was not read for, and keeps its tick for the next round. Keep each cadence; after falling behind
    // (suspended, overloaded), skip the missed ticks instead of bursting.
    double done_ms = proc::MonotonicMs();
    for (auto& kv : groups_) {
      Group& g = kv.second;
      if (g.next_due_ms > now) continue;
      double step = kv.first;
      g.next_due_ms += step;
      if (g.next_due_ms <= done_ms) g.next_due_ms = (std::floor(done_ms / step) + 1) * step;
    }
    for (uint64_t id : due_specials) {
      auto it = windows_.find(id);
      if (it == windows_.end() || !it->second.special) continue;  // closed meanwhile
      Window* w = &it->second;
      if (w->timeline) AppendTimelineLocked(w->id, *w, done_ms, static_cast<double>(rss), self_cpu);
      double step = w->interval_ms;
      bool ramping = w->ramp_ms > 0;
      if (w->ramp_ms > 0) {
        step = w->ramp_ms;
        w->ramp_ms *= 2;
        if (w->ramp_ms >= w->interval_ms) w->ramp_ms = 0;
      }
      if (w->tree) {
        // A big tree stretches the interval so that sampling stays within its CPU budget (tree.h).
        step = EffectiveIntervalMs(*w->tree, step);
        if (!ramping) {
          w->tree_step_sum_ms += step;
          w->tree_steps++;
        }
      }
      w->next_due_ms += step;
      if (w->next_due_ms <= done_ms) w->next_due_ms = done_ms + step;
    }
  }
  ThreadExiting(rss_, gen);
  if (gen > rss_.exited_gen) rss_.exited_gen = gen;
  state_cv_.notify_all();
}

void Sampler::RunGpuLoop(uint64_t gen, bool* owner) {
  proc::NameThisThread("taskmeter-gpu");
  std::unique_lock<std::mutex> lock(mu_);
  GpuThreadStarted(gen);
  // L9: a predecessor left to finish its work owns the NVML state until it exits (it says so itself). If its call in
  // flight runs past its bound, the driver is hung: no GPU for the rest of the process.
  while (gpu_orphan_alive_ && gpu_thread_.active_gen == gen) {
    double now = proc::MonotonicMs();
    double hung_at = gpu_.HungAtLocked(now);
    if (now >= hung_at) {
      gpu_abandoned_ = true;
      gpu_.SetHungLocked();
      break;
    }
    state_cv_.wait_until(lock, DeadlineIn(hung_at - now));
  }
  if (gpu_thread_.active_gen == gen && !gpu_abandoned_) {
    *owner = true;  // it touches NVML from here on
    gpu_.Run(gen, lock);
  }
  GpuThreadExitingLocked(gen);
}

void Sampler::GpuThreadExitingLocked(uint64_t gen) {
  // L7: its final CPU time moves into retired_cpu_ms_ (all of it when it never published any).
  double ms = proc::SelfThreadCpuMs();
  double counters[proc::kCounterSlots] = {};
  GpuCpu* c = GpuCpuOf(gen);
  if (c != nullptr) {
    if (std::isnan(ms)) ms = c->cpu_ms;
    for (int i = 0; i < proc::kCounterSlots; i++) counters[i] = c->counters[i];
    gpu_cpu_.erase(gpu_cpu_.begin() + (c - gpu_cpu_.data()));
  }
  proc::SelfThreadCounters(counters);
  if (!std::isnan(ms)) retired_cpu_ms_ += ms;
  for (int i = 0; i < proc::kCounterSlots; i++) retired_counters_[i] += counters[i];
  if (gen > gpu_thread_.exited_gen) gpu_thread_.exited_gen = gen;
  if (gpu_orphan_alive_ && gpu_orphan_gen_ == gen) gpu_orphan_alive_ = false;  // only the orphan clears it (L9)
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
  bool owner = false;
  try {
    RunGpuLoop(gen, &owner);
  } catch (const std::exception& e) {
    ThreadFailed(gpu_thread_, gen, e.what(), owner);
  } catch (...) {
    ThreadFailed(gpu_thread_, gen, "unknown exception", owner);
  }
}

void Sampler::ThreadFailed(Thread& t, uint64_t gen, const char* what, bool owner) {
  bool gpu = &t == &gpu_thread_;
  try {
    std::lock_guard<std::mutex> lock(mu_);
    // A GPU thread no longer wanted (an orphan, or one waiting for it) publishes nothing (L9).
    if (!gpu || gpu_thread_.active_gen == gen) {
      thread_error_ = std::string("the ") + (gpu ? "GPU" : "RSS sampler") + " thread failed: " + what;
      if (gpu) gpu_.ThreadFailedLocked(thread_error_);
    }
  } catch (...) {
    // no memory for the message: the thread still ends cleanly below
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (gpu) {
    if (owner) {
      // It owns NVML (L9): shut down as the loop's end would, so that nothing of this library stays loaded or
      // initialised for a later detection.
      gpu_.ClearInFlightLocked();
      gpu_.ShutdownLocked(lock);
    }
    GpuThreadExitingLocked(gen);
    return;
  }
  if (rss_in_flight_) RssReadingDoneLocked(false);
  ThreadExiting(t, gen);
  if (gen > t.exited_gen) t.exited_gen = gen;
  state_cv_.notify_all();
}

void Sampler::FailRssReadsForTest(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_rss_reads_ = n;
}

void Sampler::ThrowBadAllocForTest(int sites) {
  std::lock_guard<std::mutex> lock(mu_);
  throw_bad_alloc_ = sites;
}

void Sampler::ThrowInThreadsForTest(int which) {
  std::lock_guard<std::mutex> lock(mu_);
  throw_in_threads_ = which;
  cv_.notify_all();
  if (which & 2) gpu_.RequestReadingLocked();
}

}  // namespace taskmeter
