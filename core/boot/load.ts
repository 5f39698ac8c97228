/**
 * The one entry point the machine uses to boot a kernel image: resolves `--format auto` with
 * `detectFormat` and dispatches to the flat, Multiboot or Linux loader.
 */

import { ImageError } from "../errors.ts";
import type { GuestMemory } from "../memory.ts";
import { detectFormat, truncatedLinuxReason } from "./detect.ts";
import { isElf } from "./elf.ts";
import { loadFlat } from "./flat.ts";
import { findMultibootHeader, loadMultiboot } from "./multiboot.ts";
import type { BootOptions, BootSetup, ImageFormat, Loader } from "./types.ts";
import { loadLinux } from "./linux.ts";

/** What `--format` accepts. */
export type FormatChoice = "auto" | ImageFormat;

const LOADERS: Record<ImageFormat, Loader> = {
  flat: loadFlat,
  multiboot: loadMultiboot,
  linux: loadLinux,
};

/**
 * The format `image` is loaded as: `format`, or for "auto" what `detectFormat` finds. Throws
 * ImageError naming `imagePath` for what auto must not take for a flat image (an ELF file it
 * cannot enter, a truncated bzImage), and for a `--format multiboot` image without the header.
 *
 * @example
 * ```ts
 * import { resolveFormat } from "./load.ts";
 * resolveFormat("auto", new Uint8Array([0xf4]), "hlt.bin"); // "flat"
 * ```
 */
export function resolveFormat(
  format: FormatChoice,
  image: Uint8Array,
  imagePath: string,
): ImageFormat {
  if (format === "auto") {
    const truncated = truncatedLinuxReason(image);
    if (truncated !== null) {
      throw new ImageError(
        `Kernel image "${imagePath}" is a truncated Linux kernel (${image.length} bytes): ` +
          `${truncated}. Copy or download the bzImage again.`,
      );
    }
    const chosen = detectFormat(image);
    if (chosen === "flat" && isElf(image)) {
      throw new ImageError(
        `Kernel image "${imagePath}" is an ELF file with neither a Multiboot header nor a ` +
          `Xen PVH note, so denovisor does not know how to enter it. Build it as a Multiboot ` +
          `kernel, a Linux kernel with CONFIG_PVH, or pass --format flat to run its raw bytes.`,
      );
    }
    return chosen;
  }
  if (format === "multiboot" && !findMultibootHeader(image)) {
    throw new ImageError(
      `Kernel image "${imagePath}" is not a Multiboot kernel: no Multiboot header ` +
        `(magic 0x1BADB002) in its first 8192 bytes. It looks like a ${detectFormat(image)} ` +
        `image: use --format auto.`,
    );
  }
  return format;
}

/**
 * Loads `image` into `memory` as `format` ("auto" detects it) and returns the vCPU's start
 * state. Throws ImageError naming `opts.imagePath` when the image is not of the format asked
 * for or cannot be loaded.
 *
 * @example
 * ```ts
 * import { loadImage } from "./load.ts";
 * import { GuestMemory } from "../memory.ts";
 * const setup = loadImage("auto", new Uint8Array([0xf4]), GuestMemory.allocate(1 << 20), {
 *   imagePath: "hlt.bin",
 *   cmdline: "",
 * });
 * console.log(setup.format); // "flat"
 * ```
 */
export function loadImage(
  format: FormatChoice,
  image: Uint8Array,
  memory: GuestMemory,
  opts: BootOptions,
): BootSetup {
  const chosen = resolveFormat(format, image, opts.imagePath);
  return LOADERS[chosen](image, memory, opts);
}
