// The last environment using taskmeter ends while GPU detection is still running (a slow nvmlInit): a worker that
// loaded taskmeter is terminated at once; then a second worker loads it. Run by test/gpu.test.ts; prints one JSON line.
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');

if (!isMainThread) {
  if (workerData.first) process.env.TASKMETER_GPU_DETECT_TIMEOUT_MS = '0'; // import without waiting for detection
  const tm = require('../../dist/index.js');
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  if (workerData.first) {
    parentPort.postMessage({ ready: true });
  } else {
    const { usage } = tm.measureSync(() => sleep(200), { sampleIntervalMs: 10 });
    parentPort.postMessage({ hasGpu: tm.hasGpu, info: tm.gpuInfo(), gpus: usage.gpus });
  }
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
