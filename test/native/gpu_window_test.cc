// Unit tests of the GPU window arithmetic (native/gpu_window.cc), compiled and run by test/gpu-window.test.ts.
// Prints "ok <name>" per passing check and exits non-zero at the first failure.
#include "gpu_window.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace taskmeter;

static int checks = 0;
#define CHECK(name, cond)                                              \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::printf("FAIL %s (%s:%d: %s)\n", name, __FILE__, __LINE__, #cond); \
      std::exit(1);                                                    \
    }                                                                  \
    checks++;                                                          \
  } while (0)
static bool near(double a, double b) { return std::fabs(a - b) < 1e-9; }

static nvml::ProcessList List(std::vector<std::pair<uint32_t, unsigned long long>> e, bool absence_is_zero = true) {
  nvml::ProcessList pl;
  pl.reason = nvml::kProcOk;
  pl.entries = e;
  pl.absence_is_zero = absence_is_zero;
  return pl;
}

static gpuwin::ScheduleInput H200(double gpus, double budget = 0.009, double interval_ms = 10) {
  // The H200's median costs per GPU (issue 16): a device reading ~62 µs busy, the energy counter 2.8 ms, per-process
  // utilization 1.8 ms; taskmeter's periods and stretch stages at default settings (10 ms windows).
  gpuwin::ScheduleInput in = gpuwin::DefaultSchedule(interval_ms);
  in.cost_ms[gpuwin::kKindDevice] = 0.062 * gpus;
  in.cost_ms[gpuwin::kKindEnergy] = 2.8 * gpus;
  in.cost_ms[gpuwin::kKindProcessUtil] = 1.8 * gpus;
  in.budget = budget;
  return in;
}
static double Share(const gpuwin::ScheduleInput& in, const gpuwin::Schedule& s) {
  double sum = 0;
  for (int k = 0; k < gpuwin::kGpuKinds; k++) sum += in.cost_ms[k] / s.period_ms[k];
  return sum;
}

int main(int argc, char** argv) {
  // Energy model: E grows at the last power between readings, causally.
  {
    gpuwin::EnergyModel m;
    CHECK("E is unknown before the first reading", std::isnan(m.At(0)) && !m.defined());
    m.Power(1000, 300);
    CHECK("E starts at 0", near(m.At(1000), 0));
    CHECK("E grows at the last power", near(m.At(1100), 30));
    double at_1100 = m.At(1100);  // what a window closing at 1100 read
    m.Power(1100, 100);            // a new power applies from its reading on
    CHECK("a reading never revises E up to it", near(m.At(1100), at_1100) && near(at_1100, 30));
    CHECK("the new power applies after it", near(m.At(1200), 40));
    // consecutive windows add up to the window around them (no gap, no double count)
    double a = m.At(1120), b = m.At(1160), c = m.At(1190);
    CHECK("consecutive windows add up", near((b - a) + (c - b), c - a));
  }
  {
    // The counter anchors E: E follows the counter over seconds, power in between.
    gpuwin::EnergyModel m;
    m.Power(0, 200);  // the power reads low: 200 W where 300 W is drawn
    m.Counter(0, 1000000);
    for (int t = 10; t <= 10000; t += 10) {
      m.Power(t, 200);
      if (t % 1000 == 0) m.Counter(t, 1000000 + 300.0 * t);  // 300 W, mJ
    }
    double e = m.At(10000);
    CHECK("E follows the counter over seconds", e > 0.9 * 3000 && e < 1.05 * 3000);
    CHECK("and the slope leans towards it", m.slope_watts() > 200);
  }
  {
    // A reading after a long gap re-anchors: the counter's energy over the gap is not pushed into later windows.
    gpuwin::EnergyModel m;
    m.Power(0, 100);
    m.Counter(0, 0);
    m.Power(100, 100);
    m.Counter(60000, 60000.0 * 500);  // 500 W for a minute nobody measured
    m.Power(60000, 100);
    CHECK("after a gap the slope is the power, not a catch-up", near(m.slope_watts(), 100));
    m.Counter(61000, 60000.0 * 500 + 100.0 * 1000);
    CHECK("and E then follows the counter from the new anchor", std::fabs(m.slope_watts() - 100) < 1);
  }
  {
    gpuwin::EnergyModel m;
    m.Power(0, 100);
    m.Counter(0, 5000000);
    m.Counter(1000, 100);  // driver reload
    CHECK("a counter going backwards is counted", m.backwards() == 1 && m.At(1000) > 0);
    m.Power(2000, -1);
    m.Counter(2000, -1);
    CHECK("power and counter rate old: no source", !m.has_source() || m.slope_watts() >= 0);
    gpuwin::EnergyModel none;
    none.Power(0, -1);
    CHECK("no power, no counter: no source", !none.has_source() && none.no_source() == 1);
    gpuwin::EnergyModel counter_only;
    counter_only.Counter(0, 0);
    counter_only.Counter(1000, 250000);
    CHECK("counter only: E grows at the counter's rate", near(counter_only.slope_watts(), 250) &&
                                                              near(counter_only.At(2000), counter_only.At(1000) + 250));
  }

  // Attribution.
  auto pl = List({{10, 100}, {42, 64}, {77, nvml::kValueNotAvailable}});
  auto a = gpuwin::AttributeProcessBytes(pl, {}, 42, nvml::kPidsHost);
  CHECK("self found", a.bytes == 64 && a.reason == nvml::kProcOk && a.found == 1);
  a = gpuwin::AttributeProcessBytes(pl, {10, 42}, 1, nvml::kPidsHost);
  CHECK("a set of pids sums", a.bytes == 164);
  a = gpuwin::AttributeProcessBytes(pl, {77}, 1, nvml::kPidsHost);
  CHECK("VALUE_NOT_AVAILABLE is null", std::isnan(a.bytes) && a.reason == nvml::kProcNotAvailable);
  a = gpuwin::AttributeProcessBytes(pl, {}, 5, nvml::kPidsHost);
  CHECK("absent where certain: 0, none found", a.bytes == 0 && a.reason == nvml::kProcOk && a.found == 0);
  a = gpuwin::AttributeProcessBytes(List({{10, 100}}, false), {}, 5, nvml::kPidsHost);
  CHECK("absent where not certain (MPS unknown, MIG): null", std::isnan(a.bytes) && a.reason == nvml::kProcAbsenceUncertain);
  a = gpuwin::AttributeProcessBytes(pl, {}, 42, nvml::kPidsForeign);
  CHECK("host PIDs in a container: null", std::isnan(a.bytes) && a.reason == nvml::kProcPidNamespace);
  a = gpuwin::AttributeProcessBytes(pl, {}, 42, nvml::kPidsListOnly);
  CHECK("list translated, memory not: null", std::isnan(a.bytes) && a.reason == nvml::kProcNsMemoryNotMatched);
  a = gpuwin::AttributeProcessBytes(pl, {}, 42, nvml::kPidsTranslated);
  CHECK("translated: attributed", a.bytes == 64);
  nvml::ProcessList failed;
  failed.reason = nvml::kProcCallFailed;
  a = gpuwin::AttributeProcessBytes(failed, {}, 42, nvml::kPidsHost);
  CHECK("the list's own reason passes through", std::isnan(a.bytes) && a.reason == nvml::kProcCallFailed);

  // Per-process utilization: the mean of the driver's samples inside the window, pids summed per timestamp.
  std::vector<nvml::ProcessUtil> samples = {{42, 30, 10, 1000}, {43, 80, 60, 1000}, {9, 99, 99, 1000},
                                            {42, 50, 20, 2000}, {42, 90, 90, 500}};
  gpuwin::SortProcessUtilization(&samples);
  std::vector<gpuwin::UtilAt> scratch;
  gpuwin::UtilAcc acc;
  gpuwin::AddProcessUtilization(samples, {}, 42, 900, 3000, &acc, &scratch);
  CHECK("self's samples inside the window, averaged", acc.n == 2 && near(acc.sm_sum / acc.n, 40) &&
                                                          near(acc.mem_sum / acc.n, 15));
  gpuwin::UtilAcc tree;
  gpuwin::AddProcessUtilization(samples, {42, 43}, 1, 900, 3000, &tree, &scratch);
  CHECK("a tree's samples at one time are summed and capped at 100", tree.n == 2 && near(tree.sm_sum, 100 + 50));
  gpuwin::UtilAcc none;
  gpuwin::AddProcessUtilization(samples, {}, 5, 0, 3000, &none, &scratch);
  CHECK("no sample of ours: none counted", none.n == 0);
  gpuwin::GroupProcessUtilization(samples, {9, 42, 43}, 1, 0, 3000, &scratch);
  CHECK("grouped in time order, one per timestamp",
        scratch.size() == 3 && scratch[0].timestamp_us == 500 && scratch[1].timestamp_us == 1000 &&
            near(scratch[1].sm, 100) && scratch[2].timestamp_us == 2000 && near(scratch[2].sm, 50));

  // Accounting.
  CHECK("accounting peak: rose inside the window", gpuwin::AccountingPeak(64, 512) == 512);
  CHECK("accounting peak: no rise → NaN (use the sampled peak)", std::isnan(gpuwin::AccountingPeak(512, 512)));
  CHECK("accounting peak: first record inside the window", gpuwin::AccountingPeak(0, 128) == 128);
  CHECK("accounting peak: a base never read is no base of 0", std::isnan(gpuwin::AccountingPeak(-1, 128)));
  CHECK("accounting peak: a base never read (NaN)", std::isnan(gpuwin::AccountingPeak(NAN, 128)));
  CHECK("accounting peak: no record", std::isnan(gpuwin::AccountingPeak(64, -1)));

  // PID matching by driver version.
  CHECK("570.x translates PIDs and memory", nvml::PidMatchForDriver("570.86.15") == nvml::kPidsTranslated);
  CHECK("565.57.01 is the first", nvml::PidMatchForDriver("565.57.01") == nvml::kPidsTranslated);
  CHECK("565.57.00 is not", nvml::PidMatchForDriver("565.57.00") == nvml::kPidsListOnly);
  CHECK("550.x translates the list only", nvml::PidMatchForDriver("550.54.15") == nvml::kPidsListOnly);
  CHECK("535.113.01 translates the list", nvml::PidMatchForDriver("535.113.01") == nvml::kPidsListOnly);
  CHECK("535.104 reports host PIDs", nvml::PidMatchForDriver("535.104.05") == nvml::kPidsForeign);
  CHECK("garbage version: host PIDs assumed", nvml::PidMatchForDriver("abc") == nvml::kPidsForeign);

  // Cost estimate: the first call after nvmlInit is not counted, the largest eighth of the last 16 is left out.
  gpuwin::CostEstimate cost;
  CHECK("no cost measured yet: 0", cost.Ms() == 0);
  cost.Add(28);  // the H200's slow first energy call
  CHECK("the first call is not counted", cost.Ms() == 0 && cost.count() == 0);
  cost.Add(3);
  CHECK("one cost", near(cost.Ms(), 3));
  cost.Add(17);
  CHECK("an outlier among the first few does not count (median)", near(cost.Ms(), 3));
  for (double ms : {3.0, 3.0, 3.0, 3.0, 3.0, 3.0}) cost.Add(ms);
  CHECK("an outlier among eight does not count", near(cost.Ms(), 3));
  for (int i = 0; i < 16; i++) cost.Add(i % 10 == 0 ? 5.75 : 3.0);
  CHECK("otherwise the mean: the common slower calls count", cost.Ms() > 3.0 && cost.Ms() < 3.3);

  // Schedule: the H200's costs.
  {
    auto in = H200(1);
    auto s1 = gpuwin::PlanSchedule(in);
    CHECK("1 GPU: device readings at the window's 10 ms", near(s1.period_ms[gpuwin::kKindDevice], 10));
    CHECK("1 GPU: the energy counter stretched first", s1.period_ms[gpuwin::kKindEnergy] > 1000 &&
                                                          (s1.stretched & (1u << gpuwin::kKindEnergy)));
    CHECK("1 GPU: within the budget", Share(in, s1) <= in.budget * 1.0001);
    auto in8 = H200(8);
    auto s8 = gpuwin::PlanSchedule(in8);
    CHECK("8 GPUs: energy and process utilization at their longest",
          near(s8.period_ms[gpuwin::kKindEnergy], 30000) && near(s8.period_ms[gpuwin::kKindProcessUtil], 10000));
    CHECK("8 GPUs: device readings stretched last, to what is left", s8.period_ms[gpuwin::kKindDevice] > 20 &&
                                                                       s8.period_ms[gpuwin::kKindDevice] < 200);
    // A device round that costs twice as much (a virtual machine's wake-ups): device readings give up to half
    // their pace before per-process utilization is stretched.
    auto vm = H200(1);
    vm.cost_ms[gpuwin::kKindDevice] = 0.12;
    auto sv = gpuwin::PlanSchedule(vm);
    CHECK("stages: energy, then device up to 2x, before process utilization",
          near(sv.period_ms[gpuwin::kKindEnergy], 30000) && near(sv.period_ms[gpuwin::kKindProcessUtil], 1000) &&
              sv.period_ms[gpuwin::kKindDevice] > 10 && sv.period_ms[gpuwin::kKindDevice] <= 20);
    CHECK("8 GPUs: within the budget", Share(in8, s8) <= in8.budget * 1.0001);
    CHECK("8 GPUs: all three said", s8.stretched == 7);
    auto cheap = H200(1, 1.0);
    auto sc = gpuwin::PlanSchedule(cheap);
    CHECK("a budget to spare: nothing stretched", sc.stretched == 0 && near(sc.period_ms[gpuwin::kKindEnergy], 1000));
    CHECK("spare budget lets edges come sooner than the period",
          sc.edge_spacing_ms[gpuwin::kKindDevice] < sc.period_ms[gpuwin::kKindDevice]);
    gpuwin::ScheduleInput unknown = H200(1);
    for (double& c : unknown.cost_ms) c = 0;
    auto su = gpuwin::PlanSchedule(unknown);
    CHECK("costs not known yet: the periods wanted", near(su.period_ms[gpuwin::kKindDevice], 10) && su.stretched == 0);
  }
  // The energy model integrates at most kMaxGapMs past a reading: whatever the window's interval and the budget, each
  // GPU is read (device readings carry power, the energy counter anchors E) at least every half of that.
  {
    const double cover = gpuwin::EnergyModel::kMaxGapMs / 2;
    bool all = true;
    for (double gpus : {1.0, 8.0})
      for (double interval : {10.0, 1000.0, 2000.0, 5000.0, 60000.0}) {
        auto s = gpuwin::PlanSchedule(H200(gpus, 0.009, interval));
        all = all && std::min(s.period_ms[gpuwin::kKindDevice], s.period_ms[gpuwin::kKindEnergy]) <= cover;
      }
    CHECK("every interval, 1 or 8 GPUs: a device or energy reading at least every kMaxGapMs / 2", all);
    auto in8 = H200(8, 0.009, 5000);
    auto s8 = gpuwin::PlanSchedule(in8);
    CHECK("8 H200s at 5 s: the cheap device readings carry it, within the budget",
          s8.period_ms[gpuwin::kKindDevice] <= cover && Share(in8, s8) <= in8.budget * 1.0001);
    // A GPU whose device round is dear (slow process lists) and whose energy counter is cheap: the counter carries it.
    auto dear = gpuwin::DefaultSchedule(5000);
    dear.cost_ms[gpuwin::kKindDevice] = 40;
    dear.cost_ms[gpuwin::kKindEnergy] = 0.1;
    dear.cost_ms[gpuwin::kKindProcessUtil] = 1;
    dear.budget = 0.009;
    auto sd = gpuwin::PlanSchedule(dear);
    CHECK("a dear device round: the energy counter at least every kMaxGapMs / 2",
          sd.period_ms[gpuwin::kKindEnergy] <= cover && sd.period_ms[gpuwin::kKindDevice] > cover);
    auto none = H200(8, 0.009, 5000);
    none.cover_ms = 0;  // no GPU with energy (MIG slices only)
    auto sn = gpuwin::PlanSchedule(none);
    CHECK("no energy wanted: device readings not held to the energy model's bound",
          sn.period_ms[gpuwin::kKindDevice] >= 5000);
  }

  // A coarse thread clock (Windows: 15.625 ms steps): a 60 µs reading measures 0 nearly every time.
  {
    gpuwin::CostEstimate quantized;
    for (int i = 0; i < 40; i++) quantized.Add(i % 25 == 24 ? 15.625 : 0);
    CHECK("a coarse clock's costs read as 0", quantized.Ms() == 0);
    CHECK("on a coarse clock the planned cost never falls below the prior",
          near(gpuwin::PacedCostMs(quantized, 0.06, 15.625), 0.06));
    gpuwin::CostEstimate fine;
    for (int i = 0; i < 10; i++) fine.Add(0.03);
    CHECK("on a fine clock the measured cost, below the prior too", near(gpuwin::PacedCostMs(fine, 0.06, 0), 0.03));
    CHECK("nothing measured yet: the prior", near(gpuwin::PacedCostMs(gpuwin::CostEstimate(), 0.06, 0), 0.06));
  }

  // Per-process utilization's lastSeenTimeStamp: the newest sample read, unless the wall clock stepped back past it.
  CHECK("lastSeen: the newest sample read", nvml::UtilSinceUs(5000000, 6000000.0, 5000000.0) == 5000000);
  CHECK("lastSeen: the wall clock went back past it: one period ago",
        nvml::UtilSinceUs(9000000, 6000000.0, 5000000.0) == 5000000);

  // The loader: a library left open (a GPU thread that ended without closing it) never stands in for the one the
  // next detection is told to load.
  if (argc > 1) {
    nvml::Library lib;
    nvml::Env env;
    env.library = argv[1];
    CHECK("the fake NVML opens", lib.Open(env) && lib.initialized());
    env.library = "/nonexistent/libnvidia-ml.so.1";
    CHECK("a second open, not closed in between, loads what it is told to",
          !lib.Open(env) && std::string(lib.reason_code()) == "NVML_LIBRARY_LOAD_FAILED" && !lib.initialized());
    env.library = argv[1];
    CHECK("and the first one opens again afterwards", lib.Open(env) && lib.initialized());
    lib.Close(true);
  }

  std::printf("ok %d checks\n", checks);
  return 0;
}
