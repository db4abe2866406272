// The RSS sampler's cost does not grow with the windows open: windows of one interval share each reading.
import { describe, expect, it } from 'vitest';
import * as tm from '../dist/index.js';
import { lastJson, runScenario } from './helpers';

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

describe('the sampler when memory runs out', () => {
  it('a window that fails to open for want of memory leaves nothing behind: the others sample on, and with none left the thread parks', async () => {
    const r = await runScenario(async ({ require, sleep }) => {
      const { native } = require('../../dist/binding.js');
      const out = new Float64Array(native.WINDOW_SLOTS + 64);
      const a = native.windowOpen(7);
      let code = null;
      for (const interval of [7, 9]) {
        // the failing window shares a's group (7), or is the first of its own (9)
        native.testHook('throwBadAlloc', 1);
        try {
          native.windowOpen(interval);
        } catch (e) {
          code = (e as { code?: string }).code;
        }
      }
      const openAfterFailure = native.samplerState().openWindows;
      sleep(100);
      native.windowRead(a, out);
      const samples = out[native.layouts.WindowSlot.WIN_SAMPLES];
      native.windowClose(a, out);
      const openAfterClose = native.samplerState().openWindows;
      sleep(50);
      const cpu0 = native.samplerState().ownCpuMs;
      sleep(300);
      const cpu1 = native.samplerState().ownCpuMs;
      return { code, openAfterFailure, openAfterClose, samples, idleCpuMs: cpu1 - cpu0 };
    });
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.code).toBe('ERR_TASKMETER_NATIVE');
    expect(out.openAfterFailure).toBe(1);
    expect(out.openAfterClose).toBe(0);
    expect(out.samples).toBeGreaterThan(0); // a's group was not taken down by the failed window
    expect(out.idleCpuMs).toBeLessThan(20); // parked: no window left to schedule (it spun on an infinite deadline)
  });

  it('an RSS reading that cannot be kept for want of memory is dropped: the window still opens and closes', async () => {
    const r = await runScenario(({ tm, require }) => {
      const { native } = require('../../dist/binding.js');
      native.testHook('failThreadStarts', 1000); // no RSS thread: the windows' edges are the only readings
      const t = new tm.ResourceTracker().start();
      native.testHook('throwBadAlloc', 2); // its end reading
      let stopError = null;
      let usage = null;
      try {
        usage = t.stop();
      } catch (e) {
        stopError = (e as { code?: string }).code;
      }
      const openAfterStop = native.samplerState().openWindows;
      native.testHook('throwBadAlloc', 2); // a window's start reading
      let openError = null;
      let id = null;
      try {
        id = native.windowOpen(10, new Float64Array(native.SNAPSHOT_SLOTS));
      } catch (e) {
        openError = (e as { code?: string }).code;
      }
      const closed = id !== null && native.windowClose(id, new Float64Array(native.WINDOW_SLOTS + 64));
      return {
        stopError,
        openAfterStop,
        peak: usage?.peakRssBytes,
        end: usage?.rssEndBytes,
        openError,
        closed,
        openAfterClose: native.samplerState().openWindows,
      };
    });
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.stopError).toBeNull();
    expect(out.openAfterStop).toBe(0); // the native window closed with the tracker
    expect(out.peak).toBeGreaterThanOrEqual(out.end); // the dropped reading only lowers a peak; the endpoints stand
    expect(out.openError).toBeNull();
    expect(out.closed).toBe(true); // its id came back
    expect(out.openAfterClose).toBe(0);
  });
});

describe("a window's sample count", () => {
  it('counts the readings that read RSS, not the ones that failed, also for windows opened while one was taken', async () => {
    const r = await runScenario(({ tm, require, sleep }) => {
      const { native } = require('../../dist/binding.js');
      native.testHook('failRssReads', 1e9); // as when /proc/self/statm cannot be read
      const failing = tm.measureSync(() => sleep(150), { sampleIntervalMs: 5 }).usage;
      // Many windows opened back to back while readings fail, some while a reading is being taken (in flight)
      const during = [];
      const until = Date.now() + 100;
      while (Date.now() < until) during.push(new tm.ResourceTracker({ sampleIntervalMs: 1 }).start());
      native.testHook('failRssReads', 0);
      sleep(100); // readings succeed: every one of them counts for all these windows
      native.testHook('failRssReads', 1e9);
      sleep(20); // the last good reading is in
      const samples = during.map((t) => t.stop().samples);
      return { failing: failing.samples, samples, windows: during.length };
    });
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.failing).toBe(0);
    // the same successful readings fell inside each window: the same count, whether or not a failing reading was in
    // flight when it opened
    expect(out.samples[0]).toBeGreaterThan(0);
    expect(new Set(out.samples)).toEqual(new Set([out.samples[0]]));
  });
});
