#include "spawn.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "helper/exec_protocol.h"
#include "helper/proc_io.h"
#include "own_forks.h"
#include "posix_child.h"
#include "proc/proc.h"

// How a command is started (Linux, macOS):
//
//   node ──fork──▶ node copy ──exec──▶ taskmeter-exec ──fork+exec──▶ command
//
// The copy of Node only sets the stage: stdio, cwd, default signal handling; then it execs the helper (built
// beside the addon, see native/helper/exec_helper.c), which forks the command from a process of ~1 MB and reaps it,
// so the command's ru_maxrss is as clean as under GNU time. Where the helper is missing (an addon built without
// it), the copy of Node execs the command itself and the reaped ru_maxrss may be Node's own pre-exec peak
// (kSpContaminationBytes tells JavaScript where that line is).
//
// stdio "inherit" follows libuv's uv_spawn for inherited descriptors: 0–2 lose close-on-exec (Node sets it on its
// own stdio at startup) and are put in blocking mode, the mode a freshly started program expects. O_NONBLOCK is a
// flag of the open file description, so this is also visible to taskmeter and to whoever shares the descriptor
// (as with child_process.spawn's 'inherit'); Node writes its own stdout and stderr synchronously, so it is not
// affected.
//
// Signals go to a command only until it has ended (SignalCommand): its pid is its own until it is reaped, and the
// reaper tells us first — the helper reports the end of the command while it is still a zombie and reaps it only
// once we have acknowledged (the report channel is a socket pair for that); without the helper, the waiter sees the
// end with waitid(WNOWAIT) before it reaps. The helper also makes the command die with it (PR_SET_PDEATHSIG on
// Linux): a helper killed under the command leaves no orphan running, and its status is reported as unknown.

namespace taskmeter {
namespace {

inline double TvMs(const struct timeval& tv) {
  return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}

// A close-on-exec pipe (posix_child.h); also the address dladdr finds this addon by.
int MakePipe(int fds[2]) {
  return CloexecPipe(fds);
}

// The helper beside this addon: "<addon without .node>-exec" (build/Release/taskmeter.node → taskmeter-exec,
// prebuilds/linux-x64/taskmeter.napi.glibc.node → taskmeter.napi.glibc-exec). Found once; empty if absent.
// TASKMETER_EXEC_HELPER=0 turns it off (to compare with the direct path); an absolute path names another helper
// (a wrapper that runs the shipped one under an emulator, say).
const std::string& HelperPath() {
  static const std::string path = []() -> std::string {
    const char* env = getenv("TASKMETER_EXEC_HELPER");
    if (env && std::strcmp(env, "0") == 0) return std::string();
    if (env && env[0] == '/') return access(env, X_OK) == 0 ? std::string(env) : std::string();
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&MakePipe), &info) == 0 || !info.dli_fname) return std::string();
    std::string p = info.dli_fname;
    if (p.size() > 5 && p.compare(p.size() - 5, 5, ".node") == 0) p.resize(p.size() - 5);
    p += "-exec";
    return access(p.c_str(), X_OK) == 0 ? p : std::string();
  }();
  return path;
}

// A socket pair (close-on-exec, posix_child.h): the helper's report channel, on which the waiter also acknowledges
// the end report.
int MakeSocketPair(int fds[2]) {
  return CloexecSocketPair(fds);
}

struct ChildError {
  int32_t stage;
  int32_t err;
};

// In the copy of Node, between fork and exec: only async-signal-safe calls, no allocation.
[[noreturn]] void ChildExec(const char* exec_file, const char* const* argv, const char* const* envp, const char* cwd,
                            const int fds[3], int report_fd, int err_fd, const int hold[2]) {
  ChildError ce = {kStageSetup, 0};
  ChildResetSignals();  // posix_child.h
  if (hold[0] >= 0) {   // test hook (HoldNextForkForTest): wait here, a copy of Node, until the parent lets go
    close(hold[1]);
    char c;
    while (read(hold[0], &c, 1) < 0 && errno == EINTR) {}
  }
  // Move the wanted descriptors to 0, 1, 2 (via high numbers first, so one cannot clobber another).
  int moved[3];
  for (int i = 0; i < 3; i++) {
    moved[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 10) : -1;
    if (fds[i] >= 0 && moved[i] < 0) goto fail;
  }
  for (int i = 0; i < 3; i++) {
    if (moved[i] >= 0) {
      if (dup2(moved[i], i) < 0) goto fail;  // dup2 clears close-on-exec on the new descriptor
    } else if (fcntl(i, F_SETFD, 0) < 0) {   // inherited: keep it across exec
      goto fail;
    }
    // Blocking, as libuv makes every stdio descriptor of a child (a descriptor the caller passed may be a
    // non-blocking socket or pipe of Node's; /dev/null and our own pipes already are).
    int fl = fcntl(i, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(i, F_SETFL, fl & ~O_NONBLOCK);
  }
  if (report_fd >= 0 && fcntl(report_fd, F_SETFD, 0) < 0) goto fail;
  if (cwd && chdir(cwd) != 0) {
    ce.stage = kStageChdir;
    goto fail;
  }
  ce.stage = kStageExec;
  execve(exec_file, const_cast<char* const*>(argv), const_cast<char* const*>(envp));
fail:
  ce.err = errno;
  ssize_t ignored = write(err_fd, &ce, sizeof(ce));
  (void)ignored;
  _exit(127);
}

bool ReadFull(int fd, void* buf, size_t size) {
  char* p = static_cast<char*>(buf);
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, p + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

void Reap(pid_t pid, int* status, struct rusage* ru) {
  pid_t r;
  do {
    r = wait4(pid, status, 0, ru);
  } while (r < 0 && errno == EINTR);
  if (r < 0) *status = -1;
}

struct Waiter {
  pid_t pid;      // what we reap: the helper, or the command itself
  int report_fd;  // the helper's report channel, or -1
  pid_t command_pid;
  bool ended = false;  // the command has ended (under CommandsMu()): no signal goes to its pid any more
  SpawnDoneFn done;
  void* context;
  double slots[kSpawnSlots];
};

// The commands started and not yet reaped, by pid (SignalCommand), under CommandsMu(). Both are leaked on purpose:
// a detached waiter thread may still use them while the process exits and static objects are destroyed.
std::mutex& CommandsMu() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}
std::unordered_map<pid_t, Waiter*>& Commands() {
  static auto* commands = new std::unordered_map<pid_t, Waiter*>();
  return *commands;
}

void MarkEnded(Waiter* w) {
  std::lock_guard<std::mutex> lock(CommandsMu());
  w->ended = true;
}

void Unregister(Waiter* w) {
  std::lock_guard<std::mutex> lock(CommandsMu());
  auto it = Commands().find(w->command_pid);
  if (it != Commands().end() && it->second == w) Commands().erase(it);
}

// Reads the helper's end of the command: an kExecEnding report (the command is a zombie, its pid still its own) is
// acknowledged once w (if any) is marked ended, then the kExecExited report follows. False if the helper is gone
// without it.
bool ReadEndReport(int fd, Waiter* w, ExecReport* r) {
  if (!ReadFull(fd, r, sizeof(*r))) return false;
  if (r->kind != kExecEnding) return true;
  if (w) MarkEnded(w);
  char ack = 1;
  ssize_t n;
  do {
#ifdef MSG_NOSIGNAL
    n = send(fd, &ack, 1, MSG_NOSIGNAL);
#else
    n = write(fd, &ack, 1);
#endif
  } while (n < 0 && errno == EINTR);
  return ReadFull(fd, r, sizeof(*r));
}

void FillFromStatus(double* s, int status) {
  s[kSpExitCode] = WIFEXITED(status) ? WEXITSTATUS(status) : NAN;
  s[kSpSignal] = WIFSIGNALED(status) ? WTERMSIG(status) : NAN;
}

// The rusage counters beyond CPU and memory, and the I/O bytes (-1: unknown → NaN).
void FillCounters(double* s, int64_t minflt, int64_t majflt, int64_t nvcsw, int64_t nivcsw, int64_t inblock,
                  int64_t oublock, int64_t io_read, int64_t io_write) {
  auto v = [](int64_t x) { return x >= 0 ? static_cast<double>(x) : NAN; };
  s[kSpMinorFaults] = v(minflt);
  s[kSpMajorFaults] = v(majflt);
  s[kSpVoluntaryCtxSwitches] = v(nvcsw);
  s[kSpInvoluntaryCtxSwitches] = v(nivcsw);
  s[kSpFsInputBlocks] = v(inblock);
  s[kSpFsOutputBlocks] = v(oublock);
  s[kSpIoReadBytes] = v(io_read);
  s[kSpIoWriteBytes] = v(io_write);
}

void* WaitMain(void* arg) {
  Waiter* w = static_cast<Waiter*>(arg);
  double* s = w->slots;
  int status = 0;
  struct rusage ru;
  std::memset(&ru, 0, sizeof(ru));
  if (w->report_fd >= 0) {
    ExecReport r;
    bool read = ReadEndReport(w->report_fd, w, &r) && r.kind == kExecExited;
    MarkEnded(w);  // reported, or the helper is gone (and the command with it)
    bool got = read && r.err == 0;
    close(w->report_fd);
    Reap(w->pid, &status, &ru);  // the helper exits right after its report
    s[kSpEndMonoMs] = proc::MonotonicMs();
    s[kSpEndEpochMs] = proc::EpochMs();
    if (read && !got) {
      // The helper's wait4 failed: the command's status and usage are unknown (its own exit status, 0, is not
      // the command's).
      s[kSpExitCode] = s[kSpSignal] = s[kSpUserMs] = s[kSpSystemMs] = s[kSpMaxRssBytes] = NAN;
    } else if (got) {
      FillFromStatus(s, r.status);
      s[kSpUserMs] = r.utime_us / 1e3;
      s[kSpSystemMs] = r.stime_us / 1e3;
      s[kSpMaxRssBytes] = static_cast<double>(r.maxrss_bytes);
      FillCounters(s, r.minflt, r.majflt, r.nvcsw, r.nivcsw, r.inblock, r.oublock, r.io_read_bytes, r.io_write_bytes);
    } else {
      // The helper died without a report (killed): the command's status and usage are unknown — the helper's own
      // status is not the command's — and the command was killed with it (PR_SET_PDEATHSIG).
      s[kSpExitCode] = s[kSpSignal] = s[kSpUserMs] = s[kSpSystemMs] = s[kSpMaxRssBytes] = NAN;
    }
  } else {
    // Its end first, without reaping it: until marked ended, a signal may still go to its pid.
    siginfo_t si;
    int wr;
    do {
      wr = waitid(P_PID, static_cast<id_t>(w->pid), &si, WEXITED | WNOWAIT);
    } while (wr < 0 && errno == EINTR);
    MarkEnded(w);
    int64_t io_read = -1, io_write = -1;
    taskmeter_exited_io(w->pid, &io_read, &io_write);  // before Reap: the zombie's (proc_io.h)
    Reap(w->pid, &status, &ru);
    s[kSpEndMonoMs] = proc::MonotonicMs();
    s[kSpEndEpochMs] = proc::EpochMs();
    if (status == -1) {  // someone else reaped it (a waitpid(-1) elsewhere): status and rusage are lost
      s[kSpExitCode] = s[kSpSignal] = s[kSpUserMs] = s[kSpSystemMs] = s[kSpMaxRssBytes] = NAN;
    } else {
      FillFromStatus(s, status);
      s[kSpUserMs] = TvMs(ru.ru_utime);
      s[kSpSystemMs] = TvMs(ru.ru_stime);
#ifdef __APPLE__
      s[kSpMaxRssBytes] = static_cast<double>(ru.ru_maxrss);
#else
      s[kSpMaxRssBytes] = static_cast<double>(ru.ru_maxrss) * 1024.0;
#endif
      FillCounters(s, ru.ru_minflt, ru.ru_majflt, ru.ru_nvcsw, ru.ru_nivcsw, ru.ru_inblock, ru.ru_oublock, io_read,
                   io_write);
    }
  }
  s[kSpExited] = 1;
  Unregister(w);
  w->done(w->context, s);
  delete w;
  return nullptr;
}

// Test hook: TASKMETER_TEST_FAIL_WAITER_THREAD=1 makes the waiter thread's creation fail with EAGAIN, as it does
// under a pids limit (a cgroup's pids.max), which a test cannot set up without privileges.
bool FailWaiterThreadForTest() {
  const char* v = getenv("TASKMETER_TEST_FAIL_WAITER_THREAD");
  return v && std::strcmp(v, "1") == 0;
}

// Test hook: TASKMETER_TEST_FAIL_SPAWN_REGISTRY=1 makes the allocation of the command's entry in the registry
// (Commands()) throw std::bad_alloc, as it may when memory runs out.
void MaybeFailRegistryForTest() {
  const char* v = getenv("TASKMETER_TEST_FAIL_SPAWN_REGISTRY");
  if (v && std::strcmp(v, "1") == 0) throw std::bad_alloc();
}

// Test hook: TASKMETER_TEST_FAIL_KILL_TREE_ALLOC=n makes KillTree's allocation for the n-th process it finds throw
// std::bad_alloc. 0: none.
size_t KillTreeFailAtForTest() {
  const char* v = getenv("TASKMETER_TEST_FAIL_KILL_TREE_ALLOC");
  return v ? static_cast<size_t>(std::strtoul(v, nullptr, 10)) : 0;
}

// The registry's key for a command's entry until its pid is known: negative, so never a pid.
std::atomic<uint32_t> g_placeholders{0};
pid_t PlaceholderKey() {
  return -1 - static_cast<pid_t>(g_placeholders.fetch_add(1) & 0x3fffffff);
}

// Test hook: the next spawn's copy of Node waits before its exec, and the spawner waits twice for a release
// (ReleaseForkForTest), first before it registers the copy (OwnForks::Add; only BeginFork marks it ours then),
// then before it lets the copy exec: a copy of Node held between fork and exec for as long as a test needs to look
// at it (a real one lives microseconds). Each wait gives up after a minute.
std::atomic<bool> g_hold_next_fork{false};
std::atomic<int> g_fork_releases{0};

void WaitForRelease(int n) {
  for (int i = 0; i < 60000 && g_fork_releases.load() < n; i++) usleep(1000);
}

// Set once the helper itself could not be exec'd for a reason that will not go away (a helper for another
// architecture — an emulated Node without binfmt_misc —, a noexec mount, a deleted file): from then on commands are
// forked from Node directly, as without a helper.
std::atomic<bool> g_helper_unusable{false};

bool HelperCannotRun(int err) {
  switch (err) {
    case ENOEXEC:
    case EACCES:
    case ENOENT:
    case EPERM:
#ifdef ELIBBAD
    case ELIBBAD:
#endif
      return true;
    default: return false;
  }
}

SpawnResult SpawnWith(const SpawnOptions& o, SpawnDoneFn done, void* context, bool use_helper, bool* helper_failed);

}  // namespace

void HoldNextForkForTest() {
  g_fork_releases.store(0);
  g_hold_next_fork.store(true);
}

void ReleaseForkForTest() {
  g_fork_releases.fetch_add(1);
}

int SignalCommand(uint32_t pid, int sig) {
  std::lock_guard<std::mutex> lock(CommandsMu());
  auto it = Commands().find(static_cast<pid_t>(pid));
  if (it == Commands().end() || it->second->ended) return ESRCH;
  return kill(static_cast<pid_t>(pid), sig) == 0 ? 0 : errno;
}

int KillTree(int root, int signo) {
  if (root <= 1 || signo <= 0) return -EINVAL;
  // Only a command of ours that has not ended, and it cannot end-and-be-reaped meanwhile: its waiter marks the end
  // under this lock before the command is reaped (see SignalCommand).
  std::lock_guard<std::mutex> lock(CommandsMu());
  auto it = Commands().find(static_cast<pid_t>(root));
  if (it == Commands().end() || it->second->ended) return -ESRCH;
  // Freeze first: a stopped process cannot fork, so the listing below is complete once every process in it is
  // stopped (a fork in progress when SIGSTOP arrives is restarted after the stop). Two passes catch children forked
  // between a parent's listing and its stop.
  std::vector<uint32_t> tree;  // the processes stopped, each once: all of them are resumed, whatever fails
  std::unordered_set<uint32_t> in_tree;
  std::vector<std::pair<uint32_t, uint32_t>> parents;  // (pid, ppid) of all, where children lists are missing
  const size_t fail_at = KillTreeFailAtForTest();
  int root_err = ESRCH;
  try {
    for (int pass = 0; pass < 2; pass++) {
      bool all_listed = false;
      auto children = [&](uint32_t pid, std::vector<uint32_t>* out) {
        if (proc::ListChildren(pid, out)) return;
        if (!all_listed) {
          parents.clear();
          proc::ListAllParents(&parents);
          all_listed = true;
        }
        for (const auto& pp : parents) {
          if (pp.second == pid) out->push_back(pp.first);
        }
      };
      std::vector<uint32_t> queue = {static_cast<uint32_t>(root)};
      while (!queue.empty()) {
        uint32_t pid = queue.back();
        queue.pop_back();
        if (in_tree.count(pid) == 0) {
          // Room for it before it is stopped: a stopped process must never miss the list that is resumed.
          if (in_tree.size() + 1 == fail_at) throw std::bad_alloc();
          if (tree.size() == tree.capacity()) tree.reserve(2 * tree.size() + 16);
          auto added = in_tree.insert(pid).first;
          if (kill(static_cast<pid_t>(pid), SIGSTOP) != 0) {  // gone (or not ours: EPERM)
            if (pid == static_cast<uint32_t>(root)) root_err = errno;
            in_tree.erase(added);
            continue;
          }
          tree.push_back(pid);  // within the capacity reserved: no allocation
          if (pid == static_cast<uint32_t>(root)) {
            // A zombie takes any signal without effect: the command has ended by itself, its waiter not told yet.
            // Nothing is ended (nor stopped: only the root was, to no effect), as once its end is known. The read
            // may allocate (its buffer): the root is listed first, so a throw here still signals and resumes it.
            proc::ProcessInfo info;
            if (proc::ReadProcess(pid, &info) && info.zombie) return -ESRCH;
          }
        }
        children(pid, &queue);
      }
    }
  } catch (...) {  // std::bad_alloc: signal what was found
  }
  if (tree.empty()) return -root_err;
  int signalled = 0;
  for (uint32_t pid : tree) {
    if (kill(static_cast<pid_t>(pid), signo) == 0) signalled++;
  }
  // Let them run again so that the signal is acted on (a handler for SIGTERM runs; SIGKILL needs no help). This also
  // resumes a process of the tree that was stopped before; and it would cancel a stop signal (SIGTSTP, SIGTTIN,
  // SIGTTOU) sent as signo, which JavaScript refuses as a killSignal: SIGSTOP alone is left in force.
  if (signo != SIGSTOP) {
    for (uint32_t pid : tree) kill(static_cast<pid_t>(pid), SIGCONT);
  }
  return signalled;
}

SpawnResult Spawn(const SpawnOptions& o, SpawnDoneFn done, void* context) {
  bool use_helper = !HelperPath().empty() && !g_helper_unusable.load();
  bool helper_failed = false;
  SpawnResult res = SpawnWith(o, done, context, use_helper, &helper_failed);
  if (helper_failed) {
    g_helper_unusable.store(true);
    res = SpawnWith(o, done, context, false, nullptr);
  }
  return res;
}

namespace {

SpawnResult SpawnWith(const SpawnOptions& o, SpawnDoneFn done, void* context, bool use_helper, bool* helper_failed) {
  SpawnResult res;
  const std::string& helper = HelperPath();
  // Everything the child needs, built before the fork (the child may not allocate).
  std::vector<std::string> helper_args;
  std::vector<const char*> argv, envp;
  int report[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  int child_fds[3] = {-1, -1, -1};
  int to_close[3] = {-1, -1, -1};
  auto close_all = [&]() {
    for (int i = 0; i < 3; i++) {
      if (to_close[i] >= 0) close(to_close[i]);
      to_close[i] = -1;
      if (res.parent_fds[i] >= 0) close(res.parent_fds[i]);
      res.parent_fds[i] = -1;
    }
    for (int* p : {report, err_pipe}) {
      for (int j = 0; j < 2; j++) {
        if (p[j] >= 0) close(p[j]);
        p[j] = -1;
      }
    }
  };
  Waiter* w = nullptr;
  auto discard = [&]() {  // w, with its entry in the registry if it has one
    if (w) Unregister(w);
    delete w;
    w = nullptr;
  };
  try {
    w = new Waiter();
    if (use_helper) {
      if (MakeSocketPair(report) != 0) {
        res.error = errno;
        close_all();
        discard();
        return res;
      }
      helper_args.push_back(helper);
      helper_args.push_back(std::to_string(report[1]));
      helper_args.push_back(o.file);
      argv.reserve(helper_args.size() + o.args.size() + 1);
      for (const auto& a : helper_args) argv.push_back(a.c_str());
    }
    for (const auto& a : o.args) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    envp.reserve(o.env.size() + 1);
    for (const auto& e : o.env) envp.push_back(e.c_str());
    envp.push_back(nullptr);
    // Its entry in the registry, made now under a placeholder key and given the command's pid once known: after the
    // fork nothing may throw (a command started would be left with nobody to reap it).
    w->command_pid = PlaceholderKey();
    std::lock_guard<std::mutex> lock(CommandsMu());
    MaybeFailRegistryForTest();
    // a placeholder key still in use after 2^30 others (a spawn that long in flight): the next one
    while (!Commands().emplace(w->command_pid, w).second) w->command_pid = PlaceholderKey();
  } catch (...) {  // std::bad_alloc
    close_all();
    discard();
    res.error = ENOMEM;
    return res;
  }
  w->done = done;
  w->context = context;
  for (double& s : w->slots) s = NAN;
  w->slots[kSpExited] = 0;

  for (int i = 0; i < 3; i++) {
    int mode = o.stdio[i];
    if (mode >= 0) {
      child_fds[i] = mode;
    } else if (mode == -2) {
      int fd = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
      if (fd < 0) {
        res.error = errno;
        close_all();
        discard();
        return res;
      }
      child_fds[i] = to_close[i] = fd;
    } else if (mode == -3) {
      int p[2];
      if (MakePipe(p) != 0) {
        res.error = errno;
        close_all();
        discard();
        return res;
      }
      // stdin: the child reads p[0] and we write p[1]; stdout/stderr the other way round.
      child_fds[i] = to_close[i] = i == 0 ? p[0] : p[1];
      res.parent_fds[i] = i == 0 ? p[1] : p[0];
      // Our end non-blocking (a separate open file from the child's end, which stays blocking): JavaScript reads it
      // through libuv, and drains it synchronously at the command's exit (resolveOn 'exit'), which must never block.
      int fl = fcntl(res.parent_fds[i], F_GETFL);
      if (fl >= 0) fcntl(res.parent_fds[i], F_SETFL, fl | O_NONBLOCK);
    }
  }
  if (MakePipe(err_pipe) != 0) {
    res.error = errno;
    close_all();
    discard();
    return res;
  }
  int hold[2] = {-1, -1};
  if (g_hold_next_fork.exchange(false) && MakePipe(hold) != 0) hold[0] = hold[1] = -1;
  const char* exec_file = use_helper ? helper.c_str() : o.file.c_str();
  const char* cwd = o.cwd.empty() ? nullptr : o.cwd.c_str();
  int64_t rss_before = use_helper ? 0 : proc::ReadSelfRssBytes();
  w->slots[kSpStartMonoMs] = proc::MonotonicMs();
  // All signals blocked across the fork, so that none of Node's handlers runs in the copy before it has reset them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // Until it has exec'd, the child is a copy of this process: a tree that holds us leaves its memory out (tree.h),
  // from before fork() returns (BeginFork) and then by its pid.
  OwnForks::BeginFork();
  pid_t pid = ForkForExec();  // posix_child.h
  if (pid == 0) ChildExec(exec_file, argv.data(), envp.data(), cwd, child_fds, report[1], err_pipe[1], hold);
  int fork_errno = errno;
  if (hold[0] >= 0) {
    close(hold[0]);
    if (pid > 0) WaitForRelease(1);
  }
  int own_fork = pid > 0 ? OwnForks::Add(static_cast<uint32_t>(pid)) : -1;
  OwnForks::EndFork();
  if (hold[1] >= 0) {
    if (pid > 0) WaitForRelease(2);
    close(hold[1]);  // the copy reads EOF and goes on to its exec
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(err_pipe[1]);
  err_pipe[1] = -1;
  if (report[1] >= 0) close(report[1]);
  report[1] = -1;
  for (int i = 0; i < 3; i++) {
    if (to_close[i] >= 0) close(to_close[i]);
    to_close[i] = -1;
  }
  if (pid < 0) {
    res.error = fork_errno;
    close_all();
    discard();
    return res;
  }
  // The copy's result: EOF when the exec succeeded (the pipe is close-on-exec), else the failed step and errno.
  ChildError ce = {0, 0};
  bool failed = ReadFull(err_pipe[0], &ce, sizeof(ce));
  OwnForks::Remove(own_fork);
  close(err_pipe[0]);
  err_pipe[0] = -1;
  if (failed) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    res.error = ce.err;
    res.stage = ce.stage;
    close_all();
    discard();
    // The exec that failed was the helper's, not the command's: say so if it is for good (the caller retries
    // without the helper). A transient error (E2BIG, ENOMEM…) would fail the command's exec as well: reported.
    if (use_helper && helper_failed && ce.stage == kStageExec && HelperCannotRun(ce.err)) *helper_failed = true;
    return res;
  }
  pid_t command_pid = pid;
  if (use_helper) {
    ExecReport r;
    bool got = ReadFull(report[0], &r, sizeof(r));
    if (!got || r.kind != kExecStarted) {
      int status;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
      res.error = got ? r.err : EIO;
      res.stage = got && r.pid > 0 ? kStageExec : kStageSetup;
      close_all();
      discard();
      return res;
    }
    command_pid = r.pid;
  } else {
    int64_t rss_after = proc::ReadSelfRssBytes();
    // The forked copy's pages are a subset of ours at the fork; a margin covers what other threads mapped meanwhile.
    w->slots[kSpContaminationBytes] = static_cast<double>(std::max(rss_before, rss_after)) + 4.0 * 1024 * 1024;
  }
  if (use_helper) w->slots[kSpContaminationBytes] = 0;
  w->pid = pid;
  w->report_fd = report[0];
  report[0] = -1;
  {
    std::lock_guard<std::mutex> lock(CommandsMu());
    auto& commands = Commands();
    commands.erase(command_pid);  // a former entry under this pid is a command already reaped
    auto entry = commands.extract(w->command_pid);
    entry.key() = command_pid;
    w->command_pid = command_pid;
    // No allocation: the node exists, and the table held as many entries before (no rehash).
    commands.insert(std::move(entry));
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t thread;
  int terr = FailWaiterThreadForTest() ? EAGAIN : pthread_create(&thread, &attr, WaitMain, w);
  pthread_attr_destroy(&attr);
  if (terr != 0) {
    // Nobody would reap it: end the command now and reap it here (the helper reaps the command, reports and exits;
    // killing the helper instead would leave the command to init), and say why.
    Unregister(w);
    kill(command_pid, SIGKILL);
    if (w->report_fd >= 0) {
      ExecReport ignored;
      ReadEndReport(w->report_fd, nullptr, &ignored);
      close(w->report_fd);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    discard();
    close_all();
    res.error = terr;
    res.stage = kStageThread;
    return res;
  }
  res.pid = command_pid;
  return res;
}

}  // namespace
}  // namespace taskmeter
