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
  /** with `verboseLink`: the link's command lines (ZIG_VERBOSE_LINK) */
  linkLog?: string;
}
export const root: string;
export const GLIBC_FLOOR: string;
export const NAPI_EXPORTS: string[];
export const TARGETS: Record<string, CrossTarget>;
export function targetMissing(name: string): string | null;
export const ZIG_TARGETS: string[];
export interface BuildOptions {
  strip?: boolean;
  /** build each artifact from a stub source (the Zig cache warm-up) */
  stub?: boolean;
  /** return each link's command lines as linkLog instead of printing them */
  verboseLink?: boolean;
}
export function buildTarget(name: string, outDir: string, options?: BuildOptions): Promise<BuiltArtifact[]>;
export function buildTargets(
  names: string[],
  dirOf: (name: string) => string,
  options?: BuildOptions,
): Promise<Record<string, BuiltArtifact[]>>;
export function warmZigCache(names?: string[]): Promise<number>;
export function buildPrebuilds(
  names: string[],
  prebuildsDir: string,
  work: string,
): Promise<{ summary: Record<string, unknown>; problems: string[] }>;
