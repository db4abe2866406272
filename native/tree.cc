#include "tree.h"

#include <algorithm>
#include <chrono>
#include <unordered_set>
#if !defined(_WIN32)
#include <time.h>
#endif

namespace taskmeter {
namespace {

// This thread's CPU time, ms (wall time where there is no thread clock): the sample's cost is CPU, and a loaded
// machine must not make it look dearer than it is.
double ThreadCpuMs() {
#if defined(_WIN32)
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
#else
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) * 1000.0 + static_cast<double>(ts.tv_nsec) / 1e6;
#endif
}

}  // namespace

double EffectiveIntervalMs(const TreeState& st, double requested_ms) {
  return std::max(requested_ms, std::min(kTreeMaxIntervalMs, st.cost_ms / kTreeCpuBudget));
}

bool SampleTree(TreeState* st) {
  double cost_start = ThreadCpuMs();
  // Members: the root, its descendants now, and every process seen before that still lives (an orphan that was
  // re-parented elsewhere still belongs to the task that started it). One pass reads each process and lists its
  // children.
  const uint32_t gen = ++st->gen;
  std::vector<uint32_t> queue;
  queue.reserve(st->tracks.size() + 1);
  std::unordered_set<uint32_t> queued_new;  // newcomers (tracked ones carry the mark)
  auto enqueue = [&](uint32_t pid) {
    auto t = st->tracks.find(pid);
    if (t != st->tracks.end()) {
      if (t->second.queued_gen == gen) return;
      t->second.queued_gen = gen;
    } else if (!queued_new.insert(pid).second) {
      return;
    }
    queue.push_back(pid);
  };
  auto seen = [&](uint32_t pid) {
    auto t = st->tracks.find(pid);
    return t != st->tracks.end() && t->second.seen_gen == gen;
  };
  size_t seen_count = 0;
  // Processes already followed come first (their reads are the steady cost, see below), then the root if it is new.
  for (const auto& kv : st->tracks)
    if (st->descendants || kv.first == st->root) enqueue(kv.first);
  const size_t known = queue.size();
  if (!st->root_gone) enqueue(st->root);

  st->live_pids.clear();
  double rss_sum = 0;
  bool any_rss = false;
  bool root_alive = false;
  bool children_ok = true;
  uint32_t live = 0;
  std::vector<uint32_t> kids;
  // The cost of reading the processes already followed is what every sample pays; a newcomer's first read also opens
  // its files. The estimate scales the former to the whole tree, so that a burst of newcomers does not stretch the
  // interval by itself.
  double known_cost_ms = -1;
  for (size_t i = 0; i < queue.size(); i++) {
    if (i == known) known_cost_ms = ThreadCpuMs() - cost_start;
    uint32_t pid = queue[i];
    auto it = st->tracks.find(pid);
    std::shared_ptr<proc::ProcessReader> reader =
        it != st->tracks.end() ? it->second.reader : std::make_shared<proc::ProcessReader>(pid);
    proc::ProcessInfo info;
    if (!reader->Read(false, &info)) {
      // Gone (or its pid names another process now). One that could not be read for another reason (no descriptor
      // left) keeps its last values until the next sample.
      if (!reader->Gone()) {
        if (it != st->tracks.end() && it->second.seen_gen != gen) {
          it->second.seen_gen = gen;
          seen_count++;
        }
        if (pid == st->root) root_alive = st->root_alive;  // unknown: as it was (alive, before the first read)
      }
      continue;
    }
    if (it != st->tracks.end() && it->second.start_ticks != info.start_ticks) continue;
    if (pid == st->root) {
      if (st->root_start_ticks < 0) st->root_start_ticks = info.start_ticks;
      if (info.start_ticks != st->root_start_ticks) continue;  // not the process we were asked to follow
    }
    if (it == st->tracks.end()) {
      TreeState::Track t;
      t.start_ticks = info.start_ticks;
      t.reader = reader;
      t.queued_gen = gen;
      if (st->first && st->baseline_existing) {
        t.baseline_user_ms = info.cpu_user_ms;
        t.baseline_system_ms = info.cpu_system_ms;
      }
      it = st->tracks.emplace(pid, std::move(t)).first;
      st->processes_seen++;
    }
    TreeState::Track& tr = it->second;
    tr.seen_gen = gen;
    seen_count++;
    if (pid == st->root) root_alive = info.alive;
    tr.last_user_ms = info.cpu_user_ms;
    tr.last_system_ms = info.cpu_system_ms;
    tr.last_ppid = info.ppid;
    // The forked copy of a parent (before exec) holds the parent's pages: neither its RSS nor its peak is its own.
    if (info.alive && !info.forked_not_execed) {
      live++;
      st->live_pids.push_back(pid);
      if (info.rss_bytes >= 0) {
        rss_sum += info.rss_bytes;
        any_rss = true;
        // VmHWM only when it can say more than the RSS we see: at first sight, after the RSS fell (memory was
        // released, and the kernel folds the peak it had reached into VmHWM), and every kHwmEvery samples.
        bool fell = tr.last_rss_bytes >= 0 && info.rss_bytes < tr.last_rss_bytes;
        if (tr.hwm_bytes < 0 || fell || ++tr.since_hwm >= kHwmEvery) {
          double hwm = reader->ReadPeakBytes();
          if (hwm > tr.hwm_bytes) tr.hwm_bytes = hwm;
          tr.since_hwm = 0;
        }
        if (info.rss_bytes > tr.hwm_bytes) tr.hwm_bytes = info.rss_bytes;
        tr.last_rss_bytes = info.rss_bytes;
        if (tr.hwm_bytes > st->max_hwm_bytes) {
          st->max_hwm_bytes = tr.hwm_bytes;
          st->max_hwm_pid = pid;
          st->max_hwm_comm = info.comm;
        }
      }
    }
    if (!st->descendants) continue;
    kids.clear();
    children_ok &= reader->Children(&kids);
    for (uint32_t k : kids) enqueue(k);
  }
  if (!children_ok && st->descendants) {
    // No per-thread children lists (CONFIG_PROC_CHILDREN off): walk every process's parent instead, then read the
    // newcomers.
    std::vector<std::pair<uint32_t, uint32_t>> all;
    if (proc::ListAllParents(&all)) {
      bool grew = true;
      while (grew) {
        grew = false;
        for (const auto& pp : all) {
          if (!seen(pp.second) || seen(pp.first)) continue;
          auto reader = std::make_shared<proc::ProcessReader>(pp.first);
          proc::ProcessInfo info;
          if (!reader->Read(true, &info)) continue;
          TreeState::Track t;
          t.start_ticks = info.start_ticks;
          t.reader = reader;
          t.last_user_ms = info.cpu_user_ms;
          t.last_system_ms = info.cpu_system_ms;
          t.last_ppid = info.ppid;
          if (st->first && st->baseline_existing) {
            t.baseline_user_ms = info.cpu_user_ms;
            t.baseline_system_ms = info.cpu_system_ms;
          }
          if (info.alive && !info.forked_not_execed && info.rss_bytes >= 0) {
            live++;
            st->live_pids.push_back(pp.first);
            rss_sum += info.rss_bytes;
            any_rss = true;
            t.hwm_bytes = std::max(info.hwm_bytes, info.rss_bytes);
            t.last_rss_bytes = info.rss_bytes;
            if (t.hwm_bytes > st->max_hwm_bytes) {
              st->max_hwm_bytes = t.hwm_bytes;
              st->max_hwm_pid = pp.first;
              st->max_hwm_comm = info.comm;
            }
          }
          t.seen_gen = t.queued_gen = gen;
          st->tracks.emplace(pp.first, std::move(t));
          st->processes_seen++;
          seen_count++;
          grew = true;
        }
      }
    }
  }

  // Processes that are gone. A tracked parent that reaped one has absorbed its whole CPU (the lifetime total, also
  // what it used before tracking began) into its cutime/cstime: the child's baseline must come off again, or the
  // time before tracking would be counted. A process that left without a tracked parent keeps what we last saw.
  for (auto it = st->tracks.begin(); it != st->tracks.end();) {
    if (it->second.seen_gen == gen) {
      ++it;
      continue;
    }
    const TreeState::Track& t = it->second;
#ifdef _WIN32
    bool absorbed = false;  // Windows never adds a child's CPU to its parent's times
#else
    bool absorbed = it->first != st->root && seen(t.last_ppid);
#endif
    if (absorbed) {
      st->departed_user_ms -= t.baseline_user_ms;
      st->departed_system_ms -= t.baseline_system_ms;
    } else {
      st->departed_user_ms += t.last_user_ms - t.baseline_user_ms;
      st->departed_system_ms += t.last_system_ms - t.baseline_system_ms;
    }
    if (it->first == st->root) st->root_gone = true;  // its pid may be reused: never adopt it again
    it = st->tracks.erase(it);
  }
  if (st->root_start_ticks >= 0 && !seen(st->root)) st->root_gone = true;
  double user = st->departed_user_ms, system = st->departed_system_ms;
  for (const auto& kv : st->tracks) {
    user += kv.second.last_user_ms - kv.second.baseline_user_ms;
    system += kv.second.last_system_ms - kv.second.baseline_system_ms;
  }
  st->cpu_user_ms = std::max(st->cpu_user_ms, user);  // sampled CPU never runs backwards
  st->cpu_system_ms = std::max(st->cpu_system_ms, system);
  st->rss_sum_bytes = any_rss ? rss_sum : -1;
  if (any_rss && st->rss_first_bytes < 0) st->rss_first_bytes = rss_sum;
  if (any_rss) st->rss_last_bytes = rss_sum;
  if (any_rss && rss_sum > st->rss_sum_peak_bytes) st->rss_sum_peak_bytes = rss_sum;
  st->first = false;
  st->root_alive = root_alive;
  st->processes_now = live;
  double cost = std::max(0.0, ThreadCpuMs() - cost_start);
  size_t members = std::max<size_t>(1, seen_count);
  double est;
  if (known > 0 && known_cost_ms >= 0 && known < members) {
    est = known_cost_ms * static_cast<double>(members) / static_cast<double>(known);
  } else if (known > 0) {
    est = cost;
  } else {
    // Only newcomers (the first sample): opening a /proc file and reading it costs about 2.5 reads of an open one.
    est = cost / 2.5;
  }
  // Smoothed upwards, so that one dear sample (a cold cache, a preemption inside a read) does not stretch the
  // interval by itself; followed at once downwards.
  st->cost_ms = st->samples_taken == 0 ? est : std::min(est, 0.7 * st->cost_ms + 0.3 * est);
  st->samples_taken++;
  return root_alive;
}

}  // namespace taskmeter
