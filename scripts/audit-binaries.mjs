// The audit of every binary we ship (as auditwheel does for manylinux wheels): what a binary needs from the machine
// that loads it, read from the file itself, against what the target promises (the `audit` policy of each artifact in
// scripts/cross-targets.mjs). ELF (Linux glibc and musl), Mach-O (macOS, compiled but not shipped) and PE (Windows).
//   - ELF: the NEEDED libraries; the highest version of each symbol-version family it needs (GLIBC_2.17 …), and none
//     of the forbidden families (GLIBCXX_, CXXABI_, GCC_: the C++ runtime must be inside); an interpreter only where
//     one is allowed (a static helper has none); the exported symbols (only Node-API's entry points: a static C++
//     runtime whose symbols were exported could be interposed by another copy loaded in the process); static TLS
//     (a dlopen'ed library with initial-exec TLS takes from glibc's small surplus).
//   - Mach-O: the dylibs it loads, and that every undefined symbol is bound to one of them or, for Node-API's
//     functions only, looked up in the loading process (dynamic_lookup).
//   - PE: the DLLs it imports.
// node scripts/audit-binaries.mjs <target> <file>…  audits files as that target's artifacts (by file name, else a
// .node file as its addon and anything else as its exec helper); exits 1 if any has a problem.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Compares dotted versions ('2.17' < '2.28'). */
export function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const cstr = (buf, off) => {
  let end = off;
  while (end < buf.length && buf[end] !== 0) end++;
  return buf.toString('latin1', off, end);
};

const EM = { 62: 'x86_64', 183: 'aarch64' };

/** What an ELF64 little-endian file needs and offers. */
export function readElf(buf) {
  if (buf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const type = buf.readUInt16LE(16);
  const machine = EM[buf.readUInt16LE(18)] ?? `machine ${buf.readUInt16LE(18)}`;
  const phoff = Number(buf.readBigUInt64LE(32));
  const shoff = Number(buf.readBigUInt64LE(40));
  const phnum = buf.readUInt16LE(56);
  const shnum = buf.readUInt16LE(60);
  let interp = null;
  let tlsBytes = 0;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * 56;
    const ptype = buf.readUInt32LE(p);
    const off = Number(buf.readBigUInt64LE(p + 8));
    if (ptype === 3) interp = cstr(buf, off); // PT_INTERP
    if (ptype === 7) tlsBytes = Number(buf.readBigUInt64LE(p + 40)); // PT_TLS p_memsz
  }
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const s = shoff + i * 64;
    sections.push({
      type: buf.readUInt32LE(s + 4),
      offset: Number(buf.readBigUInt64LE(s + 24)),
      size: Number(buf.readBigUInt64LE(s + 32)),
      link: buf.readUInt32LE(s + 40),
      info: buf.readUInt32LE(s + 44),
    });
  }
  const needed = [];
  const versions = []; // [{ file, name }]
  const exports = [];
  let staticTls = false;
  for (const s of sections) {
    const str = sections[s.link];
    if (s.type === 6) {
      // SHT_DYNAMIC
      for (let o = s.offset; o + 16 <= s.offset + s.size; o += 16) {
        const tag = Number(buf.readBigInt64LE(o));
        const val = Number(buf.readBigUInt64LE(o + 8));
        if (tag === 0) break;
        if (tag === 1) needed.push(cstr(buf, str.offset + val)); // DT_NEEDED
        if (tag === 30 && val & 0x10) staticTls = true; // DT_FLAGS: DF_STATIC_TLS
      }
    } else if (s.type === 0x6ffffffe) {
      // SHT_GNU_verneed: Elf64_Verneed { vn_version, vn_cnt, vn_file, vn_aux, vn_next } → Vernaux { hash, flags,
      // other, name, next }
      let vn = s.offset;
      for (let i = 0; i < s.info; i++) {
        const cnt = buf.readUInt16LE(vn + 2);
        const file = cstr(buf, str.offset + buf.readUInt32LE(vn + 4));
        let aux = vn + buf.readUInt32LE(vn + 8);
        for (let j = 0; j < cnt; j++) {
          versions.push({ file, name: cstr(buf, str.offset + buf.readUInt32LE(aux + 8)) });
          aux += buf.readUInt32LE(aux + 12);
        }
        const next = buf.readUInt32LE(vn + 12);
        if (next === 0) break;
        vn += next;
      }
    } else if (s.type === 11) {
      // SHT_DYNSYM: Elf64_Sym { st_name u32, st_info u8, st_other u8, st_shndx u16, st_value, st_size }
      for (let o = s.offset + 24; o + 24 <= s.offset + s.size; o += 24) {
        const bind = buf[o + 4] >> 4;
        const visibility = buf[o + 5] & 3;
        const shndx = buf.readUInt16LE(o + 6);
        if (shndx !== 0 && (bind === 1 || bind === 2) && visibility === 0)
          exports.push(cstr(buf, str.offset + buf.readUInt32LE(o)));
      }
    }
  }
  // the highest version of each family (GLIBC_2.17 → GLIBC: 2.17)
  const highest = {};
  for (const v of versions) {
    const m = /^([A-Z]+)_([0-9][0-9.]*)$/.exec(v.name);
    if (!m) continue;
    if (!highest[m[1]] || compareVersions(m[2], highest[m[1]]) > 0) highest[m[1]] = m[2];
  }
  return {
    format: 'elf',
    type: type === 2 ? 'exec' : type === 3 ? 'dyn' : `type ${type}`,
    machine,
    interp,
    needed,
    versions,
    highest,
    exports: exports.sort(),
    staticTls,
    tlsBytes,
  };
}

const CPU = { 16777223: 'x86_64', 16777228: 'aarch64' };

/** What a 64-bit Mach-O file loads, and its undefined symbols with where each is bound. */
export function readMachO(buf) {
  if (buf.readUInt32LE(0) !== 0xfeedfacf) throw new Error('not a 64-bit Mach-O file');
  const machine = CPU[buf.readUInt32LE(4)] ?? `cpu ${buf.readUInt32LE(4)}`;
  const filetype = buf.readUInt32LE(12);
  const ncmds = buf.readUInt32LE(16);
  const twoLevel = (buf.readUInt32LE(24) & 0x80) !== 0; // MH_TWOLEVEL
  const dylibs = [];
  let symtab = null;
  let o = 32;
  for (let i = 0; i < ncmds; i++) {
    const cmd = buf.readUInt32LE(o);
    const size = buf.readUInt32LE(o + 4);
    // LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, LC_LOAD_UPWARD_DYLIB
    if ([0xc, 0x80000018, 0x8000001f, 0x20, 0x80000023].includes(cmd))
      dylibs.push(cstr(buf, o + buf.readUInt32LE(o + 8)));
    if (cmd === 0x2) {
      symtab = {
        symoff: buf.readUInt32LE(o + 8),
        nsyms: buf.readUInt32LE(o + 12),
        stroff: buf.readUInt32LE(o + 16),
      };
    }
    o += size;
  }
  const undefinedSymbols = []; // { name, from: dylib path | 'dynamic_lookup' | 'flat' }
  if (symtab) {
    for (let i = 0; i < symtab.nsyms; i++) {
      const n = symtab.symoff + i * 16;
      const nType = buf[n + 4];
      if (nType & 0xe0) continue; // N_STAB: debugging entries
      if ((nType & 0x0e) !== 0 || (nType & 0x01) === 0 || buf.readBigUInt64LE(n + 8) !== 0n) continue; // undefined, external, not common
      const ordinal = buf.readUInt16LE(n + 6) >> 8;
      const from = !twoLevel
        ? 'flat'
        : ordinal === 0xfe
          ? 'dynamic_lookup'
          : ordinal >= 1 && ordinal <= dylibs.length
            ? dylibs[ordinal - 1]
            : `ordinal ${ordinal}`;
      undefinedSymbols.push({ name: cstr(buf, symtab.stroff + buf.readUInt32LE(n)), from });
    }
  }
  return {
    format: 'macho',
    type: filetype === 2 ? 'exec' : filetype === 6 ? 'dylib' : filetype === 8 ? 'bundle' : `filetype ${filetype}`,
    machine,
    dylibs,
    undefinedSymbols,
  };
}

/** The DLLs a PE32+ file imports. */
export function readPe(buf) {
  if (buf.toString('latin1', 0, 2) !== 'MZ') throw new Error('not a PE file');
  const pe = buf.readUInt32LE(0x3c);
  if (buf.readUInt32LE(pe) !== 0x4550) throw new Error('no PE signature');
  const machine = buf.readUInt16LE(pe + 4) === 0x8664 ? 'x86_64' : `machine ${buf.readUInt16LE(pe + 4)}`;
  const nsections = buf.readUInt16LE(pe + 6);
  const optSize = buf.readUInt16LE(pe + 20);
  const opt = pe + 24;
  if (buf.readUInt16LE(opt) !== 0x20b) throw new Error('not PE32+');
  const importRva = buf.readUInt32LE(opt + 112 + 8); // data directory 1
  const sections = [];
  for (let i = 0; i < nsections; i++) {
    const s = opt + optSize + i * 40;
    sections.push({ va: buf.readUInt32LE(s + 12), vsize: buf.readUInt32LE(s + 8), raw: buf.readUInt32LE(s + 20) });
  }
  const off = (rva) => {
    const s = sections.find((x) => rva >= x.va && rva < x.va + x.vsize);
    if (!s) throw new Error(`RVA ${rva} in no section`);
    return rva - s.va + s.raw;
  };
  const dlls = [];
  if (importRva) {
    for (let d = off(importRva); buf.readUInt32LE(d + 12) !== 0; d += 20)
      dlls.push(cstr(buf, off(buf.readUInt32LE(d + 12))));
  }
  return { format: 'pe', machine, dlls };
}

/**
 * Audits one binary against a policy (scripts/cross-targets.mjs, `audit` of an artifact). Returns
 * { problems: string[], facts }: no problem means it loads wherever the policy's promise holds.
 */
export function auditBinary(file, policy) {
  const buf = readFileSync(file);
  const problems = [];
  const facts = policy.format === 'elf' ? readElf(buf) : policy.format === 'macho' ? readMachO(buf) : readPe(buf);
  if (facts.machine !== policy.machine) problems.push(`is ${facts.machine}, not ${policy.machine}`);
  if (policy.format === 'elf') {
    for (const lib of facts.needed)
      if (!policy.needed.includes(lib)) problems.push(`needs ${lib} (allowed: ${policy.needed.join(', ') || 'none'})`);
    for (const [family, version] of Object.entries(facts.highest)) {
      const max = policy.maxVersions?.[family];
      if (max === undefined) problems.push(`needs ${family}_${version} (no ${family}_ symbol version is allowed)`);
      else if (compareVersions(version, max) > 0)
        problems.push(`needs ${family}_${version} (newer than ${family}_${max})`);
    }
    if (facts.interp !== null && !policy.interp) problems.push(`has an interpreter (${facts.interp}): not static`);
    if (policy.exports) {
      const extra = facts.exports.filter((s) => !policy.exports.includes(s));
      if (extra.length)
        problems.push(
          `exports ${extra.length} symbol(s) beyond Node-API's entry points: ${extra.slice(0, 8).join(', ')}`,
        );
    }
    if (facts.staticTls && facts.tlsBytes > policy.maxStaticTlsBytes)
      problems.push(`uses ${facts.tlsBytes} bytes of static TLS (at most ${policy.maxStaticTlsBytes})`);
  } else if (policy.format === 'macho') {
    for (const lib of facts.dylibs) if (!policy.dylibs.includes(lib)) problems.push(`loads ${lib}`);
    for (const s of facts.undefinedSymbols) {
      if (policy.dylibs.includes(s.from)) continue;
      if (s.from === 'dynamic_lookup' && policy.dynamicLookup?.test(s.name)) continue;
      problems.push(`undefined symbol ${s.name} from ${s.from}`);
    }
  } else {
    const allowed = policy.dlls.map((d) => d.toLowerCase());
    for (const dll of facts.dlls) if (!allowed.includes(dll.toLowerCase())) problems.push(`imports ${dll}`);
  }
  return { problems: problems.map((p) => `${basename(file)}: ${p}`), facts };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { TARGETS } = await import('./cross-targets.mjs');
  const [name, ...files] = process.argv.slice(2);
  const t = TARGETS[name];
  if (!t || files.length === 0) {
    console.error(`usage: node scripts/audit-binaries.mjs <${Object.keys(TARGETS).join('|')}> <file>…`);
    process.exit(2);
  }
  let bad = 0;
  for (const f of files) {
    // by its name, else by its kind (a .node file is audited as the target's addon, anything else as its helper)
    const a =
      t.artifacts.find((x) => x.file === basename(f)) ??
      t.artifacts.find((x) => x.kind === (f.endsWith('.node') ? 'addon' : 'exe'));
    const { problems, facts } = auditBinary(f, a.audit);
    bad += problems.length;
    console.log(
      JSON.stringify({ file: f, problems, facts: { ...facts, exports: undefined, undefinedSymbols: undefined } }),
    );
  }
  process.exit(bad ? 1 : 0);
}
