// Windows: measureCommand() and the CLI. The command is created suspended, put in a job object of its own and only
// then resumed, so that every process it starts is in the job from its first instruction (Windows has no
// wait4(): the job is what accounts for a whole tree). When the command itself ends (as wait4 waits for the child,
// not for daemons it left behind) the waiter reads:
//   - the exit code (STATUS_CONTROL_C_EXIT, a Ctrl-C death, is reported as SIGINT, as POSIX shells would);
//   - CPU: the job's TotalUserTime/TotalKernelTime (every process that was ever in it), never below the command's
//     own GetProcessTimes (Wine's job accounting reports zeros);
//   - memory: the job's PeakProcessMemoryUsed (the largest commit charge of any one process → kSpMaxRssBytes) and
//     PeakJobMemoryUsed (the largest commit charge of the whole job at once → kSpTreePeakBytes). These are commit
//     (private bytes) peaks, not working-set peaks; zero (Wine) is reported as NaN, unmeasured.
// and hands them to `done` (once, from its own thread), as spawn_posix.cc's waiter does.
// stdio: inherit (our standard handles, duplicated inheritable and handed over by an explicit handle list, so that
// a concurrent CreateProcess elsewhere cannot inherit them), NUL, or a pipe (stdout/stderr only): an anonymous pipe
// whose write end is the command's and whose read end a reader thread of ours drains into memory (at most
// kSpawnPipeLimitBytes kept per stream), since no handle of ours can become a JavaScript stream (JavaScript's
// descriptors belong to node.exe's C runtime). Each stream has its own reader, so a command that fills one pipe
// while we wait on the other never blocks. Like a POSIX pipe, a stream ends when every process holding its write
// end has closed it (the command and whatever inherited it); the waiter hands both to SpawnOutput, then `done`.
#include <windows.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cwctype>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "proc/proc.h"
#include "spawn.h"
#include "win32_cmdline.h"

namespace taskmeter {
namespace {

// One piped stream (stdout or stderr): the read end and the thread that drains it into `data`.
struct PipeReader {
  HANDLE read = nullptr;
  std::string data;
  bool overflow = false;
  std::thread thread;

  void Run() {
    char buf[64 * 1024];
    for (;;) {
      DWORD n = 0;
      // ERROR_BROKEN_PIPE: every write end is closed (the end of the stream)
      if (!ReadFile(read, buf, sizeof(buf), &n, nullptr)) break;
      if (n == 0) continue;
      size_t keep = std::min<size_t>(n, kSpawnPipeLimitBytes - std::min(kSpawnPipeLimitBytes, data.size()));
      if (keep < n) overflow = true;
      try {
        data.append(buf, keep);
      } catch (...) {  // no memory for more: keep draining, so that the command never blocks
        overflow = true;
      }
    }
  }
  // Waits for the end of the stream (the thread, if started) and closes the read end.
  void Finish() {
    if (thread.joinable()) thread.join();
    if (read != nullptr) CloseHandle(read);
    read = nullptr;
  }
  ~PipeReader() { Finish(); }
};

// What the waiter thread owns: the slots it fills, the piped streams, and whom to tell.
struct Waiter {
  SpawnDoneFn done;
  void* context;
  double slots[kSpawnSlots];
  PipeReader pipes[3];  // [1] stdout, [2] stderr when piped (read != nullptr)
  bool piped = false;
  // Set by Spawn before it terminates a command that never ran (ResumeThread failed): Spawn reports the error, so
  // the waiter only cleans up and never calls `done` (spawn.h: never called when Spawn fails).
  std::atomic<bool> cancelled{false};
};

std::wstring Wide(const std::string& s) {
  if (s.empty()) return std::wstring();
  int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
  std::wstring w(static_cast<size_t>(n), L'\0');
  MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), &w[0], n);
  return w;
}

inline double FiletimeMs(const LARGE_INTEGER& v) {
  return static_cast<double>(v.QuadPart) / 1e4;
}
inline double FiletimeMs(const FILETIME& ft) {
  LARGE_INTEGER v;
  v.LowPart = ft.dwLowDateTime;
  v.HighPart = static_cast<LONG>(ft.dwHighDateTime);
  return FiletimeMs(v);
}

int ErrnoOf(DWORD e) {
  switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_NAME:
    case ERROR_DIRECTORY: return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_BAD_EXE_FORMAT:
    case ERROR_EXE_MACHINE_TYPE_MISMATCH: return EACCES;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY: return ENOMEM;
    default: return EINVAL;
  }
}

// The environment block: "K=V\0…\0\0", sorted case-insensitively by name as CreateProcess documents.
std::wstring EnvBlock(const std::vector<std::string>& env) {
  std::vector<std::wstring> vars;
  for (const auto& e : env) vars.push_back(Wide(e));
  auto key = [](const std::wstring& s) {
    std::wstring k = s.substr(0, s.find(L'=', 1));
    for (auto& c : k) c = static_cast<wchar_t>(std::towupper(c));
    return k;
  };
  std::stable_sort(vars.begin(), vars.end(),
                   [&](const std::wstring& a, const std::wstring& b) { return key(a) < key(b); });
  std::wstring block;
  for (const auto& v : vars) {
    block += v;
    block.push_back(L'\0');
  }
  block.push_back(L'\0');
  return block;
}

void Wait(HANDLE process, HANDLE job, Waiter* w) {
  WaitForSingleObject(process, INFINITE);
  double end_mono = proc::MonotonicMs();
  double end_epoch = proc::EpochMs();
  DWORD code = 0;
  bool have_code = GetExitCodeProcess(process, &code) != 0;
  double user = 0, kernel = 0;
  FILETIME created, exited, k, u;
  if (GetProcessTimes(process, &created, &exited, &k, &u)) {
    user = FiletimeMs(u);
    kernel = FiletimeMs(k);
  }
  JOBOBJECT_BASIC_ACCOUNTING_INFORMATION acct = {};
  if (QueryInformationJobObject(job, JobObjectBasicAccountingInformation, &acct, sizeof(acct), nullptr)) {
    user = std::max(user, FiletimeMs(acct.TotalUserTime));
    kernel = std::max(kernel, FiletimeMs(acct.TotalKernelTime));
  }
  double peak_process = NAN, peak_job = NAN;
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION lim = {};
  if (QueryInformationJobObject(job, JobObjectExtendedLimitInformation, &lim, sizeof(lim), nullptr)) {
    if (lim.PeakProcessMemoryUsed > 0) peak_process = static_cast<double>(lim.PeakProcessMemoryUsed);
    if (lim.PeakJobMemoryUsed > 0) peak_job = static_cast<double>(lim.PeakJobMemoryUsed);
  }
  CloseHandle(process);
  CloseHandle(job);  // without KILL_ON_JOB_CLOSE: processes the command left running keep running, as on POSIX
  for (PipeReader& p : w->pipes) p.Finish();  // the streams' ends (every holder of a write end closed it)
  if (w->cancelled.load()) {
    delete w;
    return;
  }
  double* s = w->slots;
  s[kSpExited] = 1;
  s[kSpEndMonoMs] = end_mono;
  s[kSpEndEpochMs] = end_epoch;
  if (!have_code) {
    s[kSpExitCode] = s[kSpSignal] = NAN;
  } else if (code == 0xC000013AUL) {  // STATUS_CONTROL_C_EXIT: ended by Ctrl-C / Ctrl-Break
    s[kSpExitCode] = NAN;
    s[kSpSignal] = 2;  // SIGINT
  } else {
    s[kSpExitCode] = static_cast<double>(code);
    s[kSpSignal] = NAN;
  }
  s[kSpUserMs] = user;
  s[kSpSystemMs] = kernel;
  s[kSpMaxRssBytes] = peak_process;
  s[kSpTreePeakBytes] = peak_job;
  if (w->piped)
    SpawnOutput(w->context, &w->pipes[1].data, &w->pipes[2].data, w->pipes[1].overflow || w->pipes[2].overflow);
  w->done(w->context, s);
  delete w;
}

// An inheritable duplicate of one of our standard handles, or of NUL, or the write end of a new pipe whose read end
// goes to `reader`; nullptr when there is none to give.
HANDLE ChildStdHandle(int index, int mode, PipeReader* reader) {
  HANDLE h = nullptr;
  if (mode == -3) {
    SECURITY_ATTRIBUTES sa = {sizeof(sa), nullptr, TRUE};
    HANDLE read = nullptr;
    if (!CreatePipe(&read, &h, &sa, 0)) return nullptr;
    SetHandleInformation(read, HANDLE_FLAG_INHERIT, 0);  // ours alone; only the write end goes to the command
    reader->read = read;
    return h;
  }
  if (mode == -2) {
    SECURITY_ATTRIBUTES sa = {sizeof(sa), nullptr, TRUE};
    h = CreateFileW(L"NUL", index == 0 ? GENERIC_READ : GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, &sa,
                    OPEN_EXISTING, 0, nullptr);
    return h == INVALID_HANDLE_VALUE ? nullptr : h;
  }
  static const DWORD kStd[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
  HANDLE ours = GetStdHandle(kStd[index]);
  if (ours == nullptr || ours == INVALID_HANDLE_VALUE) return nullptr;
  if (!DuplicateHandle(GetCurrentProcess(), ours, GetCurrentProcess(), &h, 0, TRUE, DUPLICATE_SAME_ACCESS))
    return nullptr;
  return h;
}

SpawnResult SpawnImpl(const SpawnOptions& o, SpawnDoneFn done, void* context) {
  SpawnResult res;  // stage kStageSetup until CreateProcessW
  for (int i = 0; i < 3; i++) {
    if (o.stdio[i] != -1 && o.stdio[i] != -2 && !(o.stdio[i] == -3 && i > 0)) {
      res.error = ENOTSUP;
      return res;
    }
  }
  std::unique_ptr<Waiter> w(new (std::nothrow) Waiter());
  if (!w) {
    res.error = ENOMEM;
    return res;
  }
  w->done = done;
  w->context = context;
  for (double& s : w->slots) s = NAN;
  w->slots[kSpExited] = 0;
  w->slots[kSpContaminationBytes] = 0;  // no fork: nothing of ours is in the command's peak
  std::wstring file = Wide(o.file);
  std::vector<std::wstring> wargs;
  for (const auto& a : o.args) wargs.push_back(Wide(a));
  std::wstring cmdline = BuildCommandLine(wargs);
  std::wstring env = EnvBlock(o.env);
  std::wstring cwd = Wide(o.cwd);

  HANDLE std_handles[3] = {nullptr, nullptr, nullptr};
  std::vector<HANDLE> inherit;
  for (int i = 0; i < 3; i++) {
    std_handles[i] = ChildStdHandle(i, o.stdio[i], &w->pipes[i]);
    if (std_handles[i] != nullptr && std::find(inherit.begin(), inherit.end(), std_handles[i]) == inherit.end())
      inherit.push_back(std_handles[i]);
  }
  auto close_std = [&]() {
    for (HANDLE h : std_handles)
      if (h != nullptr) CloseHandle(h);
  };
  // The readers start now: if the command never starts, closing the write ends (close_std) ends their streams and
  // the Waiter's destructor joins them.
  for (int i = 1; i < 3; i++) {
    if (o.stdio[i] != -3) continue;
    if (w->pipes[i].read == nullptr) {  // CreatePipe failed
      res.error = ErrnoOf(GetLastError());
      close_std();
      return res;
    }
    w->piped = true;
    PipeReader* p = &w->pipes[i];
    try {
      p->thread = std::thread([p] { p->Run(); });
    } catch (...) {  // no thread (resource limits); the command was not started
      close_std();
      res.error = EAGAIN;
      return res;
    }
  }

  STARTUPINFOEXW si = {};
  si.StartupInfo.cb = sizeof(si);
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdInput = std_handles[0];
  si.StartupInfo.hStdOutput = std_handles[1];
  si.StartupInfo.hStdError = std_handles[2];
  // Only these handles are inherited (PROC_THREAD_ATTRIBUTE_HANDLE_LIST); where the attribute list cannot be
  // built, plain inheritance of every inheritable handle is the fallback.
  std::vector<char> attr_buf;
  DWORD flags = CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT;
  SIZE_T attr_size = 0;
  InitializeProcThreadAttributeList(nullptr, 1, 0, &attr_size);
  if (!inherit.empty() && attr_size > 0) {
    attr_buf.resize(attr_size);
    auto* list = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attr_buf.data());
    if (InitializeProcThreadAttributeList(list, 1, 0, &attr_size)) {
      if (UpdateProcThreadAttribute(list, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit.data(),
                                    inherit.size() * sizeof(HANDLE), nullptr, nullptr)) {
        si.lpAttributeList = list;
        flags |= EXTENDED_STARTUPINFO_PRESENT;
      } else {
        DeleteProcThreadAttributeList(list);
      }
    }
  }

  HANDLE job = CreateJobObjectW(nullptr, nullptr);
  if (job == nullptr) {
    res.error = ErrnoOf(GetLastError());
    close_std();
    return res;
  }
  // Processes the command starts may leave the job when they ask to (CREATE_BREAKAWAY_FROM_JOB), as they could
  // without us; without BREAKAWAY_OK their CreateProcess would fail with access denied.
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION job_limits = {};
  job_limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_BREAKAWAY_OK;
  SetInformationJobObject(job, JobObjectExtendedLimitInformation, &job_limits, sizeof(job_limits));
  w->slots[kSpStartMonoMs] = proc::MonotonicMs();
  PROCESS_INFORMATION pi = {};
  BOOL ok = CreateProcessW(file.c_str(), &cmdline[0], nullptr, nullptr, inherit.empty() ? FALSE : TRUE, flags, &env[0],
                           cwd.empty() ? nullptr : cwd.c_str(), &si.StartupInfo, &pi);
  DWORD create_error = ok ? 0 : GetLastError();
  if (si.lpAttributeList != nullptr) DeleteProcThreadAttributeList(si.lpAttributeList);
  close_std();
  if (!ok) {
    CloseHandle(job);
    res.error = ErrnoOf(create_error);
    // ERROR_DIRECTORY: "the directory name is invalid", the cwd (JavaScript checked it exists; it may have gone)
    res.stage = create_error == ERROR_DIRECTORY ? kStageChdir : kStageExec;
    return res;
  }
  if (!AssignProcessToJobObject(job, pi.hProcess)) {
    // Not in a job (e.g. our own job forbids nesting): the command never ran a single instruction.
    DWORD e = GetLastError();
    TerminateProcess(pi.hProcess, 1);
    WaitForSingleObject(pi.hProcess, INFINITE);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    CloseHandle(job);
    res.error = e == ERROR_ACCESS_DENIED ? EPERM : ErrnoOf(e);
    return res;
  }
  // The waiter before the command runs a single instruction: without one, nobody would report it.
  Waiter* waiter = w.get();
  try {
    std::thread t(Wait, pi.hProcess, job, waiter);  // it owns both handles and the Waiter
    w.release();
    t.detach();
  } catch (...) {  // no thread (resource limits): nothing may throw across N-API; the command never ran
    TerminateJobObject(job, 1);
    WaitForSingleObject(pi.hProcess, INFINITE);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    CloseHandle(job);
    res.error = EAGAIN;
    res.stage = kStageThread;
    return res;
  }
  if (ResumeThread(pi.hThread) == static_cast<DWORD>(-1)) {
    // The command never ran: end it (the waiter, told first, only cleans up) and report the error.
    DWORD e = GetLastError();
    waiter->cancelled.store(true);
    TerminateJobObject(job, 1);  // the waiter still holds the job handle: it closes it after the process ended
    CloseHandle(pi.hThread);
    res.error = ErrnoOf(e);
    res.stage = kStageExec;
    return res;
  }
  res.pid = static_cast<int>(pi.dwProcessId);
  CloseHandle(pi.hThread);
  return res;
}

}  // namespace

// No C++ exception leaves: a std::bad_alloc while building the command line or the environment is ENOMEM.
SpawnResult Spawn(const SpawnOptions& o, SpawnDoneFn done, void* context) {
  try {
    return SpawnImpl(o, done, context);
  } catch (...) {
    SpawnResult res;
    res.error = ENOMEM;
    return res;
  }
}

}  // namespace taskmeter
