// The floor for snapshot(): what the same syscalls cost from C with no JavaScript in between.
// Prints the median ns per iteration of getrusage + pread(/proc/self/statm) + clock_gettime over `rounds` rounds.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}
static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}
int main(int argc, char** argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 100000, rounds = argc > 2 ? atoi(argv[2]) : 7;
  int fd = open("/proc/self/statm", O_RDONLY);
  char buf[128];
  volatile double sink = 0;
  double* per = malloc(sizeof(double) * rounds);
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    for (int i = 0; i < iters; i++) {
      struct rusage ru;
      getrusage(RUSAGE_SELF, &ru);
      ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
      buf[n > 0 ? n : 0] = 0;
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      sink += ru.ru_utime.tv_usec + strtoul(buf, NULL, 10) + ts.tv_nsec;
    }
    per[r] = (now_ns() - t0) / iters;
  }
  qsort(per, rounds, sizeof(double), cmp);
  printf("%.1f\n", per[rounds / 2]);
  return sink < 0;
}
