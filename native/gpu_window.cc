#include "gpu_window.h"

#include <algorithm>
#include <cmath>

namespace taskmeter {
namespace gpuwin {

EnergyStep StepEnergy(double* last_counter_mj, double counter_now_mj, double power_prev_w, double power_now_w,
                      double dt_ms, bool have_prev) {
  EnergyStep s{NAN, kEnergyOk};
  double last = *last_counter_mj;
  *last_counter_mj = counter_now_mj >= 0 ? counter_now_mj : -1;
  if (!have_prev || !(dt_ms > 0)) return s;
  auto integrated = [&]() -> double {
    if (power_now_w >= 0 && power_prev_w >= 0) return (power_now_w + power_prev_w) / 2 * dt_ms / 1000.0;
    if (power_now_w >= 0) return power_now_w * dt_ms / 1000.0;
    return NAN;
  };
  if (counter_now_mj >= 0 && last >= 0) {
    if (counter_now_mj >= last) {
      s.joules = (counter_now_mj - last) / 1000.0;
    } else {
      s.joules = integrated();
      s.reason = kEnergyCounterBackwards;
    }
  } else {
    s.joules = integrated();
  }
  return s;
}

double WindowShare(double t_prev, double t_now, double open_ms) {
  double dt = t_now - t_prev;
  if (!(dt > 0)) return 0;
  double frac = (t_now - std::max(t_prev, open_ms)) / dt;
  return std::min(1.0, std::max(0.0, frac));
}

Attribution AttributeProcessBytes(const nvml::ProcessList& pl, const std::vector<uint32_t>& pids, uint32_t self_pid,
                                  int pid_match) {
  if (pid_match == nvml::kPidsForeign) return {NAN, nvml::kProcPidNamespace};
  if (pid_match == nvml::kPidsListOnly) return {NAN, nvml::kProcNsMemoryNotMatched};
  if (pl.reason != nvml::kProcOk) return {NAN, pl.reason};
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
  if (unavailable) return {NAN, nvml::kProcNotAvailable};
  // In no list: 0 bytes only where absence is certain (no MIG slice, the MPS list read, not WDDM).
  if (found == 0 && !pl.absence_is_zero) return {NAN, nvml::kProcAbsenceUncertain};
  return {sum, nvml::kProcOk};
}

bool ProcessUtilization(const std::vector<nvml::ProcessUtil>& samples, const std::vector<uint32_t>& pids,
                        uint32_t self_pid, double* sm, double* mem) {
  double s = 0, m = 0;
  for (const auto& x : samples) {
    bool ours = pids.empty() ? x.pid == self_pid : std::find(pids.begin(), pids.end(), x.pid) != pids.end();
    if (!ours) continue;
    s += x.sm;
    m += x.mem;
  }
  *sm = std::min(100.0, s);
  *mem = std::min(100.0, m);
  return true;
}

double AccountingPeak(double base_bytes, double end_bytes) {
  if (!(end_bytes >= 0)) return NAN;
  // A base that was never read is unknown, not 0 (a lifetime maximum would count as a rise). A process with no
  // record before the window has a base of 0 (nvml/gpu.h): any value is then a rise.
  if (!(base_bytes >= 0)) return NAN;
  return end_bytes > base_bytes ? end_bytes : NAN;
}

void CostEstimate::Add(double ms) {
  if (!(ms >= 0)) return;
  last_[next_] = ms;
  next_ = (next_ + 1) % 5;
  if (n_ < 5) n_++;
}

double CostEstimate::Ms() const {
  if (n_ == 0) return 0;
  // the ring's filled part is its first n_ entries until it wraps, then all five; insertion sort of at most five
  double v[5];
  int n = n_ < 5 ? n_ : 5;
  for (int i = 0; i < n; i++) {
    double x = last_[i];
    int j = i;
    for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
    v[j] = x;
  }
  return v[n / 2];
}

}  // namespace gpuwin
}  // namespace taskmeter
