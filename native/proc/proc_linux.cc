#include "../helper/proc_io.h"
#include "parse_linux.h"
#include "proc.h"
#include "proc_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

// /proc/self/io, likewise kept open (read at the edges of the windows that ask for I/O bytes).
std::atomic<int> g_io_fd{-1};

int IoFd() {
  int fd = g_io_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  int opened = open("/proc/self/io", O_RDONLY | O_CLOEXEC);
  if (opened < 0) return -1;
  int expected = -1;
  if (!g_io_fd.compare_exchange_strong(expected, opened, std::memory_order_acq_rel)) {
    close(opened);
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
  uint64_t size, resident;
  if (ParseStatm(buf, static_cast<size_t>(n), &size, &resident) != kParseOk) return false;
  if (vms_bytes) *vms_bytes = static_cast<double>(size) * kPageBytes;
  if (rss_bytes) *rss_bytes = static_cast<double>(resident) * kPageBytes;
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
  pthread_setname_np(pthread_self(), name);
}

bool ReadSelf(double* out, bool thread_cpu) {
  bool ok = posix::ReadClocksAndRusage(out, thread_cpu);
  if (!ReadStatm(&out[kVmsBytes], &out[kRssBytes])) {
    out[kVmsBytes] = out[kRssBytes] = NAN;
    ok = false;
  }
  return ok;
}

bool ReadSelfIo(double* read_bytes, double* write_bytes) {
  *read_bytes = *write_bytes = NAN;
  int fd = IoFd();
  int64_t rchar, wchar;
  if (fd < 0 || taskmeter_read_proc_io(fd, &rchar, &wchar) != 0) return false;
  *read_bytes = static_cast<double>(rchar);
  *write_bytes = static_cast<double>(wchar);
  return true;
}

bool SelfThreadCounters(double* out) {
  return posix::ThreadCounters(out);
}

void CloseSelfFiles() {
  for (std::atomic<int>* f : {&g_statm_fd, &g_io_fd}) {
    int fd = f->exchange(-1, std::memory_order_acq_rel);
    if (fd >= 0) close(fd);
  }
}

int64_t ReadSelfRssBytes() {
  double rss;
  if (!ReadStatm(nullptr, &rss)) return -1;
  return static_cast<int64_t>(rss);
}

int64_t ReadSelfPeakRssBytes() {
  return posix::PeakRssBytes();
}

double SelfThreadCpuMs() {
  return posix::SelfThreadCpuMs();
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same number on every architecture (Linux 5.3)
#endif

namespace {

const double kTickMs = 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
constexpr uint64_t kPfForkNoExec = 0x40;

}  // namespace

// stat's starttime is in clock ticks since boot, counting suspend (the boot-time clock).
double MinAgeMs(double start_ticks) {
  if (!(start_ticks >= 0)) return NAN;
  return posix::ClockMs(CLOCK_BOOTTIME) - (start_ticks + 1) * kTickMs;
}

namespace {

constexpr uint64_t kPfKthread = 0x00200000;

// The tree sampler's reads go into one growable buffer per thread: a /proc file has no size limit worth trusting
// (a Groups: line of thousands of groups, a children list of thousands of pids).
std::vector<char>& ReadBuffer() {
  thread_local std::vector<char> buf(2048);
  return buf;
}

// Reads a whole /proc file from offset 0 with pread, growing buf as needed. A seq_file hands out at most a page of
// records per read, so a read that filled less than asked is final only if it ends the file's last line
// (ends_with_newline); otherwise read on until 0. Returns the bytes read, or -1 (errno set).
ssize_t PreadAll(int fd, std::vector<char>& buf, bool ends_with_newline) {
  size_t total = 0;
  constexpr size_t kMaxBytes = size_t{64} << 20;
  for (;;) {
    if (buf.size() - total < 1024) {
      if (buf.size() >= kMaxBytes) return static_cast<ssize_t>(total);  // the parsers see it as truncated
      buf.resize(buf.size() * 2);
    }
    ssize_t n;
    do {
      n = pread(fd, buf.data() + total, buf.size() - total, static_cast<off_t>(total));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return total > 0 ? static_cast<ssize_t>(total) : -1;
    if (n == 0) return static_cast<ssize_t>(total);
    total += static_cast<size_t>(n);
    if (ends_with_newline && total < buf.size() && buf[total - 1] == '\n') return static_cast<ssize_t>(total);
  }
}

ssize_t ReadFileAt(const char* path, std::vector<char>& buf, bool ends_with_newline) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = PreadAll(fd, buf, ends_with_newline);
  int saved = errno;
  close(fd);
  errno = saved;
  return n;
}

// Descriptors the tree sampler may keep open, all readers together: a quarter of the soft RLIMIT_NOFILE, so that a
// huge tree never starves the application of descriptors (beyond it, files are opened per read).
std::atomic<long> g_pinned_fds{0};
long PinBudget() {
  static const long budget = [] {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 1024L;
    return static_cast<long>(rl.rlim_cur / 4);
  }();
  return budget;
}
bool TryPin() {
  if (g_pinned_fds.fetch_add(1, std::memory_order_relaxed) < PinBudget()) return true;
  g_pinned_fds.fetch_sub(1, std::memory_order_relaxed);
  return false;
}
void Unpin() {
  g_pinned_fds.fetch_sub(1, std::memory_order_relaxed);
}

void FillInfo(const StatFields& f, ProcessInfo* out) {
  out->pid = f.pid;
  out->ppid = f.ppid;
  memcpy(out->comm, f.comm, sizeof(out->comm));
  out->forked_not_execed = (f.flags & kPfForkNoExec) != 0;
  out->cpu_user_ms = static_cast<double>(f.utime + f.cutime) * kTickMs;
  out->cpu_system_ms = static_cast<double>(f.stime + f.cstime) * kTickMs;
  out->children_user_ms = static_cast<double>(f.cutime) * kTickMs;
  out->children_system_ms = static_cast<double>(f.cstime) * kTickMs;
  out->minor_faults = static_cast<double>(f.minflt);
  out->children_minor_faults = static_cast<double>(f.cminflt);
  out->major_faults = static_cast<double>(f.majflt);
  out->children_major_faults = static_cast<double>(f.cmajflt);
  out->start_ticks = static_cast<double>(f.starttime);
  out->threads = f.num_threads > 0 ? static_cast<uint32_t>(std::min<uint64_t>(f.num_threads, 1u << 22)) : 1;
  out->zombie = f.state == 'Z' || f.state == 'X' || f.state == 'x';
  out->alive = !out->zombie && (f.flags & kPfKthread) == 0;
  // stat's rss (field 24) is the count statm and VmRSS show; 0 with no mm (a process on its way out)
  out->rss_bytes = out->alive ? static_cast<double>(f.rss_pages) * kPageBytes : -1;
  if (out->alive && f.rss_pages == 0) out->alive = false;
}

int ReadHwm(uint32_t pid, double* hwm_bytes) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%u/status", pid);
  std::vector<char>& buf = ReadBuffer();
  ssize_t n = ReadFileAt(path, buf, true);
  if (n <= 0) return kParseEmpty;
  uint64_t bytes;
  int e = ParseStatusKb(buf.data(), static_cast<size_t>(n), "VmHWM:", &bytes);
  if (e == kParseOk) *hwm_bytes = static_cast<double>(bytes);
  return e;
}

bool ReadChildrenFile(int fd, const char* path, std::vector<uint32_t>* out, bool* missing) {
  std::vector<char>& buf = ReadBuffer();
  ssize_t n = fd >= 0 ? PreadAll(fd, buf, false) : ReadFileAt(path, buf, false);
  if (n < 0) {
    *missing = errno == ENOENT;
    return false;
  }
  // a cut-short last entry cannot happen with reads to the end; whatever parsed is kept either way
  ParseChildren(buf.data(), static_cast<size_t>(n), out);
  return true;
}

}  // namespace

ProcessReader::ProcessReader(uint32_t pid) : pid_(pid) {}

void ProcessReader::CloseThreadLists() {
  for (const ThreadList& t : threads_lists_) {
    if (t.fd >= 0) {
      close(t.fd);
      Unpin();
    }
  }
  threads_lists_.clear();
}

ProcessReader::~ProcessReader() {
  CloseThreadLists();
  if (sched_fd_ >= 0) {
    close(sched_fd_);
    Unpin();
  }
  if (stat_fd_ >= 0) close(stat_fd_);
  if (children_fd_ >= 0) close(children_fd_);
  if (io_fd_ >= 0) close(io_fd_);
  if (stat_pinned_) Unpin();
  if (children_pinned_) Unpin();
  if (io_pinned_) Unpin();
  if (pidfd_ >= 0) {
    close(pidfd_);
    Unpin();
  }
}

// A process we may not read (another user's, under hidepid): does it live? The first time, it is pinned by a pidfd
// (Linux 5.3+), which polls readable once that process has ended, even when its pid has been given to another
// process since. Without one (an older kernel, no descriptor to spare), kill(pid, 0): EPERM says that some process
// of another user has the pid, which after a reuse is not the one first found.
bool ProcessReader::DeniedAlive() {
  if (!pidfd_tried_) {
    pidfd_tried_ = true;
    if (TryPin()) {
      pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid_), 0));  // always close-on-exec
      if (pidfd_ < 0) Unpin();
    }
  }
  int ended = PidfdEnded();
  if (ended >= 0) return ended == 0;
  return kill(static_cast<pid_t>(pid_), 0) == 0 || errno == EPERM;
}

int ProcessReader::PidfdEnded() {
  if (pidfd_ < 0) return -1;
  pollfd p{pidfd_, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -1 : r > 0 ? 1 : 0;
}

bool ProcessReader::Read(bool want_hwm, ProcessInfo* out) {
  constexpr uint32_t kStatEvery = 16;
  gone_ = denied_ = false;
  uint64_t run_ns = 0, slices = 0;
  bool have_sched = false;
  if (sched_fd_ >= 0) {
    char sb[96];
    ssize_t m;
    do {
      m = pread(sched_fd_, sb, sizeof(sb), 0);
    } while (m < 0 && errno == EINTR);
    if (m < 0 && errno == ESRCH) {
      gone_ = true;
      return false;
    }
    have_sched = m > 0 && ParseSchedstat(sb, static_cast<size_t>(m), &run_ns, &slices) == kParseOk;
    if (have_sched && have_last_ && !want_hwm && threads_ == 1 && since_stat_ < kStatEvery && run_ns == last_run_ns_ &&
        slices == last_slices_) {
      since_stat_++;
      *out = last_;
      fresh_ = false;
      return true;
    }
  }
  *out = ProcessInfo();
  out->pid = pid_;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%u/stat", pid_);
  std::vector<char>& buf = ReadBuffer();
  ssize_t n;
  if (stat_fd_ >= 0) {
    n = PreadAll(stat_fd_, buf, true);  // ESRCH once the process is gone, even if its pid is reused
  } else {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EACCES || err == EPERM || (err == ENOENT && (start_ticks_ < 0 || pidfd_tried_))) {
        // hidepid=1 (noaccess), or hidepid=2 (invisible), which hides another user's process as if it did not exist
        // (but not from kill(2) or pidfd_open(2)): alive and unreadable, until the process first found so ends. One
        // read before that vanishes is gone.
        denied_ = DeniedAlive();
        gone_ = !denied_;
      } else {
        gone_ = err == ENOENT || err == ESRCH;
      }
      return false;
    }
    if (PidfdEnded() == 1) {
      // First found unreadable, it has ended since: its pid, opened before this check, names another process.
      close(fd);
      gone_ = true;
      return false;
    }
    n = PreadAll(fd, buf, true);
    if (n > 0 && !stat_pinned_ && TryPin()) {
      stat_fd_ = fd;
      stat_pinned_ = true;
    } else {
      close(fd);
    }
  }
  if (n <= 0) {
    denied_ = n < 0 && (errno == EACCES || errno == EPERM);
    gone_ = n == 0 || errno == ESRCH || errno == ENOENT;
    return false;
  }
  StatFields f;
  if (ParseStat(buf.data(), static_cast<size_t>(n), &f) != kParseOk || f.pid != pid_) return false;  // unreadable now
  if (start_ticks_ < 0) start_ticks_ = static_cast<double>(f.starttime);
  if (static_cast<double>(f.starttime) != start_ticks_) {
    gone_ = true;  // another process under the same pid
    return false;
  }
  FillInfo(f, out);
  fresh_ = true;
  threads_ = out->threads;
  reads_++;
  if (sched_fd_ < 0 && !sched_unavailable_ && stat_fd_ >= 0) {
    // Only with its descriptor kept: opened per read it would cost more than it saves.
    if (TryPin()) {
      snprintf(path, sizeof(path), "/proc/%u/schedstat", pid_);
      sched_fd_ = open(path, O_RDONLY | O_CLOEXEC);
      if (sched_fd_ < 0) Unpin();
    }
    sched_unavailable_ = sched_fd_ < 0;  // no CONFIG_SCHED_INFO, or no descriptor to spare: always read stat
  }
  // The schedstat read before this stat is the state it describes (if the process ran in between, the next read
  // sees the change and reads stat again).
  have_last_ = have_sched;
  last_run_ns_ = run_ns;
  last_slices_ = slices;
  since_stat_ = 0;
  last_ = *out;
  if (want_hwm && out->alive) {
    double hwm = -1;
    if (ReadHwm(pid_, &hwm) == kParseOk) out->hwm_bytes = std::max(hwm, out->rss_bytes);
  }
  return true;
}

void ProcessReader::ReadAfreshNext() {
  have_last_ = false;
}

int ProcessReader::ReadIo(double out[4]) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%u/io", pid_);
  if (io_fd_ < 0 && !io_pinned_ && TryPin()) {
    // The descriptor names the process (its thread group), not a memory map: it stays valid across exec, and its
    // reads fail once the process is gone. Access is checked at each read (a setuid exec makes it unreadable).
    io_fd_ = open(path, O_RDONLY | O_CLOEXEC);
    if (io_fd_ >= 0) {
      io_pinned_ = true;
    } else {
      int err = errno;
      Unpin();
      return err;
    }
  }
  std::vector<char>& buf = ReadBuffer();
  ssize_t n = io_fd_ >= 0 ? PreadAll(io_fd_, buf, false) : ReadFileAt(path, buf, false);
  if (n < 0) return errno;
  static const char* const kKeys[4] = {"rchar", "wchar", "read_bytes", "write_bytes"};
  int64_t v[4];
  for (int i = 0; i < 4; i++) {
    v[i] = taskmeter_proc_io_field(buf.data(), static_cast<size_t>(n), kKeys[i]);
    if (v[i] < 0) return EIO;
  }
  for (int i = 0; i < 4; i++) out[i] = static_cast<double>(v[i]);
  return 0;
}

int ProcessReader::ReadPss(double* pss_bytes, double* rss_bytes) {
  // Opened for each read: the file describes the memory map the process had when it was opened, and an exec (a
  // forked worker's, a shell's) replaces that map.
  char path[64];
  snprintf(path, sizeof(path), "/proc/%u/smaps_rollup", pid_);
  std::vector<char>& buf = ReadBuffer();
  ssize_t n = ReadFileAt(path, buf, true);
  if (n < 0) return errno;
  uint64_t pss, rss;
  int e = ParseStatusKb(buf.data(), static_cast<size_t>(n), "Pss:", &pss);
  if (e == kParseEmpty) return ESRCH;  // a process without memory (exiting, a zombie) has an empty rollup
  if (e != kParseOk || ParseStatusKb(buf.data(), static_cast<size_t>(n), "Rss:", &rss) != kParseOk) return EIO;
  if (stat_fd_ >= 0) {
    // Opened by pid: the kept-open stat says whether that pid still names the process read before.
    char b;
    if (pread(stat_fd_, &b, 1, 0) < 0 && errno == ESRCH) return ESRCH;
  }
  *pss_bytes = static_cast<double>(pss);
  *rss_bytes = static_cast<double>(rss);
  return 0;
}

double ProcessReader::ReadPeakBytes() {
  double hwm = -1;
  return ReadHwm(pid_, &hwm) == kParseOk ? hwm : -1;
}

bool ProcessReader::Children(std::vector<uint32_t>* out) {
  char path[96];
  bool missing = false;
  snprintf(path, sizeof(path), "/proc/%u/task/%u/children", pid_, pid_);
  if (children_fd_ < 0 && !children_pinned_ && TryPin()) {
    children_fd_ = open(path, O_RDONLY | O_CLOEXEC);
    if (children_fd_ >= 0)
      children_pinned_ = true;
    else
      Unpin();
  }
  bool ok = ReadChildrenFile(children_fd_, path, out, &missing);
  if (!ok && missing) {
    // The main thread's list is missing: the process is gone, or the kernel lacks CONFIG_PROC_CHILDREN.
    struct stat st;
    snprintf(path, sizeof(path), "/proc/%u/task/%u", pid_, pid_);
    return stat(path, &st) != 0;
  }
  if (threads_ <= 1) return true;
  // Other threads can fork too. Their ids are listed again when the thread count changes (and every 64 reads, in
  // case threads were replaced one for one); their lists are read by path.
  if (tids_for_threads_ != threads_ || reads_ % 64 == 0) {
    CloseThreadLists();
    tids_for_threads_ = threads_;
    snprintf(path, sizeof(path), "/proc/%u/task", pid_);
    if (DIR* dir = opendir(path)) {
      while (struct dirent* e = readdir(dir)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        uint32_t tid = static_cast<uint32_t>(strtoul(e->d_name, nullptr, 10));
        if (tid == pid_) continue;
        int fd = -1;
        if (TryPin()) {
          snprintf(path, sizeof(path), "/proc/%u/task/%u/children", pid_, tid);
          fd = open(path, O_RDONLY | O_CLOEXEC);
          if (fd < 0) Unpin();
        }
        threads_lists_.push_back(ThreadList{tid, fd});
      }
      closedir(dir);
    }
  }
  for (const ThreadList& t : threads_lists_) {
    snprintf(path, sizeof(path), "/proc/%u/task/%u/children", pid_, t.tid);
    ReadChildrenFile(t.fd, path, out, &missing);  // a thread that ended meanwhile has no children to add
  }
  return true;
}

bool ReadProcess(uint32_t pid, ProcessInfo* out) {
  ProcessReader r(pid);
  return r.Read(true, out);
}

bool ListChildren(uint32_t pid, std::vector<uint32_t>* out) {
  ProcessReader r(pid);
  ProcessInfo info;
  if (!r.Read(false, &info)) return true;  // gone: no children, not an error
  return r.Children(out);
}

bool ListAllParents(std::vector<std::pair<uint32_t, uint32_t>>* out) {
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return false;
  char path[300];
  std::vector<char>& buf = ReadBuffer();
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    ssize_t n = ReadFileAt(path, buf, true);
    StatFields f;
    if (n <= 0 || ParseStat(buf.data(), static_cast<size_t>(n), &f) != kParseOk) continue;
    out->emplace_back(f.pid, f.ppid);
  }
  closedir(dir);
  return true;
}

}  // namespace proc
}  // namespace taskmeter
