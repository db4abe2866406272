// One internal interface for process metrics. Each OS provides proc_<os>.cc; nothing outside native/proc/ includes
// an OS header for these numbers.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "../layout.h"

namespace taskmeter {
namespace proc {

// Fixed slot order shared with src/binding.ts (SNAPSHOT_* constants). Doubles hold every value exactly
// (byte counts stay far below 2^53).
#define TASKMETER_SNAPSHOT_SLOTS(X) \
  X(TimeMs)  /* monotonic clock, ms */ \
  X(EpochMs)  /* wall clock (Unix epoch), ms */ \
  X(CpuUserMs)  /* this process, all threads */ \
  X(CpuSystemMs) \
  X(RssBytes) \
  X(VmsBytes) \
  X(PeakRssBytes)  /* process-lifetime high-water mark (ru_maxrss) */ \
  X(ThreadCpuMs)  /* the calling thread's own CPU time (user + system), ms */ \
  /* end */
TASKMETER_ENUM(SnapshotSlot, TASKMETER_SNAPSHOT_SLOTS, kSnapshotSlots)

// Fills out[0..kSnapshotSlots). Returns false (and leaves NaN in unreadable slots) if a source could not be read.
// kThreadCpuMs is read only when thread_cpu is true (one more syscall, which window endpoints pay and snapshot() does
// not); NaN otherwise.
bool ReadSelf(double* out, bool thread_cpu = false);

// Closes what ReadSelf keeps open (Linux: /proc/self/statm). Only when nothing can read any more: Node unloads the
// addon (dlclose) after the last environment that used it and loads it afresh for the next, and each load would
// otherwise leak the descriptor. A later ReadSelf opens it again.
void CloseSelfFiles();

// Current RSS of this process in bytes, or -1. Cheap: used by the sampler thread every tick.
int64_t ReadSelfRssBytes();

// Process-lifetime peak RSS in bytes (ru_maxrss), or -1.
int64_t ReadSelfPeakRssBytes();

double MonotonicMs();

// The calling thread's CPU time (user + system), ms; NaN if unreadable. CLOCK_THREAD_CPUTIME_ID on Linux,
// thread_info on macOS, GetThreadTimes on Windows.
double SelfThreadCpuMs();

double EpochMs();

uint32_t SelfPid();
// Names the calling thread where the OS lets one (top -H, debuggers, /proc/<pid>/task/*/comm).
void NameThisThread(const char* name);

// Another process, as /proc shows it (Linux) or the OS's equivalent.
struct ProcessInfo {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  bool alive = false;          // false: gone, or a zombie (its memory is already released)
  bool forked_not_execed = false;  // still the forked copy of its parent (PF_FORKNOEXEC): its memory is the parent's
  double cpu_user_ms = 0;      // utime + cutime (its own and its reaped children's), ms
  double cpu_system_ms = 0;    // stime + cstime
  double rss_bytes = -1;       // VmRSS
  double hwm_bytes = -1;       // VmHWM: the process's own peak so far (exact, per process)
  double start_ticks = 0;      // start time since boot, clock ticks: tells a reused pid apart
  char comm[17] = {0};
};

// Reads one process. False if it does not exist (or cannot be read).
bool ReadProcess(uint32_t pid, ProcessInfo* out);

// Appends the direct children of pid (all its threads' children). False if the children list cannot be read, in
// which case the caller may fall back to ListAllParents.
bool ListChildren(uint32_t pid, std::vector<uint32_t>* out);

// Every process's (pid, ppid): the slow fallback where per-thread children lists are not available.
bool ListAllParents(std::vector<std::pair<uint32_t, uint32_t>>* out);

}  // namespace proc
}  // namespace taskmeter
