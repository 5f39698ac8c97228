/**
 * Image format detection for `--format auto`: a Linux bzImage by its setup header signature, a
 * Multiboot kernel by its header, an ELF vmlinux by its Xen PVH entry note; anything else is
 * taken as a flat real-mode image.
 */

import { VmmError } from "../errors.ts";
import { isElf, parseElf, readElfNotes } from "./elf.ts";
import { findMultibootHeader } from "./multiboot.ts";
import type { ImageFormat } from "./types.ts";

/** Offset of the "HdrS" signature in a bzImage (Linux boot protocol, `header` field). */
export const BZIMAGE_HEADER_OFFSET = 0x202;
/** "HdrS" as a little-endian u32. */
export const BZIMAGE_HEADER_MAGIC = 0x5372_6448;
/** The owner name of Xen ELF notes. */
export const XEN_NOTE_NAME = "Xen";
/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point (xen/include/public/elfnote.h). */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/**
 * True when `image` carries the Linux boot protocol's "HdrS" signature at 0x202.
 *
 * @example
 * ```ts
 * import { isBzImage } from "./detect.ts";
 * isBzImage(new Uint8Array(1024)); // false
 * ```
 */
export function isBzImage(image: Uint8Array): boolean {
  const at = BZIMAGE_HEADER_OFFSET;
  return image.length >= at + 4 && image[at] === 0x48 && image[at + 1] === 0x64 &&
    image[at + 2] === 0x72 && image[at + 3] === 0x53;
}

/**
 * True when `image` is an ELF file with a Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) in a
 * PT_NOTE segment, as a Linux vmlinux built with CONFIG_PVH has. A malformed ELF file is not.
 *
 * @example
 * ```ts
 * import { hasPvhNote } from "./detect.ts";
 * hasPvhNote(new Uint8Array(64)); // false
 * ```
 */
export function hasPvhNote(image: Uint8Array): boolean {
  if (!isElf(image)) return false;
  try {
    const elf = parseElf(image, "(detect)");
    return readElfNotes(image, elf, "(detect)").some((n) =>
      n.name === XEN_NOTE_NAME && n.type === XEN_ELFNOTE_PHYS32_ENTRY
    );
  } catch (err) {
    if (err instanceof VmmError) return false;
    throw err;
  }
}

/**
 * The format of a kernel image, for `--format auto`: "linux" for a bzImage ("HdrS" at 0x202)
 * or an ELF file with a PVH note, "multiboot" when a Multiboot header magic is in the first
 * 8 KiB (even with a bad checksum, so the Multiboot loader can report it), else "flat".
 *
 * @example
 * ```ts
 * import { detectFormat } from "./detect.ts";
 * detectFormat(new Uint8Array([0xf4])); // "flat"
 * ```
 */
export function detectFormat(image: Uint8Array): ImageFormat {
  if (isBzImage(image)) return "linux";
  if (findMultibootHeader(image)) return "multiboot";
  if (hasPvhNote(image)) return "linux";
  return "flat";
}
