// Test driver for native/proc/parse_linux.cc (built by test/proc-parsers.test.ts, with ASan and UBSan where the
// compiler has them). stdin: records of [kind: 1 byte][length: uint32 LE][bytes]; kinds: 's' stat, 'm' statm,
// 'h' status VmHWM:, 'r' status VmRSS:, 'p' smaps_rollup Pss:, 'd' schedstat, 'c' children. stdout: one JSON object per record. Each input is copied into
// a heap block of exactly its length, so a read past the end is caught by the sanitizer.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../../native/proc/parse_linux.h"

using namespace taskmeter::proc;

static std::string Hex(const char* s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (; *s; s++) {
    out += d[(static_cast<unsigned char>(*s) >> 4) & 15];
    out += d[static_cast<unsigned char>(*s) & 15];
  }
  return out;
}

int main() {
  for (;;) {
    int kind = getchar();
    if (kind == EOF) break;
    unsigned char lb[4];
    if (fread(lb, 1, 4, stdin) != 4) return 2;
    uint32_t len = lb[0] | (lb[1] << 8) | (lb[2] << 16) | (static_cast<uint32_t>(lb[3]) << 24);
    char* buf = new char[len];
    if (len > 0 && fread(buf, 1, len, stdin) != len) return 2;
    std::string line;
    char tmp[512];
    if (kind == 's') {
      StatFields f;
      int e = ParseStat(buf, len, &f);
      snprintf(tmp, sizeof(tmp),
               "{\"e\":\"%s\",\"pid\":%u,\"state\":%d,\"ppid\":%u,\"flags\":%llu,\"minflt\":%llu,\"cminflt\":%llu,"
               "\"majflt\":%llu,\"cmajflt\":%llu,\"utime\":%llu,\"stime\":%llu,"
               "\"cutime\":%llu,\"cstime\":%llu,\"threads\":%llu,\"start\":%llu,\"rss\":%llu,\"comm\":\"",
               ParseErrorName(e), f.pid, f.state, f.ppid, (unsigned long long)f.flags, (unsigned long long)f.minflt,
               (unsigned long long)f.cminflt, (unsigned long long)f.majflt, (unsigned long long)f.cmajflt,
               (unsigned long long)f.utime,
               (unsigned long long)f.stime, (unsigned long long)f.cutime, (unsigned long long)f.cstime,
               (unsigned long long)f.num_threads, (unsigned long long)f.starttime, (unsigned long long)f.rss_pages);
      line = tmp + Hex(f.comm) + "\"}";
    } else if (kind == 'm') {
      uint64_t size = 0, res = 0;
      int e = ParseStatm(buf, len, &size, &res);
      snprintf(tmp, sizeof(tmp), "{\"e\":\"%s\",\"size\":%llu,\"resident\":%llu}", ParseErrorName(e),
               (unsigned long long)size, (unsigned long long)res);
      line = tmp;
    } else if (kind == 'h' || kind == 'r' || kind == 'p') {
      uint64_t bytes = 0;
      int e = ParseStatusKb(buf, len, kind == 'h' ? "VmHWM:" : kind == 'r' ? "VmRSS:" : "Pss:", &bytes);
      snprintf(tmp, sizeof(tmp), "{\"e\":\"%s\",\"bytes\":%llu}", ParseErrorName(e), (unsigned long long)bytes);
      line = tmp;
    } else if (kind == 'd') {
      uint64_t run = 0, slices = 0;
      int e = ParseSchedstat(buf, len, &run, &slices);
      snprintf(tmp, sizeof(tmp), "{\"e\":\"%s\",\"run\":%llu,\"slices\":%llu}", ParseErrorName(e),
               (unsigned long long)run, (unsigned long long)slices);
      line = tmp;
    } else if (kind == 'c') {
      std::vector<uint32_t> kids;
      int e = ParseChildren(buf, len, &kids);
      line = std::string("{\"e\":\"") + ParseErrorName(e) + "\",\"pids\":[";
      for (size_t i = 0; i < kids.size(); i++) line += (i ? "," : "") + std::to_string(kids[i]);
      line += "]}";
    } else {
      return 3;
    }
    delete[] buf;
    puts(line.c_str());
  }
  return 0;
}
