// Lifecycle cases, each run in its own process by test/lifecycle.test.ts.
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const tm = require('../../dist/index.js');
const { native } = require('../../dist/binding.js');
const which = isMainThread ? process.argv[2] : workerData.which;

if (!isMainThread) {
  // A worker: opens windows (one never closed), keeps measuring until terminated.
  const t = new tm.ResourceTracker({ sampleIntervalMs: 1, timeline: true }).start();
  void t;
  parentPort.postMessage({ ready: true, gpus: tm.snapshot().gpus.length });
  if (workerData.which === 'workers-finish') {
    const { usage } = tm.measureSync(() => {
      let x = 0;
      for (let i = 0; i < 1e6; i++) x += i;
      return x;
    });
    parentPort.postMessage({ done: true, wall: usage.wallTimeMs });
  } else {
    setInterval(() => tm.measureSync(() => 0), 1);
  }
} else if (which === 'workers-terminate') {
  // 8 workers at once with open windows, terminated mid-window; then the main thread still measures.
  const workers = Array.from({ length: 8 }, () => new Worker(__filename, { workerData: { which } }));
  let ready = 0;
  for (const w of workers) {
    w.on('message', async (m) => {
      if (m.ready && ++ready === workers.length) {
        await new Promise((r) => setTimeout(r, 100));
        const codes = await Promise.all(workers.map((x) => x.terminate()));
        const state = native.samplerState();
        const { usage } = tm.measureSync(() => 1, { sampleIntervalMs: 1 });
        console.log(JSON.stringify({ codes, openWindowsAfter: state.openWindows, mainWorks: usage.wallTimeMs >= 0 }));
      }
    });
    w.on('error', (e) => {
      console.error(e);
      process.exit(1);
    });
  }
} else if (which === 'workers-finish') {
  // workers that end by themselves with an open window: environment teardown closes it
  const workers = Array.from({ length: 8 }, () => new Worker(__filename, { workerData: { which } }));
  let exited = 0;
  for (const w of workers) {
    w.on('exit', () => {
      if (++exited === workers.length) {
        console.log(JSON.stringify({ openWindowsAfter: native.samplerState().openWindows }));
      }
    });
  }
  // these workers have no timer: each ends when its script ends, with its tracker's window still open
} else if (which === 'exit-sampler-running') {
  const t = new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
  void t;
  setTimeout(() => process.exit(0), 30);
} else if (which === 'sigterm-window') {
  new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
  void tm.measure(() => new Promise(() => {}));
  process.on('SIGTERM', () => {
    console.log('got SIGTERM');
    process.exit(0);
  });
  console.log('ready');
  setInterval(() => {}, 1000);
} else if (which === 'sigterm-default') {
  new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
  console.log('ready');
  setInterval(() => {}, 1000);
} else if (which === 'natural-end') {
  // the event loop drains with a window open: environment teardown joins the sampler
  const t = new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
  globalThis.keep = t;
  setTimeout(() => console.log(JSON.stringify({ threadRunning: native.samplerState().threadRunning })), 20);
} else if (which === 'thread-start-fails') {
  // std::thread throws std::system_error (EAGAIN) under a pids limit; the test hook makes the next start do so.
  native.testHook('failThreadStarts', 1);
  let first;
  let error = null;
  try {
    first = tm.measureSync(
      () => {
        const end = Date.now() + 20;
        while (Date.now() < end);
        return 1;
      },
      { sampleIntervalMs: 1 },
    ).usage;
  } catch (e) {
    error = String(e);
  }
  const stateAfterFailure = native.samplerState();
  // the next window starts the thread
  const t = new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
  setTimeout(() => {
    const second = t.stop();
    console.log(
      JSON.stringify({
        error,
        firstSamples: first?.samples,
        firstWall: first?.wallTimeMs,
        stateAfterFailure,
        threadRunning: native.samplerState().threadRunning,
        secondSamples: second.samples,
      }),
    );
  }, 50);
} else if (which === 'thread-throws') {
  // std::bad_alloc inside the RSS and GPU threads: reported, never std::terminate
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  tm.measureSync(() => sleep(20), { sampleIntervalMs: 1 }); // both threads running
  native.testHook('throwInThreads', 3);
  const { usage } = tm.measureSync(() => sleep(100), { sampleIntervalMs: 1 });
  sleep(100);
  console.log(JSON.stringify({ wall: usage.wallTimeMs, state: native.samplerState(), gpu: native.gpuInfo() }));
} else if (which === 'ids') {
  // Window ids: past 2^32 (where 32-bit ids wrapped onto open windows) and at the 2^53 wrap, never an open window's.
  const out = new Float64Array(native.WINDOW_SLOTS);
  const a = native.windowOpen(1); // a low id, kept open
  native.testHook('nextWindowId', 2 ** 32 - 1);
  const b = native.windowOpen(1);
  const c = native.windowOpen(1);
  native.testHook('nextWindowId', 2 ** 53 - 1);
  const d = native.windowOpen(1);
  native.testHook('nextWindowId', a); // the counter lands on an open window's id
  const e = native.windowOpen(1);
  const ids = [a, b, c, d, e];
  const closed = ids.map((id) => native.windowClose(id, out));
  const closedTwice = native.windowClose(a, out);
  console.log(JSON.stringify({ ids, closed, closedTwice, open: native.samplerState().openWindows }));
} else if (which === 'sampler-cpu') {
  // An idle window: the sampler thread works at 1 ms all along, but none of its CPU is the task's.
  const ms = Number(process.argv[3] || 1000);
  tm.measure(() => new Promise((r) => setTimeout(r, ms)), { sampleIntervalMs: 1 }).then(({ usage }) => {
    console.log(
      JSON.stringify({
        cpuTimeMs: usage.cpuTimeMs,
        samplerCpuMs: usage.samplerCpuMs,
        samples: usage.samples,
        threadCpuMs: usage.threadCpuMs,
        ownCpuMs: native.samplerState().ownCpuMs,
      }),
    );
  });
} else if (which === 'gpu-thread-start-fails') {
  // Loaded with the GPU off; then the GPU is allowed, the next thread start fails (as under a pids limit), and a
  // worker's load tries to start the GPU thread: its gpuInfo() says why there is no GPU, and it still measures.
  delete process.env.TASKMETER_DISABLE_GPU;
  native.testHook('failThreadStarts', 1);
  const src = `
    const { parentPort } = require('node:worker_threads');
    const tm = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
    const info = tm.gpuInfo();
    const { usage } = tm.measureSync(() => 1);
    parentPort.postMessage({ available: info.available, reason: info.reason, reasonCode: info.reasonCode, wall: usage.wallTimeMs });`;
  const w = new Worker(src, { eval: true });
  w.on('message', (m) => console.log(JSON.stringify(m)));
  w.on('error', (e) => {
    console.error(e);
    process.exit(1);
  });
}
