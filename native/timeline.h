// Timeline building: plain functions over plain data, no locks and no clocks. The sampler (native/sampler.cc) calls
// them under its mutex at each RSS tick; test/native/timeline_test.cc tests them on their own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "layout.h"

namespace taskmeter {

// Timeline columns, shared with src/binding.ts (TL_*; exported as layouts.TimelineColumn): a point is
// kTimelineColumns doubles.
#define TASKMETER_TIMELINE_COLUMNS(X) \
  X(TlTimeMs)          /* since the window opened */ \
  X(TlRssBytes)        /* this process */ \
  X(TlTreeRssBytes)    /* the tracked tree (NaN without one) */ \
  X(TlGpuProcessBytes) /* the window's pids on all GPUs (NaN without data) */ \
  X(TlGpuUtilPercent)  /* mean over GPUs */ \
  X(TlCpuPercent)      /* this process, or the tree */ \
  /* end */
TASKMETER_ENUM(TimelineColumn, TASKMETER_TIMELINE_COLUMNS, kTimelineColumns)

// At most this many points are kept; when full, neighbours are merged and each point covers twice as many ticks.
constexpr size_t kTimelineMaxPoints = 2048;
// The CPU rate is a trailing rate over kTimelineCpuSpanMs to 2 × kTimelineCpuSpanMs: /proc counts a tree's CPU in
// 10 ms clock ticks, so a rate over one short interval would jump between 0 and several hundred percent.
constexpr double kTimelineCpuSpanMs = 100;

struct Timeline {
  std::vector<double> points;  // complete points, kTimelineColumns each
  uint32_t stride = 1;         // ticks merged into one point
  uint32_t acc_n = 0;          // ticks merged into `acc` so far
  double acc[kTimelineColumns];
  uint32_t acc_values[kTimelineColumns];  // ticks with a value (not NaN) in each column of `acc`: a mean's weight
  // Two CPU references for the trailing rate: the rate is taken from the older (last_*).
  double last_cpu_ms;
  double last_tick_ms;
  double mid_cpu_ms;
  double mid_tick_ms;
  Timeline();
};

// The CPU percentage at `now_ms` for cumulative CPU `cpu_ms` (NaN for the first tick or when unknown). Advances the
// references.
double TimelineCpuPercent(Timeline* t, double now_ms, double cpu_ms);

// Adds one tick's point (kTimelineColumns values): merged into the accumulator (first time of the group, largest
// memory, mean of the percentages ignoring NaN); every `stride` ticks the accumulator becomes a point; at
// kTimelineMaxPoints points, neighbours are merged (TimelineHalve) and the stride doubles.
void TimelineAppend(Timeline* t, const double* point);

// Merges neighbouring points pairwise the same way (an odd last point is kept as is).
void TimelineHalve(std::vector<double>* points);

// Moves the points out, followed by the partial point still being merged (if any), which then starts afresh. The
// timeline keeps its stride.
void TimelineTake(Timeline* t, std::vector<double>* out);

}  // namespace taskmeter
