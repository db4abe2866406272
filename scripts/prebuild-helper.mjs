// Runs after prebuildify (npm run prebuild): puts the exec helper that node-gyp built into build/Release beside each
// prebuilt addon, named as the addon finds it at run time ("<addon without .node>-exec"), stripped like the addon.
// node-gyp-build only looks at *.node files, so the helper does not disturb the prebuild selection.
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (process.platform === 'win32') process.exit(0); // no helper on Windows
const helper = join(root, 'build/Release/taskmeter-exec');
if (!existsSync(helper))
  throw new Error(`prebuild-helper: ${helper} was not built (binding.gyp target taskmeter-exec)`);
const dir = join(root, 'prebuilds', `${process.platform}-${process.env.PREBUILD_ARCH || process.arch}`);
const addons = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
if (addons.length === 0) throw new Error(`prebuild-helper: no prebuilt addon in ${dir}`);
for (const addon of addons) {
  const dest = join(dir, addon.replace(/\.node$/, '-exec'));
  copyFileSync(helper, dest);
  chmodSync(dest, 0o755);
  try {
    execFileSync(process.env.STRIP || 'strip', [dest]);
  } catch {
    // no strip: ship it unstripped
  }
  console.log(`prebuild-helper: ${dest}`);
}
