// Every error taskmeter throws carries a stable `code` (README, "Error codes"); tests and callers match the code,
// never the wording. Argument errors use Node's own codes; system errors carry the errno's name (ENOENT, EACCES…),
// set by the addon (native/errors.h).

import { constants as osConstants } from 'node:os';

export type TaskmeterErrorCode =
  /** A wrong type (TypeError), naming the option or argument. */
  | 'ERR_INVALID_ARG_TYPE'
  /** A value out of range (RangeError), naming the option or argument. */
  | 'ERR_OUT_OF_RANGE'
  /** A value of the right type that is not one of those accepted: an unknown option name, an unknown label. */
  | 'ERR_INVALID_ARG_VALUE'
  /** The native addon could not be loaded (the message says why and what to do). */
  | 'ERR_TASKMETER_NATIVE_LOAD'
  /** The loaded addon's buffer layouts differ from this package's (a stale or foreign build). */
  | 'ERR_TASKMETER_ABI_MISMATCH'
  /** renderTimeline() was given a usage measured without `{ timeline: true }`. */
  | 'ERR_TASKMETER_NO_TIMELINE'
  /** An optional peer dependency (prom-client) is not installed. */
  | 'ERR_TASKMETER_MISSING_PEER'
  /** A window used after it was closed (a bug in the caller's use of an internal object). */
  | 'ERR_TASKMETER_WINDOW_CLOSED'
  /** The addon was called without the buffers bound at load (internal). */
  | 'ERR_TASKMETER_NO_BUFFER'
  /** A C++ exception caught at the N-API boundary (out of memory, a thread that could not start…); never a crash. */
  | 'ERR_TASKMETER_NATIVE'
  /** The CUDA driver library could not list CUDA's devices (the CUDA-order helper process only). */
  | 'ERR_TASKMETER_CUDA'
  /** measureSync(fn) where fn returned a promise (TypeError; the error carries `usage`). */
  | 'ERR_TASKMETER_ASYNC_FN'
  | 'ERR_TRACKER_NOT_STARTED'
  | 'ERR_TRACKER_RUNNING'
  /** measureCommand's `signal` was aborted before the command started (an Error named AbortError, as Node's). */
  | 'ABORT_ERR'
  /** measureCommand's stdout or stderr passed `maxBuffer` (RangeError, as child_process; the error has `result`). */
  | 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER';

export type CodedError<E extends Error = Error> = E & { code: string };

/** An error of class `Kind` with `code` set (the one way src/ makes an error). */
export function codedError<E extends Error>(
  Kind: new (message: string) => E,
  message: string,
  code: TaskmeterErrorCode | (NodeJS.ErrnoException['code'] & string),
): CodedError<E> {
  const e = new Kind(message) as CodedError<E>;
  e.code = code;
  return e;
}

/**
 * A system error made in JavaScript (a command not on PATH, a cwd that cannot be used, no such pid), shaped like the
 * addon's and Node's own: `code` the errno's name, `errno` its number on this platform, `syscall` the step, `path`.
 */
export function systemError(message: string, code: string, syscall: string, path?: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = (osConstants.errno as Record<string, number | undefined>)[code];
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  return e;
}

/** A TypeError with code ERR_INVALID_ARG_TYPE (or ERR_INVALID_ARG_VALUE for a value of the right type). */
export function typeError(
  message: string,
  code: 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' = 'ERR_INVALID_ARG_TYPE',
): CodedError<TypeError> {
  return codedError(TypeError, message, code);
}

/** A RangeError with code ERR_OUT_OF_RANGE (or ERR_INVALID_ARG_VALUE for a value not in an accepted set). */
export function rangeError(
  message: string,
  code: 'ERR_OUT_OF_RANGE' | 'ERR_INVALID_ARG_VALUE' = 'ERR_OUT_OF_RANGE',
): CodedError<RangeError> {
  return codedError(RangeError, message, code);
}

/**
 * The ERR_TASKMETER_NATIVE_LOAD error for a failed addon load, with the hint that fits the cause (as sharp's loader
 * does): Node started with --no-addons, no binary for this platform, a binary built for another Node ABI or
 * N-API version, another libc, or another architecture.
 */
export function nativeLoadError(err: unknown, platform = `${process.platform}-${process.arch}`): CodedError<Error> {
  const reason = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  const lines: string[] = [];
  const noAddons =
    code === 'ERR_DLOPEN_DISABLED' || process.execArgv.includes('--no-addons') || /--no-addons/.test(reason);
  if (noAddons) {
    lines.push(
      '- Node was started with --no-addons (or NODE_OPTIONS has it): taskmeter is a native addon and needs them; ' +
        'remove the flag',
    );
  } else if (/No native build was found/i.test(reason)) {
    lines.push(
      `- no prebuilt binary matches ${platform} and none was built: build it from source ` +
        '(needs python3, make and a C++17 compiler): npm rebuild taskmeter',
      '- or install on a platform with a prebuild (the package ships prebuilds/<platform>-<arch>/)',
    );
  } else if (/NODE_MODULE_VERSION|was compiled against a different Node\.js version|napi|N-API/i.test(reason)) {
    lines.push(
      `- the binary was built for another Node ABI or N-API version (this is Node ${process.versions.node}, ` +
        `N-API ${process.versions.napi}): rebuild it for this Node: npm rebuild taskmeter`,
    );
  } else if (/GLIBC|GLIBCXX|musl|ld-linux|Error relocating/i.test(reason)) {
    lines.push(
      '- the binary was built for another C library (glibc vs musl) or a newer glibc than this system has: ' +
        'npm rebuild taskmeter builds one for this system',
    );
  } else if (/invalid ELF header|wrong ELF class|not a valid Win32 application|mach-o/i.test(reason)) {
    lines.push(
      `- the binary is for another architecture than ${platform} (node_modules copied between machines?): ` +
        'reinstall here: rm -rf node_modules && npm install',
    );
  } else {
    lines.push(
      '- reinstall so that the prebuilt binary for this platform is used: npm install taskmeter',
      '- or build it from source, which needs python3, make and a C++17 compiler: npm rebuild taskmeter',
    );
  }
  return codedError(
    Error,
    `taskmeter: could not load its native addon for ${platform} ` +
      `(Node ${process.versions.node}, N-API ${process.versions.napi}).\n${reason}\nPossible solutions:\n` +
      lines.join('\n'),
    'ERR_TASKMETER_NATIVE_LOAD',
  );
}
