#include "sampler.h"

#include <cmath>
#include <cstdlib>

#include "proc/proc.h"

namespace taskmeter {

namespace {
void StopAtExit() {
  // Bounded: process exit must stay prompt even if the thread is stuck in a driver call.
  Sampler::Instance().Stop(std::chrono::milliseconds(500));
}
}  // namespace

Sampler& Sampler::Instance() {
  static Sampler* instance = new Sampler();  // leaked on purpose, see header
  return *instance;
}

void Sampler::Retain() {
  std::lock_guard<std::mutex> lock(mu_);
  refs_++;
}

void Sampler::Release() {
  bool last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    refs_--;
    last = refs_ <= 0;
    if (refs_ < 0) refs_ = 0;
  }
  if (last) Stop(std::chrono::milliseconds(500));
}

void Sampler::EnsureThreadLocked() {
  if (active_gen_ != 0) return;
  if (!atexit_registered_) {
    atexit_registered_ = true;
    std::atexit(StopAtExit);
  }
  uint64_t gen = ++last_gen_;
  active_gen_ = gen;
  thread_wake_ms_ = -INFINITY;  // not waiting yet: it will read the table when it takes the lock
  thread_ = std::thread([this, gen] { Run(gen); });
}

uint32_t Sampler::Open(uint32_t interval_ms, const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;
  double now = proc::MonotonicMs();
  double due = now + interval_ms;
  windows_[id] = Window{owner, static_cast<double>(interval_ms), due, NAN, 0};
  EnsureThreadLocked();
  if (due < thread_wake_ms_) cv_.notify_all();
  return id;
}

void Sampler::FillStats(const Window& w, double* out) {
  out[kWinMaxRssBytes] = w.max_rss_bytes;
  out[kWinSamples] = w.samples;
  out[kWinIntervalMs] = w.interval_ms;
}

bool Sampler::Read(uint32_t id, double* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  FillStats(it->second, out);
  return true;
}

bool Sampler::Close(uint32_t id, double* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = windows_.find(id);
  if (it == windows_.end()) return false;
  if (out) FillStats(it->second, out);
  windows_.erase(it);  // no wake-up needed: the thread parks by itself at its next tick if nothing is left
  return true;
}

void Sampler::CloseOwnedBy(const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (it->second.owner == owner) {
      it = windows_.erase(it);
    } else {
      ++it;
    }
  }
  cv_.notify_all();
}

size_t Sampler::OpenCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return windows_.size();
}

bool Sampler::ThreadRunning() {
  std::lock_guard<std::mutex> lock(mu_);
  return active_gen_ != 0;
}

void Sampler::Stop(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t gen = active_gen_;
  if (gen == 0) return;
  active_gen_ = 0;
  cv_.notify_all();
  bool done = exited_cv_.wait_for(lock, wait, [this, gen] { return exited_gen_ >= gen; });
  std::thread t = std::move(thread_);
  lock.unlock();
  if (done) {
    t.join();
  } else {
    t.detach();  // stuck in a call we cannot interrupt; it only touches this leaked object
  }
}

void Sampler::Run(uint64_t gen) {
  std::unique_lock<std::mutex> lock(mu_);
  while (active_gen_ == gen) {
    if (windows_.empty()) {
      thread_wake_ms_ = INFINITY;
      cv_.wait(lock, [this, gen] { return active_gen_ != gen || !windows_.empty(); });
      continue;
    }
    double now = proc::MonotonicMs();
    double next_due = INFINITY;
    for (auto& kv : windows_) next_due = std::min(next_due, kv.second.next_due_ms);
    if (now < next_due) {
      auto until = std::chrono::steady_clock::now() +
                   std::chrono::microseconds(static_cast<int64_t>((next_due - now) * 1000.0) + 1);
      thread_wake_ms_ = next_due;
      cv_.wait_until(lock, until);
      continue;
    }
    lock.unlock();
    int64_t rss = proc::ReadSelfRssBytes();
    lock.lock();
    now = proc::MonotonicMs();
    for (auto& kv : windows_) {
      Window& w = kv.second;
      if (w.next_due_ms > now) continue;
      if (rss >= 0) {
        double r = static_cast<double>(rss);
        if (std::isnan(w.max_rss_bytes) || r > w.max_rss_bytes) w.max_rss_bytes = r;
        w.samples++;
      }
      // Keep the cadence; if we fell behind (suspended, overloaded), skip the missed ticks instead of bursting.
      w.next_due_ms += w.interval_ms;
      if (w.next_due_ms <= now) w.next_due_ms = now + w.interval_ms;
    }
  }
  if (gen > exited_gen_) exited_gen_ = gen;
  exited_cv_.notify_all();
}

}  // namespace taskmeter
