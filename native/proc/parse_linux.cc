#include "parse_linux.h"

#include <cstring>

namespace taskmeter {
namespace proc {

const char* ParseErrorName(int e) {
  switch (e) {
    case kParseOk: return "ok";
    case kParseEmpty: return "empty";
    case kParseTruncated: return "truncated";
    case kParseMalformed: return "malformed";
    case kParseOutOfRange: return "out of range";
    case kParseMissing: return "missing";
  }
  return "unknown";
}

namespace {

// Strict unsigned decimal in [p, end): digits only, at least one, at most kMaxExactInteger.
int ParseU64(const char* p, const char* end, uint64_t* out) {
  if (p >= end) return kParseMalformed;
  uint64_t v = 0;
  for (const char* q = p; q < end; q++) {
    if (*q < '0' || *q > '9') return kParseMalformed;
    v = v * 10 + static_cast<uint64_t>(*q - '0');
    if (v > kMaxExactInteger) return kParseOutOfRange;
  }
  *out = v;
  return kParseOk;
}

// A signed decimal we only skip over: optional '-', then digits.
bool IsInteger(const char* p, const char* end) {
  if (p < end && *p == '-') p++;
  if (p >= end) return false;
  for (; p < end; p++)
    if (*p < '0' || *p > '9') return false;
  return true;
}

const char* FindLast(const char* buf, size_t len, char c) {
  for (size_t i = len; i > 0; i--)
    if (buf[i - 1] == c) return buf + i - 1;
  return nullptr;
}

}  // namespace

int ParseStat(const char* buf, size_t len, StatFields* out) {
  *out = StatFields();
  if (len == 0) return kParseEmpty;
  if (buf[len - 1] != '\n') return kParseTruncated;
  const char* end = buf + len - 1;  // the newline
  const char* open = static_cast<const char*>(memchr(buf, '(', len));
  const char* close = FindLast(buf, len, ')');
  if (open == nullptr || open < buf + 2 || open[-1] != ' ' || close == nullptr || close < open) return kParseMalformed;
  uint64_t pid;
  int e = ParseU64(buf, open - 1, &pid);
  if (e != kParseOk) return e;
  if (pid == 0 || pid > kMaxPid) return kParseOutOfRange;
  out->pid = static_cast<uint32_t>(pid);
  size_t comm_len = static_cast<size_t>(close - open - 1);
  if (comm_len > sizeof(out->comm) - 1) comm_len = sizeof(out->comm) - 1;
  memcpy(out->comm, open + 1, comm_len);
  out->comm[comm_len] = '\0';
  // Fields 3 (state) … 24 (rss), single-space separated, after ") ".
  const char* p = close + 1;
  if (p >= end || *p != ' ') return kParseMalformed;
  p++;
  for (int field = 3; field <= 24; field++) {
    if (p >= end) return kParseTruncated;
    const char* q = p;
    while (q < end && *q != ' ') q++;
    if (field < 24 && q >= end) return kParseTruncated;
    uint64_t v = 0;
    switch (field) {
      case 3:
        if (q - p != 1 || *p < 'A' || *p > 'z') return kParseMalformed;
        out->state = *p;
        break;
      case 4:
      case 9:
      case 10:
      case 11:
      case 12:
      case 13:
      case 14:
      case 15:
      case 16:
      case 17:
      case 20:
      case 22:
      case 24:
        if ((e = ParseU64(p, q, &v)) != kParseOk) return e;
        break;
      default:
        if (!IsInteger(p, q)) return kParseMalformed;
    }
    switch (field) {
      case 4:
        if (v > kMaxPid) return kParseOutOfRange;
        out->ppid = static_cast<uint32_t>(v);
        break;
      case 9: out->flags = v; break;
      case 10: out->minflt = v; break;
      case 11: out->cminflt = v; break;
      case 12: out->majflt = v; break;
      case 13: out->cmajflt = v; break;
      case 14: out->utime = v; break;
      case 15: out->stime = v; break;
      case 16: out->cutime = v; break;
      case 17: out->cstime = v; break;
      case 20: out->num_threads = v; break;
      case 22: out->starttime = v; break;
      case 24: out->rss_pages = v; break;
      default: break;
    }
    p = q + 1;
  }
  return kParseOk;
}

int ParseStatm(const char* buf, size_t len, uint64_t* size_pages, uint64_t* resident_pages) {
  if (len == 0) return kParseEmpty;
  const char* end = buf + len;
  const char* p = buf;
  const char* q = p;
  while (q < end && *q != ' ' && *q != '\n') q++;
  if (q >= end) return kParseTruncated;
  uint64_t size, resident;
  int e = ParseU64(p, q, &size);
  if (e != kParseOk) return e;
  if (*q != ' ') return kParseMalformed;
  p = q + 1;
  q = p;
  while (q < end && *q != ' ' && *q != '\n') q++;
  if (q >= end) return kParseTruncated;  // a number cut short reads as a smaller one: refuse
  if ((e = ParseU64(p, q, &resident)) != kParseOk) return e;
  if (size_pages) *size_pages = size;
  if (resident_pages) *resident_pages = resident;
  return kParseOk;
}

int ParseStatusKb(const char* buf, size_t len, const char* key, uint64_t* bytes) {
  if (len == 0) return kParseEmpty;
  size_t klen = strlen(key);
  const char* end = buf + len;
  const char* line = buf;
  while (line < end) {
    const char* nl = static_cast<const char*>(memchr(line, '\n', static_cast<size_t>(end - line)));
    const char* line_end = nl ? nl : end;
    if (static_cast<size_t>(line_end - line) >= klen && memcmp(line, key, klen) == 0) {
      if (nl == nullptr) return kParseTruncated;
      const char* p = line + klen;
      while (p < line_end && (*p == ' ' || *p == '\t')) p++;
      const char* q = p;
      while (q < line_end && *q >= '0' && *q <= '9') q++;
      if (line_end - q != 3 || memcmp(q, " kB", 3) != 0) return kParseMalformed;
      uint64_t kb;
      int e = ParseU64(p, q, &kb);
      if (e != kParseOk) return e;
      if (kb > kMaxExactInteger / 1024) return kParseOutOfRange;
      *bytes = kb * 1024;
      return kParseOk;
    }
    if (nl == nullptr) return kParseTruncated;  // the key may have been in what was not read
    line = nl + 1;
  }
  return kParseMissing;
}

int ParseSchedstat(const char* buf, size_t len, uint64_t* run_ns, uint64_t* timeslices) {
  if (len == 0) return kParseEmpty;
  if (buf[len - 1] != '\n') return kParseTruncated;
  const char* end = buf + len - 1;
  uint64_t v[3];
  const char* p = buf;
  for (int i = 0; i < 3; i++) {
    const char* q = p;
    while (q < end && *q != ' ') q++;
    if (i < 2 && q >= end) return kParseTruncated;
    int e = ParseU64(p, q, &v[i]);
    if (e != kParseOk) return e;
    if (i == 2 && q != end) return kParseMalformed;  // more than three fields
    p = q + 1;
  }
  *run_ns = v[0];
  *timeslices = v[2];
  return kParseOk;
}

int ParseChildren(const char* buf, size_t len, std::vector<uint32_t>* out) {
  const char* end = buf + len;
  const char* p = buf;
  while (p < end) {
    const char* q = p;
    while (q < end && *q != ' ') q++;
    if (q >= end) {
      // A trailing newline (some kernels, or a hand-made file) ends the list; anything else is a cut-short entry.
      if (q - p == 1 && *p == '\n') return kParseOk;
      return kParseTruncated;
    }
    uint64_t pid;
    int e = ParseU64(p, q, &pid);
    if (e != kParseOk) return e;
    if (pid == 0 || pid > kMaxPid) return kParseOutOfRange;
    out->push_back(static_cast<uint32_t>(pid));
    p = q + 1;
  }
  return kParseOk;
}

}  // namespace proc
}  // namespace taskmeter
