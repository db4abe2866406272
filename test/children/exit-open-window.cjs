// process.exit() while a tracker window is open and the sampler thread is running.
const { ResourceTracker, measure } = require('../../dist/index.js');
const t = new ResourceTracker({ sampleIntervalMs: 1 }).start();
void measure(() => new Promise(() => {}), { sampleIntervalMs: 2 }); // a window that never ends
setTimeout(() => {
  if (!t.running) process.exit(3);
  process.exit(0);
}, 50);
