// Unit test of native/proc/parent_edges.h (stale parent pids on Windows), built and run on the host by
// test/ports.test.ts. Prints "ok N" or the first mismatch.
#include <cstdio>
#include <vector>

#include "proc/parent_edges.h"

using taskmeter::proc::DropStaleParents;
using taskmeter::proc::ProcessEdge;

static ProcessEdge E(uint32_t pid, uint32_t ppid, int64_t t) {
  ProcessEdge e;
  e.pid = pid;
  e.ppid = ppid;
  e.create_time = t;
  return e;
}

int main() {
  int n = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::printf("failed: %s\n", what);
      return false;
    }
    n++;
    return true;
  };
  // 100 started 200 and 300; 200 started 400. 500's parent (pid 100 once) ended long ago and 100 was... not reused.
  std::vector<ProcessEdge> v = {E(100, 4, 10), E(200, 100, 20), E(300, 100, 30), E(400, 200, 40)};
  DropStaleParents(&v);
  if (!expect(v[1].ppid == 100 && v[2].ppid == 100 && v[3].ppid == 200, "real parents are kept")) return 1;
  // 600 was started at t=5 by a process with pid 200 that ended; pid 200 now belongs to a process from t=20.
  v.push_back(E(600, 200, 5));
  DropStaleParents(&v);
  if (!expect(v[4].ppid == 0, "a parent younger than its child is dropped")) return 1;
  if (!expect(v[3].ppid == 200, "the reused pid's own children stay")) return 1;
  // a parent that is gone from the list: nothing to judge, kept
  std::vector<ProcessEdge> w = {E(700, 12345, 50)};
  DropStaleParents(&w);
  if (!expect(w[0].ppid == 12345, "an absent parent is left alone")) return 1;
  // unknown creation times (0) are never judged
  std::vector<ProcessEdge> u = {E(800, 900, 0), E(900, 1, 70), E(901, 800, 60)};
  DropStaleParents(&u);
  if (!expect(u[0].ppid == 900 && u[2].ppid == 800, "unknown times are kept")) return 1;
  // same instant (clock granularity): kept
  std::vector<ProcessEdge> s = {E(10, 1, 100), E(11, 10, 100)};
  DropStaleParents(&s);
  if (!expect(s[1].ppid == 10, "a parent created in the same tick is kept")) return 1;
  std::printf("ok %d\n", n);
  return 0;
}
