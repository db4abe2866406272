// The rest of GNU time -v (page faults, context switches, file-system blocks) and the I/O bytes, for commands and
// in-process windows alike. GNU time's own figures for the same command are compared in test/conformance.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { distEntry, lastJson, python3Path, run } from './helpers';
import * as tm from '../dist/index.js';

const linux = process.platform === 'linux';
const posix = process.platform !== 'win32';
const work = mkdtempSync(join(tmpdir(), 'taskmeter-counters-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const FIVE_MB = 5_000_000;

/** measureCommand in a fresh node process (TASKMETER_EXEC_HELPER is read once per process). */
async function commandIn(env: NodeJS.ProcessEnv, script: string): Promise<tm.ProcessUsage> {
  const code = `require(${JSON.stringify(distEntry)}).measureCommand('sh', ['-c', ${JSON.stringify(script)}])
    .then((r) => console.log(JSON.stringify(r.usage)))`;
  const r = await run(process.execPath, ['-e', code], { env: { ...process.env, ...env }, timeoutMs: 30_000 });
  expect(r.code, r.stderr).toBe(0);
  return lastJson(r.stdout);
}

describe.runIf(linux)("a command's I/O bytes", () => {
  // The claim the exec helper relies on: /proc/<pid>/io of a process that has ended but is not yet reaped includes
  // every child it reaped (the kernel adds a reaped child's counters to its parent's), and not a child it left.
  for (const [how, env] of [
    ['through the exec helper', {}],
    ['forked from Node directly (no helper)', { TASKMETER_EXEC_HELPER: '0' }],
  ] as const) {
    it(`include every descendant it reaped, and none it left running (${how})`, async () => {
      const reaped = await commandIn(env, `head -c ${FIVE_MB} /dev/zero > /dev/null`);
      // head read and wrote 5,000,000 bytes; sh only reads its few bytes of libraries and so on
      expect(reaped.ioWriteBytes).toBeGreaterThanOrEqual(FIVE_MB);
      expect(reaped.ioWriteBytes).toBeLessThan(FIVE_MB + 65536);
      expect(reaped.ioReadBytes).toBeGreaterThanOrEqual(FIVE_MB);
      // ( … & ): the subshell leaves head to run on its own and exits; nobody in the command reaps head
      const left = await commandIn(env, `(head -c ${FIVE_MB} /dev/zero > /dev/null &)`);
      expect(left.ioWriteBytes).toBeLessThan(65536);
      expect(left.ioReadBytes).not.toBeNull();
    });
  }
});

describe.runIf(posix)("a command's rusage counters", () => {
  it('come from its wait4, with every descendant it reaped: 64 MiB touched is ≥ 16,384 minor faults', async () => {
    const r = await tm.measureCommand(
      python3Path(),
      ['-c', 'import time\nb = bytearray(64 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(0.1)'],
      { stdio: 'ignore' },
    );
    expect(r.exitCode).toBe(0);
    const u = r.usage;
    // bytearray(n) is calloc: the pages are touched by the loop, one fault each (THP is off or madvise here)
    expect(u.minorPageFaults).toBeGreaterThanOrEqual(16384);
    for (const k of [
      'majorPageFaults',
      'voluntaryContextSwitches',
      'involuntaryContextSwitches',
      'fsInputBlocks',
      'fsOutputBlocks',
    ] as const) {
      expect(Number.isInteger(u[k]), k).toBe(true);
      expect(u[k]!, k).toBeGreaterThanOrEqual(0);
    }
    // the sleep is a wait
    expect(u.voluntaryContextSwitches).toBeGreaterThanOrEqual(1);
  });
});

describe.runIf(posix)("an in-process window's counters", () => {
  it('are getrusage deltas of the process: a window that touches 32 MiB has the minor faults', () => {
    const { usage } = tm.measureSync(() => {
      const b = Buffer.alloc(32 << 20);
      for (let i = 0; i < b.length; i += 4096) b[i] = 1;
      return b.length;
    });
    expect(usage.minorPageFaults).toBeGreaterThan(0);
    expect(usage.majorPageFaults).not.toBeNull();
    expect(usage.fsInputBlocks).not.toBeNull();
  });

  it.runIf(linux)(
    "leave out the wake-ups of taskmeter's own sampler thread (one voluntary switch per sample)",
    async () => {
      const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 300)), { sampleIntervalMs: 1 });
      // the sampler woke once per sample, a voluntary context switch each; the JS thread slept once
      expect(usage.samples).toBeGreaterThan(20);
      expect(usage.voluntaryContextSwitches).not.toBeNull();
      expect(usage.voluntaryContextSwitches!).toBeLessThan(usage.samples / 2);
    },
  );

  it.runIf(linux)(
    "a tracker's live usage leaves out the sampler threads' counters as its end does (peek never above stop)",
    async () => {
      // the sampler has run a while before the window opens: its lifetime wake-ups are many
      await tm.measure(() => new Promise((r) => setTimeout(r, 200)), { sampleIntervalMs: 1 });
      const t = new tm.ResourceTracker({ sampleIntervalMs: 1 }).start();
      await new Promise((r) => setTimeout(r, 200));
      const live = t.usage!;
      const end = t.stop();
      expect(end.samples).toBeGreaterThan(20);
      // counters only grow between the two readings; each of taskmeter's threads may be one wake-up ahead of
      // what it reported when it last parked. Before: the live reading held the threads' lifetime counts (~1,800)
      for (const k of ['voluntaryContextSwitches', 'involuntaryContextSwitches', 'minorPageFaults'] as const) {
        expect(live[k], k).not.toBeNull();
        expect(live[k]!, k).toBeLessThanOrEqual(end[k]! + 4);
      }
      expect(live.voluntaryContextSwitches!).toBeLessThan(live.samples / 2);
    },
  );

  it.runIf(linux)("with ioBytes: true, count the bytes the window's code wrote and read (/proc/self/io)", async () => {
    const { writeFileSync, readFileSync } = await import('node:fs');
    const file = join(work, 'window.bin');
    const data = Buffer.alloc(4 << 20, 7);
    const work4MiB = () => {
      writeFileSync(file, data);
      return readFileSync(file).length;
    };
    const { usage } = tm.measureSync(work4MiB, { ioBytes: true });
    expect(usage.ioWriteBytes).toBeGreaterThanOrEqual(4 << 20);
    expect(usage.ioReadBytes).toBeGreaterThanOrEqual(4 << 20);
    // and little else: the sampler's reads of /proc/self/statm are tens of bytes each
    expect(usage.ioWriteBytes).toBeLessThan((4 << 20) + (1 << 20));
    // a tracker and measure() too
    const t = new tm.ResourceTracker({ ioBytes: true }).start();
    work4MiB();
    expect(t.usage!.ioWriteBytes).toBeGreaterThanOrEqual(4 << 20); // live, while it runs
    expect(t.stop().ioReadBytes).toBeGreaterThanOrEqual(4 << 20);
    const m = await tm.measure(async () => work4MiB(), { ioBytes: true });
    expect(m.usage.ioWriteBytes).toBeGreaterThanOrEqual(4 << 20);
  });

  it('without ioBytes a window reads no I/O bytes: they are null, not 0 (each read costs ~2 µs at each edge)', () => {
    const { usage } = tm.measureSync(() => 0);
    expect(usage.ioReadBytes).toBeNull();
    expect(usage.ioWriteBytes).toBeNull();
    expect(usage.minorPageFaults).not.toBeNull(); // getrusage's counters come with every window: the same call as CPU
    expect(() => tm.measureSync(() => 0, { ioBytes: 'yes' as unknown as boolean })).toThrow(
      /"ioBytes" must be a boolean/,
    );
  });

  it('are null where nothing measured them: usageBetween of two snapshots', () => {
    const u = tm.usageBetween(tm.snapshot(), tm.snapshot());
    for (const k of [
      'majorPageFaults',
      'minorPageFaults',
      'voluntaryContextSwitches',
      'involuntaryContextSwitches',
      'fsInputBlocks',
      'fsOutputBlocks',
      'ioReadBytes',
      'ioWriteBytes',
    ] as const) {
      expect(u[k], k).toBeNull();
    }
  });
});
