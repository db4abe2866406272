// GPU threads that outlive the environment that started them, in one process whose main thread never loads
// taskmeter (run by test/gpu-lifecycle.test.ts; prints one JSON line). FAKE_NVML_LOG names the fake NVML's call log,
// FAKE_NVML_SCENARIO its scenario file; SHUTDOWN_DELAY_MS is how long nvmlShutdown sleeps once it is turned on.
// - "waiter": worker 1 is terminated while detection runs (thread A left to finish it); A finds itself unwanted and
//   sits in a slow nvmlShutdown; worker 2 loads taskmeter (thread B, which must wait for A) and is terminated; worker
//   3 loads it while A is still in nvmlShutdown and measures.
// - "release-shutdown": worker 1 detects the GPU and measures; nvmlShutdown turns slow; worker 1 is terminated (its
//   GPU thread ends in nvmlShutdown); worker 2 loads taskmeter at once and measures.
// - "throw-redetect": worker 1's GPU thread ends on an exception; worker 2 loads taskmeter with no NVML library to
//   load (TASKMETER_NVML_LIBRARY pointing nowhere).
const fs = require('node:fs');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

if (!isMainThread) {
  // 'load': import without waiting for detection; 'window': and open a window; 'measure': wait for detection and
  // measure a window holding GPU readings; 'throw': measure, then make the GPU thread throw.
  const { mode } = workerData;
  if (mode === 'load' || mode === 'window') process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS = '0';
  else process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS = '30000';
  const tm = require('../../dist/index.js');
  const { native } = require('../../dist/binding.js');
  const measure = () => {
    const t = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    const t0 = Date.now();
    while (tm.hasGpu && t.usage.gpuSamples < 3 && Date.now() - t0 < 10_000) sleep(10);
    return t.stop();
  };
  if (mode === 'load') {
    parentPort.postMessage({ ready: true });
  } else if (mode === 'window') {
    tm.measureSync(() => sleep(20), { sampleIntervalMs: 1 }); // the RSS thread runs too
    parentPort.postMessage({ ready: true });
  } else if (mode === 'measure') {
    const usage = measure();
    parentPort.postMessage({ info: tm.gpuInfo(), gpus: usage.gpus, gpuSamples: usage.gpuSamples });
  } else if (mode === 'throw') {
    const post = () => {
      measure();
      native.testHook('throwInThreads', 2);
      const t0 = Date.now();
      // native.gpuInfo(): tm.gpuInfo() keeps what it read once detection finished
      while (native.gpuInfo().reasonCode !== 'GPU_THREAD_FAILED' && Date.now() - t0 < 10_000) sleep(10);
      parentPort.postMessage({ info: native.gpuInfo() });
    };
    // a spawn pins the addon (it stays loaded after this worker ends): the next worker's detection runs in the same
    // process-wide sampler, with whatever NVML state this one left
    tm.measureCommand('true', [], { stdio: 'ignore' }).then(post, post);
  }
} else {
  const log = process.env.FAKE_NVML_LOG;
  const scenario = process.env.FAKE_NVML_SCENARIO;
  const base = fs.readFileSync(scenario, 'utf8');
  const write = (text) => {
    fs.writeFileSync(`${scenario}.tmp`, text);
    fs.renameSync(`${scenario}.tmp`, scenario);
  };
  const calls = (fn) => {
    let text = '';
    try {
      text = fs.readFileSync(log, 'utf8');
    } catch {}
    return text.split('\n').filter((l) => l.endsWith(` ${fn}`)).length;
  };
  const waitUntil = async (pred, maxMs = 20_000) => {
    const t0 = Date.now();
    while (!pred()) {
      if (Date.now() - t0 > maxMs) throw new Error('timed out waiting');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const start = (mode) =>
    new Promise((res, rej) => {
      const w = new Worker(__filename, { workerData: { mode } });
      w.once('message', (m) => res({ w, m }));
      w.once('error', rej);
    });
  const terminate = async (w) => {
    const t0 = performance.now();
    await w.terminate();
    return performance.now() - t0;
  };
  const shutdownSlow = () => write(`${base}\ndelay.nvmlShutdown=${process.env.SHUTDOWN_DELAY_MS}\n`);
  const which = process.argv[2];
  (async () => {
    const out = { which };
    if (which === 'waiter') {
      shutdownSlow();
      const a = await start('load');
      out.terminate1Ms = await terminate(a.w); // detection (nvmlInit sleeping) is still running
      await waitUntil(() => calls('nvmlShutdown') >= 1); // A detected, found itself unwanted, is in nvmlShutdown
      const b = await start(process.argv[3] === 'window' ? 'window' : 'load');
      out.terminate2Ms = await terminate(b.w);
      out.shutdownsBefore3 = calls('nvmlShutdown'); // logged as it starts: A is still in it (SHUTDOWN_DELAY_MS)
      const c = await start('measure');
      out.third = c.m;
      await c.w.terminate();
    } else if (which === 'release-shutdown') {
      const a = await start('measure');
      out.first = a.m;
      shutdownSlow();
      out.terminate1Ms = await terminate(a.w);
      const b = await start('measure');
      out.second = b.m;
      await b.w.terminate();
    } else if (which === 'throw-redetect') {
      const a = await start('throw');
      out.first = a.m;
      await a.w.terminate();
      // its failure shut NVML down (the call is logged as it starts)
      await waitUntil(() => calls('nvmlShutdown') >= 1, 3000).catch(() => {});
      out.shutdownsAfterFailure = calls('nvmlShutdown');
      process.env.TASKMETER_NVML_LIBRARY = '/nonexistent/libnvidia-ml.so.1';
      const b = await start('measure');
      out.second = b.m;
      await b.w.terminate();
    }
    out.inits = calls('nvmlInit_v2');
    out.shutdowns = calls('nvmlShutdown');
    console.log(JSON.stringify(out));
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
