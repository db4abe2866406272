// Run with --expose-gc. Window 1 allocates, touches and frees 256 MiB (the process HWM rises: 'hwm').
// Window 2 makes a smaller 128 MiB spike that stays below the lifetime HWM (only the sampler can see it: 'sampled').
const { measureSync, snapshot } = require('../../dist/index.js');

const MiB = 1024 * 1024;
function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
function settle(limitBytes) {
  // Freed backing stores may be released a little after gc(): wait (bounded) until RSS is back under the limit.
  for (let i = 0; i < 100; i++) {
    global.gc();
    if (snapshot().rssBytes < limitBytes) return;
    sleep(10);
  }
}
function spike(bytes, holdMs) {
  let buf = Buffer.allocUnsafeSlow(bytes);
  buf.fill(1);
  sleep(holdMs);
  buf = null;
  return null;
}

settle(Infinity);
const base = snapshot().rssBytes;
const w1 = measureSync(
  () => {
    spike(256 * MiB, 5);
    settle(base + 64 * MiB);
  },
  { sampleIntervalMs: 5 },
);
const mid = snapshot().rssBytes;
const w2 = measureSync(
  () => {
    spike(128 * MiB, 120);
    settle(mid + 32 * MiB);
  },
  { sampleIntervalMs: 5 },
);
console.log(JSON.stringify({ w1: w1.usage, w2: w2.usage, lifetimePeak: snapshot().peakRssBytes }));
