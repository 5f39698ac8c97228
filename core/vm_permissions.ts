/**
 * The Deno permissions of the Worker that runs one VM of the plain CLI (the vCPU and its
 * devices): only what this VM's configuration needs, so a bug in a device model, a loader or a
 * trusted plugin cannot reach the rest of the host. Computed on the main thread (which has the
 * VMM's own permissions) from the VmConfig, before the Worker starts.
 *
 * What Deno checks in a Worker, measured on Deno 2.9: its initial module graph (and a dynamic
 * `import("./literal.ts")` Deno can see) loads without read permission; an `import(url)` of a
 * computed URL (the built-in devices, `--device` plugins) needs read access to every file of
 * that module's graph; `Deno.dlopen("libc.so.6")` needs unrestricted `ffi` (a path list is
 * resolved against the current directory and misses the library); a Worker the machine starts
 * (a sandboxed plugin) may only get a subset of these. Files under /proc, /sys and /dev (but
 * /dev/null, /dev/zero, /dev/random and /dev/urandom) are granted only with --allow-all: the
 * main thread reads what the machine needs from there (`probeHost`), KVM opens /dev/kvm through
 * libc (FFI), and a VM that must open such a file itself (`--serial file:/dev/ttyS1`, a block
 * device as `--drive`) runs with the VMM's own permissions ("inherit").
 */

import type { VmConfig } from "./vm.ts";
import { BUILTIN_DEVICES, VIRTIO_DEVICES } from "./builtin_devices.ts";
import { type CpuVendor, hostCpuVendor, setHostCpuVendor } from "./cpu_model.ts";
import { hostKvmFlavor, type KvmFlavor, setHostKvmFlavor } from "./select_backend.ts";
import type { DeviceSpec } from "../plugins/options.ts";
import { resolvePluginUrl } from "../plugins/loader.ts";
import { walkModuleGraph } from "../plugins/module_graph.ts";

/** The environment variables the machine reads (the interpreter's JIT switch). */
export const VM_ENV_VARS: readonly string[] = ["DENOVISOR_INTERP_JIT"];

/** What the machine learns from /proc and /sys, which its Worker cannot read. */
export interface HostFacts {
  /** From /proc/cpuinfo; absent when it cannot be read (the Worker then says why). */
  cpuVendor?: CpuVendor;
  /** From /sys/module. */
  kvmFlavor: KvmFlavor;
}

/** Reads the host facts on this (the main) thread. */
export function probeHost(): HostFacts {
  let cpuVendor: CpuVendor | undefined;
  try {
    cpuVendor = hostCpuVendor();
  } catch {
    // The Worker tries again and reports it.
  }
  return { ...(cpuVendor === undefined ? {} : { cpuVendor }), kvmFlavor: hostKvmFlavor() };
}

/** On the machine's Worker: takes the facts `probeHost` read on the main thread. */
export async function applyHostFacts(host: HostFacts, backend: VmConfig["backend"]): Promise<void> {
  if (host.cpuVendor !== undefined) setHostCpuVendor(host.cpuVendor);
  setHostKvmFlavor(host.kvmFlavor);
  if (backend !== "interp") {
    (await import("./kvm/backend.ts")).setHostIsPvm(host.kvmFlavor === "kvm_pvm");
  }
}

/** Deno's files that only --allow-all opens (devices, /proc, /sys), by absolute path. */
export function needsAllAccess(path: string): boolean {
  if (["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"].includes(path)) return false;
  return /^\/(dev|proc|sys)(\/|$)/.test(path);
}

/** A path as the Worker will check it: absolute, plus its symlink target when it has one. */
function pathsOf(path: string, cwd: string): string[] {
  const abs = path.startsWith("/") ? path : `${cwd}/${path}`;
  try {
    const real = Deno.realPathSync(abs);
    return real === abs ? [abs] : [abs, real];
  } catch {
    return [abs]; // not there (yet): the Worker reports it by its own name
  }
}

/** True when `value` names an existing regular file (a plugin option such as `file=disk.img`). */
function isFile(value: string): boolean {
  if (value === "" || value.includes("\0")) return false;
  try {
    return Deno.statSync(value).isFile;
  } catch {
    return false;
  }
}

/**
 * Files (and remote hosts) of a module's graph: the sandbox's strict walk, or for a trusted
 * module (`lenient`) every local file it imports, data too. On a walk that fails, the files it
 * reached, so the Worker's own walk or import fails the same way, saying why.
 */
async function moduleFiles(
  specifier: string,
  cwd: string,
  lenient: boolean,
): Promise<{ files: string[]; hosts: string[] }> {
  let url: URL;
  try {
    url = resolvePluginUrl(specifier, cwd);
  } catch {
    return { files: [], hosts: [] }; // the Worker's loader says what is wrong with it
  }
  const reached = new Set<string>();
  try {
    const graph = await walkModuleGraph(url, specifier, { lenient, reached });
    return { files: graph.files, hosts: graph.remoteHosts };
  } catch {
    // The module itself too (its loader stats it before refusing a non-code file by name); the
    // VM stops at that refusal, before the guest runs.
    if (url.protocol === "file:") reached.add(decodeURIComponent(url.pathname));
    const remote = url.protocol === "http:" || url.protocol === "https:";
    return { files: [...reached], hosts: remote ? [url.host] : [] };
  }
}

/** The device modules in devices/virtio/ (paths relative to core/). */
function virtioModules(): string[] {
  try {
    return [...Deno.readDirSync(new URL("../devices/virtio/", import.meta.url))]
      .filter((e) => e.isFile && e.name.endsWith(".ts") && !e.name.endsWith("_test.ts"))
      .map((e) => `../devices/virtio/${e.name}`);
  } catch {
    return [];
  }
}

/** The devices of the snapshot `--restore` names, or none when it cannot be read here. */
async function snapshotDevices(config: VmConfig): Promise<{
  plugins: DeviceSpec[];
  drives: { path: string; readOnly: boolean }[];
  backend: string | null;
}> {
  const none = { plugins: [], drives: [], backend: null };
  if (config.restore === undefined) return none;
  try {
    // Loaded only for a restore: it brings the machine's state code to the main thread.
    const { readSnapshot } = await import("./snapshot/mod.ts");
    const saved = readSnapshot(config.restore.statePath, config.restore.memPath).machine;
    const plugins: DeviceSpec[] = [], drives: { path: string; readOnly: boolean }[] = [];
    for (const d of saved.devices) {
      const src = d.source;
      if (src?.kind === "plugin") plugins.push({ specifier: src.specifier, options: src.options });
      else if (src?.kind === "builtin" && typeof src.options?.path === "string") {
        drives.push({ path: src.options.path, readOnly: src.options.ro === "true" });
      }
    }
    return { plugins, drives, backend: saved.backend };
  } catch {
    return none; // the Worker reads it again and reports what is wrong with it
  }
}

/**
 * The permissions of the Worker that runs `config`'s VM (`cwd` resolves relative paths, as the
 * Worker would). Each kind is an explicit list or `false`, never inherited; "inherit" only for a
 * VM that must open a device, /proc or /sys file itself (see the header).
 */
export async function vmPermissions(
  config: VmConfig,
  cwd: string = Deno.cwd(),
): Promise<Deno.PermissionOptionsObject | "inherit"> {
  const read = new Set<string>(), write = new Set<string>(), hosts = new Set<string>();
  const allow = (set: Set<string>, path: string) => pathsOf(path, cwd).forEach((p) => set.add(p));
  const restored = await snapshotDevices(config);
  // KVM is possible unless the interpreter is asked for (a restore's "auto" is the snapshot's
  // own backend, which may be KVM).
  const mayKvm = config.backend !== "interp" &&
    (config.restore === undefined || config.backend === "kvm" || restored.backend !== "interp");
  const mayInterp = config.backend !== "kvm";

  // read: the guest's kernel and initrd (the loaders), a restore's state and memory files.
  if (config.kernel !== null) allow(read, config.kernel);
  if (config.initrd !== null) allow(read, config.initrd);
  if (config.restore !== undefined) {
    allow(read, config.restore.statePath);
    allow(read, config.restore.memPath);
  }
  // read, and write unless `ro`: each virtio-blk image (`--drive`, or a restored one).
  for (const d of [...(config.drives ?? []), ...restored.drives]) {
    allow(read, d.path);
    if (!d.readOnly) allow(write, d.path);
  }
  // read, and write unless `ro`: each shared host directory (virtio-9p `--share`) with
  // everything under it.
  for (const d of config.shares ?? []) {
    allow(read, d.path);
    if (!d.readOnly) allow(write, d.path);
  }
  // Not granted: /proc/cpuinfo and /sys/module (probeHost reads them here) and /dev/kvm
  // (opened O_RDWR through libc, under `ffi`): Deno would want --allow-all for each.
  // read: the module graphs of the built-in devices, imported by computed URL (with every
  // module in devices/virtio/, which the machine may wire by its own path: --console virtio).
  // read (and import, for remote hosts): each `--device` plugin's module graph; a trusted one is
  // imported here, a sandboxed one is walked here and imported by its own Worker, which gets
  // read access to exactly those files (a subset of these).
  const builtins = new Set(
    [...BUILTIN_DEVICES, ...Object.values(VIRTIO_DEVICES), ...virtioModules()]
      .map((p) => new URL(p, import.meta.url).href),
  );
  const plugins = [...config.devices, ...restored.plugins];
  // read: the sandbox's runtime (plugins/_sandbox_worker.ts and its graph), which a sandboxed
  // plugin's Worker loads under this Worker's permissions before it drops to its own.
  const sandboxed = plugins.some((d) => d.options.trusted !== "true");
  const runtime = sandboxed ? [new URL("../plugins/_sandbox_worker.ts", import.meta.url).href] : [];
  const graphs = await Promise.all(
    [
      ...[...builtins, ...runtime].map((s) => moduleFiles(s, cwd, false)),
      ...plugins.map((d) => moduleFiles(d.specifier, cwd, d.options.trusted === "true")),
    ],
  );
  for (const g of graphs) {
    g.files.forEach((f) => read.add(f));
    g.hosts.forEach((h) => hosts.add(h));
  }
  // read, and write with `writable=true`: files a plugin's options name (`file=disk.img`),
  // which it opens through the host API.
  for (const d of plugins) {
    for (const value of Object.values(d.options)) {
      if (!isFile(value)) continue;
      allow(read, value);
      if (d.options.writable === "true") allow(write, value);
    }
  }
  // Nothing for `--net switch=PATH` and `--vsock uds=PATH`: their unix sockets (the vsock's
  // listener and its `PATH_P` connections) are opened on the main thread, whose messages cross
  // to the Worker in SharedArrayBuffer rings (core/net/host.ts, core/vsock/host.ts), so the
  // machine gets neither read, write nor net access to them.
  // write: the `--serial file:PATH` log (created or truncated).
  if (config.serial.kind === "file") allow(write, config.serial.path);

  // A file only --allow-all opens: this VM runs with the VMM's own permissions.
  if ([...read, ...write].some(needsAllAccess)) return "inherit";
  const list = (set: Set<string>) => (set.size > 0 ? [...set] : false);
  return {
    read: list(read),
    write: list(write),
    // import: only the remote hosts of `--device` modules given by URL.
    import: list(hosts),
    // ffi: the KVM backend's libc calls (open, ioctl, mmap of /dev/kvm and guest RAM); none for
    // the interpreter.
    ffi: mayKvm,
    // env: the interpreter's DENOVISOR_INTERP_JIT switch only.
    env: mayInterp ? [...VM_ENV_VARS] : false,
    // net, run, sys: nothing the machine does needs them.
    net: false,
    run: false,
    sys: false,
  };
}

/** What makes the lifecycle Worker's machine: its configuration, for a snapshot load its files. */
export interface MachineSource {
  config: VmConfig;
  restore?: { statePath: string; memPath: string };
  /** A snapshot load's backend, when it is not the configuration's. */
  backend?: VmConfig["backend"];
}

/**
 * The permissions of the lifecycle Worker (core/api/vmm.ts, the API's machine), computed when the
 * command that makes its machine arrives: `vmPermissions` of that machine, plus read and write
 * of each `--allow-path` (files the API may name later: a drive swapped in, the devices of a VM
 * arriving by migration or replication) and read of a `--serial file:` log (a standby sizes the
 * shared log before it takes over). What the API names at run time otherwise is done by the
 * main thread: it writes snapshots and holds the migration sockets.
 */
export async function lifecyclePermissions(
  src: MachineSource,
  allowPaths: readonly string[],
  cwd: string = Deno.cwd(),
): Promise<Deno.PermissionOptionsObject | "inherit"> {
  const config: VmConfig = {
    ...src.config,
    ...(src.restore === undefined ? {} : { restore: src.restore }),
    ...(src.backend === undefined ? {} : { backend: src.backend }),
  };
  const base = await vmPermissions(config, cwd);
  if (base === "inherit") return base;
  const extra = allowPaths.flatMap((p) => pathsOf(p, cwd));
  if (extra.some(needsAllAccess)) return "inherit";
  const serial = config.serial.kind === "file" ? pathsOf(config.serial.path, cwd) : [];
  const join = (list: Deno.PermissionOptionsObject["read"], more: string[]) => {
    const all = [...new Set([...(Array.isArray(list) ? list : []), ...more])];
    return all.length > 0 ? all : false;
  };
  return {
    ...base,
    read: join(base.read, [...extra, ...serial]),
    write: join(base.write, extra),
  };
}

/** `path` made absolute against `cwd`, without `.` and `..` parts (as Deno checks it). */
function normalize(path: string, cwd: string): string {
  const parts: string[] = [];
  for (const p of (path.startsWith("/") ? path : `${cwd}/${path}`).split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") parts.pop();
    else parts.push(p);
  }
  return "/" + parts.join("/");
}

/** True when `perms` let a Worker `kind` (read or write) `path` (granted paths cover subtrees). */
export function permits(
  perms: Deno.PermissionOptionsObject | "inherit",
  kind: "read" | "write",
  path: string,
  cwd: string = Deno.cwd(),
): boolean {
  if (perms === "inherit") return true;
  const list = perms[kind];
  if (list === true || list === "inherit") return true;
  if (!Array.isArray(list)) return false;
  const abs = normalize(path, cwd);
  return list.some((e) => {
    const g = normalize(String(e), cwd);
    return abs === g || abs.startsWith(g === "/" ? "/" : g + "/");
  });
}
