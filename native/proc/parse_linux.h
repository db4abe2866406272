// Pure parsers of Linux /proc text: no I/O, no allocation beyond the caller's vector, no reads past `len` (the input
// need not be NUL-terminated). Every number is checked: a field that is missing, truncated, negative where it cannot
// be, or beyond what a double holds exactly is reported as unknown (with a reason), never as a wrong number.
// Tested over generated inputs by test/proc-parsers.test.ts (through test/native/parse-driver.cc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace taskmeter {
namespace proc {

enum ParseError : int {
  kParseOk = 0,
  kParseEmpty,       // nothing was read
  kParseTruncated,   // the text ends before the field (or the line) does
  kParseMalformed,   // not the expected shape
  kParseOutOfRange,  // a number too large to be true (or to be held exactly)
  kParseMissing,     // the key is absent
};
const char* ParseErrorName(int e);

// Largest integer a double holds exactly; anything above is refused.
constexpr uint64_t kMaxExactInteger = (uint64_t{1} << 53);
// PID_MAX_LIMIT (include/linux/threads.h).
constexpr uint64_t kMaxPid = 4194304;

// /proc/<pid>/stat: "pid (comm) state ppid pgrp ... " (proc(5)). comm may hold spaces, parentheses and newlines: it
// is taken up to the LAST ')'. The line must end with '\n' (else it was truncated).
struct StatFields {
  uint32_t pid = 0;
  char comm[17] = {0};
  char state = 0;
  uint32_t ppid = 0;
  uint64_t flags = 0;
  uint64_t minflt = 0, cminflt = 0, majflt = 0, cmajflt = 0;  // page faults: its own, its waited-for children's
  uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0;      // clock ticks
  uint64_t num_threads = 0;
  uint64_t starttime = 0;  // clock ticks since boot
  uint64_t rss_pages = 0;  // field 24: same count as statm's resident and status's VmRSS
};
int ParseStat(const char* buf, size_t len, StatFields* out);

// /proc/<pid>/statm: "size resident shared text lib data dt\n" in pages.
int ParseStatm(const char* buf, size_t len, uint64_t* size_pages, uint64_t* resident_pages);

// One "Key:   <n> kB" line of /proc/<pid>/status (key given with its colon, e.g. "VmHWM:"). The key must start a
// line; the value must be followed by " kB\n". Returns bytes in *bytes.
int ParseStatusKb(const char* buf, size_t len, const char* key, uint64_t* bytes);

// /proc/<pid>/schedstat: "<ns on CPU> <ns waiting> <times run>\n" (the thread group leader's).
int ParseSchedstat(const char* buf, size_t len, uint64_t* run_ns, uint64_t* timeslices);

// /proc/<pid>/task/<tid>/children: "pid pid pid " (each followed by a space). A last entry without its space was cut
// short by a read that was too small: kParseTruncated (the complete entries are still appended).
int ParseChildren(const char* buf, size_t len, std::vector<uint32_t>* out);

}  // namespace proc
}  // namespace taskmeter
