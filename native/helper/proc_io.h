/*
 * /proc/<pid>/io (Linux), read by the exec helper (a command's, while it is a zombie), the addon's waiter when there
 * is no helper, and the addon for its own process at a window's edges. C and C++.
 *
 * Which counters: rchar and wchar, the bytes the process passed to read()- and write()-like calls (files, pipes,
 * sockets, terminals; page-cache hits included). Not read_bytes and write_bytes: those are the storage layer's, and
 * getrusage already gives them as ru_inblock and ru_oublock (the same counters in 512-byte units), which taskmeter
 * reports as fsInputBlocks and fsOutputBlocks. For a process that has ended but not been reaped, the file includes
 * every descendant it reaped (the kernel adds a reaped child's counters to its parent's, as for rusage), and not
 * the descendants it left running.
 */
#ifndef TASKMETER_PROC_IO_H_
#define TASKMETER_PROC_IO_H_
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The value after "<key>: " at the start of a line of buf[0..n), or -1. */
static inline int64_t taskmeter_proc_io_field(const char* buf, size_t n, const char* key) {
  size_t klen = strlen(key);
  size_t i = 0;
  while (i + klen + 1 < n) {
    if ((i == 0 || buf[i - 1] == '\n') && memcmp(buf + i, key, klen) == 0 && buf[i + klen] == ':') {
      size_t j = i + klen + 1;
      while (j < n && buf[j] == ' ') j++;
      if (j >= n || buf[j] < '0' || buf[j] > '9') return -1;
      int64_t v = 0;
      while (j < n && buf[j] >= '0' && buf[j] <= '9') {
        if (v > (INT64_MAX - 9) / 10) return -1; /* not a counter the kernel writes */
        v = v * 10 + (buf[j] - '0');
        j++;
      }
      return v;
    }
    i++;
  }
  return -1;
}

/* Parses the file's text: rchar and wchar, each -1 when missing. 0 when both were found. */
static inline int taskmeter_parse_proc_io(const char* buf, size_t n, int64_t* rchar, int64_t* wchar) {
  *rchar = taskmeter_proc_io_field(buf, n, "rchar");
  *wchar = taskmeter_proc_io_field(buf, n, "wchar");
  return *rchar >= 0 && *wchar >= 0 ? 0 : -1;
}

/* Reads an open /proc/<pid>/io from its start (pread: the descriptor can be kept open and read again). */
static inline int taskmeter_read_proc_io(int fd, int64_t* rchar, int64_t* wchar) {
  char buf[512];
  ssize_t got;
  *rchar = *wchar = -1;
  do {
    got = pread(fd, buf, sizeof(buf), 0);
  } while (got < 0 && errno == EINTR);
  if (got <= 0) return -1;
  return taskmeter_parse_proc_io(buf, (size_t)got, rchar, wchar);
}

/*
 * For the parent of `pid`: waits until it has ended without reaping it (WNOWAIT) and reads its rchar and wchar while
 * it is a zombie, when they include every descendant it reaped. The caller reaps it next. Linux only (-1 elsewhere).
 */
static inline void taskmeter_exited_io(pid_t pid, int64_t* io_read, int64_t* io_write) {
  *io_read = *io_write = -1;
#ifdef __linux__
  siginfo_t si;
  int r;
  memset(&si, 0, sizeof(si));
  do {
    r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
  } while (r < 0 && errno == EINTR);
  if (r != 0) return;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  taskmeter_read_proc_io(fd, io_read, io_write);
  close(fd);
#else
  (void)pid;
#endif
}

#endif
