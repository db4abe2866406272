// taskmeter [options] -- <command> [args…]: runs a command like `/usr/bin/time -v` does, with GPU rows.
// The library is loaded only after the arguments are read, so that --no-gpu keeps NVML from ever loading.
import { closeSync, openSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import type * as Taskmeter from './index';
import { shellCommand } from './shell';

const HELP = `Usage: taskmeter [options] -- <command> [args...]

Runs the command, then prints what it cost to stderr: wall clock, CPU (user, system), max RSS of a single process
and the peak of the whole process tree, and per NVIDIA GPU: process and device memory peaks, energy, utilization.
The command keeps stdin, stdout, stderr and the terminal: taskmeter never writes to stdout.
Exits with the command's exit code (128 + the signal number if it was killed; 127 if it cannot be found,
126 if it cannot be run, 2 for a usage error or an output file that cannot be written).

While the command runs, taskmeter ignores SIGINT and SIGQUIT (the terminal sends them to the command too) and
forwards SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM sent to it to the command.

Options:
  --json              print the record (JSON) to stderr instead of the report
  -o, --output FILE   write the record (JSON) to FILE (- for stdout, after the command's own output)
  -i, --interval MS   sampling interval in ms (1-60000, default 10)
      --no-gpu        do not load NVML (no GPU readings)
  -t, --timeline FILE write a timeline chart: .html, .svg or .csv
  -q, --quiet         no report on stderr (--json still prints the record)
  -v, --verbose       accepted for GNU time's -v (the report is always the verbose one)
  -h, --help          show this help
  -V, --version       show the version

Unlike GNU time, -o FILE writes the JSON record (not the report) to FILE. Each option may be given once.
`;

class UsageError extends Error {}

// util.parseArgs's messages, said plainly (its own quote an option in unbalanced quotes).
function usageMessage(raw: string): string {
  const m = raw.replace(/^TypeError \[[A-Z_]+\]: /, '');
  let r = /^Unknown option '([^']+)'/.exec(m);
  if (r) return `unknown option ${r[1]} (to pass it to the command, put it after --)`;
  r = /^Option '(?:-\w, )?(--[\w-]+)[^']*' argument missing/.exec(m);
  if (r) return `option ${r[1]} needs a value`;
  r = /^Option '(?:-\w, )?(--[\w-]+)[^']*' does not take an argument/.exec(m);
  if (r) return `option ${r[1]} takes no value`;
  return m;
}

// One short line about the GPU for a host without one; the full reason is in the --json record (gpu_reason).
function gpuLine(tm: typeof Taskmeter, noGpu: boolean): string {
  if (noGpu) return 'off (--no-gpu)';
  if (tm.hasGpu) return 'no readings';
  const reason = tm.gpuInfo().reason ?? '';
  if (/TASKMETER_DISABLE_GPU/.test(reason)) return 'off (TASKMETER_DISABLE_GPU)';
  if (/not found/i.test(reason)) return 'none (no NVIDIA driver found)';
  return 'none (see gpu_reason in --json)';
}

export interface CliIo {
  /** --help, --version and -o -'s record (bin/taskmeter.js: writeStdoutSync) */
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const PARSE_OPTIONS = {
  json: { type: 'boolean' },
  output: { type: 'string', short: 'o' },
  interval: { type: 'string', short: 'i' },
  'no-gpu': { type: 'boolean' },
  timeline: { type: 'string', short: 't' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  verbose: { type: 'boolean', short: 'v' },
  version: { type: 'boolean', short: 'V' },
} as const;

/**
 * As getopt does, the argument after an option that takes a value is that value, even when it starts with a dash
 * (`-i -5`, `-o -`): joined to it here (`--interval=-5`, `-o-`) so that util.parseArgs reads it so, and the value is
 * then checked like any other. A cluster of short flags may end with one that takes a value (`-qo -`).
 */
function joinValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = args[i + 1];
    const long = /^--(interval|output|timeline)$/.test(a);
    const short = /^-[qvhV]*[iot]$/.test(a);
    if ((long || short) && next !== undefined) {
      out.push(long ? `${a}=${next}` : `${a}${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function parse(argv: string[]) {
  const dd = argv.indexOf('--');
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  let parsed;
  try {
    parsed = parseArgs({
      args: joinValues(own),
      allowPositionals: true,
      strict: true,
      tokens: true,
      options: PARSE_OPTIONS,
    });
  } catch (e) {
    throw new UsageError(usageMessage((e as Error).message));
  }
  const { values, positionals, tokens } = parsed;
  // A repeated option is a mistake to point out (GNU time would keep the last one silently).
  const seen = new Map<string, string>();
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const given = t.value === undefined ? t.rawName : `${t.rawName} ${t.value}`;
    const before = seen.get(t.name);
    if (before !== undefined) throw new UsageError(`option --${t.name} given twice (${before}, then ${given})`);
    seen.set(t.name, given);
  }
  // `taskmeter cmd args` without `--` also works when the command comes before any taskmeter option.
  const command = dd >= 0 ? rest : positionals;
  if (dd >= 0 && positionals.length > 0) throw new UsageError(`unexpected argument before --: ${positionals[0]}`);
  let interval: number | undefined;
  if (values.interval !== undefined) {
    const v = values.interval;
    interval = /^\d+$/.test(v) ? Number(v) : Number.NaN;
    if (!(interval >= 1 && interval <= 60000))
      throw new UsageError(`--interval must be a whole number of ms from 1 to 60000, got ${JSON.stringify(v)}`);
  }
  if (values.output === '') throw new UsageError('--output needs a file name (or - for stdout)');
  if (
    values.timeline !== undefined &&
    !['.html', '.htm', '.svg', '.csv'].includes(extname(values.timeline).toLowerCase())
  ) {
    throw new UsageError(`--timeline FILE must end in .html, .svg or .csv, got ${JSON.stringify(values.timeline)}`);
  }
  return { values, command, interval };
}

const fmtS = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

function sampledEvery(u: Taskmeter.ProcessUsage): string {
  const eff = u.effectiveSampleIntervalMs;
  if (u.samples === 0) return 'seen only at its end';
  // stretched: more than a tenth over the asked interval (a mean of 10.04 ms is 10 ms, not a stretch)
  if (eff !== null && u.sampleIntervalMs !== null && eff > u.sampleIntervalMs * 1.1) {
    return `sampled every ${u.sampleIntervalMs} ms, stretched to ${+eff.toFixed(1)} ms for a big tree`;
  }
  return `sampled every ${u.sampleIntervalMs} ms`;
}

function pssEvery(u: Taskmeter.ProcessUsage): string {
  const n = u.treePssSamples;
  const iv = u.treePssSampleIntervalMs;
  return n === 1 ? 'read once' : `${n} reads${iv === null ? '' : `, every ${Math.round(iv)} ms`}`;
}

// Why the report has no CPU %, in a few words (the record's cpu_percent_reason has the sentence).
function cpuNa(u: Taskmeter.ProcessUsage): string {
  // cpuRate() refuses a rate for a run shorter than the CPU clock's resolution (10 ms; 15.6 ms on Windows) and for a
  // clock step (more CPU than the cores can give); the second needs a long run to be told apart.
  return u.wallTimeMs < 1000 ? 'too short a run for a rate' : 'a CPU clock step, see cpu_percent_reason in --json';
}

function report(tm: typeof Taskmeter, command: string[], r: Taskmeter.CommandResult, noGpu: boolean): string {
  const u = r.usage;
  const b = (v: number | null) => (v === null ? 'n/a' : tm.formatBytes(v));
  const rows: [string, string][] = [
    ['Command', shellCommand(command)],
    [
      'Exit status',
      r.signal ? `killed by ${r.signal}` : r.exitCode === null ? 'unknown (not reported)' : String(r.exitCode),
    ],
    ['Wall clock time', fmtS(u.wallTimeMs)],
    ['User time', u.cpuUserMs === null ? `n/a (${u.cpuReason})` : fmtS(u.cpuUserMs)],
    ['System time', u.cpuSystemMs === null ? 'n/a' : fmtS(u.cpuSystemMs)],
    [
      'CPU',
      u.cpuPercent === null
        ? `n/a (${u.cpuTimeMs === null ? 'no CPU figure' : cpuNa(u)})`
        : `${u.cpuPercent.toFixed(0)} %`,
    ],
    [
      'Maximum resident set size',
      `${b(u.maxRssBytes)}${u.maxRssCommand ? `  (${u.maxRssCommand}, pid ${u.maxRssPid})` : ''}` +
        (u.maxRssSource === 'rusage'
          ? process.platform === 'win32'
            ? '  commit peak, from the job'
            : '  exact'
          : u.maxRssSource === 'sampled'
            ? '  sampled'
            : ''),
    ],
    [
      'Peak RSS, process tree',
      u.treePeakRssBytes === null
        ? `n/a (the command ended before the first sample)`
        : u.samples === 0 || u.processes === 0
          ? `${b(u.treePeakRssBytes)}  (the kernel's account at exit: no sample saw the command)`
          : `${b(u.treePeakRssBytes)}  (${u.processes} process${u.processes === 1 ? '' : 'es'}, ${sampledEvery(u)})`,
    ],
    [
      'Peak PSS, process tree',
      u.treePeakPssBytes === null
        ? `n/a (${u.treePeakPssReason})`
        : `${b(u.treePeakPssBytes)}  (shared pages divided among the processes; ${pssEvery(u)})`,
    ],
  ];
  if (u.unreadableProcesses > 0) {
    rows.push(['Unreadable processes', `${u.unreadableProcesses} (alive, another user's: not in the figures above)`]);
  }
  // The rest of GNU time -v, with its labels; then the I/O bytes, which it does not have.
  const n = (v: number | null) => (v === null ? 'n/a' : String(v));
  const io = (v: number | null) => (v === null ? 'n/a' : `${tm.formatBytes(v)}  (${v} bytes)`);
  rows.push(
    ['Major (requiring I/O) page faults', n(u.majorPageFaults)],
    ['Minor (reclaiming a frame) page faults', n(u.minorPageFaults)],
    ['Voluntary context switches', n(u.voluntaryContextSwitches)],
    ['Involuntary context switches', n(u.involuntaryContextSwitches)],
    ['File system inputs', n(u.fsInputBlocks)],
    ['File system outputs', n(u.fsOutputBlocks)],
    ['Bytes read (read calls)', io(u.ioReadBytes)],
    ['Bytes written (write calls)', io(u.ioWriteBytes)],
  );
  if (u.gpus.length === 0) {
    rows.push(['GPU', gpuLine(tm, noGpu)]);
  }
  for (const g of u.gpus) {
    const notSampled = (v: number | null) =>
      v === null && g.reasonCode === 'GPU_NOT_SAMPLED' ? 'n/a (not sampled)' : b(v);
    const parts = [
      'process peak ' +
        (g.processMemoryPeakBytes !== null
          ? b(g.processMemoryPeakBytes)
          : g.processMemoryReasonCode === 'GPU_NOT_SAMPLED'
            ? 'n/a (not sampled)'
            : `n/a (${g.processMemoryReason})`),
      `device peak ${notSampled(g.memoryUsedPeakBytes)}`,
      `energy ${g.energyJoules === null ? 'n/a' : `${g.energyJoules.toFixed(1)} J`}`,
      `utilization ${g.utilizationAvgPercent === null ? 'n/a' : `${g.utilizationAvgPercent.toFixed(0)} %`}`,
    ];
    if (g.error) parts.push(`error: ${g.error}`);
    const label = g.mig
      ? `GPU ${g.index} MIG ${g.mig.gpuInstanceId ?? '?'}/${g.mig.computeInstanceId ?? '?'} ${g.name}`
      : `GPU ${g.index} ${g.name}`;
    rows.push([label, parts.join(', ')]);
  }
  if (u.gpus.length > 0) {
    const util = u.gpuProcessUtilizationPercent;
    const why = u.gpus.find((g) => g.processUtilizationReason !== null)?.processUtilizationReason;
    rows.push([
      'GPU own utilization',
      util === null
        ? `n/a (${why ?? 'no reading'})`
        : `${util.toFixed(0)} % SM (the command's processes, mean over the run)`,
    ]);
  }
  if (u.gpuStale) rows.push(['GPU data', `stale: ${u.gpuStaleReason}`]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return ['taskmeter report', ...rows.map(([k, v]) => `  ${(k + ':').padEnd(width)} ${v}`)].join('\n') + '\n';
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`taskmeter: ${e.message}\n\n${HELP}`);
      return 2;
    }
    throw e;
  }
  const { values, command, interval } = parsed;
  if (values.help) {
    io.stdout(HELP);
    return 0;
  }
  if (values.version) {
    io.stdout(`${require('../package.json').version}\n`);
    return 0;
  }
  if (command.length === 0) {
    io.stderr(`taskmeter: no command given\n\n${HELP}`);
    return 2;
  }
  // Output files are opened (created, truncated) before the command starts, as GNU time does with -o: one that
  // cannot be written is refused before any work is done. `-o -` is stdout, written once the command has ended.
  const files: OutputFiles = {};
  for (const [key, flag] of [
    ['output', '-o'],
    ['timeline', '-t'],
  ] as const) {
    const path = values[key];
    if (path === undefined) continue;
    if (key === 'output' && path === '-') {
      files.outputToStdout = true;
      continue;
    }
    try {
      files[key] = openSync(path, 'w');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      for (const fd of Object.values(files)) closeSync(fd);
      const why = err.message.replace(/^[A-Z]+: /, '').replace(/, open '.*'$/s, '');
      io.stderr(`taskmeter: cannot write ${flag} ${path}: ${why} (${err.code})\n`);
      return 2;
    }
  }
  try {
    return await runCommand(values, command, interval, files, io);
  } finally {
    for (const fd of [files.output, files.timeline]) if (fd !== undefined) closeSync(fd);
  }
}

interface OutputFiles {
  output?: number;
  timeline?: number;
  /** -o -: the record goes to stdout */
  outputToStdout?: boolean;
}

/**
 * Writes to descriptor 1 without touching process.stdout, whose first use would make a piped stdout non-blocking for
 * every process that shares it (a background job the command left behind). A reader that is gone (EPIPE) gets
 * nothing: the exit status stays the command's.
 */
export function writeStdoutSync(text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(1, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // a full non-blocking pipe: wait a little
    }
  }
}

/** The signals sent to taskmeter's own pid that it passes on to the command. */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGALRM'];
/** Ignored while the command runs: a terminal sends them to its whole foreground process group, the command too. */
export const IGNORED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGQUIT'];
/** Windows: Ctrl-C, Ctrl-Break and a closing console (SIGHUP) are handled only so that taskmeter lives to report. */
export const WIN32_KEPT_ALIVE_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGBREAK', 'SIGHUP', 'SIGTERM'];

async function runCommand(
  values: ReturnType<typeof parse>['values'],
  command: string[],
  interval: number | undefined,
  files: OutputFiles,
  io: CliIo,
): Promise<number> {
  if (values['no-gpu']) process.env.TASKMETER_DISABLE_GPU = '1';
  const tm: typeof Taskmeter = require('./index');
  const { signalCommand } = require('./process') as typeof import('./process');
  let childPid = 0;
  // Only while the command has not ended: after that its pid may already name another process.
  const forward = (sig: NodeJS.Signals) => () => {
    if (childPid) signalCommand(childPid, sig);
  };
  const ignore = () => {};
  // POSIX: forward what was sent to taskmeter alone, ignore what a terminal sends to the whole foreground process
  // group. Windows: only Ctrl-C, Ctrl-Break and a closing console arrive, and they reach every process on the
  // console, the command included (process.kill() there would be TerminateProcess): taskmeter only stays alive.
  const handlers: [NodeJS.Signals, () => void][] =
    process.platform === 'win32'
      ? WIN32_KEPT_ALIVE_SIGNALS.map((s): [NodeJS.Signals, () => void] => [s, ignore])
      : [
          ...FORWARDED_SIGNALS.map((s): [NodeJS.Signals, () => void] => [s, forward(s)]),
          ...IGNORED_SIGNALS.map((s): [NodeJS.Signals, () => void] => [s, ignore]),
        ];
  for (const [s, h] of handlers) process.on(s, h);
  let result: Taskmeter.CommandResult;
  try {
    result = await tm.measureCommand(command[0], command.slice(1), {
      sampleIntervalMs: interval,
      timeline: values.timeline !== undefined,
      onSpawn: (pid) => (childPid = pid),
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' && err.syscall !== 'chdir') {
      io.stderr(`taskmeter: ${command[0]}: command not found\n`);
      return 127;
    }
    if (err.code === 'EACCES') {
      io.stderr(`taskmeter: ${command[0]}: permission denied\n`);
      return 126;
    }
    io.stderr(`${err.message}\n`);
    return 126;
  } finally {
    for (const [s, h] of handlers) process.off(s, h);
  }
  const exitCode = result.signal
    ? 128 + ((constants.signals as Record<string, number>)[result.signal] ?? 0)
    : (result.exitCode ?? 1);
  let json: string | null = null;
  if (values.json || files.output !== undefined || files.outputToStdout) {
    // toRecord of the result: the usage's record with command, exit_code, signal and ended_by
    const record = {
      ...tm.toRecord(result),
      ...(values['no-gpu'] ? { gpu_reason: 'turned off with --no-gpu' } : {}),
    };
    json = JSON.stringify(record, null, 2) + '\n';
    if (files.output !== undefined) writeSync(files.output, json);
  }
  if (files.timeline !== undefined && values.timeline && result.usage.timeline) {
    const ext = extname(values.timeline).toLowerCase();
    const format = ext === '.csv' ? 'csv' : ext === '.svg' ? 'svg' : 'html';
    writeSync(files.timeline, tm.renderTimeline(result.usage.timeline, { format }));
  }
  // stdout is the command's (and -o -'s, after it): the record (--json) or the report goes to stderr.
  if (values.json && json !== null) io.stderr(json);
  else if (!values.quiet) io.stderr(report(tm, command, result, values['no-gpu'] === true));
  if (files.outputToStdout && json !== null) io.stdout(json);
  return exitCode;
}
