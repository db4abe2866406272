// measureCommand's plumbing, each mode in a fresh process: node spawn-child.cjs MODE
const { readFileSync, existsSync, readdirSync } = require('node:fs');
const { Worker, isMainThread, parentPort } = require('node:worker_threads');
const tm = require('../../dist/index.js');
const { native } = require('../../dist/binding.js');

// Context switches of the JS thread (its tid is the pid): every wakeup of the event loop is one.
function jsThreadSwitches() {
  const s = readFileSync(`/proc/self/task/${process.pid}/status`, 'utf8');
  const v = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)[1]);
  const n = Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)[1]);
  return v + n;
}
const isZombieOrGone = (pid) => {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};
const processesWith = (needle) =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle);
      } catch {
        return false;
      }
    });

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

if (!isMainThread) {
  tm.measureCommand('sleep', ['0.4'], { onSpawn: (pid) => parentPort.postMessage({ pid }) }).then(() =>
    parentPort.postMessage({ done: true }),
  );
} else {
  const mode = process.argv[2];
  if (mode === 'wakeups') {
    let before = 0;
    tm.measureCommand('sleep', ['1'], { onSpawn: () => (before = jsThreadSwitches()) }).then((r) => {
      out({ switches: jsThreadSwitches() - before, exitCode: r.exitCode, wallTimeMs: r.usage.wallTimeMs });
    });
  } else if (mode === 'alive') {
    const t0 = performance.now();
    // nothing but the running command keeps this process alive
    tm.measureCommand('sleep', ['0.3']).then((r) => out({ exitCode: r.exitCode, atMs: performance.now() - t0 }));
    process.on('exit', () => out({ exitAtMs: performance.now() - t0 }));
  } else if (mode === 'worker-ends') {
    // A worker starts a command and is terminated while it runs: the command is still reaped, nothing is left.
    const w = new Worker(__filename);
    w.once('message', async ({ pid }) => {
      const pending = native.spawnPending();
      const alive = !isZombieOrGone(pid);
      await w.terminate();
      setTimeout(() => {
        out({
          pendingWhileRunning: pending,
          aliveWhenTerminated: alive,
          pendingAfter: native.spawnPending(),
          reaped: isZombieOrGone(pid) && !existsSync(`/proc/${pid}`),
        });
      }, 800);
    });
  } else if (mode === 'thread-fails') {
    tm.measureCommand('sleep', ['31.4159'], { stdio: 'ignore', onSpawn: (pid) => out({ spawned: pid }) }).then(
      () => out({ resolved: true }),
      (e) => {
        setTimeout(
          () =>
            out({
              code: e.code,
              syscall: e.syscall,
              message: e.message,
              left: processesWith('31.4159'),
              pending: native.spawnPending(),
            }),
          100,
        );
      },
    );
  } else if (mode === 'registry-fails') {
    tm.measureCommand('sleep', ['27.1828'], { stdio: 'ignore', onSpawn: (pid) => out({ spawned: pid }) }).then(
      () => out({ resolved: true }),
      (e) =>
        setTimeout(() => out({ code: e.code, left: processesWith('27.1828'), pending: native.spawnPending() }), 100),
    );
  } else if (mode === 'kill-tree-alloc') {
    // with TASKMETER_TEST_FAIL_KILL_TREE_ALLOC=2: killTree's allocation for the second process it finds fails
    const stateOf = (pid) => {
      try {
        const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return s[s.lastIndexOf(')') + 2];
      } catch {
        return 'gone';
      }
    };
    const kids = (pid) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    let root = 0;
    const done = tm.measureCommand('sh', ['-c', 'sleep 43.1 & sleep 43.2 & wait'], {
      stdio: 'ignore',
      onSpawn: (pid) => {
        root = pid;
      },
    });
    const poll = () => {
      if (kids(root).length < 2) return setTimeout(poll, 10);
      const members = [root, ...kids(root).map(Number)];
      const signalled = native.killTree(root, require('node:os').constants.signals.SIGTERM);
      setTimeout(() => {
        const states = members.map(stateOf);
        for (const pid of members.slice(1)) process.kill(pid, 'SIGKILL');
        done.then((r) => out({ signalled, states, signal: r.signal }));
      }, 300);
    };
    poll();
  } else if (mode === 'no-path') {
    tm.measureCommand('ls', ['/'], { env: { HOME: '/tmp' }, stdio: 'pipe' }).then(
      (r) => out({ exitCode: r.exitCode, lines: r.stdout.toString().split('\n').length }),
      (e) => out({ error: e.message }),
    );
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}
