// The `taskmeter` command against GNU time (Debian's `time`, installed by scripts/system-deps.sh) on the same
// commands, exit codes and signals, and GPU rows through the fake NVML.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type ChildResult,
  cliPath,
  fakeNvml,
  findSystemTool,
  gpuEnv,
  MiB,
  python3Path,
  root,
  run,
  runCli,
  recordValidator,
  requireSystemTool,
  writeFakeNvmlScenario,
} from './helpers';
import * as tm from '../dist/index.js';

const cli = cliPath;
const noGnuTime = requireSystemTool('gnu-time');
const noLess = requireSystemTool('less');
const GNU_TIME = findSystemTool('gnu-time') ?? '/usr/bin/time';
// The real interpreter, not a version-manager shim (a shim would add its own processes to both measurements).
const python = python3Path();
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
async function taskmeter(args: string[], env?: NodeJS.ProcessEnv): Promise<ChildResult> {
  return runCli(args, { timeoutMs: 60_000, env });
}
async function taskmeterJson(cmd: string[], env?: NodeJS.ProcessEnv) {
  const r = await taskmeter(['--json', '-q', '--', ...cmd], env);
  expect(r.stdout).toBe(''); // stdout is the command's: these print nothing; the record is on stderr
  const rec = JSON.parse(r.stderr);
  expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
  return { rec, code: r.code };
}

async function taskmeterJsonAnyOutput(cmd: string[]) {
  const out = join(work, 'any.json');
  const r = await taskmeter(['-q', '-o', out, '--', ...cmd]);
  const rec = JSON.parse(readFileSync(out, 'utf8'));
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

  it('exact max RSS for commands shorter than any sample: true, ls /, sh -c "exit 3" within 10% or 256 KiB of GNU time', async () => {
    for (const cmd of [['true'], ['ls', '/'], ['sh', '-c', 'exit 3']]) {
      const ref = await gnuTime(cmd);
      const { rec, code } = await taskmeterJsonAnyOutput(cmd);
      expect(code, cmd.join(' ')).toBe(ref.exit);
      expect(rec.max_rss_source, cmd.join(' ')).toBe('rusage');
      const diff = Math.abs(rec.max_rss_bytes - ref.maxRssBytes);
      expect(
        diff <= 256 * 1024 || diff <= 0.1 * ref.maxRssBytes,
        `${cmd.join(' ')}: ${rec.max_rss_bytes} vs GNU time ${ref.maxRssBytes}`,
      ).toBe(true);
    }
  });

  it('an exec helper that cannot run (another architecture, no binfmt): commands still run, forked from Node', async () => {
    const junk = join(work, 'wrong-arch-exec');
    writeFileSync(junk, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0]), { mode: 0o755 });
    const env = { ...process.env, TASKMETER_EXEC_HELPER: junk };
    const { rec, code } = await taskmeterJson(['sh', '-c', 'exit 3'], env);
    expect(code).toBe(3);
    expect(rec.cpu_source).toBe('rusage');
    // forked from Node: a tiny command's ru_maxrss is Node's own peak, never reported as exact
    expect(rec.max_rss_source).not.toBe('rusage');
  });

  it('TASKMETER_EXEC_HELPER names another helper (e.g. the shipped one under an emulator): its exact max RSS', async () => {
    const wrapper = join(work, 'exec-wrapper.sh');
    const helper = join(root, 'build/Release/taskmeter-exec');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(helper)} "$@"\n`, { mode: 0o755 });
    const { rec, code } = await taskmeterJson(['true'], { ...process.env, TASKMETER_EXEC_HELPER: wrapper });
    expect(code).toBe(0);
    expect(rec.max_rss_source).toBe('rusage');
    expect(rec.max_rss_bytes).toBeLessThan(16 * MiB);
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
    const ready = join(work, 'sigterm.ready');
    const c = spawn(process.execPath, [cli, '-q', '--', 'sh', '-c', `touch ${ready}; exec sleep 30`], {
      stdio: 'ignore',
    });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((res) =>
      c.on('exit', (code, sig) => res([code, sig])),
    );
    while (!existsSync(ready)) await new Promise((r) => setTimeout(r, 20)); // the command runs: taskmeter is set up
    c.kill('SIGTERM');
    const [code, sig] = await exited;
    expect(sig).toBeNull(); // taskmeter itself was not killed: it forwarded the signal and reported
    expect(code).toBe(143);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("-v is GNU time's verbose flag: the command runs and is reported (the version is -V)", async () => {
    for (const args of [
      ['-v', '--', 'echo', 'hi'],
      ['-v', 'echo', 'hi'],
    ]) {
      const r = await taskmeter(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toBe('hi\n');
      expect(r.stderr).toMatch(/taskmeter report/);
    }
    const v = await taskmeter(['-V']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
  });

  it('a command no sample saw: its CPU rate and tree peak say why, never "0 processes"', async () => {
    const r = await taskmeter(['--', 'true']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/CPU:\s+(n\/a \(too short a run for a rate\)|\d+ %)/);
    expect(r.stderr).not.toMatch(/\b0 processes/);
  });

  it('rejects bad options with a usage message and exit 2', async () => {
    for (const args of [
      ['--interval', 'abc', '--', 'true'],
      ['--interval', '0', '--', 'true'],
      ['--bogus', '--', 'true'],
      ['--timeline', 'x.png', '--', 'true'],
      [],
    ]) {
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
    for (const row of [
      'Command:',
      'Exit status:',
      'Wall clock time:',
      'User time:',
      'System time:',
      'CPU:',
      'Maximum resident set size:',
      'Peak RSS, process tree:',
      'GPU',
    ]) {
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

  it("-o - writes the record to stdout, after the command's own output, also into a pipe", async () => {
    const r = await taskmeter(['-q', '-o', '-', '--', 'sh', '-c', 'echo first; echo second']);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('first\nsecond\n{')).toBe(true);
    const rec = JSON.parse(r.stdout.slice('first\nsecond\n'.length));
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
    expect(rec.command).toEqual(['sh', '-c', 'echo first; echo second']);
    expect(existsSync(join(root, '-'))).toBe(false);
    // a reader that is gone gets nothing, and the exit status stays the command's
    const sh = await run('bash', [
      '-c',
      `"${process.execPath}" "${cli}" -q -o - -- yes | head -1; echo "status \${PIPESTATUS[0]}"`,
    ]);
    expect(sh.stdout).toBe('y\nstatus 141\n');
    expect(sh.stderr).toBe('');
  });

  it('every form of a bad option value gets one clean message (no parser text), exit 2', async () => {
    const forms = [['-i', '-5'], ['--interval', '-5'], ['--interval=-5'], ['-i-5'], ['-qi', '-5']];
    for (const form of forms) {
      const r = await taskmeter([...form, '--', 'true']);
      expect(r.code, form.join(' ')).toBe(2);
      expect(r.stderr.split('\n')[0], form.join(' ')).toBe(
        'taskmeter: --interval must be a whole number of ms from 1 to 60000, got "-5"',
      );
    }
    for (const [args, message] of [
      [['-i', 'abc'], '--interval must be a whole number of ms from 1 to 60000, got "abc"'],
      [['-i', '1.5'], '--interval must be a whole number of ms from 1 to 60000, got "1.5"'],
      [['-i'], 'option --interval needs a value'],
      [['--output='], '--output needs a file name (or - for stdout)'],
      [['-t', 'run.png'], '--timeline FILE must end in .html, .svg or .csv, got "run.png"'],
      [['--json=yes'], 'option --json takes no value'],
    ] as const) {
      const r = await taskmeter([...args, '--', 'true']);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.split('\n')[0]).toBe(`taskmeter: ${message}`);
      expect(r.stderr).not.toMatch(/ambiguous|Did you forget|TypeError/);
    }
  });

  it('a repeated option is an error that names both, not a silent "last one wins"', async () => {
    const r = await taskmeter(['-t', join(work, 'a.html'), '-t', join(work, 'b.svg'), '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^taskmeter: option --timeline given twice \(-t .*a\.html, then -t .*b\.svg\)/);
    expect(existsSync(join(work, 'a.html'))).toBe(false); // refused before anything was written
    const q = await taskmeter(['-q', '--quiet', '--', 'true']);
    expect(q.code).toBe(2);
    expect(q.stderr).toMatch(/option --quiet given twice \(-q, then --quiet\)/);
  });

  it("the report has GNU time -v's rows for page faults, context switches and file system I/O, and the I/O bytes", async () => {
    const file = join(work, 'written.bin');
    const r = await taskmeter(['--', 'sh', '-c', `head -c 3000000 /dev/zero > '${file}'`]);
    expect(r.code).toBe(0);
    for (const label of [
      'Major (requiring I/O) page faults',
      'Minor (reclaiming a frame) page faults',
      'Voluntary context switches',
      'Involuntary context switches',
      'File system inputs',
      'File system outputs',
    ]) {
      expect(r.stderr).toMatch(new RegExp(`  ${label.replace(/[()]/g, '\\$&')}:\\s+\\d+\\n`));
    }
    // head wrote 3,000,000 bytes and sh reaped it: both in the command's figure
    expect(r.stderr).toMatch(/Bytes written \(write calls\):\s+2\.86 MiB {2}\(3000000 bytes\)/);
    // the command line as typed: shell quoting kept
    expect(r.stderr).toContain(`Command:`);
    expect(r.stderr).toContain(`sh -c 'head -c 3000000 /dev/zero > '\\''${file}'\\'''`);
  });
});

describe('GPU rows through the fake NVML', () => {
  it('a child that holds GPU memory shows in the report and in --json', async () => {
    const scenario = writeFakeNvmlScenario(
      work,
      `count=1\ndev0.name=Fake H100\ndev0.used=${4096 * MiB}\ndev0.util=75\ndev0.power_mw=250000\n`,
    );
    // The command writes its own pid into the scenario: the fake then lists it as holding 500 MiB. It lives 1.5 s:
    // per-process utilization is read about once a second.
    const child = [
      'sh',
      '-c',
      `printf 'count=1\\ndev0.name=Fake H100\\ndev0.used=${4096 * MiB}\\ndev0.util=75\\ndev0.power_mw=250000\\ndev0.procs=4242:1000,%s:${500 * MiB}\\ndev0.putil=%s:35:12,4242:90:90\\n' $$ $$ > ${scenario}.tmp && mv ${scenario}.tmp ${scenario}; sleep 1.5`,
    ];
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_SCENARIO: scenario });
    // -i 50: room in the GPU thread's budget for per-process utilization every second even on a loaded machine
    const r = await taskmeter(['-i', '50', '-o', join(work, 'gpu-rec.json'), '--', ...child], env);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(readFileSync(join(work, 'gpu-rec.json'), 'utf8'));
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
    expect(rec.gpu_available).toBe(true);
    expect(rec.gpus).toHaveLength(1);
    expect(rec.gpus[0]).toMatchObject({
      name: 'Fake H100',
      process_memory_peak_bytes: 500 * MiB,
      memory_used_peak_bytes: 4096 * MiB,
      utilization_avg_percent: 75,
    });
    expect(rec.gpu_memory_peak_bytes).toBe(500 * MiB);
    expect(rec.gpu_memory_peak_source).toBe('process');
    expect(rec.gpu_energy_joules).toBeGreaterThan(0.5 * 250 * 1.5);
    expect(r.stderr).toMatch(
      /GPU 0 Fake H100: +process peak 500 MiB, device peak 4\.00 GiB, energy [\d.]+ J, utilization 75 %/,
    );
    expect(rec.gpus[0].process_sm_utilization_percent).toBe(35); // the mean of the driver's samples of the command
    expect(r.stderr).toMatch(/GPU own utilization: +\d+ % SM \(the command's processes/);
  });

  it('--no-gpu never loads NVML', async () => {
    const log = join(work, 'nvml-calls.log');
    const env = gpuEnv({ TASKMETER_NVML_LIBRARY: fakeNvml('full'), FAKE_NVML_LOG: log });
    const r = await taskmeter(['--no-gpu', '--json', '-q', '--', 'true'], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stderr).gpu_available).toBe(false);
    expect(() => readFileSync(log)).toThrow();
  });
});

// The command's own stdio, as if run bare (issue 9, item 1 and 2).
describe('the command keeps its stdin, stdout and stderr', () => {
  const sh = (script: string, input?: string) =>
    run('bash', ['-c', script], {
      timeoutMs: 30_000,
      input,
      env: { ...process.env, TM: `${process.execPath} ${cli}` },
    });

  it('taskmeter -- echo hi prints hi on stdout, and only that', async () => {
    const r = await taskmeter(['--', 'echo', 'hi']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hi\n');
    expect(r.stderr).toMatch(/^taskmeter report/);
  });

  it('stdin streams through: echo hi | taskmeter -q -- wc -c prints 3', async () => {
    const r = await sh('$TM -q -- wc -c', 'hi\n');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('3');
    expect(r.stderr).toBe('');
  });

  it('taskmeter -q -- yes | head -1 ends promptly with exit 141, like a bare yes', async () => {
    const bare = await sh('yes | head -1; echo "status ${PIPESTATUS[0]}"');
    const r = await sh('$TM -q -- yes | head -1; echo "status ${PIPESTATUS[0]}"');
    expect(bare.stdout).toBe('y\nstatus 141\n');
    expect(r.stdout).toBe('y\nstatus 141\n');
    expect(r.elapsedMs).toBeLessThan(10_000);
  });

  it('a closed stderr does not change the exit status: taskmeter -- seq 1 100000 2>&1 | head -1 → 141 like GNU time', async () => {
    const ref = await sh(`${GNU_TIME} -- seq 1 100000 2>&1 | head -1; echo "status \${PIPESTATUS[0]}"`);
    const r = await sh('$TM -- seq 1 100000 2>&1 | head -1; echo "status ${PIPESTATUS[0]}"');
    expect(ref.stdout).toBe('1\nstatus 141\n');
    expect(r.stdout).toBe('1\nstatus 141\n');
  });

  it('--json puts the record on stderr instead of the report; stdout carries only the command output', async () => {
    const r = await taskmeter(['--json', '--', 'sh', '-c', 'echo out; echo err >&2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('out\n');
    expect(r.stderr.startsWith('err\n')).toBe(true);
    const rec = JSON.parse(r.stderr.slice(4));
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
    expect(rec.command).toEqual(['sh', '-c', 'echo out; echo err >&2']);
    expect(r.stderr).not.toMatch(/taskmeter report/);
  });

  it('large output into a slow reader is byte-identical to a bare run, even when taskmeter got a non-blocking pipe', async () => {
    const data = join(work, 'big.bin');
    writeFileSync(data, Buffer.from(Array.from({ length: 8 << 20 }, (_, i) => (i * 2654435761) >>> 24)));
    // Python makes the pipe, sets O_NONBLOCK on taskmeter's end (as libuv leaves a piped stdout), reads slowly.
    const reader = [
      'import hashlib, os, subprocess, sys, time, fcntl',
      'r, w = os.pipe()',
      'if sys.argv[1] == "nonblock": fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)',
      'p = subprocess.Popen(sys.argv[2:], stdout=w, stderr=subprocess.DEVNULL)',
      'os.close(w)',
      'h = hashlib.sha256(); n = 0',
      'while True:',
      '    b = os.read(r, 65536)',
      '    if not b: break',
      '    h.update(b); n += len(b); time.sleep(0.002)',
      'print(h.hexdigest(), n, p.wait())',
    ].join('\n');
    // the bare run gets a blocking pipe, as from a shell; a bare cat on the non-blocking one fails with EAGAIN
    const bare = await run(python, ['-c', reader, 'block', 'cat', data], { timeoutMs: 60_000 });
    const r = await run(python, ['-c', reader, 'nonblock', process.execPath, cli, '-q', '--', 'cat', data], {
      timeoutMs: 60_000,
    });
    expect(bare.stdout).toBe(`${createHash('sha256').update(readFileSync(data)).digest('hex')} ${8 << 20} 0\n`);
    expect(r.stdout).toBe(bare.stdout);
  });

  it('the command can open files without its output landing in them (fds 0-2 survive exec)', async () => {
    const f = join(work, 'opened.txt');
    const r = await taskmeter([
      '-q',
      '--',
      python,
      '-c',
      `f = open(${JSON.stringify(f)}, "w"); print("to stdout", flush=True); f.write("to file"); f.close()`,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('to stdout\n');
    expect(readFileSync(f, 'utf8')).toBe('to file');
  });
});

describe('errors are clear and lose nothing', () => {
  it('permission denied → 126, with EACCES from measureCommand', async () => {
    const script = join(work, 'not-executable.sh');
    writeFileSync(script, '#!/bin/sh\necho no\n', { mode: 0o644 });
    const r = await taskmeter(['--', script]);
    expect(r.code).toBe(126);
    expect(r.stderr).toMatch(/permission denied/);
    await expect(tm.measureCommand(script)).rejects.toMatchObject({ code: 'EACCES', syscall: 'execve' });
  });

  it('an -o or -t path that cannot be written is refused before the command starts (exit 2)', async () => {
    for (const flag of ['-o', '-t']) {
      const marker = join(work, `ran${flag}`);
      const r = await taskmeter([
        flag,
        join(work, 'no-such-dir', flag === '-o' ? 'rec.json' : 'run.svg'),
        '--',
        'touch',
        marker,
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`cannot write ${flag} .*no-such-dir.*ENOENT`));
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
      expect(existsSync(marker)).toBe(false);
    }
  });
});

// Signals and the terminal as under GNU time (issue 9, item 3), in a real pseudo-terminal.
describe('signals and the terminal', () => {
  const ptyDrive = join(root, 'test/children/pty-drive.py');
  const drive = async (script: unknown[], cmd: string[]) => {
    const r = await run(python, [ptyDrive, JSON.stringify(script), ...cmd], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as {
      output: string;
      exitCode: number | null;
      signal: number | null;
      failed: string | null;
    };
  };
  const COUNT_SIGINT = [
    'import signal, time',
    'n = 0',
    'def h(s, f):',
    '    global n; n += 1',
    'signal.signal(signal.SIGINT, h)',
    'print("ready", flush=True)',
    't = time.time()',
    'while time.time() - t < 1.5: time.sleep(0.02)',
    'print("SIGINTs:", n, flush=True)',
  ].join('\n');

  it('one Ctrl-C in the terminal → exactly one SIGINT in the command (as under GNU time)', async () => {
    const ref = await drive(
      [
        ['expect', 'ready'],
        ['send', '\x03'],
        ['expect', 'SIGINTs:'],
      ],
      [GNU_TIME, '-f', '', python, '-c', COUNT_SIGINT],
    );
    const r = await drive(
      [
        ['expect', 'ready'],
        ['send', '\x03'],
        ['expect', 'SIGINTs:'],
      ],
      [process.execPath, cli, '-q', '--', python, '-c', COUNT_SIGINT],
    );
    expect(ref.output).toMatch(/SIGINTs: 1\b/);
    expect(r.failed).toBeNull();
    expect(r.output).toMatch(/SIGINTs: 1\b/);
    expect(r.exitCode).toBe(0);
  });

  it('a REPL typed through the terminal reads keys, prints, survives Ctrl-C and exits', async () => {
    const r = await drive(
      [
        ['expect', '>>> '],
        ['send', 'print(6 * 7)\r'],
        ['expect', '42'],
        ['send', 'import time; time.sleep(30)\r'],
        ['sleep', 0.3],
        ['send', '\x03'],
        ['expect', 'KeyboardInterrupt'],
        ['send', 'print("still", "here")\r'],
        ['expect', 'still here'],
        ['send', 'exit(4)\r'],
        ['expect', 'taskmeter report'],
      ],
      [process.execPath, cli, '--', python, '-i', '-q'],
    );
    expect(r.failed).toBeNull();
    expect(r.exitCode).toBe(4);
    expect(r.output).toMatch(/Exit status:\s+4/);
  });

  it.skipIf(noLess)(
    `a pager pages in the terminal: less shows a page, space shows the next, q quits${noLess ? ` (skipped: ${noLess})` : ''}`,
    async () => {
      const text = join(work, 'pages.txt');
      writeFileSync(text, Array.from({ length: 200 }, (_, i) => `line ${i + 1}`).join('\n') + '\n');
      const r = await drive(
        [
          ['expect', 'line 20'],
          ['send', ' '],
          ['expect', 'line 40'],
          ['send', 'q'],
          ['expect', 'taskmeter report'],
        ],
        ['env', 'TERM=xterm', process.execPath, cli, '--', 'less', text],
      );
      expect(r.failed, r.output).toBeNull();
      expect(r.exitCode).toBe(0);
      expect(r.output).not.toMatch(/line 120/); // it paged, it did not dump the file
    },
  );

  it('job control under an interactive bash: Ctrl-Z stops taskmeter and the command, fg resumes both', async () => {
    const r = await drive(
      [
        ['expect', 'READY$ '],
        ['send', `${process.execPath} ${cli} -q -- ${python} -i -q\r`],
        ['expect', '>>> '],
        ['send', '\x1a'],
        ['expect', 'Stopped'],
        // the job's state from /proc with bash builtins (ps hangs with the ASan runtime preloaded, npm run test:asan)
        ['send', 'jobs -l > /dev/null; read -r -a f < /proc/$(jobs -p %1)/stat; echo "state: ${f[2]}"\r'],
        ['expect', 'state: T'],
        ['send', 'fg\r'],
        ['sleep', 0.5],
        ['send', 'print("back", 6 * 7)\r'],
        ['expect', 'back 42'],
        ['send', 'exit()\r'],
        ['expect', 'READY$ '],
        ['send', 'echo "status $?"; exit\r'],
        ['expect', 'status 0'],
      ],
      ['env', 'PS1=READY$ ', 'bash', '--norc', '--noprofile', '-i'],
    );
    expect(r.failed, r.output).toBeNull();
    expect(r.output).toMatch(/Stopped/);
    expect(r.output).toMatch(/back 42/);
  });

  it('SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 sent to taskmeter reach the command once each; SIGINT sent to taskmeter is ignored', async () => {
    const { spawn } = await import('node:child_process');
    const ready = join(work, 'sig.ready');
    const code = [
      'import signal, sys, time',
      'got = []',
      'for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT):',
      '    signal.signal(s, lambda n, f: got.append(signal.Signals(n).name))',
      `open(${JSON.stringify(ready)}, "w").close()`,
      't = time.time()',
      'while time.time() - t < 1.5: time.sleep(0.02)',
      'print(" ".join(got), flush=True)',
    ].join('\n');
    const c = spawn(process.execPath, [cli, '-q', '--', python, '-c', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((res) => c.on('exit', (code) => res(code)));
    while (!existsSync(ready)) await new Promise((r) => setTimeout(r, 20));
    for (const s of ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT'] as NodeJS.Signals[]) {
      c.kill(s);
      await new Promise((r) => setTimeout(r, 80));
    }
    expect(await exited).toBe(0);
    expect(out.trim()).toBe('SIGTERM SIGHUP SIGUSR1 SIGUSR2');
  });
});
