// Windows: measureCommand() is not implemented yet (it needs CreateProcess with a job object to collect the CPU of
// the whole tree); Spawn reports ENOSYS and JavaScript turns that into a clear error. trackProcess() works.
#include <cerrno>

#include "spawn.h"

namespace taskmeter {

SpawnResult Spawn(const SpawnOptions&, SpawnDoneFn, void*) {
  SpawnResult r;
  r.error = ENOSYS;
  return r;
}

}  // namespace taskmeter
