// A process and its descendants, followed from sample to sample: summed RSS, each process's own peak (VmHWM), the
// tree's proportional set size (PSS), CPU time and storage I/O. Used by the RSS thread for windows that track a
// process tree; touches no shared state.
//
// Every process of the tree counts, those forked without exec (worker pools) included. A process forked without
// exec (PF_FORKNOEXEC) may also be a copy of its parent on its way to exec: a program running a subprocess (Node's
// child_process, Python's subprocess, a shell) forks a copy of itself that maps all of its memory until it execs,
// which takes microseconds, and up to ~0.25 s seen on a loaded machine. Summed, such a copy doubles its parent's
// memory for a sample. So this process's own copies (spawn_posix.cc, own_forks.h: identified by pid, and while a
// fork is in progress) are left out of the RSS sum; another's, until it is kForkCopyAgeMs old (by its start time,
// or since it was first seen), counts only the memory it added since it was first seen — nothing, for a copy; a
// worker counts what it allocates at once, and the pages it shares with its parent once it is that old. The PSS
// passes read them all (a copy's PSS is its share of the pages it shares with its parent, which halve the
// parent's meanwhile).
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
// A tree that grows faster than that pays (1,000 processes forked at once) may be read small only: the largest RSS
// sum a pass read is kept (pss_rss_sum_bytes), and a figure from passes that read under half the peak is not given.
//
// CPU, page faults and I/O (TreeCounter): each process counts its own since tracking began, and the part of its
// children's counters (cutime, cmin_flt…: children it waited for; for I/O, which the kernel keeps as one count, the
// whole count) that no departed child of the tree explains. A child that left is taken as waited for (its counts
// already in its parent's) only when its parent's children's CPU grew by about its total (and its faults and I/O by
// at least theirs); a child reaped by nobody (SIGCHLD ignored), by init, or under a zombie parent keeps its own.
// What a process that ran before tracking began had used is its base: read again at the end of the first sample,
// children before their parents, so that a child its parent reaps while the sample reads the tree is never counted
// whole (its CPU before tracking too). Tracking counts from that second read (a few ms for a small tree).
#pragma once
#include <cmath>
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
// The age from which a process forked without exec is taken for a worker (above), ms.
constexpr double kForkCopyAgeMs = 1000;
// PSS: the share of a core its passes may take (on top of kTreeCpuBudget), what the bucket holds when full (ms of
// CPU), the shortest interval between passes that no new RSS high brings forward, and the cost of reading one
// process assumed before a pass has measured it (a small process, cold caches).
constexpr double kPssCpuBudget = 0.0025;
constexpr double kPssBucketMs = 30;
constexpr double kPssMinIntervalMs = 1000;
constexpr double kPssPriorPerProcessMs = 0.06;

// The counters a tree sums. I/O: rchar and wchar (bytes through read- and write-like calls), read_bytes and
// write_bytes (bytes from and to storage), of /proc/<pid>/io.
enum TreeCounter : int {
  kTcUserMs,
  kTcSystemMs,
  kTcMinorFaults,
  kTcMajorFaults,
  kTcIoReadBytes,
  kTcIoWriteBytes,
  kTcFsReadBytes,
  kTcFsWriteBytes,
  kTreeCounters
};

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
  // The largest RSS sum a pass that gave a PSS figure read at once: how near the tree's RSS peak the passes came. A
  // pass over a tree that grows faster than the budget pays for may read it small only (-1: no pass).
  double pss_rss_sum_bytes = -1;
  // CPU of the tree since tracking began (ms, clock-tick resolution); meaningful once processes_seen > 0.
  double cpu_user_ms = 0;
  double cpu_system_ms = 0;
  // Every TreeCounter of the tree since tracking began; NaN until a process's count of that kind was read.
  double totals[kTreeCounters] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
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
  // A process's counts: its own (utime, min_flt…; 0 for I/O) and the count into which a waited-for child's whole
  // count moves (cutime, cmin_flt…; the I/O count itself). NaN: not read.
  struct Counters {
    double own[kTreeCounters];
    double reaped[kTreeCounters];
    Counters() {
      for (int k = 0; k < kTreeCounters; k++) own[k] = reaped[k] = NAN;
    }
  };
  struct Track {
    double start_ticks = 0;
    Counters last, base;  // as last read; at the start of tracking (0 for a process born since)
    double claimed[kTreeCounters] = {0, 0, 0, 0, 0, 0, 0, 0};  // the growth of last.reaped that departed children
                                                               // of the tree explain
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
    double fork_seen_ms = -1;               // forked without exec: when first seen so (monotonic), and its RSS then
    double fork_base_rss = -1;
    double uncounted_rss = 0;  // what the RSS sum leaves out of its RSS this sample (all of it: INFINITY)
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
  // What processes that left added (theirs and their unexplained children's), and which kinds were ever read.
  double gone[kTreeCounters] = {0, 0, 0, 0, 0, 0, 0, 0};
  bool known[kTreeCounters] = {false, false, false, false, false, false, false, false};
  // The root's identity (start time): once it is gone, a new process under its pid is someone else.
  double root_start_ticks = -1;

  std::vector<uint32_t> live_pids;      // for GPU attribution
  std::vector<uint32_t> own_fork_pids;  // this process's copies between fork and exec that are alive (PSS only)
  double cost_ms = 0;                   // CPU time the last samples took (smoothed, PSS passes left out), ms
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

// Test hook: the next first sample of a tree holds (10 s at most) after reading its root, before listing its
// children (1), or before reading its root again for the base (2); 0 releases it (or disarms the hook).
// FirstTreeReadHeldForTest: whether a sample holds now.
void HoldFirstTreeReadForTest(int what);
bool FirstTreeReadHeldForTest();

// The interval to use after a sample: the requested one, stretched so that sampling costs at most kTreeCpuBudget.
double EffectiveIntervalMs(const TreeState& st, double requested_ms);

// The mean interval between the PSS passes that read one, ms (NaN with fewer than two).
double PssIntervalMs(const TreeResults& r);

}  // namespace taskmeter
