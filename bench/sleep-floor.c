// The floor for the RSS sampler's own cost: a thread that only wakes every interval and preads /proc/self/statm,
// which is all the sampler does per sample. Prints that thread's CPU per second of wall time (ms/s).
//   sleep-floor <intervalMs> <durationMs>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int interval_ms = 10, duration_ms = 3000;

static double clock_ms(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void* run(void* arg) {
  (void)arg;
  int fd = open("/proc/self/statm", O_RDONLY);
  char buf[128];
  double t0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (;;) {
    next.tv_nsec += interval_ms * 1000000L;
    while (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    if (pread(fd, buf, sizeof buf - 1, 0) < 0) break;
    if (clock_ms(CLOCK_MONOTONIC) - t0 >= duration_ms) break;
  }
  double wall = clock_ms(CLOCK_MONOTONIC) - t0, cpu = clock_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
  printf("%.4f\n", cpu / wall * 1000);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc > 1) interval_ms = atoi(argv[1]);
  if (argc > 2) duration_ms = atoi(argv[2]);
  pthread_t t;
  pthread_create(&t, NULL, run, NULL);
  pthread_join(t, NULL);
  return 0;
}
