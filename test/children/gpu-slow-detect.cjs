// Detections in one process, each started by a worker while the main thread never loads taskmeter (run by
// test/gpu.test.ts; prints one JSON line):
// - (default) the last environment ends while GPU detection is still running (a slow nvmlInit): a worker that loaded
//   taskmeter is terminated at once; then a second worker loads it.
// - "redetect": a first worker detects the fake GPU and ends; a second one, with no NVML library to load, detects
//   again: nothing of the first detection may survive into the second's gpuInfo().
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');

if (!isMainThread) {
  if (workerData.first) process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS = '0'; // import without waiting for detection
  const tm = require('../../dist/index.js');
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  if (workerData.first) {
    parentPort.postMessage({ ready: true });
  } else {
    const report = () => {
      const { usage } = tm.measureSync(() => sleep(200), { sampleIntervalMs: 10 });
      parentPort.postMessage({ hasGpu: tm.hasGpu, info: tm.gpuInfo(), gpus: usage.gpus });
    };
    // a spawn pins the addon: it stays loaded when this worker ends, so the next worker's detection runs in the
    // same (process-wide) sampler
    if (workerData.pin) tm.measureCommand('true', [], { stdio: 'ignore' }).then(report, report);
    else report();
  }
} else if (process.argv[2] === 'redetect') {
  (async () => {
    const infos = [];
    for (const lib of [process.env.TASKMETER_NVML_LIBRARY, '/nonexistent/libnvidia-ml.so.1']) {
      process.env.TASKMETER_NVML_LIBRARY = lib;
      const w = new Worker(__filename, { workerData: { first: false, pin: true } });
      const out = await new Promise((res, rej) => {
        w.on('message', res);
        w.on('error', rej);
      });
      await w.terminate();
      infos.push(out.info);
    }
    console.log(JSON.stringify({ infos }));
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  (async () => {
    const a = new Worker(__filename, { workerData: { first: true } });
    await new Promise((res) => a.on('message', res));
    await a.terminate(); // detection (nvmlInit sleeping) is still running
    const b = new Worker(__filename, { workerData: { first: false } });
    const out = await new Promise((res, rej) => {
      b.on('message', res);
      b.on('error', rej);
    });
    await b.terminate();
    console.log(JSON.stringify(out));
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
