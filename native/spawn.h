// Starting a command ourselves (fork + exec) so that its end is reaped with wait4(): the exit status and the exact
// CPU time of the command and every descendant it reaped, which neither sampling /proc nor libuv's waitpid gives.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "layout.h"

namespace taskmeter {

// Result slots shared with src/binding.ts (SPAWN_*).
#define TASKMETER_SPAWN_SLOTS(X) \
  X(SpExited)   /* 1 once reaped */ \
  X(SpExitCode) /* NaN if killed by a signal */ \
  X(SpSignal)   /* signal number, or NaN */ \
  X(SpUserMs)   /* ru_utime of the child and its reaped descendants */ \
  X(SpSystemMs) \
  X(SpMaxRssBytes) /* ru_maxrss: the largest single-process peak among them (see kSpContaminationBytes) */ \
  X(SpStartMonoMs) /* just before fork */ \
  X(SpEndMonoMs)   /* when wait4 returned */ \
  X(SpEndEpochMs) \
  /* our RSS around the fork when the command was forked from us directly (no exec helper): a ru_maxrss at or */ \
  /* below it may be our copy's, not theirs; 0 with the exec helper */ \
  X(SpContaminationBytes) \
  X(SpTreePeakBytes) /* Windows: the job's PeakJobMemoryUsed (whole tree at once, commit charge); NaN elsewhere */ \
  /* the rest of the reaped rusage (POSIX; NaN where unknown), and rchar/wchar (Linux, helper/proc_io.h) */ \
  X(SpMinorFaults) \
  X(SpMajorFaults) \
  X(SpVoluntaryCtxSwitches) \
  X(SpInvoluntaryCtxSwitches) \
  X(SpFsInputBlocks) /* 512-byte blocks */ \
  X(SpFsOutputBlocks) \
  X(SpIoReadBytes) \
  X(SpIoWriteBytes) \
  /* end */
TASKMETER_ENUM(SpawnSlot, TASKMETER_SPAWN_SLOTS, kSpawnSlots)

struct SpawnOptions {
  std::string file;               // resolved path of the program
  std::vector<std::string> args;  // argv, including argv[0]
  std::vector<std::string> env;   // "KEY=value"
  std::string cwd;                // empty: ours
  int stdio[3] = {-1, -1, -1};    // -1 inherit, -2 /dev/null, -3 a new pipe, >= 0 that descriptor
};

// Where a failed start failed (SpawnResult::stage), so that the error can name what was missing.
#define TASKMETER_SPAWN_STAGES(X) \
  X(StageSetup)  /* pipes, /dev/null, fork (Windows: the job object, stdio handles) */ \
  X(StageChdir)  /* the cwd */ \
  X(StageExec)   /* exec of the command (ENOENT, EACCES, ENOEXEC…; Windows: CreateProcessW) */ \
  X(StageThread) /* the waiter thread could not be created: the command was killed and reaped */ \
  /* end */
TASKMETER_ENUM(SpawnStage, TASKMETER_SPAWN_STAGES, kSpawnStages)

struct SpawnResult {
  int pid = -1;
  int error = 0;  // errno of the failed step
  int stage = kStageSetup;
  int parent_fds[3] = {-1, -1, -1};  // our ends of the pipes asked for
};

// Called exactly once per successful Spawn, on the waiter thread, when the command has ended and been reaped;
// `slots` holds kSpawnSlots values. Never called when Spawn fails.
using SpawnDoneFn = void (*)(void* context, const double* slots);

// Windows only, where stdio -3 (a pipe) is read by the spawner itself (no handle of ours can become a JavaScript
// stream there; POSIX hands the pipe's descriptor to JavaScript in SpawnResult::parent_fds instead): called once on
// the waiter thread, just before `done`, with what the command wrote to its stdout and stderr, each at most
// kSpawnPipeLimitBytes; `overflow` when a stream went past that (the rest was read and dropped, so the command never
// blocks on a full pipe). Implemented by the addon (addon.cc), which hands both to the exit callback.
constexpr size_t kSpawnPipeLimitBytes = size_t{256} << 20;
void SpawnOutput(void* context, std::string* out, std::string* err, bool overflow);

// Starts the command and a waiter thread. Thread-safe. No C++ exception escapes.
SpawnResult Spawn(const SpawnOptions& options, SpawnDoneFn done, void* context);

#ifndef _WIN32
// Sends sig to a command Spawn started, while it has not ended: once it has (even before it is reaped), its pid may
// soon name another process, and nothing is sent. 0 when sent, ESRCH when the command has ended (or is not one of
// ours), else kill's errno.
int SignalCommand(uint32_t pid, int sig);
// Sends `signo` to `root` and every descendant it has now, frozen first (SIGSTOP) so that none can fork a process the
// listing misses, then resumed (SIGCONT) so that the signal is acted on. Returns how many processes were signalled,
// or -errno (-ESRCH: the root is gone). POSIX only: on Windows a command's processes are in its job object.
int KillTree(int root, int signo);
#endif

}  // namespace taskmeter
