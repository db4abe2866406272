// One measurement window: endpoint snapshots plus a sampler window for what happens in between. Shared by the
// in-process trackers (measure, ResourceTracker) and the process trackers (trackProcess, measureCommand).
import { native, SNAP_THREAD_CPU_MS } from './binding';
import { codedError } from './errors';
import { heapSampler, NodeFigures, nodeFigures, NodeStart, nodeStart } from './nodefigures';
import { Timeline, timelineFrom } from './timeline';
import {
  boundSnapshotBuffer,
  boundWindowBuffer,
  buildUsage,
  countersBetween,
  edgeCounters,
  noNodeFigures,
  UsageCounters,
  ResourceUsage,
  Snapshot,
  snapshotFrom,
  threadCpuBetween,
  windowBufferLength,
  WindowStats,
  windowStats,
} from './usage';

export interface WindowConfig {
  intervalMs: number;
  timeline: boolean;
  /** read /proc/self/io at the edges (usage.ioReadBytes, ioWriteBytes) */
  ioBytes?: boolean;
  /** follow this process (and its descendants) instead of only this process */
  rootPid?: number;
  /** CPU the tracked processes used before tracking began is not counted */
  baselineExisting?: boolean;
  descendants?: boolean;
}

export interface ClosedWindow {
  start: Snapshot;
  end: Snapshot;
  stats: WindowStats | null;
  timeline: Timeline | null;
  maxHwmComm: string | null;
  /** The calling thread's CPU in the window (its clock read at open and close), or null. */
  threadCpuMs: number | null;
  /** Node's figures: an in-process window's, or nulls with the reason for a process window. */
  node: NodeFigures;
  /** getrusage's counters and the I/O bytes between the window's edges. */
  counters: UsageCounters;
}

/** Node's figures describe this process's event loop and heap: nothing of another process. */
export const PROCESS_WINDOW = noNodeFigures('not measured for another process: it describes this event loop and heap');

// A window whose owner is dropped while it is open would stay open for the life of the process; closing it when the
// owner is collected keeps the window table bounded.
const abandoned = new FinalizationRegistry<{ id: number; heapSeq: number | null }>(({ id, heapSeq }) => {
  native.windowClose(id, new Float64Array(windowBufferLength()));
  if (heapSeq !== null) heapSampler.close(heapSeq); // as a closing window leaves the heap readings (nodeFigures)
});

export class Window {
  readonly start: Snapshot;
  readonly id: number;
  readonly config: WindowConfig;
  private readonly startThreadCpuMs: number;
  /** An in-process window's opening readings of Node's figures (before the native window opens: their cost is not
   *  the task's); null for a process window. */
  private readonly node: NodeStart | null;
  private readonly startCounters: number[];
  private readonly startIo: Float64Array | null = null;
  private closed = false;

  constructor(config: WindowConfig) {
    this.config = config;
    this.node = config.rootPid ? null : nodeStart();
    const snap = boundSnapshotBuffer();
    try {
      this.id = native.windowOpen(config.intervalMs);
    } catch (err) {
      if (this.node) nodeFigures(this.node, true); // out of this thread's open count again
      throw err;
    }
    this.start = snapshotFrom(snap);
    this.startThreadCpuMs = snap[SNAP_THREAD_CPU_MS];
    this.startCounters = edgeCounters(snap);
    if (config.ioBytes) {
      this.startIo = new Float64Array(2);
      native.readSelfIo(this.startIo);
    }
    if (config.timeline || config.rootPid) {
      native.windowConfigure(
        this.id,
        config.rootPid ?? 0,
        config.baselineExisting ?? true,
        config.descendants ?? true,
        config.timeline,
      );
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Closes the window when `owner` is garbage-collected while it is still open. */
  guard(owner: object): void {
    abandoned.register(owner, { id: this.id, heapSeq: this.node ? this.node.heapSeq : null }, this);
  }

  /** The stats so far, leaving the window open. */
  read(): { end: Snapshot; stats: WindowStats | null; threadCpuMs: number | null; counters: UsageCounters } {
    const io = this.endIo();
    const snap = new Float64Array(native.SNAPSHOT_SLOTS);
    const buf = new Float64Array(windowBufferLength());
    const ok = native.windowRead(this.id, buf, snap);
    return {
      end: snapshotFrom(snap),
      stats: ok ? windowStats(buf) : null,
      threadCpuMs: threadCpuBetween(this.startThreadCpuMs, snap[SNAP_THREAD_CPU_MS]),
      counters: countersBetween(this.startCounters, snap, io),
    };
  }

  peek(): ResourceUsage {
    const { end, stats, threadCpuMs, counters } = this.read();
    const node = this.node ? nodeFigures(this.node, false) : PROCESS_WINDOW;
    return buildUsage(this.start, end, stats, threadCpuMs, node, counters);
  }

  closeRaw(): ClosedWindow {
    if (this.closed) throw codedError(Error, 'taskmeter: window already closed', 'ERR_TASKMETER_WINDOW_CLOSED');
    this.closed = true;
    abandoned.unregister(this);
    let timeline: Timeline | null = null;
    let maxHwmComm: string | null = null;
    if (this.config.timeline || this.config.rootPid) {
      const t = native.windowTimeline(this.id);
      if (t) {
        maxHwmComm = t.maxHwmComm || null;
        if (this.config.timeline)
          timeline = timelineFrom(t.points, native.TIMELINE_COLUMNS, this.start.epochMs, this.config.intervalMs);
      }
    }
    const io = this.endIo();
    const snap = boundSnapshotBuffer();
    const buf = boundWindowBuffer();
    const ok = native.windowClose(this.id);
    const threadCpuMs = threadCpuBetween(this.startThreadCpuMs, snap[SNAP_THREAD_CPU_MS]);
    const end = snapshotFrom(snap);
    const stats = ok ? windowStats(buf) : null;
    return {
      start: this.start,
      end,
      stats,
      timeline,
      maxHwmComm,
      threadCpuMs,
      node: this.node ? nodeFigures(this.node, true) : PROCESS_WINDOW,
      counters: countersBetween(this.startCounters, snap, io),
    };
  }

  /** The I/O bytes now, with the window's start reading (null for a window that does not read them). */
  private endIo(): { start: Float64Array; end: Float64Array } | null {
    if (!this.startIo) return null;
    const end = new Float64Array(2);
    native.readSelfIo(end);
    return { start: this.startIo, end };
  }

  close(): ResourceUsage {
    const c = this.closeRaw();
    const usage = buildUsage(c.start, c.end, c.stats, c.threadCpuMs, c.node, c.counters);
    if (c.timeline) usage.timeline = c.timeline;
    return usage;
  }
}
