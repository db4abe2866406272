/* What the exec helper (taskmeter-exec) tells the addon over its report pipe: fixed-size records, C and C++. */
#ifndef TASKMETER_EXEC_PROTOCOL_H_
#define TASKMETER_EXEC_PROTOCOL_H_
#include <stdint.h>

enum {
  kExecStarted = 1, /* the command was exec'd: pid */
  kExecFailed = 2,  /* its exec failed: err (errno); the helper exits next */
  kExecExited = 3,  /* it ended: status (wait status) and its rusage from wait4, its I/O bytes */
  kExecEnding = 4   /* it has ended and is not reaped yet (pid): the helper reaps it once taskmeter answers a byte */
};

struct ExecReport {
  int32_t kind;
  int32_t err;
  int32_t pid;
  int32_t status;
  int64_t utime_us;
  int64_t stime_us;
  int64_t maxrss_bytes; /* ru_maxrss in bytes (Linux counts KiB, macOS bytes) */
  /* the rest of wait4's rusage: the command and every descendant it reaped */
  int64_t minflt;
  int64_t majflt;
  int64_t nvcsw;
  int64_t nivcsw;
  int64_t inblock; /* 512-byte blocks */
  int64_t oublock;
  /* rchar and wchar of /proc/<pid>/io, read while the command was a zombie (see proc_io.h); -1 where unread */
  int64_t io_read_bytes;
  int64_t io_write_bytes;
};

#endif
