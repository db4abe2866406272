// Tracking other processes: trackProcess(pid) follows a running process and its descendants; measureCommand()
// starts a command itself (fork + exec in the addon) so that its end is reaped with wait4(), which gives the exit
// status and the exact CPU time of the command and every descendant it reaped.
import { constants } from 'node:os';
import { accessSync, constants as fsConstants, existsSync, fstatSync, readSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { Socket } from 'node:net';
import type { Stream } from 'node:stream';
import {
  native,
  SP_CONTAMINATION_BYTES,
  SP_END_EPOCH_MS,
  SP_END_MONO_MS,
  SP_EXIT_CODE,
  SP_FS_INPUT_BLOCKS,
  SP_FS_OUTPUT_BLOCKS,
  SP_INVOLUNTARY_CTX_SWITCHES,
  SP_IO_READ_BYTES,
  SP_IO_WRITE_BYTES,
  SP_MAJOR_FAULTS,
  SP_MAX_RSS_BYTES,
  SP_MINOR_FAULTS,
  SP_VOLUNTARY_CTX_SWITCHES,
  SP_SIGNAL,
  SP_START_MONO_MS,
  SP_SYSTEM_MS,
  SP_TREE_PEAK_BYTES,
  SP_USER_MS,
  SPAWN_STAGE_CHDIR,
  SPAWN_STAGE_EXEC,
  SPAWN_STAGE_THREAD,
} from './binding';
import { boolOption, describe, intOption, intervalOption, optionsObject } from './options';
import { buildUsage, COUNTER_KEYS, cpuRate, NO_COUNTERS, ResourceUsage, UsageCounters, WindowStats } from './usage';
import { shellCommand } from './shell';
import { ClosedWindow, PROCESS_WINDOW, Window } from './window';
import { formatBytes } from './timeline';
import { codedError, rangeError, systemError, typeError } from './errors';

/**
 * What a tracked process tree (or a started command) cost. Every figure describes the tree, never taskmeter's own
 * process; a figure nothing measured is null (e.g. the memory of a command that ended before the first sample and
 * whose kernel accounting was not exact).
 */
export interface ProcessUsage
  extends Omit<
    ResourceUsage,
    'rssStartBytes' | 'rssEndBytes' | 'peakRssBytes' | 'peakRssSource' | 'cpuUserMs' | 'cpuSystemMs' | 'cpuTimeMs'
  > {
  /**
   * CPU of the tree, ms: exact from wait4 for a command taskmeter started ('rusage'), else sampled. null (cpuReason
   * says why), never 0, when nothing read it: the tree ended before the first sample, or no process of it could be
   * read (see unreadableProcesses).
   */
  cpuUserMs: number | null;
  cpuSystemMs: number | null;
  cpuTimeMs: number | null;
  /** Why the CPU figures are null; null when they are not. */
  cpuReason: string | null;
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
  /**
   * The peak of the tree's summed PSS (proportional set size, Linux): each page shared between processes of the
   * tree — a forked pool's copy-on-write pages, shared libraries — counted once in all, divided among them, where
   * the RSS sum counts it once per process. Read in passes over the whole tree, paced by what they cost (the kernel
   * walks every page table: ~16 µs per MiB resident), so it can miss a peak shorter than its interval. null, with
   * treePeakPssReason, where no pass read one, or none read the tree at half its peak RSS sum or more (a tree that
   * grew faster than the passes are paid for: their figure would describe a smaller tree).
   */
  treePeakPssBytes: number | null;
  /** 'sampled': the largest PSS sum of the passes; null with treePeakPssBytes. */
  treePeakPssSource: 'sampled' | null;
  /** Why treePeakPssBytes is null; null when it is not. */
  treePeakPssReason: string | null;
  /** The mean interval between PSS passes, ms (paced by their cost; null with fewer than two). */
  treePssSampleIntervalMs: number | null;
  /** PSS passes that gave a figure. */
  treePssSamples: number;
  /**
   * Processes of the tree found alive but not readable: another user's process, seen through kill(pid, 0)'s EPERM,
   * under /proc's hidepid (or with /proc of another PID namespace). They count for nothing measured: the tree's
   * figures leave them out.
   */
  unreadableProcesses: number;
  /** Processes seen in the tree. */
  processes: number;
  /** 'rusage': exact, from wait4 of a command taskmeter started; 'sampled': /proc, in clock ticks (10 ms). */
  cpuSource: 'rusage' | 'sampled';
}

/** Whether this kernel has /proc/<pid>/smaps_rollup (Linux ≥ 4.14), where the tree's PSS comes from: asked once. */
let smapsRollup: boolean | undefined;
// A PSS figure is kept only where a pass read the tree at this share of its RSS peak or more (an RSS sum, as the
// peak is): native/tree.h runs a pass on each new RSS high 1/8 above the last while the budget lasts.
const PSS_NEAR_PEAK = 0.5;

function smapsRollupReadable(): boolean {
  smapsRollup ??= existsSync('/proc/self/smaps_rollup');
  return smapsRollup;
}

export interface TrackProcessOptions {
  /** How often the tree is sampled, ms (1–60000, default 10). */
  sampleIntervalMs?: number;
  /** Follow the descendants too (default true). */
  includeChildren?: boolean;
  /** Record usage.timeline (default true). */
  timeline?: boolean;
}

// A number with two names (6: SIGABRT and SIGIOT, 29: SIGIO and SIGPOLL on Linux) gets the one child_process
// reports, which is the first of os.constants.signals (Node lists the name it prints before its alias).
const SIGNAL_NAMES: Record<number, string> = {};
for (const [name, num] of Object.entries(constants.signals) as [string, number][]) SIGNAL_NAMES[num] ??= name;

/** The name child_process gives a signal number (e.g. 6 → 'SIGABRT'), or `SIG<n>` for one without a name. */
export function signalName(signo: number): string {
  return SIGNAL_NAMES[signo] ?? `SIG${signo}`;
}

const nn = (v: number): number | null => (Number.isFinite(v) && v >= 0 ? v : null);

function resolveTrackOptions(where: string, options: unknown) {
  const o = optionsObject(where, options, ['sampleIntervalMs', 'includeChildren', 'timeline']);
  return {
    intervalMs: intervalOption(o),
    descendants: boolOption('includeChildren', o.includeChildren, true),
    timeline: boolOption('timeline', o.timeline, true),
  };
}

/** A command's counters from wait4 and its zombie's /proc/<pid>/io; else the tree sampler's; else null. */
function processCounters(t: WindowStats['tree'] | undefined, exact: SpawnRecord | null): UsageCounters {
  const out: Record<string, number | null> = {};
  for (const k of COUNTER_KEYS) out[k] = exact?.counters[k] ?? (t ? nn(t.counters[k]) : null);
  return out as unknown as UsageCounters;
}

function processUsage(pid: number, c: ClosedWindow, exact: SpawnRecord | null): ProcessUsage {
  const t = (c.stats as WindowStats | null)?.tree;
  const base = buildUsage(c.start, c.end, c.stats, null, c.node, processCounters(t, exact));
  const sampledMax = t ? nn(t.maxHwmBytes) : null;
  let maxRssBytes = sampledMax;
  let maxRssSource: ProcessUsage['maxRssSource'] = sampledMax === null ? null : 'sampled';
  let maxRssPid = t && sampledMax !== null ? nn(t.maxHwmPid) : null;
  const maxRssCommand = sampledMax !== null ? c.maxHwmComm : null;
  let cpuUserMs = t ? nn(t.cpuUserMs) : null;
  let cpuSystemMs = t ? nn(t.cpuSystemMs) : null;
  let cpuSource: ProcessUsage['cpuSource'] = 'sampled';
  const unreadable = t && Number.isFinite(t.unreadable) ? t.unreadable : 0;
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
  const cpuKnown = cpuUserMs !== null && cpuSystemMs !== null;
  const cpuTimeMs = cpuKnown ? cpuUserMs! + cpuSystemMs! : null;
  const cpuReason = cpuKnown
    ? null
    : unreadable > 0
      ? `process ${pid} lives but may not be read (EPERM: another user's process, or /proc mounted with hidepid)`
      : `no sample read process ${pid}: it ended before the first one`;
  const rate = cpuTimeMs === null ? { cpuPercent: null, cpuPercentReason: cpuReason } : cpuRate(cpuTimeMs, wallTimeMs);
  // A figure only from passes that read the tree near its RSS peak: one that grew faster than the passes' budget pays
  // for (a build forking hundreds of processes) may have been read small only, and its PSS would be a plausible
  // figure of a tree that was not the one at its peak.
  const pssRead = t ? nn(t.pssPeakBytes) : null;
  const pssRss = t ? nn(t.pssRssBytes) : null;
  const rssPeak = t ? nn(t.rssPeakBytes) : null;
  const pssFar = pssRead !== null && pssRss !== null && rssPeak !== null && pssRss < PSS_NEAR_PEAK * rssPeak;
  const pssPeak = pssFar ? null : pssRead;
  const budget = `${+(native.PSS_CPU_BUDGET * 100).toPrecision(3)} % of a core`;
  const pssBudget = `passes are paced by their cost (${budget}; ~16 µs per MiB resident)`;
  const readAt = pssFar
    ? `an RSS sum of ${formatBytes(pssRss!)} at most, against a sampled RSS-sum peak of ${formatBytes(rssPeak!)}`
    : '';
  // pssFar first: its passes were complete (a denied one gives no figure), whatever was unreadable at other times
  const pssReason =
    pssPeak !== null
      ? null
      : pssFar
        ? `no PSS pass read the tree near its peak: the passes read ${readAt}; ${pssBudget}`
        : process.platform !== 'linux'
          ? 'PSS is read on Linux only'
          : t?.pssDenied || unreadable > 0
            ? "a process of the tree is not ours to read (another user's): its PSS is unknown"
            : t && t.samples > 0 && t.processes > 0
              ? smapsRollupReadable()
                ? `no PSS pass has read the tree: ${pssBudget}`
                : 'the kernel has no /proc/<pid>/smaps_rollup (Linux < 4.14): PSS is not read'
              : 'no sample saw the tree';
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
    cpuReason,
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
    treePeakPssBytes: pssPeak,
    treePeakPssSource: pssPeak === null ? null : 'sampled',
    treePeakPssReason: pssReason,
    treePssSampleIntervalMs: t ? nn(t.pssIntervalMs) : null,
    treePssSamples: t && Number.isFinite(t.pssSamples) ? t.pssSamples : 0,
    unreadableProcesses: unreadable,
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
  /** From the reaped rusage and the zombie's /proc/<pid>/io; null where unknown. */
  counters: UsageCounters;
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
    const closed = {
      start: w.start,
      end,
      stats,
      timeline: null,
      maxHwmComm: null,
      threadCpuMs: null,
      node: PROCESS_WINDOW,
      counters: NO_COUNTERS,
    };
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
/**
 * One of the command's standard descriptors: a mode, a file descriptor of this process (e.g. from fs.openSync), or an
 * object that has one in `fd` (an fs.WriteStream once it has opened, a FileHandle, process.stderr).
 */
export type StdioEntry = StdioMode | number | { readonly fd: number } | Stream;

/** Why taskmeter ended the command: `signal` was aborted, `timeout` passed, or the output passed `maxBuffer`. */
export type EndedBy = 'abort' | 'timeout' | 'maxBuffer';

export interface MeasureCommandOptions extends TrackProcessOptions {
  /** The command's working directory (default: ours). A missing one is an ENOENT error that names it. */
  cwd?: string;
  /** The command's environment (default: ours). The command is looked up in its PATH, as child_process does
   *  ('/usr/bin:/bin' when it has none). */
  env?: NodeJS.ProcessEnv;
  /**
   * 'inherit' (default), 'ignore', 'pipe' (capture stdout and stderr; stdin is then ignored), or
   * `[stdin, stdout, stderr]` as in child_process, each a mode or a descriptor (stdin cannot be 'pipe').
   */
  stdio?: StdioMode | readonly [StdioEntry, StdioEntry, StdioEntry];
  /** Called with the pid right after the command started (e.g. to forward signals to it). */
  onSpawn?: (pid: number) => void;
  /** Aborting it ends the command and its descendants with `killSignal` (the result's `endedBy` is 'abort'). */
  signal?: AbortSignal;
  /** End the command and its descendants with `killSignal` after this many ms (0, the default: never). */
  timeout?: number;
  /**
   * The signal that `signal`, `timeout` and `maxBuffer` send to the whole tree (default 'SIGTERM'); not a stop signal
   * (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU: a RangeError), since the tree is resumed after it.
   */
  killSignal?: NodeJS.Signals | number;
  /**
   * With 'pipe': the most bytes kept of stdout, and of stderr (default 1 MiB; Infinity for no limit). Past it the
   * command is ended with `killSignal` and the promise rejects with ERR_CHILD_PROCESS_STDIO_MAXBUFFER.
   */
  maxBuffer?: number;
  /**
   * With 'pipe': 'close' (default) resolves once the command has exited and its stdout and stderr have closed, so a
   * background process that inherited them and still holds them keeps it pending (child_process's 'close' event);
   * 'exit' resolves when the command exits, with what it wrote until then, and closes taskmeter's end of the pipes.
   */
  resolveOn?: 'close' | 'exit';
}

export interface CommandResult {
  /** The command as given: [command, ...args] (toRecord(result) writes it as `command`). */
  command: string[];
  /** The exit code, or null when the command was killed by a signal (then `signal` says which) or its status could
   *  not be read (both null). */
  exitCode: number | null;
  /** The signal that killed it, named as child_process names it (e.g. 'SIGTERM', 'SIGABRT'), or null. */
  signal: string | null;
  /** Set when taskmeter ended the command (see EndedBy); null when it ended by itself or by someone else's signal. */
  endedBy: EndedBy | null;
  pid: number;
  usage: ProcessUsage;
  /** With stdio 'pipe' (or a 'pipe' entry): what it wrote there, at most maxBuffer bytes. */
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

/** Default of `maxBuffer`: child_process.exec's. */
export const DEFAULT_MAX_BUFFER = 1024 * 1024;

/**
 * What the command writes to one pipe, kept up to `limit` bytes. Past it the rest is read and dropped (so that the
 * command never blocks on a full pipe before its kill signal arrives) and onOverflow runs once.
 */
class Capture {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  overflowed = false;
  readonly closed: Promise<void>;
  private readonly socket: Socket;

  constructor(
    private readonly fd: number,
    private readonly limit: number,
    private readonly onOverflow: () => void,
  ) {
    this.socket = new Socket({ fd, readable: true, writable: false });
    this.socket.on('data', (d: Buffer) => this.push(d));
    this.closed = new Promise((res) => {
      this.socket.on('error', () => res());
      this.socket.on('close', () => res());
    });
  }

  private push(d: Buffer): void {
    if (this.overflowed) return;
    if (this.size + d.length <= this.limit) {
      this.chunks.push(d);
      this.size += d.length;
      return;
    }
    const keep = this.limit - this.size;
    if (keep > 0) this.chunks.push(d.subarray(0, keep));
    this.size = this.limit;
    this.overflowed = true;
    this.onOverflow();
  }

  /** Takes what is in the pipe now (the socket has it non-blocking) and closes our end: nothing waits on it. */
  drainAndClose(): void {
    if (this.socket.destroyed) return;
    const buf = Buffer.allocUnsafe(65536);
    try {
      for (;;) {
        const n = readSync(this.fd, buf, 0, buf.length, null);
        if (n <= 0) break;
        this.push(Buffer.from(buf.subarray(0, n)));
        if (this.overflowed) break;
      }
    } catch {
      // EAGAIN: nothing more for now
    }
    this.socket.destroy();
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}

/** The [stdin, stdout, stderr] modes for the addon (-1 inherit, -2 /dev/null, -3 pipe, ≥ 0 a descriptor). */
function stdioModes(value: unknown): number[] {
  if (value === undefined || value === 'inherit') return [-1, -1, -1];
  if (value === 'ignore') return [-2, -2, -2];
  if (value === 'pipe') return [-2, -3, -3];
  if (!Array.isArray(value)) {
    const why =
      "taskmeter: option \"stdio\" must be 'inherit', 'ignore', 'pipe' or [stdin, stdout, stderr], " +
      `got ${describe(value)}`;
    throw typeof value === 'string' ? rangeError(why, 'ERR_INVALID_ARG_VALUE') : typeError(why);
  }
  if (value.length !== 3) {
    throw rangeError(
      `taskmeter: option "stdio" must have 3 entries, [stdin, stdout, stderr], got ${value.length}`,
      'ERR_INVALID_ARG_VALUE',
    );
  }
  return value.map((v: unknown, i) => {
    const name = `stdio[${i}]`;
    if (v === 'inherit') return -1;
    if (v === 'ignore') return -2;
    if (v === 'pipe') {
      if (i === 0) {
        throw rangeError(
          "taskmeter: option \"stdio[0]\" (stdin) cannot be 'pipe': use 'inherit', 'ignore' or a descriptor",
          'ERR_INVALID_ARG_VALUE',
        );
      }
      return -3;
    }
    let fd: unknown = v;
    if (v !== null && typeof v === 'object' && 'fd' in v) {
      fd = (v as { fd: unknown }).fd;
      if (typeof fd !== 'number') {
        throw typeError(
          `taskmeter: option "${name}" is an object without a file descriptor (its fd is ${describe(fd)}; ` +
            "an fs.WriteStream has one once it has emitted 'open')",
        );
      }
    }
    if (typeof fd !== 'number') {
      if (typeof fd === 'string') {
        throw rangeError(
          `taskmeter: option "${name}" must be 'inherit', 'ignore', 'pipe', a file descriptor or a stream with one, ` +
            `got ${describe(fd)}`,
          'ERR_INVALID_ARG_VALUE',
        );
      }
      throw typeError(
        `taskmeter: option "${name}" must be 'inherit', 'ignore', 'pipe', a file descriptor or a stream with one, ` +
          `got ${describe(fd)}`,
      );
    }
    if (!Number.isInteger(fd) || fd < 0 || fd > 2147483647) {
      throw rangeError(`taskmeter: option "${name}" must be a file descriptor (an integer ≥ 0), got ${fd}`);
    }
    try {
      fstatSync(fd);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EBADF';
      throw systemError(`taskmeter: option "${name}": descriptor ${fd} is not open (${code})`, code, 'fstat');
    }
    return fd;
  });
}

/**
 * Sends a signal to a command measureCommand() started, only while it has not ended: once it has, even before the
 * result is delivered, its pid may be given to another process, which must not get the signal. Returns true when
 * the signal was sent. (Windows: process.kill, which holds the command's process handle.)
 * @internal for the CLI's signal forwarding
 */
export function signalCommand(pid: number, signal: NodeJS.Signals): boolean {
  const signo = (constants.signals as Record<string, number>)[signal];
  if (signo === undefined) throw rangeError(`taskmeter: unknown signal ${describe(signal)}`, 'ERR_INVALID_ARG_VALUE');
  const r = native.spawnSignal(pid, signo);
  if (r === 0) return true;
  if (r !== ENOSYS) return false;
  try {
    return process.kill(pid, signal);
  } catch {
    return false;
  }
}
const ENOSYS = (constants.errno as Record<string, number>).ENOSYS ?? 38;
const ESRCH = (constants.errno as Record<string, number>).ESRCH ?? 3;

// Signals that stop a process instead of ending it. Ending a command stops its tree, signals it, then resumes it
// (SIGCONT), which would cancel any of them but SIGSTOP, and SIGSTOP would leave the command stopped for ever.
const STOP_SIGNALS = ['SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU'];

function signalNumber(value: unknown): number {
  if (value === undefined) return constants.signals.SIGTERM;
  const signals = constants.signals as Record<string, number>;
  let signo: number;
  if (typeof value === 'string') {
    if (!Object.hasOwn(signals, value)) {
      throw rangeError(
        `taskmeter: option "killSignal" must be a signal name such as 'SIGTERM' or 'SIGKILL', got ${describe(value)}`,
        'ERR_INVALID_ARG_VALUE',
      );
    }
    signo = signals[value];
  } else if (typeof value === 'number') {
    if (!Object.values(signals).includes(value))
      throw rangeError(`taskmeter: option "killSignal" must be a signal number of this system, got ${value}`);
    signo = value;
  } else {
    throw typeError(`taskmeter: option "killSignal" must be a signal name or number, got ${describe(value)}`);
  }
  if (STOP_SIGNALS.some((name) => signals[name] === signo)) {
    throw rangeError(
      `taskmeter: option "killSignal" must be a signal that ends a process, got ${describe(value)}, which stops ` +
        "it (the tree is resumed after the signal); use 'SIGTERM' or 'SIGKILL'",
      'ERR_INVALID_ARG_VALUE',
    );
  }
  return signo;
}

function abortSignalOption(value: unknown): AbortSignal | null {
  if (value === undefined) return null;
  const s = value as AbortSignal | null;
  if (
    s === null ||
    typeof s !== 'object' ||
    typeof s.aborted !== 'boolean' ||
    typeof s.addEventListener !== 'function' ||
    typeof s.removeEventListener !== 'function'
  ) {
    throw typeError(`taskmeter: option "signal" must be an AbortSignal, got ${describe(value)}`);
  }
  return s;
}

function maxBufferOption(value: unknown): number {
  if (value === undefined) return DEFAULT_MAX_BUFFER;
  if (typeof value !== 'number')
    throw typeError(`taskmeter: option "maxBuffer" must be a number, got ${describe(value)}`);
  if (Number.isNaN(value) || value < 0 || (Number.isFinite(value) && !Number.isInteger(value))) {
    throw rangeError(`taskmeter: option "maxBuffer" must be a whole number of bytes ≥ 0 or Infinity, got ${value}`);
  }
  return value;
}

/** Starts a command, tracks it and its descendants, and resolves when it exits (see `resolveOn` for 'pipe'). */
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
      'signal',
      'timeout',
      'killSignal',
      'maxBuffer',
      'resolveOn',
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
    const modes = stdioModes(o.stdio);
    if (o.onSpawn !== undefined && typeof o.onSpawn !== 'function')
      throw typeError(`taskmeter: option "onSpawn" must be a function, got ${describe(o.onSpawn)}`);
    const abortSignal = abortSignalOption(o.signal);
    // setTimeout's limit (2^31 - 1 ms, about 24.8 days)
    const timeoutMs = intOption('timeout', o.timeout, 0, 2147483647, 0);
    const killSignal = signalNumber(o.killSignal);
    const maxBuffer = maxBufferOption(o.maxBuffer);
    const resolveOn = o.resolveOn ?? 'close';
    if (resolveOn !== 'close' && resolveOn !== 'exit') {
      throw rangeError(
        `taskmeter: option "resolveOn" must be 'close' or 'exit', got ${describe(o.resolveOn)}`,
        'ERR_INVALID_ARG_VALUE',
      );
    }
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
      // Node's descriptors belong to node.exe's C runtime, which the addon cannot hand to a child (no descriptor;
      // 'pipe' is read by the addon itself), and CreateProcess would run a batch file through cmd.exe with arguments
      // cmd re-parses.
      if (modes.some((m) => m >= 0)) {
        const e = new Error(
          "taskmeter: measureCommand: descriptors are not supported on Windows; use 'inherit', 'ignore' or 'pipe'",
        ) as NodeJS.ErrnoException;
        e.code = 'ENOTSUP';
        throw e;
      }
      if (/\.(bat|cmd)$/i.test(file)) {
        throw rangeError(
          `taskmeter: measureCommand(command): ${command} is a batch file; ` +
            "run it as measureCommand('cmd.exe', ['/d', '/c', ...])",
          'ERR_INVALID_ARG_VALUE',
        );
      }
    }
    if (abortSignal?.aborted) throw abortError(abortSignal.reason);
    const envList = Object.entries(env)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`);
    let spawned: { pid: number; fds: number[] };
    // Filled in once started; the exit callback always comes later (through the event loop).
    let onExit: (buf: Float64Array) => void = () => {};
    // Windows: the addon reads the pipes itself and hands over what they held with the exit slots.
    let winOutput: { out: Buffer; err: Buffer; overflow: boolean } | null = null;
    try {
      spawned = native.spawn(
        file,
        [command, ...args],
        envList,
        o.cwd === undefined ? null : cwd,
        modes,
        (buf, out, err, overflow) => {
          if (out && err) winOutput = { out, err, overflow: overflow === true };
          onExit(buf);
        },
      );
    } catch (err) {
      throw spawnError(err as NodeJS.ErrnoException & { stage?: number }, command, cwd);
    }
    const pid = spawned.pid;
    const tracker = new ProcessTracker(pid, opts, false, false);
    let exited = false;
    let endedBy: EndedBy | null = null;
    // Ends the command's whole tree, once, and only while it has not been reaped (its pid could be reused after).
    const endWait = () => {
      // Ended by itself; what is left is a wait for its pipes (a background process holding them): that wait ends
      // here, and nothing is signalled (the command's pid is no longer its own).
      for (const c of captures) c.drainAndClose();
    };
    const end = (why: EndedBy) => {
      if (exited) return endWait();
      if (endedBy !== null) return;
      if (process.platform === 'win32') {
        try {
          process.kill(pid, killSignal);
        } catch {
          return endWait(); // already exited (the addon holds its handle: the pid is still its own)
        }
      } else {
        const r = native.killTree(pid, killSignal);
        // -ESRCH: the command has already ended by itself, its result still on its way to this thread
        if (r === -ESRCH) return endWait();
        if (r <= 0) return; // not ours to signal (EPERM): nothing ended it
      }
      endedBy = why;
    };
    // [stdout, stderr]: a Capture for each one piped
    const piped = [1, 2].map((i) =>
      spawned.fds[i] >= 0 ? new Capture(spawned.fds[i], maxBuffer, () => end('maxBuffer')) : null,
    );
    const captures: Capture[] = piped.filter((c): c is Capture => c !== null);
    const onAbort = () => end('abort');
    abortSignal?.addEventListener('abort', onAbort, { once: true });
    const timer = timeoutMs > 0 ? setTimeout(() => end('timeout'), timeoutMs) : null;
    try {
      (o.onSpawn as ((pid: number) => void) | undefined)?.(pid);
    } catch (err) {
      reject(err);
    }
    // The signal and the timeout stay armed while the promise waits for the pipes after the exit (resolveOn 'close').
    const disarm = () => {
      if (timer) clearTimeout(timer);
      abortSignal?.removeEventListener('abort', onAbort);
    };
    onExit = (buf) => {
      exited = true;
      const signalNo = buf[SP_SIGNAL];
      const record: SpawnRecord = {
        exitCode: Number.isFinite(buf[SP_EXIT_CODE]) ? buf[SP_EXIT_CODE] : null,
        signal: Number.isFinite(signalNo) ? signalName(signalNo) : null,
        userMs: nn(buf[SP_USER_MS]),
        systemMs: nn(buf[SP_SYSTEM_MS]),
        maxRssBytes: nn(buf[SP_MAX_RSS_BYTES]),
        treePeakBytes: nn(buf[SP_TREE_PEAK_BYTES]),
        contaminationBytes: buf[SP_CONTAMINATION_BYTES],
        wallTimeMs: Math.max(0, buf[SP_END_MONO_MS] - buf[SP_START_MONO_MS]),
        endEpochMs: buf[SP_END_EPOCH_MS],
        counters: {
          minorPageFaults: nn(buf[SP_MINOR_FAULTS]),
          majorPageFaults: nn(buf[SP_MAJOR_FAULTS]),
          voluntaryContextSwitches: nn(buf[SP_VOLUNTARY_CTX_SWITCHES]),
          involuntaryContextSwitches: nn(buf[SP_INVOLUNTARY_CTX_SWITCHES]),
          fsInputBlocks: nn(buf[SP_FS_INPUT_BLOCKS]),
          fsOutputBlocks: nn(buf[SP_FS_OUTPUT_BLOCKS]),
          ioReadBytes: nn(buf[SP_IO_READ_BYTES]),
          ioWriteBytes: nn(buf[SP_IO_WRITE_BYTES]),
        },
      };
      const usage = tracker.finish(record);
      // the window opened right after the fork; the command's own start is the fork
      usage.startedAt = Math.min(usage.startedAt, record.endEpochMs - record.wallTimeMs);
      // the chart's title: the command line as a shell user types it
      if (usage.timeline) usage.timeline.title = shellCommand([command, ...args]);
      const result: CommandResult = {
        command: [command, ...args],
        exitCode: record.exitCode,
        signal: record.signal,
        endedBy,
        pid,
        usage,
      };
      if (winOutput) {
        // Windows' pipes, read to their end by the addon: maxBuffer applies now (the command was not ended early)
        disarm();
        const w: { out: Buffer; err: Buffer; overflow: boolean } = winOutput;
        const full: CommandResult = { ...result };
        if (modes[1] === -3) full.stdout = w.out.subarray(0, maxBuffer);
        if (modes[2] === -3) full.stderr = w.err.subarray(0, maxBuffer);
        if (w.overflow || w.out.length > maxBuffer || w.err.length > maxBuffer) reject(maxBufferError(full, maxBuffer));
        else resolvePromise(full);
        return;
      }
      if (captures.length === 0) {
        disarm();
        resolvePromise(result);
        return;
      }
      // Once taskmeter has ended the command, nothing is left to wait for: its pipes are closed like with 'exit'.
      if (resolveOn === 'exit' || endedBy !== null) for (const c of captures) c.drainAndClose();
      Promise.all(captures.map((c) => c.closed)).then(() => {
        disarm();
        const full: CommandResult = { ...result };
        if (piped[0]) full.stdout = piped[0].data;
        if (piped[1]) full.stderr = piped[1].data;
        if (captures.some((c) => c.overflowed)) reject(maxBufferError(full, maxBuffer));
        else resolvePromise(full);
      });
    };
  });
}

/** As child_process's AbortError: code 'ABORT_ERR', the signal's reason as `cause`. */
function abortError(reason: unknown): Error {
  const e = codedError(Error, 'taskmeter: measureCommand: the operation was aborted before it started', 'ABORT_ERR');
  e.name = 'AbortError';
  (e as Error & { cause?: unknown }).cause = reason;
  return e;
}

/** The rejection when stdout or stderr passed maxBuffer: `result` holds the usage and the output kept. */
function maxBufferError(result: CommandResult, maxBuffer: number): Error {
  const which = [
    (result.stdout?.length ?? 0) >= maxBuffer ? 'stdout' : null,
    (result.stderr?.length ?? 0) >= maxBuffer ? 'stderr' : null,
  ].filter(Boolean);
  const e = codedError(
    RangeError,
    `taskmeter: measureCommand: ${which.join(' and ')} passed maxBuffer (${maxBuffer} bytes)` +
      (result.endedBy === 'maxBuffer' ? `, so the command was ended (${result.signal ?? 'exited'})` : ''),
    'ERR_CHILD_PROCESS_STDIO_MAXBUFFER',
  );
  (e as Error & { result?: CommandResult }).result = result;
  return e;
}
