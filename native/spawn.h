// Starting a command ourselves (fork + exec) so that its end is reaped with wait4(): the exit status and the exact
// CPU time of the command and every descendant it reaped, which neither sampling /proc nor libuv's waitpid gives.
#pragma once
#include <cstdint>
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
  kSpContaminationBytes,  // our RSS around the fork when the command was forked from us directly (no helper): a
                          // ru_maxrss at or below it may be our copy's, not theirs; 0 with the exec helper
  kSpawnSlots
};

struct SpawnOptions {
  std::string file;               // resolved path of the program
  std::vector<std::string> args;  // argv, including argv[0]
  std::vector<std::string> env;   // "KEY=value"
  std::string cwd;                // empty: ours
  int stdio[3] = {-1, -1, -1};    // -1 inherit, -2 /dev/null, -3 a new pipe, >= 0 that descriptor
};

// Where a failed start failed (SpawnResult::stage), so that the error can name what was missing.
enum SpawnStage : int {
  kStageSetup = 0,  // pipes, /dev/null, fork
  kStageChdir,      // the cwd
  kStageExec,       // exec of the command (ENOENT, EACCES, ENOEXEC…)
  kStageThread,     // the waiter thread could not be created: the child was killed and reaped
};

struct SpawnResult {
  int pid = -1;
  int error = 0;      // errno of the failed step
  int stage = kStageSetup;
  int parent_fds[3] = {-1, -1, -1};  // our ends of the pipes asked for
};

// Called exactly once per successful Spawn, on the waiter thread, when the command has ended and been reaped;
// `slots` holds kSpawnSlots values. Never called when Spawn fails.
using SpawnDoneFn = void (*)(void* context, const double* slots);

// Starts the command and a waiter thread. Thread-safe. No C++ exception escapes.
SpawnResult Spawn(const SpawnOptions& options, SpawnDoneFn done, void* context);

}  // namespace taskmeter
