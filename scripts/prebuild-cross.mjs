// npm run prebuild:cross [-- <target>…] — builds every target of scripts/cross-targets.mjs on this Linux x64
// machine (default: all of them), audits each binary (scripts/audit-binaries.mjs), and copies the shipped ones into
// prebuilds/<dir>/, beside (or over) what `npm run prebuild` made, so that `npm pack` ships them:
//   linux-x64 and linux-arm64: taskmeter.glibc.node (glibc ≥ 2.17, no libstdc++) + taskmeter.glibc-exec (static)
//   linux-x64 and linux-arm64: taskmeter.musl.node + taskmeter.musl-exec (static)
//   win32-x64: taskmeter.node
// macOS x64 and arm64 are built and audited in build-darwin-*/ but not shipped (cross-targets.mjs says why).
// Fails if any binary fails its audit. Needs the Zig toolchain (`npm run toolchain:zig`, which `npm run
// prebuild:cross` runs first) and Debian's mingw-w64 (scripts/system-deps.sh).
import { join } from 'node:path';
import { buildPrebuilds, root, TARGETS } from './cross-targets.mjs';

const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(TARGETS);
const t0 = Date.now();
const { summary, problems } = await buildPrebuilds(wanted, join(root, 'prebuilds'), root);
console.log(JSON.stringify(summary, null, 1));
console.log(`prebuild:cross: ${wanted.length} target(s) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
if (problems.length) {
  console.error(`audit failed:\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
