// taskmeter [options] -- <command> [args…]: runs a command like `/usr/bin/time -v` does, with GPU rows.
// The library is loaded only after the arguments are read, so that --no-gpu keeps NVML from ever loading.
import { writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import type * as Taskmeter from './index';

const HELP = `Usage: taskmeter [options] -- <command> [args...]

Runs the command, then prints what it cost to stderr: wall clock, CPU (user, system), max RSS of a single process
and the peak of the whole process tree, and per NVIDIA GPU: process and device memory peaks, energy, utilization.
Exits with the command's exit code (128 + the signal number if it was killed; 127 if it cannot be found).

Options:
  --json              print the record (JSON) to stdout
  -o, --output FILE   write the record (JSON) to FILE
  -i, --interval MS   sampling interval in ms (1-60000, default 10)
      --no-gpu        do not load NVML (no GPU readings)
  -t, --timeline FILE write a timeline chart: .html, .svg or .csv
  -q, --quiet         no report on stderr
  -h, --help          show this help
  -v, --version       show the version
`;

class UsageError extends Error {}

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

function parse(argv: string[]) {
  const dd = argv.indexOf('--');
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: own,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean' },
        output: { type: 'string', short: 'o' },
        interval: { type: 'string', short: 'i' },
        'no-gpu': { type: 'boolean' },
        timeline: { type: 'string', short: 't' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
  // `taskmeter cmd args` without `--` also works when the command comes before any taskmeter option.
  const command = dd >= 0 ? rest : positionals;
  if (dd >= 0 && positionals.length > 0) throw new UsageError(`unexpected argument before --: ${positionals[0]}`);
  let interval: number | undefined;
  if (values.interval !== undefined) {
    if (!/^\d+$/.test(values.interval))
      throw new UsageError(`--interval must be a whole number of ms, got "${values.interval}"`);
    interval = Number(values.interval);
    if (interval < 1 || interval > 60000)
      throw new UsageError(`--interval must be from 1 to 60000 ms, got ${interval}`);
  }
  if (
    values.timeline !== undefined &&
    !['.html', '.htm', '.svg', '.csv'].includes(extname(values.timeline).toLowerCase())
  ) {
    throw new UsageError(`--timeline FILE must end in .html, .svg or .csv, got "${values.timeline}"`);
  }
  return { values, command, interval };
}

const fmtS = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

function report(tm: typeof Taskmeter, command: string[], r: Taskmeter.CommandResult): string {
  const u = r.usage;
  const b = (v: number | null) => (v === null ? 'n/a' : tm.formatBytes(v));
  const rows: [string, string][] = [
    ['Command', command.map((a) => (/[\s"'$`\\]/.test(a) ? JSON.stringify(a) : a)).join(' ')],
    ['Exit status', r.signal ? `killed by ${r.signal}` : String(r.exitCode)],
    ['Wall clock time', fmtS(u.wallTimeMs)],
    ['User time', fmtS(u.cpuUserMs)],
    ['System time', fmtS(u.cpuSystemMs)],
    ['CPU', u.cpuPercent === null ? 'n/a' : `${u.cpuPercent.toFixed(0)} %`],
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
        ? `n/a (the command ended before the first sample, ${u.sampleIntervalMs} ms)`
        : `${b(u.treePeakRssBytes)}  (${u.processes} process${u.processes === 1 ? '' : 'es'}, ` +
          `sampled every ${u.sampleIntervalMs} ms)`,
    ],
  ];
  if (u.gpus.length === 0) {
    rows.push(['GPU', tm.hasGpu ? 'no readings' : `none (${tm.gpuInfo().reason})`]);
  }
  for (const g of u.gpus) {
    const parts = [
      'process peak ' +
        (g.processMemoryPeakBytes === null ? `n/a (${g.processMemoryReason})` : b(g.processMemoryPeakBytes)),
      `device peak ${b(g.memoryUsedPeakBytes)}`,
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
  if (values['no-gpu']) process.env.TASKMETER_DISABLE_GPU = '1';
  const tm: typeof Taskmeter = require('./index');
  let childPid = 0;
  const forward = (sig: NodeJS.Signals) => () => {
    // Windows: Ctrl-C/Ctrl-Break and a closing console reach every process on the console, the command included;
    // process.kill() there would be TerminateProcess. So the handlers only keep taskmeter alive to report.
    if (childPid && process.platform !== 'win32') {
      try {
        process.kill(childPid, sig);
      } catch {
        // already gone
      }
    }
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  if (process.platform === 'win32') signals.push('SIGBREAK'); // Ctrl-Break: also stay alive to report
  const handlers: [NodeJS.Signals, () => void][] = signals.map((s) => [s, forward(s)]);
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
    if (err.code === 'ENOENT') {
      io.stderr(`taskmeter: ${command[0]}: command not found\n`);
      return 127;
    }
    if (err.code === 'EACCES') {
      io.stderr(`taskmeter: ${command[0]}: permission denied\n`);
      return 126;
    }
    io.stderr(`taskmeter: ${err.message}\n`);
    return 126;
  } finally {
    for (const [s, h] of handlers) process.off(s, h);
  }
  const exitCode = result.signal
    ? 128 + ((constants.signals as Record<string, number>)[result.signal] ?? 0)
    : (result.exitCode ?? 1);
  if (values.json || values.output) {
    const record = { ...tm.toRecord(result.usage), command, exit_code: result.exitCode, signal: result.signal };
    const text = JSON.stringify(record, null, 2) + '\n';
    if (values.json) io.stdout(text);
    if (values.output) writeFileSync(values.output, text);
  }
  if (values.timeline && result.usage.timeline) {
    const ext = extname(values.timeline).toLowerCase();
    const format = ext === '.csv' ? 'csv' : ext === '.svg' ? 'svg' : 'html';
    writeFileSync(
      values.timeline,
      tm.renderTimeline({ ...result.usage.timeline, title: command.join(' ') }, { format }),
    );
  }
  if (!values.quiet) io.stderr(report(tm, command, result));
  return exitCode;
}
