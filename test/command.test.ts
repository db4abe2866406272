// measureCommand for job runners: ending a command (an AbortSignal, a timeout, too much output) ends its whole tree
// and says so in the result; stdio to descriptors and streams; when the promise resolves with pipes; signal names
// as child_process gives them.
import { spawn, spawnSync } from 'node:child_process';
import { getEventListeners, once } from 'node:events';
import { closeSync, createWriteStream, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as tm from '../dist/index.js';

const posix = process.platform !== 'win32';
const linux = process.platform === 'linux';
const work = mkdtempSync(join(tmpdir(), 'taskmeter-command-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True while pid names a process that has not ended (a zombie has ended). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (!linux) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Runs `script` under sh; it writes the pids of its background jobs into a file: returns them once written. */
function pidsFile(name: string): { file: string; read: () => number[] } {
  const file = join(work, name);
  return {
    file,
    read: () => {
      try {
        return readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        return [];
      }
    },
  };
}

describe.runIf(posix)('ending a command: signal, timeout, killSignal', () => {
  it('an AbortSignal ends the command: it resolves long before the command would have ended, with the kill recorded', async () => {
    const t0 = performance.now();
    const r = await tm.measureCommand('sleep', ['5'], { signal: AbortSignal.timeout(300) });
    const elapsed = performance.now() - t0;
    console.log(`sleep 5 aborted after 300 ms: resolved in ${elapsed.toFixed(0)} ms`);
    expect(r.endedBy).toBe('abort');
    expect(r.signal).toBe('SIGTERM');
    expect(r.exitCode).toBeNull();
    // ended by the kill, not by itself: sleep 5 would take 5000 ms
    expect(elapsed).toBeLessThan(5000);
    expect(r.usage.wallTimeMs).toBeLessThan(5000);
    expect(r.usage.cpuSource).toBe('rusage');
  });

  it('a timeout ends the whole tree, background jobs included, with killSignal', async () => {
    const pids = pidsFile('timeout-pids');
    const script = `sleep 60 & echo $! >> ${pids.file}; sleep 61 & echo $! >> ${pids.file}; wait`;
    let started = 0;
    const done = tm.measureCommand('sh', ['-c', script], {
      timeout: 400,
      killSignal: 'SIGKILL',
      onSpawn: (pid) => (started = pid),
    });
    await until(() => pids.read().length === 2, 10_000, 'the background jobs');
    const r = await done;
    expect(r.endedBy).toBe('timeout');
    expect(r.signal).toBe('SIGKILL');
    expect(r.pid).toBe(started);
    // the background sleeps were in the tree: ended too (their new parent reaps them)
    await until(() => pids.read().every((p) => !alive(p)), 10_000, 'the background jobs to end');
  });

  it('killSignal may be a number, and a command that handles it decides its own end', async () => {
    const r = await tm.measureCommand('sh', ['-c', 'trap "exit 7" USR1; sleep 30 & wait'], {
      timeout: 300,
      killSignal: osConstants.signals.SIGUSR1,
    });
    expect(r.endedBy).toBe('timeout');
    expect(r.signal).toBeNull();
    expect(r.exitCode).toBe(7);
  });

  it('a command that ends by itself has endedBy null, and the abort listener is removed', async () => {
    const ac = new AbortController();
    const r = await tm.measureCommand('true', [], { signal: ac.signal, timeout: 60_000 });
    expect(r.endedBy).toBeNull();
    expect(r.exitCode).toBe(0);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    ac.abort(); // nothing left to end: no error, nothing signalled
  });

  it('a command that had already exited when its timeout or abort came is not reported as ended by it', async () => {
    // The JS thread is kept busy until the command has ended and been reaped and the timeout is due: the timer and
    // the result then wait in the event loop together, and the timer may run first.
    const busyUntilGone = (pid: number, atLeastMs: number) => {
      const t0 = performance.now();
      while (alive(pid) || performance.now() - t0 < atLeastMs) {
        if (performance.now() - t0 > 30_000) throw new Error('the command did not end');
      }
    };
    for (const stdio of ['ignore', 'pipe'] as const) {
      const ac = new AbortController();
      let pid = 0;
      const timed = tm.measureCommand('sh', ['-c', 'echo done'], { stdio, timeout: 50, onSpawn: (p) => (pid = p) });
      busyUntilGone(pid, 100);
      const aborted = tm.measureCommand('sh', ['-c', 'echo done'], {
        stdio,
        signal: ac.signal,
        onSpawn: (p) => (pid = p),
      });
      busyUntilGone(pid, 0);
      ac.abort();
      for (const r of [await timed, await aborted]) {
        // before: endedBy 'timeout' / 'abort' with exitCode 0
        expect(r.exitCode, stdio).toBe(0);
        expect(r.signal, stdio).toBeNull();
        expect(r.endedBy, stdio).toBeNull();
        if (stdio === 'pipe') expect(r.stdout!.toString()).toBe('done\n');
      }
    }
  });

  it.runIf(linux)(
    'an abort that comes after the command has exited, before its end is reported, does not end it',
    async () => {
      // Its exec helper is held (SIGSTOP) while the command exits: the command is a zombie nobody has reported yet, and
      // the abort comes then (what a busy machine can do to any abort that follows an exit closely).
      const go = join(work, 'go-abort');
      const ac = new AbortController();
      let pid = 0;
      const done = tm.measureCommand('sh', ['-c', 'while [ ! -e "$0" ]; do sleep 0.02; done', go], {
        stdio: 'ignore',
        signal: ac.signal,
        onSpawn: (p) => (pid = p),
      });
      await until(() => pid > 0, 10_000, 'the command');
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const helper = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      expect(readFileSync(`/proc/${helper}/comm`, 'utf8')).toMatch(/-exec/);
      process.kill(helper, 'SIGSTOP');
      try {
        writeFileSync(go, '');
        await until(() => !alive(pid), 10_000, 'the command to exit');
        ac.abort();
      } finally {
        process.kill(helper, 'SIGCONT');
      }
      const r = await done;
      // before: the zombie took the signal (without effect) and the result said endedBy 'abort'
      expect(r.exitCode).toBe(0);
      expect(r.signal).toBeNull();
      expect(r.endedBy).toBeNull();
    },
  );

  it('a signal aborted before the start rejects with AbortError and starts nothing', async () => {
    const ac = new AbortController();
    const reason = new Error('shutting down');
    ac.abort(reason);
    let spawnedPid = 0;
    const err = await tm
      .measureCommand('sh', ['-c', 'exit 0'], { signal: ac.signal, onSpawn: (p) => (spawnedPid = p) })
      .catch((e) => e);
    expect(err.name).toBe('AbortError');
    expect(err.code).toBe('ABORT_ERR');
    expect(err.cause).toBe(reason);
    expect(spawnedPid).toBe(0);
  });

  it('bad values of signal, timeout, killSignal, maxBuffer and resolveOn are clear errors naming the option', async () => {
    const bad = async (o: object) => tm.measureCommand('true', [], o as tm.MeasureCommandOptions).catch((e) => e);
    expect(await bad({ signal: 'abort' })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' });
    expect((await bad({ signal: {} })).message).toMatch(/"signal" must be an AbortSignal/);
    expect(await bad({ timeout: -1 })).toMatchObject({ code: 'ERR_OUT_OF_RANGE', name: 'RangeError' });
    expect((await bad({ timeout: 1.5 })).message).toMatch(/"timeout"/);
    expect(await bad({ timeout: '100' })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(await bad({ killSignal: 'SIGNOPE' })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(await bad({ killSignal: 999 })).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(await bad({ killSignal: true })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    // a stop signal would be cancelled by the resume that follows it (SIGSTOP: the command stopped for ever)
    for (const stop of ['SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', osConstants.signals.SIGTSTP]) {
      const e = await bad({ killSignal: stop });
      expect(e, String(stop)).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', name: 'RangeError' });
      expect(e.message).toMatch(/"killSignal" must be a signal that ends a process/);
    }
    expect(await bad({ maxBuffer: -1 })).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(await bad({ maxBuffer: Number.NaN })).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(await bad({ maxBuffer: '1' })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(await bad({ resolveOn: 'end' })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
  });
});

describe.runIf(posix)('stdio: descriptors, streams and arrays', () => {
  it("stdio ['ignore', fd, fd] writes the command's stdout and stderr into a file", async () => {
    const file = join(work, 'log.txt');
    const fd = openSync(file, 'w');
    const r = await tm.measureCommand('sh', ['-c', 'echo to-stdout; echo to-stderr >&2'], {
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBeUndefined();
    expect(readFileSync(file, 'utf8')).toBe('to-stdout\nto-stderr\n');
  });

  it('an entry may be a stream with a descriptor (an opened fs.WriteStream), mixed with pipe', async () => {
    const file = join(work, 'stream.txt');
    const ws = createWriteStream(file);
    await once(ws, 'open');
    const r = await tm.measureCommand('sh', ['-c', 'echo logged; echo piped >&2'], { stdio: ['ignore', ws, 'pipe'] });
    ws.end();
    await once(ws, 'close');
    expect(readFileSync(file, 'utf8')).toBe('logged\n');
    expect(r.stdout).toBeUndefined();
    expect(r.stderr!.toString()).toBe('piped\n');
  });

  it('a descriptor is handed over blocking, as libuv hands stdio to a child', async () => {
    // Node's end of a child_process pipe is non-blocking: a program writing 3 MB into it would get EAGAIN
    const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
    let got = 0;
    cat.stdout!.on('data', (d: Buffer) => (got += d.length));
    const fd = (cat.stdin as unknown as { _handle: { fd: number } })._handle.fd;
    const r = await tm.measureCommand('head', ['-c', '3000000', '/dev/zero'], { stdio: ['ignore', { fd }, 'pipe'] });
    cat.stdin!.end();
    await once(cat, 'close');
    expect(r.stderr!.toString()).toBe('');
    expect(r.exitCode).toBe(0);
    expect(got).toBe(3_000_000);
  });

  it('bad stdio values are clear errors: a closed descriptor is EBADF, stdin cannot be a pipe', async () => {
    const bad = async (stdio: unknown) =>
      tm.measureCommand('true', [], { stdio } as tm.MeasureCommandOptions).catch((e) => e);
    const fd = openSync(join(work, 'closed.txt'), 'w');
    closeSync(fd);
    expect(await bad(['ignore', fd, 'inherit'])).toMatchObject({ code: 'EBADF', syscall: 'fstat' });
    expect((await bad(['ignore', fd, 'inherit'])).message).toMatch(/stdio\[1\].*not open/);
    expect(await bad(['pipe', 'pipe', 'pipe'])).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(await bad(['ignore', 'pipe'])).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(await bad(['ignore', -1, 'inherit'])).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(await bad(['ignore', 'pipes', 'inherit'])).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(await bad(['ignore', null, 'inherit'])).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect((await bad(['ignore', { fd: null }, 'inherit'])).message).toMatch(/without a file descriptor/);
    expect(await bad('pipes')).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(await bad(3)).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });
});

describe.runIf(posix)('maxBuffer and when the promise resolves', () => {
  it('output past maxBuffer rejects with ERR_CHILD_PROCESS_STDIO_MAXBUFFER, ends the command, keeps maxBuffer bytes', async () => {
    const err = await tm.measureCommand('yes', [], { stdio: 'pipe', maxBuffer: 100_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect(err.code).toBe('ERR_CHILD_PROCESS_STDIO_MAXBUFFER');
    expect(err.message).toMatch(/stdout passed maxBuffer \(100000 bytes\)/);
    // `yes` never ends by itself: it was ended, and the result says by what
    expect(err.result.endedBy).toBe('maxBuffer');
    expect(err.result.signal).toBe('SIGTERM');
    expect(err.result.stdout.length).toBe(100_000);
    expect(err.result.usage.pid).toBe(err.result.pid);
  });

  it('the default maxBuffer is 1 MiB: output is never buffered without bound', async () => {
    const err = await tm.measureCommand('head', ['-c', '5000000', '/dev/zero'], { stdio: 'pipe' }).catch((e) => e);
    expect(err.code).toBe('ERR_CHILD_PROCESS_STDIO_MAXBUFFER');
    expect(err.result.stdout.length).toBe(1024 * 1024);
    const ok = await tm.measureCommand('head', ['-c', '5000000', '/dev/zero'], {
      stdio: 'pipe',
      maxBuffer: Number.POSITIVE_INFINITY,
    });
    expect(ok.stdout!.length).toBe(5_000_000);
  });

  it("with resolveOn 'exit', a background process holding the pipes does not keep the promise pending", async () => {
    const pids = pidsFile('holder-pids');
    // the background sleep inherits stdout and stderr and holds them for 30 s
    const script = `sleep 30 & echo $! > ${pids.file}; echo done`;
    const r = await tm.measureCommand('sh', ['-c', script], { stdio: 'pipe', resolveOn: 'exit' });
    try {
      expect(r.exitCode).toBe(0);
      expect(r.stdout!.toString()).toBe('done\n');
      expect(r.endedBy).toBeNull();
      expect(alive(pids.read()[0])).toBe(true); // still running: the promise did not wait for it
    } finally {
      for (const p of pids.read()) process.kill(p, 'SIGKILL');
    }
  });

  it('a timeout or an abort also bounds the wait for pipes a background process holds after the command exited', async () => {
    const pids = pidsFile('bounded-pids');
    const script = `sleep 30 & echo $! > ${pids.file}; echo done`;
    const t0 = performance.now();
    const r = await tm.measureCommand('sh', ['-c', script], { stdio: 'pipe', timeout: 400 });
    try {
      // sleep 30 holds the pipes: without the timeout this would wait 30 s
      expect(performance.now() - t0).toBeLessThan(30_000);
      expect(r.exitCode).toBe(0);
      expect(r.stdout!.toString()).toBe('done\n');
      // the command ended by itself: taskmeter ended only its wait, and signalled nothing
      expect(r.endedBy).toBeNull();
      expect(alive(pids.read()[0])).toBe(true);
    } finally {
      for (const p of pids.read()) process.kill(p, 'SIGKILL');
    }
  });

  it("by default ('close') the promise waits until every holder of the pipes has closed them", async () => {
    const pids = pidsFile('close-pids');
    const script = `(sleep 0.5; echo late) & echo $! > ${pids.file}; echo early`;
    const r = await tm.measureCommand('sh', ['-c', script], { stdio: 'pipe' });
    // what the background job wrote after the command exited is there: the promise waited for it
    expect(r.stdout!.toString()).toBe('early\nlate\n');
  });
});

describe.runIf(posix)('signal names', () => {
  it('every signal that ends a process is named as child_process names it (SIGABRT, not SIGIOT; SIGIO, not SIGPOLL)', async () => {
    const signals = osConstants.signals as Record<string, number>;
    // the ones whose default action ends the process (not stop, continue or ignore)
    const skip = new Set(['SIGCHLD', 'SIGCONT', 'SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGURG', 'SIGWINCH']);
    const numbers = [
      ...new Set(
        Object.entries(signals)
          .filter(([n]) => !skip.has(n))
          .map(([, v]) => v),
      ),
    ];
    const aliases = Object.entries(signals).filter(([, v]) => Object.values(signals).filter((w) => w === v).length > 1);
    if (linux) expect(aliases.map(([n]) => n).sort()).toEqual(['SIGABRT', 'SIGIO', 'SIGIOT', 'SIGPOLL']);
    for (const n of numbers) {
      const script = `kill -${n} $$; sleep 1`;
      const ours = await tm.measureCommand('sh', ['-c', script], { stdio: 'ignore' });
      const theirs = spawnSync('sh', ['-c', script], { stdio: 'ignore' });
      expect(ours.signal, `signal ${n}`).toBe(theirs.signal);
    }
  });

  it("a command that aborts: signal === 'SIGABRT'", async () => {
    const r = await tm.measureCommand(process.execPath, ['-e', 'process.abort()'], {
      stdio: 'ignore',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    expect(r.signal).toBe('SIGABRT');
  });
});
