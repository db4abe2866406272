// The sampler: one background thread per process, shared by every open window of every addon instance (main thread
// and worker threads). It is parked on a condition variable while no window is open, never touches JS or libuv (so it
// cannot keep the event loop alive), and is stopped at the last environment teardown and at process exit.
#pragma once
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace taskmeter {

// Window slots shared with src/binding.ts (WINDOW_* constants).
enum WindowSlot : int {
  kWinMaxRssBytes = 0,  // largest RSS the sampler saw in the window; NaN before the first sample
  kWinSamples,          // number of RSS samples taken in the window
  kWinIntervalMs,       // the window's requested interval
  kWindowSlots
};

class Sampler {
 public:
  // The process-wide instance. Deliberately never destroyed: the thread may still be running while static
  // destructors run at exit().
  static Sampler& Instance();

  // Every addon instance retains the sampler while its environment lives.
  void Retain();
  // At the last release the thread is stopped and joined (bounded wait: a thread stuck in a driver call is detached).
  void Release();

  // Opens a window sampled every interval_ms; owner identifies the addon instance so its windows close at teardown.
  uint32_t Open(uint32_t interval_ms, const void* owner);
  // Copies the window's stats into out[0..kWindowSlots). Returns false for an unknown id.
  bool Read(uint32_t id, double* out);
  bool Close(uint32_t id, double* out);
  void CloseOwnedBy(const void* owner);
  size_t OpenCount();
  bool ThreadRunning();

  // Stops the thread, waiting at most `wait`; used at exit and at the last release.
  void Stop(std::chrono::milliseconds wait);

 private:
  Sampler() = default;
  struct Window {
    const void* owner;
    double interval_ms;
    double next_due_ms;
    double max_rss_bytes;
    uint32_t samples;
  };
  void EnsureThreadLocked();
  void Run(uint64_t gen);
  static void FillStats(const Window& w, double* out);

  std::mutex mu_;
  std::condition_variable cv_;       // wakes the thread: windows changed or stop requested
  std::condition_variable exited_cv_;
  std::unordered_map<uint32_t, Window> windows_;
  uint32_t next_id_ = 1;
  int refs_ = 0;
  // Each started thread gets a generation; it runs while active_gen_ is its own. A thread detached while stuck in a
  // driver call therefore ends by itself when the call returns, even if a newer thread has started meanwhile.
  uint64_t last_gen_ = 0;
  uint64_t active_gen_ = 0;  // 0: no thread should run
  uint64_t exited_gen_ = 0;  // newest generation that has left Run()
  bool atexit_registered_ = false;
  // When the parked thread will next wake by itself (ms, monotonic; INFINITY while parked). Open() wakes it only if
  // the new window is due earlier, so a short measureSync() costs no futex wake in the common case.
  double thread_wake_ms_ = INFINITY;
  std::thread thread_;
};

}  // namespace taskmeter
