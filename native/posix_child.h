// Shared by every fork of this process (the spawner and the CUDA-order helper): what a child does first, between
// fork and exec. Async-signal-safe calls only.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

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

// A pipe whose two ends are close-on-exec: pipe2(O_CLOEXEC) where it exists (Linux); pipe + FD_CLOEXEC elsewhere
// (macOS has no pipe2). The non-atomic variant can only race with another thread's fork+exec of its own, which would
// inherit two fds. Returns 0 or -1 (errno set).
inline int CloexecPipe(int fds[2]) {
#ifdef __linux__
  return pipe2(fds, O_CLOEXEC);
#else
  if (pipe(fds) != 0) return -1;
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  return 0;
#endif
}

}  // namespace taskmeter
