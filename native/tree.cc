#include "tree.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <thread>
#include <unordered_set>
#if !defined(_WIN32)
#include <time.h>
#endif

#include "own_forks.h"

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

// How far a parent's children counters may fall short of a departed child's total and still be taken to hold it:
// both are read in clock ticks, and the kernel may round the child's split of user and system time differently.
constexpr double kAbsorbSlackMs = 20;

// The most times a parent's children are looked at, at the end of a first sample, for ones it has reaped since their
// own read (SampleTree).
constexpr int kBaseReadRounds = 4;

// The test hold of a first sample (HoldFirstTreeReadForTest): 0 none, 1 or 2 armed at that point, 3 holding,
// 4 released.
std::atomic<int> g_first_read_hold{0};

void MaybeHoldForTest(int point) {
  int armed = point;
  if (!g_first_read_hold.compare_exchange_strong(armed, 3)) return;
  for (int i = 0; i < 10000 && g_first_read_hold.load() == 3; i++)  // 10 s at most
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  g_first_read_hold.store(0);
}

using Track = TreeState::Track;
using Counters = TreeState::Counters;

// What a read of the process says (I/O: read apart, see SetIo).
void SetCounters(const proc::ProcessInfo& info, Counters* c) {
  c->reaped[kTcUserMs] = info.children_user_ms;
  c->reaped[kTcSystemMs] = info.children_system_ms;
  c->own[kTcUserMs] = std::max(0.0, info.cpu_user_ms - info.children_user_ms);
  c->own[kTcSystemMs] = std::max(0.0, info.cpu_system_ms - info.children_system_ms);
  c->own[kTcMinorFaults] = info.minor_faults;
  c->reaped[kTcMinorFaults] = info.children_minor_faults;
  c->own[kTcMajorFaults] = info.major_faults;
  c->reaped[kTcMajorFaults] = info.children_major_faults;
}

// /proc/<pid>/io: rchar, wchar, read_bytes, write_bytes (ProcessReader::ReadIo), each one count of its own and its
// waited-for children's.
void SetIo(const double io[4], Counters* c) {
  for (int i = 0; i < 4; i++) {
    c->own[kTcIoReadBytes + i] = 0;
    c->reaped[kTcIoReadBytes + i] = io[i];
  }
}

double Pos(double v) {
  return v > 0 ? v : 0;
}
double Or0(double v) {
  return std::isnan(v) ? 0 : v;
}

// What one process adds to the tree's counter k: its own count since tracking began, and the growth of the count
// its waited-for children move into that no departed child of the tree explains. 0 where not read.
double Contribution(const Track& t, int k) {
  double own = std::isnan(t.last.own[k]) ? 0 : Pos(t.last.own[k] - Or0(t.base.own[k]));
  double reaped = std::isnan(t.last.reaped[k]) ? 0 : Pos(t.last.reaped[k] - Or0(t.base.reaped[k]) - t.claimed[k]);
  return own + reaped;
}

// A departed child's whole count of kind k as last read (what moves into its parent's when it is waited for); NaN
// where not read.
double Total(const TreeState::Departed& d, int k) {
  if (std::isnan(d.total.own[k]) && std::isnan(d.total.reaped[k])) return NAN;
  return Or0(d.total.own[k]) + Or0(d.total.reaped[k]);
}

// Did parent p wait for the departed child d (its children's CPU grew by about d's total, and each other count it
// keeps by at least d's)? If so, the growth that d explains is claimed, so that it is not counted a second time as
// p's.
bool Absorb(Track& p, const TreeState::Departed& d) {
  // A parent already a zombie in a sample before the last one that read the child waited for nothing since. In the
  // same sample it may have been read after the wait: the growth decides.
  if (p.dead_gen != 0 && p.dead_gen < d.seen_gen) return false;
  double avail[kTreeCounters], need[kTreeCounters];
  for (int k = 0; k < kTreeCounters; k++) {
    avail[k] = std::isnan(p.last.reaped[k]) ? NAN : Pos(p.last.reaped[k] - Or0(p.base.reaped[k]) - p.claimed[k]);
    need[k] = Total(d, k);
  }
  if (Or0(avail[kTcUserMs]) + Or0(avail[kTcSystemMs]) < Or0(need[kTcUserMs]) + Or0(need[kTcSystemMs]) - kAbsorbSlackMs)
    return false;
  // Faults and I/O move into the parent's counts at the same moment (the kernel's wait4): where both are known, they
  // must agree too (a parent's own I/O makes that a weaker test than the CPU one, never a stricter one).
  for (int k = kTcMinorFaults; k < kTreeCounters; k++)
    if (!std::isnan(avail[k]) && !std::isnan(need[k]) && need[k] > avail[k]) return false;
  for (int k = 0; k < kTreeCounters; k++)
    if (!std::isnan(avail[k]) && !std::isnan(need[k])) p.claimed[k] += std::min(need[k], avail[k]);
  return true;
}

}  // namespace

double EffectiveIntervalMs(const TreeState& st, double requested_ms) {
  return std::max(requested_ms, std::min(kTreeMaxIntervalMs, st.cost_ms / kTreeCpuBudget));
}

double PssIntervalMs(const TreeResults& r) {
  if (r.pss_passes < 2) return NAN;
  return (r.pss_last_ms - r.pss_first_ms) / static_cast<double>(r.pss_passes - 1);
}

namespace {

// The tree's PSS, when its budget allows (see tree.h). Reads every live process of this sample; a pass in which a
// process's PSS could not be read (not ours: EACCES) gives no figure, since a partial sum would be a plausible
// number that nothing measured.
void MaybeSamplePss(TreeState* st, double rss_sum, bool any_rss, double rss_peak_before) {
  if (st->pss_unsupported || st->live_pids.empty()) return;
  double now = proc::MonotonicMs();
  if (st->pss_refill_ms >= 0)
    st->pss_tokens_ms = std::min(kPssBucketMs, st->pss_tokens_ms + (now - st->pss_refill_ms) * kPssCpuBudget);
  st->pss_refill_ms = now;
  double estimate = st->pss_cost_per_process_ms * static_cast<double>(st->live_pids.size() + st->own_fork_pids.size());
  if (st->pss_tokens_ms < std::min(estimate, kPssBucketMs)) return;
  bool new_high = any_rss && rss_sum > rss_peak_before && rss_sum > st->pss_rss_at_last * 1.125;
  bool due = st->pss_last_try_ms < 0 || now - st->pss_last_try_ms >= kPssMinIntervalMs || new_high;
  if (!due) return;
  double cost_start = ThreadCpuMs();
  double pss_sum = 0, rollup_rss_sum = 0;
  bool complete = true, any = false;
  size_t read = 0;
  // Our own copies too: the pages they share with us count half for us while they live, and theirs is the rest.
  for (const std::vector<uint32_t>* pids : {&st->live_pids, &st->own_fork_pids}) {
    for (uint32_t pid : *pids) {
      auto it = st->tracks.find(pid);
      if (it == st->tracks.end()) continue;
      double pss = 0, rss = 0;
      int e = it->second.reader->ReadPss(&pss, &rss);
      read++;
      if (e == 0) {
        pss_sum += pss;
        rollup_rss_sum += std::max(0.0, rss - it->second.uncounted_rss);  // what the RSS sum counts of it
        any = true;
      } else if (e == ENOSYS) {
        st->pss_unsupported = true;
        return;
      } else if (e != ESRCH && e != ENOENT) {
        complete = false;  // alive, and its PSS not ours to read
        st->pss_denied = true;
      }
    }
  }
  double cost = std::max(0.0, ThreadCpuMs() - cost_start);
  st->pss_tokens_ms -= cost;
  if (read > 0) st->pss_cost_per_process_ms = cost / static_cast<double>(read);
  st->pss_last_try_ms = now;
  st->pss_rss_at_last = any_rss ? rss_sum : st->pss_rss_at_last;
  if (!any || !complete) return;
  if (pss_sum > st->pss_sum_peak_bytes) st->pss_sum_peak_bytes = pss_sum;
  if (rollup_rss_sum > st->pss_rss_sum_bytes) st->pss_rss_sum_bytes = rollup_rss_sum;
  // The same walk of the page tables read each process's RSS: an observation of the RSS sum as good as any.
  if (rollup_rss_sum > st->rss_sum_peak_bytes) st->rss_sum_peak_bytes = rollup_rss_sum;
  if (st->pss_passes == 0) st->pss_first_ms = now;
  st->pss_last_ms = now;
  st->pss_passes++;
}

}  // namespace

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
  st->own_fork_pids.clear();
  uint32_t self_pid = 0;  // read when first needed
  double rss_sum = 0;
  bool any_rss = false;
  bool root_alive = false;
  uint32_t live = 0;
  const double rss_peak_before = st->rss_sum_peak_bytes;
  std::vector<uint32_t> baseline_order;  // the first sample's processes that ran before tracking, parents first

  // One process read (info), new or followed: its counters, memory and marks.
  auto observe = [&](uint32_t pid, const std::shared_ptr<proc::ProcessReader>& reader, const proc::ProcessInfo& info,
                     bool fresh) -> Track& {
    auto it = st->tracks.find(pid);
    if (it == st->tracks.end()) {
      Track t;
      t.start_ticks = info.start_ticks;
      t.reader = reader;
      t.queued_gen = gen;
      it = st->tracks.emplace(pid, std::move(t)).first;
    }
    Track& tr = it->second;
    tr.denied = false;
    if (!tr.read_once) {
      // First read: what it used before tracking began is not the task's.
      tr.read_once = true;
      st->processes_seen++;
      if (st->first && st->baseline_existing) {
        tr.baseline = true;
        baseline_order.push_back(pid);
        SetCounters(info, &tr.base);  // (a NaN base counts as 0: a process born since tracking began)
      }
    }
    tr.seen_gen = gen;
    seen_count++;
    if (fresh) tr.fresh_gen = gen;
    SetCounters(info, &tr.last);
    tr.last_ppid = info.ppid;
    tr.alive = info.alive;
    if (info.zombie && tr.dead_gen == 0) tr.dead_gen = gen;
    if (fresh) {
      // I/O counts move only while the process runs (its own calls, or its wait for a child): read when it ran.
      double io[4];
      if (reader->ReadIo(io) == 0) {
        if (tr.baseline && std::isnan(tr.base.reaped[kTcIoReadBytes])) SetIo(io, &tr.base);
        SetIo(io, &tr.last);
      }
    }
    if (pid == st->root) root_alive = info.alive;
    // A process forked without exec is a worker, or a copy of its parent on its way to exec (see tree.h): this
    // process's own copies are left out of the RSS sum; another's counts only what it added while it is young.
    tr.own_fork = false;
    bool young_fork = false;
    if (info.forked_not_execed) {
      if (self_pid == 0) self_pid = proc::SelfPid();
      tr.own_fork = OwnForks::IsOwn(pid, info.ppid, self_pid);
      if (!tr.own_fork) {
        double now = proc::MonotonicMs();
        if (tr.fork_seen_ms < 0) tr.fork_seen_ms = now;
        double since_start = proc::MinAgeMs(info.start_ticks);
        young_fork = std::max(now - tr.fork_seen_ms, since_start >= 0 ? since_start : 0) < kForkCopyAgeMs;
      }
    }
    tr.uncounted_rss = 0;
    if (info.alive && tr.own_fork) {
      st->own_fork_pids.push_back(pid);  // its PSS is its share of our pages: read with the tree's (MaybeSamplePss)
      tr.uncounted_rss = INFINITY;
    }
    if (info.alive && !tr.own_fork) {
      live++;
      st->live_pids.push_back(pid);
      if (info.rss_bytes >= 0) {
        if (young_fork) {
          if (tr.fork_base_rss < 0) tr.fork_base_rss = info.rss_bytes;
          tr.uncounted_rss = std::min(tr.fork_base_rss, info.rss_bytes);
        }
        rss_sum += info.rss_bytes - tr.uncounted_rss;
        any_rss = true;
        // VmHWM only when it can say more than the RSS we see: at first sight, after the RSS fell (memory was
        // released, and the kernel folds the peak it had reached into VmHWM), and every kHwmEvery samples. Not for
        // a young fork: a copy's peak is its parent's.
        bool fell = tr.last_rss_bytes >= 0 && info.rss_bytes < tr.last_rss_bytes;
        tr.last_rss_bytes = info.rss_bytes;
        if (young_fork) return tr;
        if (info.hwm_bytes >= 0) {
          tr.hwm_bytes = std::max(tr.hwm_bytes, info.hwm_bytes);
          tr.since_hwm = 0;
        } else if (tr.hwm_bytes < 0 || fell || ++tr.since_hwm >= kHwmEvery) {
          double hwm = reader->ReadPeakBytes();
          if (hwm > tr.hwm_bytes) tr.hwm_bytes = hwm;
          tr.since_hwm = 0;
        }
        if (info.rss_bytes > tr.hwm_bytes) tr.hwm_bytes = info.rss_bytes;
        if (tr.hwm_bytes > st->max_hwm_bytes) {
          st->max_hwm_bytes = tr.hwm_bytes;
          st->max_hwm_pid = pid;
          st->max_hwm_comm = info.comm;
        }
      }
    }
    return tr;
  };
  // A process that lives but may not be read (another user's, under hidepid): alive, unreadable, nothing counted.
  auto observe_denied = [&](uint32_t pid, const std::shared_ptr<proc::ProcessReader>& reader) {
    auto it = st->tracks.find(pid);
    if (it == st->tracks.end()) {
      Track t;
      t.reader = reader;
      t.queued_gen = gen;
      it = st->tracks.emplace(pid, std::move(t)).first;
    }
    if (!it->second.denied_once) {
      it->second.denied_once = true;
      st->processes_unreadable++;
    }
    it->second.denied = true;
    it->second.seen_gen = gen;
    seen_count++;
    if (pid == st->root) root_alive = true;
  };

  bool children_ok = true;
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
      if (reader->Denied()) {
        observe_denied(pid, reader);
      } else if (!reader->Gone()) {
        // Could not be read for another reason (no descriptor left): it keeps its last values until the next sample.
        if (it != st->tracks.end() && it->second.seen_gen != gen) {
          it->second.seen_gen = gen;
          seen_count++;
        }
        if (pid == st->root) root_alive = st->root_alive;  // unknown: as it was (alive, before the first read)
      } else if (pid == st->root && st->root_start_ticks < 0) {
        st->root_gone = true;  // ended before it was ever read: a later process under its pid is someone else
      }
      continue;
    }
    if (it != st->tracks.end() && it->second.read_once && it->second.start_ticks != info.start_ticks) continue;
    if (pid == st->root) {
      if (st->root_start_ticks < 0) st->root_start_ticks = info.start_ticks;
      if (info.start_ticks != st->root_start_ticks) continue;  // not the process we were asked to follow
    }
    if (it != st->tracks.end() && !it->second.read_once) it->second.start_ticks = info.start_ticks;
    observe(pid, reader, info, reader->Fresh());
    if (st->first && pid == st->root) MaybeHoldForTest(1);
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
          observe(pp.first, reader, info, true);
          grew = true;
        }
      }
    }
  }
  double sample_cost_end = ThreadCpuMs();

  // What each process that ran before tracking had used (its base) is read again, children before their parents
  // (not in the sample's cost: once per tree). One pass reads a parent before its children, and a child it reaps
  // meanwhile is missed (gone before its own read) while its whole count, CPU before tracking included, shows in its
  // parent's at the next sample. Now a child gone at its second read is in its parent's base and leaves the tree. One
  // reaped between its second read and its parent's would be in both (its parent's base, and a departed child the
  // parent's growth never explains, which would claim the growth of a later one): after a parent's read its children
  // are looked at, and if one has gone since its own read, it leaves the tree and the parent is read again (its count
  // then holds the child's). One born after its parent's children were listed is the task's, unless it was reaped
  // before its parent's read (then in its base: lost, a window of a few ms). Reads afresh: a process may reap before
  // its schedstat shows it ran (proc.h).
  std::unordered_map<uint32_t, std::vector<uint32_t>> kids_of;
  for (uint32_t pid : baseline_order) {
    auto it = st->tracks.find(pid);
    if (it != st->tracks.end() && it->second.last_ppid != pid) kids_of[it->second.last_ppid].push_back(pid);
  }
  auto leave_reaped_kids = [&](uint32_t parent) {
    auto k = kids_of.find(parent);
    if (k == kids_of.end()) return false;
    bool any = false;
    for (uint32_t kid : k->second) {
      auto kt = st->tracks.find(kid);
      if (kt == st->tracks.end()) continue;
      proc::ProcessInfo ki;
      if (kt->second.reader->Read(false, &ki)) {
        kt->second.reader->ReadAfreshNext();  // its next read also reads its I/O (tracks hold the second read)
      } else if (kt->second.reader->Gone()) {
        if (kid == st->root) root_alive = false;  // (a pid reused within the sample)
        st->tracks.erase(kt);
        any = true;
      }
    }
    return any;
  };
  for (auto p = baseline_order.rbegin(); p != baseline_order.rend(); ++p) {
    auto it = st->tracks.find(*p);
    if (it == st->tracks.end()) continue;
    Track& tr = it->second;
    if (*p == st->root) MaybeHoldForTest(2);
    proc::ProcessInfo info;
    bool read = false;
    for (int round = 0;; round++) {
      tr.reader->ReadAfreshNext();
      read = tr.reader->Read(false, &info);
      if (!read || round == kBaseReadRounds || !leave_reaped_kids(*p)) break;
    }
    if (!read) {
      if (tr.reader->Gone()) {
        if (*p == st->root) root_alive = false;
        st->tracks.erase(it);
      }  // else (no descriptor left) the first read stands
      continue;
    }
    SetCounters(info, &tr.base);
    SetCounters(info, &tr.last);
    double io[4];
    if (tr.reader->ReadIo(io) == 0) {
      SetIo(io, &tr.base);
      SetIo(io, &tr.last);
    }
    tr.alive = info.alive;
    if (*p == st->root) root_alive = info.alive;
    if (info.zombie && tr.dead_gen == 0) tr.dead_gen = gen;
  }

  // Processes that are gone. Each leaves what it added (Contribution); a child whose parent is followed may have been
  // waited for, its time then in the parent's children counters: the parent's growth is matched against it (Absorb),
  // now or, when the parent was read before the wait, at the parent's next fresh read. Children of a parent that left
  // too are matched against that parent's last counters first, then handed on to its own parent (which then waited
  // for both: the kernel adds a child's waited-for children to what its parent gets).
  std::unordered_set<uint32_t> leaving;
  for (const auto& kv : st->tracks)
    if (kv.second.seen_gen != gen) leaving.insert(kv.first);
  for (uint32_t pid : leaving) {
    const Track& t = st->tracks[pid];
    if (pid == st->root) st->root_gone = true;  // its pid may be reused: never adopt it again
    if (pid != st->root && t.read_once && st->tracks.count(t.last_ppid) != 0 && t.last_ppid != pid)
      st->departed.push_back(TreeState::Departed{t.last_ppid, gen, t.seen_gen, t.last});
  }
  for (int hop = 0; hop < 64 && !st->departed.empty(); hop++) {
    bool moved = false;
    for (size_t i = 0; i < st->departed.size();) {
      TreeState::Departed& d = st->departed[i];
      auto pit = st->tracks.find(d.parent);
      bool resolved = pit == st->tracks.end() || Absorb(pit->second, d);
      if (!resolved && leaving.count(d.parent) != 0) {
        // Its parent left too: it may have waited for it after its last read; its own parent would then hold both.
        uint32_t up = pit->second.last_ppid;
        if (up != d.parent && st->tracks.count(up) != 0) {
          d.parent = up;
          d.gen = gen;
          moved = true;
        } else {
          resolved = true;
        }
      } else if (!resolved) {
        // A parent that lives: expired once it was read afresh after the child had gone (it would have shown by
        // then), or never, if it can no longer wait for anyone.
        const Track& p = pit->second;
        resolved = p.fresh_gen > d.gen || (p.dead_gen != 0 && p.dead_gen < d.seen_gen);
      }
      if (resolved) {
        st->departed[i] = st->departed.back();
        st->departed.pop_back();
      } else {
        i++;
      }
    }
    if (!moved) break;
  }
  auto note_known = [&](const Track& t) {
    for (int k = 0; k < kTreeCounters; k++)
      if (!std::isnan(t.last.own[k]) || !std::isnan(t.last.reaped[k])) st->known[k] = true;
  };
  for (uint32_t pid : leaving) {
    const Track& t = st->tracks[pid];
    note_known(t);
    for (int k = 0; k < kTreeCounters; k++) st->gone[k] += Contribution(t, k);
    st->tracks.erase(pid);
  }
  if (st->root_start_ticks >= 0 && !seen(st->root)) st->root_gone = true;
  double total[kTreeCounters];
  for (int k = 0; k < kTreeCounters; k++) total[k] = st->gone[k];
  for (const auto& kv : st->tracks) {
    note_known(kv.second);
    for (int k = 0; k < kTreeCounters; k++) total[k] += Contribution(kv.second, k);
  }
  // No clamp: a figure that fell would be a bug to fix, and a clamp would hide later CPU behind it.
  for (int k = 0; k < kTreeCounters; k++) st->totals[k] = st->known[k] ? total[k] : NAN;
  st->cpu_user_ms = total[kTcUserMs];
  st->cpu_system_ms = total[kTcSystemMs];
  st->rss_sum_bytes = any_rss ? rss_sum : -1;
  if (any_rss && st->rss_first_bytes < 0) st->rss_first_bytes = rss_sum;
  if (any_rss) st->rss_last_bytes = rss_sum;
  if (any_rss && rss_sum > st->rss_sum_peak_bytes) st->rss_sum_peak_bytes = rss_sum;
  st->first = false;
  st->root_alive = root_alive;
  st->processes_now = live;
  MaybeSamplePss(st, rss_sum, any_rss, rss_peak_before);

  double cost = std::max(0.0, sample_cost_end - cost_start);
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

void HoldFirstTreeReadForTest(int what) {
  if (what == 1 || what == 2) {
    g_first_read_hold.store(what);
  } else {
    int holding = 3;
    if (!g_first_read_hold.compare_exchange_strong(holding, 4)) g_first_read_hold.store(0);
  }
}

bool FirstTreeReadHeldForTest() {
  return g_first_read_hold.load() == 3;
}

}  // namespace taskmeter
