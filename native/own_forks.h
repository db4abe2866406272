// This process's own forks between fork and exec: the spawner's copy of Node (spawn_posix.cc) for the few
// microseconds before it execs the exec helper or the command. Such a copy maps all of Node's memory, which is
// Node's, not the copy's: a tree that holds this process (trackProcess(process.pid), or an ancestor of it) leaves
// the copy's memory out of its RSS sum (its PSS, its share of Node's pages, counts: see tree.h). Identified by its
// pid once registered (Add), and before that, from just before fork() until Add, as any child of this process that
// has not exec'd while a fork is in progress (BeginFork/EndFork): the copy may run, and be sampled, before fork()
// has returned its pid. Lock-free: the spawner registers and unregisters, the tree sampler looks up.
#pragma once
#include <atomic>
#include <cstdint>

namespace taskmeter {

class OwnForks {
 public:
  static constexpr int kSlots = 64;  // concurrent spawns beyond this are simply not left out
  // Around fork(): BeginFork() just before it, EndFork() once the child's pid is registered (or the fork failed).
  static void BeginFork() { pending().fetch_add(1, std::memory_order_seq_cst); }
  static void EndFork() { pending().fetch_sub(1, std::memory_order_seq_cst); }
  // Returns the slot to Remove later, or -1 when every slot is taken.
  static int Add(uint32_t pid) {
    for (int i = 0; i < kSlots; i++) {
      uint32_t expected = 0;
      if (slots()[i].compare_exchange_strong(expected, pid, std::memory_order_seq_cst)) return i;
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
  // A process read as forked and not exec'd, whose parent is ppid: one of our copies? `self` is this process's pid.
  // The pending count is read first: a copy whose fork has ended was registered before EndFork.
  static bool IsOwn(uint32_t pid, uint32_t ppid, uint32_t self) {
    if (ppid == self && pending().load(std::memory_order_seq_cst) > 0) return true;
    return Contains(pid);
  }

 private:
  static std::atomic<uint32_t>* slots() {
    static std::atomic<uint32_t> s[kSlots] = {};
    return s;
  }
  static std::atomic<int>& pending() {
    static std::atomic<int> n{0};
    return n;
  }
};

}  // namespace taskmeter
