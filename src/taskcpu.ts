// Per-task CPU on one event loop (measure(fn, { taskCpu: true })): the thread's CPU clock is read at every switch
// between tasks, and the time since the previous switch is charged to the task that was running. Which task runs is
// propagated as AsyncLocalStorage propagates its store: a resource (promise, timer, socket request…) created while a
// task runs belongs to that task, and its callbacks run in it. Why async_hooks and not v8.promiseHooks or a sampler,
// and what it costs: docs/benchmarks.md ("Per-task CPU").
import { createHook, executionAsyncResource } from 'node:async_hooks';
import type { AsyncHook } from 'node:async_hooks';
import { native } from './binding';
import { HeapSampler } from './nodefigures';

/** One task's account. Nested tasks also charge their ancestors (an outer task's context contains the inner's). */
export class TaskAccount {
  ms = 0;
  readonly parent: TaskAccount | null;
  constructor(parent: TaskAccount | null) {
    this.parent = parent;
  }
}

const kTask = Symbol('taskmeter.task');

// The task whose code runs now (null: none), and the thread CPU clock at the last switch.
let current: TaskAccount | null = null;
let lastMs = 0;
// The task to return to at each `after` (callbacks nest: an AsyncResource run inside another callback).
const stack: (TaskAccount | null)[] = [];
let open = 0;
let hook: AsyncHook | null = null;
let hooksOn = false;
let unsupported: string | null | undefined;
let heap: HeapSampler | null = null;

function switchTo(t: TaskAccount | null): void {
  if (t === current) return;
  const now = native.threadCpuMs();
  if (current !== null) {
    const d = now - lastMs;
    for (let x: TaskAccount | null = current; x !== null; x = x.parent) x.ms += d;
    // The heap grows only while JavaScript runs: a reading at most once per ms of this thread's CPU.
    if (heap !== null) heap.maybeSample(now);
  }
  lastMs = now;
  current = t;
}

function resourceTask(): TaskAccount | null {
  const r = executionAsyncResource() as Record<symbol, TaskAccount | undefined> | undefined;
  return r?.[kTask] ?? null;
}

function makeHook(): AsyncHook {
  return createHook({
    init(_id, _type, _trigger, resource) {
      if (current !== null) (resource as Record<symbol, TaskAccount>)[kTask] = current;
    },
    before() {
      stack.push(current);
      switchTo(resourceTask());
    },
    after() {
      switchTo(stack.length > 0 ? (stack.pop() as TaskAccount | null) : null);
    },
  });
}

/**
 * Why per-task CPU cannot be measured in this runtime, or null. Checked once: async_hooks must report a promise's
 * creation synchronously (Node does; a runtime with a stub async_hooks does not) and the thread clock must read.
 */
export function taskCpuUnsupported(): string | null {
  if (unsupported !== undefined) return unsupported;
  unsupported = null;
  if (!Number.isFinite(native.threadCpuMs())) {
    unsupported = "this thread's CPU clock cannot be read";
    return unsupported;
  }
  let seen = false;
  try {
    const probe = createHook({
      init() {
        seen = true;
      },
    }).enable();
    void Promise.resolve();
    new Promise<void>((r) => r());
    probe.disable();
  } catch {
    seen = false;
  }
  if (!seen) unsupported = 'this runtime does not report async resources through async_hooks';
  return unsupported;
}

/** Opens a task account (the hooks are on while any is open); null with taskCpuUnsupported() saying why. */
export function openTask(heapSampler: HeapSampler): TaskAccount | null {
  if (taskCpuUnsupported() !== null) return null;
  if (hook === null) hook = makeHook();
  if (open++ === 0) {
    stack.length = 0;
    hook.enable();
    hooksOn = true;
  }
  heap = heapSampler;
  return new TaskAccount(current);
}

/** Runs fn synchronously as task t: what it creates belongs to t. */
export function runAsTask<T>(t: TaskAccount, fn: () => T): T {
  const prev = current;
  switchTo(t);
  try {
    return fn();
  } finally {
    switchTo(prev);
  }
}

/** Closes the account and returns its CPU, ms (NaN if the clock failed). */
export function closeTask(t: TaskAccount): number {
  // A task closes outside its own code (measure() awaits it from the caller's context), so its total is complete.
  if (--open === 0 && hook !== null) {
    hook.disable();
    hooksOn = false;
    switchTo(null);
    stack.length = 0;
  }
  return t.ms;
}

/** For the tests: open task accounts and whether the hooks are on. */
export function taskCpuState(): { openTasks: number; hooksOn: boolean } {
  return { openTasks: open, hooksOn };
}
