// Soak and concurrency: many snapshots and windows in one process (bounded, a few seconds), then RSS growth and
// thread counts; 100 concurrent windows, some nested.
import { describe, expect, it } from 'vitest';
import { lastJson, runChild } from './helpers';

describe('soak', () => {
  it("1e6 snapshots and 1e4 windows: memory outside V8's heap and the live heap grow < 2 MB each, threads back to baseline", async () => {
    const r = await runChild('soak.cjs', ['1000000', '10000'], { nodeArgs: ['--expose-gc'], timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const s = lastJson(r.stdout);
    // not RSS: V8 grows its young generation in megabyte steps with the allocation rate (a flake at 2.04 MB)
    expect(s.totalGrowthBytes).toBeLessThan(2 * 1024 * 1024);
    expect(s.heapGrowthBytes).toBeLessThan(2 * 1024 * 1024);
    expect(s.threadsAfter).toBe(s.baseThreads);
    expect(s.openWindows).toBe(0);
  }, 180_000);

  it('100 concurrent async windows, some nested, give consistent results', async () => {
    const r = await runChild('concurrent.cjs', [], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const { results, openWindows } = lastJson(r.stdout);
    expect(results).toHaveLength(100);
    expect(openWindows).toBe(0);
    for (const { delay, usage, inner } of results) {
      expect(usage.wallTimeMs).toBeGreaterThanOrEqual(delay * 0.75 - 2);
      expect(usage.cpuTimeMs).toBeGreaterThanOrEqual(0);
      expect(usage.peakRssBytes).toBeGreaterThanOrEqual(Math.max(usage.rssStartBytes, usage.rssEndBytes));
      if (inner) {
        expect(inner.wallTimeMs).toBeLessThanOrEqual(usage.wallTimeMs);
        expect(inner.startedAt).toBeGreaterThanOrEqual(usage.startedAt);
        expect(inner.endedAt).toBeLessThanOrEqual(usage.endedAt + 0.001);
        expect(inner.cpuTimeMs).toBeGreaterThanOrEqual(1.5); // its 2 ms burst
        expect(inner.cpuTimeMs).toBeLessThanOrEqual(usage.cpuTimeMs + 0.001);
      }
    }
  });
});
