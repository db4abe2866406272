// Loads one built addon file directly and checks that it answers: used by CI for the cmake-js build.
const path = require('node:path');
const file = path.resolve(process.argv[2] || 'build/Release/taskmeter.node');
const addon = require(file);
const snap = new Float64Array(addon.SNAPSHOT_SLOTS);
addon.snapshot(snap);
const win = new Float64Array(addon.WINDOW_SLOTS);
const id = addon.windowOpen(1, snap);
const until = Date.now() + 20;
while (Date.now() < until);
addon.windowClose(id, win, snap);
if (!(snap[4] > 0) || !(win[1] > 0)) {
  console.error(`smoke: ${file} gave rss=${snap[4]} samples=${win[1]}`);
  process.exit(1);
}
console.log(`smoke: ${path.relative(process.cwd(), file)} ok (rss ${snap[4]} bytes, ${win[1]} samples in 20 ms)`);
