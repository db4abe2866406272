// npm run prebuild:cross [-- <target>…] — builds the N-API prebuilds for linux-arm64 (glibc) and win32-x64 on this
// Linux x64 machine into prebuilds/<target>/, beside the linux-x64 one `npm run prebuild` makes, so that `npm pack`
// ships all three. Targets and their files: scripts/cross-targets.mjs.
import { copyFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { buildTarget, root, TARGETS } from './cross-targets.mjs';

const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(TARGETS);
const summary = {};
for (const name of wanted) {
  const work = join(root, `build-${name}`);
  rmSync(work, { recursive: true, force: true });
  const files = buildTarget(name, work);
  const dest = join(root, 'prebuilds', name);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  summary[name] = files.map((f) => {
    copyFileSync(f, join(dest, basename(f)));
    return `${basename(f)} (${statSync(f).size} bytes)`;
  });
}
console.log(JSON.stringify(summary));
