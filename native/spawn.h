// Starting a command ourselves (fork + exec) so that its end is reaped with wait4(): the exit status and the exact
// CPU time of the command and every descendant it reaped, which neither sampling /proc nor libuv's waitpid gives.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "layout.h"

namespace taskmeter {

// Result slots shared with src/binding.ts (SPAWN_*).
#define TASKMETER_SPAWN_SLOTS(X) \
  X(SpExited)  /* 1 once reaped */ \
  X(SpExitCode)  /* NaN if killed by a signal */ \
  X(SpSignal)  /* signal number, or NaN */ \
  X(SpUserMs)  /* ru_utime of the child and its reaped descendants */ \
  X(SpSystemMs) \
  X(SpMaxRssBytes)  /* ru_maxrss: the largest single-process peak among them (see kSpContaminationBytes) */ \
  X(SpStartMonoMs)  /* just before fork */ \
  X(SpEndMonoMs)  /* when wait4 returned */ \
  X(SpEndEpochMs) \
  X(SpContaminationBytes)  /* our RSS around the fork: a ru_maxrss at or below it may be our copy's, not theirs */ \
  X(SpTreePeakBytes)  /* Windows: the job's PeakJobMemoryUsed (whole tree at once, commit charge); NaN elsewhere */ \
  /* end */
TASKMETER_ENUM(SpawnSlot, TASKMETER_SPAWN_SLOTS, kSpawnSlots)

struct SpawnOptions {
  std::string file;               // resolved path of the program
  std::vector<std::string> args;  // argv, including argv[0]
  std::vector<std::string> env;   // "KEY=value"
  std::string cwd;                // empty: ours
  int stdio[3] = {-1, -1, -1};    // -1 inherit, -2 /dev/null, -3 a new pipe, >= 0 that descriptor
};

struct SpawnResult {
  int pid = -1;
  int error = 0;      // errno of a failed fork or exec
  int parent_fds[3] = {-1, -1, -1};  // our ends of the pipes asked for
  uint32_t id = 0;
};

// Spawns and starts a waiter thread. Thread-safe.
SpawnResult Spawn(const SpawnOptions& options);
// Copies the result slots; false for an unknown id. Once read after the exit, the record is dropped.
bool SpawnPoll(uint32_t id, double* out, bool release_if_done);

}  // namespace taskmeter
