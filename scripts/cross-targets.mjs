// The platforms built on this Linux x64 machine with Debian's cross compilers (installed by scripts/system-deps.sh),
// and what each ships in prebuilds/<platform>-<arch>/. One table: to ship one more file for a platform (a helper
// executable, say), add an artifact to its list; prebuild:cross, cross:win32 and test:ports all read this table.
//
// File names are the ones node-gyp-build looks up: it splits the name on '.' and matches the tags it knows
// ('glibc'/'musl', 'napi', 'abi…', …); a name without tags matches any libc. prebuildify (linux-x64, `npm run
// prebuild`) writes taskmeter.glibc.node; we write the same for linux-arm64, and taskmeter.node for Windows (no libc).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const sources = JSON.parse(readFileSync(join(root, 'sources.json'), 'utf8'));

// C sources (the exec helper) get only these and the target's flags.
const cCommon = ['-std=c11', '-O2', '-Wall', '-Wextra'];
const common = [
  '-std=c++17',
  '-O2',
  '-Wall',
  '-Wextra',
  '-Wno-unused-parameter',
  '-DNAPI_VERSION=8',
  '-DNAPI_DISABLE_CPP_EXCEPTIONS',
  '-DNODE_ADDON_API_DISABLE_DEPRECATED',
];

export const TARGETS = {
  'linux-arm64': {
    cc: 'aarch64-linux-gnu-gcc',
    cxx: 'aarch64-linux-gnu-g++',
    strip: 'aarch64-linux-gnu-strip',
    flags: ['-fPIC', '-fvisibility=hidden', '-pthread'],
    // Node-API symbols stay undefined in the shared object; node resolves them at load, as node-gyp's build does.
    addonLink: ['-shared', '-pthread', '-ldl'],
    exeLink: ['-pthread'],
    artifacts: [
      { kind: 'addon', file: 'taskmeter.glibc.node', sources: [...sources.common, ...sources.linux] },
      // The exec helper, named as the addon looks for it: "<addon without .node>-exec" (native/spawn_posix.cc).
      { kind: 'exe', file: 'taskmeter.glibc-exec', sources: sources.helper },
    ],
  },
  'win32-x64': {
    cc: 'x86_64-w64-mingw32-gcc-posix',
    cxx: 'x86_64-w64-mingw32-g++-posix',
    strip: 'x86_64-w64-mingw32-strip',
    flags: ['-Wno-cast-function-type', '-DWIN32_LEAN_AND_MEAN', '-DNOMINMAX', '-D_WIN32_WINNT=0x0A00'],
    // -static: libstdc++, libgcc and winpthread inside the DLL, so that it needs nothing beyond Windows and
    // node.exe; the Node-API functions come from an import library of node.exe made from node-api-headers' .def.
    addonLink: ['-shared', '-static', '-lpsapi'],
    exeLink: ['-static'],
    nodeImportLib: true,
    artifacts: [{ kind: 'addon', file: 'taskmeter.node', sources: [...sources.common, ...sources.win32] }],
  },
};

const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });

/**
 * Builds every artifact of one target into outDir (object files in outDir/obj). Returns the artifacts' paths.
 * An artifact is { kind: 'addon' | 'exe', file, sources } (sources relative to the repository root).
 */
export function buildTarget(name, outDir, { strip = true } = {}) {
  const t = TARGETS[name];
  if (!t) throw new Error(`unknown target ${name}; known: ${Object.keys(TARGETS).join(', ')}`);
  const headers = dirname(require.resolve('node-api-headers/package.json'));
  const addonApi = require('node-addon-api').include_dir.replace(/^"|"$/g, '');
  const includes = [`-I${join(headers, 'include')}`, `-I${join(root, addonApi)}`, `-I${join(root, 'native')}`];
  const objDir = join(outDir, 'obj');
  mkdirSync(objDir, { recursive: true });
  let nodeLib = null;
  if (t.nodeImportLib) {
    nodeLib = join(objDir, 'node_api.a');
    run('x86_64-w64-mingw32-dlltool', ['-d', join(headers, 'def/node_api.def'), '-l', nodeLib]);
  }
  const built = [];
  for (const a of t.artifacts) {
    const objects = a.sources.map((src) => {
      const obj = join(objDir, `${a.file}-${basename(src).replace(/\.(cc|c)$/, '.o')}`);
      const isC = src.endsWith('.c');
      run(isC ? t.cc : t.cxx, [...(isC ? cCommon : common), ...t.flags, ...includes, '-c', join(root, src), '-o', obj]);
      return obj;
    });
    const out = join(outDir, a.file);
    // An executable of C sources only is linked as C (no libstdc++ to find on the target).
    const linker = a.sources.every((src) => src.endsWith('.c')) ? t.cc : t.cxx;
    if (a.kind === 'addon') run(t.cxx, ['-o', out, ...objects, ...(nodeLib ? [nodeLib] : []), ...t.addonLink]);
    else run(linker, ['-o', out, ...objects, ...t.exeLink]);
    if (strip) run(t.strip, [out]);
    built.push(out);
  }
  return built;
}
