// Node's own figures for an in-process window, read on the JavaScript thread at its edges: event-loop utilization,
// the V8 heap used (start, end and a sampled peak) and how many other windows overlapped it on this thread. Nothing
// here wakes the thread: heap readings are taken only where taskmeter's code runs anyway (see HeapSampler).
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { native } from './binding';

/**
 * The largest value pushed since a given sequence number, for every open window at once: a stack of (seq, value)
 * whose values strictly decrease from the bottom, so the first entry at or after a window's first sequence number
 * holds the largest value pushed since. Push is amortized O(1), a query O(log n). Entries no window can ask for any
 * more go (dropBefore the oldest open window, clear when none is open); past `cap` entries, every other one of the
 * older half is dropped, from the second on, which can only lower (never raise) what a window opened among them
 * reads: a missed sample, never a value from before it opened. The front entry never goes: it is the oldest open
 * window's answer, exact however long that window stays open (the same rule as native/max_since.h).
 */
export class MaxSince {
  private seqs: number[] = [];
  private vals: number[] = [];
  next = 0;
  private readonly cap: number;
  constructor(cap = 4096) {
    this.cap = Math.max(cap, 2); // the front and the newest stay
  }

  /** Records a value with the next sequence number and returns that number. */
  push(v: number): number {
    const seq = this.next++;
    if (!Number.isFinite(v)) return seq;
    const { seqs, vals } = this;
    while (vals.length > 0 && vals[vals.length - 1] <= v) {
      vals.pop();
      seqs.pop();
    }
    seqs.push(seq);
    vals.push(v);
    if (vals.length > this.cap) this.compact();
    return seq;
  }

  /** The largest value pushed with a sequence number ≥ seq; NaN if none. */
  maxSince(seq: number): number {
    const i = this.firstAtOrAfter(seq);
    return i < this.seqs.length ? this.vals[i] : NaN;
  }

  /** Forgets the values pushed before seq (no open window can ask for them). */
  dropBefore(seq: number): void {
    const i = this.firstAtOrAfter(seq);
    if (i > 0) {
      this.seqs.splice(0, i);
      this.vals.splice(0, i);
    }
  }

  private firstAtOrAfter(seq: number): number {
    const { seqs } = this;
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  clear(): void {
    this.seqs.length = 0;
    this.vals.length = 0;
  }

  get size(): number {
    return this.vals.length;
  }

  private compact(): void {
    const half = this.vals.length >> 1;
    const seqs: number[] = [];
    const vals: number[] = [];
    for (let i = 0; i < this.vals.length; i++) {
      if (i % 2 === 1 && i <= half) continue;
      seqs.push(this.seqs[i]);
      vals.push(this.vals[i]);
    }
    this.seqs = seqs;
    this.vals = vals;
  }
}

function heapUsedBytes(): number {
  try {
    const v = getHeapStatistics().used_heap_size;
    return typeof v === 'number' && v >= 0 ? v : NaN;
  } catch {
    return NaN; // a runtime whose node:v8 has no heap statistics
  }
}

/** Minimum thread CPU between two heap readings taken at task switches, ms. */
const HEAP_SAMPLE_EVERY_CPU_MS = 1;

/**
 * This thread's heap readings, shared by its windows: each window edge reads the heap used, and so does a switch
 * between taskCpu tasks at most once per ms of CPU. A window's peak is the largest reading since it opened.
 */
export class HeapSampler {
  readonly readings: MaxSince;
  private lastSampleCpuMs = -Infinity;
  /** How many in-process windows were ever opened on this thread. */
  openedWindows = 0;
  /** The open windows' start readings (their numbers) in the order they opened; one that closes while an older one
   *  is open stays listed (and in closedEarly) until every older one has closed. openSeqs[head] is the oldest. */
  private openSeqs: number[] = [];
  private head = 0;
  private readonly closedEarly = new Set<number>();

  constructor(
    private readonly heapUsed: () => number = heapUsedBytes,
    cap?: number,
  ) {
    this.readings = new MaxSince(cap);
  }

  /** In-process windows open on this thread. */
  get openWindows(): number {
    return this.openSeqs.length - this.head - this.closedEarly.size;
  }

  /** Reads the heap used now and records it for every open window; returns the reading (NaN where the runtime has
   *  no V8 heap statistics) and its sequence number. */
  read(): { bytes: number; seq: number } {
    const bytes = this.heapUsed();
    return { bytes, seq: this.readings.push(bytes) };
  }

  /** A window opens: its start reading, whose number is the window's (its peak is the largest reading since). */
  open(): { bytes: number; seq: number } {
    this.openedWindows++;
    // readings taken while none was open are no window's
    if (this.readings.size > 0 && this.openWindows === 0) this.readings.clear();
    const r = this.read();
    this.openSeqs.push(r.seq);
    return r;
  }

  /** The window that opened with reading `seq` closes (every way a window ends comes here once): what no open window
   *  can ask for any more goes, all of it when the last one closes. */
  close(seq: number): void {
    if (this.openSeqs[this.head] === seq) {
      this.head++;
      while (this.head < this.openSeqs.length && this.closedEarly.delete(this.openSeqs[this.head])) this.head++;
    } else {
      this.closedEarly.add(seq);
    }
    if (this.head > 64 && this.head * 2 > this.openSeqs.length) {
      // the closed ones go now and then (amortized O(1)): not at every close, which would reallocate the array
      this.openSeqs.splice(0, this.head);
      this.head = 0;
    }
    if (this.head === this.openSeqs.length) this.readings.clear();
    else this.readings.dropBefore(this.openSeqs[this.head]);
  }

  maybeSample(cpuMs: number): void {
    if (this.openWindows > 0 && cpuMs - this.lastSampleCpuMs >= HEAP_SAMPLE_EVERY_CPU_MS) {
      this.lastSampleCpuMs = cpuMs;
      this.read();
    }
  }
}

// One per thread, shared by every copy of this module loaded in it (a test runner's and the package's): the addon's
// exports object is loaded once per thread.
const holder = native as unknown as { __taskmeterHeap?: HeapSampler };
if (!holder.__taskmeterHeap) {
  Object.defineProperty(holder, '__taskmeterHeap', { value: new HeapSampler(), enumerable: false });
}
export const heapSampler = holder.__taskmeterHeap as HeapSampler;

type Elu = { idle: number; active: number; utilization: number };
const elu: ((a?: Elu) => Elu) | null =
  typeof performance.eventLoopUtilization === 'function' ? performance.eventLoopUtilization.bind(performance) : null;

/** What an in-process window reads at its opening. */
export interface NodeStart {
  elu: Elu | null;
  heapUsedBytes: number;
  heapSeq: number;
  /** windows already open on this thread, and the count of windows ever opened, after this one */
  openBefore: number;
  openedAfter: number;
}

export interface NodeFigures {
  overlappingWindows: number | null;
  eventLoopUtilization: number | null;
  eventLoopUtilizationReason: string | null;
  heapUsedStartBytes: number | null;
  heapUsedEndBytes: number | null;
  heapUsedPeakBytes: number | null;
  heapUsedPeakReason: string | null;
}

export function nodeStart(): NodeStart {
  const h = heapSampler;
  const openBefore = h.openWindows;
  const { bytes, seq } = h.open();
  return { elu: elu ? elu() : null, heapUsedBytes: bytes, heapSeq: seq, openBefore, openedAfter: h.openedWindows };
}

const NO_HEAP_SAMPLE =
  'no heap reading fell inside the window: the heap is read on this thread at the edges of its windows and, while ' +
  'a taskCpu task runs, at most once per ms of CPU at its switches; nothing else wakes the thread to read it';

const NO_HEAP_STATISTICS = "this runtime's node:v8 has no heap statistics (v8.getHeapStatistics())";

/** The figures between the window's opening and now; `closing` also takes the window out of the open count. */
export function nodeFigures(s: NodeStart, closing: boolean): NodeFigures {
  const h = heapSampler;
  const insideBefore = h.readings.next - s.heapSeq - 1; // readings since this window's own start reading
  const end = h.read();
  const overlapping = s.openBefore + (h.openedWindows - s.openedAfter);
  const noHeap = !Number.isFinite(s.heapUsedBytes) || !Number.isFinite(end.bytes);
  const peak = insideBefore > 0 && !noHeap ? h.readings.maxSince(s.heapSeq) : NaN;
  if (closing) h.close(s.heapSeq);
  let utilization: number | null = null;
  let eluReason: string | null = null;
  if (elu === null || s.elu === null) {
    eluReason = 'this runtime has no performance.eventLoopUtilization()';
  } else if (s.elu.idle === 0 && s.elu.active === 0) {
    eluReason = 'the event loop had not started when the window opened (top-level code of the main module)';
  } else {
    const d = elu(s.elu);
    utilization =
      d.idle + d.active > 0 && Number.isFinite(d.utilization) ? Math.min(1, Math.max(0, d.utilization)) : null;
    if (utilization === null) eluReason = 'no event-loop time passed in the window';
  }
  return {
    overlappingWindows: overlapping,
    eventLoopUtilization: utilization,
    eventLoopUtilizationReason: eluReason,
    heapUsedStartBytes: noHeap ? null : s.heapUsedBytes,
    heapUsedEndBytes: noHeap ? null : end.bytes,
    heapUsedPeakBytes: Number.isFinite(peak) ? Math.max(peak, s.heapUsedBytes, end.bytes) : null,
    heapUsedPeakReason: Number.isFinite(peak) ? null : noHeap ? NO_HEAP_STATISTICS : NO_HEAP_SAMPLE,
  };
}
