// One internal interface for process metrics. Each OS provides proc_<os>.cc; nothing outside native/proc/ includes
// an OS header for these numbers.
#pragma once
#include <cstdint>

namespace taskmeter {
namespace proc {

// Fixed slot order shared with src/binding.ts (SNAPSHOT_* constants). Doubles hold every value exactly
// (byte counts stay far below 2^53).
enum SnapshotSlot : int {
  kTimeMs = 0,       // monotonic clock, ms
  kEpochMs,          // wall clock (Unix epoch), ms
  kCpuUserMs,        // this process, all threads
  kCpuSystemMs,
  kRssBytes,
  kVmsBytes,
  kPeakRssBytes,     // process-lifetime high-water mark (ru_maxrss)
  kSnapshotSlots
};

// Fills out[0..kSnapshotSlots). Returns false (and leaves NaN in unreadable slots) if a source could not be read.
bool ReadSelf(double* out);

// Current RSS of this process in bytes, or -1. Cheap: used by the sampler thread every tick.
int64_t ReadSelfRssBytes();

// Process-lifetime peak RSS in bytes (ru_maxrss), or -1.
int64_t ReadSelfPeakRssBytes();

double MonotonicMs();
double EpochMs();

}  // namespace proc
}  // namespace taskmeter
