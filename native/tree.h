// A process and its descendants, followed from sample to sample: summed RSS, each process's own peak (VmHWM) and
// CPU time. Used by the RSS thread for windows that track a process tree; touches no shared state.
//
// Cost: each process is read through a proc::ProcessReader that keeps its /proc files open (Linux: one pread of
// `schedstat`, then of `stat` — CPU, parent, flags, RSS — only if the process ran since the last one (or every 16th
// sample), and one of its children list per sample; `status`, for the peak, only when the
// process is first seen, when its RSS fell since the last sample (the kernel has just folded a higher peak into
// VmHWM) and every kHwmEvery samples). The sample's own CPU cost is measured, and the caller stretches the interval
// so that sampling stays within kTreeCpuBudget of one core (EffectiveIntervalMs).
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

struct TreeState {
  uint32_t root = 0;
  // For a process that already ran when tracking began, CPU before the first sample is not counted.
  bool baseline_existing = true;
  bool descendants = true;  // false: the root alone
  bool first = true;
  struct Track {
    double start_ticks = 0;
    double baseline_user_ms = 0, baseline_system_ms = 0;
    double last_user_ms = 0, last_system_ms = 0;
    double last_rss_bytes = -1;
    double hwm_bytes = -1;   // this process's peak so far (VmHWM, raised by every RSS seen)
    uint32_t since_hwm = 0;  // samples since VmHWM was read
    uint32_t last_ppid = 0;
    uint32_t queued_gen = 0, seen_gen = 0;  // the sample (TreeState::gen) that queued it, that read it
    std::shared_ptr<proc::ProcessReader> reader;
  };
  std::unordered_map<uint32_t, Track> tracks;
  // CPU of processes that left without a tracked parent to absorb it
  double departed_user_ms = 0, departed_system_ms = 0;
  // The root's identity (start time): once it is gone, a new process under its pid is someone else.
  double root_start_ticks = -1;
  bool root_gone = false;

  // Results, kept across samples.
  double rss_sum_bytes = -1;    // this sample
  double rss_first_bytes = -1;  // the first sample with any RSS
  double rss_last_bytes = -1;   // the last sample with any RSS
  double rss_sum_peak_bytes = -1;
  double max_hwm_bytes = -1;  // the largest single-process peak seen
  uint32_t max_hwm_pid = 0;
  std::string max_hwm_comm;
  double cpu_user_ms = 0;  // sampled CPU of the tree since tracking began
  double cpu_system_ms = 0;
  uint32_t processes_seen = 0;
  uint32_t processes_now = 0;  // live processes at this sample
  bool root_alive = true;
  std::vector<uint32_t> live_pids;  // for GPU attribution
  double cost_ms = 0;               // CPU time the last samples took (smoothed), ms
  uint32_t samples_taken = 0;
  uint32_t gen = 0;  // this sample's number (marks on the tracks instead of per-sample sets)
};

// Takes one sample of the tree (reads /proc; no locks held). Returns false once the root is gone.
bool SampleTree(TreeState* st);

// The interval to use after a sample: the requested one, stretched so that sampling costs at most kTreeCpuBudget.
double EffectiveIntervalMs(const TreeState& st, double requested_ms);

}  // namespace taskmeter
