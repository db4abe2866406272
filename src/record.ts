import { describe } from './options';
import { cpuRate } from './usage';
import { gpuInfo } from './gpu';
import type { GpuUsage } from './gpu';
import type { ResourceUsage } from './usage';
import { rangeError, typeError } from './errors';
import type { CommandResult, EndedBy, ProcessUsage } from './process';

/**
 * 3: every `*_mb` field renamed `*_mib` (they hold MiB, 2^20 bytes; the `_mb` names are gone), and new fields:
 * getrusage's counters and I/O bytes, gpu_reason_code, ended_by.
 */
export const RECORD_SCHEMA_VERSION = 3;

export interface GpuRecord {
  index: number;
  uuid: string;
  name: string;
  memory_used_peak_bytes: number | null;
  memory_used_peak_mib: number | null;
  process_memory_peak_bytes: number | null;
  process_memory_peak_mib: number | null;
  process_memory_end_bytes: number | null;
  process_memory_reason: string | null;
  /** GPU_NOT_SAMPLED or a PROC_* name when process_memory_peak_bytes is null, else null. */
  process_memory_reason_code: string | null;
  /** Process-list readings that saw the window's processes or looked for them while they lived. */
  process_samples: number;
  /** Device readings of this GPU inside the window. */
  samples: number;
  /** GPU_NOT_SAMPLED when no reading fell inside the window, else null. */
  reason_code: 'GPU_NOT_SAMPLED' | null;
  energy_joules: number | null;
  utilization_avg_percent: number | null;
  /** A MIG slice: its parent GPU's index (null for a whole GPU). */
  mig_parent_index: number | null;
  process_memory_peak_source: 'accounting' | 'sampled' | null;
  process_sm_utilization_percent: number | null;
  process_memory_utilization_percent: number | null;
  power_source: 'instant' | 'average' | null;
  error: string | null;
}

/** A JSON-safe, snake_case record of one task (schema: taskmeter/record.schema.json). */
export interface UsageRecord {
  schema_version: number;
  started_at: string;
  ended_at: string;
  wall_time_seconds: number;
  /** null only for a tracked process or command whose CPU nothing measured (cpu_reason says why) */
  cpu_user_seconds: number | null;
  cpu_system_seconds: number | null;
  cpu_time_seconds: number | null;
  cpu_reason?: string | null;
  /** null for a window shorter than the CPU clock's resolution; cpu_percent_reason says why. */
  cpu_percent: number | null;
  cpu_percent_reason: string | null;
  /** The measuring thread's own CPU (see README "Concurrency"); null where it was not measured. */
  thread_cpu_seconds: number | null;
  /** The task's own CPU on its thread (measure(fn, { taskCpu: true })); null where not measured. */
  task_cpu_seconds: number | null;
  /** Other in-process windows open on this thread at some moment of this one; null where not counted. */
  overlapping_windows: number | null;
  /** Event-loop utilization between the window's edges, 0–1; null where not measured. */
  event_loop_utilization: number | null;
  heap_used_start_bytes: number | null;
  heap_used_end_bytes: number | null;
  /** The largest V8 heap used read while the window was open (sampled); null where no reading fell inside. */
  heap_used_peak_bytes: number | null;
  /** null only for a tracked process or command that nothing measured (see the schema) */
  peak_memory_bytes: number | null;
  peak_memory_mib: number | null;
  peak_memory_source: 'hwm' | 'sampled' | 'endpoints' | null;
  rss_start_bytes: number | null;
  rss_start_mib: number | null;
  rss_end_bytes: number | null;
  rss_end_mib: number | null;
  samples: number;
  sample_interval_ms: number | null;
  gpu_available: boolean;
  gpu_memory_peak_bytes: number | null;
  gpu_memory_peak_mib: number | null;
  gpu_memory_peak_source: 'accounting' | 'process' | 'device' | null;
  gpu_energy_joules: number | null;
  gpu_process_utilization_percent: number | null;
  gpu_process_sample_interval_ms: number | null;
  /** Why no GPU is in the record (no driver, disabled, CUDA's device order cannot be established…), or null. */
  gpu_reason: string | null;
  /** gpuInfo().reasonCode beside gpu_reason (e.g. NVML_LIBRARY_NOT_FOUND), to group records by; null with it. */
  gpu_reason_code: string | null;
  gpu_stale: boolean;
  /** Which GPU readings ran slower than wanted to stay within 1 % of a core, or null. */
  gpu_sampling_note: string | null;
  gpus: GpuRecord[];
  /** GNU time's %F, %R, %w, %c, %I, %O (see UsageCounters); null where not measured. */
  major_page_faults: number | null;
  minor_page_faults: number | null;
  voluntary_context_switches: number | null;
  involuntary_context_switches: number | null;
  fs_input_blocks: number | null;
  fs_output_blocks: number | null;
  /** rchar and wchar (Linux /proc/<pid>/io): bytes passed to read()/write()-like calls. */
  io_read_bytes: number | null;
  io_write_bytes: number | null;
  /** Process tracking (trackProcess, measureCommand, the CLI) only: */
  pid?: number;
  max_rss_bytes?: number | null;
  max_rss_mib?: number | null;
  max_rss_source?: 'rusage' | 'sampled' | null;
  tree_peak_rss_bytes?: number | null;
  tree_peak_rss_mib?: number | null;
  tree_peak_pss_bytes?: number | null;
  tree_peak_pss_mib?: number | null;
  tree_peak_pss_source?: 'sampled' | null;
  tree_peak_pss_reason?: string | null;
  tree_pss_sample_interval_ms?: number | null;
  unreadable_processes?: number;
  processes?: number;
  cpu_source?: 'rusage' | 'sampled';
  effective_sample_interval_ms?: number | null;
  /** A command's record (toRecord(commandResult), the CLI) only: */
  command?: string[];
  exit_code?: number | null;
  signal?: string | null;
  ended_by?: EndedBy | null;
}

const round = (v: number, digits: number): number => {
  if (Math.abs(v) >= 1e15) return v; // already beyond the digits a double keeps; v × 10^digits could overflow
  const f = 10 ** digits;
  return Math.round(v * f) / f + 0;
};
/** bytes / 2^20 to 2 decimals */
export const toMiB = (bytes: number): number => round(bytes / 1048576, 2);
const mibOrNull = (bytes: number | null): number | null => (bytes === null ? null : toMiB(bytes));

function num(usage: Record<string, unknown>, key: string): number {
  const v = usage[key];
  if (typeof v !== 'number')
    throw typeError(`taskmeter: toRecord(usage): usage.${key} must be a number, got ${describe(v)}`);
  if (!Number.isFinite(v) || v < 0) {
    throw rangeError(`taskmeter: toRecord(usage): usage.${key} must be a finite number ≥ 0, got ${v}`);
  }
  return v + 0; // -0 becomes 0
}

function numOrNull(o: Record<string, unknown>, key: string, where: string, max = Infinity): number | null {
  const v = o[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number')
    throw typeError(`taskmeter: toRecord(usage): ${where}.${key} must be a number or null, got ${describe(v)}`);
  // A measured quantity that is not finite, negative or impossible is garbage: missing, never a number.
  return Number.isFinite(v) && v >= 0 && v <= max ? v + 0 : null;
}

const intOrNull = (v: number | null): number | null => (v === null ? null : Math.round(v));
// A count the usage may lack (a usage from an older version): 0.
const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0);
const strOrNull = (v: unknown): string | null => (typeof v === 'string' ? v : null);

function gpuRecord(g: GpuUsage, i: number): GpuRecord {
  if (g === null || typeof g !== 'object')
    throw typeError(`taskmeter: toRecord(usage): usage.gpus[${i}] must be an object`);
  const o = g as unknown as Record<string, unknown>;
  const where = `usage.gpus[${i}]`;
  const peak = intOrNull(numOrNull(o, 'memoryUsedPeakBytes', where));
  const proc = intOrNull(numOrNull(o, 'processMemoryPeakBytes', where));
  const energy = numOrNull(o, 'energyJoules', where);
  return {
    index: typeof g.index === 'number' && Number.isInteger(g.index) && g.index >= 0 ? g.index : i,
    uuid: String(g.uuid ?? ''),
    name: String(g.name ?? ''),
    memory_used_peak_bytes: peak,
    memory_used_peak_mib: mibOrNull(peak),
    process_memory_peak_bytes: proc,
    process_memory_peak_mib: mibOrNull(proc),
    process_memory_end_bytes: intOrNull(numOrNull(o, 'processMemoryEndBytes', where)),
    process_memory_reason: strOrNull(o.processMemoryReason),
    process_memory_reason_code: proc === null ? strOrNull(o.processMemoryReasonCode) : null,
    process_samples: count(o.processSamples),
    samples: count(o.samples),
    reason_code: o.reasonCode === 'GPU_NOT_SAMPLED' ? 'GPU_NOT_SAMPLED' : null,
    energy_joules: energy === null ? null : round(energy, 3),
    utilization_avg_percent: numOrNull(o, 'utilizationAvgPercent', where, 100),
    mig_parent_index:
      o.mig !== null && typeof o.mig === 'object' && Number.isInteger((o.mig as { parentIndex?: unknown }).parentIndex)
        ? (o.mig as { parentIndex: number }).parentIndex
        : null,
    process_memory_peak_source:
      proc === null ? null : o.processMemoryPeakSource === 'accounting' ? 'accounting' : 'sampled',
    process_sm_utilization_percent: numOrNull(o, 'processSmUtilizationPercent', where, 100),
    process_memory_utilization_percent: numOrNull(o, 'processMemoryUtilizationPercent', where, 100),
    power_source: o.powerSource === 'instant' || o.powerSource === 'average' ? o.powerSource : null,
    error: strOrNull(o.error),
  };
}

// The last instant with a 4-digit year (9999-12-31T23:59:59.999Z): the most an RFC 3339 date-time can say.
const MAX_DATE_MS = 253402300799999;
const iso = (epochMs: number): string => new Date(Math.round(epochMs)).toISOString();

function time(u: Record<string, unknown>, key: string): number {
  const v = num(u, key);
  if (v > MAX_DATE_MS)
    throw rangeError(`taskmeter: toRecord(usage): usage.${key} must be epoch ms (at most year 9999), got ${v}`);
  return v;
}

/** A CommandResult (measureCommand's), told from a usage by its `usage` object and `exitCode`. */
function isCommandResult(v: object): v is CommandResult {
  const o = v as Record<string, unknown>;
  return o.usage !== null && typeof o.usage === 'object' && 'exitCode' in o && 'pid' in o;
}

/**
 * Turns a ResourceUsage (or measureCommand's result: then with command, exit_code, signal and ended_by) into a
 * JSON-safe record: seconds, MiB next to exact bytes, snake_case keys.
 */
export function toRecord(usage: ResourceUsage | ProcessUsage | CommandResult): UsageRecord {
  if (usage === null || typeof usage !== 'object') {
    throw typeError(`taskmeter: toRecord(usage): usage must be a ResourceUsage object, got ${describe(usage)}`);
  }
  if (isCommandResult(usage)) return commandRecord(usage);
  const u = usage as unknown as Record<string, unknown>;
  const startedAt = time(u, 'startedAt');
  const endedAt = Math.min(
    MAX_DATE_MS,
    Math.floor(u.endedAt === undefined ? startedAt + num(u, 'wallTimeMs') : time(u, 'endedAt')),
  );
  const wall = num(u, 'wallTimeMs');
  // A process usage may lack CPU and memory figures (nothing measured them): null, never 0. A window's always has
  // them.
  const isProcess = u.pid !== undefined;
  const user = isProcess && u.cpuUserMs === null ? null : num(u, 'cpuUserMs');
  const sys = isProcess && u.cpuSystemMs === null ? null : num(u, 'cpuSystemMs');
  const mem = (key: string) => (isProcess && u[key] === null ? null : num(u, key));
  const peak = mem('peakRssBytes');
  const rssStart = mem('rssStartBytes');
  const rssEnd = mem('rssEndBytes');
  const source = u.peakRssSource;
  if (!(source === 'hwm' || source === 'sampled' || source === 'endpoints' || (isProcess && source === null))) {
    throw typeError(
      "taskmeter: toRecord(usage): usage.peakRssSource must be 'hwm', 'sampled' or 'endpoints', " +
        `got ${describe(source)}`,
      'ERR_INVALID_ARG_VALUE',
    );
  }
  if (!Array.isArray(u.gpus))
    throw typeError(`taskmeter: toRecord(usage): usage.gpus must be an array, got ${describe(u.gpus)}`);
  const gpus = (u.gpus as GpuUsage[]).map(gpuRecord);
  const gpuPeak = numOrNull(u, 'gpuMemoryPeakBytes', 'usage');
  const energies = gpus.map((g) => g.energy_joules).filter((e): e is number => e !== null);
  const peakSource =
    u.gpuMemoryPeakSource === 'accounting' || u.gpuMemoryPeakSource === 'process' || u.gpuMemoryPeakSource === 'device'
      ? u.gpuMemoryPeakSource
      : null;
  const info = gpuInfo();
  const interval = numOrNull(u, 'sampleIntervalMs', 'usage');
  const samples = u.samples === undefined ? 0 : num(u, 'samples');
  const cpuTimeMs = user === null || sys === null ? null : user + sys;
  const cpuReason = cpuTimeMs === null ? (strOrNull(u.cpuReason) ?? 'not measured') : null;
  const rate = cpuTimeMs === null ? { cpuPercent: null, cpuPercentReason: cpuReason } : cpuRate(cpuTimeMs, wall);
  const threadCpu = numOrNull(u, 'threadCpuMs', 'usage');
  const taskCpu = numOrNull(u, 'taskCpuMs', 'usage');
  const overlapping = numOrNull(u, 'overlappingWindows', 'usage');
  const loop = numOrNull(u, 'eventLoopUtilization', 'usage', 1);
  return zeroes({
    schema_version: RECORD_SCHEMA_VERSION,
    started_at: iso(startedAt),
    ended_at: iso(Math.max(endedAt, startedAt)),
    wall_time_seconds: round(wall / 1000, 6),
    cpu_user_seconds: user === null ? null : round(user / 1000, 6),
    cpu_system_seconds: sys === null ? null : round(sys / 1000, 6),
    cpu_time_seconds: cpuTimeMs === null ? null : round(cpuTimeMs / 1000, 6),
    cpu_percent: rate.cpuPercent === null ? null : round(rate.cpuPercent, 2),
    cpu_percent_reason: rate.cpuPercentReason,
    thread_cpu_seconds: threadCpu === null ? null : round(threadCpu / 1000, 6),
    task_cpu_seconds: taskCpu === null ? null : round(taskCpu / 1000, 6),
    overlapping_windows: intOrNull(overlapping),
    event_loop_utilization: loop === null ? null : round(loop, 4),
    heap_used_start_bytes: intOrNull(numOrNull(u, 'heapUsedStartBytes', 'usage')),
    heap_used_end_bytes: intOrNull(numOrNull(u, 'heapUsedEndBytes', 'usage')),
    heap_used_peak_bytes: intOrNull(numOrNull(u, 'heapUsedPeakBytes', 'usage')),
    peak_memory_bytes: intOrNull(peak),
    peak_memory_mib: mibOrNull(peak),
    peak_memory_source: peak === null ? null : source,
    rss_start_bytes: intOrNull(rssStart),
    rss_start_mib: mibOrNull(rssStart),
    rss_end_bytes: intOrNull(rssEnd),
    rss_end_mib: mibOrNull(rssEnd),
    samples: Math.round(samples),
    sample_interval_ms: interval,
    gpu_available: gpus.length > 0 || info.available,
    gpu_memory_peak_bytes: gpuPeak === null ? null : Math.round(gpuPeak),
    gpu_memory_peak_mib: mibOrNull(gpuPeak),
    gpu_memory_peak_source: gpuPeak === null ? null : peakSource,
    gpu_energy_joules:
      energies.length > 0
        ? round(
            energies.reduce((a, b) => a + b, 0),
            3,
          )
        : null,
    gpu_stale: u.gpuStale === true,
    gpu_sampling_note: strOrNull(u.gpuSamplingNote),
    gpu_process_utilization_percent: numOrNull(u, 'gpuProcessUtilizationPercent', 'usage', 100),
    gpu_process_sample_interval_ms: numOrNull(u, 'gpuProcessSampleIntervalMs', 'usage'),
    gpu_reason: gpus.length > 0 ? null : info.reason,
    gpu_reason_code: gpus.length > 0 || info.reason === null ? null : info.reasonCode,
    gpus: gpus.map(zeroes),
    major_page_faults: counter(u, 'majorPageFaults'),
    minor_page_faults: counter(u, 'minorPageFaults'),
    voluntary_context_switches: counter(u, 'voluntaryContextSwitches'),
    involuntary_context_switches: counter(u, 'involuntaryContextSwitches'),
    fs_input_blocks: counter(u, 'fsInputBlocks'),
    fs_output_blocks: counter(u, 'fsOutputBlocks'),
    io_read_bytes: counter(u, 'ioReadBytes'),
    io_write_bytes: counter(u, 'ioWriteBytes'),
    ...processFields(u),
  });
}

/** A counter of the usage (UsageCounters) as a whole number, or null (also for usages made before it existed). */
const counter = (u: Record<string, unknown>, key: string): number | null => intOrNull(numOrNull(u, key, 'usage'));

function commandRecord(r: CommandResult): UsageRecord {
  const rec = toRecord(r.usage);
  const o = r as unknown as Record<string, unknown>;
  if (o.command !== undefined) {
    if (!Array.isArray(o.command) || !o.command.every((a) => typeof a === 'string'))
      throw typeError(
        `taskmeter: toRecord(result): result.command must be an array of strings, got ${describe(o.command)}`,
      );
    rec.command = [...o.command];
  }
  const code = o.exitCode;
  if (code !== null && (typeof code !== 'number' || !Number.isInteger(code)))
    throw typeError(`taskmeter: toRecord(result): result.exitCode must be an integer or null, got ${describe(code)}`);
  if (o.signal !== null && typeof o.signal !== 'string')
    throw typeError(`taskmeter: toRecord(result): result.signal must be a string or null, got ${describe(o.signal)}`);
  rec.exit_code = code;
  rec.signal = o.signal;
  rec.ended_by = o.endedBy === 'abort' || o.endedBy === 'timeout' || o.endedBy === 'maxBuffer' ? o.endedBy : null;
  return rec;
}

/** -0 reads back from JSON as 0: write 0. */
function zeroes<T extends object>(o: T): T {
  for (const [k, v] of Object.entries(o)) if (Object.is(v, -0)) (o as Record<string, unknown>)[k] = 0;
  return o;
}

/** The fields a ProcessUsage adds (present only on those). */
function processFields(u: Record<string, unknown>): Partial<UsageRecord> {
  if (u.pid === undefined) return {};
  if (typeof u.pid !== 'number')
    throw typeError(`taskmeter: toRecord(usage): usage.pid must be a number, got ${describe(u.pid)}`);
  if (!Number.isInteger(u.pid) || u.pid < 1)
    throw rangeError(`taskmeter: toRecord(usage): usage.pid must be a positive integer, got ${u.pid}`);
  const maxRss = numOrNull(u, 'maxRssBytes', 'usage');
  const tree = numOrNull(u, 'treePeakRssBytes', 'usage');
  const pss = numOrNull(u, 'treePeakPssBytes', 'usage');
  const src = u.maxRssSource === 'rusage' || u.maxRssSource === 'sampled' ? u.maxRssSource : null;
  return {
    pid: u.pid,
    max_rss_bytes: intOrNull(maxRss),
    max_rss_mib: mibOrNull(maxRss),
    max_rss_source: maxRss === null ? null : src,
    tree_peak_rss_bytes: intOrNull(tree),
    tree_peak_rss_mib: mibOrNull(tree),
    tree_peak_pss_bytes: intOrNull(pss),
    tree_peak_pss_mib: mibOrNull(pss),
    tree_peak_pss_source: pss === null ? null : 'sampled',
    tree_peak_pss_reason: pss === null ? (strOrNull(u.treePeakPssReason) ?? 'not measured') : null,
    tree_pss_sample_interval_ms: numOrNull(u, 'treePssSampleIntervalMs', 'usage'),
    unreadable_processes:
      typeof u.unreadableProcesses === 'number' && Number.isInteger(u.unreadableProcesses) && u.unreadableProcesses >= 0
        ? u.unreadableProcesses
        : 0,
    cpu_reason: strOrNull(u.cpuReason),
    processes: typeof u.processes === 'number' && Number.isInteger(u.processes) && u.processes >= 0 ? u.processes : 0,
    cpu_source: u.cpuSource === 'rusage' ? 'rusage' : 'sampled',
    effective_sample_interval_ms: numOrNull(u, 'effectiveSampleIntervalMs', 'usage'),
  };
}
