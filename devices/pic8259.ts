/**
 * The PC's pair of 8259A programmable interrupt controllers: master at 0x20/0x21, slave at
 * 0xA0/0xA1 cascaded on master IRQ2, edge/level control (ELCR) at 0x4D0/0x4D1. `Pic8259` is the
 * machine's InterruptController when no APIC is in use; the default export is a plugin that
 * claims the ports of a private instance, and {@link picPlugin} claims them for a shared one.
 *
 * @module
 */

import type { InterruptController } from "../core/backend.ts";
import {
  API_VERSION,
  definePlugin,
  type Device,
  type DeviceState,
  type IoRange,
  type Plugin,
} from "../plugins/mod.ts";

/** Master command/data ports (IBM PC/AT). */
export const PIC_MASTER_PORT = 0x20;
/** Slave command/data ports. */
export const PIC_SLAVE_PORT = 0xa0;
/** Edge/Level Control Registers (Intel PIIX/ICH), one byte per chip. */
export const PIC_ELCR_PORT = 0x4d0;
/** The master input the slave's INT output is wired to. */
export const PIC_CASCADE_IRQ = 2;

// ICW1/OCW bits (Intel 8259A datasheet, "Initialization/Operation Command Words").
const ICW1 = 0x10, ICW1_IC4 = 0x01, ICW1_SNGL = 0x02;
const OCW3 = 0x08, OCW3_POLL = 0x04, OCW3_RR = 0x02, OCW3_RIS = 0x01;
const ICW4_AEOI = 0x02, ICW4_SFNM = 0x10;
// ELCR bits that must stay 0: IRQ0, 1, 2 on the master, IRQ8 and IRQ13 on the slave (PIIX).
const ELCR_MASTER_MASK = 0xf8, ELCR_SLAVE_MASK = 0xde;
// Vector bases the PC BIOS leaves programmed (real-mode INT 08h and INT 70h).
const BIOS_MASTER_BASE = 0x08, BIOS_SLAVE_BASE = 0x70;

const CHIP_FIELDS = [
  "irr",
  "isr",
  "imr",
  "lines",
  "elcr",
  "vectorBase",
  "icwStep",
  "icw4Needed",
  "single",
  "readIsr",
  "poll",
  "autoEoi",
  "rotateAutoEoi",
  "priorityAdd",
  "sfnm",
] as const;

/** One 8259A. Fields are public for the platform and for tests; guests reach them by ports. */
export class PicChip {
  /** Interrupt request register. */
  irr = 0;
  /** In-service register. */
  isr = 0;
  /** Interrupt mask register (OCW1). */
  imr = 0xff;
  /** Current levels of the eight input lines. */
  lines = 0;
  /** Level-triggered inputs (ELCR). */
  elcr = 0;
  /** ICW2: vector of IR0. */
  vectorBase: number;
  /** 0 when operational, else the ICW (2..4) the data port expects next. */
  icwStep = 0;
  /** ICW1 said an ICW4 follows. */
  icw4Needed = false;
  /** ICW1 single mode (no ICW3). */
  single = false;
  /** OCW3: reads of the command port return ISR (else IRR). */
  readIsr = false;
  /** OCW3 poll command pending: the next command-port read acknowledges. */
  poll = false;
  /** ICW4 automatic EOI. */
  autoEoi = false;
  /** OCW2 rotate in automatic EOI mode. */
  rotateAutoEoi = false;
  /** The input with the highest priority (0 unless rotated). */
  priorityAdd = 0;
  /** ICW4 special fully nested mode. */
  sfnm = false;
  readonly #elcrMask: number;
  readonly #resetBase: number;

  /** A chip whose ICW2 starts at `vectorBase`, with the ELCR bits `elcrMask` allows. */
  constructor(vectorBase: number, elcrMask: number) {
    this.vectorBase = vectorBase;
    this.#resetBase = vectorBase;
    this.#elcrMask = elcrMask;
  }

  /** Power-on state. */
  reset(): void {
    this.irr = 0;
    this.isr = 0;
    this.imr = 0xff;
    this.elcr = 0;
    this.vectorBase = this.#resetBase;
    this.icwStep = 0;
    this.icw4Needed = false;
    this.single = false;
    this.readIsr = false;
    this.poll = false;
    this.autoEoi = false;
    this.rotateAutoEoi = false;
    this.priorityAdd = 0;
    this.sfnm = false;
    this.irr = this.lines & this.elcr;
  }

  /** The highest-priority input among `mask`, or -1. */
  highest(mask: number): number {
    if (mask === 0) return -1;
    for (let i = 0; i < 8; i++) {
      const irq = (i + this.priorityAdd) & 7;
      if (mask & (1 << irq)) return irq;
    }
    return -1;
  }

  /** The input this chip would signal on INT now, or -1 (fully nested priority against ISR). */
  pendingIrq(isMasterWithSlave: boolean): number {
    const irq = this.highest(this.irr & ~this.imr);
    if (irq < 0) return -1;
    let inService = this.isr;
    // In special fully nested mode the slave may interrupt again while IRQ2 is in service.
    if (isMasterWithSlave && this.sfnm) inService &= ~(1 << PIC_CASCADE_IRQ);
    const cur = this.highest(inService);
    if (cur >= 0 && ((cur - this.priorityAdd) & 7) <= ((irq - this.priorityAdd) & 7)) return -1;
    return irq;
  }

  /** Drives input `irq`: edge inputs latch a rising edge into IRR, level inputs follow the line. */
  setLine(irq: number, high: boolean): void {
    const bit = 1 << irq;
    if (this.elcr & bit) {
      if (high) this.irr |= bit;
      else this.irr &= ~bit;
    } else if (high && !(this.lines & bit)) {
      this.irr |= bit;
    }
    if (high) this.lines |= bit;
    else this.lines &= ~bit;
  }

  /** INTA for `irq`: sets ISR (unless auto-EOI) and clears an edge request. */
  acknowledge(irq: number): void {
    const bit = 1 << irq;
    if (this.autoEoi) {
      if (this.rotateAutoEoi) this.priorityAdd = (irq + 1) & 7;
    } else {
      this.isr |= bit;
    }
    if (!(this.elcr & bit)) this.irr &= ~bit;
  }

  /** Writes the command port (ICW1, OCW2, OCW3). */
  writeCommand(value: number): void {
    if (value & ICW1) {
      this.isr = 0;
      this.imr = 0;
      this.priorityAdd = 0;
      this.readIsr = false;
      this.poll = false;
      this.autoEoi = false;
      this.rotateAutoEoi = false;
      this.sfnm = false;
      // The edge-sense latches are cleared; level inputs still assert.
      this.irr = this.lines & this.elcr;
      this.icw4Needed = (value & ICW1_IC4) !== 0;
      this.single = (value & ICW1_SNGL) !== 0;
      this.icwStep = 2;
      return;
    }
    if (value & OCW3) {
      if (value & OCW3_POLL) this.poll = true;
      if (value & OCW3_RR) this.readIsr = (value & OCW3_RIS) !== 0;
      return;
    }
    // OCW2: R, SL, EOI in bits 7..5.
    const level = value & 7;
    switch (value >> 5) {
      case 0: // clear rotate in automatic EOI mode
        this.rotateAutoEoi = false;
        break;
      case 4: // set rotate in automatic EOI mode
        this.rotateAutoEoi = true;
        break;
      case 1: // non-specific EOI
      case 5: { // rotate on non-specific EOI
        const irq = this.highest(this.isr);
        if (irq >= 0) {
          this.isr &= ~(1 << irq);
          if (value >> 5 === 5) this.priorityAdd = (irq + 1) & 7;
        }
        break;
      }
      case 3: // specific EOI
        this.isr &= ~(1 << level);
        break;
      case 7: // rotate on specific EOI
        this.isr &= ~(1 << level);
        this.priorityAdd = (level + 1) & 7;
        break;
      case 6: // set priority: `level` becomes the lowest
        this.priorityAdd = (level + 1) & 7;
        break;
      default: // 2: no operation
        break;
    }
  }

  /** Writes the data port (ICW2-4 during initialization, else OCW1). */
  writeData(value: number): void {
    switch (this.icwStep) {
      case 2:
        this.vectorBase = value & 0xf8;
        this.icwStep = this.single ? (this.icw4Needed ? 4 : 0) : 3;
        break;
      case 3: // ICW3: the cascade wiring is fixed on a PC
        this.icwStep = this.icw4Needed ? 4 : 0;
        break;
      case 4:
        this.autoEoi = (value & ICW4_AEOI) !== 0;
        this.sfnm = (value & ICW4_SFNM) !== 0;
        this.icwStep = 0;
        break;
      default:
        this.imr = value & 0xff;
    }
  }

  /** Writes this chip's ELCR byte. */
  writeElcr(value: number): void {
    this.elcr = value & this.#elcrMask;
    this.irr = (this.irr & ~this.elcr) | (this.lines & this.elcr);
  }

  /** The chip's fields, for snapshots. */
  save(): Record<string, number | boolean> {
    const out: Record<string, number | boolean> = {};
    for (const k of CHIP_FIELDS) out[k] = this[k];
    return out;
  }

  /** Loads fields `save` produced. */
  restore(fields: Record<string, unknown>): void {
    for (const k of CHIP_FIELDS) {
      const v = fields[k];
      if (typeof this[k] === "boolean") {
        (this as Record<string, unknown>)[k] = Boolean(v);
      } else {
        (this as Record<string, unknown>)[k] = Number(v ?? 0);
      }
    }
  }
}

/**
 * The cascaded master/slave pair. `hasInterrupt()` is a field read; every state change
 * recomputes the master's INT output once and calls `onChange` when it changes.
 *
 * @example Linux's initialization, then IRQ 4
 * ```ts
 * import { Pic8259 } from "./pic8259.ts";
 * const pic = new Pic8259();
 * for (const [p, v] of [[0x20, 0x11], [0x21, 0x30], [0x21, 4], [0x21, 1], [0x21, 0]]) {
 *   pic.ioWrite(p!, v!);
 * }
 * pic.setIrq(4, true);
 * console.log(pic.hasInterrupt(), pic.acknowledge()); // true 0x34
 * ```
 */
export class Pic8259 implements InterruptController {
  /** The master chip (IRQ 0-7). */
  readonly master: PicChip = new PicChip(BIOS_MASTER_BASE, ELCR_MASTER_MASK);
  /** The slave chip (IRQ 8-15). */
  readonly slave: PicChip = new PicChip(BIOS_SLAVE_BASE, ELCR_SLAVE_MASK);
  /** The master's INT output. */
  output = false;
  /** Called whenever `output` changes (the platform recomputes the CPU's INTR). */
  onChange: () => void = () => {};
  /** Acknowledged interrupts that found no request (spurious IRQ7/IRQ15), for diagnostics. */
  spurious = 0;

  /** True while the master signals INT. */
  hasInterrupt(): boolean {
    return this.output;
  }

  /** Drives ISA line `irq` (0-15). */
  setIrq(irq: number, high: boolean): void {
    if (irq < 0 || irq > 15 || irq === PIC_CASCADE_IRQ) return;
    if (irq < 8) this.master.setLine(irq, high);
    else this.slave.setLine(irq - 8, high);
    this.#update();
  }

  /** The INTA cycle: returns the vector and moves the request to in-service. */
  acknowledge(): number {
    const irq = this.master.pendingIrq(true);
    let vector: number;
    if (irq < 0) {
      // The request went away before INTA: the 8259A answers IR7 without setting ISR.
      this.spurious++;
      vector = this.master.vectorBase + 7;
    } else {
      this.master.acknowledge(irq);
      if (irq === PIC_CASCADE_IRQ) {
        const s = this.slave.pendingIrq(false);
        if (s < 0) {
          this.spurious++;
          vector = this.slave.vectorBase + 7;
        } else {
          this.slave.acknowledge(s);
          vector = this.slave.vectorBase + s;
        }
      } else {
        vector = this.master.vectorBase + irq;
      }
    }
    this.#update();
    return vector;
  }

  /** A guest read of port 0x20, 0x21, 0xA0, 0xA1, 0x4D0 or 0x4D1. */
  ioRead(port: number): number {
    switch (port) {
      case PIC_MASTER_PORT:
        return this.#readCommand(this.master, true);
      case PIC_MASTER_PORT + 1:
        return this.master.imr;
      case PIC_SLAVE_PORT:
        return this.#readCommand(this.slave, false);
      case PIC_SLAVE_PORT + 1:
        return this.slave.imr;
      case PIC_ELCR_PORT:
        return this.master.elcr;
      case PIC_ELCR_PORT + 1:
        return this.slave.elcr;
      default:
        return 0xff;
    }
  }

  /** A guest write of one of the PIC ports. */
  ioWrite(port: number, value: number): void {
    value &= 0xff;
    switch (port) {
      case PIC_MASTER_PORT:
        this.master.writeCommand(value);
        break;
      case PIC_MASTER_PORT + 1:
        this.master.writeData(value);
        break;
      case PIC_SLAVE_PORT:
        this.slave.writeCommand(value);
        break;
      case PIC_SLAVE_PORT + 1:
        this.slave.writeData(value);
        break;
      case PIC_ELCR_PORT:
        this.master.writeElcr(value);
        break;
      case PIC_ELCR_PORT + 1:
        this.slave.writeElcr(value);
        break;
      default:
        return;
    }
    this.#update();
  }

  /** Power-on state (line levels are kept: they belong to the devices). */
  reset(): void {
    this.master.reset();
    this.slave.reset();
    this.#update();
  }

  /** Both chips' state. */
  save(): DeviceState {
    return { version: 1, fields: { master: this.master.save(), slave: this.slave.save() } };
  }

  /** Loads a state `save` returned. */
  restore(state: DeviceState): void {
    this.master.restore((state.fields.master ?? {}) as Record<string, unknown>);
    this.slave.restore((state.fields.slave ?? {}) as Record<string, unknown>);
    this.#update();
  }

  #readCommand(chip: PicChip, isMaster: boolean): number {
    if (chip.poll) {
      chip.poll = false;
      const irq = chip.pendingIrq(isMaster);
      if (irq < 0) return 0;
      chip.acknowledge(irq);
      this.#update();
      return 0x80 | irq;
    }
    return chip.readIsr ? chip.isr : chip.irr;
  }

  #update(): void {
    // The slave's INT drives master IR2; the request follows it (a slave request that goes
    // away before INTA must not leave a stale cascade request behind).
    const cascade = 1 << PIC_CASCADE_IRQ;
    if (this.slave.pendingIrq(false) >= 0) {
      this.master.irr |= cascade;
      this.master.lines |= cascade;
    } else {
      this.master.irr &= ~cascade;
      this.master.lines &= ~cascade;
    }
    const out = this.master.pendingIrq(true) >= 0;
    if (out !== this.output) {
      this.output = out;
      this.onChange();
    }
  }
}

/** The port ranges of `pic` as a Device (0x20-0x21, 0xA0-0xA1, 0x4D0-0x4D1). */
export function picDevice(pic: Pic8259): Device {
  function range(base: number): IoRange {
    return {
      base,
      length: 2,
      read: (offset, size) => {
        let v = pic.ioRead(base + offset);
        if (size > 1 && offset === 0) v |= pic.ioRead(base + 1) << 8;
        return v;
      },
      write: (offset, size, value) => {
        pic.ioWrite(base + offset, value & 0xff);
        if (size > 1 && offset === 0) pic.ioWrite(base + 1, (value >> 8) & 0xff);
      },
    };
  }
  return {
    ports: [range(PIC_MASTER_PORT), range(PIC_SLAVE_PORT), range(PIC_ELCR_PORT)],
    reset: () => pic.reset(),
    save: () => pic.save(),
    restore: (state) => pic.restore(state),
  };
}

/**
 * A plugin that claims the PIC ports for an existing `pic` (the machine keeps `pic` as its
 * InterruptController).
 *
 * @example
 * ```ts
 * import { Pic8259, picPlugin } from "./pic8259.ts";
 * const pic = new Pic8259();
 * const plugin = picPlugin(pic);
 * console.log(plugin.name); // "pic8259"
 * ```
 */
export function picPlugin(pic: Pic8259): Plugin {
  return definePlugin({
    name: "pic8259",
    apiVersion: API_VERSION,
    description: "8259A master/slave interrupt controllers with ELCR",
    create: () => picDevice(pic),
  });
}

/** The PIC ports with a private instance (use picPlugin to share one with the machine). */
const plugin: Plugin = definePlugin({
  name: "pic8259",
  apiVersion: API_VERSION,
  description: "8259A master/slave interrupt controllers with ELCR (a private instance)",
  create: () => picDevice(new Pic8259()),
});

export default plugin;
