// The GPU side of the sampler: the GPU thread's work (detection, the reading loop and its pacing by measured cost,
// the cache snapshot() reads, and each window's GPU figures). The sampler (sampler.h) owns the thread's lifecycle
// and the window table; this unit shares its mutex (every method named ...Locked runs with it held) and keeps its
// own per-window GPU state, keyed by the window's id, so the window table can change shape without touching it.
//
// The GPU thread owns every NVML call. It is separate from the RSS thread so that a driver call that hangs can never
// delay RSS sampling, a window's end or process exit: a hung call only makes GPU data stale, which the usage reports.
//
// The schedule (measured on an H200, issue 16: a device reading costs ~30–60 µs a GPU, the energy counter ~3 ms of
// CPU, per-process utilization ~1.8 ms): each kind of reading (gpu_window.h GpuKind) has its own period and its own
// cost estimate (the thread's CPU clock around its calls). Device readings (memory, utilization, power, process
// lists) come at the window's interval (but at least every second: a window's energy is integrated from the power
// they read, gpu_window.h ScheduleInput::cover_ms), the energy counter every second, per-process utilization every
// second (with lastSeen: no sample lost between reads); PlanSchedule stretches them, cheapest to lose first, so that
// the thread stays within kBudget of one core. Opening or closing a window asks for a device reading (an edge) without
// waiting for it; extra edge readings use only the budget the periods leave.
//
// A window's figures come only from readings taken after it opened: with none, memory and utilization are null
// (GPU_NOT_SAMPLED). Its energy is E(close) − E(open) of the GPU's energy model (gpu_window.h EnergyModel).
#pragma once
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "gpu_window.h"
#include "layout.h"
#include "max_since.h"
#include "nvml/gpu.h"

namespace taskmeter {

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
  X(GwProcessUtilError)   /* nvmlReturn_t of the per-process utilization call when NaN (-1: never read) */ \
  X(GwPowerSource)        /* nvml::PowerSource of the last reading */ \
  X(GwProcessSamples)     /* process-list readings inside the window taken while its processes lived (or saw them) */ \
  X(GwSamples)            /* device readings inside the window (0: memory and utilization not sampled) */ \
  X(GwProcessUtilSamples) /* the driver's per-process utilization samples of the window's pids */ \
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

class GpuSampler {
 public:
  // What the GPU thread needs from the sampler's lifecycle; called with the mutex held.
  class Host {
   public:
    virtual bool GpuThreadWanted(uint64_t gen) = 0;   // false once the thread is stopped or replaced
    virtual void GpuThreadParking(uint64_t gen) = 0;  // publishes the thread's CPU time before a wait (sampler.h L7)
    virtual bool TakeGpuThrowForTest() = 0;           // ThrowInThreadsForTest asked the GPU thread to throw
    virtual bool GpuUnloadOnStop() = 0;               // unload NVML at the shutdown that ends the loop
    virtual bool GpuProcessExiting() = 0;             // exit has begun: no new NVML call (sampler.h L3)
    virtual void GpuLibraryLoaded() = 0;  // NVML was just loaded (its exit handlers registered); without the mutex

   protected:
    ~Host() = default;
  };

  GpuSampler(std::mutex& mu, Host& host) : mu_(mu), host_(host) {}

  // --- Lifecycle (the sampler's L1–L8 apply; all with the mutex held) ---
  // TASKMETER_DISABLE_GPU: no thread; gpuInfo() says so.
  void SetDisabledLocked();
  // An earlier GPU thread was abandoned in a hung call: no GPU for the rest of the process.
  void SetHungLocked();
  // A GPU thread is about to start with env (L8: written only here, before the thread exists).
  void SetPendingLocked(nvml::Env env);
  // The thread could not be started (why: the sampler's thread error).
  void StartFailedLocked(const std::string& why);
  // The wanted thread ended on an exception.
  void ThreadFailedLocked(const std::string& why);
  // The thread was stopped (it goes on, detached, until it sees so: sampler.h L9): wakes it, and drops what it had
  // published (the cache), which no later environment may read. Never allocates (exit calls it).
  void StoppedLocked();
  // Clears the in-flight markers of a thread that ended on an exception.
  void ClearInFlightLocked();
  // The GPU thread's body: detection, readings while a window is open or a reading is asked for, then NVML's
  // shutdown. Entered and left with lock (on the mutex) held.
  void Run(uint64_t gen, std::unique_lock<std::mutex>& lock);
  // nvmlShutdown (and dlclose unless at exit) by the thread that owns NVML, with the lock released meanwhile.
  void ShutdownLocked(std::unique_lock<std::mutex>& lock);
  // Wakes the thread (to see that it is stopped, or a test hook).
  void WakeLocked() { cv_.notify_all(); }
  // When a stop may treat the call in flight as hung (ms, monotonic): a reading past kHangMs, detection or shutdown
  // past kSlowCallHangMs; with nothing in flight, now + kHangMs (it ends as soon as it looks).
  double HungAtLocked(double now) const;
  // Detection in flight (sampler.h L9), and since when.
  bool DetectingLocked() const { return detecting_; }
  double DetectingSinceLocked() const { return slow_call_started_ms_; }
  static constexpr double kHangMs = 1000;
  static constexpr double kSlowCallHangMs = 25000;
  // The share of one core the GPU thread's readings may take (PlanSchedule), a little under 1 % for what the cost
  // estimates do not see (wake-ups, clock reads).
  static constexpr double kBudget = 0.009;
  // ThrowInThreadsForTest: a reading right away, so the thread reaches its throw.
  void RequestReadingLocked() {
    RequestEdgeLocked(-INFINITY);
    cv_.notify_all();
  }
  // A window edge: asks for a device reading now (or as soon as the budget allows); never waits for it.
  void RequestEdgeLocked(double now);

  // --- Windows (with the mutex held) ---
  void OpenLocked(uint64_t id, double open_ms, double interval_ms);
  // Which pids the window's GPU process memory counts (sorted, unique; empty: this process). fresh: the window
  // starts following them now (a process tree): process figures of earlier readings are dropped.
  void SetPidsLocked(uint64_t id, std::vector<uint32_t> pids, bool fresh = false);
  void CloseLocked(uint64_t id);
  // The window's GPU figures into a window buffer of len doubles (sampler.h): its kWinGpu* slots, then
  // kGpuWindowSlots per GPU after kWindowSlots (the rest NaN).
  void FillLocked(uint64_t id, double now, double* out, size_t len);
  // The timeline's GPU columns for the window: its pids' process memory on all GPUs (NaN without data) and the mean
  // utilization over GPUs (NaN without data).
  void TimelineLocked(uint64_t id, double* process_bytes, double* util_percent);

  // --- Snapshot and info ---
  // kGpuSnapshotSlots per GPU from the cache (no NVML call); asks the thread for a fresh reading when the cache is
  // old and no window is open. Returns the number of GPUs written.
  size_t ReadCacheLocked(double* out, size_t len);
  // Waits (at most timeout) for detection; true when it finished. Takes the mutex.
  bool WaitDetection(std::chrono::milliseconds timeout);
  const GpuInfoSnapshot& InfoLocked() const { return info_; }
  size_t CountLocked() const { return cache_.size(); }

 private:
  // A window's figures on one GPU. A window of its own (pids set: own_) accumulates them reading by reading; a shared
  // window (this process, never any pids) keeps only what it had at its first reading (base_*) and reads the rest
  // from Shared (ViewLocked).
  struct PerGpu {
    uint32_t samples = 0;  // device readings inside the window
    double memory_used_peak = NAN;
    double util_sum = 0;
    uint32_t util_n = 0;
    double util_last = NAN;
    int device_error = 0;
    int power_source = 0;
    double process_peak = NAN;
    double process_end = NAN;
    int process_reason = nvml::kProcNotSampled;
    uint32_t process_samples = 0;  // list readings that saw the pids, or looked while they lived
    uint32_t list_reads = 0;       // list readings inside the window, whatever they found
    bool acct_base_set = false;
    double acct_base = NAN;
    double acct_end = NAN;
    gpuwin::UtilAcc putil;
    int putil_error = -1;
    double e_open = NAN;  // E(open), J; NaN until known (no reading before the window opened)
    uint32_t backwards_open = 0;
    uint32_t no_source_open = 0;
    bool source_at_open = false;
    // A shared window's totals of Shared when its first reading came (and per-process utilization reads at open).
    double base_util_sum = 0;
    uint64_t base_util_n = 0;
    uint64_t base_self_ok = 0;
    uint64_t base_putil_reads = 0;
  };
  struct Window {
    uint64_t id;
    double open_ms;
    double open_epoch_us;  // the driver's clock at open, for per-process utilization samples
    double interval_ms;
    uint32_t samples = 0;  // device rounds inside the window (a window of its own)
    std::vector<uint32_t> pids;
    std::vector<PerGpu> gpu;
    double tl_max = NAN;   // the timeline: the largest process memory (all GPUs) since its last tick
    double tl_last = NAN;  // and the last one, held while no reading comes
    bool shared = true;    // counts this process and never had pids: reads Shared
    bool based = false;    // its first device reading came: base_num (and each PerGpu's base_*) set
    uint64_t base_num = 0;
    uint64_t tl_num = 0;         // a shared window's timeline: the reading number at its last tick
    size_t fresh_at = SIZE_MAX;  // index in fresh_ (SIZE_MAX: not there), likewise own_ and acct_pending_
    size_t own_at = SIZE_MAX;
    size_t acct_at = SIZE_MAX;
    std::multiset<uint64_t>::iterator base_it;  // in bases_ (a based shared window)
    std::multiset<double>::iterator epoch_it;   // in open_epochs_ (a shared window)
  };
  // Per GPU, what every shared window reads: running totals and "largest since" over the device readings, numbered
  // by device_num_, and this process's per-process utilization samples in time order with running totals. A
  // window's figure is the total now minus the total at its first reading, or the largest since that reading's
  // number: the work per reading does not grow with the windows open.
  struct PutilMark {
    unsigned long long timestamp_us;
    double sm_before;  // the totals before this timestamp's samples
    double mem_before;
    uint64_t n_before;
    uint64_t read;  // the per-process utilization read (its count) that brought these samples
  };
  struct Shared {
    MaxSince memory_used;
    MaxSince self_bytes;  // readings whose attribution of this process held (kProcOk)
    double util_sum = 0;
    uint64_t util_n = 0;
    double util_last = NAN;
    uint64_t self_ok = 0;
    double self_end = NAN;
    double acct_end = NAN;
    uint64_t acct_end_num = 0;
    std::deque<PutilMark> putil;
    double putil_sm = 0;
    double putil_mem = 0;
    uint64_t putil_n = 0;
    uint64_t putil_reads = 0;       // per-process utilization reads so far
    uint64_t putil_error_read = 0;  // the read (its count) of the last error (0: none)
    int putil_error = 0;
  };
  static constexpr size_t kMaxPutilMarks = 1 << 16;  // per GPU; past it, older marks are thinned (never over-count)
  struct Cache {
    double t_ms = NAN;  // the last device reading (its end)
    nvml::DeviceReading reading;
    double self_process_bytes = NAN;
    int self_reason = nvml::kProcNoData;
    gpuwin::EnergyModel energy;
    double energy_due_ms = NAN;  // the next energy-counter reading (staggered over the GPUs)
    bool energy_edge = false;    // a window edge asked for a counter reading
    bool energy_read_once = false;
    double putil_due_ms = NAN;
    bool putil_read_once = false;
  };

  void ApplyDeviceLocked(double t_start, double t_end, std::vector<nvml::DeviceReading>& readings,
                         const std::vector<uint32_t>& alive);
  void ApplyEnergyLocked(size_t i, double t, double mj);
  void ApplyProcessUtilLocked(size_t i, int error, std::vector<nvml::ProcessUtil>& samples);
  double ProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, int* reason) const;
  void ReplanLocked();  // plan_ from the cost estimates and the shortest open window
  double EvalTimeLocked(double t) const { return std::max(t, last_eval_ms_); }
  void InitEnergyLocked(Window& w, double now);
  // The pids whose liveness a device round checks (those of windows that follow processes), sorted.
  void ProbePidsLocked(std::vector<uint32_t>* out) const;
  // A window's GPU figures on GPU i as a window of its own would have them.
  PerGpu ViewLocked(const Window& w, size_t i) const;
  uint32_t SamplesLocked(const Window& w) const;
  // The accounting maximum before the window (first reading, or later ones until one succeeds).
  static void AcctBase(PerGpu& g, const Window& w, const Cache& c, const nvml::DeviceReading& r);
  // A shared window becomes a window of its own (pids set): its figures so far are copied out of Shared.
  void MakeOwnLocked(Window& w);
  // Every window waits for its first reading afresh and Shared starts empty (the GPU set changed or went away).
  void ResetWindowsLocked();
  void DropSharedLocked(Window& w);                    // out of bases_ / open_epochs_
  void DropUnneededLocked();                           // what no shared window can ask for any more
  static void ReserveOne(std::vector<Window*>& list);  // room for one more (amortized), so that ListAdd cannot throw
  static void ListAdd(std::vector<Window*>& list, size_t Window::*at, Window& w);
  static void ListRemove(std::vector<Window*>& list, size_t Window::*at, Window& w);

  std::mutex& mu_;  // the sampler's: guards everything below except gpus_
  Host& host_;
  std::condition_variable cv_;                    // wakes the GPU thread
  std::condition_variable detected_cv_;           // detection finished
  std::unordered_map<uint64_t, Window> windows_;  // node-based: a Window's address is stable while it is open
  std::map<double, uint32_t> intervals_;          // the open windows' intervals, counted (the device readings' pace)
  std::vector<Window*> fresh_;                    // windows waiting for their first device reading
  std::vector<Window*> own_;                      // windows of their own (pids): per-window work at each reading
  std::vector<Window*> acct_pending_;  // shared windows whose accounting base is still unknown (accounting on)
  std::vector<Shared> shared_;         // per GPU (cache_'s size)
  uint64_t device_num_ = 0;            // the number the next device reading gets
  std::multiset<uint64_t> bases_;      // the based shared windows' base_num (the oldest bounds what Shared keeps)
  std::multiset<double> open_epochs_;  // the shared windows' open_epoch_us (likewise for per-process utilization)
  MaxSince self_sum_;                  // the timeline: this process's memory over all GPUs, by reading number
  double self_sum_last_ = NAN;
  uint64_t self_sum_last_num_ = 0;
  std::vector<gpuwin::UtilAt> util_scratch_;
  std::vector<Window*> basing_;  // ApplyDeviceLocked's scratch
  std::vector<double> tl_sum_;

  nvml::Gpus gpus_;  // only the GPU thread touches it
  GpuState state_ = GpuState::kPending;
  GpuInfoSnapshot info_;
  std::vector<Cache> cache_;
  uint32_t self_pid_ = 0;
  double poll_started_ms_ = NAN;       // NaN: no NVML reading in flight (the watchdog looks at this)
  double slow_call_started_ms_ = NAN;  // detection or nvmlShutdown in flight since (NaN: none); see kSlowCallHangMs
  bool detecting_ = false;
  gpuwin::CostEstimate costs_[gpuwin::kGpuKinds];  // device: a round of every GPU; energy, process util: one GPU
  nvml::Env env_;                                  // sampler.h L8
  double last_device_ms_ = NAN;
  double last_eval_ms_ = -INFINITY;  // the latest time a window read E at: readings apply at or after it (causal E)
  gpuwin::Schedule plan_{};
  bool plan_dirty_ = false;  // the open windows' shortest interval changed: ReplanLocked on the GPU thread
  bool edge_pending_ = false;
  double edge_ms_ = NAN;
  double wake_at_ms_ = INFINITY;  // when the waiting GPU thread wakes by itself (INFINITY: parked)
  double last_refresh_request_ms_ = -INFINITY;
};

}  // namespace taskmeter
