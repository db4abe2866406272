// Types of scripts/zig.mjs, for the TypeScript tests that import it.
export const ZIG_VERSION: string;
export const ZIG_PACKAGE: string;
export const ZIG_INTEGRITY: string;
export const ZIG_INSTALL: string;
export function zigHome(): string;
export function findZig(): string | null;
export function zigMissing(): string | null;
export function installZig(): string;
