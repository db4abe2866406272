// Wiring only: the exported functions, argument checks and the per-environment lifecycle. The work lives in
// proc/ (process metrics), sampler.* (the background threads and their windows) and nvml/ (the GPU).
#include <napi.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "errors.h"
#include "nvml/cuda_order.h"
#include "proc/proc.h"
#include "sampler.h"
#include "spawn.h"

namespace taskmeter {
namespace {

// Callers (src/binding.ts) pass preallocated Float64Arrays; a wrong one is a programming error inside the package,
// reported as a TypeError rather than a crash.
Napi::Float64Array Float64Out(const Napi::CallbackInfo& info, size_t index, size_t min_length) {
  if (info.Length() <= index || !info[index].IsTypedArray() ||
      info[index].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    ThrowCodeError(info.Env(), ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "expected a Float64Array");
    return Napi::Float64Array();
  }
  auto arr = info[index].As<Napi::Float64Array>();
  if (arr.ElementLength() < min_length) {
    ThrowCodeError(info.Env(), ErrorKind::kRangeError, "ERR_OUT_OF_RANGE", "Float64Array too short");
    return Napi::Float64Array();
  }
  return arr;
}

// Window ids are integers below 2^53 (native/sampler.h, L6): exact in a JS number.
bool WindowId(const Napi::CallbackInfo& info, uint64_t* id) {
  double d = info.Length() >= 1 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowCodeError(info.Env(), ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "expected a window id");
    return false;
  }
  *id = static_cast<uint64_t>(d);
  return true;
}

// A window's edge: the process's figures with the calling thread's CPU, less what taskmeter's own threads added to the
// getrusage counters (as their CPU is left out of a window's: usage.samplerCpuMs).
void ReadEdge(double* out) {
  proc::ReadSelf(out, true);
  Sampler::Instance().SubtractOwnCounters(out);
}

// No C++ exception may cross into N-API (it would reach std::terminate): every exported function runs inside this.
// What it catches (std::bad_alloc, std::system_error from a thread start) becomes a JS Error with a code.
template <typename Fn>
Napi::Value Guarded(const Napi::CallbackInfo& info, Fn fn) {
  const char* what = "unknown exception";
  try {
    return fn();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {}
  Napi::Env env = info.Env();
  ThrowCodeError(env, ErrorKind::kError, "ERR_TASKMETER_NATIVE", std::string("taskmeter: native error: ") + what);
  return env.Undefined();
}

// "WinTreeRssBytes" → "WIN_TREE_RSS_BYTES": the name src/binding.ts uses for kWinTreeRssBytes.
std::string UpperSnake(const std::string& prefix, const char* name) {
  std::string out = prefix;
  for (size_t i = 0; name[i] != '\0'; i++) {
    char c = name[i];
    bool upper = c >= 'A' && c <= 'Z';
    if (upper && i > 0) {
      char prev = name[i - 1];
      bool prev_lower_or_digit = (prev >= 'a' && prev <= 'z') || (prev >= '0' && prev <= '9');
      bool next_lower = name[i + 1] >= 'a' && name[i + 1] <= 'z';
      bool prev_upper = prev >= 'A' && prev <= 'Z';
      if (prev_lower_or_digit || (prev_upper && next_lower)) out += '_';
    }
    out += static_cast<char>(upper || c < 'a' || c > 'z' ? c : c - 'a' + 'A');
  }
  return out;
}

// { NAME: index, … } of one X-macro list (see layout.h).
template <size_t N>
Napi::Object LayoutMap(Napi::Env env, const char* const (&names)[N], const char* prefix = "") {
  Napi::Object o = Napi::Object::New(env);
  for (size_t i = 0; i < N; i++) o.Set(UpperSnake(prefix, names[i]), static_cast<double>(i));
  return o;
}

constexpr const char* kSnapshotSlotNames[] = TASKMETER_ENUM_NAMES(TASKMETER_SNAPSHOT_SLOTS);
constexpr const char* kWindowSlotNames[] = TASKMETER_ENUM_NAMES(TASKMETER_WINDOW_SLOTS);
constexpr const char* kTimelineColumnNames[] = TASKMETER_ENUM_NAMES(TASKMETER_TIMELINE_COLUMNS);
constexpr const char* kGpuWindowSlotNames[] = TASKMETER_ENUM_NAMES(TASKMETER_GPU_WINDOW_SLOTS);
constexpr const char* kGpuSnapshotSlotNames[] = TASKMETER_ENUM_NAMES(TASKMETER_GPU_SNAPSHOT_SLOTS);
constexpr const char* kSpawnSlotNames[] = TASKMETER_ENUM_NAMES(TASKMETER_SPAWN_SLOTS);
constexpr const char* kSpawnStageNames[] = TASKMETER_ENUM_NAMES(TASKMETER_SPAWN_STAGES);
constexpr const char* kProcReasonNames[] = TASKMETER_ENUM_NAMES(TASKMETER_PROC_REASONS);
constexpr const char* kEnergyReasonNames[] = TASKMETER_ENUM_NAMES(TASKMETER_ENERGY_REASONS);
constexpr const char* kGpuStateNames[] = TASKMETER_ENUM_NAMES(TASKMETER_GPU_STATES);
constexpr const char* kPowerSourceNames[] = TASKMETER_ENUM_NAMES(TASKMETER_POWER_SOURCES);
constexpr const char* kGpuKindNames[] = TASKMETER_ENUM_NAMES(TASKMETER_GPU_KINDS);
static_assert(sizeof(kSnapshotSlotNames) / sizeof(char*) == proc::kSnapshotSlots, "SnapshotSlot list");
static_assert(sizeof(kWindowSlotNames) / sizeof(char*) == kWindowSlots, "WindowSlot list");
static_assert(sizeof(kTimelineColumnNames) / sizeof(char*) == kTimelineColumns, "TimelineColumn list");
static_assert(sizeof(kGpuWindowSlotNames) / sizeof(char*) == kGpuWindowSlots, "GpuWindowSlot list");
static_assert(sizeof(kGpuSnapshotSlotNames) / sizeof(char*) == kGpuSnapshotSlots, "GpuSnapshotSlot list");
static_assert(sizeof(kSpawnSlotNames) / sizeof(char*) == kSpawnSlots, "SpawnSlot list");

// Every shared layout, as the addon's `layouts` value.
Napi::Object Layouts(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("SnapshotSlot", LayoutMap(env, kSnapshotSlotNames, "SNAP_"));
  o.Set("WindowSlot", LayoutMap(env, kWindowSlotNames));
  o.Set("TimelineColumn", LayoutMap(env, kTimelineColumnNames));
  o.Set("GpuWindowSlot", LayoutMap(env, kGpuWindowSlotNames));
  o.Set("GpuSnapshotSlot", LayoutMap(env, kGpuSnapshotSlotNames));
  o.Set("SpawnSlot", LayoutMap(env, kSpawnSlotNames));
  o.Set("SpawnStage", LayoutMap(env, kSpawnStageNames, "SPAWN_"));
  o.Set("ProcReason", LayoutMap(env, kProcReasonNames));
  o.Set("EnergyReason", LayoutMap(env, kEnergyReasonNames));
  o.Set("GpuState", LayoutMap(env, kGpuStateNames));
  o.Set("PowerSource", LayoutMap(env, kPowerSourceNames));
  o.Set("GpuKind", LayoutMap(env, kGpuKindNames));
  return o;
}

// gpuInfo().state: "pending", "ready", "unavailable", "disabled".
std::string StateName(GpuState s) {
  int i = static_cast<int>(s);
  std::string name =
      i >= 0 && i < static_cast<int>(sizeof(kGpuStateNames) / sizeof(char*)) ? kGpuStateNames[i] : "Unavailable";
  for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return name;
}

// The link between a spawned command's waiter thread and the JavaScript callback that takes its result. The
// thread-safe function may be finalized first (its environment torn down: a worker ended while the command ran);
// then the waiter still reaps the command and frees its result instead of calling into a dead environment.
struct SpawnWaitState {
  static std::atomic<int> live;
  std::mutex mu;
  bool closed = false;  // the thread-safe function is finalized: never touch it again
  int owners = 0;       // the thread-safe function and the waiter
  napi_threadsafe_function tsfn = nullptr;
  // Windows' piped stdout and stderr (SpawnOutput), handed to the exit callback after the slots.
  bool have_output = false, overflow = false;
  std::string out, err;

  // What travels from the waiter thread to the JS thread.
  struct Message {
    double slots[kSpawnSlots];
    bool have_output, overflow;
    std::string out, err;
  };

  SpawnWaitState() { live++; }
  ~SpawnWaitState() { live--; }

  void Drop() {
    bool last;
    {
      std::lock_guard<std::mutex> lock(mu);
      last = --owners == 0;
    }
    if (last) delete this;
  }
  // Waiter thread, once.
  static void Done(void* context, const double* slots) {
    auto* st = static_cast<SpawnWaitState*>(context);
    {
      std::lock_guard<std::mutex> lock(st->mu);
      if (!st->closed) {
        Message* m = new (std::nothrow) Message();
        if (m) {
          std::memcpy(m->slots, slots, kSpawnSlots * sizeof(double));
          m->have_output = st->have_output;
          m->overflow = st->overflow;
          m->out.swap(st->out);
          m->err.swap(st->err);
          if (napi_call_threadsafe_function(st->tsfn, m, napi_tsfn_nonblocking) != napi_ok) delete m;
        }
        napi_release_threadsafe_function(st->tsfn, napi_tsfn_release);
      }
    }
    st->Drop();
  }
  // JS thread; env is null when the function is torn down with the result still queued.
  // onExit(slots) — or, with Windows' piped streams, onExit(slots, stdout, stderr, overflow).
  static void CallJs(napi_env env, napi_value js_cb, void* context, void* data) {
    Message* m = static_cast<Message*>(data);
    if (env != nullptr && js_cb != nullptr) {
      napi_value args[4], arr_buf, undefined;
      void* bytes = nullptr;
      if (napi_create_arraybuffer(env, kSpawnSlots * sizeof(double), &bytes, &arr_buf) == napi_ok &&
          napi_create_typedarray(env, napi_float64_array, kSpawnSlots, arr_buf, 0, &args[0]) == napi_ok) {
        std::memcpy(bytes, m->slots, kSpawnSlots * sizeof(double));
        size_t argc = 1;
        if (m->have_output &&
            napi_create_buffer_copy(env, m->out.size(), m->out.data(), nullptr, &args[1]) == napi_ok &&
            napi_create_buffer_copy(env, m->err.size(), m->err.data(), nullptr, &args[2]) == napi_ok &&
            napi_get_boolean(env, m->overflow, &args[3]) == napi_ok) {
          argc = 4;
        }
        napi_get_undefined(env, &undefined);
        napi_call_function(env, undefined, js_cb, argc, args, nullptr);
      }
    }
    delete m;
  }
  static void Finalize(napi_env, void* data, void*) {
    auto* st = static_cast<SpawnWaitState*>(data);
    {
      std::lock_guard<std::mutex> lock(st->mu);
      st->closed = true;
    }
    st->Drop();
  }
};
std::atomic<int> SpawnWaitState::live{0};

class TaskmeterAddon : public Napi::Addon<TaskmeterAddon> {
  using Method = Napi::Value (TaskmeterAddon::*)(const Napi::CallbackInfo&);
  template <Method M>
  Napi::Value G(const Napi::CallbackInfo& info) {
    return Guarded(info, [&] { return (this->*M)(info); });
  }

 public:
  TaskmeterAddon(Napi::Env env, Napi::Object exports) {
    // Retain never throws (a thread that cannot start is reported through gpuInfo()); the guard is for bad_alloc.
    // The GPU thread's environment is read here, on this environment's JS thread: it never calls getenv itself (L8).
    try {
      Sampler::Instance().Retain(nvml::ReadEnv());
      retained_ = true;
    } catch (...) {}
    DefineAddon(exports,
                {
                    InstanceMethod("snapshot", &TaskmeterAddon::G<&TaskmeterAddon::Snapshot>),
                    InstanceMethod("bindSnapshotBuffer", &TaskmeterAddon::G<&TaskmeterAddon::BindSnapshotBuffer>),
                    InstanceMethod("snapshotBound", &TaskmeterAddon::G<&TaskmeterAddon::SnapshotBound>),
                    InstanceMethod("threadCpuMs", &TaskmeterAddon::G<&TaskmeterAddon::ThreadCpuMs>),
                    InstanceMethod("bindWindowBuffer", &TaskmeterAddon::G<&TaskmeterAddon::BindWindowBuffer>),
                    InstanceMethod("windowOpen", &TaskmeterAddon::G<&TaskmeterAddon::WindowOpen>),
                    InstanceMethod("windowSetPids", &TaskmeterAddon::G<&TaskmeterAddon::WindowSetPids>),
                    InstanceMethod("windowRead", &TaskmeterAddon::G<&TaskmeterAddon::WindowRead>),
                    InstanceMethod("windowConfigure", &TaskmeterAddon::G<&TaskmeterAddon::WindowConfigure>),
                    InstanceMethod("windowTimeline", &TaskmeterAddon::G<&TaskmeterAddon::WindowTimeline>),
                    InstanceMethod("spawn", &TaskmeterAddon::G<&TaskmeterAddon::SpawnCommand>),
                    InstanceMethod("spawnPending", &TaskmeterAddon::G<&TaskmeterAddon::SpawnPending>),
                    InstanceMethod("spawnSignal", &TaskmeterAddon::G<&TaskmeterAddon::SpawnSignal>),
                    InstanceMethod("killTree", &TaskmeterAddon::G<&TaskmeterAddon::KillTreeJs>),
                    InstanceMethod("readSelfIo", &TaskmeterAddon::G<&TaskmeterAddon::ReadSelfIo>),
                    InstanceValue("SPAWN_SLOTS", Napi::Number::New(env, kSpawnSlots), napi_enumerable),
                    InstanceValue("TIMELINE_COLUMNS", Napi::Number::New(env, kTimelineColumns), napi_enumerable),
                    InstanceMethod("windowClose", &TaskmeterAddon::G<&TaskmeterAddon::WindowClose>),
                    InstanceMethod("samplerState", &TaskmeterAddon::G<&TaskmeterAddon::SamplerState>),
                    InstanceMethod("gpuWait", &TaskmeterAddon::G<&TaskmeterAddon::GpuWait>),
                    InstanceMethod("gpuInfo", &TaskmeterAddon::G<&TaskmeterAddon::GpuInfo>),
                    InstanceMethod("nvmlErrorText", &TaskmeterAddon::G<&TaskmeterAddon::NvmlErrorText>),
                    InstanceMethod("testHook", &TaskmeterAddon::G<&TaskmeterAddon::TestHook>),
                    InstanceMethod("cudaVisibleUuids", &TaskmeterAddon::G<&TaskmeterAddon::CudaVisibleUuids>),
                    InstanceValue("SNAPSHOT_SLOTS", Napi::Number::New(env, proc::kSnapshotSlots), napi_enumerable),
                    InstanceValue("WINDOW_SLOTS", Napi::Number::New(env, kWindowSlots), napi_enumerable),
                    InstanceValue("GPU_WINDOW_SLOTS", Napi::Number::New(env, kGpuWindowSlots), napi_enumerable),
                    InstanceValue("GPU_SNAPSHOT_SLOTS", Napi::Number::New(env, kGpuSnapshotSlots), napi_enumerable),
                    InstanceValue("PSS_CPU_BUDGET", Napi::Number::New(env, kPssCpuBudget), napi_enumerable),
                    InstanceValue("layouts", Layouts(env), napi_enumerable),
                });
  }

  // Runs at environment teardown (worker exit, main-thread shutdown). Safe at any stage: closing no windows and
  // releasing a sampler that never started are no-ops.
  ~TaskmeterAddon() {
    try {
      Sampler::Instance().CloseOwnedBy(this);
      if (retained_) Sampler::Instance().Release();
    } catch (...) {  // a destructor is noexcept: an escaping exception would be std::terminate
    }
  }

 private:
  // snapshot(out): process slots, then (if out is long enough) the cached GPU slots. Never calls NVML.
  Napi::Value Snapshot(const Napi::CallbackInfo& info) {
    Napi::Float64Array out = Float64Out(info, 0, proc::kSnapshotSlots);
    if (out.IsEmpty()) return info.Env().Undefined();
    // snapshot(out, withThreadCpu): the calling thread's CPU only when asked (a window's reading of its usage so far)
    bool thread_cpu = info.Length() > 1 && info[1].ToBoolean().Value();
    if (thread_cpu) {
      ReadEdge(out.Data());
    } else {
      proc::ReadSelf(out.Data());
    }
    size_t len = out.ElementLength();
    if (len > proc::kSnapshotSlots) {
      Sampler::Instance().ReadGpuCache(out.Data() + proc::kSnapshotSlots, len - proc::kSnapshotSlots);
    }
    return info.Env().Undefined();
  }

  // A Float64Array kept (referenced, so its memory stays put) for the hot calls, which then need no argument to
  // check or unwrap.
  struct Bound {
    Napi::Reference<Napi::Float64Array> ref;
    double* data = nullptr;
    size_t len = 0;
  };
  Napi::Value Bind(const Napi::CallbackInfo& info, size_t min_length, Bound* b) {
    Napi::Float64Array out = Float64Out(info, 0, min_length);
    if (out.IsEmpty()) return info.Env().Undefined();
    b->ref = Napi::Persistent(out);
    b->data = out.Data();
    b->len = out.ElementLength();
    return info.Env().Undefined();
  }
  // bindSnapshotBuffer(out): where snapshotBound(), windowOpen(interval) and windowClose(id) write snapshots.
  Napi::Value BindSnapshotBuffer(const Napi::CallbackInfo& info) { return Bind(info, proc::kSnapshotSlots, &snap_); }
  // bindWindowBuffer(out): where windowClose(id) writes the window's stats.
  Napi::Value BindWindowBuffer(const Napi::CallbackInfo& info) { return Bind(info, kWindowSlots, &win_); }

  Napi::Value SnapshotBound(const Napi::CallbackInfo& info) {
    if (snap_.data == nullptr) {
      ThrowCodeError(info.Env(), ErrorKind::kError, "ERR_TASKMETER_NO_BUFFER", "no snapshot buffer bound");
      return info.Env().Undefined();
    }
    proc::ReadSelf(snap_.data);
    if (snap_.len > proc::kSnapshotSlots) {
      Sampler::Instance().ReadGpuCache(snap_.data + proc::kSnapshotSlots, snap_.len - proc::kSnapshotSlots);
    }
    return info.Env().Undefined();
  }

  // threadCpuMs(): the calling thread's CPU time, ms (NaN if unreadable). Read at every task switch of a taskCpu
  // window (src/taskcpu.ts): one clock read and nothing else.
  Napi::Value ThreadCpuMs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), proc::SelfThreadCpuMs());
  }

  Napi::Value WindowOpen(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      ThrowCodeError(info.Env(), ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "expected an interval");
      return info.Env().Undefined();
    }
    double interval = info[0].As<Napi::Number>().DoubleValue();
    if (!(interval >= 1 && interval <= 60000)) {
      ThrowCodeError(info.Env(), ErrorKind::kRangeError, "ERR_OUT_OF_RANGE", "interval out of range");
      return info.Env().Undefined();
    }
    // Optional: the start snapshot, taken in the same call (one JS→native crossing per window end).
    Napi::Float64Array snap;
    if (info.Length() > 1) {
      snap = Float64Out(info, 1, proc::kSnapshotSlots);
      if (snap.IsEmpty()) return info.Env().Undefined();
    }
    Sampler& sampler = Sampler::Instance();
    double* start = !snap.IsEmpty() ? snap.Data() : snap_.data;
    // The start reading's number is reserved as the window opens (a window opened by another thread meanwhile comes
    // after it); it is read without the sampler's lock.
    uint64_t seq = 0;
    uint64_t id = sampler.Open(static_cast<uint32_t>(interval), this, start != nullptr ? &seq : nullptr);
    if (start != nullptr) {
      ReadEdge(start);  // the process slots only: a window's endpoints need no GPU cache
      // The window's start is an observation for every window open now (an outer window's peak covers it).
      sampler.ObserveRss(seq, start[proc::kRssBytes]);
    }
    return Napi::Number::New(info.Env(), static_cast<double>(id));
  }

  Napi::Value WindowSetPids(const Napi::CallbackInfo& info) {
    uint64_t id;
    if (!WindowId(info, &id)) return info.Env().Undefined();
    if (info.Length() < 2 || !info[1].IsArray()) {
      ThrowCodeError(info.Env(), ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "expected an array of pids");
      return info.Env().Undefined();
    }
    Napi::Array arr = info[1].As<Napi::Array>();
    std::vector<uint32_t> pids;
    pids.reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr[i];
      if (!v.IsNumber()) continue;
      double d = v.As<Napi::Number>().DoubleValue();
      if (d >= 1 && d <= 4294967295.0) pids.push_back(static_cast<uint32_t>(d));
    }
    return Napi::Boolean::New(info.Env(), Sampler::Instance().SetPids(id, std::move(pids)));
  }

  // windowConfigure(id, rootPid, baselineExisting, descendants, timeline)
  Napi::Value WindowConfigure(const Napi::CallbackInfo& info) {
    uint64_t id;
    if (!WindowId(info, &id)) return info.Env().Undefined();
    uint32_t root = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
    auto flag = [&](size_t i) { return info.Length() > i && info[i].ToBoolean().Value(); };
    return Napi::Boolean::New(info.Env(), Sampler::Instance().Configure(id, root, flag(2), flag(3), flag(4)));
  }

  // windowTimeline(id) → { points: Float64Array, maxHwmComm } (moves the points out), or null.
  Napi::Value WindowTimeline(const Napi::CallbackInfo& info) {
    uint64_t id;
    if (!WindowId(info, &id)) return info.Env().Undefined();
    std::vector<double> points;
    std::string comm;
    if (!Sampler::Instance().TakeTimeline(id, &points, &comm)) return info.Env().Null();
    Napi::Float64Array arr = Napi::Float64Array::New(info.Env(), points.size());
    if (!points.empty()) std::memcpy(arr.Data(), points.data(), points.size() * sizeof(double));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("points", arr);
    o.Set("maxHwmComm", comm);
    return o;
  }

  // spawn(file, argv, env, cwd, stdio[3], onExit) → { pid, fds: [stdin, stdout, stderr] }; onExit(slots) is called
  // once, through a thread-safe function, when the waiter thread has reaped the command: no polling, and the
  // running command keeps the event loop alive (the function is ref'd until then). Throws with .errno and .stage
  // (SpawnStage) when the command cannot be started. No C++ exception leaves this function.
  Napi::Value SpawnCommand(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 6 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsArray() || !info[4].IsArray() ||
        !info[5].IsFunction()) {
      ThrowCodeError(env, ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "spawn(file, argv, env, cwd, stdio, onExit)");
      return env.Undefined();
    }
    SpawnOptions o;
    SpawnResult r;
    SpawnWaitState* state = nullptr;
    try {
      o.file = info[0].As<Napi::String>().Utf8Value();
      auto strings = [](Napi::Array a, std::vector<std::string>* out) {
        for (uint32_t i = 0; i < a.Length(); i++) out->push_back(a.Get(i).ToString().Utf8Value());
      };
      strings(info[1].As<Napi::Array>(), &o.args);
      strings(info[2].As<Napi::Array>(), &o.env);
      if (info[3].IsString()) o.cwd = info[3].As<Napi::String>().Utf8Value();
      Napi::Array stdio = info[4].As<Napi::Array>();
      for (uint32_t i = 0; i < 3 && i < stdio.Length(); i++) o.stdio[i] = stdio.Get(i).ToNumber().Int32Value();
      state = new SpawnWaitState();
    } catch (...) {
      delete state;
      ThrowErrnoError(env, ENOMEM, "taskmeter: out of memory", kStageSetup);
      return env.Undefined();
    }
    if (env.IsExceptionPending()) {
      delete state;
      return env.Undefined();
    }
    napi_value name;
    napi_create_string_utf8(env, "taskmeter:spawn", NAPI_AUTO_LENGTH, &name);
    // Two owners of the state: the thread-safe function (its finalizer) and the waiter (SpawnDone).
    state->owners = 2;
    if (napi_create_threadsafe_function(env, info[5], nullptr, name, 0, 1, state, SpawnWaitState::Finalize, state,
                                        SpawnWaitState::CallJs, &state->tsfn) != napi_ok) {
      delete state;
      ThrowErrnoError(env, EAGAIN, "taskmeter: could not create the exit notifier", kStageSetup);
      return env.Undefined();
    }
    // The waiter thread is detached and calls SpawnWaitState::Done when the child ends, possibly after this
    // environment (the last one using the addon) is gone and Node unloaded the module: keep it loaded.
    PinThisModule();
    r = Spawn(o, SpawnWaitState::Done, state);
    if (r.pid < 0) {
      state->Drop();  // the waiter's share: there is no waiter
      napi_release_threadsafe_function(state->tsfn, napi_tsfn_release);
      ThrowErrnoError(env, r.error, std::strerror(r.error), r.stage);
      return env.Undefined();
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("pid", r.pid);
    Napi::Array fds = Napi::Array::New(env, 3);
    for (uint32_t i = 0; i < 3; i++) fds[i] = Napi::Number::New(env, r.parent_fds[i]);
    out.Set("fds", fds);
    return out;
  }

  // spawnSignal(pid, signo) → 0 when sent, else an errno: ESRCH once the command has ended (its pid may name another
  // process soon), ENOSYS where commands are not signalled this way (Windows).
  Napi::Value SpawnSignal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
      ThrowCodeError(env, ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "spawnSignal(pid, signo)");
      return env.Undefined();
    }
#ifdef _WIN32
    return Napi::Number::New(env, ENOSYS);
#else
    double pid = info[0].As<Napi::Number>().DoubleValue();
    double sig = info[1].As<Napi::Number>().DoubleValue();
    if (!(pid >= 1 && pid <= 4194304) || !(sig >= 0 && sig < 128)) return Napi::Number::New(env, EINVAL);
    return Napi::Number::New(env, SignalCommand(static_cast<uint32_t>(pid), static_cast<int>(sig)));
#endif
  }

  // readSelfIo(out): out[0], out[1] = this process's rchar and wchar (NaN where unreadable).
  Napi::Value ReadSelfIo(const Napi::CallbackInfo& info) {
    Napi::Float64Array out = Float64Out(info, 0, 2);
    if (out.IsEmpty()) return info.Env().Undefined();
    proc::ReadSelfIo(&out.Data()[0], &out.Data()[1]);
    return info.Env().Undefined();
  }

  // killTree(pid, signo) → processes signalled, or -errno (POSIX; on Windows -ENOSYS: see spawn.h). Only a command
  // spawn() started and that has not ended (-ESRCH otherwise).
  Napi::Value KillTreeJs(const Napi::CallbackInfo& info) {
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
      ThrowCodeError(info.Env(), ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "killTree(pid, signo)");
      return info.Env().Undefined();
    }
#ifdef _WIN32
    return Napi::Number::New(info.Env(), -ENOSYS);
#else
    int pid = info[0].As<Napi::Number>().Int32Value();
    int signo = info[1].As<Napi::Number>().Int32Value();
    return Napi::Number::New(info.Env(), KillTree(pid, signo));
#endif
  }

  // How many spawned commands still have a waiter or an undelivered result (for the leak tests).
  Napi::Value SpawnPending(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), SpawnWaitState::live.load());
  }

  // windowRead(id, out[, snapshot]): the window's stats so far; with `snapshot`, a snapshot taken first (its RSS
  // counts for every open window).
  Napi::Value WindowRead(const Napi::CallbackInfo& info) {
    uint64_t id;
    if (!WindowId(info, &id)) return info.Env().Undefined();
    Napi::Float64Array out = Float64Out(info, 1, kWindowSlots);
    if (out.IsEmpty()) return info.Env().Undefined();
    double rss = NAN;
    uint64_t seq = 0;
    if (info.Length() > 2) {
      Napi::Float64Array snap = Float64Out(info, 2, proc::kSnapshotSlots);
      if (snap.IsEmpty()) return info.Env().Undefined();
      seq = Sampler::Instance().ReserveRssSeq();  // before the reading: see ReserveRssSeq
      ReadEdge(snap.Data());                      // as the window's edges: without taskmeter's own threads' counters
      rss = snap.Data()[proc::kRssBytes];
    }
    return Napi::Boolean::New(info.Env(), Sampler::Instance().Read(id, out.Data(), out.ElementLength(), seq, rss));
  }

  // windowClose(id): the end snapshot into the bound snapshot buffer, the stats into the bound window buffer.
  // windowClose(id, out[, endSnapshot]): the same into explicit buffers.
  Napi::Value WindowClose(const Napi::CallbackInfo& info) {
    uint64_t id;
    if (!WindowId(info, &id)) return info.Env().Undefined();
    if (info.Length() == 1) {
      if (snap_.data == nullptr || win_.data == nullptr) {
        ThrowCodeError(info.Env(), ErrorKind::kError, "ERR_TASKMETER_NO_BUFFER", "no buffers bound");
        return info.Env().Undefined();
      }
      uint64_t seq = Sampler::Instance().ReserveRssSeq();  // before the reading: see ReserveRssSeq
      ReadEdge(snap_.data);
      return Napi::Boolean::New(info.Env(),
                                Sampler::Instance().Close(id, win_.data, win_.len, seq, snap_.data[proc::kRssBytes]));
    }
    Napi::Float64Array out = Float64Out(info, 1, kWindowSlots);
    if (out.IsEmpty()) return info.Env().Undefined();
    // Optional: the end snapshot, taken before the window closes so that the window covers it (and, as every
    // window end, counts for the windows open around it).
    double rss = NAN;
    uint64_t seq = 0;
    if (info.Length() > 2) {
      Napi::Float64Array snap = Float64Out(info, 2, proc::kSnapshotSlots);
      if (snap.IsEmpty()) return info.Env().Undefined();
      seq = Sampler::Instance().ReserveRssSeq();
      ReadEdge(snap.Data());
      rss = snap.Data()[proc::kRssBytes];
    }
    return Napi::Boolean::New(info.Env(), Sampler::Instance().Close(id, out.Data(), out.ElementLength(), seq, rss));
  }

  Bound snap_;
  Bound win_;
  bool retained_ = false;

  Napi::Value SamplerState(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("openWindows", static_cast<double>(Sampler::Instance().OpenCount()));
    o.Set("threadRunning", Sampler::Instance().ThreadRunning());
    std::string err = Sampler::Instance().ThreadError();
    o.Set("threadError", err.empty() ? info.Env().Null() : Napi::Value(Napi::String::New(info.Env(), err)));
    o.Set("ownCpuMs", Sampler::Instance().OwnCpuMs());
    return o;
  }

  // testHook(name, value): for the tests only. "nextWindowId": the id the next window gets; "failThreadStarts": the
  // next n thread starts fail as they do under a pids limit; "throwInThreads": the RSS (1) and/or GPU (2) thread
  // throws std::bad_alloc at its next round; "throwBadAlloc": the next allocation in a window's opening (1) and/or in
  // adding the next RSS reading (2) throws std::bad_alloc; "failRssReads": the RSS thread's next n readings fail;
  // "holdFirstTreeRead" (1, 2: hold the next first sample of a tree at that point, 0: release) and
  // "firstTreeReadHeld" (→ whether one holds): tree.h;
  // "holdNextFork" (1) and "releaseFork" (1): POSIX, see HoldNextForkForTest (spawn.h).
  Napi::Value TestHook(const Napi::CallbackInfo& info) {
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
      ThrowCodeError(info.Env(), ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", "testHook(name, value)");
      return info.Env().Undefined();
    }
    std::string name = info[0].As<Napi::String>().Utf8Value();
    double v = info[1].As<Napi::Number>().DoubleValue();
    if (name == "nextWindowId" && v >= 1 && v <= 9007199254740991.0) {
      Sampler::Instance().SetNextIdForTest(static_cast<uint64_t>(v));
    } else if (name == "failThreadStarts" && v >= 0 && v <= 1000) {
      Sampler::Instance().FailThreadStartsForTest(static_cast<int>(v));
    } else if (name == "throwInThreads" && v >= 0 && v <= 3) {
      Sampler::Instance().ThrowInThreadsForTest(static_cast<int>(v));
    } else if (name == "throwBadAlloc" && v >= 0 && v <= 3) {
      Sampler::Instance().ThrowBadAllocForTest(static_cast<int>(v));
    } else if (name == "failRssReads" && v >= 0 && v <= 1e9) {
      Sampler::Instance().FailRssReadsForTest(static_cast<uint64_t>(v));
    } else if (name == "holdFirstTreeRead" && (v == 0 || v == 1 || v == 2)) {
      HoldFirstTreeReadForTest(static_cast<int>(v));
    } else if (name == "firstTreeReadHeld") {
      return Napi::Boolean::New(info.Env(), FirstTreeReadHeldForTest());
#ifndef _WIN32
    } else if (name == "holdNextFork" && v == 1) {
      HoldNextForkForTest();
    } else if (name == "releaseFork" && v == 1) {
      ReleaseForkForTest();
#endif
    } else {
      ThrowCodeError(info.Env(), ErrorKind::kRangeError, "ERR_INVALID_ARG_VALUE", "testHook: unknown hook or value");
    }
    return info.Env().Undefined();
  }

  // gpuWait(timeoutMs): blocks at most timeoutMs for GPU detection; true when it has finished.
  Napi::Value GpuWait(const Napi::CallbackInfo& info) {
    double ms = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    if (!(ms >= 0)) ms = 0;
    if (ms > 60000) ms = 60000;
    bool done = Sampler::Instance().WaitGpuDetection(std::chrono::milliseconds(static_cast<int64_t>(ms)));
    return Napi::Boolean::New(info.Env(), done);
  }

  // nvmlErrorText(code): a sentence for an nvmlReturn_t; works without the library.
  Napi::Value NvmlErrorText(const Napi::CallbackInfo& info) {
    int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 999;
    return Napi::String::New(info.Env(), nvml::Describe(code));
  }

  // cudaVisibleUuids() → CUDA's visible devices' UUIDs (32 hex digits) in CUDA's order. Only the CUDA-order helper
  // process calls it (native/nvml/cuda_order.h): cuInit in the measured process would add a CUDA context's cost.
  Napi::Value CudaVisibleUuids(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* lib = std::getenv("TASKMETER_CUDA_LIBRARY");
    std::vector<std::string> uuids;
    std::string why;
    if (!nvml::CudaVisibleUuids(lib ? lib : "", &uuids, &why)) {
      ThrowCodeError(env, ErrorKind::kError, "ERR_TASKMETER_CUDA", why);
      return env.Undefined();
    }
    Napi::Array out = Napi::Array::New(env, uuids.size());
    for (size_t i = 0; i < uuids.size(); i++) out[i] = Napi::String::New(env, uuids[i]);
    return out;
  }

  // What detection found (strings kept from detection; no NVML call here).
  Napi::Value GpuInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    GpuInfoSnapshot g = Sampler::Instance().GpuInfo();
    Napi::Object o = Napi::Object::New(env);
    auto str_or_null = [&](const std::string& s) -> Napi::Value {
      return s.empty() ? env.Null() : Napi::String::New(env, s);
    };
    o.Set("state", StateName(g.state));
    o.Set("reason", str_or_null(g.reason));
    o.Set("reasonCode", str_or_null(g.reason_code));
    o.Set("library", str_or_null(g.library));
    o.Set("driverVersion", str_or_null(g.driver_version));
    o.Set("nvmlVersion", str_or_null(g.nvml_version));
    o.Set("ownPidNamespace", g.own_pid_namespace);
    o.Set("processListVersion", g.process_list_version);
    o.Set("processEntryBytes", static_cast<double>(g.process_entry_stride));
    static const char* const kPidMatch[] = {"host", "translated", "list-only", "foreign"};
    o.Set("pidMatch", kPidMatch[g.pid_match >= 0 && g.pid_match < 4 ? g.pid_match : 3]);
    o.Set("deviceOrder", g.device_order.empty() ? "PCI_BUS_ID" : g.device_order);
    o.Set("deviceOrderCertain", g.device_order_certain);
    o.Set("deviceOrderNote", str_or_null(g.device_order_note));
    Napi::Array devices = Napi::Array::New(env, g.devices.size());
    for (size_t i = 0; i < g.devices.size(); i++) {
      const auto& d = g.devices[i];
      Napi::Object dev = Napi::Object::New(env);
      dev.Set("index", d.nvml_index);
      dev.Set("uuid", d.uuid);
      dev.Set("name", d.name);
      dev.Set("memoryTotalBytes",
              d.memory_total_bytes >= 0 ? Napi::Value(Napi::Number::New(env, d.memory_total_bytes)) : env.Null());
      if (d.mig) {
        Napi::Object mig = Napi::Object::New(env);
        mig.Set("parentIndex", d.nvml_index);
        mig.Set("parentUuid", d.parent_uuid);
        mig.Set("parentName", d.parent_name);
        mig.Set("index", d.mig_index);
        auto id = [&](unsigned v) {
          return v == nvml::kNoInstanceId ? env.Null() : Napi::Value(Napi::Number::New(env, v));
        };
        mig.Set("gpuInstanceId", id(d.gpu_instance_id));
        mig.Set("computeInstanceId", id(d.compute_instance_id));
        dev.Set("mig", mig);
      } else {
        dev.Set("mig", env.Null());
      }
      dev.Set("accountingMode", d.mig ? env.Null()
                                : d.accounting < 0
                                    ? Napi::Value(Napi::String::New(env, "unsupported"))
                                    : Napi::Value(Napi::String::New(env, d.accounting ? "enabled" : "disabled")));
      dev.Set("powerInstant", d.power_instant);
      devices[i] = dev;
    }
    o.Set("devices", devices);
    return o;
  }
};

}  // namespace

// spawn.h: Windows' piped streams, from the waiter thread just before SpawnWaitState::Done.
void SpawnOutput(void* context, std::string* out, std::string* err, bool overflow) {
  auto* st = static_cast<SpawnWaitState*>(context);
  std::lock_guard<std::mutex> lock(st->mu);
  st->have_output = true;
  st->overflow = overflow;
  st->out.swap(*out);
  st->err.swap(*err);
}

}  // namespace taskmeter

using TaskmeterAddon = taskmeter::TaskmeterAddon;
NODE_API_ADDON(TaskmeterAddon)
