import { describe, MeasureOptions, resolveMeasureOptions, TaskMeasureOptions } from './options';
import { ResourceUsage } from './usage';
import { Window } from './window';
import { codedError, typeError } from './errors';
import { closeTask, openTask, runAsTask, TaskAccount, taskCpuUnsupported } from './taskcpu';
import { heapSampler } from './nodefigures';

export interface TrackerError extends Error {
  code: 'ERR_TRACKER_NOT_STARTED' | 'ERR_TRACKER_RUNNING';
}

function trackerError(code: TrackerError['code'], message: string): TrackerError {
  const e = new Error(message) as TrackerError;
  e.code = code;
  return e;
}

/**
 * Measures what happens between start() and stop(). An idle or forgotten tracker never keeps the process alive; its
 * sampler window is closed by stop(), by dispose, or at process/worker teardown.
 */
export class ResourceTracker {
  private readonly options: { sampleIntervalMs: number; timeline: boolean; taskCpu: boolean; ioBytes: boolean };
  private window: Window | null = null;
  private result: ResourceUsage | null = null;

  constructor(options?: MeasureOptions) {
    this.options = resolveMeasureOptions('ResourceTracker', options);
  }

  /** Opens a new window. Throws ERR_TRACKER_RUNNING if one is already open; after stop() it starts afresh. */
  start(): this {
    if (this.window) throw trackerError('ERR_TRACKER_RUNNING', 'taskmeter: ResourceTracker.start(): already running');
    this.result = null;
    this.window = new Window({
      intervalMs: this.options.sampleIntervalMs,
      timeline: this.options.timeline,
      ioBytes: this.options.ioBytes,
    });
    this.window.guard(this);
    return this;
  }

  /**
   * Closes the window and returns its usage. Calling stop() again returns the same usage (idempotent); stop() before
   * any start() throws ERR_TRACKER_NOT_STARTED.
   */
  stop(): ResourceUsage {
    if (this.window) {
      const w = this.window;
      this.window = null;
      this.result = w.close();
    }
    if (!this.result) {
      throw trackerError('ERR_TRACKER_NOT_STARTED', 'taskmeter: ResourceTracker.stop(): start() was never called');
    }
    return this.result;
  }

  get running(): boolean {
    return this.window !== null;
  }

  /** While running, the usage so far; after stop(), the final usage; before start(), null. */
  get usage(): ResourceUsage | null {
    if (this.window) return this.window.peek();
    return this.result;
  }

  [Symbol.dispose](): void {
    if (this.window) this.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this[Symbol.dispose]();
  }
}

export interface Measured<T> {
  result: T;
  usage: ResourceUsage;
}

/** The usage is attached to the error that fn threw (when it is an object). */
function attachUsage(err: unknown, usage: ResourceUsage): void {
  if (err !== null && (typeof err === 'object' || typeof err === 'function')) {
    try {
      Object.defineProperty(err, 'usage', { value: usage, configurable: true, writable: true, enumerable: false });
    } catch {
      // frozen error objects: the error still propagates unchanged
    }
  }
}

function checkFn(where: string, fn: unknown): void {
  if (typeof fn !== 'function') throw typeError(`taskmeter: ${where}(fn): fn must be a function, got ${describe(fn)}`);
}

/** Runs fn synchronously and measures it. If fn throws, the same error propagates with `error.usage` attached. */
export function measureSync<T>(fn: () => T, options?: TaskMeasureOptions): Measured<T> {
  checkFn('measureSync', fn);
  const { sampleIntervalMs, timeline, taskCpu, ioBytes } = resolveMeasureOptions('measureSync', options, true);
  const w = new Window({ intervalMs: sampleIntervalMs, timeline, ioBytes });
  const task = taskCpu ? openTask(heapSampler) : null;
  let result: T;
  try {
    result = task ? runAsTask(task, fn) : fn();
  } catch (err) {
    attachUsage(err, closeWith(w, taskCpu, task));
    throw err;
  }
  const usage = closeWith(w, taskCpu, task);
  if (isThenable(result)) {
    // It would measure only the creation of the promise (microseconds) and hand the promise back as a result.
    const e = codedError(
      TypeError,
      'taskmeter: measureSync(fn): fn returned a promise, so only its creation was measured; ' +
        'use `await measure(fn)` to measure until it settles',
      'ERR_TASKMETER_ASYNC_FN',
    );
    attachUsage(e, usage);
    throw e;
  }
  return { result, usage };
}

/** Closes the window and, with taskCpu, the task's account: its CPU, or null with the reason. */
function closeWith(w: Window, taskCpu: boolean, task: TaskAccount | null): ResourceUsage {
  const usage = w.close();
  if (task) {
    const ms = closeTask(task);
    usage.taskCpuMs = Number.isFinite(ms) ? Math.max(0, ms) : null;
    usage.taskCpuReason = usage.taskCpuMs === null ? "this thread's CPU clock could not be read" : null;
  } else if (taskCpu) {
    usage.taskCpuReason = taskCpuUnsupported();
  }
  return usage;
}

function isThenable(v: unknown): boolean {
  return (
    v !== null &&
    (typeof v === 'object' || typeof v === 'function') &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}

/**
 * Runs fn (sync or async) and measures it until its promise settles. If fn throws or rejects, the same error
 * propagates with `error.usage` attached.
 */
export async function measure<T>(
  fn: () => T | PromiseLike<T>,
  options?: TaskMeasureOptions,
): Promise<Measured<Awaited<T>>> {
  checkFn('measure', fn);
  const { sampleIntervalMs, timeline, taskCpu, ioBytes } = resolveMeasureOptions('measure', options, true);
  const w = new Window({ intervalMs: sampleIntervalMs, timeline, ioBytes });
  const task = taskCpu ? openTask(heapSampler) : null;
  let result: Awaited<T>;
  try {
    // The task's code runs as the task; this function's own continuation (the await) does not.
    result = await (task ? runAsTask(task, fn) : fn());
  } catch (err) {
    attachUsage(err, closeWith(w, taskCpu, task));
    throw err;
  }
  return { result, usage: closeWith(w, taskCpu, task) };
}
