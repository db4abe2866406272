// npm run cross:win32 — compiles and links the Windows x64 addon with Debian's mingw-w64 (the win32-x64 target of
// scripts/cross-targets.mjs) into build-win32/, unstripped, and prints what it imports (its audit). `npm run
// test:ports` runs it under Wine; .github/workflows/prebuild.yml builds and tests it with MSVC on Windows.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { auditBinary } from './audit-binaries.mjs';
import { buildTarget, root } from './cross-targets.mjs';

const out = join(root, 'build-win32');
rmSync(out, { recursive: true, force: true });
const [{ file: dll, artifact }] = await buildTarget('win32-x64', out, { strip: false });
const { problems, facts } = auditBinary(dll, artifact.audit);
const exportsNapi = readFileSync(dll).includes('napi_register_module_v1');
console.log(JSON.stringify({ dll, bytes: readFileSync(dll).length, imports: facts.dlls, exportsNapi, problems }));
