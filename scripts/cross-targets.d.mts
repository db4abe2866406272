// Types of scripts/cross-targets.mjs, for the TypeScript tests that import it.
export interface CrossArtifact {
  kind: 'addon' | 'exe';
  /** the file name in prebuilds/<target>/ */
  file: string;
  /** sources, relative to the repository root (.c compiled as C, the rest as C++) */
  sources: string[];
}
export interface CrossTarget {
  cc: string;
  cxx: string;
  strip: string;
  flags: string[];
  addonLink: string[];
  exeLink: string[];
  nodeImportLib?: boolean;
  artifacts: CrossArtifact[];
}
export const root: string;
export const TARGETS: Record<string, CrossTarget>;
export function buildTarget(name: string, outDir: string, options?: { strip?: boolean }): string[];
