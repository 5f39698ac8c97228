/**
 * `deno task guests`: fetches a real Linux guest into `.cache/guests/` — Debian's current
 * `linux-image-amd64` kernel (as `bzImage`, and decompressed as the ELF `vmlinux` that boots
 * through PVH without decoding XZ at every start) and a busybox initramfs
 * (`initramfs.cpio.gz`, plus the boot test's `test-initramfs.cpio.gz`) — using apt-get download
 * and dpkg -x — and the kernel's modules the VMM's devices need (`modules/<release>/`: the
 * `.ko` files of VMM_MODULES and their dependencies, with a modules.dep made from their
 * .modinfo, as the package ships none). Whatever is already cached is skipped.
 */

import { decompressBzImage, parseSetupHeader } from "../../core/boot/linux.ts";
import { loadModuleSet, prepareModules, VMM_MODULES } from "../../core/boot/modules.ts";
import {
  busyboxInitramfs,
  INTERACTIVE_INIT,
  INTERACTIVE_INITTAB,
  testInitramfs,
} from "./initramfs.ts";

/** Default cache folder: `.cache/guests/` at the repository root. */
export const DEFAULT_CACHE_DIR = new URL("../../.cache/guests/", import.meta.url).pathname;

/** Metapackage that points at the current Debian kernel. */
const KERNEL_METAPACKAGE = "linux-image-amd64";
/** Package with a statically linked busybox at /bin/busybox. */
const BUSYBOX_PACKAGE = "busybox-static";

/** A tool this script needs is missing, or apt cannot find a package. */
export class GuestFetchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GuestFetchError";
  }
}

function log(msg: string): void {
  console.error(`guests: ${msg}`);
}

interface RunResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new GuestFetchError(
        `"${cmd}" is not installed: fetching the Debian guest needs apt-get, apt-cache and ` +
          `dpkg (a Debian or Ubuntu host). Elsewhere, put a bzImage and initramfs.cpio.gz in ` +
          `.cache/guests/ yourself.`,
      );
    }
    throw err;
  }
  const dec = new TextDecoder();
  return { ok: out.success, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** apt's messages when the package lists are missing or stale. */
function listsMissing(r: RunResult): boolean {
  return /Unable to locate package|No packages found|has no installation candidate|404\s+Not Found|Failed to fetch/i
    .test(r.stderr + r.stdout);
}

let updated = false;
async function aptUpdate(): Promise<void> {
  if (updated) return;
  updated = true;
  log("package lists are missing or stale: running apt-get update");
  const r = await run("apt-get", ["update"]);
  if (!r.ok) {
    throw new GuestFetchError(
      `apt-get update failed (run it as root, or with network access):\n${r.stderr.trim()}`,
    );
  }
}

/** Runs an apt command; on a missing-lists failure runs `apt-get update` once and retries. */
async function apt(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  let r = await run(cmd, args, cwd);
  if (!r.ok && listsMissing(r) && !updated) {
    await aptUpdate();
    r = await run(cmd, args, cwd);
  }
  if (!r.ok) {
    throw new GuestFetchError(`${cmd} ${args.join(" ")} failed:\n${r.stderr.trim()}`);
  }
  return r;
}

/** The versioned kernel package `linux-image-amd64` depends on, e.g. linux-image-6.1.0-56-amd64. */
export async function resolveKernelPackage(): Promise<string> {
  const r = await apt("apt-cache", ["depends", KERNEL_METAPACKAGE]);
  const m = r.stdout.match(/Depends:\s*(linux-image-[0-9][^\s]*)/);
  if (!m?.[1]) {
    throw new GuestFetchError(
      `Cannot find the kernel package ${KERNEL_METAPACKAGE} depends on; apt-cache said:\n` +
        r.stdout.trim(),
    );
  }
  return m[1];
}

/** Downloads `pkg`'s .deb into `dir` unless one is there; returns its path. */
async function download(pkg: string, dir: string): Promise<string> {
  const find = async () => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.startsWith(pkg + "_") && e.name.endsWith(".deb")) {
        return `${dir}/${e.name}`;
      }
    }
    return null;
  };
  const cached = await find();
  if (cached) {
    log(`${pkg}: cached (${cached})`);
    return cached;
  }
  log(`${pkg}: downloading with apt-get download`);
  await apt("apt-get", ["download", pkg], dir);
  const got = await find();
  if (!got) throw new GuestFetchError(`apt-get download ${pkg} left no ${pkg}_*.deb in ${dir}`);
  const size = (await Deno.stat(got)).size;
  log(`${pkg}: downloaded ${(size / 1e6).toFixed(1)} MB`);
  return got;
}

/** Unpacks `deb` into `dir` with dpkg -x (skipped when `dir` exists). */
async function unpack(deb: string, dir: string): Promise<void> {
  if (await exists(dir)) return;
  log(`unpacking ${deb.split("/").pop()}`);
  const tmp = dir + ".tmp";
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  const r = await run("dpkg", ["-x", deb, tmp]);
  if (!r.ok) throw new GuestFetchError(`dpkg -x ${deb} failed:\n${r.stderr.trim()}`);
  await Deno.rename(tmp, dir);
}

/** Where `fetchGuests` put things. */
export interface GuestFiles {
  /** Debian's kernel (bzImage). */
  bzImage: string;
  /** The same kernel decompressed: an ELF vmlinux with a PVH note. */
  vmlinux: string;
  /** Interactive busybox initramfs. */
  initramfs: string;
  /** Initramfs whose /init prints the marker and powers off. */
  testInitramfs: string;
  /** The static busybox binary. */
  busybox: string;
  /** Kernel package that was fetched (e.g. linux-image-6.1.0-56-amd64). */
  kernelPackage: string;
  /**
   * The kernel's modules the VMM needs (VMM_MODULES and their dependencies) as plain `.ko`,
   * with a modules.dep: `<modules>/<release>/`.
   */
  modules: string;
}

/** Fetches (or finds cached) kernel and busybox and builds the initramfs images in `cacheDir`. */
export async function fetchGuests(cacheDir = DEFAULT_CACHE_DIR): Promise<GuestFiles> {
  const dir = cacheDir.replace(/\/+$/, "");
  const debs = `${dir}/debs`;
  await Deno.mkdir(debs, { recursive: true });
  const files: GuestFiles = {
    bzImage: `${dir}/bzImage`,
    vmlinux: `${dir}/vmlinux`,
    initramfs: `${dir}/initramfs.cpio.gz`,
    testInitramfs: `${dir}/test-initramfs.cpio.gz`,
    busybox: `${dir}/busybox`,
    kernelPackage: "",
    modules: `${dir}/modules`,
  };

  // Kernel.
  const versionFile = `${dir}/kernel-package`;
  if (await exists(files.bzImage) && await exists(versionFile)) {
    files.kernelPackage = (await Deno.readTextFile(versionFile)).trim();
    log(`bzImage: cached (${files.kernelPackage})`);
  } else {
    const pkg = await resolveKernelPackage();
    log(`${KERNEL_METAPACKAGE} resolves to ${pkg}`);
    const deb = await download(pkg, debs);
    const root = `${dir}/${pkg}`;
    await unpack(deb, root);
    let vmlinuz = "";
    for await (const e of Deno.readDir(`${root}/boot`)) {
      if (e.name.startsWith("vmlinuz-")) vmlinuz = `${root}/boot/${e.name}`;
    }
    if (!vmlinuz) throw new GuestFetchError(`${deb} has no boot/vmlinuz-*`);
    await Deno.copyFile(vmlinuz, files.bzImage);
    await Deno.writeTextFile(versionFile, pkg + "\n");
    files.kernelPackage = pkg;
    log(`bzImage: ${vmlinuz.split("/").pop()} → ${files.bzImage}`);
  }

  if (!await exists(files.vmlinux)) {
    const image = await Deno.readFile(files.bzImage);
    const t0 = performance.now();
    const elf = decompressBzImage(image, parseSetupHeader(image, files.bzImage), files.bzImage);
    await Deno.writeFile(files.vmlinux, elf);
    log(
      `vmlinux: ${(elf.length / 1e6).toFixed(1)} MB decompressed in ` +
        `${((performance.now() - t0) / 1000).toFixed(1)} s → ${files.vmlinux}`,
    );
  } else {
    log(`vmlinux: cached`);
  }

  // The kernel's modules (Debian builds the virtio drivers as modules).
  const release = files.kernelPackage.replace(/^linux-image-/, "");
  if (await modulesCached(files.modules, release)) {
    log(`modules: cached (${files.modules}/${release})`);
  } else {
    const root = `${dir}/${files.kernelPackage}`;
    if (!await exists(root)) await unpack(await download(files.kernelPackage, debs), root);
    const t0 = performance.now();
    const got = await prepareModules(root, files.modules);
    log(
      `modules: ${got.copied.length} (${VMM_MODULES.join(", ")} and their dependencies) with ` +
        `modules.dep in ${((performance.now() - t0) / 1000).toFixed(1)} s → ${got.dir}`,
    );
  }

  // Busybox and the initramfs images.
  if (!await exists(files.busybox)) {
    const deb = await download(BUSYBOX_PACKAGE, debs);
    const root = `${dir}/${BUSYBOX_PACKAGE}`;
    await unpack(deb, root);
    await Deno.copyFile(`${root}/bin/busybox`, files.busybox);
    await Deno.chmod(files.busybox, 0o755);
    log(`busybox: ${files.busybox}`);
  } else {
    log(`busybox: cached`);
  }
  const busybox = await Deno.readFile(files.busybox);
  // The initramfs images are cheap to make, so they are always rebuilt: a changed /init
  // never hides behind a stale cache.
  const applets = await busyboxApplets(files.busybox);
  await Deno.writeFile(
    files.initramfs,
    await busyboxInitramfs(busybox, {
      init: INTERACTIVE_INIT,
      applets,
      files: [{ path: "etc/inittab", data: new TextEncoder().encode(INTERACTIVE_INITTAB) }],
    }),
  );
  log(`initramfs: ${files.initramfs} (${applets?.length ?? "default"} applets)`);
  await Deno.writeFile(files.testInitramfs, await testInitramfs(busybox));
  log(`test initramfs: ${files.testInitramfs}`);
  return files;
}

/** True when `<dir>/<release>/modules.dep` has every module of VMM_MODULES. */
async function modulesCached(dir: string, release: string): Promise<boolean> {
  try {
    const set = await loadModuleSet(dir, release);
    return VMM_MODULES.every((m) => set.dep.has(m));
  } catch {
    return false;
  }
}

/** Every applet path busybox knows (`busybox --list-full`), or undefined if it cannot run here. */
async function busyboxApplets(path: string): Promise<string[] | undefined> {
  try {
    const r = await run(path, ["--list-full"]);
    if (!r.ok) return undefined;
    return r.stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  try {
    const f = await fetchGuests(Deno.args[0] ?? DEFAULT_CACHE_DIR);
    log(`ready: --kernel ${f.bzImage} --initrd ${f.initramfs}`);
    log(`(or --kernel ${f.vmlinux}: the same kernel, already decompressed, boots through PVH)`);
  } catch (err) {
    if (err instanceof GuestFetchError) {
      console.error(`guests: ${err.message}`);
      Deno.exit(1);
    }
    throw err;
  }
}
