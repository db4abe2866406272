#include "cuda_order.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

#ifndef _WIN32
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../posix_child.h"
#endif

namespace taskmeter {
namespace nvml {

std::string UuidHex(const std::string& uuid) {
  std::string hex;
  size_t start = uuid.find('-');  // skip the GPU-/MIG- prefix
  for (size_t i = start == std::string::npos ? 0 : start + 1; i < uuid.size(); i++) {
    char c = uuid[i];
    if (std::isxdigit(static_cast<unsigned char>(c))) hex.push_back(static_cast<char>(std::tolower(c)));
  }
  return hex;
}

#ifdef _WIN32
bool CudaVisibleUuids(const std::string&, std::vector<std::string>*, std::string* why) {
  *why = "not implemented on Windows";
  return false;
}
bool CudaOrderFromHelper(const Env&, int, std::vector<std::string>*, std::string* why) {
  *why = "not implemented on Windows";
  return false;
}
#else

bool CudaVisibleUuids(const std::string& library, std::vector<std::string>* out, std::string* why) {
  const char* lib = library.empty() ? "libcuda.so.1" : library.c_str();
  void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    *why = std::string("the CUDA driver library could not be loaded (") + lib + ")";
    return false;
  }
  using InitFn = int (*)(unsigned);
  using CountFn = int (*)(int*);
  using GetFn = int (*)(int*, int);
  using UuidFn = int (*)(unsigned char*, int);  // CUuuid is 16 bytes
  auto init = reinterpret_cast<InitFn>(dlsym(h, "cuInit"));
  auto count = reinterpret_cast<CountFn>(dlsym(h, "cuDeviceGetCount"));
  auto get = reinterpret_cast<GetFn>(dlsym(h, "cuDeviceGet"));
  auto uuid = reinterpret_cast<UuidFn>(dlsym(h, "cuDeviceGetUuid_v2"));
  if (uuid == nullptr) uuid = reinterpret_cast<UuidFn>(dlsym(h, "cuDeviceGetUuid"));
  if (!init || !count || !get || !uuid) {
    *why = "the CUDA driver library lacks cuInit/cuDeviceGetCount/cuDeviceGet/cuDeviceGetUuid";
    return false;
  }
  int r = init(0);
  if (r != 0) {
    *why = "cuInit failed (CUresult " + std::to_string(r) + ")";
    return false;
  }
  int n = 0;
  if (count(&n) != 0 || n < 0 || n > 64) {
    *why = "cuDeviceGetCount failed";
    return false;
  }
  for (int i = 0; i < n; i++) {
    int dev = 0;
    unsigned char b[16];
    if (get(&dev, i) != 0 || uuid(b, dev) != 0) {
      *why = "cuDeviceGetUuid failed for CUDA device " + std::to_string(i);
      return false;
    }
    char hex[33];
    for (int k = 0; k < 16; k++) std::snprintf(hex + 2 * k, 3, "%02x", b[k]);
    out->push_back(hex);
  }
  return true;  // libcuda stays loaded: the helper exits right after
}

namespace {
double NowMs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
}  // namespace

bool CudaOrderFromHelper(const Env& env, int timeout_ms, std::vector<std::string>* out, std::string* why) {
  if (env.node_path.empty() || env.addon_path.empty()) {
    *why = "no node executable or addon path to run the CUDA helper with";
    return false;
  }
  int fds[2];
  if (CloexecPipe(fds) != 0) {  // posix_child.h
    *why = "pipe failed";
    return false;
  }
  const char* script =
      "try{const a=require(process.argv[1]);for(const u of a.cudaVisibleUuids())console.log(u)}"
      "catch(e){console.log('error: '+e.message)}";
  std::vector<std::string> args = {env.node_path, "-e", script, env.addon_path};
  // The helper's environment: the measured process's, as captured on the JS thread (this thread never reads
  // environ), so that CUDA sees what the process's own CUDA would; only the helper's own GPU code is turned off.
  std::vector<std::string> envs;
  // NODE_OPTIONS is dropped: a --require that prints would mix its output into the helper's answer.
  for (const auto& e : env.environment)
    if (e.rfind("TASKMETER_DISABLE_GPU=", 0) != 0 && e.rfind("NODE_OPTIONS=", 0) != 0) envs.push_back(e);
  envs.push_back("TASKMETER_DISABLE_GPU=1");
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  // fork + execve; between them only async-signal-safe calls, on arrays prepared above. All signals are blocked
  // across the fork so that no handler of Node's runs in the copy; the child resets every disposition, then unblocks.
  sigset_t all, old_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  pid_t pid = fork();
  if (pid == 0) {
    ChildResetSignals();  // posix_child.h
    // Close-on-exec: only 0, 1 and 2 reach the helper (dup2 clears the flag on its target; a descriptor that
    // already is its target keeps it, so it is cleared by hand).
    auto place = [](int from, int to) {
      if (from < 0) return;
      if (from == to) {
        fcntl(to, F_SETFD, 0);
      } else {
        dup2(from, to);
      }
    };
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int err = open("/dev/null", O_WRONLY | O_CLOEXEC);
    place(in, 0);
    place(err, 2);
    place(fds[1], 1);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    *why = std::string("could not start the CUDA helper: ") + std::strerror(fork_errno);
    return false;
  }
  std::string text;
  double deadline = NowMs() + timeout_ms;
  bool timed_out = false;
  for (;;) {
    int left = static_cast<int>(deadline - NowMs());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = poll(&p, 1, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[512];
    ssize_t got = read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buf, static_cast<size_t>(got));
    if (text.size() > 65536) break;
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (timed_out) {
    *why = "the CUDA helper did not answer within " + std::to_string(timeout_ms) + " ms";
    return false;
  }
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    if (line.empty()) continue;
    if (line.rfind("error: ", 0) == 0) {
      *why = line.substr(7);
      out->clear();
      return false;
    }
    if (line.size() != 32 || UuidHex(line) != line) {
      *why = "the CUDA helper answered something unexpected";
      out->clear();
      return false;
    }
    out->push_back(line);
  }
  return true;
}

#endif

}  // namespace nvml
}  // namespace taskmeter
