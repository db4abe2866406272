// Unit tests of the GPU window arithmetic (native/gpu_window.cc), compiled and run by test/gpu-window.test.ts.
// Prints "ok <name>" per passing check and exits non-zero at the first failure.
#include "gpu_window.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

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

int main() {
  // Energy: the counter's delta.
  double last = 1000;
  auto s = gpuwin::StepEnergy(&last, 4000, 100, 100, 100, true);
  CHECK("counter delta in joules", near(s.joules, 3.0) && s.reason == 0 && last == 4000);
  // A reading without the counter: integrated power, and the baseline is reset ...
  s = gpuwin::StepEnergy(&last, -1, 100, 300, 1000, true);
  CHECK("missing counter integrates power (trapezoid)", near(s.joules, 200.0));
  CHECK("missing counter resets the baseline", last == -1);
  // ... so the next counter reading adds nothing for the stretch already integrated (no double counting).
  s = gpuwin::StepEnergy(&last, 900000, 300, 300, 100, true);
  CHECK("after a gap: power again, not a delta spanning the gap", near(s.joules, 30.0));
  CHECK("the baseline is the new counter", last == 900000);
  s = gpuwin::StepEnergy(&last, 800000, 50, 50, 1000, true);
  CHECK("a counter going backwards integrates power, with the reason", near(s.joules, 50.0) && s.reason == gpuwin::kEnergyCounterBackwards);
  s = gpuwin::StepEnergy(&last, -1, -1, -1, 100, true);
  CHECK("no counter, no power: NaN", std::isnan(s.joules));
  s = gpuwin::StepEnergy(&last, 5, 10, 10, 100, false);
  CHECK("first reading: nothing to add", std::isnan(s.joules) && last == 5);

  CHECK("window share: interval wholly inside", near(gpuwin::WindowShare(100, 200, 50), 1.0));
  CHECK("window share: opened mid-interval", near(gpuwin::WindowShare(100, 200, 150), 0.5));
  CHECK("window share: opened after it", near(gpuwin::WindowShare(100, 200, 250), 0.0));

  // Attribution.
  auto pl = List({{10, 100}, {42, 64}, {77, nvml::kValueNotAvailable}});
  auto a = gpuwin::AttributeProcessBytes(pl, {}, 42, nvml::kPidsHost);
  CHECK("self found", a.bytes == 64 && a.reason == nvml::kProcOk);
  a = gpuwin::AttributeProcessBytes(pl, {10, 42}, 1, nvml::kPidsHost);
  CHECK("a set of pids sums", a.bytes == 164);
  a = gpuwin::AttributeProcessBytes(pl, {77}, 1, nvml::kPidsHost);
  CHECK("VALUE_NOT_AVAILABLE is null", std::isnan(a.bytes) && a.reason == nvml::kProcNotAvailable);
  a = gpuwin::AttributeProcessBytes(pl, {}, 5, nvml::kPidsHost);
  CHECK("absent where certain: 0", a.bytes == 0 && a.reason == nvml::kProcOk);
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

  // Per-process utilization.
  std::vector<nvml::ProcessUtil> samples = {{42, 30, 10}, {43, 80, 60}, {9, 99, 99}};
  double sm, mem;
  gpuwin::ProcessUtilization(samples, {}, 42, &sm, &mem);
  CHECK("self's utilization", sm == 30 && mem == 10);
  gpuwin::ProcessUtilization(samples, {42, 43}, 1, &sm, &mem);
  CHECK("a tree's utilization is summed and capped at 100", sm == 100 && mem == 70);
  gpuwin::ProcessUtilization(samples, {}, 5, &sm, &mem);
  CHECK("no sample of ours: 0", sm == 0 && mem == 0);

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

  // Cost estimate: the median of the last five, so one preempted round does not stretch the pacing.
  gpuwin::CostEstimate cost;
  CHECK("no cost measured yet: 0", cost.Ms() == 0);
  cost.Add(5);
  CHECK("one cost", cost.Ms() == 5);
  for (double ms : {5.0, 300.0, 5.0, 6.0}) cost.Add(ms);
  CHECK("an outlier does not move the median", cost.Ms() == 5);
  for (double ms : {9.0, 9.0, 9.0}) cost.Add(ms);
  CHECK("a lasting change does", cost.Ms() == 9);

  std::printf("ok %d checks\n", checks);
  return 0;
}
