// trackProcess and measureCommand, the library API (the `taskmeter` command itself is test/cli.test.ts). On real
// process trees: CPU from before tracking began is never counted, a reused root pid is never adopted, /proc files of
// any size are read whole, big trees are sampled whole at a bounded cost, and every figure of a command's record
// describes the command, never taskmeter's own process. Then argument checks, spawn errors and waiting without polling.
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type ChildResult, cliPath, MiB, python3Path, recordValidator, root, run, runChild, runCli } from './helpers';
import { native } from '../dist/binding.js';
import * as tm from '../dist/index.js';
import { resolveCommand } from '../dist/process.js';

const linux = process.platform === 'linux';
const python = python3Path();
const work = mkdtempSync(join(tmpdir(), 'taskmeter-process-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const spawned: ChildProcess[] = [];
afterEach(() => {
  for (const c of spawned.splice(0)) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      c.kill('SIGKILL');
    }
  }
});
function start(cmd: string, args: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: 'ignore', detached: true });
  spawned.push(c);
  return c;
}
const statFields = (pid: number) => {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
};
const cpuTicksMs = (pid: number) => {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) * 10;
};
const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
async function until(cond: () => boolean, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

describe.runIf(linux)('trackProcess on real trees', () => {
  // A parent `sh -c '<child> & wait; <tail>'` whose child has burned ≥ 400 ms of CPU and sleeps until release() (a
  // file it polls for), so that tracking starts after the burn. Resolves once the child is settled: asleep (a burner
  // that is merely preempted reads 'R'), and no more CPU over 100 ms.
  async function parentOfBurnedChild(tail: string) {
    const file = join(work, `release-${process.pid}-${Date.now()}`);
    const burn = `const c=()=>{const u=process.cpuUsage(); return u.user+u.system}; while(c()<450000){} setInterval(()=>{ if (require("fs").existsSync("${file}")) process.exit(0) }, 20)`;
    const parent = start('sh', ['-c', `"${process.execPath}" -e '${burn}' & wait; ${tail}`]);
    let kid = 0;
    await until(
      () => {
        kid = childrenOf(parent.pid!)[0] ?? 0;
        return kid > 0 && cpuTicksMs(kid) >= 400;
      },
      30_000,
      'the burn',
    );
    let last = -1;
    await until(
      () => {
        const now = cpuTicksMs(kid);
        const still = now === last && statFields(kid)[0] === 'S';
        last = now;
        return still;
      },
      10_000,
      'the child to sleep',
      100,
    );
    return { pid: parent.pid!, kid, kidCpuMs: last, release: () => writeFileSync(file, '') };
  }

  // Tracks pid with its first sample held at `point` (1: after the root's first read, 2: before the root's second,
  // tree.h) while during() runs; the sample goes on after.
  async function trackWithFirstSampleHeld(pid: number, point: 1 | 2, during: () => Promise<void>) {
    native.testHook('holdFirstTreeRead', point);
    const t = tm.trackProcess(pid);
    try {
      await until(() => native.testHook('firstTreeReadHeld', 0) === true, 10_000, 'the first sample to hold');
      await during();
      expect(native.testHook('firstTreeReadHeld', 0), 'still held').toBe(true);
    } finally {
      native.testHook('holdFirstTreeRead', 0);
    }
    return t;
  }
  // (A zombie is still listed among its parent's children.)
  const reaped = (p: { pid: number; kid: number }) =>
    until(() => !childrenOf(p.pid).includes(p.kid), 5_000, 'the child to be reaped');

  it('does not count the CPU a child used before tracking began when its parent reaps it', async () => {
    // The parent reaps the child once the tracker has read it, then lives on. (A fixed sleep let a slow first sample,
    // under ASan beside a test loop, fall at the child's exit: 460 ms counted, once.)
    const p = await parentOfBurnedChild('sleep 0.4');
    const t = tm.trackProcess(p.pid);
    await until(() => t.usage.samples >= 2, 30_000, 'two samples of the tree');
    p.release();
    const u = await t.exited;
    expect(u.processes).toBeGreaterThanOrEqual(2);
    expect(u.cpuTimeMs).toBeLessThan(150); // before the fix: ≈ the 450 ms of the burn
  }, 40_000);

  it('does not count the CPU of a child its parent reaps while the first sample reads the tree', async () => {
    // The first sample reads the parent (its children's CPU without the child's), then holds before it lists the
    // parent's children; meanwhile the child exits and is reaped. Before the fix, the parent's children's CPU then
    // grew by the child's 450 ms with no departed child of the tree to explain it, and they were counted.
    const p = await parentOfBurnedChild('exec sleep 30');
    const t = await trackWithFirstSampleHeld(p.pid, 1, async () => {
      p.release();
      await reaped(p);
    });
    await until(() => t.usage.samples >= 2, 30_000, 'two samples of the tree');
    const u = t.stop();
    expect(statFields(p.pid)[0]).toBe('S'); // the parent lives on (its children's CPU read after the reap)
    expect(u.cpuTimeMs).toBeLessThan(150); // before the fix: ≈ the 450 ms of the burn
  }, 60_000);

  it('counts a later child once when the first sample read the one before it just before its parent reaped it', async () => {
    // The first sample has read the child (450 ms before tracking) and holds before it reads the parent again; the
    // parent reaps the child meanwhile, and runs a second child of ~0.9 s, which is near its end when the sample goes
    // on. The parent reaps it before it is next read afresh. Before the fix the first child, in its parent's base and
    // a departed child of the tree both, claimed 450 ms of the second's growth, which was then counted twice.
    // (more faults and I/O than the first child: a departed child is matched only against growth of every count)
    const second = `require("fs").readFileSync(process.execPath); Buffer.alloc(96 << 20).fill(1); const c=()=>{const u=process.cpuUsage(); return u.user+u.system}; while(c()<900000){}`;
    const p = await parentOfBurnedChild(`"${process.execPath}" -e '${second}'; exec sleep 30`);
    const t = await trackWithFirstSampleHeld(p.pid, 2, async () => {
      p.release();
      await reaped(p);
      await until(
        () => {
          const d = childrenOf(p.pid)[0];
          return d !== undefined && cpuTicksMs(d) >= 870;
        },
        30_000,
        'the second child to near its end',
      );
    });
    await until(() => readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim() === 'sleep', 30_000, 'the second child');
    const n = t.usage.samples;
    await until(() => t.usage.samples >= n + 2, 30_000, 'two samples after it');
    const u = t.stop();
    const f = statFields(p.pid);
    const reapedMs = (Number(f[13]) + Number(f[14])) * 10; // cutime + cstime: both children
    const secondMs = reapedMs - p.kidCpuMs;
    expect(secondMs).toBeGreaterThanOrEqual(880);
    const counted = u.cpuTimeMs ?? Number.NaN; // (null only for a tree never read)
    expect(
      Math.abs(counted - secondMs),
      `${counted} ms counted, the second child used ${secondMs}`,
    ).toBeLessThanOrEqual(60);
  }, 60_000);

  it('never adopts a new process that reuses the root pid after the root ended', async () => {
    let reused = false;
    for (let attempt = 0; attempt < 15 && !reused; attempt++) {
      const p = start('sleep', ['0.15']);
      const pid = p.pid!;
      const t = tm.trackProcess(pid, { sampleIntervalMs: 10 });
      await new Promise((r) => p.once('exit', r));
      // Give the same pid to a new process (the kernel hands out ns_last_pid + 1), while the JS thread is kept busy
      // so that only the sampler thread sees the pid change hands.
      try {
        writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
      } catch {
        t.stop();
        return expect.fail('cannot write /proc/sys/kernel/ns_last_pid (needs root in the pid namespace)');
      }
      const q = start('sleep', ['3']);
      const busyUntil = Date.now() + 150;
      while (Date.now() < busyUntil) {
        /* the sampler samples meanwhile */
      }
      if (q.pid !== pid) {
        t.stop();
        q.kill('SIGKILL');
        continue; // another process on the machine took the pid first: try again
      }
      reused = true;
      const settled = await Promise.race([t.exited.then(() => 'exited'), sleep(1000).then(() => 'still tracking')]);
      expect(settled).toBe('exited'); // before the fix: the newcomer was adopted as the root and followed
      const u = t.stop();
      expect(u.processes).toBe(1);
      q.kill('SIGKILL');
    }
    expect(reused, 'no attempt got the same pid back').toBe(true);
  }, 40_000);

  it('keeps tracking a process whose /proc status has a Groups: line of thousands of groups, with its RSS and peak', async () => {
    const groups = Array.from({ length: 3000 }, (_, i) => 200000 + i);
    const p = start('python3', [
      '-c',
      `import os; os.setgroups(${JSON.stringify(groups)}); os.execvp("sleep", ["sleep", "3"])`,
    ]);
    await until(
      () => {
        try {
          return readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim() === 'sleep';
        } catch {
          return false;
        }
      },
      10_000,
      'the exec',
    );
    expect(readFileSync(`/proc/${p.pid}/status`, 'utf8').length).toBeGreaterThan(16384);
    const t = tm.trackProcess(p.pid!);
    await sleep(300);
    expect(t.running).toBe(true); // before the fix: VmRSS was past the 4 KiB read, and tracking ended at once
    const u = t.stop();
    expect(u.rssEndBytes).toBeGreaterThan(100 * 1024);
    expect(u.maxRssBytes).toBeGreaterThanOrEqual(u.rssEndBytes!); // VmHWM, read past the Groups: line
    expect(u.maxRssCommand).toBe('sleep');
  }, 20_000);

  it('sees every child of a process with 1,000 children, and stretches its interval to bound its cost', async () => {
    const n = 1000;
    const p = start('sh', ['-c', `for i in $(seq ${n}); do sleep 30 & done; wait`]);
    await until(() => childrenOf(p.pid!).length >= n, 60_000, `${n} children`);
    const t = tm.trackProcess(p.pid!, { sampleIntervalMs: 10 });
    await until(() => t.usage.samples >= 6, 30_000, 'six samples');
    const u = t.stop();
    expect(u.processes).toBe(n + 1); // before the fix: ~680, the children list was cut at 4 KiB
    expect(u.rssEndBytes).toBeGreaterThan(n * 100 * 1024);
    // sampling 1,001 processes costs far more than 1 % of a 10 ms interval: the interval stretched
    expect(u.effectiveSampleIntervalMs).toBeGreaterThan(10);
    expect(u.sampleIntervalMs).toBe(10);
  }, 120_000);

  it('keeps following a process while this process has no descriptor left (EMFILE), and reads it once one is free', async () => {
    const script = `
      const tm = require(${JSON.stringify(join(root, 'dist/index.js'))});
      const fs = require('fs');
      const { spawn } = require('child_process');
      const p = spawn('sleep', ['5'], { stdio: 'ignore' });
      tm.measureSync(() => 0); // the sampler thread exists before the descriptors run out
      const held = [];
      try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
      const t = tm.trackProcess(p.pid, { timeline: false });
      setTimeout(() => {
        const during = t.running;
        for (const fd of held.splice(0, 20)) fs.closeSync(fd);
        setTimeout(() => {
          const u = t.stop();
          p.kill();
          console.log(JSON.stringify({ during, running: t.running, processes: u.processes, rss: u.rssEndBytes }));
        }, 300);
      }, 300);`;
    // Under npm run test:asan this child runs the plain build: UBSan's dynamic-type check probes memory through a
    // pipe(), which cannot be made without a free descriptor, and then reports every virtual call as a bad type.
    const env = { ...process.env };
    if (/asan/.test(env.LD_PRELOAD ?? '')) {
      delete env.LD_PRELOAD;
      delete env.TASKMETER_ADDON;
    }
    const r = await run('sh', ['-c', `ulimit -n 256 && exec "${process.execPath}" -e "$0"`, script], { env });
    expect(r.code, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(o.during).toBe(true); // before: the unreadable root was taken for gone, and tracking ended
    expect(o.processes).toBe(1);
    expect(o.rss).toBeGreaterThan(100 * 1024);
  }, 20_000);

  it('keeps the requested interval for a single small process', async () => {
    const p = start('sleep', ['2']);
    const t = tm.trackProcess(p.pid!, { sampleIntervalMs: 20 });
    await sleep(600);
    const u = t.stop();
    expect(u.samples).toBeGreaterThan(10);
    expect(u.effectiveSampleIntervalMs).toBeGreaterThanOrEqual(20);
    expect(u.effectiveSampleIntervalMs).toBeLessThan(30);
  }, 20_000);
});

describe.runIf(linux)('a command record describes the command, never taskmeter', () => {
  const validate = recordValidator();

  it('`taskmeter --json -- true` writes no 0 for what it did not measure, and counts samples only of the command', async () => {
    for (const cmd of [['true'], ['sh', '-c', 'exit 3']]) {
      const out = join(mkdtempSync(join(tmpdir(), 'taskmeter-tree-')), 'record.json');
      const r = await runCli(['-q', '-o', out, '--', ...cmd]);
      expect(r.code, r.stderr).toBe(cmd[0] === 'true' ? 0 : 3);
      const rec = JSON.parse(readFileSync(out, 'utf8'));
      expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
      for (const k of [
        'peak_memory_bytes',
        'rss_start_bytes',
        'rss_end_bytes',
        'max_rss_bytes',
        'tree_peak_rss_bytes',
      ]) {
        expect(rec[k], k).not.toBe(0);
        if (rec[k] !== null) expect(rec[k], k).toBeLessThan(16 * 1024 * 1024); // a shell's size, not Node's
      }
      expect(rec.peak_memory_source).not.toBe('endpoints');
      if (rec.peak_memory_bytes === null) expect(rec.peak_memory_source).toBeNull();
      if (rec.processes === 0) expect(rec.samples).toBe(0);
    }
  }, 30_000);

  it('a usage that nothing measured goes into a record as null, and the schema says so', () => {
    const u = {
      startedAt: Date.now(),
      endedAt: Date.now() + 2,
      wallTimeMs: 2,
      cpuUserMs: 1,
      cpuSystemMs: 0,
      cpuTimeMs: 1,
      cpuPercent: 50,
      rssStartBytes: null,
      rssEndBytes: null,
      peakRssBytes: null,
      peakRssSource: null,
      samples: 0,
      sampleIntervalMs: 10,
      gpus: [],
      gpuMemoryPeakBytes: null,
      gpuMemoryPeakSource: null,
      gpuEnergyJoules: null,
      gpuStale: false,
      gpuStaleReason: null,
      pid: 42,
      maxRssBytes: null,
      maxRssSource: null,
      maxRssPid: null,
      maxRssCommand: null,
      treePeakRssBytes: null,
      processes: 0,
      cpuSource: 'rusage',
      effectiveSampleIntervalMs: null,
    } as unknown as tm.ProcessUsage;
    const rec = tm.toRecord(u);
    expect(rec).toMatchObject({
      peak_memory_bytes: null,
      peak_memory_mib: null,
      peak_memory_source: null,
      rss_start_bytes: null,
      rss_end_bytes: null,
    });
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
    const schema = readFileSync(join(root, 'schema/record.schema.json'), 'utf8');
    expect(schema).toMatch(/peak_memory_bytes[^}]*null only/);
    // an in-process window always has its memory figures: null there is still refused
    expect(() => tm.toRecord({ ...u, pid: undefined } as unknown as tm.ResourceUsage)).toThrow(TypeError);
  });

  it('a command whose memory nothing measured is still recorded by the Prometheus exporter, without a memory figure', async () => {
    const prom = await import('prom-client');
    const { createTaskmeterCollector } = await import('../dist/exporters/prometheus.js');
    const registry = new prom.Registry();
    const c = createTaskmeterCollector({ registry });
    const usage = {
      ...(await tm.measureCommand('true')).usage,
      peakRssBytes: null,
      peakRssSource: null,
    } as tm.ProcessUsage;
    try {
      c.observeUsage(usage, { task: 'true' });
      const text = await registry.metrics();
      expect(text).toMatch(/taskmeter_task_duration_seconds_count\{task="true"\} 1/);
      expect(text).not.toMatch(/taskmeter_task_memory_peak_bytes_count\{task="true"\} 1/);
    } finally {
      c.unregister();
    }
  });

  it('--no-gpu is reported as --no-gpu, and a GPU-less host gets one short GPU line', async () => {
    const off = await runCli(['--no-gpu', '--', 'true']);
    const line = off.stderr.split('\n').find((l) => l.trim().startsWith('GPU'))!;
    expect(line).toMatch(/--no-gpu/);
    expect(off.stderr).not.toContain('TASKMETER_DISABLE_GPU');
    if (!tm.hasGpu) {
      const on = await runCli(['--', 'true'], {
        env: { ...process.env, TASKMETER_NVML_LIBRARY: '/nonexistent/libnvidia-ml.so.1' },
      });
      const gpu = on.stderr.split('\n').find((l) => l.trim().startsWith('GPU'))!;
      expect(gpu.length).toBeLessThan(80);
    }
  }, 30_000);

  it('usage messages quote options in balanced quotes', async () => {
    for (const args of [['--foo', '--', 'true'], ['-x'], ['-i'], ['--json=1', '--', 'true']]) {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      const first = r.stderr.split('\n')[0];
      for (const q of ["'", '"']) expect(first.split(q).length % 2, `${first}`).toBe(1);
    }
  }, 30_000);
});

describe.runIf(linux)('the tree sampler', () => {
  it('is one reading of a few kept-open files per process (smaps_rollup opened per PSS pass): its descriptors close when tracking ends', async () => {
    const p = start('sh', ['-c', 'for i in $(seq 50); do sleep 30 & done; wait']);
    await until(() => childrenOf(p.pid!).length >= 50, 30_000, '50 children');
    // descriptors this process holds on the /proc files of this tree (not of other tests' trees, whose windows may
    // still be closing)
    const tree = new Set([p.pid!, ...childrenOf(p.pid!)]);
    const fds = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          const m = /^\/proc\/(\d+)\/(stat|schedstat|io|task\/\d+\/children)$/.exec(
            readlinkSync(`/proc/self/fd/${fd}`),
          );
          return m !== null && tree.has(Number(m[1]));
        } catch {
          return false;
        }
      }).length;
    const before = fds();
    expect(before).toBe(0);
    const t = tm.trackProcess(p.pid!);
    await until(() => t.usage.samples >= 3, 10_000, 'samples');
    const during = fds();
    // stat, schedstat, io and children of each, kept open between samples
    expect(during - before).toBeGreaterThanOrEqual(2 * 51);
    expect(during - before).toBeLessThanOrEqual(4 * 51);
    t.stop();
    // at once, or at the end of the sample in progress (never at the sampler's next round, which may not come)
    await until(() => fds() === 0, 10_000, 'the descriptors to close');
  }, 60_000);
});

describe('trackProcess()', () => {
  it('follows a running process tree until it exits', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(
      'sh',
      ['-c', `sleep 0.3; ${python} -c "b = b'\\x01' * (50 << 20); import time; time.sleep(0.3)"; sleep 0.1`],
      { stdio: 'ignore' },
    );
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

const spawnChild = (mode: string, env?: NodeJS.ProcessEnv): Promise<ChildResult> =>
  runChild('spawn-child.cjs', [mode], { timeoutMs: 30_000, env: { ...process.env, ...env } });
const lines = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('errors are clear and lose nothing', () => {
  it('a missing cwd is an error that names the directory, not "command not found"', async () => {
    const missing = join(work, 'no-such-dir');
    const err = await tm.measureCommand('true', [], { cwd: missing }).catch((e) => e);
    expect(err.code).toBe('ENOENT');
    expect(err.path).toBe(missing);
    expect(err.message).toContain(missing);
    expect(err.message).not.toMatch(/command not found/);
    const notDir = await tm.measureCommand('true', [], { cwd: cliPath }).catch((e) => e);
    expect(notDir.code).toBe('ENOTDIR');
  });

  it('an env without PATH finds the command the way child_process does (/usr/bin:/bin)', async () => {
    const r = lines((await spawnChild('no-path')).stdout)[0];
    expect(r).toMatchObject({ exitCode: 0 });
    expect(r.lines).toBeGreaterThan(5);
    expect(resolveCommand('ls', {}, '/')).toMatch(/^\/usr\/bin\/ls$|^\/bin\/ls$/);
  });

  it('a waiter thread that cannot be created: the command is killed and reaped, the promise rejects with EAGAIN', async () => {
    const r = await spawnChild('thread-fails', { TASKMETER_TEST_FAIL_WAITER_THREAD: '1' });
    expect(r.code, r.stderr).toBe(0);
    const [res] = lines(r.stdout);
    expect(res).toMatchObject({ code: 'EAGAIN', syscall: 'pthread_create', left: [], pending: 0 });
  });

  it("no memory for the command's entry in the registry: nothing starts, the promise rejects with ENOMEM, the event loop exits", async () => {
    // before: the exception came out after the fork: the command ran on with nobody to reap it, and the exit
    // notifier kept the process alive for ever
    const r = await runChild('spawn-child.cjs', ['registry-fails'], {
      timeoutMs: 10_000,
      env: { ...process.env, TASKMETER_TEST_FAIL_SPAWN_REGISTRY: '1' },
    });
    expect(r.code, r.stderr).toBe(0);
    const res = lines(r.stdout);
    expect(res).toEqual([{ code: 'ENOMEM', left: [], pending: 0 }]);
  });

  it.runIf(process.platform === 'linux')(
    'ending a tree when memory runs out midway: what was found is signalled, and no process is left stopped',
    async () => {
      const r = await spawnChild('kill-tree-alloc', { TASKMETER_TEST_FAIL_KILL_TREE_ALLOC: '2' });
      expect(r.code, r.stderr).toBe(0);
      const [res] = lines(r.stdout);
      expect(res.signalled).toBe(1); // the command; its allocation for the next one failed
      expect(res.signal).toBe('SIGTERM');
      // before: the second process was stopped, then its allocation failed: it stayed stopped (T)
      expect(res.states.slice(1)).toEqual(['S', 'S']);
    },
  );

  it('errno names are the real ones (no invented codes): an executable that is no program is ENOEXEC', async () => {
    const junk = join(work, 'not-a-program');
    writeFileSync(junk, Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 10]), { mode: 0o755 });
    const err = await tm.measureCommand(junk).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(err).toMatchObject({ code: 'ENOEXEC', errno: osConstants.errno.ENOEXEC, syscall: 'execve', path: junk });
    const denied = await tm.measureCommand(work).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(denied).toMatchObject({ code: 'EACCES', errno: osConstants.errno.EACCES });
  });
});

describe('waiting for the command without polling', () => {
  it('the JS thread sleeps while the command runs (a handful of wakeups over 1 s, not one per 10 ms)', async () => {
    const r = await spawnChild('wakeups');
    const [res] = lines(r.stdout);
    expect(res.exitCode).toBe(0);
    expect(res.wallTimeMs).toBeGreaterThan(950);
    expect(res.switches).toBeLessThan(20);
  });

  it('a running command keeps the event loop alive, and nothing else does', async () => {
    const r = await spawnChild('alive');
    const [done, exit] = lines(r.stdout);
    expect(done.exitCode).toBe(0);
    expect(done.atMs).toBeGreaterThan(290);
    expect(exit.exitAtMs - done.atMs).toBeLessThan(200);
  });

  it('a worker that ends while its command runs leaks no spawn record and leaves no zombie', async () => {
    const r = await spawnChild('worker-ends');
    expect(r.code, r.stderr).toBe(0);
    const [res] = lines(r.stdout);
    expect(res.pendingWhileRunning).toBe(1);
    expect(res.aliveWhenTerminated).toBe(true);
    expect(res.pendingAfter).toBe(0);
    expect(res.reaped).toBe(true);
  });
});
