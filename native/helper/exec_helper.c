/*
 * taskmeter-exec REPORT_FD FILE ARGV0 [ARGS...]
 *
 * A small program between taskmeter (a Node process of 40+ MB) and the command it measures, for one reason: Linux
 * carries a process's pre-exec memory peak across exec into the ru_maxrss that its parent reaps, so a command
 * forked straight from Node reports at least Node's size. Forked from this helper, it reports what it reports
 * under GNU time (which is also a small program that forks). The addon has set up everything else before
 * exec'ing us: stdio, cwd, environment, default signal dispositions. We fork, exec FILE, tell the addon the pid
 * (or the errno of a failed exec), wait for the command with wait4() and write its status and rusage to REPORT_FD.
 *
 * The command stays in taskmeter's process group, as under GNU time. Signals that reach this helper can only be
 * ones sent to the whole group (nobody else knows its pid), which the command receives itself: they are ignored,
 * so that a Ctrl-C never leaves the command unreaped. Job-control stops keep their default (stop with the rest).
 * If the helper is killed anyway (SIGKILL), the command dies with it (Linux: PR_SET_PDEATHSIG), not orphaned.
 *
 * When the command ends, the helper tells taskmeter before reaping it (kExecEnding, on the socket REPORT_FD) and
 * waits for a byte back: until then the command's pid is its own (a zombie), so a signal taskmeter forwards never
 * reaches a process that took the pid after it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "exec_protocol.h"
#include "proc_io.h"

static void put(int fd, const struct ExecReport* r) {
  const char* p = (const char*)r;
  size_t left = sizeof(*r);
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return; /* taskmeter is gone: nobody to tell */
    p += n;
    left -= (size_t)n;
  }
}

/* A report without usage: started, or failed. */
static void put_short(int fd, int32_t kind, int32_t err, pid_t pid) {
  struct ExecReport r;
  memset(&r, 0, sizeof(r));
  r.kind = kind;
  r.err = err;
  r.pid = pid;
  put(fd, &r);
}

static const int kIgnored[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE};

int main(int argc, char** argv) {
  if (argc < 4) return 125;
  char* end = NULL;
  long report_fd = strtol(argv[1], &end, 10);
  if (end == argv[1] || *end != '\0' || report_fd < 3) return 125;
  int fd = (int)report_fd;
  fcntl(fd, F_SETFD, FD_CLOEXEC);

  int err_pipe[2];
#ifdef __APPLE__
  int piped = pipe(err_pipe);
  if (piped == 0) {
    fcntl(err_pipe[0], F_SETFD, FD_CLOEXEC);
    fcntl(err_pipe[1], F_SETFD, FD_CLOEXEC);
  }
#else
  int piped = pipe2(err_pipe, O_CLOEXEC);
#endif
  if (piped != 0) {
    put_short(fd, kExecFailed, errno, 0);
    return 125;
  }
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t self = getpid();
  pid_t pid = fork();
  if (pid == 0) {
#ifdef __linux__
    /* Killed with the helper, if it is: a command must not run on orphaned and unmeasured. Checked once set: the
       helper may have died before (its parent is then someone else). Cleared by the exec of a set-user-ID program. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
      int e = errno;
      ssize_t ignored = write(err_pipe[1], &e, sizeof(e));
      (void)ignored;
      _exit(127);
    }
    if (getppid() != self) _exit(127);
#else
    (void)self;
#endif
    /* Dispositions are the defaults the addon left; only the mask needs restoring. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[2], argv + 3);
    int e = errno;
    ssize_t ignored = write(err_pipe[1], &e, sizeof(e));
    (void)ignored;
    _exit(127);
  }
  int fork_errno = errno;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  for (size_t i = 0; i < sizeof(kIgnored) / sizeof(kIgnored[0]); i++) sigaction(kIgnored[i], &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
  close(err_pipe[1]);
  if (pid < 0) {
    put_short(fd, kExecFailed, fork_errno, 0);
    return 125;
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  if (n == (ssize_t)sizeof(child_errno)) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    put_short(fd, kExecFailed, child_errno, pid);
    return 0;
  }
  put_short(fd, kExecStarted, 0, pid);
  /* Its end, without reaping it yet: taskmeter stops signalling it first (see above). */
  siginfo_t si;
  int wr;
  do {
    wr = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
  } while (wr < 0 && errno == EINTR);
  if (wr == 0) {
    put_short(fd, kExecEnding, 0, pid);
    char ack;
    ssize_t a;
    do {
      a = read(fd, &ack, 1);
    } while (a < 0 && errno == EINTR);
  }
  int64_t io_read = -1, io_write = -1;
  taskmeter_exited_io(pid, &io_read, &io_write); /* still a zombie: before wait4 reaps it */
  pid_t w;
  do {
    w = wait4(pid, &status, 0, &ru);
  } while (w < 0 && errno == EINTR);
  struct ExecReport done;
  memset(&done, 0, sizeof(done));
  done.kind = kExecExited;
  done.err = w < 0 ? errno : 0;
  done.pid = pid;
  done.status = status;
  done.utime_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
  done.stime_us = (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
#ifdef __APPLE__
  done.maxrss_bytes = (int64_t)ru.ru_maxrss;
#else
  done.maxrss_bytes = (int64_t)ru.ru_maxrss * 1024;
#endif
  done.minflt = ru.ru_minflt;
  done.majflt = ru.ru_majflt;
  done.nvcsw = ru.ru_nvcsw;
  done.nivcsw = ru.ru_nivcsw;
  done.inblock = ru.ru_inblock;
  done.oublock = ru.ru_oublock;
  done.io_read_bytes = io_read;
  done.io_write_bytes = io_write;
  put(fd, &done);
  return 0;
}
