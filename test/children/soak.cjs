// Soak: 1e6 snapshots and 1e4 windows; RSS growth and thread counts before and after. Run with --expose-gc.
const { readFileSync } = require('node:fs');
const tm = require('../../dist/index.js');
const SNAPSHOTS = Number(process.argv[2] || 1e6);
const WINDOWS = Number(process.argv[3] || 1e4);
const { native } = require('../../dist/binding.js');

const threads = () => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
// What could leak, after full GCs: memory outside V8's heap (RSS − the heap V8 reserved: native allocations, array
// buffers) and the live JS heap. RSS alone also moves with V8's sizing of its heap — its young generation grows in
// steps of megabytes with the allocation rate, and is no leak.
const mem = () => {
  for (let i = 0; i < 3; i++) global.gc();
  const m = process.memoryUsage();
  return { rss: tm.snapshot().rssBytes, outside: tm.snapshot().rssBytes - m.heapTotal, heapUsed: m.heapUsed };
};

// Warm-up with the same work, so that the JIT, V8's heap layout and malloc's arenas reach their working size
// before the baseline (it plateaus near 2 MB after ~3e4 windows): what grows after it is what leaks.
function windows(n) {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const { usage } = tm.measureSync(() => i, { sampleIntervalMs: 1 + (i % 20) });
    s += usage.samples;
    if (i % 100 === 0) {
      const t = new tm.ResourceTracker({ timeline: true }).start();
      s += t.stop().wallTimeMs > -1 ? 1 : 0;
    }
  }
  return s;
}
for (let i = 0; i < 100000; i++) tm.snapshot();
windows(WINDOWS);
const baseThreads = threads();
const base = mem();
let sink = 0;
for (let i = 0; i < SNAPSHOTS; i++) sink += tm.snapshot().rssBytes & 1;
const afterSnapshots = mem();
sink += windows(WINDOWS);
const afterWindows = mem();
// let the sampler thread park again
setTimeout(() => {
  console.log(
    JSON.stringify({
      baseThreads,
      threadsAfter: threads(),
      openWindows: native.samplerState().openWindows,
      snapshotGrowthBytes: afterSnapshots.outside - base.outside,
      windowGrowthBytes: afterWindows.outside - afterSnapshots.outside,
      totalGrowthBytes: afterWindows.outside - base.outside,
      heapGrowthBytes: afterWindows.heapUsed - base.heapUsed,
      rssGrowthBytes: afterWindows.rss - base.rss,
      sink,
    }),
  );
}, 100);
