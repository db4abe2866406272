// Checks the linter does not cover: no line of src/ over 120 columns, no suppression comment for a linter that is not
// installed, no reference to a path outside the repository, and native/ formatted by clang-format (.clang-format).
// Part of `npm run lint`.
import { spawnSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// Generated or downloaded folders (see .gitignore): `.runtimes` holds test:ports' wine prefix, whose drive links loop.
const skip = new Set([
  'node_modules',
  'dist',
  'build',
  'build-cmake',
  'build-asan',
  'build-tsan',
  'build-win32',
  'build-win32-x64',
  'build-linux-arm64',
  'prebuilds',
  '.git',
  '.device',
  '.deps',
  '.runtimes',
  'ports-results',
  'coverage',
]);
const text = /\.(c|cc|h|ts|mts|cts|js|mjs|cjs|json|md|sh|yml|yaml|gyp|txt)$|^run$/;

function* files(dir) {
  for (const name of readdirSync(dir)) {
    if (skip.has(name) || name === 'package-lock.json' || name === 'test-results.json') continue;
    const p = join(dir, name);
    const st = lstatSync(p); // never follows a symbolic link
    if (st.isDirectory()) yield* files(p);
    else if (st.isFile() && text.test(name)) yield p;
  }
}

const problems = [];
for (const p of files(root)) {
  const rel = relative(root, p);
  const lines = readFileSync(p, 'utf8').split('\n');
  lines.forEach((line, i) => {
    const at = `${rel}:${i + 1}`;
    if (rel.startsWith('src/') && line.length > 120) problems.push(`${at}: ${line.length} columns (max 120)`);
    if (/eslint-disable/.test(line) && rel !== 'scripts/lint-extra.mjs') {
      problems.push(`${at}: eslint-disable comment (the linter is biome)`);
    }
    if (/\.\.\/shared\b/.test(line) && rel !== 'scripts/lint-extra.mjs') {
      problems.push(`${at}: refers to a path outside the repository`);
    }
  });
}
// native/ as clang-format writes it. clang-format is a system package: without it this check is skipped with a note,
// and fails under TASKMETER_REQUIRE_SYSTEM_DEPS=1 (CI), as the tests that need system packages do.
const nativeFiles = [...files(join(root, 'native'))].filter((p) => /\.(cc|h)$/.test(p));
const cf = spawnSync('clang-format', ['--dry-run', '-Werror', ...nativeFiles], { encoding: 'utf8' });
if (cf.error) {
  const note = 'clang-format not found: native/ formatting not checked (sudo bash scripts/system-deps.sh installs it)';
  if (process.env.TASKMETER_REQUIRE_SYSTEM_DEPS === '1') problems.push(note);
  else console.warn(`lint: ${note}`);
} else if (cf.status !== 0) {
  problems.push(
    `native/ is not clang-formatted (npm run format:native):\n${cf.stderr.split('\n').slice(0, 20).join('\n')}`,
  );
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
