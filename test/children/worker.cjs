// Loads the addon in the main thread and in worker threads at once (a context-aware addon loads more than once).
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const tm = require('../../dist/index.js');
if (isMainThread) {
  const n = Number(process.argv[2] || 2);
  let done = 0;
  const results = [];
  const main = tm.measureSync(() => {
    for (let i = 0; i < n; i++) {
      const w = new Worker(__filename, { workerData: { i } });
      w.on('message', (m) => {
        results.push(m);
        if (++done === n) console.log(JSON.stringify({ results, mainSnapshot: tm.snapshot() }));
      });
      w.on('error', (e) => {
        console.error(e);
        process.exit(1);
      });
    }
    return 0;
  });
  void main;
} else {
  const { usage } = tm.measureSync(() => {
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += i;
    return x;
  });
  parentPort.postMessage({
    i: workerData.i,
    rss: tm.snapshot().rssBytes,
    wall: usage.wallTimeMs,
    cpu: usage.cpuTimeMs,
  });
}
