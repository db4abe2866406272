// One internal interface for process metrics. Each OS provides proc_<os>.cc; nothing outside native/proc/ includes
// an OS header for these numbers.
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "../layout.h"

namespace taskmeter {
namespace proc {

// Fixed slot order shared with src/binding.ts (SNAPSHOT_* constants). Doubles hold every value exactly
// (byte counts stay far below 2^53).
#define TASKMETER_SNAPSHOT_SLOTS(X) \
  X(TimeMs)    /* monotonic clock, ms */ \
  X(EpochMs)   /* wall clock (Unix epoch), ms */ \
  X(CpuUserMs) /* this process, all threads */ \
  X(CpuSystemMs) \
  X(RssBytes) \
  X(VmsBytes) \
  X(PeakRssBytes) /* process-lifetime high-water mark (ru_maxrss) */ \
  X(ThreadCpuMs)  /* the calling thread's own CPU time (user + system), ms */ \
  /* getrusage's counters (POSIX; NaN elsewhere): this process, all threads */ \
  X(MinorFaults) \
  X(MajorFaults) \
  X(VoluntaryCtxSwitches) \
  X(InvoluntaryCtxSwitches) \
  X(FsInputBlocks) /* 512-byte blocks */ \
  X(FsOutputBlocks) \
  /* end */
TASKMETER_ENUM(SnapshotSlot, TASKMETER_SNAPSHOT_SLOTS, kSnapshotSlots)

// The counters that taskmeter's own threads add to the process's (kMinorFaults … kFsOutputBlocks, in that order).
constexpr int kCounterSlots = kFsOutputBlocks - kMinorFaults + 1;

// Fills out[0..kSnapshotSlots). Returns false (and leaves NaN in unreadable slots) if a source could not be read.
// kThreadCpuMs is read only when thread_cpu is true (one more syscall, which window endpoints pay and snapshot() does
// not); NaN otherwise.
bool ReadSelf(double* out, bool thread_cpu = false);

// This process's I/O bytes: rchar and wchar of /proc/self/io (kept open, read with pread; see helper/proc_io.h), for
// the windows that ask for them (about 2 µs a read in a Node process: the kernel sums every thread). False (NaN)
// where there is no such file (macOS, Windows) or it cannot be read.
bool ReadSelfIo(double* read_bytes, double* write_bytes);

// The calling thread's own getrusage counters (kCounterSlots values, in snapshot slot order from kMinorFaults), where
// the OS counts per thread (Linux: RUSAGE_THREAD); false elsewhere.
bool SelfThreadCounters(double* out);

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
  bool alive = false;              // false: gone, or a zombie (its memory is already released)
  bool zombie = false;             // it has ended (Linux: state Z or X) and waits for nobody any more
  bool forked_not_execed = false;  // forked and not (yet) exec'd (PF_FORKNOEXEC): a worker, or a copy about to exec
  double cpu_user_ms = 0;          // utime + cutime (its own and its reaped children's), ms
  double cpu_system_ms = 0;        // stime + cstime
  double children_user_ms = 0;     // cutime: the part of cpu_user_ms that children it waited for used (0 where the
  double children_system_ms = 0;   // OS keeps no such count); cstime
  // Page faults (Linux stat): its own, and its waited-for children's (cmin_flt, cmaj_flt); NaN where not read.
  double minor_faults = NAN, children_minor_faults = NAN;
  double major_faults = NAN, children_major_faults = NAN;
  double rss_bytes = -1;   // VmRSS
  double hwm_bytes = -1;   // VmHWM: the process's own peak so far (exact, per process); -1 when not read
  double start_ticks = 0;  // start time since boot, clock ticks: tells a reused pid apart (-1: unknown)
  uint32_t threads = 1;    // threads in the process (Linux; 1 elsewhere)
  char comm[17] = {0};
};

// A lower bound of a process's age now, ms, from the ProcessInfo::start_ticks of a read of it (Linux: the boot-time
// clock against its start time in clock ticks, less one tick for the tick's truncation); NaN where unknown.
double MinAgeMs(double start_ticks);

// Reads one process. False if it does not exist (or cannot be read; on Windows a process we may not open is alive
// with nothing read and start_ticks -1).
bool ReadProcess(uint32_t pid, ProcessInfo* out);

// Appends the direct children of pid (all its threads' children). False if the children list cannot be read, in
// which case the caller may fall back to ListAllParents.
bool ListChildren(uint32_t pid, std::vector<uint32_t>* out);

// Every process's (pid, ppid): the slow fallback where per-thread children lists are not available.
bool ListAllParents(std::vector<std::pair<uint32_t, uint32_t>>* out);

// One process followed from sample to sample by the tree sampler. On Linux it keeps the process's /proc files open
// and re-reads them with pread at offset 0 (an open fd also pins the process: once it is gone, reads fail even if
// its pid is reused). Elsewhere it reads by pid each time. Used by one thread at a time.
class ProcessReader {
 public:
  explicit ProcessReader(uint32_t pid);
  ~ProcessReader();
  ProcessReader(const ProcessReader&) = delete;
  ProcessReader& operator=(const ProcessReader&) = delete;
  // Reads the process (want_hwm: also its peak, which costs a read of a larger file). False once it is gone, or when
  // the pid now belongs to another process than the one first read.
  bool Read(bool want_hwm, ProcessInfo* out);
  // The process's own peak RSS (VmHWM) in bytes, or -1: a read of its larger status file, so asked for sparingly.
  double ReadPeakBytes();
  // After a failed Read: true if the process is gone (or its pid names another process now), false if it could not
  // be read for another reason (no descriptor left: EMFILE), when it must not be taken for gone.
  bool Gone() const { return gone_; }
  // After a failed Read: the process lives but may not be read (another user's, under /proc's hidepid, or one whose
  // /proc is not ours): EACCES/EPERM, or no /proc entry while it lives (its pidfd, else kill(pid, 0)). Never also
  // Gone().
  bool Denied() const { return denied_; }
  // Appends the direct children (of every thread). False where the OS has no per-thread children lists.
  bool Children(std::vector<uint32_t>* out);
  // True when the last successful Read read the process afresh (not the unchanged copy of a process that has not run
  // since): counters that only move while the process runs (I/O) need reading only then.
  bool Fresh() const { return fresh_; }
  // The next Read reads the process afresh, even if it seems not to have run since the last (its schedstat moves
  // only at a tick or a switch: a process that has just reaped a child may not show it yet).
  void ReadAfreshNext();
  // The process's I/O counts, its own and those of the children it waited for (Linux /proc/<pid>/io, kept open):
  // out[0], out[1] = rchar, wchar (bytes passed to read- and write-like calls), out[2], out[3] = read_bytes,
  // write_bytes (bytes fetched from and sent to storage). 0, or an errno: EACCES for another user's process, ENOSYS
  // where the OS has no such count.
  int ReadIo(double out[4]);
  // The process's proportional set size (Linux: Pss of /proc/<pid>/smaps_rollup): its private pages plus its share
  // of each page it shares; and its RSS from the same walk of its page tables (about 16 µs per MiB resident, so it
  // is asked for sparingly). 0, or an errno (EACCES: not ours to read, ESRCH: gone, ENOSYS: no such figure here).
  int ReadPss(double* pss_bytes, double* rss_bytes);

 private:
  uint32_t pid_;
  bool gone_ = false;
  bool denied_ = false;
  bool fresh_ = true;
  double start_ticks_ = -1;
#ifdef __linux__
  uint32_t threads_ = 1;
  int stat_fd_ = -1;
  int children_fd_ = -1;                                // the main thread's
  bool stat_pinned_ = false, children_pinned_ = false;  // counted against the descriptor budget
  struct ThreadList {
    uint32_t tid;
    int fd;  // its children file, kept open while the descriptor budget allows (else -1: read by path)
  };
  std::vector<ThreadList> threads_lists_;  // other threads, listed again when the thread count changes
  void CloseThreadLists();
  uint32_t tids_for_threads_ = 0;
  uint32_t reads_ = 0;
  // A single-threaded process that has not run since its last `stat` read (its schedstat is unchanged: 0.4 µs
  // against 1.2 µs) has the same CPU, flags and memory: the last read stands, refreshed every kStatEvery reads.
  int sched_fd_ = -1;
  bool sched_unavailable_ = false;
  uint64_t last_run_ns_ = 0, last_slices_ = 0;
  bool have_last_ = false;
  uint32_t since_stat_ = 0;
  ProcessInfo last_;
  int io_fd_ = -1;
  bool io_pinned_ = false;
  // A process found denied is pinned by a pidfd taken then (-1: none yet, or none to be had): see DeniedAlive.
  int pidfd_ = -1;
  bool pidfd_tried_ = false;
  bool DeniedAlive();
  int PidfdEnded();  // 1: the process pinned by pidfd_ has ended, 0: it lives, -1: no pidfd
#endif
};

#ifndef __linux__
inline ProcessReader::ProcessReader(uint32_t pid) : pid_(pid) {}
inline ProcessReader::~ProcessReader() {}
inline void ProcessReader::ReadAfreshNext() {}
inline bool ProcessReader::Read(bool, ProcessInfo* out) {
  gone_ = true;
  if (!ReadProcess(pid_, out)) return false;
  if (out->start_ticks >= 0) {  // -1: a process we may not open (Windows: access denied), its start time unknown
    if (start_ticks_ < 0) start_ticks_ = out->start_ticks;
    if (out->start_ticks != start_ticks_) return false;
  }
  gone_ = false;
  return true;
}
inline double ProcessReader::ReadPeakBytes() {
  ProcessInfo info;
  return Read(true, &info) ? info.hwm_bytes : -1;
}
inline bool ProcessReader::Children(std::vector<uint32_t>* out) {
  return ListChildren(pid_, out);
}
inline int ProcessReader::ReadIo(double*) {
  return ENOSYS;
}
inline int ProcessReader::ReadPss(double*, double*) {
  return ENOSYS;
}
inline double MinAgeMs(double) {
  return NAN;  // used for processes forked without exec, which only Linux tells apart
}
#endif

}  // namespace proc
}  // namespace taskmeter
