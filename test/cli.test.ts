// The CLI and process tracking against GNU time (Debian's `time`, installed by scripts/system-deps.sh) on the same
// commands, exit codes and signals, and GPU rows through the fake NVML.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fakeNvml, findSystemTool, gpuEnv, MiB, root, run, recordValidator, requireSystemTool } from './helpers';
import * as tm from '../dist/index.js';

const cli = join(root, 'bin/taskmeter.js');
const noGnuTime = requireSystemTool('gnu-time');
const GNU_TIME = findSystemTool('gnu-time') ?? '/usr/bin/time';
// The real interpreter, not a version-manager shim (a shim would add its own processes to both measurements).
const python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)']).toString().trim();
const work = mkdtempSync(join(tmpdir(), 'taskmeter-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const validate = recordValidator();

interface GnuTime {
  maxRssBytes: number;
  cpuMs: number;
  exit: number | null;
}
async function gnuTime(cmd: string[]): Promise<GnuTime> {
  const r = await run(GNU_TIME, ['-v', ...cmd], { timeoutMs: 60_000 });
  const kb = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  const user = /User time \(seconds\): ([\d.]+)/.exec(r.stderr);
  const sys = /System time \(seconds\): ([\d.]+)/.exec(r.stderr);
  if (!kb || !user || !sys) throw new Error(`GNU time output not understood:\n${r.stderr}`);
  return { maxRssBytes: Number(kb[1]) * 1024, cpuMs: (Number(user[1]) + Number(sys[1])) * 1000, exit: r.code };
}
async function taskmeter(args: string[], env?: NodeJS.ProcessEnv) {
  const r = await run(process.execPath, [cli, ...args], { timeoutMs: 60_000, env });
  return r;
}
async function taskmeterJson(cmd: string[], env?: NodeJS.ProcessEnv) {
  const r = await taskmeter(['--json', '-q', '--', ...cmd], env);
  expect(r.stderr).toBe('');
  const rec = JSON.parse(r.stdout);
  expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
  return { rec, code: r.code };
}

const ALLOC_200MB = [python, '-c', "import time\nb = b'\\x01' * (200 << 20)\ntime.sleep(0.3)"];
const CPU_1S = [python, '-c', 'import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass'];
const FORK_4 = [
  python,
  '-c',
  [
    'import os, time',
    'kids = []',
    'for i in range(4):',
    '    pid = os.fork()',
    '    if pid == 0:',
    '        t = time.process_time()',
    '        while time.process_time() - t < 0.4: pass',
    '        os._exit(0)',
    '    kids.append(pid)',
    'for k in kids: os.waitpid(k, 0)',
  ].join('\n'),
];

describe.skipIf(noGnuTime)(`against GNU time${noGnuTime ? ` (skipped: ${noGnuTime})` : ''}`, () => {
  it('has GNU time installed (scripts/system-deps.sh)', () => {
    expect(execFileSync(GNU_TIME, ['--version']).toString()).toMatch(/GNU/);
  });

  it('a process that touches 200 MB: max RSS within 10% of GNU time', async () => {
    const ref = await gnuTime(ALLOC_200MB);
    const { rec } = await taskmeterJson(ALLOC_200MB);
    expect(ref.maxRssBytes).toBeGreaterThan(200 * MiB);
    expect(Math.abs(rec.max_rss_bytes - ref.maxRssBytes) / ref.maxRssBytes).toBeLessThan(0.1);
    expect(rec.tree_peak_rss_bytes).toBeGreaterThanOrEqual(rec.max_rss_bytes);
    expect(rec.exit_code).toBe(0);
  });

  it('a tiny child reports its own peak (< 30 MB), not the contaminated ru_maxrss of a Node parent', async () => {
    const { rec } = await taskmeterJson([python, '-c', 'pass']);
    const ref = await gnuTime([python, '-c', 'pass']);
    expect(rec.max_rss_bytes).not.toBeNull();
    expect(rec.max_rss_bytes).toBeLessThan(30 * 1000 * 1000);
    expect(ref.maxRssBytes).toBeLessThan(30 * 1000 * 1000);
    // and the same through the library, in this (large) vitest process
    const r = await tm.measureCommand(python, ['-c', 'import time; time.sleep(0.05)']);
    expect(r.usage.maxRssBytes).toBeLessThan(30 * 1000 * 1000);
    expect(tm.snapshot().rssBytes).toBeGreaterThan(30 * 1000 * 1000); // the parent really is larger
  });

  it('CPU of a 1 s CPU-bound command within 10% (+20 ms) of GNU time, exact from wait4', async () => {
    const ref = await gnuTime(CPU_1S);
    const { rec } = await taskmeterJson(CPU_1S);
    expect(rec.cpu_source).toBe('rusage');
    expect(Math.abs(rec.cpu_time_seconds * 1000 - ref.cpuMs)).toBeLessThanOrEqual(0.1 * ref.cpuMs + 20);
  });

  it('CPU of a command that forks 4 CPU-bound children within 10% (+20 ms) of GNU time', async () => {
    const ref = await gnuTime(FORK_4);
    const { rec } = await taskmeterJson(FORK_4);
    expect(ref.cpuMs).toBeGreaterThan(1500);
    expect(Math.abs(rec.cpu_time_seconds * 1000 - ref.cpuMs)).toBeLessThanOrEqual(0.1 * ref.cpuMs + 20);
    expect(rec.processes).toBeGreaterThanOrEqual(2);
  });
});

describe('exit codes and signals', () => {
  it('passes the exit code through', async () => {
    const r = await taskmeter(['-q', '--', 'sh', '-c', 'exit 3']);
    expect(r.code).toBe(3);
  });

  it('a command killed by SIGTERM → 143', async () => {
    const r = await taskmeter(['--', 'sh', '-c', 'kill -TERM $$']);
    expect(r.code).toBe(143);
    expect(r.stderr).toMatch(/killed by SIGTERM/);
  });

  it('a missing command → 127 with its name in the message', async () => {
    const r = await taskmeter(['--', 'no-such-command-xyz', '--flag']);
    expect(r.code).toBe(127);
    expect(r.stderr).toMatch(/no-such-command-xyz: command not found/);
  });

  it('forwards SIGTERM to the command', async () => {
    const { spawn } = await import('node:child_process');
    const started = performance.now();
    const c = spawn(process.execPath, [cli, '-q', '--', 'sleep', '30'], { stdio: 'ignore' });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((res) => c.on('exit', (code, sig) => res([code, sig])));
    await new Promise((r) => setTimeout(r, 700));
    c.kill('SIGTERM');
    const [code, sig] = await exited;
    expect(sig).toBeNull(); // taskmeter itself was not killed: it forwarded the signal and reported
    expect(code).toBe(143);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('rejects bad options with a usage message and exit 2', async () => {
    for (const args of [['--interval', 'abc', '--', 'true'], ['--interval', '0', '--', 'true'], ['--bogus', '--', 'true'], ['--timeline', 'x.png', '--', 'true'], []]) {
      const r = await taskmeter(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/Usage: taskmeter/);
    }
    const help = await taskmeter(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--timeline FILE/);
  });

  it('prints a report a time -v user can read', async () => {
    const r = await taskmeter(['--', 'sh', '-c', 'sleep 0.2']);
    expect(r.code).toBe(0);
    for (const row of ['Command:', 'Exit status:', 'Wall clock time:', 'User time:', 'System time:', 'CPU:', 'Maximum resident set size:', 'Peak RSS, process tree:', 'GPU']) {
      expect(r.stderr).toContain(row);
    }
    expect(r.stderr).toMatch(/Wall clock time:\s+0\.2\d\d s/);
  });

  it('writes --output FILE', async () => {
    const out = join(work, 'rec.json');
    const r = await taskmeter(['-q', '-o', out, '--', 'true']);
    expect(r.code).toBe(0);
    const rec = JSON.parse(readFileSync(out, 'utf8'));
    expect(rec.command).toEqual(['true']);
    expect(rec.exit_code).toBe(0);
    expect(validate(rec)).toBe(true);
  });
});

describe('GPU rows through the fake NVML', () => {
  it('a child that holds GPU memory shows in the report and in --json', async () => {
    const scenario = join(work, 'gpu-scenario.txt');
    writeFileSync(scenario, `count=1\ndev0.name=Fake H100\ndev0.used=${4096 * MiB}\ndev0.util=75\ndev0.power_mw=250000\n`);
    // The command writes its own pid into the scenario: the fake then lists it as holding 500 MiB.
    const child = [
      'sh',
      '-c',
      `printf 'count=1\\ndev0.name=Fake H100\\ndev0.used=${4096 * MiB}\\ndev0.util=75\\ndev0.power_mw=250000\\ndev0.procs=4242:1000,%s:${500 * MiB}\\ndev0.putil=%s:35:12,4242:90:90\\n' $$ $$ > ${scenario}.tmp && mv ${scenario}.tmp ${scenario}; sleep 0.6`,
    ];
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
    const r = await taskmeter(['--json', '--', ...child], env);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(r.stdout);
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
    expect(rec.gpu_available).toBe(true);
    expect(rec.gpus).toHaveLength(1);
    expect(rec.gpus[0]).toMatchObject({ name: 'Fake H100', process_memory_peak_bytes: 500 * MiB, memory_used_peak_bytes: 4096 * MiB, utilization_avg_percent: 75 });
    expect(rec.gpu_memory_peak_bytes).toBe(500 * MiB);
    expect(rec.gpu_memory_peak_source).toBe('process');
    expect(rec.gpu_energy_joules).toBeGreaterThan(0.5 * 250 * 0.6);
    expect(r.stderr).toMatch(/GPU 0 Fake H100: +process peak 500 MiB, device peak 4\.00 GiB, energy [\d.]+ J, utilization 75 %/);
    expect(rec.gpus[0].process_sm_utilization_percent).toBeGreaterThan(0); // the command's 35 %, averaged with readings before it wrote its pid
    expect(rec.gpus[0].process_sm_utilization_percent).toBeLessThanOrEqual(35);
    expect(r.stderr).toMatch(/GPU own utilization: +\d+ % SM \(the command's processes/);
  });

  it('--no-gpu never loads NVML', async () => {
    const log = join(work, 'nvml-calls.log');
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_LOG: log });
    const r = await taskmeter(['--no-gpu', '--json', '-q', '--', 'true'], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).gpu_available).toBe(false);
    expect(() => readFileSync(log)).toThrow();
  });
});

describe('trackProcess()', () => {
  it('follows a running process tree until it exits', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn('sh', ['-c', `sleep 0.3; ${python} -c "b = b'\\x01' * (50 << 20); import time; time.sleep(0.3)"; sleep 0.1`], { stdio: 'ignore' });
    const t = tm.trackProcess(child.pid!, { sampleIntervalMs: 5 });
    expect(t.running).toBe(true);
    const u = await t.exited;
    expect(t.running).toBe(false);
    expect(u.pid).toBe(child.pid);
    expect(u.processes).toBeGreaterThanOrEqual(2);
    expect(u.maxRssBytes).toBeGreaterThan(50 * MiB);
    expect(u.maxRssCommand).toMatch(/python/);
    expect(u.treePeakRssBytes).toBeGreaterThanOrEqual(u.maxRssBytes!);
    expect(u.cpuSource).toBe('sampled');
    expect(u.wallTimeMs).toBeGreaterThan(600);
    expect(u.timeline!.points.length).toBeGreaterThan(20);
    expect(t.stop()).toBe(u);
  });

  it('validates its arguments', async () => {
    expect(() => tm.trackProcess('1' as any)).toThrow(TypeError);
    expect(() => tm.trackProcess(0)).toThrow(RangeError);
    expect(() => tm.trackProcess(1.5)).toThrow(RangeError);
    expect(() => tm.trackProcess(4_000_000)).toThrow(/no such process/);
    expect(() => tm.trackProcess(process.pid, { includeChildren: 'yes' } as any)).toThrow(/includeChildren/);
    await expect(tm.measureCommand('')).rejects.toThrow(TypeError);
    await expect(tm.measureCommand('true', 'x' as any)).rejects.toThrow(TypeError);
    await expect(tm.measureCommand('true', [], { stdio: 'pipes' } as any)).rejects.toThrow(RangeError);
    await expect(tm.measureCommand('true', [], { sampleIntervalMs: 0 })).rejects.toThrow(/sampleIntervalMs/);
  });

  it('measureCommand captures output with stdio pipe and reports exact CPU', async () => {
    const r = await tm.measureCommand('sh', ['-c', 'echo out; echo err >&2; exit 5'], { stdio: 'pipe' });
    expect(r.exitCode).toBe(5);
    expect(r.signal).toBeNull();
    expect(r.stdout!.toString()).toBe('out\n');
    expect(r.stderr!.toString()).toBe('err\n');
    expect(r.usage.cpuSource).toBe('rusage');
    await expect(tm.measureCommand('no-such-command-xyz')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
