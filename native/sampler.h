// The sampler: process-wide background threads shared by every open window of every addon instance (main thread and
// worker threads). They never touch JS or libuv, so they cannot keep the event loop alive.
//
// - The RSS thread reads RSS for the open windows; it is parked on a condition variable while no window is open. Its
//   cost does not grow with the number of open windows: windows are grouped by interval, each group is due on the
//   multiples of its interval (phase-aligned, so a 10 ms and a 100 ms group share every 10th tick), and one reading
//   serves every window open at the time, due or not. A window's peak is the largest reading since it opened, kept
//   in one structure for all windows (native/max_since.h), and its sample count the difference of one counter, both
//   read when the window is read or closed. Only windows with per-window work (a process tree to read, a timeline
//   to append to) keep a schedule of their own. Opening and closing a window is O(1), whatever is open.
// - The GPU thread owns every NVML call: detection at load, then device and process readings while a window is open
//   (or when snapshot() finds the cache old). Its work and the GPU state are native/gpu_sampler.h; this class starts,
//   stops and abandons it like the RSS thread.
//
// Lifecycle invariants (the process-wide threads; each one is checked where the code relies on it):
// L1. Retain, Release, Stop and every thread start run under lifecycle_mu_, taken before mu_ and never while mu_ is
//     held. "Is this the last reference?" and "stop the threads" are therefore one step: no Retain, and no Open that
//     would start the RSS thread, can run in between.
// L2. refs_ changes only under lifecycle_mu_. Release stops the threads only when refs_ is 0 after its own decrement,
//     still holding lifecycle_mu_; a Retain that comes later starts fresh threads (or adopts a GPU thread still
//     detecting, L9).
// L3. A Thread's std::thread is assigned only while it is not joinable. It stops being joinable only by join() (after
//     the thread reported its exit) or by detach(): a GPU thread still running when it is stopped (L9), or any thread
//     still running when exit's bound runs out. Before a detach the addon's module is pinned, so that Node cannot
//     unload code the detached thread will return into. At the last release the RSS thread, which makes no call that
//     can hang, is always joined.
//     At exit (StopAtExit, bounded: the process never waits long for a driver) a GPU thread still running gets what
//     is left of the bound to end the NVML call it is in, and makes no new NVML call once exit has begun (no
//     nvmlShutdown either: the process's end releases what NVML holds). StopAtExit also runs from an exit handler
//     registered each time NVML is loaded, so before NVML's own exit handlers. What cannot be ruled out: a call that
//     outlasts the bound (a driver that hangs, or a detection: nvmlInit takes seconds without persistence mode) is
//     still running while exit() runs NVML's exit handlers and the process ends; the thread then dies with the
//     process, inside the call, as any thread does at exit. Nothing of taskmeter runs after the call returns but
//     this leaked object's code in the pinned module.
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
//     (GpuSampler's env_) is read on the JS thread of the environment whose Retain starts the GPU thread, and written
//     only there: under lifecycle_mu_ and mu_, before that thread exists (StartThread), while no GPU thread is active.
//     The thread copies it under mu_ when detection starts. A Retain that finds a GPU thread active, adopts one still
//     detecting (L9), or finds GPU detection disabled, leaves it alone.
// L9. Stopping never waits for the GPU thread, nor for the driver (detection, a reading in flight, nvmlShutdown): a GPU
//     thread still running is detached (the module pinned, L3) and left to finish as the orphan; it then finds itself
//     unwanted, publishes nothing (not even its failure) and shuts NVML down. It owns the NVML state (GpuSampler's
//     gpus_) until it exits, and only it clears gpu_orphan_alive_ as it exits. A Retain that comes while the orphan
//     still detects adopts it (active_gen becomes its generation again; it keeps the ended environment's settings,
//     L8); one that comes later starts a new thread, which waits until the orphan has exited (or the new thread is
//     stopped itself: the stop wakes it) before it touches NVML. If the orphan's call in flight runs past its bound
//     (GpuSampler::HungAtLocked) the driver is hung: the waiting thread says so (GPU_HUNG) and no GPU thread starts
//     again. A stopped thread that was waiting for an orphan has touched nothing; it ends at once.
#pragma once
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gpu_sampler.h"
#include "layout.h"
#include "max_since.h"
#include "nvml/gpu.h"
#include "proc/proc.h"
#include "timeline.h"
#include "tree.h"

namespace taskmeter {

// Keeps this module loaded for the rest of the process (L3); idempotent, thread-safe. Called before a thread is left
// running unjoined (a GPU thread still running when it is stopped, L9; a thread past exit's bound; a spawn's
// waiter): it may return into this module's code after Node has unloaded the addon.
void PinThisModule();

// Window slots shared with src/binding.ts. A window buffer holds kWindowSlots, then kGpuWindowSlots per GPU.
#define TASKMETER_WINDOW_SLOTS(X) \
  X(WinMaxRssBytes)   /* largest RSS read since the window opened (RSS thread, window edges); NaN: none */ \
  X(WinSamples)       /* RSS readings the RSS thread took (successfully) while the window was open */ \
  X(WinIntervalMs)    /* the window's requested interval */ \
  X(WinGpuSamples)    /* GPU device readings that fell inside the window */ \
  X(WinGpuIntervalMs) /* the device readings' period (stretched to the budget: gpu_sampler.h); NaN without GPU */ \
  X(WinGpuStaleMs)    /* > 0: an NVML call has been hanging this long at the window's end (GPU data is stale) */ \
  X(WinGpuEnergyIntervalMs) /* the energy counter's period (each GPU); NaN without GPU */ \
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
  X(WinGpuProcessIntervalMs)     /* the process lists' period (read with the device readings); NaN without GPU */ \
  X(WinSamplerCpuMs)             /* CPU taskmeter's own threads used while the window was open (not the task's) */ \
  X(WinGpuProcessUtilIntervalMs) /* per-process utilization's period (each GPU); NaN without GPU */ \
  X(WinGpuStretched)             /* bit per gpuwin::GpuKind read slower than wanted, to stay within the budget */ \
  X(WinTreePssPeakBytes)         /* the largest summed PSS of the tree's PSS passes (tree.h); NaN: none */ \
  X(WinTreePssSamples)           /* PSS passes that gave a figure */ \
  X(WinTreePssIntervalMs)        /* their mean interval, paced by their cost; NaN with fewer than two */ \
  X(WinTreePssDenied)            /* 1: a live process's PSS was not ours to read (such a pass gives no figure) */ \
  X(WinTreeUnreadable)           /* processes found alive but unreadable (EPERM, hidepid) */ \
  X(WinTreeIoReadBytes)          /* the tree's rchar since tracking began (/proc/<pid>/io); NaN: none read */ \
  X(WinTreeIoWriteBytes)         /* wchar */ \
  X(WinTreeMinorFaults)          /* the tree's page faults since tracking began (stat); NaN: none read */ \
  X(WinTreeMajorFaults) \
  X(WinTreeFsInBlocks)  /* read_bytes / 512 (ru_inblock's unit) */ \
  X(WinTreeFsOutBlocks) /* write_bytes / 512 */ \
  X(WinTreePssRssBytes) /* the largest RSS sum a PSS pass with a figure read (how near the RSS peak they came) */ \
  /* end */
TASKMETER_ENUM(WindowSlot, TASKMETER_WINDOW_SLOTS, kWindowSlots)
// Timeline columns: native/timeline.h. GPU window and snapshot slots: native/gpu_sampler.h.

class Sampler final : private GpuSampler::Host {
 public:
  // The process-wide instance. Deliberately never destroyed: a GPU thread may still be running (an orphan finishing
  // its NVML work, L9, or one stuck in a driver call) while static destructors run at exit().
  static Sampler& Instance();

  // Every addon instance retains the sampler while its environment lives. The first retain starts GPU detection,
  // with `env` (nvml::ReadEnv(), read by the caller on its JS thread) as the GPU thread's environment (L8) — unless
  // it adopts a GPU thread still detecting for an ended environment, which keeps that environment's settings (L9).
  void Retain(nvml::Env env);
  // At the last release the threads are stopped: the RSS thread joined, the GPU thread never waited for (L9: it
  // shuts NVML down and unloads it by itself).
  void Release();

  // Opens a window sampled every interval_ms; owner identifies the addon instance so its windows close at teardown.
  // Starts the RSS thread if it is not running; if it cannot be started the window still opens, unsampled (its
  // stats then show 0 samples) and ThreadError() says why. Never throws.
  // *edge_seq (if given) is the number of the window's own start reading, reserved in the same step (ObserveRss).
  uint64_t Open(uint32_t interval_ms, const void* owner, uint64_t* edge_seq = nullptr);
  // Which pids the window's GPU process memory counts (empty: this process).
  bool SetPids(uint64_t id, std::vector<uint32_t> pids);
  // Makes the window follow the process tree rooted at root_pid (0: none) and/or record a timeline. A tree window
  // samples fast at first (1, 2, 4 … ms up to its interval) to catch short-lived commands.
  bool Configure(uint64_t id, uint32_t root_pid, bool baseline_existing, bool descendants, bool timeline);
  // Moves the window's timeline out (kTimelineColumns per point) and the command name of its largest process.
  bool TakeTimeline(uint64_t id, std::vector<double>* points, std::string* max_hwm_comm);
  // Copies the window's stats into out (kWindowSlots + kGpuWindowSlots × GPUs). False for an unknown id. rss_bytes
  // (NaN: none) is this process's RSS, read on the caller's thread just before, as reading number rss_seq
  // (ReserveRssSeq): like every reading, it counts for every window open now, so the window's endpoints are in the
  // peak of every window around it.
  bool Read(uint64_t id, double* out, size_t len, uint64_t rss_seq = 0, double rss_bytes = NAN);
  bool Close(uint64_t id, double* out, size_t len, uint64_t rss_seq = 0, double rss_bytes = NAN);
  // The number of an RSS reading about to be taken on a JS thread, reserved before it is taken (no lock: one atomic
  // increment). A window that opens later gets a later number, so a reading taken before a window opened never
  // counts for it, whichever thread adds its reading first.
  uint64_t ReserveRssSeq() { return rss_seq_.fetch_add(1); }
  // An RSS reading taken on a JS thread (a window's start snapshot) as number seq: for every window open now.
  void ObserveRss(uint64_t seq, double rss_bytes);
  void CloseOwnedBy(const void* owner);
  size_t OpenCount();
  bool ThreadRunning();
  // Why the last thread start failed ("" if none did).
  std::string ThreadError();
  // CPU time of taskmeter's own threads (RSS and GPU) since the process loaded the addon, ms.
  double OwnCpuMs();
  // Takes what taskmeter's own threads added to the process's getrusage counters (their wake-ups are voluntary
  // context switches: one per sample) out of a snapshot's (proc::kMinorFaults …), as OwnCpuMs is out of its CPU.
  // Where the OS has no per-thread counters nothing is taken out.
  void SubtractOwnCounters(double* snapshot);

  // Test hooks: the id the next window gets (ids wrap to 1 past 2^53 - 1, skipping ids in use); make the next n
  // thread starts fail as std::thread does under a pids limit.
  void SetNextIdForTest(uint64_t id);
  void FailThreadStartsForTest(int n);
  // Makes the RSS thread (bit 1) and/or the GPU thread (bit 2) throw std::bad_alloc at its next round.
  void ThrowInThreadsForTest(int which);
  // Makes the next allocation at these sites throw std::bad_alloc, once each: Open's (bit 1), the next RSS reading's
  // add (bit 2).
  enum BadAllocSite { kBadAllocOpen = 1, kBadAllocRssAdd = 2 };
  void ThrowBadAllocForTest(int sites);
  // Makes the RSS thread's next n readings fail, as an unreadable /proc/self/statm does, after 200 µs.
  void FailRssReadsForTest(uint64_t n);

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
  struct Window {
    uint64_t id;
    const void* owner;
    double own_cpu_open_ms;  // OwnCpuMsLocked() at open
    double interval_ms;
    double open_ms;
    uint64_t rss_seq;      // the number the next RSS reading had when the window opened (its peak: rss_max_ since)
    uint64_t rss_samples;  // rss_samples_ at open (+1 when a reading was in flight: it predates the window; taken
                           // back if that reading fails, RssReadingDoneLocked)
    // Open windows in the order they opened (so by rss_seq): the oldest bounds what rss_max_ must keep.
    Window* older = nullptr;
    Window* newer = nullptr;
    // A window with work of its own (a tree, a timeline) keeps its own schedule; the others are in groups_.
    bool special = false;
    size_t special_index = 0;  // in specials_
    double next_due_ms = INFINITY;
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
  // The plain windows of one interval: due together on the multiples of the interval.
  struct Group {
    uint32_t windows = 0;
    double next_due_ms = INFINITY;
  };
  struct Thread {
    std::thread thread;
    uint64_t active_gen = 0;  // 0: should not run
    uint64_t exited_gen = 0;
    // The RSS thread's L7 figures (the GPU threads': gpu_cpu_).
    double parked_cpu_ms = 0;                          // L7: its own CPU time when it last parked
    uint64_t cpu_gen = 0;                              // the generation that published parked_cpu_ms
    double parked_counters[proc::kCounterSlots] = {};  // L7, likewise: its getrusage counters (faults, switches…)
  };
  // L7 for a running GPU thread: an orphan and the thread that waits for it both run, each publishing its own.
  struct GpuCpu {
    uint64_t gen;
    double cpu_ms;
    double counters[proc::kCounterSlots];
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
  void GpuThreadStarted(uint64_t gen);          // on a new GPU thread, under mu_: its gpu_cpu_ entry
  GpuCpu* GpuCpuOf(uint64_t gen);
  void GpuThreadExitingLocked(uint64_t gen);  // the GPU thread's last step: L7 (its CPU retired) and L9's bookkeeping
  double OwnCpuMsLocked();
  void StopLocked(std::chrono::milliseconds wait, bool unload);  // lifecycle_mu_ held
  void RunRss(uint64_t gen);  // RunRssLoop, ending cleanly on an exception (ThreadFailed)
  void RunGpu(uint64_t gen);  // RunGpuLoop, likewise
  void RunRssLoop(uint64_t gen);
  void RunGpuLoop(uint64_t gen, bool* owner);  // *owner: it got past L9's wait (it touches NVML)
  void ThreadFailed(Thread& t, uint64_t gen, const char* what, bool owner = false);
  void AppendTimelineLocked(uint64_t id, Window& w, double now, double rss, double self_cpu_ms);
  void FillStatsLocked(uint64_t id, const Window& w, double* out, size_t len);
  // Records an RSS reading as number seq; drops what no open window can ask for any more.
  void AddRssLocked(uint64_t seq, double rss_bytes);
  // The RSS thread's reading in flight is done: counted (it read RSS), or not (it failed, or the thread did).
  void RssReadingDoneLocked(bool counted);
  // Takes the window out of its group (a plain window) or of specials_; and out of the open-order list.
  void UnscheduleLocked(Window& w);
  void EraseLocked(std::unordered_map<uint64_t, Window>::iterator it);
  void MakeSpecialLocked(Window& w);
  // The RSS thread: joined, waiting at most until deadline (then detached: at exit only).
  void StopThreadLocked(std::unique_lock<std::mutex>& lock, Thread& t, std::chrono::steady_clock::time_point deadline);
  // The GPU thread: never waited for (L9).
  void StopGpuThreadLocked(std::unique_lock<std::mutex>& lock);

  // L1: serializes Retain, Release, Stop and thread starts (StopAtExit waits for it with a bound).
  std::mutex lifecycle_mu_;
  std::atomic<bool> exiting_{false};      // L5: set first thing at exit, even when lifecycle_mu_ cannot be taken
  std::atomic<bool> rss_started_{false};  // rss_.active_gen != 0; lets Open skip lifecycle_mu_
  std::mutex mu_;                         // the data: windows, thread generations, GPU cache
  std::condition_variable cv_;            // wakes the RSS thread
  std::condition_variable state_cv_;      // thread exits, detection done
  std::unordered_map<uint64_t, Window> windows_;  // node-based: a Window's address is stable while it is open
  uint64_t next_id_ = 1;                          // L6
  std::unordered_map<uint32_t, Group> groups_;    // plain windows by interval (a few entries: distinct intervals)
  std::vector<Window*> specials_;                 // windows with a schedule of their own
  Window* oldest_ = nullptr;                      // the open-order list
  Window* newest_ = nullptr;
  MaxSince rss_max_;                  // every RSS reading, for each window's peak since it opened
  std::atomic<uint64_t> rss_seq_{0};  // the number the next RSS reading gets (Open takes it under mu_)
  uint64_t rss_samples_ = 0;          // readings the RSS thread has taken (successful ones)
  bool rss_in_flight_ = false;        // the RSS thread holds a number and reads without the lock
  uint64_t rss_flight_seq_ = 0;       // that number
  std::string thread_error_;
  int fail_thread_starts_ = 0;
  int throw_in_threads_ = 0;     // ThrowInThreadsForTest
  int throw_bad_alloc_ = 0;      // ThrowBadAllocForTest
  uint64_t fail_rss_reads_ = 0;  // FailRssReadsForTest
  void MaybeThrowBadAllocLocked(BadAllocSite site) {
    if ((throw_bad_alloc_ & site) == 0) return;
    throw_bad_alloc_ &= ~site;
    throw std::bad_alloc();
  }
  double retired_cpu_ms_ = 0;  // L7
  double retired_counters_[proc::kCounterSlots] = {};
  int refs_ = 0;
  uint64_t last_gen_ = 0;
  Thread rss_;
  Thread gpu_thread_;
  std::vector<GpuCpu> gpu_cpu_;  // L7: the running GPU threads' published CPU
  bool unload_on_stop_ = true;
  bool gpu_abandoned_ = false;  // an orphan's NVML call ran past its bound (the driver hangs): never start another
  // L9: a GPU thread left to finish its NVML work (its generation) and whether it still runs. Only that thread clears
  // gpu_orphan_alive_, as it exits (or an adoption, which makes it the wanted thread again).
  uint64_t gpu_orphan_gen_ = 0;
  bool gpu_orphan_alive_ = false;
  // When the RSS thread will next wake by itself (ms, monotonic; INFINITY while parked). Open() wakes it only if the
  // new window is due earlier, so a short measureSync() costs no futex wake in the common case.
  double thread_wake_ms_ = INFINITY;

  // The GPU thread's work and GPU state (gpu_sampler.h), under mu_.
  GpuSampler gpu_{mu_, *this};

  // GpuSampler::Host
  bool GpuThreadWanted(uint64_t gen) override { return gpu_thread_.active_gen == gen; }
  void GpuThreadParking(uint64_t gen) override;
  bool TakeGpuThrowForTest() override {
    bool t = (throw_in_threads_ & 2) != 0;
    throw_in_threads_ &= ~2;
    return t;
  }
  bool GpuUnloadOnStop() override { return unload_on_stop_; }
  bool GpuProcessExiting() override { return exiting_.load(); }
  void GpuLibraryLoaded() override;
};

}  // namespace taskmeter
