/**
 * Kernel modules for the guest's initramfs. Debian's kernel builds every virtio driver (and ext4,
 * 9p, vsock) as a module, so the initramfs the VMM generates must carry those `.ko` files from
 * the same kernel package and load them in dependency order.
 *
 * Debian's package ships no `modules.dep` (its postinst runs depmod), so `prepareModules` makes
 * one the way depmod does, from each module's `.modinfo` section (`depends=`, `softdep=`), in
 * depmod's format, and copies the modules the VMM needs (with their dependencies) into
 * `.cache/guests/modules/<release>/`, decompressing `.ko.xz` on the host (busybox insmod reads
 * only plain ELF). `resolveModules` turns module names into load order from a `modules.dep`.
 */

import { isXz, xzDecompress } from "./xz.ts";

/** The modules the VMM's devices need in the guest (each with its dependencies). */
export const VMM_MODULES: readonly string[] = [
  "virtio_mmio",
  "virtio_blk",
  "virtio_net",
  "virtio_rng",
  "virtio_console",
  "9p",
  "9pnet_virtio",
  "vmw_vsock_virtio_transport",
  "ext4",
  "crc32c_generic",
];

/** A module name as the kernel knows it: the file name without `.ko[.xz|.zst|.gz]`, `-` as `_`. */
export function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, "").replaceAll("-", "_");
}

/** The `key=value` strings of an ELF module's `.modinfo` section (keys may repeat). */
export function readModinfo(elf: Uint8Array, what = "module"): [string, string][] {
  if (isXz(elf)) elf = xzDecompress(elf);
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  if (elf.length < 64 || dv.getUint32(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error(`${what} is not a little-endian ELF64 file`);
  }
  const shoff = Number(dv.getBigUint64(0x28, true));
  const shentsize = dv.getUint16(0x3a, true), shnum = dv.getUint16(0x3c, true);
  const shstrndx = dv.getUint16(0x3e, true);
  const section = (i: number) => {
    const h = shoff + i * shentsize;
    return {
      name: dv.getUint32(h, true),
      offset: Number(dv.getBigUint64(h + 0x18, true)),
      size: Number(dv.getBigUint64(h + 0x20, true)),
    };
  };
  if (shoff + shnum * shentsize > elf.length || shstrndx >= shnum) {
    throw new Error(`${what}: section headers lie outside the file`);
  }
  const strtab = section(shstrndx);
  const dec = new TextDecoder();
  const nameAt = (off: number) => {
    const start = strtab.offset + off;
    let end = start;
    while (end < elf.length && elf[end] !== 0) end++;
    return dec.decode(elf.subarray(start, end));
  };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (nameAt(s.name) !== ".modinfo") continue;
    const text = dec.decode(elf.subarray(s.offset, s.offset + s.size));
    return text.split("\0").filter((kv) => kv.includes("=")).map((kv) => {
      const eq = kv.indexOf("=");
      return [kv.slice(0, eq), kv.slice(eq + 1)];
    });
  }
  throw new Error(`${what} has no .modinfo section`);
}

/** What one module needs loaded first: hard `depends=` and `softdep=pre:` modules. */
export interface ModuleDeps {
  depends: string[];
  softPre: string[];
}

/** `depends=` and `softdep=` (`pre:` part) of a module's modinfo. */
export function moduleDeps(info: [string, string][]): ModuleDeps {
  const depends: string[] = [], softPre: string[] = [];
  for (const [k, v] of info) {
    if (k === "depends") {
      depends.push(...v.split(",").map((s) => s.trim().replaceAll("-", "_")).filter((s) => s));
    } else if (k === "softdep") {
      // "pre: a b post: c"
      let pre = false;
      for (const word of v.split(/\s+/).filter((w) => w)) {
        if (word === "pre:") pre = true;
        else if (word === "post:") pre = false;
        else if (pre) softPre.push(word.replaceAll("-", "_"));
      }
    }
  }
  return { depends, softPre };
}

/** A parsed modules.dep: module name → its path and the paths it depends on. */
export type ModulesDep = Map<string, { path: string; deps: string[] }>;

/** Parses depmod's `modules.dep` ("kernel/a.ko: kernel/b.ko kernel/c.ko" per line). */
export function parseModulesDep(text: string): ModulesDep {
  const map: ModulesDep = new Map();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter((d) => d !== "");
    map.set(moduleName(path), { path, deps });
  }
  return map;
}

/** A module name resolveModules cannot find in modules.dep. */
export class UnknownModuleError extends Error {
  constructor(readonly module: string) {
    super(`kernel module "${module}" is not in modules.dep`);
    this.name = "UnknownModuleError";
  }
}

/**
 * The module paths (relative to `/lib/modules/<release>/`) to insmod, dependencies first, for
 * `names`, each module once. Load order comes from a topological sort over every module's own
 * modules.dep line, so it does not rely on the order depmod lists a line's dependencies in.
 * `softdeps` (name → `pre:` modules, from modules.softdep or modinfo) are loaded before the
 * module when modules.dep has them. Names that are built into the kernel (`builtin`, e.g. from
 * modules.builtin) are skipped; any other unknown name throws UnknownModuleError.
 */
export function resolveModules(
  dep: ModulesDep,
  names: readonly string[],
  opts: { builtin?: ReadonlySet<string>; softdeps?: ReadonlyMap<string, readonly string[]> } = {},
): string[] {
  const order: string[] = [];
  const done = new Set<string>(), visiting = new Set<string>();
  const visit = (name: string, soft: boolean) => {
    const n = name.replaceAll("-", "_");
    if (done.has(n) || visiting.has(n)) return; // a cycle cannot load anyway; depmod refuses them
    const entry = dep.get(n);
    if (entry === undefined) {
      if (soft || opts.builtin?.has(n)) return;
      throw new UnknownModuleError(n);
    }
    visiting.add(n);
    for (const s of opts.softdeps?.get(n) ?? []) visit(s, true);
    for (const d of entry.deps) visit(moduleName(d), false);
    visiting.delete(n);
    done.add(n);
    order.push(entry.path);
  };
  for (const name of names) visit(name, false);
  return order;
}

/** Names of the modules built into the kernel (modules.builtin lists their paths). */
export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(text.split("\n").filter((l) => l.trim() !== "").map((l) => moduleName(l.trim())));
}

/** Parses depmod's modules.softdep ("softdep NAME pre: a b post: c"): NAME → pre modules. */
export function parseModulesSoftdep(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = line.match(/^softdep\s+(\S+)\s+(.*)$/);
    if (!m) continue;
    const { softPre } = moduleDeps([["softdep", m[2]!]]);
    if (softPre.length > 0) map.set(m[1]!.replaceAll("-", "_"), softPre);
  }
  return map;
}

/** Every module file under `dir` (recursively), as paths relative to `dir`. */
async function moduleFiles(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const p = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory) out.push(...await moduleFiles(dir, p));
    else if (e.isFile && /\.ko(\.(xz|zst|gz))?$/.test(e.name)) out.push(p);
  }
  return out;
}

/** What `prepareModules` wrote. */
export interface PreparedModules {
  /** `<dest>/<release>`: modules.dep, modules.softdep, modules.builtin and kernel/.../*.ko. */
  dir: string;
  release: string;
  /** Paths of the copied modules relative to `dir`, in load order. */
  copied: string[];
}

/**
 * From an unpacked kernel package (`root`, with lib/modules/<release>/), writes
 * `<dest>/<release>/modules.dep` and `modules.softdep` covering `wanted` and everything they
 * need, plus `modules.builtin` and `modules.alias` (their virtio aliases), and copies those modules there as plain `.ko` (an `.xz` one is
 * decompressed; `.zst` and `.gz` are refused). Paths stay depmod's (`kernel/...ko`).
 */
export async function prepareModules(
  root: string,
  dest: string,
  wanted: readonly string[] = VMM_MODULES,
): Promise<PreparedModules> {
  const base = `${root}/lib/modules`;
  let release = "";
  for await (const e of Deno.readDir(base)) if (e.isDirectory) release = e.name;
  if (release === "") throw new Error(`${base} holds no kernel release directory`);
  const src = `${base}/${release}`;
  const files = await moduleFiles(src);
  const byName = new Map(files.map((f) => [moduleName(f), f]));
  let builtinText = "";
  try {
    builtinText = await Deno.readTextFile(`${src}/modules.builtin`);
  } catch {
    // An old or trimmed package: nothing is known to be built in.
  }
  const builtin = parseModulesBuiltin(builtinText);

  // Walk the wanted modules' dependencies (reading only the modules involved).
  const info = new Map<
    string,
    { file: string; data: Uint8Array; deps: ModuleDeps; modinfo: [string, string][] }
  >();
  const visit = async (name: string, soft: boolean) => {
    if (info.has(name)) return;
    const file = byName.get(name);
    if (file === undefined) {
      if (soft || builtin.has(name)) return;
      throw new UnknownModuleError(name);
    }
    let data: Uint8Array = await Deno.readFile(`${src}/${file}`);
    if (file.endsWith(".xz")) data = xzDecompress(data);
    else if (!file.endsWith(".ko")) {
      throw new Error(`${file}: only plain and .xz-compressed modules are supported`);
    }
    const modinfo = readModinfo(data, file);
    const deps = moduleDeps(modinfo);
    info.set(name, { file: file.replace(/\.xz$/, ""), data, deps, modinfo });
    for (const d of deps.depends) await visit(d, false);
    for (const d of deps.softPre) await visit(d, true);
  };
  for (const w of wanted) await visit(w.replaceAll("-", "_"), false);

  // modules.dep in depmod's format: every module with all its (transitive) hard dependencies.
  const dep: ModulesDep = new Map();
  for (const [name, m] of info) {
    dep.set(name, {
      path: m.file,
      deps: m.deps.depends.filter((d) => info.has(d)).map((d) => info.get(d)!.file),
    });
  }
  const lines: string[] = [], soft: string[] = [];
  for (const [name, m] of info) {
    // depmod lists the transitive closure, the module loaded last first.
    const closure = resolveModules(dep, [name]).slice(0, -1).reverse();
    lines.push(`${m.file}:${closure.map((c) => " " + c).join("")}`);
    if (m.deps.softPre.length > 0) soft.push(`softdep ${name} pre: ${m.deps.softPre.join(" ")}`);
  }
  const dir = `${dest.replace(/\/+$/, "")}/${release}`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  for (const m of info.values()) {
    const path = `${dir}/${m.file}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(path, m.data);
  }
  await Deno.writeTextFile(`${dir}/modules.dep`, lines.sort().join("\n") + "\n");
  await Deno.writeTextFile(`${dir}/modules.softdep`, soft.sort().join("\n") + "\n");
  await Deno.writeTextFile(`${dir}/modules.builtin`, builtinText);
  await Deno.writeTextFile(
    `${dir}/modules.alias`,
    modulesAliasText(new Map([...info].map(([n, m]) => [n, m.modinfo]))),
  );
  const softdeps = new Map([...info].map(([n, m]) => [n, m.deps.softPre]));
  return { dir, release, copied: resolveModules(dep, wanted, { builtin, softdeps }) };
}

/** The virtio device IDs a module's modinfo says it drives (`alias=virtio:d0000000XXv*`, hex). */
export function virtioDeviceIds(info: [string, string][]): number[] {
  const ids: number[] = [];
  for (const [k, v] of info) {
    const m = k === "alias" ? /^virtio:d([0-9A-Fa-f]{8})v/.exec(v) : null;
    if (m) ids.push(parseInt(m[1]!, 16));
  }
  return ids;
}

/** depmod's modules.alias lines for the virtio aliases of `modules` (name → modinfo). */
export function modulesAliasText(modules: ReadonlyMap<string, [string, string][]>): string {
  const lines: string[] = [];
  for (const [name, info] of modules) {
    for (const [k, v] of info) {
      if (k === "alias" && v.startsWith("virtio:")) lines.push(`alias ${v} ${name}`);
    }
  }
  return lines.sort().join("\n") + (lines.length > 0 ? "\n" : "");
}

/**
 * The driver module for each virtio device ID the modules of `set` drive: from its
 * modules.alias (`alias virtio:d00000004v* virtio_rng`) when there is one, else from each
 * module's own modinfo (a cache prepared before modules.alias was written).
 */
export async function virtioDrivers(set: ModuleSet): Promise<Map<number, string>> {
  const drivers = new Map<number, string>();
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(`${set.dir}/modules.alias`);
  } catch {
    // Not there: read the modules themselves.
  }
  if (text !== null) {
    for (const line of text.split("\n")) {
      const m = /^alias\s+(\S+)\s+(\S+)/.exec(line);
      if (!m) continue;
      for (const id of virtioDeviceIds([["alias", m[1]!]])) {
        if (!drivers.has(id)) drivers.set(id, m[2]!.replaceAll("-", "_"));
      }
    }
    return drivers;
  }
  for (const [name, entry] of set.dep) {
    let data: Uint8Array;
    try {
      data = await Deno.readFile(`${set.dir}/${entry.path}`);
    } catch {
      continue; // readInitramfsModules says so if it is wanted
    }
    let info: [string, string][];
    try {
      info = readModinfo(data, entry.path);
    } catch {
      continue;
    }
    for (const id of virtioDeviceIds(info)) if (!drivers.has(id)) drivers.set(id, name);
  }
  return drivers;
}

/** A module cache directory as `loadModuleSet` reads it. */
export interface ModuleSet {
  release: string;
  dir: string;
  dep: ModulesDep;
  builtin: Set<string>;
  softdeps: Map<string, string[]>;
}

/** Reads `<modulesDir>/<release>/` (the first release there when none is given). */
export async function loadModuleSet(modulesDir: string, release?: string): Promise<ModuleSet> {
  if (release === undefined) {
    for await (const e of Deno.readDir(modulesDir)) if (e.isDirectory) release ??= e.name;
    if (release === undefined) throw new Error(`${modulesDir} holds no kernel release directory`);
  }
  const dir = `${modulesDir.replace(/\/+$/, "")}/${release}`;
  const read = (f: string) => Deno.readTextFile(`${dir}/${f}`).catch(() => "");
  return {
    release,
    dir,
    dep: parseModulesDep(await Deno.readTextFile(`${dir}/modules.dep`)),
    builtin: parseModulesBuiltin(await read("modules.builtin")),
    softdeps: parseModulesSoftdep(await read("modules.softdep")),
  };
}

/** Modules read from a ModuleSet for an initramfs: where they go and, in order, what to insmod. */
export interface InitramfsModules {
  release: string;
  /** Files under `lib/modules/<release>/` (modules.dep and the `.ko` files), path relative to it. */
  files: { path: string; data: Uint8Array }[];
  /** Paths relative to `lib/modules/<release>/`, in load order. */
  load: string[];
}

/** Reads the modules `names` need from `set`, in load order, ready for an initramfs. */
export async function readInitramfsModules(
  set: ModuleSet,
  names: readonly string[],
): Promise<InitramfsModules> {
  const load = resolveModules(set.dep, names, { builtin: set.builtin, softdeps: set.softdeps });
  const files: { path: string; data: Uint8Array }[] = [];
  for (const path of load) {
    try {
      files.push({ path, data: await Deno.readFile(`${set.dir}/${path}`) });
    } catch (err) {
      throw new Error(
        `${set.dir}/${path} (in modules.dep) cannot be read: ${(err as Error).message}; ` +
          `run \`deno task guests\` again to refresh the module cache`,
      );
    }
  }
  const dep = load.map((p) => `${p}: ${set.dep.get(moduleName(p))!.deps.join(" ")}`.trimEnd());
  files.push({ path: "modules.dep", data: new TextEncoder().encode(dep.join("\n") + "\n") });
  return { release: set.release, files, load };
}

/**
 * Shell lines that insmod `mods` in order (from `/lib/modules/<release>/`), saying on stderr
 * which one failed (the script goes on: a missing driver shows up as a missing device).
 */
export function insmodScript(mods: InitramfsModules): string {
  return mods.load.map((p) => {
    const path = `/lib/modules/${mods.release}/${p}`;
    return `/bin/busybox insmod ${path} || echo "init: insmod ${path} failed" >&2\n`;
  }).join("");
}
