// The GPU window arithmetic as plain functions (no locks, no NVML calls): energy integration between readings,
// attribution of process-list memory and per-process utilization to a set of pids, and the accounting-mode peak
// rule. The sampler (sampler.cc) calls them under its mutex; test/native/gpu_window_test.cc tests them directly.
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
  /* end */
TASKMETER_ENUM(EnergyReason, TASKMETER_ENERGY_REASONS, kEnergyReasons)

struct EnergyStep {
  double joules;  // NaN: nothing to add (no previous reading or no data)
  int reason;
};

// Energy between two readings dt_ms apart: the counter's delta where both readings have it; else (or where it went
// backwards) power integrated over dt. *last_counter_mj is the baseline: set to counter_now_mj even when that is -1
// (absent), so a counter delta never spans an interval already integrated from power (no double counting).
EnergyStep StepEnergy(double* last_counter_mj, double counter_now_mj, double power_prev_w, double power_now_w,
                      double dt_ms, bool have_prev);

// The part of the interval (t_prev, t_now] that lies inside a window opened at open_ms, 0..1.
double WindowShare(double t_prev, double t_now, double open_ms);

struct Attribution {
  double bytes;  // NaN when not attributable
  int reason;    // nvml::ProcReason
};
// The GPU memory of pids (empty: self_pid) in a merged, pid-sorted process list.
Attribution AttributeProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, uint32_t self_pid,
                                  int pid_match);

// This set of pids' SM and memory utilization in one reading's samples (summed over pids, capped at 100): 0 when
// none of them has a sample (NVML returns samples only for processes that used the GPU). False when not readable.
bool ProcessUtilization(const std::vector<nvml::ProcessUtil>& samples, const std::vector<uint32_t>& pids,
                        uint32_t self_pid, double* sm, double* mem);

// The accounting-mode peak rule (as VmHWM for RSS): the accounting maximum at the window's end is the window's exact
// peak when it rose during the window (above base, the maximum before the window). Returns NaN otherwise.
double AccountingPeak(double base_bytes, double end_bytes);

// What a kind of NVML reading costs, for pacing it: the median of the last five wall-clock costs, so one round
// stretched by preemption on a loaded machine (or one slow call) does not slow every later reading down.
class CostEstimate {
 public:
  void Add(double ms);
  double Ms() const;

 private:
  double last_[5] = {0, 0, 0, 0, 0};
  int n_ = 0;
  int next_ = 0;
};

}  // namespace gpuwin
}  // namespace taskmeter
