// Starting a command ourselves (fork + exec) so that its end is reaped with wait4(): the exit status and the exact
// CPU time of the command and every descendant it reaped, which neither sampling /proc nor libuv's waitpid gives.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace taskmeter {

// Result slots shared with src/binding.ts (SPAWN_*).
enum SpawnSlot : int {
  kSpExited = 0,       // 1 once reaped
  kSpExitCode,         // NaN if killed by a signal
  kSpSignal,           // signal number, or NaN
  kSpUserMs,           // ru_utime of the child and its reaped descendants
  kSpSystemMs,
  kSpMaxRssBytes,      // ru_maxrss: the largest single-process peak among them (see kSpContaminationBytes)
  kSpStartMonoMs,      // just before fork
  kSpEndMonoMs,        // when wait4 returned
  kSpEndEpochMs,
  kSpContaminationBytes,  // our RSS around the fork: a ru_maxrss at or below it may be our copy's, not theirs
  kSpTreePeakBytes,    // Windows: the job's PeakJobMemoryUsed (whole tree at once, commit charge); NaN elsewhere
  kSpawnSlots
};

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
