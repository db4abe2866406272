// Shared by every fork of this process (the spawner and the CUDA-order helper): what a child does first, between
// fork and exec. Async-signal-safe calls only.
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

namespace taskmeter {

// Every disposition back to its default (Node ignores SIGPIPE and SIGXFSZ, and ignored ones would stay ignored across
// exec; caught ones are reset by exec anyway, but Node's handlers must not run in the copy), then unblocks all: the
// parent blocked every signal before the fork, so no handler of Node's runs in the child before this.
inline void ChildResetSignals() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &sa, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Descriptors made close-on-exec in the same call that creates them (pipe2, SOCK_CLOEXEC) where the OS has such
// calls (Linux, glibc and musl). Elsewhere (macOS) the flag is set by a second call, and a fork in another thread
// between the two would hand the descriptor to a child that does not expect it (an unrelated command then holds
// another command's pipe open, whose reader never sees EOF): these creations and taskmeter's own forks
// (ForkForExec) take one process-wide lock, so that none falls between them. Forks that are not taskmeter's do not
// take it; Node's child_process on macOS mostly uses posix_spawn with POSIX_SPAWN_CLOEXEC_DEFAULT, which passes a
// child only the descriptors named.
#ifdef __linux__
#define TASKMETER_ATOMIC_CLOEXEC 1
#else
#define TASKMETER_ATOMIC_CLOEXEC 0
inline std::mutex& CloexecMutex() {
  static std::mutex mu;
  return mu;
}
inline void SetCloexec(const int fds[2]) {
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
}
#endif

// A pipe whose two ends are close-on-exec. Returns 0 or -1 (errno set).
inline int CloexecPipe(int fds[2]) {
#if TASKMETER_ATOMIC_CLOEXEC
  return pipe2(fds, O_CLOEXEC);
#else
  std::lock_guard<std::mutex> lock(CloexecMutex());
  if (pipe(fds) != 0) return -1;
  SetCloexec(fds);
  return 0;
#endif
}

// A Unix stream socket pair whose two ends are close-on-exec. Returns 0 or -1 (errno set).
inline int CloexecSocketPair(int fds[2]) {
#if TASKMETER_ATOMIC_CLOEXEC
  return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
#else
  std::lock_guard<std::mutex> lock(CloexecMutex());
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return -1;
  SetCloexec(fds);
  return 0;
#endif
}

// fork() for a child that execs: never between another thread's creation of a descriptor and its close-on-exec flag
// (see above). The child must not touch the lock (it is held in its copy of memory); the parent releases it.
inline pid_t ForkForExec() {
#if TASKMETER_ATOMIC_CLOEXEC
  return fork();
#else
  CloexecMutex().lock();
  pid_t pid = fork();
  if (pid != 0) {
    int saved = errno;
    CloexecMutex().unlock();
    errno = saved;
  }
  return pid;
#endif
}

}  // namespace taskmeter
