/**
 * Guest workloads of the `migration` bench group (issue 10): Debian's kernel (from
 * `deno task guests`) with a busybox initramfs whose `/init` prints MIGRATION_READY once it is
 * in its steady state, then either idles or dirties memory continuously, printing nothing more.
 * denovisor and the QEMU baseline (bench/qemu_migration.ts) boot the same kernel, the same
 * initramfs and the same command line (MIGRATION_CMDLINE).
 *
 * - `idle`: `sleep 1` in a loop; the guest is quiet apart from the kernel's own timers.
 * - `dirty`: two 16 MiB files of non-zero bytes (`yes A`, `yes B`) are made in the initramfs
 *   root (RAM: rootfs is tmpfs/ramfs), then a third 16 MiB file is rewritten in place from them
 *   in turn (`dd conv=notrunc`, 1 MiB blocks) forever: every pass changes the contents of the
 *   same 4096 page-cache pages (and dirties dd's 1 MiB buffer), so every page a migration
 *   pass sends is really dirty again and never a zero page. Under QEMU TCG on this machine one
 *   16 MiB rewrite takes ~34 ms (~470 MiB/s dirtied).
 */

import { busyboxInitramfs, DEFAULT_APPLETS } from "../tools/guests/initramfs.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** Where `deno task guests` puts the Debian kernel and the static busybox. */
export const GUESTS_DIR = `${ROOT}.cache/guests/`;
/** Debian's kernel, as a bzImage (what QEMU's `-kernel` and denovisor's `--kernel` take). */
export const MIGRATION_KERNEL = `${GUESTS_DIR}bzImage`;
/** The same kernel decompressed (ELF, boots through PVH on denovisor). */
export const MIGRATION_VMLINUX = `${GUESTS_DIR}vmlinux`;
/** The static busybox the initramfs is built around. */
export const MIGRATION_BUSYBOX = `${GUESTS_DIR}busybox`;
/** Kernel command line for both VMMs: serial console, reboot at once on panic, a quiet boot. */
export const MIGRATION_CMDLINE = "console=ttyS0 panic=-1 quiet";
/** The line `/init` prints when the workload starts; wait for it before migrating. */
export const MIGRATION_READY = "MIGRATION-READY";
/** Size of the buffer the `dirty` workload rewrites, in MiB. */
export const DIRTY_MIB = 16;

/** The two workloads. */
export type MigrationKind = "idle" | "dirty";

const HEAD = `#!/bin/sh
mount -t proc proc /proc
`;

const INITS: Record<MigrationKind, string> = {
  idle: `${HEAD}echo ${MIGRATION_READY}
while :; do sleep 1; done
`,
  // dd's status lines go to /dev/null: nothing reaches the console after the marker.
  dirty: `${HEAD}yes AAAAAAAAAAAAAAA | head -c ${DIRTY_MIB}m > /tmp/a
yes BBBBBBBBBBBBBBB | head -c ${DIRTY_MIB}m > /tmp/b
cp /tmp/a /tmp/buf
echo ${MIGRATION_READY}
while :; do
  dd if=/tmp/b of=/tmp/buf bs=1M count=${DIRTY_MIB} conv=notrunc 2>/dev/null
  dd if=/tmp/a of=/tmp/buf bs=1M count=${DIRTY_MIB} conv=notrunc 2>/dev/null
done
`,
};

/** The `/init` script of a workload. */
export function migrationInit(kind: MigrationKind): string {
  return INITS[kind];
}

/** A gzip'd cpio initramfs running the `kind` workload (busybox from `deno task guests`). */
export async function migrationInitramfs(kind: MigrationKind): Promise<Uint8Array> {
  return await busyboxInitramfs(await Deno.readFile(MIGRATION_BUSYBOX), {
    init: migrationInit(kind),
    applets: [...DEFAULT_APPLETS, "bin/dd", "usr/bin/yes"],
  });
}

/** Null when the kernel and busybox are cached, else a sentence saying what to run. */
export function migrationGuestMissing(): string | null {
  for (const p of [MIGRATION_KERNEL, MIGRATION_BUSYBOX]) {
    try {
      if (Deno.statSync(p).isFile) continue;
    } catch {
      // missing
    }
    return `${p} is missing: run \`deno task guests\``;
  }
  return null;
}
