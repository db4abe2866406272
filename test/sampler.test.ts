// The RSS sampler's cost does not grow with the windows open: windows of one interval share each reading.
import { describe, expect, it } from 'vitest';
import * as tm from '../dist/index.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the RSS sampler with many windows open', () => {
  it('takes one reading per tick for all windows of an interval, opened at scattered moments', async () => {
    const trackers: tm.ResourceTracker[] = [];
    for (let i = 0; i < 200; i++) {
      trackers.push(new tm.ResourceTracker({ sampleIntervalMs: 10 }).start());
      if (i % 20 === 0) await sleep(1); // scattered over many 10 ms phases
    }
    await sleep(200);
    const usages = trackers.map((t) => t.stop());
    for (const u of usages) {
      // every reading counts for every open window, so a window's samples are the readings taken in its life: at
      // most one per 10 ms tick (a busy machine gives fewer, never more), not one per tick of each window
      expect(u.samples).toBeGreaterThan(0);
      expect(u.samples).toBeLessThanOrEqual(Math.floor(u.wallTimeMs / 10) + 2);
      expect(u.peakRssBytes).toBeGreaterThanOrEqual(Math.max(u.rssStartBytes, u.rssEndBytes));
    }
  });

  it('windows of different intervals share the ticks their intervals have in common', async () => {
    const fast = new tm.ResourceTracker({ sampleIntervalMs: 10 }).start();
    await sleep(3);
    const slow = new tm.ResourceTracker({ sampleIntervalMs: 20 }).start();
    await sleep(300);
    const s = slow.stop();
    const f = fast.stop();
    // the 20 ms group's ticks fall on the 10 ms group's: the readings are the 10 ms ones, no extra phase
    expect(f.samples).toBeLessThanOrEqual(Math.floor(f.wallTimeMs / 10) + 2);
    expect(s.samples).toBeLessThanOrEqual(f.samples);
  });
});
