/**
 * The one entry point the machine uses to boot a kernel image: resolves `--format auto` with
 * `detectFormat` and dispatches to the flat, Multiboot or Linux loader.
 */

import { ImageError } from "../errors.ts";
import type { GuestMemory } from "../memory.ts";
import { detectFormat } from "./detect.ts";
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
  let chosen: ImageFormat;
  if (format === "auto") {
    chosen = detectFormat(image);
    if (chosen === "flat" && isElf(image)) {
      throw new ImageError(
        `Kernel image "${opts.imagePath}" is an ELF file with neither a Multiboot header nor a ` +
          `Xen PVH note, so denovisor does not know how to enter it. Build it as a Multiboot ` +
          `kernel, a Linux kernel with CONFIG_PVH, or pass --format flat to run its raw bytes.`,
      );
    }
  } else {
    chosen = format;
    if (format === "multiboot" && !findMultibootHeader(image)) {
      throw new ImageError(
        `Kernel image "${opts.imagePath}" is not a Multiboot kernel: no Multiboot header ` +
          `(magic 0x1BADB002) in its first 8192 bytes. It looks like a ${detectFormat(image)} ` +
          `image: use --format auto.`,
      );
    }
  }
  return LOADERS[chosen](image, memory, opts);
}
