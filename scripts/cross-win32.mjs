// npm run cross:win32 — compiles and links the addon for Windows x64 with Debian's mingw-w64 (posix threads),
// against Node-API's import definitions (node-api-headers), into build-win32/taskmeter.node. It proves the win32
// port builds and links; running it needs Windows (the CI prebuild matrix, .github/workflows/prebuild.yml).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const cxx = 'x86_64-w64-mingw32-g++-posix';
const headers = dirname(require.resolve('node-api-headers/package.json'));
const addonApi = require('node-addon-api').include_dir.replace(/^"|"$/g, '');
const out = join(root, 'build-win32');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const sources = JSON.parse(readFileSync(join(root, 'sources.json'), 'utf8'));
const flags = [
  '-std=c++17', '-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Wno-cast-function-type',
  '-DNAPI_VERSION=8', '-DNAPI_DISABLE_CPP_EXCEPTIONS', '-DNODE_ADDON_API_DISABLE_DEPRECATED',
  '-DWIN32_LEAN_AND_MEAN', '-DNOMINMAX', '-D_WIN32_WINNT=0x0A00',
  `-I${join(headers, 'include')}`, `-I${join(root, addonApi)}`, `-I${join(root, 'native')}`,
];
const objects = [];
for (const src of [...sources.common, ...sources.win32]) {
  const obj = join(out, basename(src).replace(/\.cc$/, '.o'));
  execFileSync(cxx, [...flags, '-c', join(root, src), '-o', obj], { stdio: 'inherit' });
  objects.push(obj);
}
// An import library for the Node-API functions, which node.exe exports.
const implib = join(out, 'node_api.a');
execFileSync('x86_64-w64-mingw32-dlltool', ['-d', join(headers, 'def/node_api.def'), '-l', implib], { stdio: 'inherit' });
const dll = join(out, 'taskmeter.node');
// -static: libstdc++, libgcc and winpthread inside the DLL, so that it needs nothing beyond Windows and node.exe
execFileSync(cxx, ['-shared', '-static', '-o', dll, ...objects, implib, '-lpsapi'], { stdio: 'inherit' });
const dump = execFileSync('x86_64-w64-mingw32-objdump', ['-p', dll]).toString();
const imports = [...dump.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1]);
const exportsNapi = /napi_register_module_v1/.test(dump);
console.log(JSON.stringify({ dll, bytes: readFileSync(dll).length, imports, exportsNapi }));
