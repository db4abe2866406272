// A process and its descendants, followed from sample to sample: summed RSS, each process's own peak (VmHWM) and
// CPU time. Used by the RSS thread for windows that track a process tree; touches no shared state.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace taskmeter {

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
    uint32_t last_ppid = 0;
  };
  std::unordered_map<uint32_t, Track> tracks;
  // CPU of processes that left without a tracked parent to absorb it
  double departed_user_ms = 0, departed_system_ms = 0;

  // Results, kept across samples.
  double rss_sum_bytes = -1;      // this sample
  double rss_first_bytes = -1;    // the first sample with any RSS
  double rss_sum_peak_bytes = -1;
  double max_hwm_bytes = -1;      // the largest single-process peak seen
  uint32_t max_hwm_pid = 0;
  std::string max_hwm_comm;
  double cpu_user_ms = 0;         // sampled CPU of the tree since tracking began
  double cpu_system_ms = 0;
  uint32_t processes_seen = 0;
  bool root_alive = true;
  std::vector<uint32_t> live_pids;  // for GPU attribution
};

// Takes one sample of the tree (reads /proc; no locks held). Returns false once the root is gone.
bool SampleTree(TreeState* st);

}  // namespace taskmeter
