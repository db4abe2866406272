// Windows: GetProcessTimes, GetProcessMemoryInfo (WorkingSetSize is the RSS; PeakWorkingSetSize is an exact
// per-process high-water mark), QueryPerformanceCounter, and a Toolhelp snapshot for the process tree.
#include <windows.h>
#include <psapi.h>
#include <tlhelp32.h>

#include <cmath>
#include <cstring>

#include "proc.h"

namespace taskmeter {
namespace proc {
namespace {

inline double FiletimeMs(const FILETIME& ft) {  // 100 ns units
  ULARGE_INTEGER u;
  u.LowPart = ft.dwLowDateTime;
  u.HighPart = ft.dwHighDateTime;
  return static_cast<double>(u.QuadPart) / 1e4;
}

double QpcFrequency() {
  LARGE_INTEGER f;
  QueryPerformanceFrequency(&f);
  return static_cast<double>(f.QuadPart);
}

bool Memory(HANDLE h, PROCESS_MEMORY_COUNTERS_EX* pmc) {
  std::memset(pmc, 0, sizeof(*pmc));
  return GetProcessMemoryInfo(h, reinterpret_cast<PROCESS_MEMORY_COUNTERS*>(pmc), sizeof(*pmc)) != 0;
}

}  // namespace

double MonotonicMs() {
  static const double freq = QpcFrequency();
  LARGE_INTEGER c;
  QueryPerformanceCounter(&c);
  return static_cast<double>(c.QuadPart) * 1e3 / freq;
}

double EpochMs() {
  FILETIME ft;
  GetSystemTimePreciseAsFileTime(&ft);
  return FiletimeMs(ft) - 11644473600000.0;  // 1601 → 1970
}

uint32_t SelfPid() { return static_cast<uint32_t>(GetCurrentProcessId()); }

void NameThisThread(const char* name) {
  // SetThreadDescription exists from Windows 10 1607: looked up, not linked.
  using SetDesc = HRESULT(WINAPI*)(HANDLE, PCWSTR);
  static SetDesc fn = reinterpret_cast<SetDesc>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(L"kernel32.dll"), "SetThreadDescription")));
  if (fn == nullptr) return;
  wchar_t w[64];
  int n = MultiByteToWideChar(CP_UTF8, 0, name, -1, w, 64);
  if (n > 0) fn(GetCurrentThread(), w);
}

bool ReadSelf(double* out, bool thread_cpu) {
  bool ok = true;
  out[kTimeMs] = MonotonicMs();
  out[kEpochMs] = EpochMs();
  FILETIME created, exited, kernel, user;
  if (GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &user)) {
    out[kCpuUserMs] = FiletimeMs(user);
    out[kCpuSystemMs] = FiletimeMs(kernel);
  } else {
    out[kCpuUserMs] = out[kCpuSystemMs] = NAN;
    ok = false;
  }
  PROCESS_MEMORY_COUNTERS_EX pmc;
  if (Memory(GetCurrentProcess(), &pmc)) {
    out[kRssBytes] = static_cast<double>(pmc.WorkingSetSize);
    out[kVmsBytes] = static_cast<double>(pmc.PrivateUsage);
    out[kPeakRssBytes] = static_cast<double>(pmc.PeakWorkingSetSize);
  } else {
    out[kRssBytes] = out[kVmsBytes] = out[kPeakRssBytes] = NAN;
    ok = false;
  }
  out[kThreadCpuMs] = thread_cpu ? SelfThreadCpuMs() : NAN;
  return ok;
}

namespace {
double ThreadTimesMs(HANDLE h) {
  FILETIME created, exited, kernel, user;
  if (!GetThreadTimes(h, &created, &exited, &kernel, &user)) return NAN;
  return FiletimeMs(user) + FiletimeMs(kernel);
}
}  // namespace

double SelfThreadCpuMs() { return ThreadTimesMs(GetCurrentThread()); }


void CloseSelfFiles() {}  // nothing kept open

int64_t ReadSelfRssBytes() {
  PROCESS_MEMORY_COUNTERS_EX pmc;
  return Memory(GetCurrentProcess(), &pmc) ? static_cast<int64_t>(pmc.WorkingSetSize) : -1;
}

int64_t ReadSelfPeakRssBytes() {
  PROCESS_MEMORY_COUNTERS_EX pmc;
  return Memory(GetCurrentProcess(), &pmc) ? static_cast<int64_t>(pmc.PeakWorkingSetSize) : -1;
}

bool ReadProcess(uint32_t pid, ProcessInfo* out) {
  *out = ProcessInfo();
  out->pid = pid;
  HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ, FALSE, pid);
  if (h == nullptr) h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
  if (h == nullptr) return false;
  FILETIME created, exited, kernel, user;
  if (GetProcessTimes(h, &created, &exited, &kernel, &user)) {
    out->cpu_user_ms = FiletimeMs(user);
    out->cpu_system_ms = FiletimeMs(kernel);
    out->start_ticks = FiletimeMs(created);  // tells a reused pid apart
  }
  DWORD code = 0;
  out->alive = GetExitCodeProcess(h, &code) && code == STILL_ACTIVE;
  PROCESS_MEMORY_COUNTERS_EX pmc;
  if (out->alive && Memory(h, &pmc)) {
    out->rss_bytes = static_cast<double>(pmc.WorkingSetSize);
    out->hwm_bytes = static_cast<double>(pmc.PeakWorkingSetSize);
  }
  wchar_t path[MAX_PATH];
  DWORD len = MAX_PATH;
  if (QueryFullProcessImageNameW(h, 0, path, &len)) {
    const wchar_t* base = path;
    for (const wchar_t* p = path; *p; p++)
      if (*p == L'\\' || *p == L'/') base = p + 1;
    WideCharToMultiByte(CP_UTF8, 0, base, -1, out->comm, sizeof(out->comm) - 1, nullptr, nullptr);
  }
  CloseHandle(h);
  // The parent id comes with the tree walk (ListAllParents); a single read does not need it.
  return true;
}

bool ListAllParents(std::vector<std::pair<uint32_t, uint32_t>>* out) {
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
  if (snap == INVALID_HANDLE_VALUE) return false;
  PROCESSENTRY32W e;
  e.dwSize = sizeof(e);
  for (BOOL more = Process32FirstW(snap, &e); more; more = Process32NextW(snap, &e)) {
    out->emplace_back(static_cast<uint32_t>(e.th32ProcessID), static_cast<uint32_t>(e.th32ParentProcessID));
  }
  CloseHandle(snap);
  return true;
}

bool ListChildren(uint32_t pid, std::vector<uint32_t>* out) {
  std::vector<std::pair<uint32_t, uint32_t>> all;
  if (!ListAllParents(&all)) return false;
  for (const auto& pp : all)
    if (pp.second == pid && pp.first != pid) out->push_back(pp.first);
  return true;
}

}  // namespace proc
}  // namespace taskmeter
