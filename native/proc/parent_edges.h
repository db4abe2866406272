// Windows keeps a process's parent pid after the parent has ended, and reuses pids: a process whose parent is gone
// can name a pid that now belongs to an unrelated, younger process, which a tree walk would then take for its
// parent. A parent is never younger than its child, so such an edge is dropped. Header-only, no Windows headers:
// test/ports/parent-edges-test.cc checks it on the host.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace taskmeter {
namespace proc {

struct ProcessEdge {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  int64_t create_time = 0;  // any monotonic unit (Windows: 100 ns FILETIME); 0 = unknown, never judged stale
};

inline void DropStaleParents(std::vector<ProcessEdge>* edges) {
  std::unordered_map<uint32_t, int64_t> created;
  created.reserve(edges->size());
  for (const auto& e : *edges) created[e.pid] = e.create_time;
  for (auto& e : *edges) {
    if (e.ppid == 0 || e.create_time <= 0) continue;
    auto it = created.find(e.ppid);
    if (it != created.end() && it->second > e.create_time) e.ppid = 0;  // that pid's owner came later
  }
}

}  // namespace proc
}  // namespace taskmeter
