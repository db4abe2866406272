// Tracking other processes: trackProcess(pid) follows a running process and its descendants; measureCommand()
// starts a command itself (fork + exec in the addon) so that its end is reaped with wait4(), which gives the exit
// status and the exact CPU time of the command and every descendant it reaped.
import { constants } from 'node:os';
import { accessSync, constants as fsConstants, existsSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { Socket } from 'node:net';
import {
  native,
  SP_CONTAMINATION_BYTES,
  SP_END_EPOCH_MS,
  SP_END_MONO_MS,
  SP_EXIT_CODE,
  SP_MAX_RSS_BYTES,
  SP_SIGNAL,
  SP_START_MONO_MS,
  SP_SYSTEM_MS,
  SP_TREE_PEAK_BYTES,
  SP_USER_MS,
  SPAWN_STAGE_CHDIR,
  SPAWN_STAGE_EXEC,
  SPAWN_STAGE_THREAD,
} from './binding';
import { boolOption, describe, intervalOption, optionsObject } from './options';
import { buildUsage, cpuRate, ResourceUsage, WindowStats } from './usage';
import { ClosedWindow, Window } from './window';
import { rangeError, systemError, typeError } from './errors';

/**
 * What a tracked process tree (or a started command) cost. Every figure describes the tree, never taskmeter's own
 * process; a figure nothing measured is null (e.g. the memory of a command that ended before the first sample and
 * whose kernel accounting was not exact).
 */
export interface ProcessUsage
  extends Omit<ResourceUsage, 'rssStartBytes' | 'rssEndBytes' | 'peakRssBytes' | 'peakRssSource'> {
  /** The tree's summed RSS at the first sample that saw it; null if no sample did. */
  rssStartBytes: number | null;
  /** The tree's summed RSS at the last sample that saw it; null if no sample did. */
  rssEndBytes: number | null;
  /** The tree's peak RSS (= treePeakRssBytes); null if nothing measured it. */
  peakRssBytes: number | null;
  /** 'hwm': the kernel's exact peak of one process; 'sampled': summed samples of the tree; null: not measured. */
  peakRssSource: 'hwm' | 'sampled' | null;
  /**
   * The tree sampler's mean interval, ms: the requested sampleIntervalMs, stretched when sampling a big tree would
   * cost more than 1 % of a core (the first samples come faster, 1, 2, 4 … ms, and are not counted). null if the
   * tree was never sampled.
   */
  effectiveSampleIntervalMs: number | null;
  /** The tracked (or started) process. */
  pid: number;
  /**
   * The largest single-process peak RSS in the tree — what GNU time prints as "Maximum resident set size". From the
   * kernel's accounting of the reaped command when that is exact ('rusage'), else from each process's own VmHWM read
   * while it lived ('sampled'); null if no process was ever seen.
   */
  maxRssBytes: number | null;
  maxRssSource: 'rusage' | 'sampled' | null;
  maxRssPid: number | null;
  maxRssCommand: string | null;
  /** The peak of the tree's summed RSS (sampled), never below maxRssBytes. */
  treePeakRssBytes: number | null;
  /** Processes seen in the tree. */
  processes: number;
  /** 'rusage': exact, from wait4 of a command taskmeter started; 'sampled': /proc, in clock ticks (10 ms). */
  cpuSource: 'rusage' | 'sampled';
}

export interface TrackProcessOptions {
  /** How often the tree is sampled, ms (1–60000, default 10). */
  sampleIntervalMs?: number;
  /** Follow the descendants too (default true). */
  includeChildren?: boolean;
  /** Record usage.timeline (default true). */
  timeline?: boolean;
}

const SIGNAL_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(constants.signals).map(([name, num]) => [num as number, name]),
);

const nn = (v: number): number | null => (Number.isFinite(v) && v >= 0 ? v : null);

function resolveTrackOptions(where: string, options: unknown) {
  const o = optionsObject(where, options, ['sampleIntervalMs', 'includeChildren', 'timeline']);
  return {
    intervalMs: intervalOption(o),
    descendants: boolOption('includeChildren', o.includeChildren, true),
    timeline: boolOption('timeline', o.timeline, true),
  };
}

function processUsage(pid: number, c: ClosedWindow, exact: SpawnRecord | null): ProcessUsage {
  const base = buildUsage(c.start, c.end, c.stats);
  const t = (c.stats as WindowStats | null)?.tree;
  const sampledMax = t ? nn(t.maxHwmBytes) : null;
  let maxRssBytes = sampledMax;
  let maxRssSource: ProcessUsage['maxRssSource'] = sampledMax === null ? null : 'sampled';
  let maxRssPid = t && sampledMax !== null ? nn(t.maxHwmPid) : null;
  const maxRssCommand = sampledMax !== null ? c.maxHwmComm : null;
  let cpuUserMs = t ? (nn(t.cpuUserMs) ?? 0) : 0;
  let cpuSystemMs = t ? (nn(t.cpuSystemMs) ?? 0) : 0;
  let cpuSource: ProcessUsage['cpuSource'] = 'sampled';
  let wallTimeMs = base.wallTimeMs;
  let endedAt = base.endedAt;
  if (exact) {
    if (exact.userMs !== null && exact.systemMs !== null) {
      cpuUserMs = exact.userMs;
      cpuSystemMs = exact.systemMs;
      cpuSource = 'rusage';
    }
    // Linux keeps a process's pre-exec peak across exec, so the reaped ru_maxrss can be the peak of the forked copy
    // of *this* process. Above our RSS at the fork it cannot be: then it is the command's own, exact. A sampled
    // VmHWM may read a little above it (the kernel's RSS counters are approximate per CPU); clearly above it, the
    // peak belonged to a process the command did not reap (a daemon), and the sample stands.
    const noise = maxRssBytes === null ? 0 : Math.max(1048576, 0.01 * maxRssBytes);
    if (
      exact.maxRssBytes !== null &&
      exact.maxRssBytes > exact.contaminationBytes &&
      (maxRssBytes === null || exact.maxRssBytes >= maxRssBytes - noise)
    ) {
      maxRssBytes = exact.maxRssBytes;
      maxRssSource = 'rusage';
      if (maxRssPid === null) maxRssPid = pid;
    }
    wallTimeMs = exact.wallTimeMs;
    endedAt = exact.endEpochMs;
  }
  let treePeakSampled = t ? nn(t.rssPeakBytes) : null;
  if (exact?.treePeakBytes != null) treePeakSampled = Math.max(treePeakSampled ?? 0, exact.treePeakBytes);
  const processes = t && Number.isFinite(t.processes) ? t.processes : 0;
  // One process whose peak the kernel gave exactly: that is the tree's peak too.
  const treePeak =
    processes <= 1 && maxRssSource === 'rusage'
      ? maxRssBytes
      : treePeakSampled === null
        ? maxRssBytes
        : maxRssBytes === null
          ? treePeakSampled
          : Math.max(treePeakSampled, maxRssBytes);
  const cpuTimeMs = cpuUserMs + cpuSystemMs;
  const rate = cpuRate(cpuTimeMs, wallTimeMs);
  const rssEnd = t ? nn(t.rssBytes) : null;
  const rssFirst = t ? nn(t.rssFirstBytes) : null;
  // The window's own figures (base) describe this process; only the tree's are kept.
  const samples = processes > 0 && t && Number.isFinite(t.samples) ? t.samples : 0;
  return {
    ...base,
    wallTimeMs,
    endedAt,
    cpuUserMs,
    cpuSystemMs,
    cpuTimeMs,
    cpuPercent: rate.cpuPercent,
    cpuPercentReason: rate.cpuPercentReason,
    // Another process's CPU: the calling thread's clock says nothing about it.
    threadCpuMs: null,
    samplerCpuMs: 0,
    rssStartBytes: rssFirst,
    rssEndBytes: rssEnd,
    peakRssBytes: treePeak,
    peakRssSource: treePeak === null ? null : processes <= 1 && maxRssSource === 'rusage' ? 'hwm' : 'sampled',
    samples,
    effectiveSampleIntervalMs: samples > 0 && t ? nn(t.intervalMs) : null,
    pid,
    maxRssBytes,
    maxRssSource,
    maxRssPid,
    maxRssCommand: maxRssCommand ?? null,
    treePeakRssBytes: treePeak,
    processes,
    cpuSource,
    ...(c.timeline
      ? { timeline: { ...c.timeline, effectiveSampleIntervalMs: samples > 0 && t ? nn(t.intervalMs) : null } }
      : {}),
  };
}

interface SpawnRecord {
  exitCode: number | null;
  signal: string | null;
  userMs: number | null;
  systemMs: number | null;
  maxRssBytes: number | null;
  /** Windows: the job's peak commit charge (PeakJobMemoryUsed); null elsewhere. */
  treePeakBytes: number | null;
  contaminationBytes: number;
  wallTimeMs: number;
  endEpochMs: number;
}

function checkPid(where: string, pid: unknown): number {
  if (typeof pid !== 'number') throw typeError(`taskmeter: ${where}(pid): pid must be a number, got ${describe(pid)}`);
  if (!Number.isInteger(pid) || pid < 1 || pid > 4194304) {
    throw rangeError(`taskmeter: ${where}(pid): pid must be a positive integer, got ${pid}`);
  }
  return pid;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Follows a running process (and by default its descendants) until stop() or until it exits (`exited`). While it
 * runs, the tracker keeps the event loop alive, as a child process handle does.
 */
export class ProcessTracker {
  readonly pid: number;
  /** Resolves with the usage when the process exits or stop() is called. */
  readonly exited: Promise<ProcessUsage>;
  private window: Window | null;
  private result: ProcessUsage | null = null;
  private timer: NodeJS.Timeout | null = null;
  private resolveExited!: (u: ProcessUsage) => void;

  /** @internal use trackProcess() */
  constructor(
    pid: number,
    opts: ReturnType<typeof resolveTrackOptions>,
    baselineExisting: boolean,
    watchExit: boolean,
  ) {
    this.pid = pid;
    this.exited = new Promise((r) => (this.resolveExited = r));
    this.window = new Window({
      intervalMs: opts.intervalMs,
      timeline: opts.timeline,
      rootPid: pid,
      baselineExisting,
      descendants: opts.descendants,
    });
    this.window.guard(this);
    if (watchExit) {
      const every = Math.min(200, Math.max(20, opts.intervalMs * 2));
      this.timer = setInterval(() => {
        const w = this.window;
        if (!w) return;
        const { stats } = w.read();
        if (stats && stats.tree.samples > 0 && !stats.tree.rootAlive) this.finish(null);
      }, every);
    }
  }

  get running(): boolean {
    return this.window !== null;
  }

  /** While running, the usage so far; afterwards, the final usage. */
  get usage(): ProcessUsage {
    if (this.result) return this.result;
    const w = this.window!;
    const { end, stats } = w.read();
    const closed = { start: w.start, end, stats, timeline: null, maxHwmComm: null, threadCpuMs: null };
    return processUsage(this.pid, closed, null);
  }

  /** Stops tracking and returns the usage; again, the same usage. */
  stop(): ProcessUsage {
    return this.finish(null);
  }

  /** @internal */
  finish(exact: SpawnRecord | null): ProcessUsage {
    if (this.result) return this.result;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const w = this.window!;
    this.window = null;
    this.result = processUsage(this.pid, w.closeRaw(), exact);
    this.resolveExited(this.result);
    return this.result;
  }

  [Symbol.dispose](): void {
    this.stop();
  }
}

/** Tracks a running process (by default with its descendants): CPU, summed RSS, per-process peaks, GPU memory. */
export function trackProcess(pid: number, options?: TrackProcessOptions): ProcessTracker {
  checkPid('trackProcess', pid);
  const opts = resolveTrackOptions('trackProcess', options);
  if (!processExists(pid)) {
    throw systemError(`taskmeter: trackProcess(${pid}): no such process`, 'ESRCH', 'kill');
  }
  return new ProcessTracker(pid, opts, true, true);
}

export type StdioMode = 'inherit' | 'ignore' | 'pipe';

export interface MeasureCommandOptions extends TrackProcessOptions {
  /** The command's working directory (default: ours). A missing one is an ENOENT error that names it. */
  cwd?: string;
  /** The command's environment (default: ours). The command is looked up in its PATH, as child_process does
   *  ('/usr/bin:/bin' when it has none). */
  env?: NodeJS.ProcessEnv;
  /** 'inherit' (default), 'ignore', or 'pipe' to capture stdout and stderr (stdin is then ignored). */
  stdio?: StdioMode;
  /** Called with the pid right after the command started (e.g. to forward signals to it). */
  onSpawn?: (pid: number) => void;
}

export interface CommandResult {
  /** The exit code, or null when the command was killed by a signal (then `signal` says which) or its status could
   *  not be read (both null). */
  exitCode: number | null;
  /** The signal that killed it (e.g. 'SIGTERM'), or null. */
  signal: string | null;
  pid: number;
  usage: ProcessUsage;
  /** With stdio 'pipe': what it wrote. */
  stdout?: Buffer;
  stderr?: Buffer;
}

/**
 * Windows: as CreateProcess would find it, but with PATHEXT like cmd.exe: a name with a slash, a backslash or a
 * drive is a path; otherwise the folders of PATH (the variable's name is case-insensitive there) are tried, each
 * with PATHEXT's extensions.
 */
function resolveCommandWin32(command: string, env: NodeJS.ProcessEnv, cwd: string): string | null {
  const get = (name: string) => Object.entries(env).find(([k]) => k.toUpperCase() === name)?.[1];
  const pathext = (get('PATHEXT') ?? '.COM;.EXE;.BAT;.CMD').split(';').filter(Boolean);
  // 'python3.11' may be python3.11.exe: a name with a dot is tried as it is first, then with each extension
  const exts = /\.[^.\\/]+$/.test(command) ? ['', ...pathext] : pathext;
  const isFile = (p: string) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  const find = (base: string) => exts.map((e) => base + e).find(isFile) ?? null;
  if (/[\\/:]/.test(command)) return find(resolve(cwd, command));
  for (const dir of (get('PATH') ?? '').split(';')) {
    if (!dir) continue;
    const p = find(join(resolve(cwd, dir), command));
    if (p) return p;
  }
  return null;
}

/** The search path when the environment has no PATH: libuv's (and so child_process's) _PATH_DEFPATH. */
export const DEFAULT_PATH = '/usr/bin:/bin';

/**
 * Finds an executable as child_process (libuv's execvp) does: a name with a slash is a path; otherwise each entry of
 * the command's environment's PATH ('/usr/bin:/bin' when it has none) is tried. A match that is not executable is
 * returned when nothing executable is found, so that exec reports EACCES (126) rather than "not found". On Windows
 * see resolveCommandWin32.
 */
export function resolveCommand(command: string, env: NodeJS.ProcessEnv, cwd: string): string | null {
  if (process.platform === 'win32') return resolveCommandWin32(command, env, cwd);
  const isFile = (p: string) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  const isExec = (p: string) => {
    try {
      accessSync(p, fsConstants.X_OK);
      return isFile(p);
    } catch {
      return false;
    }
  };
  if (command.includes('/')) {
    const p = isAbsolute(command) ? command : resolve(cwd, command);
    return existsSync(p) ? p : null; // not executable: exec says so (EACCES → 126)
  }
  let denied: string | null = null;
  for (const dir of (env.PATH ?? DEFAULT_PATH).split(delimiter)) {
    const p = join(dir === '' ? cwd : isAbsolute(dir) ? dir : resolve(cwd, dir), command);
    if (isExec(p)) return p;
    if (denied === null && isFile(p)) denied = p;
  }
  return denied;
}

function checkCwd(cwd: string): NodeJS.ErrnoException | null {
  let isDir: boolean;
  try {
    isDir = statSync(cwd).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ENOENT';
    const why = code === 'ENOENT' ? 'no such directory' : (err as Error).message;
    return systemError(
      `taskmeter: measureCommand: the working directory ${cwd} cannot be used (${code}: ${why})`,
      code,
      'chdir',
      cwd,
    );
  }
  if (isDir) return null;
  return systemError(
    `taskmeter: measureCommand: the working directory ${cwd} is not a directory`,
    'ENOTDIR',
    'chdir',
    cwd,
  );
}

// What the addon's spawn error (.code: the errno's name, native/errors.h; .errno; .stage) becomes for the caller.
function spawnError(
  err: NodeJS.ErrnoException & { stage?: number },
  command: string,
  cwd: string,
): NodeJS.ErrnoException {
  if (typeof err.errno !== 'number') return err; // a TypeError from the binding: a bug here, not the user's
  const code = err.code ?? 'UNKNOWN';
  const what =
    err.stage === SPAWN_STAGE_CHDIR
      ? `cannot change to the working directory ${cwd}`
      : err.stage === SPAWN_STAGE_THREAD
        ? `started ${command} but could not create a thread to wait for it, so it was killed`
        : err.stage === SPAWN_STAGE_EXEC
          ? `could not run ${command}`
          : `could not start ${command}`;
  const e = new Error(`taskmeter: ${what}: ${code}: ${err.message}`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = err.errno;
  e.path = err.stage === SPAWN_STAGE_CHDIR ? cwd : command;
  const win = process.platform === 'win32';
  e.syscall =
    err.stage === SPAWN_STAGE_THREAD
      ? win
        ? 'CreateThread'
        : 'pthread_create'
      : win
        ? 'CreateProcessW'
        : err.stage === SPAWN_STAGE_CHDIR
          ? 'chdir'
          : err.stage === SPAWN_STAGE_EXEC
            ? 'execve'
            : 'fork';
  return e;
}

function readAll(fd: number): Promise<Buffer> {
  if (fd < 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((res) => {
    const chunks: Buffer[] = [];
    const s = new Socket({ fd, readable: true, writable: false });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => res(Buffer.concat(chunks)));
    s.on('close', () => res(Buffer.concat(chunks)));
  });
}

/** Starts a command, tracks it and its descendants, and resolves when it exits. */
export function measureCommand(
  command: string,
  args: readonly string[] = [],
  options?: MeasureCommandOptions,
): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    if (typeof command !== 'string' || command.length === 0) {
      throw typeError(
        `taskmeter: measureCommand(command): command must be a non-empty string, got ${describe(command)}`,
      );
    }
    if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) {
      throw typeError(
        `taskmeter: measureCommand(command, args): args must be an array of strings, got ${describe(args)}`,
      );
    }
    const o = optionsObject('measureCommand', options, [
      'sampleIntervalMs',
      'includeChildren',
      'timeline',
      'cwd',
      'env',
      'stdio',
      'onSpawn',
    ]);
    const opts = resolveTrackOptions('measureCommand', {
      sampleIntervalMs: o.sampleIntervalMs,
      includeChildren: o.includeChildren,
      timeline: o.timeline,
    });
    if (o.cwd !== undefined && typeof o.cwd !== 'string')
      throw typeError(`taskmeter: option "cwd" must be a string, got ${describe(o.cwd)}`);
    if (o.env !== undefined && (o.env === null || typeof o.env !== 'object'))
      throw typeError(`taskmeter: option "env" must be an object, got ${describe(o.env)}`);
    const stdio = (o.stdio ?? 'inherit') as StdioMode;
    if (stdio !== 'inherit' && stdio !== 'ignore' && stdio !== 'pipe') {
      throw rangeError(
        `taskmeter: option "stdio" must be 'inherit', 'ignore' or 'pipe', got ${describe(o.stdio)}`,
        'ERR_INVALID_ARG_VALUE',
      );
    }
    if (o.onSpawn !== undefined && typeof o.onSpawn !== 'function')
      throw typeError(`taskmeter: option "onSpawn" must be a function, got ${describe(o.onSpawn)}`);
    const cwd = (o.cwd as string | undefined) ?? process.cwd();
    const env = (o.env as NodeJS.ProcessEnv | undefined) ?? process.env;
    const cwdError = checkCwd(cwd);
    if (cwdError) throw cwdError;
    const file = resolveCommand(command, env, cwd);
    if (file === null) {
      // as child_process reports it: spawn <command>
      throw systemError(`taskmeter: command not found: ${command}`, 'ENOENT', `spawn ${command}`, command);
    }
    if (process.platform === 'win32') {
      // CreateProcess would run a batch file through cmd.exe with arguments cmd re-parses (no .bat/.cmd).
      if (/\.(bat|cmd)$/i.test(file)) {
        throw rangeError(
          `taskmeter: measureCommand(command): ${command} is a batch file; ` +
            "run it as measureCommand('cmd.exe', ['/d', '/c', ...])",
          'ERR_INVALID_ARG_VALUE',
        );
      }
    }
    const envList = Object.entries(env)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`);
    const modes = stdio === 'inherit' ? [-1, -1, -1] : stdio === 'ignore' ? [-2, -2, -2] : [-2, -3, -3];
    let spawned: { pid: number; fds: number[] };
    // Filled in once started; the exit callback always comes later (through the event loop).
    let onExit: (buf: Float64Array) => void = () => {};
    // Windows: the addon reads the pipes itself and hands over what they held with the exit slots.
    let winOutput: Buffer[] | null = null;
    try {
      spawned = native.spawn(
        file,
        [command, ...args],
        envList,
        o.cwd === undefined ? null : cwd,
        modes,
        (buf, out, err, overflow) => {
          if (out && err) winOutput = overflow ? [] : [out, err];
          onExit(buf);
        },
      );
    } catch (err) {
      throw spawnError(err as NodeJS.ErrnoException & { stage?: number }, command, cwd);
    }
    const tracker = new ProcessTracker(spawned.pid, opts, false, false);
    const outputs = stdio === 'pipe' ? [readAll(spawned.fds[1]), readAll(spawned.fds[2])] : null;
    try {
      (o.onSpawn as ((pid: number) => void) | undefined)?.(spawned.pid);
    } catch (err) {
      reject(err);
    }
    onExit = (buf) => {
      const signalNo = buf[SP_SIGNAL];
      const record: SpawnRecord = {
        exitCode: Number.isFinite(buf[SP_EXIT_CODE]) ? buf[SP_EXIT_CODE] : null,
        signal: Number.isFinite(signalNo) ? (SIGNAL_NAMES[signalNo] ?? `SIG${signalNo}`) : null,
        userMs: nn(buf[SP_USER_MS]),
        systemMs: nn(buf[SP_SYSTEM_MS]),
        maxRssBytes: nn(buf[SP_MAX_RSS_BYTES]),
        treePeakBytes: nn(buf[SP_TREE_PEAK_BYTES]),
        contaminationBytes: buf[SP_CONTAMINATION_BYTES],
        wallTimeMs: Math.max(0, buf[SP_END_MONO_MS] - buf[SP_START_MONO_MS]),
        endEpochMs: buf[SP_END_EPOCH_MS],
      };
      const usage = tracker.finish(record);
      // the window opened right after the fork; the command's own start is the fork
      usage.startedAt = Math.min(usage.startedAt, record.endEpochMs - record.wallTimeMs);
      const result: CommandResult = { exitCode: record.exitCode, signal: record.signal, pid: spawned.pid, usage };
      if (winOutput?.length === 0) {
        reject(
          systemError(
            `taskmeter: measureCommand: ${command} wrote more than 256 MiB (the most kept on Windows) to a pipe`,
            'ENOBUFS',
            'ReadFile',
            command,
          ),
        );
      } else if (winOutput) {
        resolvePromise({ ...result, stdout: winOutput[0], stderr: winOutput[1] });
      } else if (outputs) {
        Promise.all(outputs).then(([out, err]) => resolvePromise({ ...result, stdout: out, stderr: err }));
      } else {
        resolvePromise(result);
      }
    };
  });
}
