/* The fake NVML (test/fixtures/fake-nvml/fake_nvml.c) built as nvml.dll with mingw-w64 for `npm run test:ports`,
 * unchanged: Windows lacks <sys/syscall.h> (win-include/ supplies one), stat's st_mtim, O_CLOEXEC and pwrite
 * (supplied here). */
#include <sys/stat.h>
#include <windows.h>
struct stat_compat {
  long long st_size;
  struct { long long tv_sec; long tv_nsec; } st_mtim;
};
static int stat_compat(const char* path, struct stat_compat* out) {
  struct _stat64 b;
  if (_stat64(path, &b) != 0) return -1;
  out->st_size = b.st_size;
  out->st_mtim.tv_sec = b.st_mtime;
  out->st_mtim.tv_nsec = 0;
  return 0;
}
#define stat stat_compat
/* FAKE_NVML_LIST_COUNT's file: Windows has no exec to close it on, and no pwrite */
#include <fcntl.h>
#include <io.h>
#ifndef O_CLOEXEC
#define O_CLOEXEC O_BINARY /* no close-on-exec to ask for; binary keeps the file as written */
#endif
static int pwrite_compat(int fd, const void* buf, size_t n, long long off) {
  if (_lseeki64(fd, off, SEEK_SET) < 0) return -1;
  return _write(fd, buf, (unsigned)n);
}
#define pwrite pwrite_compat
#include "../fixtures/fake-nvml/fake_nvml.c"
