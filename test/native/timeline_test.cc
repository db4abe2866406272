// Unit tests of native/timeline.cc on its own (no addon, no threads, no clocks): compiled and run by
// test/timeline-native.test.ts. Prints "ok <n>" and exits 0, or names the first failed check and exits 1.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "timeline.h"

using namespace taskmeter;

static int checks = 0;
#define CHECK(cond)                                                       \
  do {                                                                    \
    checks++;                                                             \
    if (!(cond)) {                                                        \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
      std::exit(1);                                                       \
    }                                                                     \
  } while (0)

static void Point(double* p, double t, double rss, double tree, double gpu, double util, double cpu) {
  p[kTlTimeMs] = t;
  p[kTlRssBytes] = rss;
  p[kTlTreeRssBytes] = tree;
  p[kTlGpuProcessBytes] = gpu;
  p[kTlGpuUtilPercent] = util;
  p[kTlCpuPercent] = cpu;
}

static size_t Points(const Timeline& t) { return t.points.size() / kTimelineColumns; }

int main() {
  {  // below the limit every tick is one point, kept as given
    Timeline t;
    double p[kTimelineColumns];
    for (int i = 0; i < 10; i++) {
      Point(p, i, 100 + i, NAN, NAN, 50, 10);
      TimelineAppend(&t, p);
    }
    CHECK(Points(t) == 10);
    CHECK(t.stride == 1);
    CHECK(t.points[3 * kTimelineColumns + kTlRssBytes] == 103);
    CHECK(std::isnan(t.points[3 * kTimelineColumns + kTlTreeRssBytes]));
  }
  {  // at the limit: neighbours merge (first time, largest memory, mean percentages) and the stride doubles
    Timeline t;
    double p[kTimelineColumns];
    for (size_t i = 0; i < kTimelineMaxPoints; i++) {
      Point(p, i, i % 2 ? 1000 : 10, NAN, i % 2 ? NAN : 7, i % 2 ? 20 : 40, NAN);
      TimelineAppend(&t, p);
    }
    CHECK(Points(t) == kTimelineMaxPoints / 2);
    CHECK(t.stride == 2);
    const double* first = &t.points[0];
    CHECK(first[kTlTimeMs] == 0);
    CHECK(first[kTlRssBytes] == 1000);        // the maximum, not the mean
    CHECK(first[kTlGpuProcessBytes] == 7);    // NaN does not erase a value
    CHECK(first[kTlGpuUtilPercent] == 30);    // the mean
    CHECK(std::isnan(first[kTlCpuPercent]));  // NaN with NaN stays NaN
    CHECK(t.points[kTimelineColumns + kTlTimeMs] == 2);
    // from now on two ticks make one point; their merge follows the same rules
    Point(p, 5000, 1, NAN, NAN, 10, 100);
    TimelineAppend(&t, p);
    CHECK(Points(t) == kTimelineMaxPoints / 2);
    CHECK(t.acc_n == 1);
    Point(p, 5001, 2, NAN, NAN, 30, NAN);
    TimelineAppend(&t, p);
    CHECK(Points(t) == kTimelineMaxPoints / 2 + 1);
    const double* last = &t.points[t.points.size() - kTimelineColumns];
    CHECK(last[kTlTimeMs] == 5000);
    CHECK(last[kTlRssBytes] == 2);
    CHECK(last[kTlGpuUtilPercent] == 20);
    CHECK(last[kTlCpuPercent] == 100);  // a NaN tick does not pull the mean
  }
  {  // a long run stays bounded and ordered
    Timeline t;
    double p[kTimelineColumns];
    double max_rss = 0;
    for (int i = 0; i < 100000; i++) {
      double rss = (i * 7919) % 100003;
      max_rss = std::max(max_rss, rss);
      Point(p, i, rss, NAN, NAN, NAN, NAN);
      TimelineAppend(&t, p);
    }
    CHECK(Points(t) < kTimelineMaxPoints);
    double seen = 0;
    for (size_t i = 0; i < Points(t); i++) {
      if (i > 0) CHECK(t.points[i * kTimelineColumns] > t.points[(i - 1) * kTimelineColumns]);
      seen = std::max(seen, t.points[i * kTimelineColumns + kTlRssBytes]);
    }
    std::vector<double> out;
    TimelineTake(&t, &out);
    for (size_t i = 0; i < out.size() / kTimelineColumns; i++) seen = std::max(seen, out[i * kTimelineColumns + 1]);
    CHECK(seen == max_rss);  // halving never loses the peak
    CHECK(t.points.empty());
  }
  {  // TimelineTake: the points, then the partial point being merged
    Timeline t;
    t.stride = 4;
    double p[kTimelineColumns];
    for (int i = 0; i < 6; i++) {
      Point(p, i, i, NAN, NAN, NAN, NAN);
      TimelineAppend(&t, p);
    }
    std::vector<double> out;
    TimelineTake(&t, &out);
    CHECK(out.size() == 2 * kTimelineColumns);
    CHECK(out[kTlRssBytes] == 3);
    CHECK(out[kTimelineColumns + kTlTimeMs] == 4);
    CHECK(out[kTimelineColumns + kTlRssBytes] == 5);
  }
  {  // a mean column averages the ticks that had a value: {NaN, 50, 100, 100} → 83.3, not 75
    Timeline t;
    t.stride = 4;
    double p[kTimelineColumns];
    const double util[4] = {NAN, 50, 100, 100};
    for (int i = 0; i < 4; i++) {
      Point(p, i, 1, NAN, NAN, util[i], i == 3 ? 30 : NAN);
      TimelineAppend(&t, p);
    }
    CHECK(Points(t) == 1);
    CHECK(std::fabs(t.points[kTlGpuUtilPercent] - 250.0 / 3) < 1e-9);
    CHECK(t.points[kTlCpuPercent] == 30);
  }
  {  // a second TimelineTake never repeats the partial point the first one emitted
    Timeline t;
    t.stride = 4;
    double p[kTimelineColumns];
    for (int i = 0; i < 2; i++) {
      Point(p, i, i, NAN, NAN, 10, NAN);
      TimelineAppend(&t, p);
    }
    std::vector<double> out;
    TimelineTake(&t, &out);
    CHECK(out.size() == kTimelineColumns);
    TimelineTake(&t, &out);
    CHECK(out.empty());
    Point(p, 9, 7, NAN, NAN, 30, NAN);  // the next group starts afresh
    TimelineAppend(&t, p);
    TimelineTake(&t, &out);
    CHECK(out.size() == kTimelineColumns);
    CHECK(out[kTlTimeMs] == 9);
    CHECK(out[kTlRssBytes] == 7);
    CHECK(out[kTlGpuUtilPercent] == 30);
  }
  {  // TimelineHalve: an odd last point is kept as it is
    std::vector<double> v;
    for (int i = 0; i < 3; i++)
      for (int c = 0; c < kTimelineColumns; c++) v.push_back(c == 0 ? i : 10 * i + c);
    TimelineHalve(&v);
    CHECK(v.size() == 2 * kTimelineColumns);
    CHECK(v[kTimelineColumns] == 2);
    CHECK(v[kTimelineColumns + kTlRssBytes] == 21);
    std::vector<double> empty;
    TimelineHalve(&empty);
    CHECK(empty.empty());
  }
  {  // the CPU rate: none at the first tick; a trailing rate over 100–200 ms after
    Timeline t;
    CHECK(std::isnan(TimelineCpuPercent(&t, 0, 0)));
    CHECK(TimelineCpuPercent(&t, 10, 5) == 50);   // 5 ms of CPU in 10 ms
    CHECK(std::isnan(TimelineCpuPercent(&t, 0, 6)));  // no time since the reference: no rate, never Infinity
    CHECK(std::isnan(TimelineCpuPercent(&t, 20, NAN)));
    CHECK(TimelineCpuPercent(&t, 100, 100) == 100);   // moves the references: last ← (0, 0), mid ← (100, 100)
    CHECK(TimelineCpuPercent(&t, 150, 100) == (100.0 / 150) * 100);
    CHECK(TimelineCpuPercent(&t, 200, 100) == 50);    // from (0, 0): 100 ms of CPU in 200 ms; then last ← (100, 100)
    CHECK(TimelineCpuPercent(&t, 300, 100) == 0);     // from (100, 100): idle since
    CHECK(TimelineCpuPercent(&t, 310, 90) == 0);      // a counter step back never gives a negative rate
  }
  std::printf("ok %d\n", checks);
  return 0;
}
