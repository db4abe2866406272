// macOS: getrusage (ru_maxrss is in bytes here), mach task_info for this process, libproc for others
// (proc_pid_rusage gives an exact lifetime peak footprint per process), proc_listchildpids for the tree.
// Written against the documented APIs; compiled and run only by the CI prebuild matrix (no macOS SDK here).
#include <libproc.h>
#include <mach/mach.h>
#include <mach/mach_time.h>
#include <pthread.h>
#include <sys/proc.h>
#include <sys/proc_info.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "proc.h"
#include "proc_posix.h"

namespace taskmeter {
namespace proc {
namespace {

// rusage_info times are in Mach absolute time units (nanoseconds on Intel, not on Apple silicon).
double MachToMs(uint64_t t) {
  static mach_timebase_info_data_t tb = [] {
    mach_timebase_info_data_t x;
    mach_timebase_info(&x);
    return x;
  }();
  return static_cast<double>(t) * tb.numer / tb.denom / 1e6;
}

bool SelfMemory(double* rss, double* vms) {
  mach_task_basic_info_data_t info;
  mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
  if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, reinterpret_cast<task_info_t>(&info), &count) != KERN_SUCCESS) {
    return false;
  }
  if (rss) *rss = static_cast<double>(info.resident_size);
  if (vms) *vms = static_cast<double>(info.virtual_size);
  return true;
}

}  // namespace

double MonotonicMs() {
  return posix::ClockMs(CLOCK_MONOTONIC);
}

double EpochMs() {
  return posix::ClockMs(CLOCK_REALTIME);
}

uint32_t SelfPid() {
  return static_cast<uint32_t>(getpid());
}

void NameThisThread(const char* name) {
  pthread_setname_np(name);
}  // macOS names the calling thread only

bool ReadSelf(double* out, bool thread_cpu) {
  bool ok = posix::ReadClocksAndRusage(out, thread_cpu);
  if (!SelfMemory(&out[kRssBytes], &out[kVmsBytes])) {
    out[kRssBytes] = out[kVmsBytes] = NAN;
    ok = false;
  }
  return ok;
}

bool ReadSelfIo(double* read_bytes, double* write_bytes) {
  *read_bytes = *write_bytes = NAN;  // no /proc/self/io
  return false;
}

bool SelfThreadCounters(double* out) {
  return posix::ThreadCounters(out);  // no RUSAGE_THREAD on macOS: false
}

void CloseSelfFiles() {}  // nothing kept open

int64_t ReadSelfRssBytes() {
  double rss;
  return SelfMemory(&rss, nullptr) ? static_cast<int64_t>(rss) : -1;
}

int64_t ReadSelfPeakRssBytes() {
  return posix::PeakRssBytes();
}

double SelfThreadCpuMs() {
  return posix::SelfThreadCpuMs();
}

bool ReadProcess(uint32_t pid, ProcessInfo* out) {
  *out = ProcessInfo();
  out->pid = pid;
  struct proc_bsdinfo bsd;
  if (proc_pidinfo(static_cast<int>(pid), PROC_PIDTBSDINFO, 0, &bsd, sizeof(bsd)) != static_cast<int>(sizeof(bsd))) {
    return false;
  }
  out->ppid = bsd.pbi_ppid;
  out->start_ticks = static_cast<double>(bsd.pbi_start_tvsec) * 1e6 + bsd.pbi_start_tvusec;
  std::strncpy(out->comm, bsd.pbi_comm, sizeof(out->comm) - 1);
  out->alive = bsd.pbi_status != SZOMB;
  out->zombie = bsd.pbi_status == SZOMB;
  rusage_info_v4 ri;
  if (proc_pid_rusage(static_cast<int>(pid), RUSAGE_INFO_V4, reinterpret_cast<rusage_info_t*>(&ri)) == 0) {
    // Its own CPU and that of its reaped children (like utime + cutime on Linux): a tree's CPU must not lose what
    // a child used once that child is waited for.
    out->cpu_user_ms = MachToMs(ri.ri_user_time) + MachToMs(ri.ri_child_user_time);
    out->cpu_system_ms = MachToMs(ri.ri_system_time) + MachToMs(ri.ri_child_system_time);
    out->children_user_ms = MachToMs(ri.ri_child_user_time);
    out->children_system_ms = MachToMs(ri.ri_child_system_time);
    if (out->alive) {
      out->rss_bytes = static_cast<double>(ri.ri_resident_size);
      out->hwm_bytes = static_cast<double>(ri.ri_lifetime_max_phys_footprint);
    }
  }
  return true;
}

bool ListChildren(uint32_t pid, std::vector<uint32_t>* out) {
  int n = proc_listchildpids(static_cast<int>(pid), nullptr, 0);
  if (n <= 0) return n == 0;
  std::vector<int> pids(static_cast<size_t>(n) + 16);
  n = proc_listchildpids(static_cast<int>(pid), pids.data(), static_cast<int>(pids.size() * sizeof(int)));
  if (n < 0) return false;
  for (int i = 0; i < n && i < static_cast<int>(pids.size()); i++)
    if (pids[i] > 0) out->push_back(static_cast<uint32_t>(pids[i]));
  return true;
}

bool ListAllParents(std::vector<std::pair<uint32_t, uint32_t>>* out) {
  int n = proc_listallpids(nullptr, 0);
  if (n <= 0) return false;
  std::vector<int> pids(static_cast<size_t>(n) + 64);
  n = proc_listallpids(pids.data(), static_cast<int>(pids.size() * sizeof(int)));
  for (int i = 0; i < n && i < static_cast<int>(pids.size()); i++) {
    struct proc_bsdinfo bsd;
    if (proc_pidinfo(pids[i], PROC_PIDTBSDINFO, 0, &bsd, sizeof(bsd)) == static_cast<int>(sizeof(bsd))) {
      out->emplace_back(static_cast<uint32_t>(pids[i]), bsd.pbi_ppid);
    }
  }
  return true;
}

}  // namespace proc
}  // namespace taskmeter
