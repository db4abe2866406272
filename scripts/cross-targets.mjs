// The one table of the platforms we build on this Linux x64 machine, what each ships in prebuilds/<dir>/, and what
// each shipped binary may need from the machine that loads it (its audit policy, scripts/audit-binaries.mjs).
// prebuild:cross, cross:win32, test:ports, test:runtimes and the tests all read it; the sources come from
// sources.json (common + the OS's; the exec helper's), so a file added there is built for every target.
//
// Toolchains:
//  - Zig 0.11 (scripts/zig.mjs: clang 16 + lld, with glibc stubs of every version, musl, macOS libSystem) for Linux
//    glibc, Linux musl and macOS. The glibc targets link against glibc 2.17's symbols (x86_64-linux-gnu.2.17): the
//    prebuild loads on any glibc ≥ 2.17 (CentOS/RHEL 7 and everything after). The C++ runtime is LLVM's libc++ +
//    libc++abi + libunwind, linked in statically, with every symbol but Node-API's entry points hidden (a version
//    script): nothing of it can be interposed by, or interpose on, the libstdc++ that Node itself loads, no
//    libstdc++ is needed at all, and no C++ exception crosses the N-API boundary (there is none to cross: the
//    interface is C). Why not static libstdc++: the one here is built against Debian's glibc 2.36 and pulls in
//    arc4random (2.36) and _dl_find_object (2.35), so it would bind us to the host's glibc again.
//  - the exec helper (a C program) is linked statically against musl for Linux, glibc and musl alike: it needs no
//    library at all (NEEDED empty, no interpreter) and runs on any Linux kernel.
//  - mingw-w64 (Debian's, posix threads) for Windows: libstdc++, libgcc and winpthread linked in statically.
//
// File names are the ones node-gyp-build looks up: it splits the name on '.' and matches the tags it knows
// ('glibc'/'musl', 'napi', 'abi…', …); a name without a libc tag matches any libc. On Linux the glibc and musl
// builds share prebuilds/linux-<arch>/ (taskmeter.glibc.node, taskmeter.musl.node), and node-gyp-build picks by
// the libc it detects (musl where /etc/alpine-release exists, or LIBC=musl). The helper sits beside its addon,
// named as the addon finds it: "<addon without .node>-exec" (native/spawn_posix.cc).
//
// macOS targets are compiled and linked (with -Werror) and audited, but not shipped (`ship: false`): nothing here
// can run them, so macOS installs compile from source until the workflow has run them on macOS.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findZig, zigMissing } from './zig.mjs';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const sources = JSON.parse(readFileSync(join(root, 'sources.json'), 'utf8'));

// Warnings are errors on every target: a port that only builds with warnings is not clean on that platform.
const cCommon = ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror'];
const cxxCommon = [
  '-std=c++17',
  '-O2',
  '-Wall',
  '-Wextra',
  '-Werror',
  '-Wno-unused-parameter',
  // binding.gyp's defines
  '-DNAPI_VERSION=8',
  '-DNAPI_DISABLE_CPP_EXCEPTIONS',
  '-DNODE_ADDON_API_DISABLE_DEPRECATED',
  '-DNODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS',
];

/** Node-API's entry points: the only symbols a shared-object addon exports. */
export const NAPI_EXPORTS = ['napi_register_module_v1', 'node_api_module_get_api_version_v1'];
const exportsMap = `{\n  global: ${NAPI_EXPORTS.join('; ')};\n  local: *;\n};\n`;

/** The highest glibc whose symbols a glibc prebuild may need. */
export const GLIBC_FLOOR = '2.17';
// glibc's libraries as glibc 2.17 had them (pthread and dl were separate until 2.34).
const glibcLibs = (loader) => ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', loader];
// A dlopen'ed library with initial-exec TLS takes from glibc's static TLS surplus, of which glibc ≥ 2.32 keeps 512
// bytes for such libraries (rtld.optional_static_tls); older ones about 1,600 bytes in all.
const MAX_STATIC_TLS = 512;

// The static exec helper of one architecture (Linux, glibc and musl alike).
const linuxHelper = (arch, file) => ({
  kind: 'exe',
  file,
  sources: sources.helper,
  zigTarget: `${arch}-linux-musl`,
  link: ['-static'],
  audit: { format: 'elf', machine: arch, needed: [], maxVersions: {}, interp: false },
});

function linux(arch, libc) {
  const loader = arch === 'x86_64' ? 'ld-linux-x86-64.so.2' : 'ld-linux-aarch64.so.1';
  const node = arch === 'x86_64' ? 'x64' : 'arm64';
  const glibc = libc === 'glibc';
  return {
    platform: 'linux',
    arch: node,
    libc,
    dir: `linux-${node}`,
    ship: true,
    toolchain: 'zig',
    zigTarget: glibc ? `${arch}-linux-gnu.${GLIBC_FLOOR}` : `${arch}-linux-musl`,
    flags: ['-fPIC', '-fvisibility=hidden'],
    addonLink: ['-shared', '-Wl,--version-script=$EXPORTS', ...(glibc ? ['-lpthread', '-ldl'] : [])],
    artifacts: [
      {
        kind: 'addon',
        file: `taskmeter.${libc}.node`,
        sources: [...sources.common, ...sources.linux],
        audit: {
          format: 'elf',
          machine: arch,
          // musl: its libc.so is the whole C library (and the loader); musl's loader takes any libc.*/libpthread.*/
          // libm.*/libdl.* name for itself. musl has no symbol versions.
          needed: glibc ? glibcLibs(loader) : ['libc.so'],
          maxVersions: glibc ? { GLIBC: GLIBC_FLOOR } : {},
          interp: false,
          exports: NAPI_EXPORTS,
          maxStaticTlsBytes: MAX_STATIC_TLS,
        },
      },
      linuxHelper(arch, `taskmeter.${libc}-exec`),
    ],
  };
}

function darwin(arch) {
  const node = arch === 'x86_64' ? 'x64' : 'arm64';
  const dylibs = ['/usr/lib/libSystem.B.dylib'];
  return {
    platform: 'darwin',
    arch: node,
    dir: `darwin-${node}`,
    ship: false,
    toolchain: 'zig',
    // binding.gyp's MACOSX_DEPLOYMENT_TARGET
    zigTarget: `${arch}-macos.11.0`,
    flags: ['-fPIC', '-fvisibility=hidden'],
    // Node-API's functions are found in the loading process at load time, as node-gyp links on macOS
    addonLink: ['-shared', '-Wl,-undefined,dynamic_lookup'],
    artifacts: [
      {
        kind: 'addon',
        file: 'taskmeter.node',
        sources: [...sources.common, ...sources.darwin],
        audit: { format: 'macho', machine: arch, dylibs, dynamicLookup: /^_(napi|node_api)_/ },
      },
      {
        kind: 'exe',
        file: 'taskmeter-exec',
        sources: sources.helper,
        link: [],
        audit: { format: 'macho', machine: arch, dylibs },
      },
    ],
  };
}

export const TARGETS = {
  'linux-x64': linux('x86_64', 'glibc'),
  'linux-arm64': linux('aarch64', 'glibc'),
  'linuxmusl-x64': linux('x86_64', 'musl'),
  'linuxmusl-arm64': linux('aarch64', 'musl'),
  'win32-x64': {
    platform: 'win32',
    arch: 'x64',
    dir: 'win32-x64',
    ship: true,
    toolchain: 'mingw',
    cc: 'x86_64-w64-mingw32-gcc-posix',
    cxx: 'x86_64-w64-mingw32-g++-posix',
    strip: 'x86_64-w64-mingw32-strip',
    flags: ['-Wno-cast-function-type', '-DWIN32_LEAN_AND_MEAN', '-DNOMINMAX', '-D_WIN32_WINNT=0x0A00'],
    // -static: libstdc++, libgcc and winpthread inside the DLL, so that it needs nothing beyond Windows and
    // node.exe; the Node-API functions come from an import library of node.exe made from node-api-headers' .def.
    addonLink: ['-shared', '-static', '-lpsapi'],
    nodeImportLib: true,
    artifacts: [
      {
        kind: 'addon',
        file: 'taskmeter.node',
        sources: [...sources.common, ...sources.win32],
        audit: { format: 'pe', machine: 'x86_64', dlls: ['KERNEL32.dll', 'msvcrt.dll', 'node.exe'] },
      },
    ],
  },
  'darwin-x64': darwin('x86_64'),
  'darwin-arm64': darwin('aarch64'),
};

/** Why a target cannot be built here (null when it can). */
export function targetMissing(name) {
  const t = TARGETS[name];
  return t.toolchain === 'zig' ? zigMissing() : null;
}

// Runs a command; resolves with its stderr, which is also echoed unless `quiet`.
function exec(cmd, args, { env = process.env, quiet = false } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'pipe'], env });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
      if (!quiet) process.stderr.write(d);
    });
    p.on('error', reject);
    p.on('close', (code, signal) =>
      code === 0 ? resolve(err) : reject(new Error(`${basename(cmd)} ${args.join(' ')}: ${code ?? signal}\n${err}`)),
    );
  });
}

// Runs the jobs (functions returning promises) a few at a time: one per core.
async function pool(jobs) {
  const results = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs.length, availableParallelism()) }, worker));
  return results;
}

// Targets are built a few at once too, as many as there are cores: most of a build on a cold Zig cache is Zig
// building the target's C++ runtime, compiler-rt and C library, and parts of that run on one core (compiler-rt is
// one compilation unit; the archives and glibc's stubs are written by one thread), so a second target keeps the
// other core busy. Concurrent zig processes share the one global cache (~/.cache/zig, or ZIG_GLOBAL_CACHE_DIR):
// Zig locks each cache entry while it builds it, and a process that needs an entry another is building waits for
// it and then uses it (the x86_64 helpers of the glibc and musl targets are the same static musl program).

// What the cache warm-up links instead of the sources (each artifact keeps its own toolchain, target and flags):
// the smallest program of each kind that links as the real one does (the version script names Node-API's entry
// points, so the addon stub defines them).
const STUBS = {
  c: 'int main(void) { return 0; }\n',
  cc: NAPI_EXPORTS.map(
    (f) => `extern "C" __attribute__((visibility("default"))) void *${f}(void *, void *) { return nullptr; }\n`,
  ).join(''),
};

/**
 * Builds every artifact of one target into outDir (object files in outDir/obj), stripped unless told otherwise.
 * Returns [{ file, artifact }]: the artifacts' paths (named as shipped) and their table entries.
 * `stub: true` builds each artifact from a stub source instead of its own (warmZigCache): the same toolchain,
 * target, flags and link, so Zig builds and caches exactly the runtime libraries the real build links.
 * `verboseLink: true` (Zig targets) returns each link's command lines as `linkLog` (ZIG_VERBOSE_LINK) instead of
 * printing them: the linker's inputs, among them the runtime libraries from Zig's cache.
 */
export async function buildTarget(name, outDir, { strip = true, stub = false, verboseLink = false } = {}) {
  const t = TARGETS[name];
  if (!t) throw new Error(`unknown target ${name}; known: ${Object.keys(TARGETS).join(', ')}`);
  const missing = targetMissing(name);
  if (missing) throw new Error(`${name}: ${missing}`);
  const zig = t.toolchain === 'zig' ? findZig() : null;
  const tool = (lang, target) =>
    zig ? [zig, [lang === 'c' ? 'cc' : 'c++', '-target', target]] : [lang === 'c' ? t.cc : t.cxx, []];
  const objDir = join(outDir, 'obj');
  mkdirSync(objDir, { recursive: true });
  const stubs = { c: join(objDir, 'stub.c'), cc: join(objDir, 'stub.cc') };
  if (stub) for (const ext of ['c', 'cc']) writeFileSync(stubs[ext], STUBS[ext]);
  // the stubs include nothing (the warm-up runs before npm ci has installed these headers)
  const headers = stub ? null : dirname(require.resolve('node-api-headers/package.json'));
  const includes = stub
    ? []
    : [
        `-I${join(headers, 'include')}`,
        `-I${join(root, require('node-addon-api').include_dir.replace(/^"|"$/g, ''))}`,
        `-I${join(root, 'native')}`,
      ];
  const exportsFile = join(objDir, 'exports.map');
  writeFileSync(exportsFile, exportsMap);
  let nodeLib = null;
  if (t.nodeImportLib && !stub) {
    nodeLib = join(objDir, 'node_api.a');
    await exec('x86_64-w64-mingw32-dlltool', ['-d', join(headers, 'def/node_api.def'), '-l', nodeLib]);
  }
  // an executable of C sources only is linked as C (no C++ runtime to find on the target)
  const allC = (a) => a.sources.every((src) => src.endsWith('.c'));
  const sourcesOf = (a) =>
    stub ? [a.kind === 'addon' || !allC(a) ? stubs.cc : stubs.c] : a.sources.map((src) => join(root, src));
  // every object of every artifact, compiled in parallel; then the artifacts linked, in parallel too
  const compiles = t.artifacts.flatMap((a) =>
    sourcesOf(a).map((src) => {
      const isC = src.endsWith('.c');
      const [cc, pre] = tool(isC ? 'c' : 'c++', a.zigTarget ?? t.zigTarget);
      const rel = src.startsWith(`${root}/`) ? src.slice(root.length + 1) : basename(src);
      const obj = join(objDir, `${a.file}-${rel.replace(/\//g, '_').replace(/\.(cc|c)$/, '.o')}`);
      const args = [...pre, ...(isC ? cCommon : cxxCommon), ...t.flags, ...includes, '-c', src, '-o', obj];
      return { a, obj, job: () => exec(cc, args) };
    }),
  );
  await pool(compiles.map((c) => c.job));
  const links = t.artifacts.map((a) => async () => {
    const objects = compiles.filter((c) => c.a === a).map((c) => c.obj);
    const out = join(outDir, a.file);
    const [cc, pre] = tool(a.kind === 'addon' || !allC(a) ? 'c++' : 'c', a.zigTarget ?? t.zigTarget);
    const link =
      a.kind === 'addon'
        ? [...t.addonLink.map((f) => f.replace('$EXPORTS', exportsFile)), ...(nodeLib ? [nodeLib] : [])]
        : (a.link ?? t.exeLink ?? []);
    // zig links with lld, which strips as it links (Mach-O: zig's own linker, left as it is). -O2 at the link is
    // what makes zig build the C++ runtime (libc++, libc++abi, libunwind) and compiler-rt it links in as release
    // code; without it they are debug builds, which is enough (and cheaper to build) for targets we do not ship.
    // Every build of a target (prebuild:cross, test:ports, test:runtimes, the tests, the warm-up) links with these
    // same flags, so each runtime library is built once per target and mode, then found in Zig's cache.
    const zigLink = zig && t.ship ? ['-O2', ...(strip ? ['-Wl,--strip-all'] : [])] : [];
    const linkEnv = verboseLink ? { ...process.env, ZIG_VERBOSE_LINK: '1' } : process.env;
    const log = await exec(cc, [...pre, '-o', out, ...objects, ...link, ...zigLink], {
      env: linkEnv,
      quiet: verboseLink,
    });
    if (strip && t.strip) await exec(t.strip, [out]);
    return { file: out, artifact: a, ...(verboseLink ? { linkLog: log } : {}) };
  });
  return pool(links);
}

/** The targets Zig builds (the ones a cold Zig cache makes slow). */
export const ZIG_TARGETS = Object.keys(TARGETS).filter((n) => TARGETS[n].toolchain === 'zig');

/**
 * Builds the named targets at once (each in dirOf(name)), a few at a time. Returns { <name>: [{ file, artifact }] }.
 */
export async function buildTargets(names, dirOf, options) {
  const built = await pool(names.map((name) => () => buildTarget(name, dirOf(name), options)));
  return Object.fromEntries(names.map((name, i) => [name, built[i]]));
}

/**
 * Fills Zig's cache with every runtime library the Zig targets link (C++ runtime, compiler-rt, C library and
 * startup files, glibc's stubs), by linking a stub of each artifact exactly as buildTarget links the real one
 * (`node scripts/zig.mjs warm`; .ci/run starts it before anything else, so that it overlaps the installs). Needs
 * only Zig: no node_modules, no system package. Returns the seconds it took.
 */
export async function warmZigCache(names = ZIG_TARGETS) {
  const start = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'taskmeter-zig-warm-'));
  try {
    await buildTargets(names, (name) => join(work, name), { stub: true });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return (Date.now() - start) / 1000;
}

/**
 * Builds the named targets (each in work/build-<name>/), audits every binary against its policy, and copies the
 * shipped ones into prebuildsDir/<dir>/. Returns { summary, problems }: a summary per target (seconds, each file's
 * size, NEEDED and highest symbol versions, or dylibs/DLLs) and every audit problem ("<target>: <file>: …").
 */
export async function buildPrebuilds(names, prebuildsDir, work) {
  // imported here: audit-binaries.mjs's command line imports this file
  const { auditBinary } = await import('./audit-binaries.mjs');
  const one = async (name) => {
    const t = TARGETS[name];
    if (!t) throw new Error(`unknown target ${name}; known: ${Object.keys(TARGETS).join(', ')}`);
    const start = Date.now();
    const dir = join(work, `build-${name}`);
    rmSync(dir, { recursive: true, force: true });
    const built = await buildTarget(name, dir);
    const dest = join(prebuildsDir, t.dir);
    if (t.ship) mkdirSync(dest, { recursive: true });
    const problems = [];
    const summary = {
      shipped: t.ship ? `${t.dir}/` : `no (built in ${dir})`,
      // wall time, while other targets were building beside it
      seconds: Math.round((Date.now() - start) / 100) / 10,
      files: built.map(({ file, artifact }) => {
        const audit = auditBinary(file, artifact.audit);
        problems.push(...audit.problems.map((p) => `${name}: ${p}`));
        if (t.ship) copyFileSync(file, join(dest, basename(file)));
        const f = audit.facts;
        return {
          file: basename(file),
          bytes: statSync(file).size,
          ...(f.format === 'elf' ? { needed: f.needed, highest: f.highest } : {}),
          ...(f.format === 'macho' ? { dylibs: f.dylibs } : {}),
          ...(f.format === 'pe' ? { dlls: f.dlls } : {}),
        };
      }),
    };
    return { summary, problems };
  };
  const results = await pool(names.map((name) => () => one(name)));
  return {
    summary: Object.fromEntries(names.map((name, i) => [name, results[i].summary])),
    problems: results.flatMap((r) => r.problems),
  };
}
