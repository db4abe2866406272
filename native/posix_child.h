// Shared by every fork of this process (the spawner and the CUDA-order helper): what a child does first, between
// fork and exec. Async-signal-safe calls only.
#pragma once
#include <signal.h>

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

}  // namespace taskmeter
