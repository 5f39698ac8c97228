/**
 * Busybox initramfs images for Linux guests: the interactive one `deno task guests` writes to
 * `.cache/guests/initramfs.cpio.gz`, and the self-checking one the boot tests run (it prints a
 * marker line with the kernel release and CPU count, runs a pipeline and powers off).
 */

import { buildInitramfs, type CpioEntry, gzip } from "../../core/boot/cpio.ts";
import { type InitramfsModules, insmodScript } from "../../core/boot/modules.ts";

/** Marker the test init prints first; a boot test waits for this on the console. */
export const TEST_MARKER = "DENOVISOR-MARKER";
/** Marker of the interactive init, printed just before the shell starts. */
export const SHELL_MARKER = "DENOVISOR-SHELL";

/** Applets linked when the caller has no list (what both init scripts and a shell user need). */
export const DEFAULT_APPLETS: readonly string[] = [
  "bin/sh",
  "bin/ash",
  "bin/cat",
  "bin/cp",
  "bin/dmesg",
  "bin/echo",
  "bin/grep",
  "bin/ls",
  "bin/mkdir",
  "bin/mount",
  "bin/ps",
  "bin/rm",
  "bin/sleep",
  "bin/uname",
  "bin/umount",
  "sbin/poweroff",
  "sbin/reboot",
  "sbin/halt",
  "sbin/init",
  "usr/bin/awk",
  "usr/bin/free",
  "usr/bin/head",
  "usr/bin/nproc",
  "usr/bin/setsid",
  "usr/bin/tail",
  "usr/bin/top",
  "usr/bin/wc",
  "usr/bin/uptime",
  "bin/cttyhack",
];

/** What a busybox initramfs is made of. */
export interface BusyboxInitramfsOptions {
  /** The `/init` script (run by busybox sh). */
  init: string;
  /** Applet paths relative to `/` (as `busybox --list-full` prints them) to link to busybox. */
  applets?: readonly string[];
  /** More regular files (e.g. `etc/inittab`), mode 0644; their directories are created. */
  files?: readonly { path: string; data: Uint8Array }[];
  /**
   * Kernel modules (`readInitramfsModules`): packed under `/lib/modules/<release>/`, and `/init`
   * insmods them in order before it runs `init` (which then lives at `/etc/init.user`).
   */
  modules?: InitramfsModules;
}

/**
 * The `/init` of the interactive guest: mounts proc, sys and devtmpfs, prints SHELL_MARKER and
 * hands PID 1 to busybox init, which starts a shell on the console (with job control, through
 * cttyhack) and, like a real machine's init, turns `poweroff` and `reboot` into a clean shutdown.
 */
export const INTERACTIVE_INIT = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "${SHELL_MARKER} $(uname -r) on $(nproc) CPU(s); 'poweroff' ends the VM"
exec /sbin/init
`;

/** busybox init's table for the interactive guest: a respawning console shell, clean shutdown. */
export const INTERACTIVE_INITTAB = `::respawn:-/bin/cttyhack /bin/sh
::ctrlaltdel:/sbin/reboot
`;

/**
 * The `/init` the CI boot test runs: one marker line with the kernel release and CPU count, a
 * small pipeline (exercises fork, exec and pipes), then an immediate power-off.
 */
export const TEST_INIT = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "${TEST_MARKER} release=$(uname -r) cpus=$(nproc)"
echo "DENOVISOR-PIPELINE words=$(echo a b c | wc -w)"
poweroff -f
`;

/**
 * The entries of a busybox root file system: the static busybox binary at /bin/busybox, one
 * symlink per applet, the mount points, /dev/console, and `/init`.
 */
export function busyboxEntries(busybox: Uint8Array, opts: BusyboxInitramfsOptions): CpioEntry[] {
  const entries: CpioEntry[] = [];
  for (const d of ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp"]) {
    entries.push({ kind: "dir", path: d, mode: d === "tmp" ? 0o1777 : 0o755 });
  }
  // /dev/console (5:1) must exist before devtmpfs is mounted: the kernel opens it for init.
  entries.push({ kind: "chardev", path: "dev/console", major: 5, minor: 1, mode: 0o600 });
  entries.push({ kind: "chardev", path: "dev/null", major: 1, minor: 3, mode: 0o666 });
  entries.push({ kind: "file", path: "bin/busybox", data: busybox, mode: 0o755 });
  const seen = new Set<string>(["bin/busybox"]);
  for (const a of opts.applets ?? DEFAULT_APPLETS) {
    const path = a.replace(/^\/+/, "");
    if (seen.has(path) || path === "") continue;
    seen.add(path);
    entries.push({ kind: "symlink", path, target: "/bin/busybox" });
  }
  for (const f of opts.files ?? []) {
    const dir = f.path.split("/").slice(0, -1).join("/");
    if (dir !== "" && !entries.some((e) => e.path === dir)) {
      entries.push({ kind: "dir", path: dir, mode: 0o755 });
    }
    entries.push({ kind: "file", path: f.path, data: f.data, mode: 0o644 });
  }
  if (opts.modules !== undefined) {
    const mods = opts.modules;
    const dirs = new Set(entries.filter((e) => e.kind === "dir").map((e) => e.path));
    for (const f of mods.files) {
      const path = `lib/modules/${mods.release}/${f.path}`;
      const parts = path.split("/");
      for (let i = 1; i < parts.length; i++) {
        const dir = parts.slice(0, i).join("/");
        if (!dirs.has(dir)) entries.push({ kind: "dir", path: dir, mode: 0o755 });
        dirs.add(dir);
      }
      entries.push({ kind: "file", path, data: f.data, mode: 0o644 });
    }
    if (!dirs.has("etc")) entries.push({ kind: "dir", path: "etc", mode: 0o755 });
    entries.push({ kind: "file", path: "etc/init.user", data: opts.init, mode: 0o755 });
    const init = `#!/bin/sh\n${insmodScript(mods)}exec /etc/init.user "$@"\n`;
    entries.push({ kind: "file", path: "init", data: init, mode: 0o755 });
  } else {
    entries.push({ kind: "file", path: "init", data: opts.init, mode: 0o755 });
  }
  return entries;
}

/**
 * A gzip'd cpio initramfs with busybox and the given `/init`.
 *
 * @example
 * ```ts ignore
 * import { busyboxInitramfs, TEST_INIT } from "./initramfs.ts";
 * const busybox = await Deno.readFile(".cache/guests/busybox");
 * const gz = await busyboxInitramfs(busybox, { init: TEST_INIT });
 * ```
 */
export function busyboxInitramfs(
  busybox: Uint8Array,
  opts: BusyboxInitramfsOptions,
): Promise<Uint8Array<ArrayBuffer>> {
  return gzip(buildInitramfs(busyboxEntries(busybox, opts)));
}

/** The CI boot test's initramfs (TEST_INIT) around the given static busybox. */
export function testInitramfs(busybox: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return busyboxInitramfs(busybox, { init: TEST_INIT });
}
