// Process trees as real programs build them (issue 17): workers forked without exec (a Python multiprocessing pool,
// a DataLoader), shared pages (PSS next to the RSS sum), children reaped by nobody or by init, trees never seen,
// other users' processes, storage I/O. Each scenario holds its processes until the test has seen the sampler read
// them (its sample and PSS counts), so a busy machine slows it down but cannot change its figures.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cliPath, lastJson, MiB, python3Path, REQUIRE_SYSTEM_DEPS, recordValidator, root, run } from './helpers';
import * as tm from '../dist/index.js';
import { ProcessTracker, signalCommand } from '../dist/process.js';

const linux = process.platform === 'linux';
const python = linux ? python3Path() : 'python3';
// On the repository's disk (build/ exists once the addon is built): storage I/O is counted there, not on a tmpfs.
const work = mkdtempSync(join(root, 'build', 'trees-'));
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
function start(args: string[]): ChildProcess {
  const c = spawn(python, args, { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
  spawned.push(c);
  return c;
}
async function until(cond: () => boolean, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
const stat = (pid: number): string[] | null => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
};
/** utime + stime in ms (clock ticks of 10 ms), or -1 once gone */
const ownCpuMs = (pid: number) => {
  const f = stat(pid);
  return f ? (Number(f[11]) + Number(f[12])) * 10 : -1;
};
const state = (pid: number) => stat(pid)?.[0] ?? 'gone';
const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
/** Waits until the tracker has taken `n` more samples (and, with pss, PSS passes) than it had. */
async function moreSamples(t: tm.ProcessTracker, n: number, pss = false): Promise<void> {
  const u0 = t.usage;
  await until(
    () => {
      const u = t.usage;
      return u.samples >= u0.samples + n && (!pss || u.treePssSamples >= u0.treePssSamples + n);
    },
    60_000,
    `${n} more samples`,
  );
}

// A pool of two workers forked without exec, each touching `mib` MiB of its own; each worker says so by creating
// <dir>/ready-<i>, then holds its memory until <dir>/release exists.
const POOL = `
import multiprocessing as mp, os, sys, time
d, mib = sys.argv[1], int(sys.argv[2])
def work(i):
    b = bytearray(mib << 20)
    for j in range(0, len(b), 4096): b[j] = 1
    open(os.path.join(d, 'ready-%d' % i), 'w').close()
    while not os.path.exists(os.path.join(d, 'release')): time.sleep(0.02)
    return len(b)
if __name__ == '__main__':
    ctx = mp.get_context('fork')
    with ctx.Pool(2) as p:
        print(sum(p.map(work, [0, 1], chunksize=1)))
`;

// The DataLoader pattern: the parent fills a 500 MiB array, then forks two workers that read all of it (numpy when
// it is installed, else a bytearray); the pages stay shared.
const LOADER = `
import multiprocessing as mp, os, sys, time
d = sys.argv[1]
try:
    import numpy as np
    data = np.ones(500 << 20, dtype=np.uint8)
    total = lambda: int(data[::4096].sum())
except ImportError:
    data = bytearray(500 << 20)
    for j in range(0, len(data), 4096): data[j] = 1
    total = lambda: sum(memoryview(data)[::4096])
def work(i):
    s = total()
    open(os.path.join(d, 'ready-%d' % i), 'w').close()
    while not os.path.exists(os.path.join(d, 'release')): time.sleep(0.02)
    return s
if __name__ == '__main__':
    with mp.get_context('fork').Pool(2) as p:
        print(sum(p.map(work, [0, 1], chunksize=1)))
`;

function scenarioDir(): string {
  return mkdtempSync(join(work, 's-'));
}
const ready = (dir: string) => existsSync(join(dir, 'ready-0')) && existsSync(join(dir, 'ready-1'));
const release = (dir: string) => writeFileSync(join(dir, 'release'), '');

describe.runIf(linux)('workers forked without exec count, and shared pages are counted once in PSS', () => {
  it('trackProcess of a fork pool of two workers touching 300 MiB each: tree peak ≥ 600 MiB, PSS between 600 MiB and the RSS sum', async () => {
    const dir = scenarioDir();
    const p = start(['-c', POOL, dir, '300']);
    const t = tm.trackProcess(p.pid!);
    await until(() => ready(dir), 60_000, 'the workers');
    await moreSamples(t, 2, true); // the sampler read the tree with both workers' memory resident
    release(dir);
    const u = await t.exited;
    // before: 16 MiB (the parent alone: the workers carry PF_FORKNOEXEC and were left out)
    expect(u.treePeakRssBytes).toBeGreaterThanOrEqual(600 * MiB);
    expect(u.maxRssBytes).toBeGreaterThanOrEqual(300 * MiB);
    expect(u.treePeakPssBytes).toBeGreaterThanOrEqual(600 * MiB);
    expect(u.treePeakPssBytes).toBeLessThanOrEqual(u.treePeakRssBytes!);
    expect(u.treePeakPssSource).toBe('sampled');
    expect(u.treePssSamples).toBeGreaterThanOrEqual(1);
    const rec = tm.toRecord(u);
    expect(rec.tree_peak_pss_bytes).toBe(u.treePeakPssBytes);
    expect(rec.tree_peak_pss_source).toBe('sampled');
  }, 120_000);

  it('measureCommand of the same pool: tree peak ≥ 600 MiB (RSS sum), PSS between 600 MiB and the RSS sum', async () => {
    const dir = scenarioDir();
    let observer: tm.ProcessTracker | null = null;
    const done = tm.measureCommand(python, ['-c', POOL, dir, '300'], {
      stdio: 'ignore',
      onSpawn: (pid) => (observer = tm.trackProcess(pid)),
    });
    await until(() => ready(dir), 60_000, 'the workers');
    // The command's own window is sampled on the same thread at the same pace as this observer's: two PSS passes of
    // the observer with the memory resident are at least one of the command's.
    await moreSamples(observer!, 2, true);
    release(dir);
    const r = await done;
    observer!.stop();
    expect(r.exitCode).toBe(0);
    const u = r.usage;
    // before: 312 MiB (one worker's ru_maxrss)
    expect(u.treePeakRssBytes).toBeGreaterThanOrEqual(600 * MiB);
    expect(u.treePeakPssBytes).toBeGreaterThanOrEqual(600 * MiB);
    expect(u.treePeakPssBytes).toBeLessThanOrEqual(u.treePeakRssBytes!);
  }, 120_000);

  it('a DataLoader-like pool (fork, workers reading a shared 500 MiB array): PSS well below the RSS sum', async () => {
    const dir = scenarioDir();
    const p = start(['-c', LOADER, dir]);
    const t = tm.trackProcess(p.pid!);
    await until(() => ready(dir), 60_000, 'the workers');
    await moreSamples(t, 2, true);
    release(dir);
    const u = await t.exited;
    // three processes map the same 500 MiB: the RSS sum counts it three times, PSS once
    expect(u.treePeakRssBytes).toBeGreaterThanOrEqual(1400 * MiB);
    expect(u.treePeakPssBytes).toBeGreaterThanOrEqual(500 * MiB);
    expect(u.treePeakPssBytes).toBeLessThan(u.treePeakRssBytes! / 2);
  }, 120_000);

  it('a tree that grows faster than the PSS passes are paid for (1,000 processes forked at once): PSS null with the reason, never the figure of the small tree a pass read', async () => {
    // The tree is held at its full size until the test ends it, so that no pass can read it at its peak whatever the
    // pace of the forks: a pass over 1,000 processes costs ~60 ms, and the budget (0.25 % of a core) earns 2.5 ms/s.
    const dir = scenarioDir();
    const ready = join(dir, 'forked');
    let sh = 0;
    let observer: tm.ProcessTracker | null = null;
    const done = tm.measureCommand('sh', ['-c', `for i in $(seq 1000); do sleep 120 & done; : > ${ready}; wait`], {
      stdio: 'ignore',
      onSpawn: (pid) => {
        sh = pid;
        observer = tm.trackProcess(pid);
      },
    });
    await until(() => existsSync(ready), 60_000, 'the 1,000 forks');
    // the command's window is sampled on the same thread at the same pace: it has seen the whole tree too
    await moreSamples(observer!, 2);
    observer!.stop();
    const children = readFileSync(`/proc/${sh}/task/${sh}/children`, 'utf8').trim().split(' ').map(Number);
    expect(children.length).toBe(1000);
    for (const pid of children) process.kill(pid, 'SIGTERM');
    const r = await done;
    expect(r.exitCode).toBe(0);
    const u = r.usage;
    expect(u.processes).toBeGreaterThanOrEqual(900);
    // Before: 20 MiB of PSS for a tree whose RSS sum peaked at 1.58 GiB (one pass over its first processes), or null
    // "the tree ended before the first PSS pass".
    expect(u.treePeakPssBytes, `PSS ${u.treePeakPssBytes} for an RSS sum of ${u.treePeakRssBytes}`).toBeNull();
    expect(u.treePeakPssSource).toBeNull();
    expect(u.treePeakPssReason).toMatch(
      /^no PSS pass (read the tree near its peak|has read the tree).* paced by their cost/,
    );
    const rec = tm.toRecord(u);
    expect(rec.tree_peak_pss_bytes).toBeNull();
    expect(rec.tree_peak_pss_reason).toBe(u.treePeakPssReason);
  }, 120_000);
});

// A program that runs subprocesses one after the other, holding 300 MiB: each starts as a copy of it (fork) that maps
// all of its memory until its exec — microseconds, up to ~0.25 s on a loaded machine; here each copy takes 0.1 s.
const SUBPROCESSES = `
import os, sys, time
d = sys.argv[1]
b = bytearray(300 << 20)
for j in range(0, len(b), 4096): b[j] = 1
open(os.path.join(d, 'ready-0'), 'w').close()
open(os.path.join(d, 'ready-1'), 'w').close()
while not os.path.exists(os.path.join(d, 'release')):
    pid = os.fork()
    if pid == 0:
        t = time.monotonic()
        while time.monotonic() - t < 0.1: pass
        os.execv('/bin/true', ['true'])
    os.waitpid(pid, 0)
`;

describe.runIf(linux)(
  "a copy on its way to exec is not a worker: a program's subprocesses do not double its peak",
  () => {
    it('trackProcess of a program that forks and execs one subprocess after another: the tree peak is its own', async () => {
      const dir = scenarioDir();
      const p = start(['-c', SUBPROCESSES, dir]);
      const t = tm.trackProcess(p.pid!, { sampleIntervalMs: 10 });
      await until(() => ready(dir), 60_000, 'the program');
      await moreSamples(t, 40); // a copy is there at almost every sample
      release(dir);
      const u = await t.exited;
      expect(u.maxRssBytes).toBeGreaterThanOrEqual(300 * MiB);
      // before: ~2× (each copy summed with its parent)
      expect(u.treePeakRssBytes).toBeLessThan(u.maxRssBytes! + 100 * MiB);
    }, 120_000);

    it('measureCommand of a Node program that runs spawnSync 300 times: the tree peak is its own, not twice it', async () => {
      const code = `const b = Buffer.alloc(200 << 20, 1);
      for (let i = 0; i < 300; i++) require('node:child_process').spawnSync('/bin/true');
      console.log(b.length);`;
      const r = await tm.measureCommand(process.execPath, ['-e', code], { stdio: 'ignore' });
      expect(r.exitCode).toBe(0);
      const u = r.usage;
      expect(u.maxRssBytes).toBeGreaterThanOrEqual(200 * MiB);
      // before: 454 MiB for a program of 249 MiB, in 3 runs out of 3
      expect(u.treePeakRssBytes).toBeLessThan(u.maxRssBytes! + 100 * MiB);
    }, 120_000);

    it("this process's own copy between fork and exec: out of the RSS sum before and after it is registered, in the PSS", async () => {
      // held there by a test hook while a worker thread follows this process's tree (test/children/held-fork.cjs)
      const r = await run(process.execPath, [join(root, 'test/children/held-fork.cjs'), '400'], { timeoutMs: 110_000 });
      expect(r.code, r.stderr).toBe(0);
      const o = lastJson(r.stdout);
      expect(o.copyRss).toBeGreaterThanOrEqual(o.bufferBytes); // the copy maps all of our memory
      for (const phase of [o.phase1, o.phase2]) {
        expect(phase.processes).toBe(2);
        // before: 2× in phase 1 (not registered yet) and at phase 2's first sample (registered just after it)
        expect(phase.treePeakRssBytes).toBeLessThan(o.selfRss + o.bufferBytes / 2);
      }
      // the buffer once: ours and the copy's shares of it (before: ours alone, about half of it)
      expect(o.phase2.treePssSamples).toBeGreaterThanOrEqual(1);
      expect(o.phase2.treePeakPssBytes).toBeGreaterThanOrEqual(o.bufferBytes);
    }, 120_000);
  },
);

// Burns `s` seconds of CPU in the calling process.
const BURN = `
import os, signal, sys, time
def burn(s):
    t = time.process_time()
    while time.process_time() - t < s: pass
def line():
    b = b''
    while not b.endswith(b'\\n'):
        c = os.read(0, 1)
        if not c: sys.exit(3)
        b += c
    return b
`;

describe.runIf(linux)('the CPU of every descendant, whoever reaps it', () => {
  it('a parent that ignores SIGCHLD and forks a 0.7 s child (0.4 s itself): ≥ 1.0 s of CPU', async () => {
    const code = `${BURN}
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel: never in our cutime
line()  # go
pid = os.fork()
if pid == 0:
    burn(0.7)
    line()  # then exit
    os._exit(0)
try:
    os.waitpid(pid, 0)  # with SIGCHLD ignored: returns (ECHILD) once the child is gone
except ChildProcessError:
    pass
burn(0.4)
line()  # then exit
`;
    const p = start(['-c', code]);
    const t = tm.trackProcess(p.pid!);
    p.stdin!.write('go\n');
    let kid = 0;
    await until(
      () => {
        kid = childrenOf(p.pid!)[0] ?? 0;
        return kid > 0 && ownCpuMs(kid) >= 690 && state(kid) === 'S';
      },
      60_000,
      'the child to burn 0.7 s',
    );
    await moreSamples(t, 2);
    p.stdin!.write('exit\n');
    await until(() => ownCpuMs(p.pid!) >= 390 && state(p.pid!) === 'S' && state(kid) === 'gone', 60_000, 'the parent');
    await moreSamples(t, 2);
    p.stdin!.write('exit\n');
    const u = await t.exited;
    expect(u.processes).toBe(2);
    expect(u.cpuTimeMs).toBeGreaterThanOrEqual(1000); // before: 0.7 s (the child taken as waited for, then a clamp)
    expect(u.cpuTimeMs).toBeLessThan(1500);
  }, 120_000);

  it('a zombie parent does not hide the CPU of a child that init (a subreaper) reaped', async () => {
    // The wrapper is a subreaper: orphans come to it, and it reaps them at once. It starts the tracked root R, which
    // forks P (a process group of its own), which forks C. C burns 0.7 s; then R kills P's group: P stays R's
    // zombie, C goes to the wrapper, which reaps it. C's parent, as last read, is P.
    const code = `${BURN}
import ctypes
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
r = os.fork()
if r == 0:
    line()  # go
    p = os.fork()
    if p == 0:
        os.setpgid(0, 0)
        if os.fork() == 0:
            burn(0.7)
            time.sleep(3600)
        time.sleep(3600)
    line()  # kill
    os.killpg(p, signal.SIGKILL)
    line()  # burn
    burn(0.4)
    line()  # exit
    os.waitpid(p, 0)
    os._exit(0)
sys.stdout.write('%d\\n' % r)
sys.stdout.flush()
while True:
    pid, _ = os.wait()
    if pid == r: break
`;
    const w = spawn(python, ['-c', code], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    spawned.push(w);
    const rootPid = await new Promise<number>((res) => w.stdout!.once('data', (d) => res(Number(String(d).trim()))));
    const t = tm.trackProcess(rootPid);
    w.stdin!.write('go\n');
    let pPid = 0;
    let cPid = 0;
    await until(
      () => {
        pPid = childrenOf(rootPid)[0] ?? 0;
        cPid = pPid ? (childrenOf(pPid)[0] ?? 0) : 0;
        return cPid > 0 && ownCpuMs(cPid) >= 690 && state(cPid) === 'S';
      },
      60_000,
      'C to burn 0.7 s',
    );
    await moreSamples(t, 2);
    w.stdin!.write('kill\n');
    await until(() => state(pPid) === 'Z' && state(cPid) === 'gone', 60_000, 'P a zombie, C reaped');
    await moreSamples(t, 2);
    w.stdin!.write('burn\n');
    await until(() => ownCpuMs(rootPid) >= 390 && state(rootPid) === 'S', 60_000, 'R to burn 0.4 s');
    await moreSamples(t, 2);
    w.stdin!.write('exit\n');
    const u = await t.exited;
    expect(u.processes).toBe(3);
    // before: 0.7 s — C was taken as waited for by its zombie parent, and a "never backwards" clamp then hid R's 0.4 s
    expect(u.cpuTimeMs).toBeGreaterThanOrEqual(1080);
    expect(u.cpuTimeMs).toBeLessThan(1500);
  }, 120_000);
});

describe.runIf(linux)('the I/O and page-fault counters of a tracked tree', () => {
  it('count what every process wrote, a child waited for once (its counts move into its parent)', async () => {
    const file = join(work, 'io');
    const code = `${BURN}
def write(path):
    with open(path, 'wb') as f:
        f.write(b'x' * (8 << 20))
line()  # go
pid = os.fork()
if pid == 0:
    write(sys.argv[1] + '.child')
    os._exit(0)
os.waitpid(pid, 0)
write(sys.argv[1] + '.parent')
line()  # exit
`;
    const p = start(['-c', code, file]);
    const t = tm.trackProcess(p.pid!);
    p.stdin!.write('go\n');
    await until(() => existsSync(`${file}.parent`) && childrenOf(p.pid!).length === 0, 60_000, 'the writes');
    await until(() => state(p.pid!) === 'S', 60_000, 'the parent to wait');
    await moreSamples(t, 2);
    p.stdin!.write('exit\n');
    const u = await t.exited;
    // 8 MiB each through write() (wchar), and to storage (write_bytes, counted as the page cache is dirtied)
    expect(u.ioWriteBytes).toBeGreaterThanOrEqual(16 * MiB);
    expect(u.ioWriteBytes).toBeLessThan(24 * MiB); // the child's 8 MiB once, not again in its parent's count
    expect(u.fsOutputBlocks).toBeGreaterThanOrEqual((16 * MiB) / 512);
    expect(u.fsOutputBlocks).toBeLessThan((24 * MiB) / 512);
    expect(u.ioReadBytes).toBeGreaterThan(0); // the interpreter's own reads
    expect(u.minorPageFaults).toBeGreaterThan(0);
    expect(u.majorPageFaults).not.toBeNull();
    expect(u.voluntaryContextSwitches).toBeNull(); // /proc has no count of waited-for children's
    const rec = tm.toRecord(u);
    expect(rec.io_write_bytes).toBe(u.ioWriteBytes);
  }, 60_000);
});

describe.runIf(linux)('null, never 0, for what nothing read', () => {
  it('a tree that ended before its first sample: CPU null with a reason (and null in its record), not 0', async () => {
    const c = spawn('true', [], { stdio: 'ignore' });
    await new Promise((r) => c.once('exit', r));
    const pid = c.pid!;
    expect(existsSync(`/proc/${pid}`)).toBe(false); // reaped: nothing is left to read
    // trackProcess() itself refuses a pid that is gone; its tracker meets the same tree when the process ends between
    // that check and the first sample.
    const t = new ProcessTracker(pid, { intervalMs: 10, descendants: true, timeline: false }, true, true);
    const u = await t.exited;
    expect(u.processes).toBe(0);
    expect(u.cpuTimeMs).toBeNull(); // before: 0
    expect(u.cpuUserMs).toBeNull();
    expect(u.cpuReason).toMatch(/ended before the first/);
    expect(u.cpuPercent).toBeNull();
    const rec = tm.toRecord(u);
    expect(rec.cpu_time_seconds).toBeNull();
    expect(rec.cpu_reason).toBe(u.cpuReason);
    const validate = recordValidator();
    expect(validate(rec), JSON.stringify(validate.errors)).toBe(true);
  });
});

// hidepid needs a /proc of our own (a mount namespace) and another user to look from: root, unshare and setpriv.
// The process to follow runs as nobody; the tracker as root without capabilities, outside group 0 (which hidepid
// exempts by default): /proc hides the other's process from it and kill(pid, 0) says EPERM, while it can still read a
// checkout that only root may enter (a clone under /root or `mktemp -d`: as nobody, require() of dist/ failed there).
const asOtherUser = ['--reuid=65534', '--regid=65534', '--clear-groups'];
const asRootWithoutCaps = ['--bounding-set=-all', '--inh-caps=-all', '--regid=65534', '--clear-groups'];
const hidepidMissing = (() => {
  if (!linux) return 'Linux only';
  const ok = (flags: string[]) =>
    spawnSync('unshare', ['-m', '--propagation', 'private', 'setpriv', ...flags, 'true']).status === 0;
  if (ok(asOtherUser) && ok(asRootWithoutCaps)) return null;
  const reason = 'needs root, unshare and setpriv (a mount namespace and another user)';
  // CI runs as root with util-linux: a skip there would hide the test
  if (process.env[REQUIRE_SYSTEM_DEPS] === '1') throw new Error(`${REQUIRE_SYSTEM_DEPS}=1 and a test ${reason}`);
  return reason;
})();

describe.skipIf(hidepidMissing !== null)(
  `another user's process under /proc's hidepid${hidepidMissing ? ` (skipped: ${hidepidMissing})` : ''}`,
  () => {
    it('is alive and unreadable (EPERM from kill(pid, 0)), counted as such, and followed until it ends', async () => {
      const target = spawn('setpriv', [...asOtherUser, 'sleep', '2'], { stdio: 'ignore' });
      spawned.push(target);
      const script = `
        const tm = require(${JSON.stringify(join(root, 'dist/index.js'))});
        const t = tm.trackProcess(${target.pid});
        const iv = setInterval(() => {
          const u = t.usage;
          if (u.unreadableProcesses < 1) return; // a sample has found it
          clearInterval(iv);
          const during = { running: t.running, unreadable: u.unreadableProcesses, processes: u.processes };
          t.exited.then((f) => console.log(JSON.stringify({ during, cpu: f.cpuTimeMs, reason: f.cpuReason,
            unreadable: f.unreadableProcesses, processes: f.processes, pss: f.treePeakPssBytes })));
        }, 20);`;
      const r = await run(
        'unshare',
        [
          '-m',
          '--propagation',
          'private',
          'sh',
          '-c',
          `mount -t proc -o hidepid=2 proc /proc && exec setpriv ${asRootWithoutCaps.join(' ')} "$0" -e "$1"`,
          process.execPath,
          script,
        ],
        { timeoutMs: 30_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      const o = JSON.parse(r.stdout.trim().split('\n').pop()!);
      // before: /proc/<pid> looked missing, the process was taken for gone, and tracking ended at the first sample
      expect(o.during).toEqual({ running: true, unreadable: 1, processes: 0 });
      expect(o.processes).toBe(0);
      expect(o.cpu).toBeNull();
      expect(o.reason).toMatch(/EPERM/);
      expect(o.pss).toBeNull();
    }, 40_000);

    it.each([
      ['another process of that user', asOtherUser],
      ['a process it may read', asRootWithoutCaps],
    ])(
      'ends when it ends, even when %s gets its pid at once',
      async (_, newcomer) => {
        // In a pid namespace of our own, so that the pid can be handed out again on purpose (ns_last_pid): the tracker
        // is stopped (SIGSTOP) while the process it follows ends and a new one gets its pid, then resumed.
        const dir = scenarioDir();
        const script = `
        const fs = require('node:fs');
        const t = require(${JSON.stringify(join(root, 'dist/index.js'))}).trackProcess(Number(process.argv[1]));
        const iv = setInterval(() => {
          if (t.usage.unreadableProcesses < 1) return; // a sample has found it
          clearInterval(iv);
          fs.writeFileSync(${JSON.stringify(join(dir, 'following'))}, '');
          t.exited.then((u) => console.log(JSON.stringify({ unreadable: u.unreadableProcesses, processes: u.processes })));
        }, 20);`;
        const shell = `mount -t proc -o hidepid=2 proc /proc || exit 3
        setpriv ${asOtherUser.join(' ')} sleep 1000 & t=$!
        setpriv ${asRootWithoutCaps.join(' ')} "$0" -e "$1" $t & n=$!
        while [ ! -e "$2/following" ]; do sleep 0.02; done
        kill -STOP $n
        kill $t; wait $t
        echo $((t - 1)) > /proc/sys/kernel/ns_last_pid
        setpriv $3 sleep 1000 & r=$!
        kill -CONT $n
        [ $r = $t ] || { echo "pid not reused: $t, $r" >&2; kill $r $n; exit 4; }
        timeout 20 sh -c "while kill -0 $n 2>/dev/null; do sleep 0.05; done"; s=$?
        kill $r; kill $n 2>/dev/null; exit $s`;
        const ns = ['--kill-child', '-p', '-f', '-m', '--propagation', 'private'];
        const r = await run('unshare', [...ns, 'sh', '-c', shell, process.execPath, script, dir, newcomer.join(' ')], {
          timeoutMs: 40_000,
        });
        // before: the new process under its pid kept it "alive" (another user's: kill(pid, 0) said EPERM), or was
        // taken for the process first found (one it may read: never read before, its start time was not known)
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ unreadable: 1, processes: 0 });
      },
      60_000,
    );
  },
);

/** Whether a process sleeps in wait4/waitid (its kernel wait channel), e.g. the exec helper once it reported the exec. */
function waitsForChild(pid: number): boolean {
  try {
    const wchan = readFileSync(`/proc/${pid}/wchan`, 'utf8').trim();
    return wchan === 'do_wait' || wchan === '0' || wchan === ''; // a kernel that hides wait channels: cannot tell
  } catch {
    return false;
  }
}

describe.runIf(linux)('the exec helper and signals', () => {
  it('a SIGKILLed exec helper: the status is unknown (not the helper’s own), and the command is killed, not orphaned', async () => {
    let cmd = 0;
    const done = tm.measureCommand('sleep', ['30'], { stdio: 'ignore', onSpawn: (pid) => (cmd = pid) });
    await until(() => state(cmd) === 'S', 10_000, 'the command');
    const helper = Number(stat(cmd)![1]);
    expect(readFileSync(`/proc/${helper}/comm`, 'utf8')).toMatch(/-exec/);
    process.kill(helper, 'SIGKILL');
    const r = await done;
    expect(r.exitCode).toBeNull(); // before: the helper's SIGKILL, reported as the command's
    expect(r.signal).toBeNull();
    await until(() => state(cmd) === 'gone' || state(cmd) === 'Z', 10_000, 'the command to die with its helper');
  }, 30_000);

  it('the CLI says the status is unknown and exits 1 when its exec helper is killed', async () => {
    const c = spawn(process.execPath, [cliPath, '--', 'sleep', '30'], { stdio: ['ignore', 'ignore', 'pipe'] });
    spawned.push(c);
    let err = '';
    c.stderr!.on('data', (d) => (err += d));
    let helper = 0;
    let cmd = 0;
    const comm = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        return '';
      }
    };
    await until(
      () => {
        // the exec helper somewhere below the CLI's process (bin/taskmeter.js may run the CLI in a process of its own)
        const queue = [c.pid!];
        helper = 0;
        while (queue.length > 0 && !helper) {
          const p = queue.shift()!;
          if (comm(p).endsWith('-exec')) helper = p;
          else queue.push(...childrenOf(p));
        }
        cmd = helper ? (childrenOf(helper)[0] ?? 0) : 0;
        // and the helper past its report that the command started (waiting for its end): killed before that report,
        // the CLI rightly says the command could not be started (EIO), not that its status is unknown
        return cmd > 0 && state(cmd) === 'S' && waitsForChild(helper);
      },
      20_000,
      'the command',
    );
    process.kill(helper, 'SIGKILL');
    const code = await new Promise((r) => c.once('exit', r));
    expect(err).toMatch(/Exit status:\s+unknown/);
    expect(code).toBe(1); // before: 137, as if the command had been killed by SIGKILL
    await until(() => state(cmd) === 'gone' || state(cmd) === 'Z', 10_000, 'the command to die with its helper');
  }, 30_000);

  it('no signal goes to a command once it has ended, even when its pid names a new process', async () => {
    let cmd = 0;
    const running = tm.measureCommand('sleep', ['30'], { stdio: 'ignore', onSpawn: (pid) => (cmd = pid) });
    await until(() => cmd > 0, 10_000, 'the command');
    expect(signalCommand(cmd, 'SIGTERM')).toBe(true); // while it runs
    expect((await running).signal).toBe('SIGTERM');
    for (let attempt = 0; attempt < 15; attempt++) {
      let pid = 0;
      await tm.measureCommand('true', [], { stdio: 'ignore', onSpawn: (p) => (pid = p) });
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1)); // the kernel hands out ns_last_pid + 1
      const q = spawn('sleep', ['30'], { stdio: 'ignore', detached: true });
      spawned.push(q);
      if (q.pid !== pid) continue; // another process on the machine took it first: again
      expect(signalCommand(pid, 'SIGTERM')).toBe(false);
      await sleep(100);
      expect(q.exitCode).toBeNull();
      expect(q.signalCode).toBeNull();
      return;
    }
    expect.fail('no attempt got the same pid back');
  }, 60_000);

  it('a command that has ended gets no signal even before its result reaches JavaScript (what the CLI forwards)', async () => {
    for (let attempt = 0; attempt < 15; attempt++) {
      let cmd = 0;
      const done = tm.measureCommand('sleep', ['0.2'], { stdio: 'ignore', onSpawn: (p) => (cmd = p) });
      // This thread is held from here to the check: the command's result cannot be delivered meanwhile, and the
      // CLI's signal handlers would still hold its pid.
      while (existsSync(`/proc/${cmd}`)) {
        /* until the helper has reaped it */
      }
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(cmd - 1));
      const q = spawn('sleep', ['30'], { stdio: 'ignore', detached: true });
      spawned.push(q);
      const sent = signalCommand(cmd, 'SIGTERM');
      await done;
      if (q.pid !== cmd) continue; // another process on the machine took the pid first: again
      expect(sent).toBe(false); // before: process.kill(pid) reached the newcomer
      await sleep(100);
      expect(q.signalCode).toBeNull();
      return;
    }
    expect.fail('no attempt got the same pid back');
  }, 60_000);
});
