// Option checks shared by every entry point: a wrong type is a TypeError and a value out of range a RangeError,
// each naming the option.
import { rangeError, typeError } from './errors';

export const DEFAULT_SAMPLE_INTERVAL_MS = 10;
export const MIN_SAMPLE_INTERVAL_MS = 1;
export const MAX_SAMPLE_INTERVAL_MS = 60_000;

export interface MeasureOptions {
  /** How often the sampler reads RSS inside the window, in ms: an integer from 1 to 60000. Default 10. */
  sampleIntervalMs?: number;
  /** Record a timeline of the window (usage.timeline). Default false. */
  timeline?: boolean;
  /**
   * Read the process's I/O bytes at the window's edges (usage.ioReadBytes, ioWriteBytes: /proc/self/io, Linux), about
   * 2 µs at each. Default false: those two are then null.
   */
  ioBytes?: boolean;
}

/** Options of measure() and measureSync(). */
export interface TaskMeasureOptions extends MeasureOptions {
  /**
   * Measure the task's own CPU on this thread (usage.taskCpuMs), apart from other tasks running concurrently on the
   * same event loop. Costs a thread-clock read at each switch into and out of the task. Default false.
   */
  taskCpu?: boolean;
}

export interface ResolvedOptions {
  sampleIntervalMs: number;
  timeline: boolean;
  taskCpu: boolean;
  ioBytes: boolean;
}

export function boolOption(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean')
    throw typeError(`taskmeter: option "${name}" must be a boolean, got ${describe(value)}`);
  return value;
}

export function intervalOption(o: Record<string, unknown>): number {
  return intOption(
    'sampleIntervalMs',
    o.sampleIntervalMs,
    MIN_SAMPLE_INTERVAL_MS,
    MAX_SAMPLE_INTERVAL_MS,
    DEFAULT_SAMPLE_INTERVAL_MS,
  );
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return `${typeof value} ${String(value)}`;
  }
  if (typeof value === 'string')
    return `string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  return typeof value;
}

/** Checks an integer option; returns the default when the value is undefined. */
export function intOption(name: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') {
    throw typeError(`taskmeter: option "${name}" must be a number, got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw rangeError(`taskmeter: option "${name}" must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** Checks that `options` is undefined or a plain object with only the known keys. */
export function optionsObject(where: string, options: unknown, known: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw typeError(`taskmeter: ${where} options must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw typeError(
        `taskmeter: unknown option "${key}" for ${where} (known: ${known.join(', ')})`,
        'ERR_INVALID_ARG_VALUE',
      );
    }
  }
  return options as Record<string, unknown>;
}

const DEFAULTS: ResolvedOptions = Object.freeze({
  sampleIntervalMs: DEFAULT_SAMPLE_INTERVAL_MS,
  timeline: false,
  taskCpu: false,
  ioBytes: false,
});
const TRACKER_OPTIONS = ['sampleIntervalMs', 'timeline', 'ioBytes'];
const TASK_OPTIONS = ['sampleIntervalMs', 'timeline', 'ioBytes', 'taskCpu'];

/** The options of measure()/measureSync() (withTaskCpu) or of a ResourceTracker, which has no task to follow. */
export function resolveMeasureOptions(where: string, options: unknown, withTaskCpu = false): ResolvedOptions {
  if (options === undefined) return DEFAULTS;
  const o = optionsObject(where, options, withTaskCpu ? TASK_OPTIONS : TRACKER_OPTIONS);
  return {
    sampleIntervalMs: intervalOption(o),
    timeline: boolOption('timeline', o.timeline, false),
    taskCpu: withTaskCpu && boolOption('taskCpu', o.taskCpu, false),
    ioBytes: boolOption('ioBytes', o.ioBytes, false),
  };
}
