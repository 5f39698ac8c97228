/**
 * Writes initramfs archives: cpio "newc" (the format the Linux kernel unpacks, magic 070701),
 * optionally gzip'd with the web CompressionStream. Lets tools and tests build a guest's root
 * file system from a few entries without external tools.
 */

/** One entry of an initramfs: a directory, regular file, symbolic link or device node. */
export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; data: Uint8Array | string; mode?: number }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "chardev"; path: string; major: number; minor: number; mode?: number }
  | { kind: "blockdev"; path: string; major: number; minor: number; mode?: number };

/** newc header magic (kernel Documentation/driver-api/early-userspace/buffer-format.rst). */
const NEWC_MAGIC = "070701";
/** Header size: 6-byte magic plus 13 fields of 8 hex digits. */
const NEWC_HEADER_SIZE = 110;
/** Name of the entry that ends an archive. */
const TRAILER = "TRAILER!!!";

/** File type bits of st_mode (POSIX <sys/stat.h>). */
export const S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFLNK = 0o120000;
/** File type bits of st_mode (POSIX <sys/stat.h>). */
export const S_IFCHR = 0o020000, S_IFBLK = 0o060000;

const encoder = new TextEncoder();

function align4(n: number): number {
  return (n + 3) & ~3;
}

function modeOf(e: CpioEntry): number {
  switch (e.kind) {
    case "dir":
      return S_IFDIR | (e.mode ?? 0o755);
    case "file":
      return S_IFREG | (e.mode ?? 0o644);
    case "symlink":
      return S_IFLNK | 0o777;
    case "chardev":
      return S_IFCHR | (e.mode ?? 0o600);
    case "blockdev":
      return S_IFBLK | (e.mode ?? 0o600);
  }
}

function dataOf(e: CpioEntry): Uint8Array {
  if (e.kind === "file") return typeof e.data === "string" ? encoder.encode(e.data) : e.data;
  if (e.kind === "symlink") return encoder.encode(e.target);
  return new Uint8Array(0);
}

/** Strips leading "/" and "./" so names are relative, as the kernel's unpacker expects. */
function normalizePath(path: string): string {
  const p = path.replace(/^(\.?\/)+/, "");
  if (p === "" || p.split("/").some((part) => part === "..")) {
    throw new TypeError(`Initramfs entry path "${path}" is empty or leaves the archive root`);
  }
  return p;
}

/**
 * Builds an uncompressed cpio newc archive from `files`, ending with the TRAILER!!! entry.
 * Every header+name and every file body is padded to 4 bytes; ownership is root, mtime 0.
 *
 * @example
 * ```ts
 * import { buildInitramfs } from "./cpio.ts";
 * const archive = buildInitramfs([
 *   { kind: "dir", path: "/dev" },
 *   { kind: "chardev", path: "/dev/console", major: 5, minor: 1 },
 *   { kind: "file", path: "/init", data: "#!/bin/sh\necho hi\n", mode: 0o755 },
 * ]);
 * ```
 */
export function buildInitramfs(files: CpioEntry[]): Uint8Array {
  const parts: { name: Uint8Array; data: Uint8Array; mode: number; rmaj: number; rmin: number }[] =
    [];
  let total = 0;
  const add = (name: string, data: Uint8Array, mode: number, rmaj: number, rmin: number) => {
    const nameBytes = encoder.encode(name + "\0");
    parts.push({ name: nameBytes, data, mode, rmaj, rmin });
    total += align4(NEWC_HEADER_SIZE + nameBytes.length) + align4(data.length);
  };
  for (const e of files) {
    const isDev = e.kind === "chardev" || e.kind === "blockdev";
    add(
      normalizePath(e.path),
      dataOf(e),
      modeOf(e),
      isDev ? e.major : 0,
      isDev ? e.minor : 0,
    );
  }
  add(TRAILER, new Uint8Array(0), 0, 0, 0);

  const out = new Uint8Array(total);
  let pos = 0;
  parts.forEach((p, i) => {
    const isTrailer = i === parts.length - 1;
    const fields = [
      isTrailer ? 0 : i + 1, // ino: unique per entry (no hard links)
      p.mode,
      0, // uid
      0, // gid
      (p.mode & 0o170000) === S_IFDIR ? 2 : 1, // nlink
      0, // mtime
      p.data.length,
      0, // devmajor
      0, // devminor
      p.rmaj,
      p.rmin,
      p.name.length,
      0, // check (only for the 070702 "crc" variant)
    ];
    let header = NEWC_MAGIC;
    for (const f of fields) header += (f >>> 0).toString(16).padStart(8, "0");
    out.set(encoder.encode(header), pos);
    out.set(p.name, pos + NEWC_HEADER_SIZE);
    pos = align4(pos + NEWC_HEADER_SIZE + p.name.length);
    out.set(p.data, pos);
    pos = align4(pos + p.data.length);
  });
  return out;
}

/**
 * Gzips `data` with the web CompressionStream (the kernel's initramfs unpacker reads gzip).
 *
 * @example
 * ```ts
 * import { buildInitramfs, gzip } from "./cpio.ts";
 * const gz = await gzip(buildInitramfs([{ kind: "dir", path: "/proc" }]));
 * ```
 */
export async function gzip(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
