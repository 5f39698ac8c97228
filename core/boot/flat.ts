/**
 * Flat image loader: the raw bytes go to 0000:7C00 and the vCPU starts there in real mode, the
 * way a PC BIOS starts a boot sector (without the BIOS: no interrupt services are installed).
 */

import { realModeSegment, resetCpuState } from "../cpu_state.ts";
import { ImageError } from "../errors.ts";
import { type GuestMemory, hex } from "../memory.ts";
import type { BootOptions, BootSetup } from "./types.ts";

/** Where a flat image is loaded and entered (the BIOS boot sector address). */
export const FLAT_LOAD_ADDR = 0x7c00;
/** A flat image must end below the extended BIOS data area (conventional memory's top). */
export const FLAT_LIMIT = 0x9_fc00;
/** The largest flat image: from 0x7C00 up to 0x9FC00. */
export const FLAT_MAX_SIZE = FLAT_LIMIT - FLAT_LOAD_ADDR;
/** DL on entry: the boot drive number a BIOS passes (0x80 = first hard disk). */
export const FLAT_BOOT_DRIVE = 0x80;

/**
 * Loads a flat real-mode image (the `Loader` for format "flat").
 *
 * State on entry: CS:IP = 0000:7C00; DS = ES = FS = GS = SS = 0; SP = 0x7C00 (the stack grows
 * down below the image, as after a BIOS boot); DL = 0x80 (boot drive); every other general
 * register 0; EFLAGS = 0x2 (interrupts off); CR0 = ET (real mode); IDTR = 0/0x3FF (an empty
 * real-mode vector table: there is no BIOS). The image may be up to 0x98000 bytes (it must end
 * below 0x9FC00).
 *
 * @example
 * ```ts
 * import { loadFlat } from "./flat.ts";
 * import { GuestMemory } from "../memory.ts";
 * const image = new Uint8Array([0xf4]); // hlt
 * const setup = loadFlat(image, GuestMemory.allocate(1 << 20), { imagePath: "hlt.bin", cmdline: "" });
 * console.log(setup.state.rip); // 31744n
 * ```
 */
export function loadFlat(image: Uint8Array, memory: GuestMemory, opts: BootOptions): BootSetup {
  const path = opts.imagePath;
  if (image.length === 0) {
    throw new ImageError(
      `Kernel image "${path}" is empty: a flat image needs at least one instruction. Check the ` +
        `path, or rebuild the image.`,
    );
  }
  if (image.length > FLAT_MAX_SIZE) {
    throw new ImageError(
      `Kernel image "${path}" is too big for a flat image: ${image.length} bytes, but a flat ` +
        `image is loaded at ${hex(FLAT_LOAD_ADDR)} and must end below ${hex(FLAT_LIMIT)}, so at ` +
        `most ${FLAT_MAX_SIZE} bytes fit. Use --format multiboot or linux for larger kernels.`,
    );
  }
  if (!memory.isRam(FLAT_LOAD_ADDR, image.length)) {
    throw new ImageError(
      `Kernel image "${path}" (${image.length} bytes at ${hex(FLAT_LOAD_ADDR)}) does not fit in ` +
        `guest RAM (${memory.describe()}). Give the VM more memory with --mem.`,
    );
  }
  memory.write(FLAT_LOAD_ADDR, image);

  const state = resetCpuState();
  state.cs = realModeSegment(0, 0xb);
  state.rip = BigInt(FLAT_LOAD_ADDR);
  state.gpr[2] = BigInt(FLAT_BOOT_DRIVE); // RDX: DL = boot drive
  state.gpr[4] = BigInt(FLAT_LOAD_ADDR); // RSP
  state.rflags = 0x2;
  return {
    format: "flat",
    state,
    description: `flat image "${path}" (${image.length} bytes) at ${hex(FLAT_LOAD_ADDR)}, ` +
      `real mode, entry 0000:7c00`,
  };
}
