/**
 * Image format detection for `--format auto`: a Linux bzImage by its setup header signature, a
 * Multiboot kernel by its header, an ELF vmlinux by its Xen PVH entry note; anything else is
 * taken as a flat real-mode image.
 */

import { VmmError } from "../errors.ts";
import { hex } from "../memory.ts";
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

/** End of the setup header fields the Linux loader reads (protocol 2.06+ ends at 0x268). */
export const BZIMAGE_MIN_SIZE = 0x268;

/**
 * Why `image` looks like the start of a Linux bzImage cut short (before its setup header is
 * whole), or null. A bzImage with an EFI stub starts with "MZ" and a PE header; an older one has
 * the boot sector's "Use a boot loader." message, or the 0xAA55 boot flag at 0x1FE followed by a
 * jump and "HdrS" that the file cuts off.
 *
 * @example
 * ```ts
 * import { truncatedLinuxReason } from "./detect.ts";
 * truncatedLinuxReason(new Uint8Array([0xf4])); // null
 * ```
 */
export function truncatedLinuxReason(image: Uint8Array): string | null {
  if (image.length >= BZIMAGE_MIN_SIZE && isBzImage(image)) return null;
  if (image.length >= BZIMAGE_HEADER_OFFSET + 4 && !isBzImage(image)) {
    // Long enough for "HdrS" and without it: a bzImage cut inside the setup header has it.
    return null;
  }
  if (isBzImage(image)) return "its setup header is cut short";
  if (image.length >= 2 && image[0] === 0x4d && image[1] === 0x5a) {
    const peAt = image.length >= 0x40
      ? new DataView(image.buffer, image.byteOffset, image.length).getUint32(0x3c, true)
      : -1;
    const pe = peAt >= 0 && peAt + 4 <= image.length && image[peAt] === 0x50 &&
      image[peAt + 1] === 0x45 && image[peAt + 2] === 0 && image[peAt + 3] === 0;
    if (pe || image.length < 0x40 || peAt >= image.length) {
      return 'it starts like an EFI-stub bzImage ("MZ", a PE header) but ends before the ' +
        `setup header at ${hex(BZIMAGE_HEADER_OFFSET)}`;
    }
  }
  const text = new TextDecoder("latin1").decode(image.subarray(0, 0x200));
  if (text.includes("Use a boot loader.")) {
    return "it has a bzImage boot sector but ends before the setup header";
  }
  return null;
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
