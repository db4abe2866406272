// Worker churn: `concurrency` worker_threads created and ended continuously for `durationMs`, each loading
// taskmeter and measuring once. Used by test/lifecycle.test.ts (worker churn), by `npm run test:tsan` and by hand:
//   node test/children/churn.cjs '{"durationMs":10000}'
// Options (JSON argument): durationMs, concurrency (12), mainLoads (the main thread loads taskmeter too),
// mainWindows (windows the main thread keeps open during the churn), workerWindowMs (each worker measures an
// async wait this long, longer until a GPU reading fell inside its window), gpu (the workers check their GPU values),
// spawn (the main thread meanwhile runs commands with measureCommand and follows a process tree with trackProcess).
// Prints one JSON line: runs, failures, thread/fd counts before and after, and what the main thread measured.
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { readdirSync } = require('node:fs');
const { join } = require('node:path');

const dist = join(__dirname, '../../dist/index.js');

if (!isMainThread) {
  const tm = require(dist);
  const o = workerData;
  const report = (usage) => {
    const gpuNull = usage.gpus.length === 0 || usage.gpus.some((g) => g.memoryUsedPeakBytes === null);
    parentPort.postMessage({ ok: true, gpuNull, gpus: usage.gpus.length, samples: usage.samples });
  };
  if (o.workerWindowMs > 0) {
    // A window's GPU figures come only from readings inside it: on a loaded machine a 60 ms window may hold none
    // (null, GPU_NOT_SAMPLED). So the window stays open until one came (at most 5 s): a null then means the
    // readings were lost.
    const t = new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
    const started = Date.now();
    const wait = () => {
      if (Date.now() - started >= o.workerWindowMs && (t.usage.gpuSamples > 0 || Date.now() - started > 5000))
        report(t.stop());
      else setTimeout(wait, 10);
    };
    setTimeout(wait, o.workerWindowMs);
  } else {
    const { usage } = tm.measureSync(() => {
      let x = 0;
      for (let i = 0; i < 1e4; i++) x += i;
      return x;
    });
    report(usage);
  }
} else {
  const o = {
    durationMs: 3000,
    concurrency: 12,
    mainLoads: false,
    mainWindows: 0,
    workerWindowMs: 0,
    gpu: false,
    ...JSON.parse(process.argv[2] || '{}'),
  };
  const count = (dir) => readdirSync(dir).length;
  let tm = null;
  const mainTrackers = [];
  if (o.mainLoads || o.mainWindows > 0 || o.spawn) {
    tm = require(dist);
    for (let i = 0; i < o.mainWindows; i++) mainTrackers.push(new tm.ResourceTracker({ sampleIntervalMs: 1 }).start());
  }
  const settle = () => new Promise((r) => setTimeout(r, 300));
  // Baseline after one worker came and went: the worker machinery's own lazily created threads exist by then.
  const oneWorker = () =>
    new Promise((resolve) => {
      const w = new Worker(__filename, { workerData: o });
      let msg = null;
      w.on('message', (m) => (msg = m));
      w.on('error', (e) => (msg = { ok: false, error: String(e?.stack) }));
      w.on('exit', () => resolve(msg ?? { ok: false, error: 'worker ended without a result' }));
    });
  (async () => {
    await oneWorker();
    await settle();
    const before = { threads: count('/proc/self/task'), fds: count('/proc/self/fd') };
    const deadline = Date.now() + o.durationMs;
    let runs = 0;
    let gpuNull = 0;
    const failures = [];
    const lane = async () => {
      while (Date.now() < deadline) {
        const m = await oneWorker();
        runs++;
        if (!m.ok) failures.push(m.error);
        else if (o.gpu && m.gpuNull) gpuNull++;
      }
    };
    // Spawn + tree sampling on the main thread while the workers churn: commands that fork, and a tracked tree.
    const commands = [];
    const spawnLane = async () => {
      const { spawn } = require('node:child_process');
      const script = 'for i in 1 2 3; do (x=0; while [ $x -lt 300 ]; do x=$((x+1)); done) & done; wait';
      // The commands are not ours to check: under npm run test:tsan they run without the TSan runtime (a shell that
      // forks with it preloaded crashes), while this process and its workers keep it.
      const env = { ...process.env };
      delete env.LD_PRELOAD;
      while (Date.now() < deadline) {
        const r = await tm.measureCommand('/bin/sh', ['-c', script], { stdio: 'ignore', sampleIntervalMs: 2, env });
        // The child waits on its stdin until the tracker has seen it (a fixed sleep was too short on a loaded
        // machine: a tree that ends before the first sample is rightly reported as never seen).
        const child = spawn('/bin/sh', ['-c', `read x; ${script}`], { stdio: ['pipe', 'ignore', 'ignore'], env });
        const tracker = tm.trackProcess(child.pid, { sampleIntervalMs: 1 });
        for (let waited = 0; tracker.usage.processes < 1 && waited < 10_000; waited += 5) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        child.stdin.end('go\n');
        const tracked = await tracker.exited;
        commands.push({
          exitCode: r.exitCode,
          signal: r.signal,
          cpu: r.usage.cpuTimeMs,
          trackedProcesses: tracked.processes,
          trackedReason: tracked.cpuReason,
        });
      }
    };
    await Promise.all([...Array.from({ length: o.concurrency }, lane), ...(o.spawn ? [spawnLane()] : [])]);
    const main = mainTrackers.map((t) => t.stop());
    await settle();
    const after = { threads: count('/proc/self/task'), fds: count('/proc/self/fd') };
    const mainGpuNull = main.filter(
      (u) => u.gpus.length === 0 || u.gpus.some((g) => g.memoryUsedPeakBytes === null),
    ).length;
    const state = tm ? require('../../dist/binding.js').native.samplerState() : null;
    console.log(
      JSON.stringify({
        runs,
        failures: failures.slice(0, 5),
        failureCount: failures.length,
        gpuNull,
        before,
        after,
        mainWindows: main.length,
        mainSamples: main.map((u) => u.samples),
        mainGpuNull,
        openWindowsAfter: state ? state.openWindows : null,
        commands: commands.length,
        commandsFailed: commands.filter((c) => c.exitCode !== 0 || !(c.trackedProcesses >= 1)).length,
        commandFailures: commands.filter((c) => c.exitCode !== 0 || !(c.trackedProcesses >= 1)).slice(0, 3),
      }),
    );
  })();
}
