// Wiring only: the exported functions, argument checks and the per-environment lifecycle. The work lives in
// proc/ (process metrics), sampler.* (the background thread and its windows) and nvml/ (the GPU).
#include <napi.h>

#include "proc/proc.h"
#include "sampler.h"

namespace taskmeter {
namespace {

// Callers (src/binding.ts) pass preallocated Float64Arrays; a wrong one is a programming error inside the package,
// reported as a TypeError rather than a crash.
double* Float64Out(const Napi::CallbackInfo& info, size_t index, size_t min_length) {
  if (info.Length() <= index || !info[index].IsTypedArray() ||
      info[index].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    Napi::TypeError::New(info.Env(), "expected a Float64Array").ThrowAsJavaScriptException();
    return nullptr;
  }
  auto arr = info[index].As<Napi::Float64Array>();
  if (arr.ElementLength() < min_length) {
    Napi::RangeError::New(info.Env(), "Float64Array too short").ThrowAsJavaScriptException();
    return nullptr;
  }
  return arr.Data();
}

bool WindowId(const Napi::CallbackInfo& info, uint32_t* id) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(info.Env(), "expected a window id").ThrowAsJavaScriptException();
    return false;
  }
  *id = info[0].As<Napi::Number>().Uint32Value();
  return true;
}

class TaskmeterAddon : public Napi::Addon<TaskmeterAddon> {
 public:
  TaskmeterAddon(Napi::Env env, Napi::Object exports) {
    Sampler::Instance().Retain();
    DefineAddon(exports, {
        InstanceMethod("snapshot", &TaskmeterAddon::Snapshot),
        InstanceMethod("windowOpen", &TaskmeterAddon::WindowOpen),
        InstanceMethod("windowRead", &TaskmeterAddon::WindowRead),
        InstanceMethod("windowClose", &TaskmeterAddon::WindowClose),
        InstanceMethod("samplerState", &TaskmeterAddon::SamplerState),
        InstanceValue("SNAPSHOT_SLOTS", Napi::Number::New(env, proc::kSnapshotSlots), napi_enumerable),
        InstanceValue("WINDOW_SLOTS", Napi::Number::New(env, kWindowSlots), napi_enumerable),
    });
  }

  // Runs at environment teardown (worker exit, main-thread shutdown). Safe at any stage: closing no windows and
  // releasing a sampler that never started are no-ops.
  ~TaskmeterAddon() {
    Sampler::Instance().CloseOwnedBy(this);
    Sampler::Instance().Release();
  }

 private:
  Napi::Value Snapshot(const Napi::CallbackInfo& info) {
    double* out = Float64Out(info, 0, proc::kSnapshotSlots);
    if (out == nullptr) return info.Env().Undefined();
    proc::ReadSelf(out);
    return info.Env().Undefined();
  }

  Napi::Value WindowOpen(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(info.Env(), "expected an interval").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    double interval = info[0].As<Napi::Number>().DoubleValue();
    if (!(interval >= 1 && interval <= 60000)) {
      Napi::RangeError::New(info.Env(), "interval out of range").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    // Optional: the start snapshot, taken in the same call (one JS→native crossing per window end).
    double* snap = nullptr;
    if (info.Length() > 1) {
      snap = Float64Out(info, 1, proc::kSnapshotSlots);
      if (snap == nullptr) return info.Env().Undefined();
    }
    uint32_t id = Sampler::Instance().Open(static_cast<uint32_t>(interval), this);
    if (snap != nullptr) proc::ReadSelf(snap);
    return Napi::Number::New(info.Env(), id);
  }

  Napi::Value WindowRead(const Napi::CallbackInfo& info) {
    uint32_t id;
    if (!WindowId(info, &id)) return info.Env().Undefined();
    double* out = Float64Out(info, 1, kWindowSlots);
    if (out == nullptr) return info.Env().Undefined();
    return Napi::Boolean::New(info.Env(), Sampler::Instance().Read(id, out));
  }

  Napi::Value WindowClose(const Napi::CallbackInfo& info) {
    uint32_t id;
    if (!WindowId(info, &id)) return info.Env().Undefined();
    double* out = Float64Out(info, 1, kWindowSlots);
    if (out == nullptr) return info.Env().Undefined();
    // Optional: the end snapshot, taken before the window closes so that the window covers it.
    if (info.Length() > 2) {
      double* snap = Float64Out(info, 2, proc::kSnapshotSlots);
      if (snap == nullptr) return info.Env().Undefined();
      proc::ReadSelf(snap);
    }
    return Napi::Boolean::New(info.Env(), Sampler::Instance().Close(id, out));
  }

  Napi::Value SamplerState(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("openWindows", static_cast<double>(Sampler::Instance().OpenCount()));
    o.Set("threadRunning", Sampler::Instance().ThreadRunning());
    return o;
  }
};

}  // namespace
}  // namespace taskmeter

using TaskmeterAddon = taskmeter::TaskmeterAddon;
NODE_API_ADDON(TaskmeterAddon)
