/**
 * The I/O APIC (82093AA, version 0x11) at 0xFEC00000: IOREGSEL at +0x00, IOWIN at +0x10, ID,
 * version and arbitration registers, and 24 redirection entries with edge and level triggering,
 * remote IRR and masks. Messages go to whoever sets `deliver` (the local APIC, wired by
 * `platform.ts`); the local APIC's EOI of a level-triggered vector comes back through `eoi()`.
 *
 * @module
 */

import {
  API_VERSION,
  definePlugin,
  type Device,
  type DeviceState,
  type Plugin,
} from "../plugins/mod.ts";

/** Guest-physical base of the IOAPIC (the PC default, and what the MADT says). */
export const IOAPIC_BASE = 0xfec0_0000;
/** MMIO window the IOAPIC claims (QEMU maps a full page too). */
export const IOAPIC_SIZE = 0x1000;
/** Number of redirection entries (pins / GSIs 0-23). */
export const IOAPIC_PINS = 24;

const IOREGSEL = 0x00, IOWIN = 0x10;
const REG_ID = 0x00, REG_VERSION = 0x01, REG_ARB = 0x02, REG_REDIR = 0x10;
/** Version 0x11 (82093AA), maximum redirection entry 23. */
const VERSION = 0x11 | ((IOAPIC_PINS - 1) << 16);
// Redirection entry low-word bits (82093AA datasheet, 3.2.4).
const RTE_VECTOR = 0xff, RTE_DM_SHIFT = 8, RTE_DEST_LOGICAL = 0x800;
const RTE_REMOTE_IRR = 0x4000, RTE_LEVEL = 0x8000, RTE_MASKED = 0x1_0000;
const RTE_WRITABLE = 0x1_afff; // vector, delivery mode, dest mode, polarity, trigger, mask

/** Where the IOAPIC sends an interrupt message. */
export type IoApicDeliver = (
  dest: number,
  logical: boolean,
  deliveryMode: number,
  vector: number,
  level: boolean,
) => void;

/**
 * The IOAPIC's registers and pin state.
 *
 * @example Routing pin 4 to vector 0x24
 * ```ts
 * import { IoApic } from "./ioapic.ts";
 * const ioapic = new IoApic();
 * ioapic.deliver = (_dest, _logical, _mode, vector) => console.log(vector.toString(16));
 * ioapic.writeRegister(0x10 + 2 * 4, 0x24); // unmasked, edge, fixed
 * ioapic.setPin(4, true); // prints "24"
 * ```
 */
export class IoApic {
  /** IOAPIC ID (bits 27:24 of register 0). */
  id = 0;
  /** IOREGSEL. */
  regsel = 0;
  /** Redirection entries, low words. */
  readonly redirLo: Uint32Array = new Uint32Array(IOAPIC_PINS);
  /** Redirection entries, high words (destination in bits 31:24). */
  readonly redirHi: Uint32Array = new Uint32Array(IOAPIC_PINS);
  /** Current input levels. */
  lines = 0;
  /** Edges received but not yet delivered (masked at the time). */
  pendingEdges = 0;
  /** Message sink (the local APIC). */
  deliver: IoApicDeliver = () => {};

  constructor() {
    this.reset();
  }

  /** Power-on state: every entry masked. */
  reset(): void {
    this.id = 0;
    this.regsel = 0;
    this.redirLo.fill(RTE_MASKED);
    this.redirHi.fill(0);
    this.pendingEdges = 0;
  }

  /** Drives input `pin` (asserted = true; polarity is the wiring's business). */
  setPin(pin: number, high: boolean): void {
    if (pin < 0 || pin >= IOAPIC_PINS) return;
    const bit = 1 << pin;
    const wasHigh = (this.lines & bit) !== 0;
    if (high) this.lines |= bit;
    else this.lines &= ~bit;
    const lo = this.redirLo[pin]!;
    if (lo & RTE_LEVEL) {
      if (high) this.#service(pin);
    } else if (high && !wasHigh) {
      this.pendingEdges |= bit;
      this.#service(pin);
    }
  }

  /** EOI broadcast from the local APIC for `vector`: clears remote IRR, re-delivers held lines. */
  eoi(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const lo = this.redirLo[pin]!;
      if ((lo & RTE_REMOTE_IRR) && (lo & RTE_VECTOR) === vector) {
        this.redirLo[pin] = lo & ~RTE_REMOTE_IRR;
        this.#service(pin);
      }
    }
  }

  /** Reads the register IOREGSEL selects. */
  readRegister(index: number): number {
    switch (index) {
      case REG_ID:
      case REG_ARB:
        return (this.id & 0xf) << 24;
      case REG_VERSION:
        return VERSION;
    }
    const entry = index - REG_REDIR;
    if (entry >= 0 && entry < IOAPIC_PINS * 2) {
      const pin = entry >> 1;
      return (entry & 1 ? this.redirHi[pin]! : this.redirLo[pin]!) >>> 0;
    }
    return 0;
  }

  /** Writes the register IOREGSEL selects. */
  writeRegister(index: number, value: number): void {
    if (index === REG_ID) {
      this.id = (value >>> 24) & 0xf;
      return;
    }
    const entry = index - REG_REDIR;
    if (entry < 0 || entry >= IOAPIC_PINS * 2) return;
    const pin = entry >> 1;
    if (entry & 1) {
      this.redirHi[pin] = (value & 0xff00_0000) >>> 0;
      return;
    }
    const old = this.redirLo[pin]!;
    let lo = (old & ~RTE_WRITABLE) | (value & RTE_WRITABLE);
    if (!(lo & RTE_LEVEL)) lo &= ~RTE_REMOTE_IRR;
    this.redirLo[pin] = lo >>> 0;
    this.#service(pin);
  }

  /** An MMIO read at `offset` in the IOAPIC window. */
  mmioRead(offset: number): number {
    if (offset === IOREGSEL) return this.regsel;
    if (offset === IOWIN) return this.readRegister(this.regsel);
    return 0;
  }

  /** An MMIO write at `offset` in the IOAPIC window. */
  mmioWrite(offset: number, value: number): void {
    if (offset === IOREGSEL) this.regsel = value & 0xff;
    else if (offset === IOWIN) this.writeRegister(this.regsel, value >>> 0);
  }

  /** State for snapshots. */
  save(): DeviceState {
    return {
      version: 1,
      fields: {
        id: this.id,
        regsel: this.regsel,
        redirLo: Array.from(this.redirLo),
        redirHi: Array.from(this.redirHi),
        lines: this.lines,
        pendingEdges: this.pendingEdges,
      },
    };
  }

  /** Loads a state `save` returned. */
  restore(state: DeviceState): void {
    const f = state.fields;
    this.id = Number(f.id ?? 0);
    this.regsel = Number(f.regsel ?? 0);
    const lo = (f.redirLo ?? []) as number[], hi = (f.redirHi ?? []) as number[];
    for (let i = 0; i < IOAPIC_PINS; i++) {
      this.redirLo[i] = Number(lo[i] ?? RTE_MASKED) >>> 0;
      this.redirHi[i] = Number(hi[i] ?? 0) >>> 0;
    }
    this.lines = Number(f.lines ?? 0);
    this.pendingEdges = Number(f.pendingEdges ?? 0);
  }

  /** Sends pin's message if it is due: unmasked, and (level) held with no remote IRR or (edge) pending. */
  #service(pin: number): void {
    const lo = this.redirLo[pin]!;
    if (lo & RTE_MASKED) return;
    const bit = 1 << pin;
    const level = (lo & RTE_LEVEL) !== 0;
    if (level) {
      if (!(this.lines & bit) || (lo & RTE_REMOTE_IRR)) return;
      this.redirLo[pin] = lo | RTE_REMOTE_IRR;
    } else {
      if (!(this.pendingEdges & bit)) return;
      this.pendingEdges &= ~bit;
    }
    this.deliver(
      this.redirHi[pin]! >>> 24,
      (lo & RTE_DEST_LOGICAL) !== 0,
      ((lo >> RTE_DM_SHIFT) & 7) << 8,
      lo & RTE_VECTOR,
      level,
    );
  }
}

/** The MMIO window of `ioapic` at `base` as a Device. */
export function ioapicDevice(ioapic: IoApic, base = IOAPIC_BASE): Device {
  return {
    mmio: [{
      base,
      length: IOAPIC_SIZE,
      read: (offset) => ioapic.mmioRead(offset),
      write: (offset, _size, value) => ioapic.mmioWrite(offset, value),
    }],
    reset: () => ioapic.reset(),
    save: () => ioapic.save(),
    restore: (state) => ioapic.restore(state),
  };
}

/** An IOAPIC window with a private instance (the PC platform wires a shared one). */
const plugin: Plugin = definePlugin({
  name: "ioapic",
  apiVersion: API_VERSION,
  description: "I/O APIC at 0xFEC00000 (a private instance; the PC platform wires one)",
  create: () => ioapicDevice(new IoApic()),
});

export default plugin;
