// Per-task CPU on one event loop (measure(fn, { taskCpu: true })) and the overlap count of every window. The tasks
// burn CPU by the thread's own clock (not by wall time), so a busy machine changes how long they take, never what
// they measure.
import { readFile } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import * as tm from '../dist/index.js';
import { native } from '../dist/binding.js';

// The instance the package's own modules use (an import here could be the test runner's second copy).
const { taskCpuState } = createRequire(__filename)('../dist/taskcpu.js') as typeof import('../dist/taskcpu.js');
import { lastJson, runScenario } from './helpers';

/** Burns `ms` of this thread's CPU. */
function burn(ms: number): void {
  const end = native.threadCpuMs() + ms;
  while (native.threadCpuMs() < end);
}
const tick = () => new Promise<void>((r) => setImmediate(r));
const timer = () => new Promise<void>((r) => setTimeout(r, 1));

/** 100 ms of CPU in five chunks, each after a different kind of await. */
async function fiveChunks(): Promise<void> {
  burn(20);
  await null;
  burn(20);
  await tick();
  burn(20);
  await timer();
  burn(20);
  await Promise.all([tick(), timer()]);
  burn(20);
}

describe('measure(fn, { taskCpu: true })', () => {
  it("two concurrent tasks each report their own CPU, not the other's", async () => {
    const [a, b] = await Promise.all([
      tm.measure(fiveChunks, { taskCpu: true }),
      tm.measure(fiveChunks, { taskCpu: true }),
    ]);
    for (const { usage } of [a, b]) {
      expect(usage.taskCpuReason).toBeNull();
      // its own 100 ms, and only a little of taskmeter's bookkeeping beside it; the other's 100 ms would make ≥ 200
      expect(usage.taskCpuMs!).toBeGreaterThanOrEqual(100);
      expect(usage.taskCpuMs!).toBeLessThan(150);
      // the thread's clock over the window holds most of the other task too
      expect(usage.threadCpuMs!).toBeGreaterThan(usage.taskCpuMs! + 50);
      expect(usage.overlappingWindows).toBe(1);
    }
  });

  it('counts CPU in callbacks the task started (a timer, an fs callback, process.nextTick)', async () => {
    const { usage } = await tm.measure(
      () =>
        new Promise<void>((resolve, reject) => {
          setTimeout(() => {
            burn(30);
            readFile(__filename, (err) => {
              if (err) return reject(err);
              burn(20);
              process.nextTick(() => {
                burn(10);
                resolve();
              });
            });
          }, 1);
        }),
      { taskCpu: true },
    );
    expect(usage.taskCpuMs!).toBeGreaterThanOrEqual(60);
    expect(usage.taskCpuMs!).toBeLessThan(100);
  });

  it('leaves out work on the same thread that the task did not start', async () => {
    let stop = false;
    const other = (async () => {
      // started outside the task, so it is not the task's, however it interleaves with it
      while (!stop) {
        burn(10);
        await tick();
      }
    })();
    const { usage } = await tm.measure(
      async () => {
        for (let i = 0; i < 10; i++) {
          burn(2);
          await tick();
        }
      },
      { taskCpu: true },
    );
    stop = true;
    await other;
    expect(usage.taskCpuMs!).toBeGreaterThanOrEqual(20);
    expect(usage.taskCpuMs!).toBeLessThan(50);
    expect(usage.threadCpuMs!).toBeGreaterThan(usage.taskCpuMs! + 50);
    // that work was no measured window: nothing overlapped this one
    expect(usage.overlappingWindows).toBe(0);
  });

  it("a nested task's CPU is its outer task's too", async () => {
    let inner: tm.ResourceUsage | null = null;
    const { usage: outer } = await tm.measure(
      async () => {
        burn(20);
        await tick();
        inner = (
          await tm.measure(
            async () => {
              burn(30);
              await tick();
              burn(10);
            },
            { taskCpu: true },
          )
        ).usage;
        burn(20);
      },
      { taskCpu: true },
    );
    expect(inner!.taskCpuMs!).toBeGreaterThanOrEqual(40);
    expect(inner!.taskCpuMs!).toBeLessThan(60);
    expect(outer.taskCpuMs!).toBeGreaterThanOrEqual(80);
    expect(outer.taskCpuMs!).toBeLessThan(110);
  });

  it("the tasks' CPU adds up to no more than the thread's over the same time", async () => {
    const t0 = native.threadCpuMs();
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        tm.measure(
          async () => {
            for (let c = 0; c < 4; c++) {
              burn(2 + i);
              await (c % 2 ? tick() : timer());
            }
          },
          { taskCpu: true },
        ),
      ),
    );
    const thread = native.threadCpuMs() - t0;
    const sum = results.reduce((a, r) => a + r.usage.taskCpuMs!, 0);
    expect(sum).toBeLessThanOrEqual(thread);
    expect(sum).toBeGreaterThanOrEqual(4 * (2 + 3 + 4 + 5 + 6 + 7));
  });

  it('measureSync(fn, { taskCpu: true }) reports the synchronous run', () => {
    const { usage } = tm.measureSync(() => burn(30), { taskCpu: true });
    expect(usage.taskCpuMs!).toBeGreaterThanOrEqual(30);
    expect(usage.taskCpuMs!).toBeLessThanOrEqual(usage.threadCpuMs! + 0.5);
  });

  it('attaches the task CPU to the error when the task fails', async () => {
    const err = (await tm
      .measure(
        async () => {
          burn(15);
          await tick();
          throw new Error('boom');
        },
        { taskCpu: true },
      )
      .catch((e: unknown) => e)) as Error & { usage: tm.ResourceUsage };
    expect(err.message).toBe('boom');
    expect(err.usage.taskCpuMs!).toBeGreaterThanOrEqual(15);
  });

  it('turns its hooks on only while a taskCpu task is open', async () => {
    expect(taskCpuState()).toEqual({ openTasks: 0, hooksOn: false });
    const p = tm.measure(tick, { taskCpu: true });
    expect(taskCpuState()).toEqual({ openTasks: 1, hooksOn: true });
    await p;
    expect(taskCpuState()).toEqual({ openTasks: 0, hooksOn: false });
    await tm
      .measure(
        () => {
          throw new Error('x');
        },
        { taskCpu: true },
      )
      .catch(() => {});
    expect(taskCpuState()).toEqual({ openTasks: 0, hooksOn: false });
  });

  it('rejects a taskCpu that is not a boolean with a TypeError naming it; a ResourceTracker has none', async () => {
    for (const bad of [1, 'yes', null, {}]) {
      await expect(tm.measure(() => 0, { taskCpu: bad as never })).rejects.toThrow(
        /option "taskCpu" must be a boolean/,
      );
      expect(() => tm.measureSync(() => 0, { taskCpu: bad as never })).toThrow(TypeError);
    }
    expect(() => new tm.ResourceTracker({ taskCpu: true } as never)).toThrow(/unknown option "taskCpu"/);
    expect(taskCpuState().openTasks).toBe(0);
  });

  it('without the option: taskCpuMs is null and says how to get it', async () => {
    const { usage } = await tm.measure(tick);
    expect(usage.taskCpuMs).toBeNull();
    expect(usage.taskCpuReason).toMatch(/taskCpu: true/);
    const rec = tm.toRecord(usage);
    expect(rec.task_cpu_seconds).toBeNull();
  });

  it('is measured in a worker thread too, on that thread', async () => {
    const r = await runScenario(async ({ require }) => {
      const { Worker } = require('node:worker_threads');
      const code = `
        const tm = require(${JSON.stringify(require.resolve('../../dist/index.js'))});
        const { native } = require(${JSON.stringify(require.resolve('../../dist/binding.js'))});
        const burn = (ms) => { const end = native.threadCpuMs() + ms; while (native.threadCpuMs() < end); };
        const task = async () => { burn(20); await new Promise((r) => setImmediate(r)); burn(20); };
        Promise.all([tm.measure(task, { taskCpu: true }), tm.measure(task, { taskCpu: true })]).then((rs) =>
          require('node:worker_threads').parentPort.postMessage(rs.map((x) => x.usage.taskCpuMs)));`;
      const w = new Worker(code, { eval: true });
      const exited = new Promise((r) => w.once('exit', r));
      const got = await new Promise((resolve) => w.once('message', resolve));
      await exited;
      return { got };
    });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const { got } = lastJson<{ got: number[] }>(r.stdout);
    for (const ms of got) {
      expect(ms).toBeGreaterThanOrEqual(40);
      expect(ms).toBeLessThan(70);
    }
  });
});

describe('overlappingWindows', () => {
  it('counts the other windows open on this thread at some moment of this one', async () => {
    const alone = await tm.measure(tick);
    expect(alone.usage.overlappingWindows).toBe(0);
    const outer = new tm.ResourceTracker().start();
    const a = tm.measureSync(() => 0);
    const b = tm.measureSync(() => 0);
    const o = outer.stop();
    expect(a.usage.overlappingWindows).toBe(1); // the tracker
    expect(b.usage.overlappingWindows).toBe(1); // a had closed before b opened
    expect(o.overlappingWindows).toBe(2);
    const after = tm.measureSync(() => 0);
    expect(after.usage.overlappingWindows).toBe(0);
    expect(tm.toRecord(o).overlapping_windows).toBe(2);
  });

  it('is null where there is no window on this thread: between two snapshots, a tracked process', async () => {
    const u = tm.usageBetween(tm.snapshot(), tm.snapshot());
    expect(u.overlappingWindows).toBeNull();
    const c = await tm.measureCommand('true', [], { stdio: 'ignore' });
    expect(c.usage.overlappingWindows).toBeNull();
    expect(c.usage.eventLoopUtilization).toBeNull();
    expect(c.usage.heapUsedStartBytes).toBeNull();
    expect(c.usage.heapUsedPeakReason).toMatch(/another process/);
  });
});
