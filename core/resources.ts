/**
 * The platform resource allocator: MMIO windows and IOAPIC interrupt lines for the devices the
 * VMM adds (virtio-mmio today). One allocator answers both the device attach (its `base=` and
 * `irq=` options) and the DSDT (each device's `LNRO0005` node), so the guest is told exactly
 * what the device claims.
 *
 * The windows are 0x1000 bytes from 0xD000_0000 up, in the PC's 32-bit MMIO gap
 * (`MMIO_GAP_START` 0xC000_0000 to 4 GiB) above where plugin examples put their windows (text_fb
 * at 0xC000_0000) and far below the IOAPIC (0xFEC0_0000) and local APIC (0xFEE0_0000). The
 * interrupt lines are the ISA IRQs nothing on this PC uses (0 PIT, 1 keyboard, 2 cascade, 4
 * COM1, 8 RTC, 9 SCI, 12 mouse, 13 FPU are taken), then the IOAPIC-only GSIs 16-23; lines a
 * `--device` plugin was given (`irq=N`) are skipped too.
 *
 * @module
 */

import { MMIO_GAP_START } from "./memory.ts";
import { IOAPIC_BASE, IOAPIC_PINS } from "../devices/ioapic.ts";
import { VmmError } from "./errors.ts";

/** First virtio-mmio window. */
export const DEVICE_MMIO_BASE = 0xd000_0000;
/** The windows end below this (0x2EC0_0000 bytes: tens of thousands of devices). */
export const DEVICE_MMIO_LIMIT = IOAPIC_BASE;
/** The interrupt lines handed out, in order. */
export const DEVICE_IRQS: readonly number[] = [
  5,
  6,
  7,
  10,
  11,
  14,
  15,
  3,
  ...Array.from({ length: IOAPIC_PINS - 16 }, (_, i) => 16 + i),
];

/** One device's resources. */
export interface DeviceResources {
  /** Guest-physical base of its MMIO window. */
  base: number;
  /** Window size in bytes. */
  size: number;
  /** Its interrupt line (ISA IRQ = GSI on this PC, or a GSI from 16). */
  irq: number;
}

/**
 * Hands out MMIO windows and interrupt lines, each at most once.
 *
 * @example
 * ```ts
 * import { ResourceAllocator } from "./resources.ts";
 * const a = new ResourceAllocator({ reservedIrqs: [5] });
 * console.log(a.allocate().irq); // 6
 * ```
 */
export class ResourceAllocator {
  #next: number;
  readonly #limit: number;
  readonly #irqs: number[];
  /** Everything handed out, in order. */
  readonly allocated: DeviceResources[] = [];

  constructor(
    opts: { mmioBase?: number; mmioLimit?: number; reservedIrqs?: readonly number[] } = {},
  ) {
    this.#next = opts.mmioBase ?? DEVICE_MMIO_BASE;
    this.#limit = opts.mmioLimit ?? DEVICE_MMIO_LIMIT;
    if (this.#next < MMIO_GAP_START) {
      throw new RangeError(`device windows must be in the MMIO gap, not at ${this.#next}`);
    }
    const reserved = new Set(opts.reservedIrqs ?? []);
    this.#irqs = DEVICE_IRQS.filter((l) => !reserved.has(l));
  }

  /** The next window of `size` bytes (aligned to its size, at least 4 KiB) and the next line. */
  allocate(size = 0x1000): DeviceResources {
    const align = Math.max(0x1000, 2 ** Math.ceil(Math.log2(size)));
    const base = Math.ceil(this.#next / align) * align;
    if (base + size > this.#limit) {
      throw new VmmError(`No MMIO space left for another device (${this.allocated.length} placed)`);
    }
    const irq = this.#irqs.shift();
    if (irq === undefined) {
      throw new VmmError(
        `No interrupt line left for another device: ${this.allocated.length} devices use ` +
          `${this.allocated.map((r) => r.irq).join(", ")}`,
      );
    }
    this.#next = base + size;
    const r = { base, size, irq };
    this.allocated.push(r);
    return r;
  }
}
