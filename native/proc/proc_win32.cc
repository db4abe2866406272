// Windows: GetProcessTimes, GetProcessMemoryInfo (WorkingSetSize is the RSS; PeakWorkingSetSize is an exact
// per-process high-water mark), QueryPerformanceCounter; for process trees, every process's parent from one
// NtQuerySystemInformation call (Toolhelp where that fails) and each member's from NtQueryInformationProcess.
#include <windows.h>
// after windows.h, which they need
#include <psapi.h>
#include <tlhelp32.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "parent_edges.h"
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

// The parent pid of an open process: NtQueryInformationProcess(ProcessBasicInformation) → InheritedFromUniqueProcessId,
// looked up in ntdll (documented, not in the import libraries). 0 where it cannot be read.
uint32_t ParentPid(HANDLE h) {
  struct BasicInfo {  // PROCESS_BASIC_INFORMATION, as winternl.h lays it out
    LONG_PTR exit_status;
    void* peb;
    ULONG_PTR affinity;
    LONG_PTR base_priority;
    ULONG_PTR pid;
    ULONG_PTR parent_pid;
  };
  using QueryFn = LONG(WINAPI*)(HANDLE, int, void*, ULONG, ULONG*);
  static QueryFn query = reinterpret_cast<QueryFn>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQueryInformationProcess")));
  if (query == nullptr) return 0;
  BasicInfo bi = {};
  ULONG len = 0;
  if (query(h, 0 /* ProcessBasicInformation */, &bi, sizeof(bi), &len) < 0) return 0;
  return static_cast<uint32_t>(bi.parent_pid);
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

uint32_t SelfPid() {
  return static_cast<uint32_t>(GetCurrentProcessId());
}

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
  // getrusage's counters have no reading here yet
  for (int i = kMinorFaults; i <= kFsOutputBlocks; i++) out[i] = NAN;
  return ok;
}

bool SelfThreadCounters(double*) {
  return false;
}

bool ReadSelfIo(double* read_bytes, double* write_bytes) {
  *read_bytes = *write_bytes = NAN;
  return false;
}

namespace {
double ThreadTimesMs(HANDLE h) {
  FILETIME created, exited, kernel, user;
  if (!GetThreadTimes(h, &created, &exited, &kernel, &user)) return NAN;
  return FiletimeMs(user) + FiletimeMs(kernel);
}
}  // namespace

double SelfThreadCpuMs() {
  return ThreadTimesMs(GetCurrentThread());
}

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
  if (h == nullptr) {
    // Only ERROR_INVALID_PARAMETER means there is no such process. Access denied (another user's, a protected
    // process) is a process that lives on: alive, nothing read, its start time unknown (-1).
    if (GetLastError() == ERROR_INVALID_PARAMETER) return false;
    out->alive = true;
    out->start_ticks = -1;
    return true;
  }
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
  // Windows keeps a parent's pid after the parent ended (and may reuse it): tree.cc checks start times for reuse.
  out->ppid = ParentPid(h);
  CloseHandle(h);
  return true;
}

namespace {

// SYSTEM_PROCESS_INFORMATION as NtQuerySystemInformation(SystemProcessInformation) lays it out on 64-bit Windows
// (the SDK's winternl.h hides CreateTime and the parent pid in reserved fields). Only the head is read.
struct SysProcessInfo {
  ULONG next_entry_offset;
  ULONG number_of_threads;
  LARGE_INTEGER reserved[3];
  LARGE_INTEGER create_time;
  LARGE_INTEGER user_time;
  LARGE_INTEGER kernel_time;
  USHORT image_name_length;
  USHORT image_name_max_length;
  PWSTR image_name;
  LONG base_priority;
  HANDLE unique_process_id;
  HANDLE inherited_from_unique_process_id;
};
#ifdef _WIN64
static_assert(offsetof(SysProcessInfo, create_time) == 32, "SYSTEM_PROCESS_INFORMATION.CreateTime");
static_assert(offsetof(SysProcessInfo, unique_process_id) == 80, "SYSTEM_PROCESS_INFORMATION.UniqueProcessId");
static_assert(offsetof(SysProcessInfo, inherited_from_unique_process_id) == 88, "...InheritedFromUniqueProcessId");
#endif

// Every process with its parent and creation time in one call; false where ntdll does not give it.
bool SystemProcessEdges(std::vector<ProcessEdge>* out) {
  using QueryFn = LONG(WINAPI*)(int, void*, ULONG, ULONG*);
  static QueryFn query = reinterpret_cast<QueryFn>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQuerySystemInformation")));
  if (query == nullptr) return false;
  thread_local std::vector<unsigned char> buf(256 * 1024);  // the RSS thread's; grows to fit, kept
  for (int attempt = 0; attempt < 4; attempt++) {
    ULONG need = 0;
    LONG st = query(5 /* SystemProcessInformation */, buf.data(), static_cast<ULONG>(buf.size()), &need);
    if (st == static_cast<LONG>(0xC0000004L) /* STATUS_INFO_LENGTH_MISMATCH */) {
      buf.resize(std::max<size_t>(buf.size() * 2, static_cast<size_t>(need) + 64 * 1024));
      continue;
    }
    if (st < 0) return false;
    size_t off = 0;
    for (;;) {
      if (off + sizeof(SysProcessInfo) > buf.size()) return false;
      SysProcessInfo info;
      std::memcpy(&info, buf.data() + off, sizeof(info));
      ProcessEdge e;
      e.pid = static_cast<uint32_t>(reinterpret_cast<ULONG_PTR>(info.unique_process_id));
      e.ppid = static_cast<uint32_t>(reinterpret_cast<ULONG_PTR>(info.inherited_from_unique_process_id));
      e.create_time = info.create_time.QuadPart;
      if (e.pid != 0) out->push_back(e);
      if (info.next_entry_offset == 0) return true;
      off += info.next_entry_offset;
    }
  }
  return false;
}

}  // namespace

bool ListAllParents(std::vector<std::pair<uint32_t, uint32_t>>* out) {
  std::vector<ProcessEdge> edges;
  if (SystemProcessEdges(&edges)) {
    DropStaleParents(&edges);  // parent pids outlive their processes on Windows
    for (const auto& e : edges) out->emplace_back(e.pid, e.ppid);
    return true;
  }
  // Toolhelp: no creation times, so stale parent pids cannot be told apart here.
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

// No per-process children list on Windows: false sends the tree walk to one ListAllParents (one Toolhelp snapshot
// per sample instead of one per member).
bool ListChildren(uint32_t, std::vector<uint32_t>*) {
  return false;
}

}  // namespace proc
}  // namespace taskmeter
