// The prebuilt binaries we ship, audited as auditwheel audits manylinux wheels: every Linux binary (the addon and
// the exec helper; glibc and musl; x64 and arm64) built from the one target table (scripts/cross-targets.mjs),
// then read back for what it needs from the machine that loads it. The macOS targets are compiled and linked
// with -Werror and audited the same way (not shipped). The audit itself is checked to refuse what would not load:
// a library built here with the host's g++ (glibc 2.36, libstdc++).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ElfFacts, MachOFacts } from '../scripts/audit-binaries.mjs';
import { auditBinary, compareVersions, readElf } from '../scripts/audit-binaries.mjs';
import type { BuiltArtifact } from '../scripts/cross-targets.mjs';
import { buildTargets, GLIBC_FLOOR, NAPI_EXPORTS, TARGETS } from '../scripts/cross-targets.mjs';
import { lastJson, requireSystemTool, root, run } from './helpers';

const noZig = requireSystemTool('zig');
const skipReason = noZig ? ` (skipped: ${noZig})` : '';
const work = mkdtempSync(join(tmpdir(), 'taskmeter-prebuilds-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let built: Record<string, BuiltArtifact[]> = {};
const linuxTargets = Object.keys(TARGETS).filter((n) => TARGETS[n].platform === 'linux');
const darwinTargets = Object.keys(TARGETS).filter((n) => TARGETS[n].platform === 'darwin');
const zigTargets = [...linuxTargets, ...darwinTargets];

// What one link took from Zig's cache (C++ runtime, compiler-rt, C library and startup files, glibc's stubs): the
// cache entries (<cache>/o/<hash>/<file>) on the linker's command line (ld.lld, or zig's own Mach-O linker), which
// is the line that writes the artifact.
function linkedFromZigCache(b: BuiltArtifact): string[] {
  const line = (b.linkLog ?? '').split('\n').find((l) => l.includes(` -o ${b.file}`)) ?? '';
  return [...new Set(line.split(/\s+/).filter((w) => /\/o\/[0-9a-f]{32}\//.test(w)))].sort();
}

describe.skipIf(noZig)(`the prebuilds built by Zig${skipReason}`, () => {
  // One build of every Zig target for the tests below, with the flags of the shipped build (so from the same Zig
  // cache entries: minutes on a cold cache, seconds warm; .ci/run warms it first with `node scripts/zig.mjs warm`).
  beforeAll(async () => {
    built = await buildTargets(zigTargets, (name) => join(work, name), { verboseLink: true });
  }, 1_500_000);

  it.each(linuxTargets)(
    `%s: every shipped binary passes the audit (glibc: no symbol newer than GLIBC_${GLIBC_FLOOR}, NEEDED only glibc's own libraries; musl: NEEDED only libc.so; no libstdc++; only Node-API's entry points exported; a static exec helper)`,
    (name) => {
      const t = TARGETS[name];
      const files = built[name];
      expect(files.map((b) => b.artifact.file).sort()).toEqual(t.artifacts.map((a) => a.file).sort());
      for (const { file, artifact } of files) {
        const audit = auditBinary(file, artifact.audit);
        expect(audit.problems).toEqual([]);
        const facts = audit.facts as ElfFacts;
        expect(
          facts.needed.some((l: string) => /stdc\+\+|gcc_s|c\+\+/.test(l)),
          facts.needed.join(),
        ).toBe(false);
        if (artifact.kind === 'addon') {
          expect(facts.exports).toEqual([...NAPI_EXPORTS].sort());
          if (t.libc === 'glibc') {
            expect(compareVersions(facts.highest.GLIBC, GLIBC_FLOOR)).toBeLessThanOrEqual(0);
            expect(facts.needed).toContain('libc.so.6');
          } else {
            expect(facts.needed).toEqual(['libc.so']);
            expect(facts.versions).toEqual([]);
          }
        } else {
          // a static executable: no loader, no library, on any Linux
          expect(facts).toMatchObject({ needed: [], interp: null, versions: [] });
        }
        // stripped: no .symtab section name left in the file
        expect(readFileSync(file).includes('.symtab\0'), `${file} is not stripped`).toBe(false);
      }
    },
  );

  it.each(darwinTargets)(
    '%s: the addon and the exec helper compile and link with -Wall -Wextra -Werror; the addon needs only libSystem and Node-API (looked up in node)',
    (name) => {
      for (const { file, artifact } of built[name]) {
        const audit = auditBinary(file, artifact.audit);
        expect(audit.problems).toEqual([]);
        const facts = audit.facts as MachOFacts;
        expect(facts.dylibs).toEqual(['/usr/lib/libSystem.B.dylib']);
        const fromNode = facts.undefinedSymbols.filter((s) => s.from === 'dynamic_lookup');
        if (artifact.kind === 'addon') {
          expect(fromNode.map((s) => s.name)).toContain('_napi_create_threadsafe_function');
          expect(facts.undefinedSymbols.map((s) => s.name)).toContain('_proc_pidinfo'); // libproc, in libSystem
        } else {
          expect(fromNode).toEqual([]);
        }
      }
    },
  );

  it("the Zig cache warm-up (`node scripts/zig.mjs warm`, which .ci/run starts first) builds the very runtime libraries each artifact links: a stub of it, linked as the real one is, takes the same entries from Zig's cache", async () => {
    const stubs = await buildTargets(zigTargets, (name) => join(work, `stub-${name}`), {
      stub: true,
      verboseLink: true,
    });
    for (const name of zigTargets) {
      for (const a of TARGETS[name].artifacts) {
        const real = linkedFromZigCache(built[name].find((b) => b.artifact === a)!);
        const stub = linkedFromZigCache(stubs[name].find((b) => b.artifact === a)!);
        // every artifact links compiler-rt from the cache; a C++ one its C++ runtime too
        expect(
          real.some((f) => f.endsWith('/libcompiler_rt.a')),
          `${name} ${a.file}: ${real.join(' ')}`,
        ).toBe(true);
        if (a.kind === 'addon') expect(real.some((f) => f.endsWith('/libc++.a'))).toBe(true);
        expect(stub, `${name} ${a.file}`).toEqual(real);
      }
    }
  }, 600_000);

  it('the linux-x64 prebuild loads in this Node, and its static exec helper runs the command and reports its exact peak', async () => {
    const [addon, helper] = ['taskmeter.glibc.node', 'taskmeter.glibc-exec'].map(
      (f) => built['linux-x64'].find((b) => b.artifact.file === f)!.file,
    );
    const load = await run(process.execPath, [
      '-e',
      `const m = require(${JSON.stringify(addon)}); console.log(JSON.stringify({ spawn: typeof m.spawn, slots: m.SPAWN_SLOTS }))`,
    ]);
    expect(load.code, load.stderr).toBe(0);
    expect(lastJson<{ spawn: string; slots: number }>(load.stdout).spawn).toBe('function');
    const cmd = await run(
      process.execPath,
      [
        '-e',
        "require('./dist/index.js').measureCommand('/bin/true').then((r)=>console.log(JSON.stringify({code:r.exitCode,rss:r.usage.maxRssBytes,src:r.usage.maxRssSource})))",
      ],
      { env: { ...process.env, TASKMETER_EXEC_HELPER: helper } },
    );
    expect(cmd.code, cmd.stderr).toBe(0);
    const r = lastJson<{ code: number; rss: number; src: string }>(cmd.stdout);
    expect(r).toMatchObject({ code: 0, src: 'rusage' });
    expect(r.rss).toBeGreaterThan(0);
    expect(r.rss).toBeLessThan(8 * 1024 * 1024); // /bin/true's, not Node's 40+ MB
  }, 60_000);
});

describe('the audit refuses what would not load everywhere', () => {
  const dir = join(work, 'host');
  mkdirSync(dir, { recursive: true });
  const policy = (name: string, kind: 'addon' | 'exe') => TARGETS[name].artifacts.find((a) => a.kind === kind)!.audit;

  it("refuses a library built with this machine's g++ against its glibc (newer symbol versions, libstdc++ needed, C++ runtime exported)", async () => {
    const src = join(dir, 'host.cc');
    // what the addon does: threads, a condition variable, dlopen (gcc 12 and glibc ≥ 2.34 version these newer)
    writeFileSync(
      src,
      '#include <dlfcn.h>\n#include <pthread.h>\n' +
        '#include <condition_variable>\n#include <mutex>\n#include <thread>\n#include <string>\n' +
        'std::mutex m; std::condition_variable cv; bool ready = false;\n' +
        'extern "C" __attribute__((visibility("default"))) void* napi_register_module_v1(void*, void*) {\n' +
        '  std::thread t([] { std::lock_guard<std::mutex> l(m); ready = true; cv.notify_one(); });\n' +
        '  std::unique_lock<std::mutex> l(m); cv.wait(l, [] { return ready; }); t.join();\n' +
        '  pthread_t p; pthread_create(&p, nullptr, [](void*) -> void* { return nullptr; }, nullptr); pthread_join(p, nullptr);\n' +
        '  void* h = dlopen(nullptr, RTLD_NOW); if (h) dlclose(h);\n' +
        '  static std::string s("x"); return &s; }\n',
    );
    const so = join(dir, 'host.node');
    const c = await run('g++', ['-std=c++17', '-O2', '-shared', '-fPIC', '-o', so, src, '-pthread'], {
      timeoutMs: 120_000,
    });
    expect(c.code, c.stderr).toBe(0);
    const facts = readElf(readFileSync(so));
    // the host's glibc is newer than the floor (Debian 12: 2.36), so the build needs newer symbols than allowed
    expect(compareVersions(facts.highest.GLIBC, GLIBC_FLOOR)).toBeGreaterThan(0);
    const { problems } = auditBinary(so, policy('linux-x64', 'addon'));
    expect(problems.join('\n')).toMatch(/needs libstdc\+\+\.so\.6/);
    expect(problems.join('\n')).toMatch(
      new RegExp(`needs GLIBC_${facts.highest.GLIBC.replace(/\./g, '\\.')} \\(newer than GLIBC_${GLIBC_FLOOR}\\)`),
    );
    expect(problems.join('\n')).toMatch(/needs GLIBCXX_[0-9.]+ \(no GLIBCXX_ symbol version is allowed\)/);
    expect(problems.join('\n')).toMatch(/exports \d+ symbol\(s\) beyond Node-API's entry points/);
    // and as a musl addon: glibc's libraries, glibc's symbol versions
    const musl = auditBinary(so, policy('linuxmusl-x64', 'addon')).problems.join('\n');
    expect(musl).toMatch(/needs libc\.so\.6/);
    expect(musl).toMatch(/needs GLIBC_/);
    // and as an arm64 one: the wrong machine
    expect(auditBinary(so, policy('linux-arm64', 'addon')).problems.join('\n')).toMatch(/is x86_64, not aarch64/);
  }, 120_000);

  it('refuses an exec helper that is not static (it would need a loader and a libc of the right kind)', async () => {
    const exe = join(dir, 'dyn-helper');
    const c = await run('cc', ['-O2', '-o', exe, join(root, 'native/helper/exec_helper.c')], { timeoutMs: 120_000 });
    expect(c.code, c.stderr).toBe(0);
    const problems = auditBinary(exe, policy('linux-x64', 'exe')).problems.join('\n');
    expect(problems).toMatch(/needs libc\.so\.6/);
    expect(problems).toMatch(/has an interpreter \(\/lib64\/ld-linux-x86-64\.so\.2\): not static/);
  }, 120_000);

  it("refuses the addon npm install builds here with node-gyp (this machine's glibc and libstdc++)", () => {
    const addon = join(root, 'build/Release/taskmeter.node');
    const r = spawnSync('test', ['-f', addon]);
    if (r.status !== 0) return; // a tree whose addon came from prebuilds/ only (global-setup checks one exists)
    const problems = auditBinary(addon, policy('linux-x64', 'addon')).problems.join('\n');
    expect(problems).toMatch(/needs libstdc\+\+\.so\.6/);
    expect(problems).toMatch(/newer than GLIBC_2\.17/);
  });
});
