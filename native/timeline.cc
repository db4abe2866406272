#include "timeline.h"

#include <algorithm>
#include <cmath>

namespace taskmeter {

namespace {

double MaxIgnoringNan(double a, double b) {
  return std::isnan(a) ? b : std::isnan(b) ? a : std::max(a, b);
}

bool IsMeanColumn(int c) {
  return c == kTlGpuUtilPercent || c == kTlCpuPercent;
}

}  // namespace

Timeline::Timeline() : last_cpu_ms(NAN), last_tick_ms(NAN), mid_cpu_ms(NAN), mid_tick_ms(NAN) {
  for (double& a : acc) a = NAN;
  for (uint32_t& n : acc_values) n = 0;
}

double TimelineCpuPercent(Timeline* t, double now_ms, double cpu_ms) {
  if (std::isnan(t->last_cpu_ms)) {
    t->last_cpu_ms = t->mid_cpu_ms = cpu_ms;
    t->last_tick_ms = t->mid_tick_ms = now_ms;
    return NAN;
  }
  if (std::isnan(cpu_ms) || !(now_ms > t->last_tick_ms)) return NAN;
  double p = std::max(0.0, (cpu_ms - t->last_cpu_ms) / (now_ms - t->last_tick_ms) * 100.0);
  if (now_ms - t->mid_tick_ms >= kTimelineCpuSpanMs) {
    t->last_cpu_ms = t->mid_cpu_ms;
    t->last_tick_ms = t->mid_tick_ms;
    t->mid_cpu_ms = cpu_ms;
    t->mid_tick_ms = now_ms;
  }
  return p;
}

void TimelineAppend(Timeline* t, const double* p) {
  if (t->acc_n == 0) {
    for (int i = 0; i < kTimelineColumns; i++) {
      t->acc[i] = p[i];
      t->acc_values[i] = std::isnan(p[i]) ? 0 : 1;
    }
  } else {
    for (int i = kTlTimeMs + 1; i < kTimelineColumns; i++) {
      if (!IsMeanColumn(i)) {
        t->acc[i] = MaxIgnoringNan(t->acc[i], p[i]);
      } else if (std::isnan(p[i])) {
        // a tick without a value is not part of the mean
      } else if (t->acc_values[i] == 0) {
        t->acc[i] = p[i];
        t->acc_values[i] = 1;
      } else {
        t->acc[i] = (t->acc[i] * t->acc_values[i] + p[i]) / (t->acc_values[i] + 1);
        t->acc_values[i]++;
      }
    }
  }
  if (++t->acc_n < t->stride) return;
  t->points.insert(t->points.end(), t->acc, t->acc + kTimelineColumns);
  t->acc_n = 0;
  if (t->points.size() / kTimelineColumns >= kTimelineMaxPoints) {
    TimelineHalve(&t->points);
    t->stride *= 2;
  }
}

void TimelineHalve(std::vector<double>* points) {
  size_t n = points->size() / kTimelineColumns;
  std::vector<double> merged;
  merged.reserve((n / 2 + 1) * kTimelineColumns);
  for (size_t i = 0; i < n; i += 2) {
    const double* a = points->data() + i * kTimelineColumns;
    if (i + 1 >= n) {
      merged.insert(merged.end(), a, a + kTimelineColumns);
      break;
    }
    const double* b = a + kTimelineColumns;
    merged.push_back(a[kTlTimeMs]);
    for (int c = kTlTimeMs + 1; c < kTimelineColumns; c++) {
      if (!IsMeanColumn(c)) {
        merged.push_back(MaxIgnoringNan(a[c], b[c]));
      } else {
        merged.push_back(std::isnan(a[c]) ? b[c] : std::isnan(b[c]) ? a[c] : (a[c] + b[c]) / 2);
      }
    }
  }
  points->swap(merged);
}

void TimelineTake(Timeline* t, std::vector<double>* out) {
  *out = std::move(t->points);
  t->points.clear();
  if (t->acc_n > 0) out->insert(out->end(), t->acc, t->acc + kTimelineColumns);
  t->acc_n = 0;  // emitted: the next tick starts a new group
}

}  // namespace taskmeter
