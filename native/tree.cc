#include "tree.h"

#include <algorithm>
#include <unordered_set>

#include "proc/proc.h"

namespace taskmeter {

bool SampleTree(TreeState* st) {
  // Members: the root, its descendants now, and every process seen before that still lives (an orphan that was
  // re-parented elsewhere still belongs to the task that started it).
  std::vector<uint32_t> queue{st->root};
  std::unordered_set<uint32_t> members{st->root};
  bool children_ok = true;
  for (size_t i = 0; st->descendants && i < queue.size(); i++) {
    std::vector<uint32_t> kids;
    children_ok &= proc::ListChildren(queue[i], &kids);
    for (uint32_t k : kids)
      if (members.insert(k).second) queue.push_back(k);
  }
  if (!children_ok && st->descendants) {
    // No per-thread children lists (CONFIG_PROC_CHILDREN off): walk every process's parent instead.
    std::vector<std::pair<uint32_t, uint32_t>> all;
    if (proc::ListAllParents(&all)) {
      bool grew = true;
      while (grew) {
        grew = false;
        for (const auto& pp : all)
          if (members.count(pp.second) && members.insert(pp.first).second) grew = true;
      }
    }
  }
  if (st->descendants)
    for (const auto& kv : st->tracks) members.insert(kv.first);

  st->live_pids.clear();
  double rss_sum = 0;
  bool any_rss = false;
  bool root_alive = false;
  std::unordered_set<uint32_t> seen;
  for (uint32_t pid : members) {
    proc::ProcessInfo info;
    if (!proc::ReadProcess(pid, &info)) continue;
    auto it = st->tracks.find(pid);
    if (it != st->tracks.end() && it->second.start_ticks != info.start_ticks) {
      // the pid was reused by an unrelated process: the one we followed has gone
      continue;
    }
    if (it == st->tracks.end()) {
      if (pid != st->root && !members.count(info.ppid) && !st->tracks.count(info.ppid)) continue;
      TreeState::Track t;
      t.start_ticks = info.start_ticks;
      if (st->first && st->baseline_existing) {
        t.baseline_user_ms = info.cpu_user_ms;
        t.baseline_system_ms = info.cpu_system_ms;
      }
      it = st->tracks.emplace(pid, t).first;
      st->processes_seen++;
    }
    seen.insert(pid);
    if (pid == st->root) root_alive = info.alive;
    it->second.last_user_ms = info.cpu_user_ms;
    it->second.last_system_ms = info.cpu_system_ms;
    it->second.last_ppid = info.ppid;
    // The forked copy of a parent (before exec) holds the parent's pages: neither its RSS nor its peak is its own.
    if (info.alive && !info.forked_not_execed) {
      st->live_pids.push_back(pid);
      if (info.rss_bytes >= 0) {
        rss_sum += info.rss_bytes;
        any_rss = true;
      }
      if (info.hwm_bytes > st->max_hwm_bytes) {
        st->max_hwm_bytes = info.hwm_bytes;
        st->max_hwm_pid = pid;
        st->max_hwm_comm = info.comm;
      }
    }
  }
  // Processes that are gone: a tracked parent's cutime has absorbed their CPU once it reaped them; otherwise keep
  // what we last saw.
  for (auto it = st->tracks.begin(); it != st->tracks.end();) {
    if (seen.count(it->first)) {
      ++it;
      continue;
    }
#ifdef _WIN32
    bool absorbed = false;  // Windows never adds a child's CPU to its parent's times
#else
    bool absorbed = it->first != st->root && seen.count(it->second.last_ppid) > 0;
#endif
    if (!absorbed) {
      st->departed_user_ms += it->second.last_user_ms - it->second.baseline_user_ms;
      st->departed_system_ms += it->second.last_system_ms - it->second.baseline_system_ms;
    }
    it = st->tracks.erase(it);
  }
  double user = st->departed_user_ms, system = st->departed_system_ms;
  for (const auto& kv : st->tracks) {
    user += kv.second.last_user_ms - kv.second.baseline_user_ms;
    system += kv.second.last_system_ms - kv.second.baseline_system_ms;
  }
  st->cpu_user_ms = std::max(st->cpu_user_ms, user);  // sampled CPU never runs backwards
  st->cpu_system_ms = std::max(st->cpu_system_ms, system);
  st->rss_sum_bytes = any_rss ? rss_sum : -1;
  if (any_rss && st->rss_first_bytes < 0) st->rss_first_bytes = rss_sum;
  if (any_rss && rss_sum > st->rss_sum_peak_bytes) st->rss_sum_peak_bytes = rss_sum;
  st->first = false;
  st->root_alive = root_alive;
  return root_alive;
}

}  // namespace taskmeter
