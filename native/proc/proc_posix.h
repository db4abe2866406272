// What Linux and macOS share: clocks and getrusage. Included by proc_linux.cc and proc_darwin.cc only.
#pragma once
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef __APPLE__
#include <mach/mach.h>
#endif

#include <cmath>

#include "proc.h"

namespace taskmeter {
namespace proc {
namespace posix {

inline double TimevalMs(const struct timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e3 + static_cast<double>(tv.tv_usec) / 1e3;
}

inline double TimespecMs(const struct timespec& ts) {
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

inline double ClockMs(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return TimespecMs(ts);
}

// The calling thread's CPU (user + system): CLOCK_THREAD_CPUTIME_ID (ns) on Linux; thread_info (µs) on macOS, on
// the thread's Mach port from pthread_mach_thread_np (not a new send right: nothing to deallocate).
inline double SelfThreadCpuMs() {
#ifdef __APPLE__
  thread_basic_info_data_t info;
  mach_msg_type_number_t count = THREAD_BASIC_INFO_COUNT;
  if (thread_info(pthread_mach_thread_np(pthread_self()), THREAD_BASIC_INFO, reinterpret_cast<thread_info_t>(&info),
                  &count) != KERN_SUCCESS) {
    return NAN;
  }
  return static_cast<double>(info.user_time.seconds + info.system_time.seconds) * 1e3 +
         static_cast<double>(info.user_time.microseconds + info.system_time.microseconds) / 1e3;
#else
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return NAN;
  return TimespecMs(ts);
#endif
}

// ru_maxrss is KiB on Linux and bytes on macOS.
#ifdef __APPLE__
constexpr double kMaxRssUnit = 1.0;
#else
constexpr double kMaxRssUnit = 1024.0;
#endif

// Fills kTimeMs, kEpochMs, kCpuUserMs, kCpuSystemMs, kPeakRssBytes and kThreadCpuMs (NaN unless thread_cpu); false if
// getrusage failed (NaN there).
// getrusage's counters into out[kMinorFaults …] (kCounterSlots values).
inline void Counters(const struct rusage& ru, double* out) {
  out[0] = static_cast<double>(ru.ru_minflt);
  out[1] = static_cast<double>(ru.ru_majflt);
  out[2] = static_cast<double>(ru.ru_nvcsw);
  out[3] = static_cast<double>(ru.ru_nivcsw);
  out[4] = static_cast<double>(ru.ru_inblock);
  out[5] = static_cast<double>(ru.ru_oublock);
}
static_assert(kCounterSlots == 6, "Counters() fills six slots");

// ... and the rusage counters (kMinorFaults … kFsOutputBlocks), from the same getrusage call.
inline bool ReadClocksAndRusage(double* out, bool thread_cpu) {
  out[kTimeMs] = ClockMs(CLOCK_MONOTONIC);
  out[kEpochMs] = ClockMs(CLOCK_REALTIME);
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) {
    out[kCpuUserMs] = out[kCpuSystemMs] = out[kPeakRssBytes] = NAN;
    for (int i = 0; i < kCounterSlots; i++) out[kMinorFaults + i] = NAN;
    out[kThreadCpuMs] = thread_cpu ? SelfThreadCpuMs() : NAN;
    return false;
  }
  out[kCpuUserMs] = TimevalMs(ru.ru_utime);
  out[kCpuSystemMs] = TimevalMs(ru.ru_stime);
  out[kPeakRssBytes] = static_cast<double>(ru.ru_maxrss) * kMaxRssUnit;
  Counters(ru, &out[kMinorFaults]);
  out[kThreadCpuMs] = thread_cpu ? SelfThreadCpuMs() : NAN;
  return true;
}

inline bool ThreadCounters(double* out) {
#ifdef RUSAGE_THREAD
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return false;
  Counters(ru, out);
  return true;
#else
  (void)out;
  return false;
#endif
}

inline int64_t PeakRssBytes() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  return static_cast<int64_t>(static_cast<double>(ru.ru_maxrss) * kMaxRssUnit);
}

}  // namespace posix

}  // namespace proc
}  // namespace taskmeter
