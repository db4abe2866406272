#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <unordered_map>

#include "proc/proc.h"

namespace taskmeter {
namespace {

struct Child {
  std::mutex mu;
  double slots[kSpawnSlots];
};

std::mutex g_mu;
std::unordered_map<uint32_t, std::shared_ptr<Child>>* g_children = new std::unordered_map<uint32_t, std::shared_ptr<Child>>();
uint32_t g_next_id = 1;

inline double TvMs(const struct timeval& tv) { return tv.tv_sec * 1e3 + tv.tv_usec / 1e3; }

// pipe2(O_CLOEXEC) where it exists (Linux); pipe + FD_CLOEXEC elsewhere (macOS). Spawn holds no lock here, so the
// non-atomic variant can only race with another thread's fork+exec of its own, which would inherit two fds.
int MakePipe(int fds[2]) {
#ifdef __linux__
  return pipe2(fds, O_CLOEXEC);
#else
  if (pipe(fds) != 0) return -1;
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  return 0;
#endif
}

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void ChildExec(const SpawnOptions& o, const char* const* argv, const char* const* envp, const int fds[3],
                            int err_fd) {
  // Start with default signal handling and no blocked signals (Node ignores SIGPIPE, for one; ignored signals
  // would stay ignored across exec).
  struct sigaction sa = {};
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &sa, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // Move the wanted descriptors to 0, 1, 2 (via high numbers first, so one cannot clobber another).
  int moved[3];
  for (int i = 0; i < 3; i++) {
    moved[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 10) : -1;
    if (fds[i] >= 0 && moved[i] < 0) goto fail;
  }
  for (int i = 0; i < 3; i++) {
    if (moved[i] >= 0 && dup2(moved[i], i) < 0) goto fail;
  }
  if (!o.cwd.empty() && chdir(o.cwd.c_str()) != 0) goto fail;
  execve(o.file.c_str(), const_cast<char* const*>(argv), const_cast<char* const*>(envp));
fail:
  int e = errno;
  ssize_t ignored = write(err_fd, &e, sizeof(e));
  (void)ignored;
  _exit(127);
}

void Wait(int pid, std::shared_ptr<Child> child) {
  int status = 0;
  struct rusage ru = {};
  pid_t r;
  do {
    r = wait4(pid, &status, 0, &ru);
  } while (r < 0 && errno == EINTR);
  double end_mono = proc::MonotonicMs();
  double end_epoch = proc::EpochMs();
  std::lock_guard<std::mutex> lock(child->mu);
  double* s = child->slots;
  s[kSpExited] = 1;
  s[kSpEndMonoMs] = end_mono;
  s[kSpEndEpochMs] = end_epoch;
  if (r < 0) {  // someone else reaped it (a waitpid(-1) elsewhere): status and rusage are lost
    s[kSpExitCode] = NAN;
    s[kSpSignal] = NAN;
    s[kSpUserMs] = s[kSpSystemMs] = s[kSpMaxRssBytes] = NAN;
    return;
  }
  s[kSpExitCode] = WIFEXITED(status) ? WEXITSTATUS(status) : NAN;
  s[kSpSignal] = WIFSIGNALED(status) ? WTERMSIG(status) : NAN;
  s[kSpUserMs] = TvMs(ru.ru_utime);
  s[kSpSystemMs] = TvMs(ru.ru_stime);
  s[kSpMaxRssBytes] = static_cast<double>(ru.ru_maxrss) * 1024.0;
}

}  // namespace

SpawnResult Spawn(const SpawnOptions& o) {
  SpawnResult res;
  std::vector<const char*> argv, envp;
  for (const auto& a : o.args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  for (const auto& e : o.env) envp.push_back(e.c_str());
  envp.push_back(nullptr);

  int child_fds[3] = {-1, -1, -1};
  int to_close[3] = {-1, -1, -1};
  auto cleanup = [&]() {
    for (int i = 0; i < 3; i++) {
      if (to_close[i] >= 0) close(to_close[i]);
      if (res.parent_fds[i] >= 0) close(res.parent_fds[i]);
      res.parent_fds[i] = -1;
    }
  };
  for (int i = 0; i < 3; i++) {
    int mode = o.stdio[i];
    if (mode >= 0) {
      child_fds[i] = mode;
    } else if (mode == -2) {
      int fd = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
      if (fd < 0) {
        res.error = errno;
        cleanup();
        return res;
      }
      child_fds[i] = to_close[i] = fd;
    } else if (mode == -3) {
      int p[2];
      if (MakePipe(p) != 0) {
        res.error = errno;
        cleanup();
        return res;
      }
      // stdin: the child reads p[0] and we write p[1]; stdout/stderr the other way round.
      child_fds[i] = to_close[i] = i == 0 ? p[0] : p[1];
      res.parent_fds[i] = i == 0 ? p[1] : p[0];
    }
  }
  int err_pipe[2];
  if (MakePipe(err_pipe) != 0) {
    res.error = errno;
    cleanup();
    return res;
  }
  auto child = std::make_shared<Child>();
  for (double& s : child->slots) s = NAN;
  child->slots[kSpExited] = 0;
  int64_t rss_before = proc::ReadSelfRssBytes();
  child->slots[kSpStartMonoMs] = proc::MonotonicMs();
  pid_t pid = fork();
  if (pid == 0) {
    close(err_pipe[0]);
    ChildExec(o, argv.data(), envp.data(), child_fds, err_pipe[1]);
  }
  int fork_errno = errno;
  close(err_pipe[1]);
  for (int i = 0; i < 3; i++) {
    if (to_close[i] >= 0) close(to_close[i]);
    to_close[i] = -1;
  }
  if (pid < 0) {
    close(err_pipe[0]);
    res.error = fork_errno;
    cleanup();
    return res;
  }
  // The exec result: EOF when exec succeeded (the pipe is close-on-exec), else the child's errno.
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    res.error = child_errno;
    cleanup();
    return res;
  }
  int64_t rss_after = proc::ReadSelfRssBytes();
  // The forked copy's pages are a subset of ours at the fork; a margin covers what other threads mapped meanwhile.
  child->slots[kSpContaminationBytes] =
      static_cast<double>(std::max(rss_before, rss_after)) + 4.0 * 1024 * 1024;
  res.pid = pid;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    res.id = g_next_id++;
    (*g_children)[res.id] = child;
  }
  std::thread(Wait, pid, child).detach();  // it holds only the shared record
  return res;
}

bool SpawnPoll(uint32_t id, double* out, bool release_if_done) {
  std::shared_ptr<Child> child;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_children->find(id);
    if (it == g_children->end()) return false;
    child = it->second;
  }
  bool done;
  {
    std::lock_guard<std::mutex> lock(child->mu);
    for (int i = 0; i < kSpawnSlots; i++) out[i] = child->slots[i];
    done = child->slots[kSpExited] == 1;
  }
  if (done && release_if_done) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_children->erase(id);
  }
  return true;
}

}  // namespace taskmeter
