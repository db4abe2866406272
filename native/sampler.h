// The sampler: process-wide background threads shared by every open window of every addon instance (main thread and
// worker threads). They never touch JS or libuv, so they cannot keep the event loop alive.
//
// - The RSS thread reads RSS at each window's interval; it is parked on a condition variable while no window is open.
// - The GPU thread owns every NVML call: detection at load, then device and process readings while a window is open
//   (or when snapshot() finds the cache old). It is separate so that a driver call that hangs can never delay RSS
//   sampling, a window's end or process exit: a hung call only makes GPU data stale, which the usage reports.
//
// Lifecycle invariants (the process-wide threads; each one is checked where the code relies on it):
// L1. Retain, Release, Stop and every thread start run under lifecycle_mu_, taken before mu_ and never while mu_ is
//     held. "Is this the last reference?" and "stop the threads" are therefore one step: no Retain, and no Open that
//     would start the RSS thread, can run in between.
// L2. refs_ changes only under lifecycle_mu_. Release stops the threads only when refs_ is 0 after its own decrement,
//     still holding lifecycle_mu_; a Retain that comes later starts fresh threads.
// L3. A Thread's std::thread is assigned only while it is not joinable. It stops being joinable only by join() (after
//     the thread reported its exit) or by detach() (a GPU thread stuck in a driver call; no GPU thread starts again,
//     and the addon's module is pinned so that Node cannot unload code the detached thread will return into). At
//     the last release the RSS thread, which makes no call that can hang, is always joined.
// L4. active_gen becomes non-zero only after the std::thread exists: mu_ is held across the construction and the
//     assignment, and the new thread takes mu_ before it reads active_gen. A construction that throws (EAGAIN under
//     a pids limit) leaves active_gen at 0 and is reported, never thrown across N-API.
// L5. Once the process has begun to exit (StopAtExit), no thread starts again.
// L6. Windows are keyed by 64-bit ids below 2^53 (exact in a JS number); an id is never given to a second window
//     while the first is open.
// L7. Each thread publishes its own CPU time (its thread clock) under mu_ each time it parks, and at exit moves its
//     final CPU time into retired_cpu_ms_: OwnCpuMsLocked() never goes backwards, and is exact whenever the threads
//     are parked (a parked thread's clock does not advance), which is when windows open and close unless a sample is
//     being taken at that very moment (then it lags by that one sample's work, a few µs). Reading the published
//     values costs nothing on the hot path, where reading another thread's clock would be a syscall per thread.
// L8. The GPU thread never calls getenv (it races with `process.env.X = …` on a JS thread). Its environment
//     (gpu_env_) is read on the JS thread of the environment whose Retain starts the GPU thread, and written only
//     there: under lifecycle_mu_ and mu_, before that thread exists (StartThread), while no GPU thread is active.
//     The thread copies it under mu_ when detection starts. A Retain that finds a GPU thread active, or GPU
//     detection disabled, leaves gpu_env_ alone.
#pragma once
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gpu_window.h"
#include "layout.h"
#include "nvml/gpu.h"
#include "proc/proc.h"
#include "timeline.h"
#include "tree.h"

namespace taskmeter {

// Keeps this module loaded for the rest of the process (L3); idempotent, thread-safe. Called before a detached
// thread is started (the GPU thread on a hung driver, a spawn's waiter): it may return into this module's code after
// Node has unloaded the addon.
void PinThisModule();

// Window slots shared with src/binding.ts. A window buffer holds kWindowSlots, then kGpuWindowSlots per GPU.
#define TASKMETER_WINDOW_SLOTS(X) \
  X(WinMaxRssBytes)   /* largest RSS the sampler saw in the window; NaN before the first sample */ \
  X(WinSamples)       /* RSS samples taken in the window */ \
  X(WinIntervalMs)    /* the window's requested interval */ \
  X(WinGpuSamples)    /* GPU readings that fell inside the window */ \
  X(WinGpuIntervalMs) /* effective GPU reading interval (stretched when NVML calls are slow); NaN without GPU */ \
  X(WinGpuStaleMs)    /* > 0: an NVML call has been hanging this long at the window's end (GPU data is stale) */ \
  X(WinGpuFromCache)  /* 1: no reading fell inside the window; GPU values are the latest cached ones */ \
  /* Process-tree windows (see Configure); NaN otherwise. */ \
  X(WinTreeRssBytes)     /* the tree's summed RSS at the last sample */ \
  X(WinTreeRssPeakBytes) /* the largest summed RSS sampled */ \
  X(WinTreeMaxHwmBytes)  /* the largest single-process peak (VmHWM) seen */ \
  X(WinTreeMaxHwmPid) \
  X(WinTreeCpuUserMs) /* sampled CPU of the tree since tracking began (ms, clock-tick resolution) */ \
  X(WinTreeCpuSystemMs) \
  X(WinTreeProcesses) /* processes seen in the tree */ \
  X(WinTreeRootAlive) /* 1 while the root lives */ \
  X(WinTreeSamples) \
  X(WinTreeRssFirstBytes) /* the summed RSS at the first sample that saw any */ \
  X(WinTreeIntervalMs)    /* the tree sampler's mean interval after its ramp, stretched to its cost budget (tree.h) */ \
  X(WinGpuProcessIntervalMs) /* effective interval of the process-list readings (paced by their cost); NaN w/o GPU */ \
  X(WinSamplerCpuMs)         /* CPU taskmeter's own threads used while the window was open (not the task's) */ \
  X(WinTreePssPeakBytes)     /* the largest summed PSS of the tree's PSS passes (tree.h); NaN: none */ \
  X(WinTreePssSamples)       /* PSS passes that gave a figure */ \
  X(WinTreePssIntervalMs)    /* their mean interval, paced by their cost; NaN with fewer than two */ \
  X(WinTreePssDenied)        /* 1: a live process's PSS was not ours to read (such a pass gives no figure) */ \
  X(WinTreeUnreadable)       /* processes found alive but unreadable (EPERM, hidepid) */ \
  X(WinTreeIoReadBytes)      /* storage bytes read by the tree since tracking began (/proc/<pid>/io); NaN: none */ \
  X(WinTreeIoWriteBytes) \
  /* end */
TASKMETER_ENUM(WindowSlot, TASKMETER_WINDOW_SLOTS, kWindowSlots)
// Timeline columns: native/timeline.h.
#define TASKMETER_GPU_WINDOW_SLOTS(X) \
  X(GwMemoryUsedPeakBytes) \
  X(GwProcessMemoryPeakBytes) \
  X(GwProcessMemoryEndBytes) \
  X(GwEnergyJoules) \
  X(GwUtilizationAvgPercent) \
  X(GwProcessReason)             /* nvml::ProcReason of the last reading when the process memory is null */ \
  X(GwDeviceError)               /* nvmlReturn_t of a device-wide failure (GPU_IS_LOST), else 0 */ \
  X(GwEnergyReason)              /* a gpuwin::EnergyReason (gpu_window.h) */ \
  X(GwProcessPeakFromAccounting) /* 1: the process peak is accounting mode's exact maximum, 0: sampled */ \
  X(GwProcessUtilSmPercent)      /* the window's pids' SM utilization, mean over the window's readings; NaN: none */ \
  X(GwProcessUtilMemPercent) \
  X(GwProcessUtilError) /* nvmlReturn_t of the per-process utilization call when NaN (-1: never read) */ \
  X(GwPowerSource)      /* nvml::PowerSource of the last reading */ \
  X(GwProcessSamples)   /* process-list readings inside the window */ \
  /* end */
TASKMETER_ENUM(GpuWindowSlot, TASKMETER_GPU_WINDOW_SLOTS, kGpuWindowSlots)
// Snapshot slots per GPU, after proc::kSnapshotSlots.
#define TASKMETER_GPU_SNAPSHOT_SLOTS(X) \
  X(GsMemoryUsedBytes) \
  X(GsMemoryTotalBytes) \
  X(GsProcessMemoryBytes) \
  X(GsUtilizationPercent) \
  X(GsPowerWatts) \
  X(GsEnergyJoules) /* cumulative since taskmeter first read this GPU */ \
  X(GsAgeMs) \
  X(GsProcessReason) \
  X(GsPowerSource) /* nvml::PowerSource */ \
  /* end */
TASKMETER_ENUM(GpuSnapshotSlot, TASKMETER_GPU_SNAPSHOT_SLOTS, kGpuSnapshotSlots)

// Where GPU detection stands (gpuInfo().state is the lower-case name).
#define TASKMETER_GPU_STATES(X) \
  X(Pending) \
  X(Ready) \
  X(Unavailable) \
  X(Disabled) \
  /* end */
enum class GpuState : int { TASKMETER_GPU_STATES(TASKMETER_ENUM_ENTRY) };

struct GpuInfoSnapshot {
  GpuState state;
  std::string reason;
  std::string library;
  std::string driver_version;
  std::string nvml_version;
  std::vector<nvml::DeviceStatic> devices;
  bool own_pid_namespace;
  int process_list_version;
  size_t process_entry_stride;
  std::string reason_code;  // gpuInfo().reasonCode
  int pid_match = 0;        // nvml::PidMatch
  std::string device_order = "PCI_BUS_ID";
  bool device_order_certain = true;
  std::string device_order_note = "";
};

class Sampler {
 public:
  // The process-wide instance. Deliberately never destroyed: a thread may still be running (stuck in a driver call)
  // while static destructors run at exit().
  static Sampler& Instance();

  // Every addon instance retains the sampler while its environment lives. The first retain starts GPU detection,
  // with `env` (nvml::ReadEnv(), read by the caller on its JS thread) as the GPU thread's environment (L8).
  void Retain(nvml::Env env);
  // At the last release the threads are stopped and joined (bounded wait: a thread stuck in a driver call is
  // detached) and NVML is shut down and unloaded.
  void Release();

  // Opens a window sampled every interval_ms; owner identifies the addon instance so its windows close at teardown.
  // Starts the RSS thread if it is not running; if it cannot be started the window still opens, unsampled (its
  // stats then show 0 samples) and ThreadError() says why. Never throws.
  uint64_t Open(uint32_t interval_ms, const void* owner);
  // Which pids the window's GPU process memory counts (empty: this process).
  bool SetPids(uint64_t id, std::vector<uint32_t> pids);
  // Makes the window follow the process tree rooted at root_pid (0: none) and/or record a timeline. A tree window
  // samples fast at first (1, 2, 4 … ms up to its interval) to catch short-lived commands.
  bool Configure(uint64_t id, uint32_t root_pid, bool baseline_existing, bool descendants, bool timeline);
  // Moves the window's timeline out (kTimelineColumns per point) and the command name of its largest process.
  bool TakeTimeline(uint64_t id, std::vector<double>* points, std::string* max_hwm_comm);
  // Copies the window's stats into out (kWindowSlots + kGpuWindowSlots × GPUs). False for an unknown id.
  bool Read(uint64_t id, double* out, size_t len);
  bool Close(uint64_t id, double* out, size_t len);
  void CloseOwnedBy(const void* owner);
  size_t OpenCount();
  bool ThreadRunning();
  // Why the last thread start failed ("" if none did).
  std::string ThreadError();
  // CPU time of taskmeter's own threads (RSS and GPU) since the process loaded the addon, ms.
  double OwnCpuMs();

  // Test hooks: the id the next window gets (ids wrap to 1 past 2^53 - 1, skipping ids in use); make the next n
  // thread starts fail as std::thread does under a pids limit.
  void SetNextIdForTest(uint64_t id);
  void FailThreadStartsForTest(int n);
  // Makes the RSS thread (bit 1) and/or the GPU thread (bit 2) throw std::bad_alloc at its next round.
  void ThrowInThreadsForTest(int which);

  // Fills kGpuSnapshotSlots per GPU from the cache (no NVML call); asks the GPU thread for a fresh reading when the
  // cache is old. Returns the number of GPUs written.
  size_t ReadGpuCache(double* out, size_t len);
  // Waits (at most timeout) for GPU detection; true when it finished.
  bool WaitGpuDetection(std::chrono::milliseconds timeout);
  GpuInfoSnapshot GpuInfo();
  size_t GpuCount();

  // At process exit: stops the threads, waiting at most `wait` (for lifecycle_mu_ and for the threads together),
  // and lets none start again (L5). No dlclose of NVML here.
  void StopAtExit(std::chrono::milliseconds wait);

 private:
  Sampler() = default;
  struct GpuWindow {
    double memory_used_peak = NAN;
    double process_peak = NAN;
    double process_end = NAN;
    double energy_j = 0;
    bool energy_valid = true;
    int energy_reason = 0;
    double util_sum = 0;
    uint32_t util_n = 0;
    int process_reason = nvml::kProcNoData;
    int device_error = 0;
    uint32_t process_samples = 0;
    bool acct_base_set = false;
    double acct_base = NAN;
    double acct_end = NAN;
    double putil_sm_sum = 0, putil_mem_sum = 0;
    uint32_t putil_n = 0;
    int putil_error = -1;
    int power_source = 0;
  };
  struct Window {
    const void* owner;
    double own_cpu_open_ms;  // OwnCpuMsLocked() at open
    double interval_ms;
    double open_ms;
    double next_due_ms;
    double max_rss_bytes;
    uint32_t samples;
    uint32_t gpu_samples;
    std::vector<uint32_t> pids;
    std::vector<GpuWindow> gpu;
    double ramp_ms = 0;               // > 0: the next interval while ramping up to interval_ms
    std::unique_ptr<TreeState> tree;  // moved out while the RSS thread samples it
    bool is_tree = false;
    bool tree_busy = false;
    uint32_t tree_samples = 0;
    double tree_step_sum_ms = 0;  // the tree's intervals after the ramp, stretched (see tree.h), and their count
    uint32_t tree_steps = 0;
    TreeResults last_tree;  // the results of the last sample: what readers see
    bool timeline = false;
    Timeline tl;  // see native/timeline.h
  };
  struct GpuCache {
    double t_ms = NAN;
    nvml::DeviceReading reading;
    nvml::ProcessList processes;  // from the last reading that read the lists
    double processes_t_ms = NAN;
    std::vector<nvml::ProcessUtil> process_util;  // and its per-process utilization samples
    int process_util_error = -1;
    double self_process_bytes = NAN;
    int self_reason = nvml::kProcNoData;
    double energy_total_j = 0;  // integrated since the first reading
    bool energy_known = false;
    double last_counter_mj = -1;
  };
  struct Thread {
    std::thread thread;
    uint64_t active_gen = 0;  // 0: should not run
    uint64_t exited_gen = 0;
    double parked_cpu_ms = 0;  // L7: its own CPU time when it last parked
    uint64_t cpu_gen = 0;      // the generation that published parked_cpu_ms
  };

  // Both need lifecycle_mu_ held (L1) and take mu_ themselves.
  void EnsureRssThread();
  void EnsureGpuThread(nvml::Env env);
  // Starts t running fn(gen) (L3, L4); false (with thread_error_ set) if the thread could not be created.
  template <typename Fn>
  bool StartThread(Thread& t, Fn fn, const char* what);
  void ThreadStarted(Thread& t, uint64_t gen);  // on the new thread, under mu_
  void ThreadParking(Thread& t);                // on the thread, under mu_, before each wait
  void ThreadExiting(Thread& t, uint64_t gen);  // on the thread, under mu_, last
  double OwnCpuMsLocked();
  void StopLocked(std::chrono::milliseconds wait, bool unload);  // lifecycle_mu_ held
  void RunRss(uint64_t gen);  // RunRssLoop, ending cleanly on an exception (ThreadFailed)
  void RunGpu(uint64_t gen);  // RunGpuLoop, likewise
  void RunRssLoop(uint64_t gen);
  void RunGpuLoop(uint64_t gen);
  void ThreadFailed(Thread& t, uint64_t gen, const char* what);
  void AppendTimelineLocked(Window& w, double now, double rss, double self_cpu_ms);
  void ApplyGpuReadingsLocked(double t_prev, double t_start, double t_now, std::vector<nvml::DeviceReading>& readings);
  void FillStatsLocked(const Window& w, double* out, size_t len);
  double ProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, int* reason) const;
  double GpuIntervalLocked() const;
  double ProcessIntervalLocked() const;
  void StopThreadLocked(std::unique_lock<std::mutex>& lock, Thread& t, std::chrono::steady_clock::time_point deadline);

  // L1: serializes Retain, Release, Stop and thread starts (StopAtExit waits for it with a bound).
  std::mutex lifecycle_mu_;
  std::atomic<bool> exiting_{false};      // L5: set first thing at exit, even when lifecycle_mu_ cannot be taken
  std::atomic<bool> rss_started_{false};  // rss_.active_gen != 0; lets Open skip lifecycle_mu_
  std::mutex mu_;                         // the data: windows, thread generations, GPU cache
  std::condition_variable cv_;            // wakes the RSS thread
  std::condition_variable gpu_cv_;        // wakes the GPU thread
  std::condition_variable state_cv_;      // thread exits, detection done
  std::unordered_map<uint64_t, Window> windows_;
  uint64_t next_id_ = 1;  // L6
  std::string thread_error_;
  int fail_thread_starts_ = 0;
  int throw_in_threads_ = 0;   // ThrowInThreadsForTest
  double retired_cpu_ms_ = 0;  // L7
  int refs_ = 0;
  uint64_t last_gen_ = 0;
  Thread rss_;
  Thread gpu_;
  bool unload_on_stop_ = true;
  bool gpu_abandoned_ = false;  // a GPU thread was left stuck in a driver call: never start another
  // When the RSS thread will next wake by itself (ms, monotonic; INFINITY while parked). Open() wakes it only if the
  // new window is due earlier, so a short measureSync() costs no futex wake in the common case.
  double thread_wake_ms_ = INFINITY;

  // GPU state: written by the GPU thread under mu_ (except gpus_, which only that thread touches while detecting).
  nvml::Gpus gpus_;
  GpuState gpu_state_ = GpuState::kPending;
  GpuInfoSnapshot gpu_info_;
  std::vector<GpuCache> gpu_cache_;
  uint32_t self_pid_ = 0;
  double gpu_poll_started_ms_ = NAN;       // NaN: no NVML reading in flight (the watchdog looks at this)
  double gpu_slow_call_started_ms_ = NAN;  // detection or nvmlShutdown in flight since (NaN: none); see kSlowCallHangMs
  double gpu_cost_ms_ = 0;                 // what a round of cheap readings (device memory, power…) costs (median)
  double list_cost_ms_ = 0;                // what a round of process-list readings costs (median)
  gpuwin::CostEstimate cheap_costs_;
  gpuwin::CostEstimate list_costs_;
  double last_list_ms_ = NAN;
  nvml::Env gpu_env_;  // L8
  double last_gpu_poll_ms_ = NAN;
  bool gpu_refresh_requested_ = false;
  bool gpu_parked_ = false;  // the GPU thread waits for a window (Open() wakes it only then)
  double last_refresh_request_ms_ = -INFINITY;
};

}  // namespace taskmeter
