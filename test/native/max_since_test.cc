// Unit tests of native/max_since.h on its own (no addon, no threads): compiled and run by
// test/max-since-native.test.ts. Random readings (some arriving after readings numbered later, as the RSS thread's
// do) and random windows, checked against a brute-force maximum. Prints "ok <n>" and exits 0, or names the first
// failed check and exits 1.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "max_since.h"

using namespace taskmeter;

static long checks = 0;
#define CHECK(cond) \
  do { \
    checks++; \
    if (!(cond)) { \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1); \
    } \
  } while (0)

struct Reading {
  uint64_t seq;
  double value;
};

static double Brute(const std::vector<Reading>& all, uint64_t from) {
  double m = NAN;
  for (const Reading& r : all)
    if (r.seq >= from && (std::isnan(m) || r.value > m)) m = r.value;
  return m;
}

int main() {
  {  // empty, NaN ignored
    MaxSince m;
    CHECK(std::isnan(m.Since(0)));
    m.Add(0, NAN);
    CHECK(m.size() == 0);
    m.Add(1, 5);
    CHECK(m.Since(0) == 5 && m.Since(1) == 5 && std::isnan(m.Since(2)));
  }
  {  // a later larger reading dominates; a later smaller one is kept for windows opened after the larger one
    MaxSince m;
    m.Add(0, 10);
    m.Add(1, 30);
    m.Add(2, 20);
    CHECK(m.size() == 2);
    CHECK(m.Since(0) == 30 && m.Since(1) == 30 && m.Since(2) == 20);
    m.DropBefore(2);
    CHECK(m.size() == 1 && m.Since(0) == 20);
  }
  {  // a reading that arrives after later-numbered ones (reserved, read without the lock) lands in order
    MaxSince m;
    m.Add(1, 50);  // an endpoint read while reading 0 was in flight
    m.Add(0, 70);  // the in-flight reading, larger
    CHECK(m.Since(0) == 70 && m.Since(1) == 50);
    m.Add(3, 60);
    m.Add(2, 40);  // dominated by reading 3
    CHECK(m.Since(2) == 60 && m.Since(1) == 60 && m.Since(0) == 70);
  }
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 200; round++) {  // random, against brute force (cap high enough not to compact)
    MaxSince m(1 << 20);
    std::vector<Reading> all;
    uint64_t next = 0;
    std::vector<uint64_t> in_flight;
    for (int step = 0; step < 500; step++) {
      int what = static_cast<int>(rng() % 4);
      double v = static_cast<double>(rng() % 1000);
      if (what == 0) {
        in_flight.push_back(next++);  // reserved: added later
      } else if (what == 1 && !in_flight.empty()) {
        uint64_t seq = in_flight.front();
        in_flight.erase(in_flight.begin());
        m.Add(seq, v);
        all.push_back({seq, v});
      } else {
        uint64_t seq = next++;
        m.Add(seq, v);
        all.push_back({seq, v});
      }
      uint64_t from = rng() % (next + 1);
      double want = Brute(all, from);
      double got = m.Since(from);
      CHECK((std::isnan(want) && std::isnan(got)) || want == got);
    }
  }
  {  // past the cap: compaction only lowers answers, never raises them, and the newest reading stays exact
    MaxSince m(64);
    std::vector<Reading> all;
    for (uint64_t i = 0; i < 1000; i++) {  // a falling series keeps every reading
      double v = 1e6 - static_cast<double>(i);
      m.Add(i, v);
      all.push_back({i, v});
      CHECK(m.size() <= 64);
    }
    for (uint64_t from = 0; from <= 1000; from++) {
      double want = Brute(all, from);
      double got = m.Since(from);
      if (std::isnan(want)) {
        CHECK(std::isnan(got));
      } else {
        CHECK(got <= want);
      }
    }
    CHECK(m.Since(999) == all[999].value);
  }
  std::printf("ok %ld\n", checks);
  return 0;
}
