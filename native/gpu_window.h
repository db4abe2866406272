// The GPU arithmetic as plain functions and small value types (no locks, no clocks, no NVML calls): the energy model
// a window's energy is read from, attribution of process-list memory and per-process utilization to a set of pids,
// the accounting-mode peak rule, the cost estimate of a kind of reading and the schedule that paces each kind by its
// cost. The GPU sampler (gpu_sampler.cc) calls them under its mutex; test/native/gpu_window_test.cc tests them.
#pragma once
#include <cstdint>
#include <vector>

#include "layout.h"
#include "nvml/gpu.h"

namespace taskmeter {
namespace gpuwin {

// Why a window's or snapshot's energy is null or estimated (exported as layouts.EnergyReason; src/gpu.ts has a
// sentence per name).
#define TASKMETER_ENERGY_REASONS(X) \
  X(EnergyOk) \
  X(EnergyNoSource)         /* neither an energy counter nor power */ \
  X(EnergyCounterBackwards) /* the counter went backwards; that stretch was integrated from power */ \
  X(EnergyMig)              /* a MIG slice: NVML has no energy or power of its own for it */ \
  X(EnergyNotSampled)       /* no GPU reading recent enough to integrate the window's time from */ \
  /* end */
TASKMETER_ENUM(EnergyReason, TASKMETER_ENERGY_REASONS, kEnergyReasons)

// One GPU's energy since taskmeter first read it, E(t) in joules, as a function of (monotonic) time that is causal:
// its value at t is fixed by the readings up to t and never revised later. A window's energy is E(close) − E(open),
// so consecutive windows add up exactly (no gap, no double count) and a window of any length on a busy GPU gets its
// share. Between two readings E grows at the last power reading (instant power where the driver has it); the energy
// counter (read far less often: it costs milliseconds of CPU on datacenter GPUs and moves in 100 ms steps) anchors
// it: the difference between the counter's total and E's at each counter reading is absorbed into the slope over
// the following kAbsorbMs, so over seconds E follows the counter and within them the power's shape.
class EnergyModel {
 public:
  // E grows at most this long past a reading at its last slope; a reading after a longer gap starts E afresh from
  // the counter's side (the power extrapolated over the gap is no measurement, and must not be "corrected" into
  // the windows that follow).
  static constexpr double kMaxGapMs = 2000;
  static constexpr double kAbsorbMs = 2000;
  // How often the energy counter moves (the H200 and its driver: every 100 ms): a difference between the counter and
  // E within one step's energy is the counter's lag, not absorbed.
  static constexpr double kCounterStepMs = 100;

  // A power reading at t_ms (watts < 0: none this time).
  void Power(double t_ms, double watts);
  // An energy-counter reading at t_ms (mj < 0: none or failed).
  void Counter(double t_ms, double mj);
  // E(t_ms), J; NaN before the first reading.
  double At(double t_ms) const;
  bool defined() const { return defined_; }
  double last_ms() const { return t_ms_; }  // the last reading's time (NaN before the first)
  double slope_watts() const { return slope_w_; }
  // How often the counter went backwards (driver reload), and how often E had no source (no power, no counter
  // rate) for a stretch: a window that saw either says so.
  uint32_t backwards() const { return backwards_; }
  uint32_t no_source() const { return no_source_; }
  bool has_source() const { return has_source_; }

 private:
  void AdvanceTo(double t_ms);
  void SetSlope(double t_ms);

  bool defined_ = false;
  double t_ms_ = 0;
  double e_j_ = 0;
  double slope_w_ = 0;
  bool has_source_ = false;
  double power_w_ = -1;
  double power_t_ms_ = 0;
  double absorb_left_j_ = 0;
  double absorb_w_ = 0;
  double anchor_mj_ = -1;  // the counter and E when the anchor was set: E follows counter − anchor_mj
  double anchor_e_j_ = 0;
  double last_mj_ = -1;
  double last_counter_ms_ = 0;
  double counter_rate_w_ = -1;
  bool broken_ = false;  // a gap since the anchor: re-anchor at the next counter reading
  uint32_t backwards_ = 0;
  uint32_t no_source_ = 0;
};

struct Attribution {
  double bytes;  // NaN when not attributable
  int reason;    // nvml::ProcReason
  size_t found;  // how many of the pids are in the list
};
// The GPU memory of pids (empty: self_pid) in a merged, pid-sorted process list.
Attribution AttributeProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, uint32_t self_pid,
                                  int pid_match);

// Per-process utilization of a set of pids over a window: the mean of the driver's samples (nvidia-smi pmon's
// question: a sample period in which none of the pids ran a kernel has no sample and is not counted), the pids'
// samples at one timestamp summed and capped at 100.
struct UtilAcc {
  double sm_sum = 0;
  double mem_sum = 0;
  uint32_t n = 0;
};
// The pids' samples at one driver timestamp, summed and capped at 100.
struct UtilAt {
  unsigned long long timestamp_us;
  double sm;
  double mem;
};
// Sorts a read's samples by pid, then time: what the functions below take (one sort per read, then a binary search
// per pid of each window).
void SortProcessUtilization(std::vector<nvml::ProcessUtil>* samples);
// The samples of pids (empty: self_pid) taken in (from_us, to_us] (the driver's clock, µs), one UtilAt per
// timestamp in time order, into *out (cleared first).
void GroupProcessUtilization(const std::vector<nvml::ProcessUtil>& sorted, const std::vector<uint32_t>& pids,
                             uint32_t self_pid, double from_us, double to_us, std::vector<UtilAt>* out);
// Adds them to acc; scratch is reused between calls.
void AddProcessUtilization(const std::vector<nvml::ProcessUtil>& sorted, const std::vector<uint32_t>& pids,
                           uint32_t self_pid, double from_us, double to_us, UtilAcc* acc, std::vector<UtilAt>* scratch);

// The accounting-mode peak rule (as VmHWM for RSS): the accounting maximum at the window's end is the window's exact
// peak when it rose during the window (above base, the maximum before the window). Returns NaN otherwise.
double AccountingPeak(double base_bytes, double end_bytes);

// What one reading of a kind costs the calling thread (its CPU clock, ms), for pacing it. Robust to the slow first
// call after nvmlInit (it is not counted: the H200 showed 17–28 ms first calls against a 3 ms median) and to an odd
// slow call: the median of the first few, then the mean of the last 16 without the largest (what is paced is CPU
// spent, so the common slower calls, the H200's p90 of 5.75 ms, count).
class CostEstimate {
 public:
  static constexpr int kKeep = 16;
  void Add(double ms);
  double Ms() const;  // 0 until a cost was counted
  int count() const { return n_; }
  void Reset() { *this = CostEstimate(); }

 private:
  double last_[kKeep] = {};
  int n_ = 0;
  int next_ = 0;
  bool first_seen_ = false;
};

// How coarse the thread CPU clock the costs are measured with is (ms; 0: fine). Windows' GetThreadTimes moves in
// 15.625 ms steps: a reading's cost (µs to a few ms) then shows as 0 nearly every time, and an estimate of 0 would
// pace nothing (no stretching, window edges read at once however often they come).
#ifdef _WIN32
constexpr double kThreadClockStepMs = 15.625;
#else
constexpr double kThreadClockStepMs = 0;
#endif
// The cost a schedule is planned with: the estimate once one was measured, else prior_ms (what the kind cost on an
// H200); on a coarse clock (clock_step_ms > 0) never less than prior_ms.
double PacedCostMs(const CostEstimate& estimate, double prior_ms, double clock_step_ms);

// Kinds of GPU reading, each paced on its own (exported as layouts.GpuKind: bits of a window's "stretched" slot).
#define TASKMETER_GPU_KINDS(X) \
  X(KindEnergy)      /* the energy counter: only E's anchor (power carries E between its readings) */ \
  X(KindProcessUtil) /* per-process utilization: the driver keeps its samples, read later with lastSeen */ \
  X(KindDevice)      /* device memory, utilization, power and the process lists: the window's peaks */ \
  /* end */
TASKMETER_ENUM(GpuKind, TASKMETER_GPU_KINDS, kGpuKinds)

struct ScheduleInput {
  double cost_ms[kGpuKinds];    // one reading of every GPU (thread CPU); 0: not known yet
  double wanted_ms[kGpuKinds];  // the period each kind would have with no budget
  // When the budget is short, kinds are stretched stage by stage, cheapest to lose first, each stage up to its
  // limit, until the budget holds: `stage_kind[i]` up to `stage_limit_ms[i]`. The last stage of a kind is where its
  // stretching stops (the budget is then exceeded rather than a kind lost).
  int stages;
  int stage_kind[8];
  double stage_limit_ms[8];
  double budget;  // share of one core for all kinds together (0.01: 1 %)
  // Each GPU is read, by device readings (power) or the energy counter, at least this often (0: no bound). A window's
  // energy is E(close) − E(open) of EnergyModel, which integrates at most kMaxGapMs past a reading: readings further
  // apart would leave a window of any length without its energy. The cheaper of the two kinds is held to it, over
  // the budget if need be (the other kinds are stretched further first).
  double cover_ms;
};
// The stages taskmeter uses: the energy counter up to 30 s (power carries the energy between its readings), then the
// device readings up to twice their period (a peak held for a few periods is still caught), then per-process
// utilization up to 10 s (the driver keeps its samples; only windows shorter than the period lose it), then the
// device readings up to 1 s. cover_ms: EnergyModel::kMaxGapMs / 2 (half: a reading late by a loaded machine's
// scheduling still falls within the gap); the device readings (tens of µs a GPU) normally hold it, whatever the
// window's interval.
ScheduleInput DefaultSchedule(double device_wanted_ms);
struct Schedule {
  double period_ms[kGpuKinds];
  // The shortest spacing of two readings of the kind when window edges ask for readings: the budget left over by
  // the periods, shared by the device and energy readings.
  double edge_spacing_ms[kGpuKinds];
  uint32_t stretched;  // bit k: kind k runs slower than wanted to stay within the budget
};
Schedule PlanSchedule(const ScheduleInput& in);

}  // namespace gpuwin
}  // namespace taskmeter
