#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>

namespace taskmeter {
namespace proc {
namespace {

// /proc/self/statm stays open for the life of the process and is read with pread: one syscall per read instead of
// open+read+close (measured 875 ns vs 4.2 us). It is shared by every addon instance (worker threads) and the sampler.
std::atomic<int> g_statm_fd{-1};
const double kPageBytes = static_cast<double>(sysconf(_SC_PAGESIZE));

int StatmFd() {
  int fd = g_statm_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  int opened = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (opened < 0) return -1;
  int expected = -1;
  if (!g_statm_fd.compare_exchange_strong(expected, opened, std::memory_order_acq_rel)) {
    close(opened);  // another thread won the race
    return expected;
  }
  return opened;
}

// statm: "size resident shared text lib data dt" in pages.
bool ReadStatm(double* vms_bytes, double* rss_bytes) {
  int fd = StatmFd();
  if (fd < 0) return false;
  char buf[128];
  ssize_t n;
  do {
    n = pread(fd, buf, sizeof(buf) - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* end = nullptr;
  unsigned long long size = strtoull(buf, &end, 10);
  if (end == buf) return false;
  char* end2 = nullptr;
  unsigned long long resident = strtoull(end, &end2, 10);
  if (end2 == end) return false;
  if (vms_bytes) *vms_bytes = static_cast<double>(size) * kPageBytes;
  if (rss_bytes) *rss_bytes = static_cast<double>(resident) * kPageBytes;
  return true;
}

inline double TimevalMs(const struct timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e3 + static_cast<double>(tv.tv_usec) / 1e3;
}

inline double TimespecMs(const struct timespec& ts) {
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

}  // namespace

double MonotonicMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return TimespecMs(ts);
}

double EpochMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return TimespecMs(ts);
}

bool ReadSelf(double* out) {
  bool ok = true;
  out[kTimeMs] = MonotonicMs();
  out[kEpochMs] = EpochMs();
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    out[kCpuUserMs] = TimevalMs(ru.ru_utime);
    out[kCpuSystemMs] = TimevalMs(ru.ru_stime);
    out[kPeakRssBytes] = static_cast<double>(ru.ru_maxrss) * 1024.0;  // Linux reports KiB
  } else {
    out[kCpuUserMs] = out[kCpuSystemMs] = out[kPeakRssBytes] = NAN;
    ok = false;
  }
  if (!ReadStatm(&out[kVmsBytes], &out[kRssBytes])) {
    out[kVmsBytes] = out[kRssBytes] = NAN;
    ok = false;
  }
  return ok;
}

int64_t ReadSelfRssBytes() {
  double rss;
  if (!ReadStatm(nullptr, &rss)) return -1;
  return static_cast<int64_t>(rss);
}

int64_t ReadSelfPeakRssBytes() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

}  // namespace proc
}  // namespace taskmeter
