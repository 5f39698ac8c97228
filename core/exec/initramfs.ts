/**
 * The initramfs `--exec` boots: Debian's static busybox, the kernel modules the VM's devices
 * need (loaded in dependency order), and an /init that runs the command with busybox sh and
 * reports through the console protocol of `protocol.ts`.
 */

import { buildInitramfs, type CpioEntry } from "../boot/cpio.ts";
import { type InitramfsModules, insmodScript } from "../boot/modules.ts";

/** Quotes `s` for a POSIX shell (single quotes; a quote inside becomes '\''). */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The msize exec guests mount 9p shares with (Linux 6.1's virtio transport allows ~500 KB). */
export const EXEC_9P_MSIZE = 262144;

/** A 9p share the exec /init mounts: its tag, where, and read-only or not. */
export interface ExecMount {
  tag: string;
  dir: string;
  readOnly?: boolean;
}

/** The /init lines that mount `mounts` (a failed mount says so on the console and powers off). */
export function mountScript(mounts: readonly ExecMount[]): string {
  return mounts.map((m) => {
    const opts = `trans=virtio,version=9p2000.L,msize=${EXEC_9P_MSIZE}${m.readOnly ? ",ro" : ""}`;
    const dir = shellQuote(m.dir), tag = shellQuote(m.tag);
    return `mkdir -p ${dir} && mount -t 9p -o ${opts} ${tag} ${dir} || ` +
      `{ echo "denovisor: cannot mount the 9p share "${tag}" at "${dir}; poweroff -f; }\n`;
  }).join("");
}

/**
 * The /init script: mounts proc, sys and devtmpfs (installing busybox's applet links first when
 * the archive has none), loads the modules, mounts the 9p shares (`mounts`: the host's current
 * directory, the `--share`s), silences kernel messages below KERN_ALERT, puts the
 * console in raw mode (bytes pass unchanged: no \n → \r\n), then frames the command's run
 * (`protocol.ts`): the start frame, its stdout as is, its stderr line by line through a FIFO, and
 * the exit frame with its status. The command runs in `workdir` (default `/`) with stdin from
 * /dev/null. Once it
 * ended, the relay gets 2 s to drain (a background process that keeps stderr open would hold it
 * forever; the shell's notice of the relay's end goes nowhere). `poweroff -f` is the fallback
 * end (the VMM stops the VM as soon as it reads the exit frame).
 */
export function execInitScript(
  cmd: string,
  nonce: string,
  modules?: InitramfsModules,
  opts: { mounts?: readonly ExecMount[]; workdir?: string } = {},
): string {
  return `#!/bin/busybox sh
[ -e /bin/mount ] || /bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
${modules === undefined ? "" : insmodScript(modules)}${mountScript(opts.mounts ?? [])}\
echo 1 > /proc/sys/kernel/printk
stty raw -echo 2>/dev/null
N=${shellQuote(nonce)}
CMD=${shellQuote(cmd)}
mkfifo /tmp/.exec-stderr
(while IFS= read -r line || [ -n "$line" ]; do printf '\\036%sE%s\\n' "$N" "$line"; done) \\
  < /tmp/.exec-stderr &
relay=$!
mkdir -p /root
cd ${shellQuote(opts.workdir ?? "/")}
printf '\\036%sS\\n' "$N"
sh -c "$CMD" < /dev/null 2> /tmp/.exec-stderr
status=$?
exec 2>/dev/null
(sleep 2; kill $relay) &
wait $relay
printf '\\036%sX%d\\n' "$N" "$status"
poweroff -f
`;
}

/** The pieces of the exec initramfs. */
export interface ExecInitramfsOptions {
  /** The static busybox binary. */
  busybox: Uint8Array;
  cmd: string;
  nonce: string;
  modules?: InitramfsModules;
  /** 9p shares /init mounts (after the modules), and where CMD runs (default `/`). */
  mounts?: readonly ExecMount[];
  workdir?: string;
  /**
   * Applet paths (`busybox --list-full`) to link to busybox in the archive; without them /init
   * runs `busybox --install -s` (1.7 s on the interpreter).
   */
  applets?: readonly string[];
}

/**
 * The cpio archive: /bin/busybox and its applet links, /init, /dev/console and the modules.
 * Uncompressed: the guest copies it instead of inflating it (seconds on the interpreter).
 */
export function execInitramfs(opts: ExecInitramfsOptions): Uint8Array {
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const dir = (path: string, mode = 0o755) => {
    const parts = path.split("/");
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join("/");
      if (dirs.has(d)) continue;
      dirs.add(d);
      entries.push({ kind: "dir", path: d, mode: d === "tmp" ? 0o1777 : mode });
    }
  };
  for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root"]) {
    dir(d);
  }
  // /dev/console must exist before devtmpfs is mounted: the kernel opens it for init.
  entries.push({ kind: "chardev", path: "dev/console", major: 5, minor: 1, mode: 0o600 });
  entries.push({ kind: "chardev", path: "dev/null", major: 1, minor: 3, mode: 0o666 });
  entries.push({ kind: "file", path: "bin/busybox", data: opts.busybox, mode: 0o755 });
  const links = new Set(["bin/sh"]);
  for (const a of opts.applets ?? []) {
    const path = a.replace(/^\/+/, "");
    if (path === "" || path === "bin/busybox" || path.includes("..")) continue;
    if (path.includes("/")) dir(path.slice(0, path.lastIndexOf("/")));
    links.add(path);
  }
  for (const path of links) entries.push({ kind: "symlink", path, target: "/bin/busybox" });
  if (opts.modules !== undefined) {
    for (const f of opts.modules.files) {
      const path = `lib/modules/${opts.modules.release}/${f.path}`;
      dir(path.slice(0, path.lastIndexOf("/")));
      entries.push({ kind: "file", path, data: f.data, mode: 0o644 });
    }
  }
  entries.push({
    kind: "file",
    path: "init",
    data: execInitScript(opts.cmd, opts.nonce, opts.modules, {
      ...(opts.mounts === undefined ? {} : { mounts: opts.mounts }),
      ...(opts.workdir === undefined ? {} : { workdir: opts.workdir }),
    }),
    mode: 0o755,
  });
  return buildInitramfs(entries);
}
