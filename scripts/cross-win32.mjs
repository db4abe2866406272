// npm run cross:win32 — compiles and links the Windows x64 addon with Debian's mingw-w64 (the win32-x64 target of
// scripts/cross-targets.mjs) into build-win32/, unstripped, and prints what it imports. `npm run test:ports` runs
// it under Wine; .github/workflows/prebuild.yml builds and tests it with MSVC on Windows.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildTarget, root } from './cross-targets.mjs';

const out = join(root, 'build-win32');
rmSync(out, { recursive: true, force: true });
const [dll] = buildTarget('win32-x64', out, { strip: false });
const dump = execFileSync('x86_64-w64-mingw32-objdump', ['-p', dll]).toString();
const imports = [...dump.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1]);
const exportsNapi = /napi_register_module_v1/.test(dump);
console.log(JSON.stringify({ dll, bytes: readFileSync(dll).length, imports, exportsNapi }));
