// Workers that use taskmeter while the main thread never loads it: when the worker is terminated, Node unloads the
// addon. Run by test/lifecycle.test.ts; prints one JSON line and exits 0 unless the process crashes.
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');

if (!isMainThread) {
  const tm = require('../../dist/index.js');
  const { native } = require('../../dist/binding.js');
  if (workerData.which === 'spawn') {
    // a waiter thread is left waiting for `sleep` after the worker (and the addon) are gone
    void tm.measureCommand('sleep', ['1'], { stdio: 'ignore' }).catch(() => {});
    parentPort.postMessage({ ready: true });
  } else if (workerData.which === 'sampler-state') {
    parentPort.postMessage({ ready: true });
    for (;;) native.samplerState();
  } else if (workerData.which === 'window-close') {
    parentPort.postMessage({ ready: true });
    for (;;) native.windowClose(1);
  }
} else {
  const which = process.argv[2];
  const rounds = Number(process.argv[3] || 1);
  const waitMs = Number(process.argv[4] || 0);
  (async () => {
    const codes = [];
    for (let i = 0; i < rounds; i++) {
      const w = new Worker(__filename, { workerData: { which } });
      await new Promise((res, rej) => {
        w.on('message', (m) => m.ready && res());
        w.on('error', rej);
      });
      await new Promise((r) => setTimeout(r, 5));
      codes.push(await w.terminate());
    }
    // long enough for a `sleep 1` spawned by a terminated worker to end and its waiter to return
    await new Promise((r) => setTimeout(r, waitMs));
    console.log(JSON.stringify({ codes }));
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
