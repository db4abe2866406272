// "The largest reading since this window opened", for every open window at once, at a cost that does not depend on
// how many windows are open. Readings are numbered by a sequence the caller owns (one counter per kind of reading);
// a window remembers the number the next reading would get when it opened and asks for the largest value since.
//
// The readings kept are a stack whose numbers increase and whose values strictly decrease: a reading that is
// not larger than a later one can never be a window's answer (any window that saw it also saw the later one), so
// adding a reading drops the ones it dominates. The first reading at or after a window's number then holds the
// largest value since it opened. Add is amortized O(1), Since is O(log n). Sizes stay small in practice (a falling
// series of readings since the oldest open window); past `cap` entries every other entry of the older half goes,
// which can only lower, never raise, what a window opened among them reads: a missed sample, never a value from
// before it opened. The front entry never goes: the caller drops what is older than its oldest open window
// (DropBefore, which also refuses later readings numbered below it), so the front entry is that window's answer,
// exact however long it stays open.
//
// Not thread-safe: the sampler calls it with its mutex held. If Add throws (std::bad_alloc), the stack is still
// valid: at most the new reading and readings it dominated are missing, which can only lower an answer.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>

namespace taskmeter {

class MaxSince {
 public:
  explicit MaxSince(size_t cap = 4096) : cap_(std::max<size_t>(cap, 2)) {}  // the front and the newest stay

  // Records value v as reading number seq. Numbers increase in the order they were handed out; a reading taken
  // before others may arrive after them (the RSS thread reserves a number, reads without the lock, then adds).
  void Add(uint64_t seq, double v) {
    if (std::isnan(v) || seq < floor_) return;
    size_t pos = e_.size();
    while (pos > 0 && e_[pos - 1].seq > seq) pos--;
    // A later reading at least as large dominates it (the first one after pos is the largest of those).
    if (pos < e_.size() && e_[pos].value >= v) return;
    size_t start = pos;
    while (start > 0 && e_[start - 1].value <= v) start--;
    e_.erase(e_.begin() + static_cast<std::ptrdiff_t>(start), e_.begin() + static_cast<std::ptrdiff_t>(pos));
    e_.insert(e_.begin() + static_cast<std::ptrdiff_t>(start), Entry{seq, v});
    if (e_.size() > cap_) Compact();
  }

  // The largest value recorded with a number ≥ from; NaN if none.
  double Since(uint64_t from) const {
    auto it = std::lower_bound(e_.begin(), e_.end(), from, [](const Entry& e, uint64_t s) { return e.seq < s; });
    return it == e_.end() ? NAN : it->value;
  }

  // Forgets readings numbered below `from`, and ignores any added later (no open window can ask for them).
  void DropBefore(uint64_t from) {
    if (from > floor_) floor_ = from;
    while (!e_.empty() && e_.front().seq < floor_) e_.pop_front();
  }

  void Clear() { e_.clear(); }
  size_t size() const { return e_.size(); }

 private:
  struct Entry {
    uint64_t seq;
    double value;
  };
  // Drops every other entry of the older half, from the second on: never the front one (the oldest open window's
  // answer), never the newest (cap_ ≥ 2), and at least one.
  void Compact() {
    size_t half = e_.size() / 2;
    std::deque<Entry> kept;
    for (size_t i = 0; i < e_.size(); i++) {
      if (i % 2 == 1 && i <= half) continue;
      kept.push_back(e_[i]);
    }
    e_.swap(kept);
  }

  std::deque<Entry> e_;
  size_t cap_;
  uint64_t floor_ = 0;  // readings numbered below it are neither kept nor added
};

}  // namespace taskmeter
