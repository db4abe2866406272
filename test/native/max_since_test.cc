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
    CHECK(m.Since(0) == all[0].value);  // the front entry is never compacted away
  }
  {  // the oldest open window's answer survives compaction: an outer window opens, RSS spikes to 2 GB, then falls
     // slowly through many distinct lower readings while windows open and close inside it
    MaxSince m;
    uint64_t outer = 100;
    m.DropBefore(outer);  // the sampler drops what no open window can ask for
    m.Add(outer, 2e9);
    for (uint64_t i = 1; i <= 20000; i++) {
      m.Add(outer + i, 1e9 - static_cast<double>(i));
      CHECK(m.size() <= 4096);
    }
    CHECK(m.Since(outer) == 2e9);
    CHECK(m.Since(outer + 20000) == 1e9 - 20000);
  }
  {  // random windows opening and closing, random readings (some out of order, some numbered below the oldest open
     // window: reserved before it opened, added after): a window opened with no other open, the oldest for all its
     // life, reads exactly its largest reading whatever the cap; every other window never reads higher
    std::mt19937_64 rng2(777);
    long exact_checks = 0;
    for (int round = 0; round < 200; round++) {
      size_t cap = 2 + rng2() % 40;
      MaxSince m(cap);
      std::vector<Reading> all;
      std::vector<uint64_t> open;  // the open windows' numbers, oldest first
      bool front_was_first = false;  // open.front() opened while no other window was open
      uint64_t next = 0;
      std::vector<uint64_t> in_flight;
      for (int step = 0; step < 400; step++) {
        int what = static_cast<int>(rng2() % 6);
        double v = static_cast<double>(rng2() % 100000);
        if (what == 0) {
          if (open.empty()) front_was_first = true;
          open.push_back(next);
        } else if (what == 1 && !open.empty()) {
          size_t i = rng2() % open.size();
          open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
          if (i == 0) front_was_first = false;
          if (open.empty()) m.Clear();
        } else if (what == 2) {
          in_flight.push_back(next++);
        } else if (what == 3 && !in_flight.empty()) {
          uint64_t seq = in_flight.front();
          in_flight.erase(in_flight.begin());
          if (!open.empty()) {
            m.DropBefore(open.front());
            m.Add(seq, v);
          }
          all.push_back({seq, v});
        } else {
          uint64_t seq = next++;
          if (!open.empty()) {
            m.DropBefore(open.front());
            m.Add(seq, v);
          }
          all.push_back({seq, v});
        }
        if (!open.empty()) {
          m.DropBefore(open.front());
          CHECK(m.size() <= cap);
          double want = Brute(all, open.front());
          double got = m.Since(open.front());
          if (front_was_first) {
            CHECK((std::isnan(want) && std::isnan(got)) || want == got);
            exact_checks++;
          }
          for (uint64_t from : open) {  // the others: never higher
            double w = Brute(all, from);
            double g = m.Since(from);
            CHECK((std::isnan(w) && std::isnan(g)) || g <= w);
          }
        }
      }
    }
    CHECK(exact_checks > 10000);
  }
  std::printf("ok %ld\n", checks);
  return 0;
}
