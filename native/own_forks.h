// The pids of this process's own forks between fork and exec: the spawner's copy of Node (spawn_posix.cc) for the
// few microseconds before it execs the exec helper or the command. Such a copy maps all of Node's memory, which is
// Node's, not the copy's: a tree that holds this process (trackProcess(process.pid), or an ancestor of it) leaves
// the copy's memory out — by its pid, for as long as it is registered, never by a flag that real workers (forked
// without exec) carry too. Lock-free: the spawner registers and unregisters, the tree sampler looks up.
#pragma once
#include <atomic>
#include <cstdint>

namespace taskmeter {

class OwnForks {
 public:
  static constexpr int kSlots = 64;  // concurrent spawns beyond this are simply not left out
  // Returns the slot to Remove later, or -1 when every slot is taken.
  static int Add(uint32_t pid) {
    for (int i = 0; i < kSlots; i++) {
      uint32_t expected = 0;
      if (slots()[i].compare_exchange_strong(expected, pid, std::memory_order_acq_rel)) return i;
    }
    return -1;
  }
  static void Remove(int slot) {
    if (slot >= 0 && slot < kSlots) slots()[slot].store(0, std::memory_order_release);
  }
  static bool Contains(uint32_t pid) {
    if (pid == 0) return false;
    for (int i = 0; i < kSlots; i++)
      if (slots()[i].load(std::memory_order_acquire) == pid) return true;
    return false;
  }

 private:
  static std::atomic<uint32_t>* slots() {
    static std::atomic<uint32_t> s[kSlots] = {};
    return s;
  }
};

}  // namespace taskmeter
