// Types of scripts/audit-binaries.mjs, for the TypeScript tests that import it.
export type AuditPolicy =
  | {
      format: 'elf';
      machine: string;
      needed: string[];
      maxVersions: Record<string, string>;
      interp: boolean;
      exports?: string[];
      maxStaticTlsBytes?: number;
    }
  | { format: 'macho'; machine: string; dylibs: string[]; dynamicLookup?: RegExp }
  | { format: 'pe'; machine: string; dlls: string[] };
export interface ElfFacts {
  format: 'elf';
  type: string;
  machine: string;
  interp: string | null;
  needed: string[];
  versions: { file: string; name: string }[];
  highest: Record<string, string>;
  exports: string[];
  staticTls: boolean;
  tlsBytes: number;
}
export interface MachOFacts {
  format: 'macho';
  type: string;
  machine: string;
  dylibs: string[];
  undefinedSymbols: { name: string; from: string }[];
}
export interface PeFacts {
  format: 'pe';
  machine: string;
  dlls: string[];
}
export function compareVersions(a: string, b: string): number;
export function readElf(buf: Buffer): ElfFacts;
export function readMachO(buf: Buffer): MachOFacts;
export function readPe(buf: Buffer): PeFacts;
export function auditBinary(
  file: string,
  policy: AuditPolicy,
): { problems: string[]; facts: ElfFacts | MachOFacts | PeFacts };
