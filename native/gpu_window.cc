#include "gpu_window.h"

#include <algorithm>
#include <cmath>

namespace taskmeter {
namespace gpuwin {

// --- EnergyModel ---

void EnergyModel::AdvanceTo(double t_ms) {
  if (!defined_) {
    defined_ = true;
    t_ms_ = t_ms;
    e_j_ = 0;
    return;
  }
  double dt = t_ms - t_ms_;
  if (!(dt > 0)) return;  // same instant (or a clock step back): nothing to add
  e_j_ += slope_w_ * dt / 1000.0;
  double absorbed = absorb_w_ * dt / 1000.0;
  // Stop at what was left to absorb (the slope already committed this interval; only the bookkeeping is clipped).
  absorb_left_j_ =
      absorb_left_j_ > 0 ? std::max(0.0, absorb_left_j_ - absorbed) : std::min(0.0, absorb_left_j_ - absorbed);
  if (dt > kMaxGapMs) broken_ = true;
  t_ms_ = t_ms;
}

void EnergyModel::SetSlope(double t_ms) {
  // The base rate: the last power reading while it is recent, else the counter's own rate over its last interval.
  double base = -1;
  if (power_w_ >= 0 && t_ms - power_t_ms_ <= kMaxGapMs) {
    base = power_w_;
  } else if (counter_rate_w_ >= 0 && t_ms - last_counter_ms_ <= kMaxGapMs) {
    base = counter_rate_w_;
  }
  if (base < 0) {
    if (has_source_ || no_source_ == 0) no_source_++;
    has_source_ = false;
    broken_ = true;  // E stands still meanwhile: what the counter counts then is no correction for later
    slope_w_ = 0;
    absorb_w_ = 0;
    return;
  }
  has_source_ = true;
  // The counter's correction, spread over kAbsorbMs and bounded so that one noisy comparison (the counter moves in
  // 100 ms steps) cannot swing the slope by more than half the power either way.
  absorb_w_ = absorb_left_j_ / kAbsorbMs * 1000.0;
  absorb_w_ = std::max(-0.5 * base, std::min(0.5 * base, absorb_w_));
  slope_w_ = std::max(0.0, base + absorb_w_);
}

void EnergyModel::Power(double t_ms, double watts) {
  AdvanceTo(t_ms);
  if (watts >= 0) {
    power_w_ = watts;
    power_t_ms_ = t_ms;
  }
  SetSlope(t_ms);
}

void EnergyModel::Counter(double t_ms, double mj) {
  AdvanceTo(t_ms);
  if (mj >= 0) {
    if (last_mj_ >= 0 && mj >= last_mj_ && t_ms > last_counter_ms_ && t_ms - last_counter_ms_ <= 4 * kMaxGapMs)
      counter_rate_w_ = (mj - last_mj_) / (t_ms - last_counter_ms_);  // mJ/ms = W
    if (last_mj_ >= 0 && mj < last_mj_) backwards_++;
    if (anchor_mj_ < 0 || broken_ || mj < last_mj_) {
      // (Re)anchor: E follows the counter from here on, without "correcting" what came before.
      anchor_mj_ = mj;
      anchor_e_j_ = e_j_;
      absorb_left_j_ = 0;
      broken_ = false;
    } else {
      // What the counter says was used since the anchor, against what E has counted: the whole difference, not an
      // increment, so a correction already absorbed is never counted again. The counter moves in steps (100 ms on
      // an H200), so it lags by up to a step: a difference within a step's energy is that lag, not an error of E.
      double d = (mj - anchor_mj_) / 1000.0 - (e_j_ - anchor_e_j_);
      double rate = power_w_ >= 0 ? power_w_ : std::max(0.0, counter_rate_w_);
      double band = rate * kCounterStepMs / 1000.0;
      absorb_left_j_ = d > band ? d - band : d < -band ? d + band : 0;
    }
    last_mj_ = mj;
    last_counter_ms_ = t_ms;
  }
  SetSlope(t_ms);
}

double EnergyModel::At(double t_ms) const {
  if (!defined_) return NAN;
  double dt = t_ms - t_ms_;
  return e_j_ + (dt > 0 ? slope_w_ * dt / 1000.0 : 0);
}

// --- Attribution ---

Attribution AttributeProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, uint32_t self_pid,
                                  int pid_match) {
  if (pid_match == nvml::kPidsForeign) return {NAN, nvml::kProcPidNamespace, 0};
  if (pid_match == nvml::kPidsListOnly) return {NAN, nvml::kProcNsMemoryNotMatched, 0};
  if (pl.reason != nvml::kProcOk) return {NAN, pl.reason, 0};
  double sum = 0;
  bool unavailable = false;
  size_t found = 0;
  auto count = [&](uint32_t pid) {
    auto it = std::lower_bound(pl.entries.begin(), pl.entries.end(), std::make_pair(pid, 0ULL));
    if (it == pl.entries.end() || it->first != pid) return;
    found++;
    if (it->second == nvml::kValueNotAvailable) {
      unavailable = true;
    } else {
      sum += static_cast<double>(it->second);
    }
  };
  if (pids.empty()) {
    count(self_pid);
  } else {
    for (uint32_t p : pids) count(p);
  }
  if (unavailable) return {NAN, nvml::kProcNotAvailable, found};
  // In no list: 0 bytes only where absence is certain (no MIG slice, the MPS list read, not WDDM).
  if (found == 0 && !pl.absence_is_zero) return {NAN, nvml::kProcAbsenceUncertain, 0};
  return {sum, nvml::kProcOk, found};
}

void SortProcessUtilization(std::vector<nvml::ProcessUtil>* samples) {
  std::sort(samples->begin(), samples->end(), [](const nvml::ProcessUtil& a, const nvml::ProcessUtil& b) {
    return a.pid != b.pid ? a.pid < b.pid : a.timestamp_us < b.timestamp_us;
  });
}

void GroupProcessUtilization(const std::vector<nvml::ProcessUtil>& sorted, const std::vector<uint32_t>& pids,
                             uint32_t self_pid, double from_us, double to_us, std::vector<UtilAt>* out) {
  out->clear();
  auto add = [&](uint32_t pid) {
    auto it = std::lower_bound(sorted.begin(), sorted.end(), pid,
                               [](const nvml::ProcessUtil& x, uint32_t p) { return x.pid < p; });
    for (; it != sorted.end() && it->pid == pid; ++it) {
      double ts = static_cast<double>(it->timestamp_us);
      if (ts > from_us && ts <= to_us)
        out->push_back(UtilAt{it->timestamp_us, static_cast<double>(it->sm), static_cast<double>(it->mem)});
    }
  };
  if (pids.empty()) {
    add(self_pid);
  } else {
    for (uint32_t p : pids) add(p);
    // Several pids' samples, each in time order: merge them into one series.
    std::sort(out->begin(), out->end(),
              [](const UtilAt& a, const UtilAt& b) { return a.timestamp_us < b.timestamp_us; });
  }
  // Sum the samples at one timestamp, each count capped at 100.
  size_t n = 0;
  for (size_t i = 0; i < out->size(); i++) {
    if (n > 0 && (*out)[n - 1].timestamp_us == (*out)[i].timestamp_us) {
      (*out)[n - 1].sm += (*out)[i].sm;
      (*out)[n - 1].mem += (*out)[i].mem;
    } else {
      (*out)[n++] = (*out)[i];
    }
  }
  out->resize(n);
  for (auto& u : *out) {
    u.sm = std::min(100.0, u.sm);
    u.mem = std::min(100.0, u.mem);
  }
}

void AddProcessUtilization(const std::vector<nvml::ProcessUtil>& sorted, const std::vector<uint32_t>& pids,
                           uint32_t self_pid, double from_us, double to_us, UtilAcc* acc,
                           std::vector<UtilAt>* scratch) {
  GroupProcessUtilization(sorted, pids, self_pid, from_us, to_us, scratch);
  for (const auto& u : *scratch) {
    acc->sm_sum += u.sm;
    acc->mem_sum += u.mem;
    acc->n++;
  }
}

double AccountingPeak(double base_bytes, double end_bytes) {
  if (!(end_bytes >= 0)) return NAN;
  // A base that was never read is unknown, not 0 (a lifetime maximum would count as a rise). A process with no
  // record before the window has a base of 0 (nvml/gpu.h): any value is then a rise.
  if (!(base_bytes >= 0)) return NAN;
  return end_bytes > base_bytes ? end_bytes : NAN;
}

// --- CostEstimate ---

void CostEstimate::Add(double ms) {
  if (!(ms >= 0)) return;
  if (!first_seen_) {  // the first call after nvmlInit: not what later calls cost
    first_seen_ = true;
    return;
  }
  last_[next_] = ms;
  next_ = (next_ + 1) % kKeep;
  if (n_ < kKeep) n_++;
}

double CostEstimate::Ms() const {
  if (n_ == 0) return 0;
  double v[kKeep];
  for (int i = 0; i < n_; i++) v[i] = last_[i];  // the ring's filled part is its first n_ entries until it wraps
  std::sort(v, v + n_);
  if (n_ < 8) return v[(n_ - 1) / 2];  // few costs yet: the (lower) median
  double sum = 0;
  for (int i = 0; i < n_ - 1; i++) sum += v[i];  // the mean without the largest
  return sum / (n_ - 1);
}

double PacedCostMs(const CostEstimate& estimate, double prior_ms, double clock_step_ms) {
  double ms = estimate.count() > 0 ? estimate.Ms() : prior_ms;
  return clock_step_ms > 0 ? std::max(ms, prior_ms) : ms;
}

// --- Schedule ---

ScheduleInput DefaultSchedule(double device_wanted_ms) {
  ScheduleInput in{};
  in.wanted_ms[kKindDevice] = device_wanted_ms;
  in.wanted_ms[kKindEnergy] = 1000;       // the counter moves every 100 ms; E follows power in between
  in.wanted_ms[kKindProcessUtil] = 1000;  // nvidia-smi pmon's default
  const struct {
    int kind;
    double limit_ms;
  } stages[] = {
      {kKindEnergy, 30000},
      {kKindDevice, 2 * device_wanted_ms},
      {kKindProcessUtil, 10000},
      {kKindDevice, std::max(1000.0, device_wanted_ms)},
  };
  in.stages = 0;
  for (const auto& st : stages) {
    in.stage_kind[in.stages] = st.kind;
    in.stage_limit_ms[in.stages] = st.limit_ms;
    in.stages++;
  }
  in.budget = 0.01;
  in.cover_ms = EnergyModel::kMaxGapMs / 2;
  return in;
}

Schedule PlanSchedule(const ScheduleInput& in) {
  Schedule s{};
  double cost[kGpuKinds], rate[kGpuKinds];
  for (int k = 0; k < kGpuKinds; k++) {
    cost[k] = in.cost_ms[k] > 0 ? in.cost_ms[k] : 0;
    s.period_ms[k] = in.wanted_ms[k];
    rate[k] = cost[k] / s.period_ms[k];
  }
  auto total = [&] { return rate[0] + rate[1] + rate[2]; };
  int held = -1;  // the kind held to cover_ms: not stretched
  auto stretch = [&] {
    for (int i = 0; i < in.stages && total() > in.budget; i++) {
      int k = in.stage_kind[i];
      if (k == held || cost[k] <= 0 || s.period_ms[k] >= in.stage_limit_ms[i]) continue;
      // The rate that brings the total to the budget, not below this stage's limit.
      double others = total() - rate[k];
      double need = in.budget - others;
      double period = need > 0 ? cost[k] / need : in.stage_limit_ms[i];
      period = std::min(in.stage_limit_ms[i], std::max(s.period_ms[k], period));
      s.period_ms[k] = period;
      rate[k] = cost[k] / period;
    }
  };
  stretch();
  if (in.cover_ms > 0 && std::min(s.period_ms[kKindDevice], s.period_ms[kKindEnergy]) > in.cover_ms) {
    // The energy model's bound: the cheaper kind (per reading of every GPU) at cover_ms, the others stretched
    // further to make room for it where their stages allow.
    held = cost[kKindEnergy] < cost[kKindDevice] ? kKindEnergy : kKindDevice;
    s.period_ms[held] = in.cover_ms;
    rate[held] = cost[held] / in.cover_ms;
    stretch();
  }
  s.stretched = 0;
  for (int k = 0; k < kGpuKinds; k++) {
    if (s.period_ms[k] > in.wanted_ms[k] * 1.001) s.stretched |= 1u << k;
    s.edge_spacing_ms[k] = s.period_ms[k];
  }
  // The spare budget lets window edges ask for extra device and energy readings, half each.
  double spare = std::max(0.0, in.budget - total());
  for (int k : {kKindDevice, kKindEnergy}) {
    double r = rate[k] + spare / 2;
    s.edge_spacing_ms[k] = cost[k] > 0 && r > 0 ? std::min(s.period_ms[k], cost[k] / r) : 0;
  }
  return s;
}

}  // namespace gpuwin
}  // namespace taskmeter
