// Types of scripts/cross-targets.mjs, for the TypeScript tests that import it.
import type { AuditPolicy } from './audit-binaries.mjs';

export interface CrossArtifact {
  kind: 'addon' | 'exe';
  /** the file name in prebuilds/<dir>/ */
  file: string;
  /** sources, relative to the repository root (.c compiled as C, the rest as C++) */
  sources: string[];
  /** a Zig target of its own (the Linux exec helper: static musl) */
  zigTarget?: string;
  link?: string[];
  /** what the binary may need from the machine that loads it */
  audit: AuditPolicy;
}
export interface CrossTarget {
  platform: 'linux' | 'win32' | 'darwin';
  arch: 'x64' | 'arm64';
  libc?: 'glibc' | 'musl';
  /** prebuilds/<dir>/ */
  dir: string;
  /** copied into prebuilds/ and packed (false: compiled, linked and audited only) */
  ship: boolean;
  toolchain: 'zig' | 'mingw';
  zigTarget?: string;
  cc?: string;
  cxx?: string;
  strip?: string;
  flags: string[];
  addonLink: string[];
  exeLink?: string[];
  nodeImportLib?: boolean;
  artifacts: CrossArtifact[];
}
export interface BuiltArtifact {
  file: string;
  artifact: CrossArtifact;
}
export const root: string;
export const GLIBC_FLOOR: string;
export const NAPI_EXPORTS: string[];
export const TARGETS: Record<string, CrossTarget>;
export function targetMissing(name: string): string | null;
export function buildTarget(name: string, outDir: string, options?: { strip?: boolean }): Promise<BuiltArtifact[]>;
export function buildPrebuilds(
  names: string[],
  prebuildsDir: string,
  work: string,
): Promise<{ summary: Record<string, unknown>; problems: string[] }>;
