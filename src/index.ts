export { snapshot, usageBetween } from './usage';
export type { Snapshot, ResourceUsage, PeakRssSource, UsageCounters } from './usage';
export { measure, measureSync, ResourceTracker } from './tracker';
export type { Measured, TrackerError } from './tracker';
export { toRecord, RECORD_SCHEMA_VERSION } from './record';
export type { UsageRecord, GpuRecord } from './record';
export { hasGpu, gpuInfo } from './gpu';
export type { GpuInfo, GpuDevice, GpuSnapshot, GpuUsage } from './gpu';
export { DEFAULT_SAMPLE_INTERVAL_MS } from './options';
export type { MeasureOptions, TaskMeasureOptions } from './options';
export { trackProcess, measureCommand, ProcessTracker } from './process';
export type {
  ProcessUsage,
  TrackProcessOptions,
  MeasureCommandOptions,
  CommandResult,
  StdioMode,
  StdioEntry,
  EndedBy,
} from './process';
export { renderTimeline, formatBytes } from './timeline';
export type { Timeline, TimelinePoint, RenderOptions } from './timeline';
