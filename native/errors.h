// Every error the addon throws goes through ThrowCodeError: a JS Error (or TypeError/RangeError) with a stable `code`
// (src/errors.ts lists them; README "Error codes"). System errors carry the errno's own name (ErrnoName), as Node's
// do: ENOENT, EACCES, … — never an invented one.
#pragma once
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace taskmeter {

enum class ErrorKind { kError, kTypeError, kRangeError };

// Sets a pending JS exception (the caller returns right after); never throws a C++ exception. Plain N-API calls whose
// failures are ignored: in a worker that is being terminated JS can no longer run, napi_throw fails, and
// node-addon-api's Error::ThrowAsJavaScriptException / Object::Set would then abort the whole process.
inline void ThrowCodeError(Napi::Env env, ErrorKind kind, const char* code, const std::string& message) {
  napi_value msg, error, value;
  if (napi_create_string_utf8(env, message.c_str(), message.size(), &msg) != napi_ok) return;
  napi_status made = kind == ErrorKind::kTypeError    ? napi_create_type_error(env, nullptr, msg, &error)
                     : kind == ErrorKind::kRangeError ? napi_create_range_error(env, nullptr, msg, &error)
                                                      : napi_create_error(env, nullptr, msg, &error);
  if (made != napi_ok) return;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &value) == napi_ok)
    napi_set_named_property(env, error, "code", value);
  napi_throw(env, error);
}

// The symbolic name of an errno value ("ENOENT"), or "UNKNOWN" (libuv's name for one it does not know).
inline const char* ErrnoName(int err) {
  switch (err) {
#define TASKMETER_ERRNO(name) \
  case name: return #name;
    TASKMETER_ERRNO(EPERM)
    TASKMETER_ERRNO(ENOENT)
    TASKMETER_ERRNO(ESRCH)
    TASKMETER_ERRNO(EINTR)
    TASKMETER_ERRNO(EIO)
    TASKMETER_ERRNO(ENXIO)
    TASKMETER_ERRNO(E2BIG)
    TASKMETER_ERRNO(ENOEXEC)
    TASKMETER_ERRNO(EBADF)
    TASKMETER_ERRNO(ECHILD)
    TASKMETER_ERRNO(EAGAIN)
    TASKMETER_ERRNO(ENOMEM)
    TASKMETER_ERRNO(EACCES)
    TASKMETER_ERRNO(EFAULT)
    TASKMETER_ERRNO(EBUSY)
    TASKMETER_ERRNO(EEXIST)
    TASKMETER_ERRNO(ENOTDIR)
    TASKMETER_ERRNO(EISDIR)
    TASKMETER_ERRNO(EINVAL)
    TASKMETER_ERRNO(ENFILE)
    TASKMETER_ERRNO(EMFILE)
    TASKMETER_ERRNO(ETXTBSY)
    TASKMETER_ERRNO(ENOSPC)
    TASKMETER_ERRNO(EROFS)
    TASKMETER_ERRNO(EPIPE)
    TASKMETER_ERRNO(ENAMETOOLONG)
    TASKMETER_ERRNO(ENOSYS)
    TASKMETER_ERRNO(ELOOP)
    TASKMETER_ERRNO(ENOTSUP)
#if defined(EOPNOTSUPP) && EOPNOTSUPP != ENOTSUP
    TASKMETER_ERRNO(EOPNOTSUPP)
#endif
#undef TASKMETER_ERRNO
    default: return "UNKNOWN";
  }
}

// An Error for a failed system call: `message`, code = the errno's name, errno = the number, and `stage` when
// stage >= 0 (where a spawn failed, native/spawn.h SpawnStage). Built and thrown with plain N-API calls whose
// failures are ignored: in a worker that is being terminated napi_throw fails, and node-addon-api's
// ThrowAsJavaScriptException would then abort the whole process (seen under ASan). The caller returns right after.
inline void ThrowErrnoError(napi_env env, int err, const char* message, int stage = -1) {
  napi_value msg, error, value;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok) return;
  if (napi_create_error(env, nullptr, msg, &error) != napi_ok) return;
  if (napi_create_string_utf8(env, ErrnoName(err), NAPI_AUTO_LENGTH, &value) == napi_ok)
    napi_set_named_property(env, error, "code", value);
  if (napi_create_int32(env, err, &value) == napi_ok) napi_set_named_property(env, error, "errno", value);
  if (stage >= 0 && napi_create_int32(env, stage, &value) == napi_ok)
    napi_set_named_property(env, error, "stage", value);
  napi_throw(env, error);
}

}  // namespace taskmeter
