// A process and its descendants, followed from sample to sample: summed RSS, each process's own peak (VmHWM), the
// tree's proportional set size (PSS), CPU time and storage I/O. Used by the RSS thread for windows that track a
// process tree; touches no shared state.
//
// Every process of the tree counts, those forked without exec (worker pools) included; only this process's own
// copies between fork and exec (spawn_posix.cc, own_forks.h) are left out of memory, by pid.
//
// Cost: each process is read through a proc::ProcessReader that keeps its /proc files open (Linux: one pread of
// `schedstat`, then of `stat` — CPU, parent, flags, RSS — and `io` only if the process ran since the last one (or
// every 16th sample), and one of its children list per sample; `status`, for the peak, only when the
// process is first seen, when its RSS fell since the last sample (the kernel has just folded a higher peak into
// VmHWM) and every kHwmEvery samples). The sample's own CPU cost is measured, and the caller stretches the interval
// so that sampling stays within kTreeCpuBudget of one core (EffectiveIntervalMs).
//
// PSS (Linux: `smaps_rollup`) makes the kernel walk every page table of the process, about 16 µs per MiB resident
// (40–60 µs for a small process, 5 ms for one of 300 MiB; 60 ms for a tree of 1,000 `sleep`s): it has a budget of
// its own, kPssCpuBudget of a core, earned as a token bucket that starts empty. A pass over the whole tree runs once
// the bucket holds its estimated cost (the last pass's cost per process × the processes now; at most a full bucket
// is waited for, a dearer pass then leaves it in debt), when the tree's RSS has reached a new high 1/8 above the
// last pass's (so a peak is seen while the budget lasts), and otherwise every kPssMinIntervalMs at most. A tree of
// one small process is read every second (~0.01 % of a core); 1,000 processes every ~25 s; one of 300 MiB, ~2 s.
//
// CPU: each process counts its own time (utime, stime) since tracking began, and the part of its children's
// counters (cutime, cstime: children it waited for) that no departed child of the tree explains. A child that left
// is taken as waited for (its time already in its parent's counters) only when those counters grew by about its
// total; a child reaped by nobody (SIGCHLD ignored), by init, or under a zombie parent keeps its own time.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proc/proc.h"

namespace taskmeter {

// Share of one core a tree window may spend sampling: the interval stretches to cost / budget.
constexpr double kTreeCpuBudget = 0.01;
// The most a stretched interval may become, ms.
constexpr double kTreeMaxIntervalMs = 10000;
constexpr uint32_t kHwmEvery = 32;
// PSS: the share of a core its passes may take (on top of kTreeCpuBudget), what the bucket holds when full (ms of
// CPU), the shortest interval between passes that no new RSS high brings forward, and the cost of reading one
// process assumed before a pass has measured it (a small process, cold caches).
constexpr double kPssCpuBudget = 0.0025;
constexpr double kPssBucketMs = 30;
constexpr double kPssMinIntervalMs = 1000;
constexpr double kPssPriorPerProcessMs = 0.06;

// The results of a tree's samples: what readers of a window see (copied out under the sampler's lock).
struct TreeResults {
  uint32_t root = 0;
  double rss_sum_bytes = -1;    // this sample
  double rss_first_bytes = -1;  // the first sample with any RSS
  double rss_last_bytes = -1;   // the last sample with any RSS
  double rss_sum_peak_bytes = -1;
  double max_hwm_bytes = -1;  // the largest single-process peak seen
  uint32_t max_hwm_pid = 0;
  std::string max_hwm_comm;
  double pss_sum_peak_bytes = -1;              // the largest summed PSS of a pass (-1: no pass read any)
  uint32_t pss_passes = 0;                     // passes that read a PSS
  bool pss_denied = false;                     // a pass found a live process whose PSS is not ours to read (EACCES)
  double pss_first_ms = -1, pss_last_ms = -1;  // monotonic time of the first and last such pass
  // CPU of the tree since tracking began (ms, clock-tick resolution); meaningful once processes_seen > 0.
  double cpu_user_ms = 0;
  double cpu_system_ms = 0;
  // Storage I/O of the tree since tracking began (bytes); -1 until a process's counters were read.
  double io_read_bytes = -1;
  double io_write_bytes = -1;
  uint32_t processes_seen = 0;        // processes read at least once
  uint32_t processes_now = 0;         // live processes at this sample
  uint32_t processes_unreadable = 0;  // processes found alive but not readable (EPERM, hidepid)
  bool root_alive = true;
  bool root_gone = false;  // the root has ended (its pid may now name another process)
};

struct TreeState : TreeResults {
  // For a process that already ran when tracking began, CPU before the first sample is not counted.
  bool baseline_existing = true;
  bool descendants = true;  // false: the root alone
  bool first = true;
  struct Counters {
    double own_user = 0, own_system = 0;      // utime, stime, ms
    double child_user = 0, child_system = 0;  // cutime, cstime: children it waited for, ms
    double io_read = -1, io_write = -1;       // read_bytes, write_bytes (own and waited-for children's); -1 unread
  };
  struct Track {
    double start_ticks = 0;
    Counters last, base;  // as last read; at the start of tracking (0 for a process born since)
    // The part of the growth of last.child_* and last.io_* that departed children of the tree explain.
    double claimed_user = 0, claimed_system = 0, claimed_io_read = 0, claimed_io_write = 0;
    double last_rss_bytes = -1;
    double hwm_bytes = -1;   // this process's peak so far (VmHWM, raised by every RSS seen)
    uint32_t since_hwm = 0;  // samples since VmHWM was read
    uint32_t last_ppid = 0;
    uint32_t queued_gen = 0, seen_gen = 0;  // the sample (TreeState::gen) that queued it, that read it
    uint32_t fresh_gen = 0;                 // the last sample that read it afresh (not an unchanged copy)
    uint32_t dead_gen = 0;                  // the first sample that saw it a zombie (it waits for nobody since)
    bool alive = false;                     // at the last read
    bool read_once = false;                 // read at least once (else only ever denied)
    bool baseline = false;                  // it existed when tracking began: base holds what it had used
    bool denied = false;                    // alive but unreadable at the last sample
    bool denied_once = false;               // counted in processes_unreadable
    bool own_fork = false;                  // this process's copy between fork and exec: no memory of its own
    std::shared_ptr<proc::ProcessReader> reader;
  };
  std::unordered_map<uint32_t, Track> tracks;
  // A child that left while its parent lives on: is its time in the parent's counters (waited for) or not?
  struct Departed {
    uint32_t parent;
    uint32_t gen;       // the sample that found it gone (or moved it to this parent)
    uint32_t seen_gen;  // the last sample that read it
    Counters total;     // its lifetime counters as last read (own + its children's)
  };
  std::vector<Departed> departed;
  // CPU and I/O of processes that left (theirs and their unexplained children's), ms and bytes.
  double gone_user_ms = 0, gone_system_ms = 0, gone_io_read = 0, gone_io_write = 0;
  bool any_io = false;
  // The root's identity (start time): once it is gone, a new process under its pid is someone else.
  double root_start_ticks = -1;

  std::vector<uint32_t> live_pids;  // for GPU attribution
  double cost_ms = 0;               // CPU time the last samples took (smoothed, PSS passes left out), ms
  uint32_t samples_taken = 0;
  uint32_t gen = 0;  // this sample's number (marks on the tracks instead of per-sample sets)
  // PSS pacing (see above).
  double pss_tokens_ms = 0;
  double pss_cost_per_process_ms = kPssPriorPerProcessMs;  // measured by the last pass
  double pss_refill_ms = -1;                               // when the bucket was last topped up
  double pss_rss_at_last = -1;                             // the RSS sum when the last pass ran
  double pss_last_try_ms = -1;                             // when the last pass ran (whatever it read)
  bool pss_unsupported = false;                            // no smaps_rollup (not Linux, or a kernel before 4.14)
};

// Takes one sample of the tree (reads /proc; no locks held). Returns false once the root is gone.
bool SampleTree(TreeState* st);

// The interval to use after a sample: the requested one, stretched so that sampling costs at most kTreeCpuBudget.
double EffectiveIntervalMs(const TreeState& st, double requested_ms);

// The mean interval between the PSS passes that read one, ms (NaN with fewer than two).
double PssIntervalMs(const TreeResults& r);

}  // namespace taskmeter
