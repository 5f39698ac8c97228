/** The shape every kernel loader shares: bytes in, guest RAM filled and a start state out. */

import type { CpuState } from "../cpu_state.ts";
import type { GuestMemory } from "../memory.ts";

/** Image formats `--format` accepts. */
export type ImageFormat = "flat" | "multiboot" | "linux";

/** What a loader gets besides the image bytes. */
export interface BootOptions {
  /** Path of the image, for error messages. */
  imagePath: string;
  /** Kernel command line (Multiboot, Linux). */
  cmdline: string;
  /** Initial ramdisk / Multiboot module bytes, if any. */
  initrd?: Uint8Array;
  /** Path of the initrd, for error messages. */
  initrdPath?: string;
  /** Guest-physical address of the ACPI RSDP the machine wrote (Linux, PVH). */
  acpiRsdpAddr?: number;
}

/** What a loader leaves behind. */
export interface BootSetup {
  /** The format that was loaded. */
  format: ImageFormat;
  /** The vCPU's start state (mode, registers, segments). */
  state: CpuState;
  /** One line for `--trace` / logs: what was loaded where. */
  description: string;
}

/** A loader: throws ImageError (naming `opts.imagePath`) for an image it cannot load. */
export type Loader = (image: Uint8Array, memory: GuestMemory, opts: BootOptions) => BootSetup;

export type { CpuState };
