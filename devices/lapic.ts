/**
 * The local APIC of a single vCPU (xAPIC MMIO page at 0xFEE00000): ID, version, TPR/PPR, EOI,
 * LDR/DFR, spurious vector, ISR/TMR/IRR, error status, ICR (fixed IPIs to itself; NMI, INIT and
 * SIPI are reported and otherwise ignored with one vCPU), the LVT (timer, thermal, performance
 * counters, LINT0, LINT1, error) and the timer in one-shot and periodic modes, computed from the
 * VM clock with a 1 GHz bus clock (TSC-deadline mode is not offered).
 *
 * The platform (`platform.ts`) wires it to the IOAPIC and the PIC; `hasInterrupt()` there reads
 * `pendingVector`, which this class recomputes on every change.
 *
 * @module
 */

import {
  API_VERSION,
  type Clock,
  definePlugin,
  type Device,
  type DeviceState,
  type Plugin,
  type Timer,
} from "../plugins/mod.ts";

/** Default guest-physical base of the local APIC page (IA32_APIC_BASE reset value). */
export const LAPIC_BASE = 0xfee0_0000;
/** Size of the local APIC page. */
export const LAPIC_SIZE = 0x1000;
/** The APIC timer's input clock period: 1 ns (a 1 GHz "bus", as QEMU's APIC model uses). */
export const LAPIC_TIMER_TICK_NS = 1;

// Register offsets (Intel SDM vol. 3, table 11-1), as index = offset >> 4.
const R_ID = 0x02, R_VERSION = 0x03, R_TPR = 0x08, R_APR = 0x09, R_PPR = 0x0a, R_EOI = 0x0b;
const R_RRD = 0x0c, R_LDR = 0x0d, R_DFR = 0x0e, R_SVR = 0x0f;
const R_ISR = 0x10, R_TMR = 0x18, R_IRR = 0x20, R_ESR = 0x28;
const R_ICR_LO = 0x30, R_ICR_HI = 0x31, R_LVT_FIRST = 0x32, R_LVT_LAST = 0x37;
const R_TIMER_INITIAL = 0x38, R_TIMER_CURRENT = 0x39, R_TIMER_DIVIDE = 0x3e;

/** LVT indexes. */
export const LVT_TIMER = 0, LVT_THERMAL = 1, LVT_PERF = 2, LVT_LINT0 = 3, LVT_LINT1 = 4;
/** LVT index of the error interrupt. */
export const LVT_ERROR = 5;
const LVT_COUNT = 6;
/** LVT mask bit. */
export const LVT_MASKED = 0x1_0000;
/** LVT/ICR delivery-mode field and its values. */
export const DM_MASK = 0x700;
/** Fixed delivery. */
export const DM_FIXED = 0x000;
/** Lowest-priority delivery. */
export const DM_LOWEST = 0x100;
/** NMI delivery. */
export const DM_NMI = 0x400;
/** INIT. */
export const DM_INIT = 0x500;
/** Start-up IPI. */
export const DM_SIPI = 0x600;
/** External interrupt: the vector comes from the 8259 (virtual-wire mode). */
export const DM_EXTINT = 0x700;
const LVT_TIMER_PERIODIC = 0x2_0000;
// Bits a write may change in each LVT (timer: vector, mask, periodic; no TSC-deadline).
const LVT_WRITABLE = [0x3_00ff, 0x1_07ff, 0x1_07ff, 0x1_a7ff, 0x1_a7ff, 0x1_00ff];
const SVR_ENABLE = 0x100, SVR_WRITABLE = 0x3ff;
const ICR_DEST_LOGICAL = 0x800;
const ICR_SHORTHAND_SHIFT = 18;
const SHORTHAND_NONE = 0, SHORTHAND_SELF = 1, SHORTHAND_ALL = 2;
const ESR_RECEIVE_ILLEGAL_VECTOR = 0x40, ESR_SEND_ILLEGAL_VECTOR = 0x20;
const DFR_FLAT = 0xf, DFR_RESERVED_ONES = 0x0fff_ffff;
/** Version register: integrated APIC (0x14), six LVT entries (max LVT index 5). */
const VERSION = 0x14 | ((LVT_COUNT - 1) << 16);
const BROADCAST_PHYSICAL = 0xff;

/** Highest set bit in a 256-bit vector register, or -1. */
function highestBit(words: Uint32Array): number {
  for (let i = 7; i >= 0; i--) {
    const w = words[i]!;
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}

/**
 * One local APIC. `onChange` fires when `pendingVector` (or anything the platform's routing
 * reads: SVR, LINT0) may have changed; `onEoi` receives the vector of each EOI of a
 * level-triggered interrupt (the IOAPIC broadcast).
 *
 * @example The timer in one-shot mode
 * ```ts
 * import { LocalApic } from "./lapic.ts";
 * let now = 0;
 * const clock = { now: () => now, timer: () => ({ arm() {}, cancel() {} }) };
 * const lapic = new LocalApic(clock);
 * lapic.writeRegister(0xf0, 0x1ff); // enable, spurious vector 0xff
 * lapic.writeRegister(0x3e0, 0xb); // divide by 1
 * lapic.writeRegister(0x380, 1000);
 * now = 400;
 * console.log(lapic.readRegister(0x390)); // 600
 * ```
 */
export class LocalApic {
  /** APIC ID. */
  id = 0;
  /** Task priority register. */
  tpr = 0;
  /** Logical destination register. */
  ldr = 0;
  /** Destination format register. */
  dfr = 0xffff_ffff;
  /** Spurious-interrupt vector register (bit 8: software enable). */
  svr = 0xff;
  /** Error status, as the guest last latched it. */
  esr = 0;
  /** Errors collected since the last ESR write. */
  pendingEsr = 0;
  /** Interrupt command register, low and high halves. */
  icrLo = 0;
  /** ICR destination half. */
  icrHi = 0;
  /** LVT entries: timer, thermal, perf, LINT0, LINT1, error. */
  readonly lvt: Uint32Array = new Uint32Array(LVT_COUNT);
  /** Interrupt request register (256 bits). */
  readonly irr: Uint32Array = new Uint32Array(8);
  /** In-service register. */
  readonly isr: Uint32Array = new Uint32Array(8);
  /** Trigger mode register (1 = level). */
  readonly tmr: Uint32Array = new Uint32Array(8);
  /** Timer initial count. */
  timerInitial = 0;
  /** Divide configuration register. */
  timerDivide = 0;
  /** Clock time the current count started from `timerInitial`. */
  timerStartNs = 0;
  /** IA32_APIC_BASE enable bit (a hardware-disabled APIC leaves the PIC wired to INTR). */
  hardwareEnabled = true;
  /** The vector the APIC would deliver now, or -1 (recomputed on every change). */
  pendingVector: number = -1;
  /** Called when the delivery state changes. */
  onChange: () => void = () => {};
  /** Called with the vector of each EOI of a level-triggered interrupt. */
  onEoi: (vector: number) => void = () => {};
  /** Called for IPIs and messages a single vCPU without NMI/INIT support cannot act on. */
  onUnhandled: (what: string) => void = () => {};
  readonly #clock: Clock;
  readonly #timer: Timer;
  /**
   * A one-shot count is running and has not fired yet. Tracked apart from the clock: a count so
   * short that it has already expired by the time it is armed must still fire (at once), or a
   * tickless guest that programmed it waits forever.
   */
  #oneShotPending = false;

  /** A local APIC whose timer runs on `clock`, in its power-on state. */
  constructor(clock: Clock) {
    this.#clock = clock;
    this.#timer = clock.timer(() => this.#onTimer());
    this.reset();
  }

  /** True when the SVR enables the APIC. */
  get softwareEnabled(): boolean {
    return (this.svr & SVR_ENABLE) !== 0;
  }

  /** Processor priority (Intel SDM 11.8.3.1). */
  get ppr(): number {
    const isrv = highestBit(this.isr);
    const isrClass = isrv < 0 ? 0 : isrv & 0xf0;
    return (this.tpr & 0xf0) >= isrClass ? this.tpr : isrClass;
  }

  /** Power-on/INIT state: everything masked, LINT0 in virtual-wire (ExtINT) mode as a BSP. */
  reset(): void {
    this.id = 0;
    this.tpr = 0;
    this.ldr = 0;
    this.dfr = 0xffff_ffff;
    this.svr = 0xff;
    this.esr = 0;
    this.pendingEsr = 0;
    this.icrLo = 0;
    this.icrHi = 0;
    this.lvt.fill(LVT_MASKED);
    // The BSP comes up with LINT0 as ExtINT, so 8259 interrupts reach the CPU (QEMU does too).
    this.lvt[LVT_LINT0] = DM_EXTINT;
    this.irr.fill(0);
    this.isr.fill(0);
    this.tmr.fill(0);
    this.timerInitial = 0;
    this.timerDivide = 0;
    this.timerStartNs = 0;
    this.#oneShotPending = false;
    this.hardwareEnabled = true;
    this.#timer.cancel();
    this.#update();
  }

  /**
   * Sets the IA32_APIC_BASE enable bit. A hardware-disabled APIC delivers nothing (the PIC is
   * then wired straight to the CPU); re-enabling keeps the registers, as the platform allows.
   */
  setHardwareEnabled(on: boolean): void {
    if (this.hardwareEnabled === on) return;
    this.hardwareEnabled = on;
    this.#update();
  }

  /** Accepts a fixed interrupt for `vector` (from the IOAPIC, an IPI or an LVT). */
  acceptInterrupt(vector: number, level: boolean): void {
    vector &= 0xff;
    if (vector < 16) {
      this.#error(ESR_RECEIVE_ILLEGAL_VECTOR);
      return;
    }
    const word = vector >> 5, bit = 1 << (vector & 31);
    this.irr[word]! |= bit;
    if (level) this.tmr[word]! |= bit;
    else this.tmr[word]! &= ~bit;
    this.#update();
  }

  /**
   * An interrupt message (IOAPIC redirection entry or ICR): accepted when the destination
   * names this APIC. `deliveryMode` is one of the DM_* values.
   */
  acceptMessage(
    dest: number,
    logical: boolean,
    deliveryMode: number,
    vector: number,
    level: boolean,
  ): void {
    if (!this.matchesDestination(dest, logical)) return;
    switch (deliveryMode) {
      case DM_FIXED:
      case DM_LOWEST:
        this.acceptInterrupt(vector, level);
        break;
      default:
        this.onUnhandled(`message with delivery mode ${deliveryMode >> 8} (vector ${vector})`);
    }
  }

  /** True when an interrupt message for `dest` reaches this APIC. */
  matchesDestination(dest: number, logical: boolean): boolean {
    if (!logical) return dest === BROADCAST_PHYSICAL || dest === this.id;
    const ldr = this.ldr >>> 24;
    if (dest === 0xff) return true;
    if ((this.dfr >>> 28) === DFR_FLAT) return (dest & ldr) !== 0;
    // Cluster model: high nibble is the cluster, low nibble a bitmap within it.
    return (dest >> 4) === (ldr >> 4) && (dest & ldr & 0x0f) !== 0;
  }

  /** The INTA cycle: moves the highest deliverable request to in-service and returns it. */
  acknowledge(): number {
    const v = this.pendingVector;
    if (v < 0) return this.svr & 0xff; // spurious: nothing set in ISR
    const word = v >> 5, bit = 1 << (v & 31);
    this.irr[word]! &= ~bit;
    this.isr[word]! |= bit;
    this.#update();
    return v;
  }

  /** End of interrupt: clears the highest in-service vector. */
  eoi(): void {
    const v = highestBit(this.isr);
    if (v < 0) return;
    const word = v >> 5, bit = 1 << (v & 31);
    this.isr[word]! &= ~bit;
    const level = (this.tmr[word]! & bit) !== 0;
    this.#update();
    if (level) this.onEoi(v);
  }

  /** Reads the 32-bit register at page offset `offset` (a multiple of 16). */
  readRegister(offset: number): number {
    const reg = offset >> 4;
    switch (reg) {
      case R_ID:
        return (this.id << 24) >>> 0;
      case R_VERSION:
        return VERSION;
      case R_TPR:
        return this.tpr;
      case R_APR:
        return 0;
      case R_PPR:
        return this.ppr;
      case R_RRD:
        return 0;
      case R_LDR:
        return this.ldr;
      case R_DFR:
        return this.dfr;
      case R_SVR:
        return this.svr;
      case R_ESR:
        return this.esr;
      case R_ICR_LO:
        return this.icrLo; // delivery status always idle
      case R_ICR_HI:
        return this.icrHi;
      case R_TIMER_INITIAL:
        return this.timerInitial;
      case R_TIMER_CURRENT:
        return this.currentCount();
      case R_TIMER_DIVIDE:
        return this.timerDivide;
    }
    if (reg >= R_ISR && reg < R_ISR + 8) return this.isr[reg - R_ISR]!;
    if (reg >= R_TMR && reg < R_TMR + 8) return this.tmr[reg - R_TMR]!;
    if (reg >= R_IRR && reg < R_IRR + 8) return this.irr[reg - R_IRR]!;
    if (reg >= R_LVT_FIRST && reg <= R_LVT_LAST) return this.lvt[reg - R_LVT_FIRST]!;
    return 0;
  }

  /** Writes the 32-bit register at page offset `offset`. */
  writeRegister(offset: number, value: number): void {
    value >>>= 0;
    const reg = offset >> 4;
    switch (reg) {
      case R_ID:
        this.id = value >>> 24;
        return;
      case R_TPR:
        this.tpr = value & 0xff;
        this.#update();
        return;
      case R_EOI:
        this.eoi();
        return;
      case R_LDR:
        this.ldr = (value & 0xff00_0000) >>> 0;
        return;
      case R_DFR:
        this.dfr = (value | DFR_RESERVED_ONES) >>> 0;
        return;
      case R_SVR:
        this.svr = value & SVR_WRITABLE;
        if (!this.softwareEnabled) {
          for (let i = 0; i < LVT_COUNT; i++) this.lvt[i]! |= LVT_MASKED;
        }
        this.#update();
        return;
      case R_ESR:
        this.esr = this.pendingEsr;
        this.pendingEsr = 0;
        return;
      case R_ICR_LO:
        this.icrLo = value & ~0x1000; // delivery status reads idle
        this.#sendIpi();
        return;
      case R_ICR_HI:
        this.icrHi = (value & 0xff00_0000) >>> 0;
        return;
      case R_TIMER_INITIAL:
        this.timerInitial = value;
        this.timerStartNs = this.#clock.now();
        this.#oneShotPending = value !== 0;
        this.#armTimer();
        return;
      case R_TIMER_DIVIDE: {
        // Keep the current count, continue at the new rate.
        const current = this.currentCount();
        const now = this.#clock.now();
        this.timerDivide = value & 0xb;
        if (this.timerInitial !== 0 && current !== 0) {
          this.timerStartNs = now - (this.timerInitial - current) * this.#countNs();
        }
        this.#armTimer();
        return;
      }
    }
    if (reg >= R_LVT_FIRST && reg <= R_LVT_LAST) {
      const i = reg - R_LVT_FIRST;
      let v = value & LVT_WRITABLE[i]!;
      if (!this.softwareEnabled) v |= LVT_MASKED;
      const old = this.lvt[i]!;
      this.lvt[i] = (old & ~LVT_WRITABLE[i]!) | v;
      if (i === LVT_TIMER) this.#armTimer();
      if (i === LVT_LINT0) this.onChange();
    }
    // Read-only registers (version, PPR, ISR, TMR, IRR, current count) ignore writes.
  }

  /** The timer's current count. */
  currentCount(): number {
    if (this.timerInitial === 0) return 0;
    const elapsed = Math.floor((this.#clock.now() - this.timerStartNs) / this.#countNs());
    if (this.lvt[LVT_TIMER]! & LVT_TIMER_PERIODIC) {
      return this.timerInitial - (elapsed % this.timerInitial);
    }
    return Math.max(0, this.timerInitial - elapsed);
  }

  /** The timer's divisor (1-128) from the divide configuration register. */
  get timerDivisor(): number {
    const d = this.timerDivide;
    return 1 << ((((d & 3) | ((d >> 1) & 4)) + 1) & 7);
  }

  /** State for snapshots. */
  save(): DeviceState {
    return {
      version: 1,
      fields: {
        id: this.id,
        tpr: this.tpr,
        ldr: this.ldr,
        dfr: this.dfr,
        svr: this.svr,
        esr: this.esr,
        pendingEsr: this.pendingEsr,
        icrLo: this.icrLo,
        icrHi: this.icrHi,
        lvt: Array.from(this.lvt),
        irr: Array.from(this.irr),
        isr: Array.from(this.isr),
        tmr: Array.from(this.tmr),
        timerInitial: this.timerInitial,
        timerDivide: this.timerDivide,
        timerStartNs: this.timerStartNs,
        // Saved, not derived: a one-shot whose count reached 0 but whose interrupt the clock has
        // not delivered yet (paused between the deadline and the next timer service) is still
        // owed; re-deriving it from the count lost it, and Linux then waited forever.
        oneShotPending: this.#oneShotPending,
        hardwareEnabled: this.hardwareEnabled,
      },
    };
  }

  /** Loads a state `save` returned and re-arms the timer. */
  restore(state: DeviceState): void {
    const f = state.fields;
    const num = (k: string, d = 0) => Number(f[k] ?? d) >>> 0;
    this.id = num("id");
    this.tpr = num("tpr");
    this.ldr = num("ldr");
    this.dfr = num("dfr", 0xffff_ffff);
    this.svr = num("svr", 0xff);
    this.esr = num("esr");
    this.pendingEsr = num("pendingEsr");
    this.icrLo = num("icrLo");
    this.icrHi = num("icrHi");
    const arr = (k: string, into: Uint32Array) => {
      const a = (f[k] ?? []) as number[];
      for (let i = 0; i < into.length; i++) into[i] = Number(a[i] ?? 0) >>> 0;
    };
    arr("lvt", this.lvt);
    arr("irr", this.irr);
    arr("isr", this.isr);
    arr("tmr", this.tmr);
    this.timerInitial = num("timerInitial");
    this.timerDivide = num("timerDivide");
    this.timerStartNs = Number(f.timerStartNs ?? 0);
    this.hardwareEnabled = f.hardwareEnabled !== false;
    this.#oneShotPending = typeof f.oneShotPending === "boolean"
      ? f.oneShotPending
      : this.currentCount() > 0;
    this.#armTimer();
    this.#update();
  }

  #countNs(): number {
    return this.timerDivisor * LAPIC_TIMER_TICK_NS;
  }

  #armTimer(): void {
    if (this.timerInitial === 0) {
      this.#timer.cancel();
      return;
    }
    const now = this.#clock.now();
    const periodNs = this.timerInitial * this.#countNs();
    const elapsed = now - this.timerStartNs;
    if (this.lvt[LVT_TIMER]! & LVT_TIMER_PERIODIC) {
      const next = (Math.floor(elapsed / periodNs) + 1) * periodNs;
      this.#timer.arm(next - elapsed);
    } else if (this.#oneShotPending) {
      this.#timer.arm(Math.max(0, periodNs - elapsed));
    } else {
      this.#timer.cancel();
    }
  }

  #onTimer(): void {
    const entry = this.lvt[LVT_TIMER]!;
    if (!(entry & LVT_TIMER_PERIODIC)) this.#oneShotPending = false;
    if (!(entry & LVT_MASKED)) this.acceptInterrupt(entry & 0xff, false);
    if (entry & LVT_TIMER_PERIODIC) this.#armTimer();
  }

  #error(bits: number): void {
    this.pendingEsr |= bits;
    const entry = this.lvt[LVT_ERROR]!;
    if (!(entry & LVT_MASKED) && (entry & 0xff) >= 16) {
      const word = (entry & 0xff) >> 5;
      this.irr[word]! |= 1 << (entry & 31);
      this.#update();
    }
  }

  #sendIpi(): void {
    const lo = this.icrLo;
    const vector = lo & 0xff;
    const mode = lo & DM_MASK;
    const shorthand = (lo >> ICR_SHORTHAND_SHIFT) & 3;
    let toSelf: boolean;
    if (shorthand === SHORTHAND_NONE) {
      toSelf = this.matchesDestination(this.icrHi >>> 24, (lo & ICR_DEST_LOGICAL) !== 0);
    } else {
      toSelf = shorthand === SHORTHAND_SELF || shorthand === SHORTHAND_ALL;
    }
    if (mode === DM_FIXED || mode === DM_LOWEST) {
      if (vector < 16) {
        this.#error(ESR_SEND_ILLEGAL_VECTOR);
        return;
      }
      // IPIs are edge-triggered (a level IPI is only the obsolete INIT level de-assert).
      if (toSelf) this.acceptInterrupt(vector, false);
      return;
    }
    // INIT/SIPI to other CPUs, NMI, SMI: nothing to do with one vCPU and no NMI input.
    this.onUnhandled(`IPI with delivery mode ${mode >> 8} to ${toSelf ? "self" : "others"}`);
  }

  #update(): void {
    let v = -1;
    if (this.hardwareEnabled && this.softwareEnabled) {
      const irrv = highestBit(this.irr);
      if (irrv >= 0 && (irrv & 0xf0) > (this.ppr & 0xf0)) v = irrv;
    }
    this.pendingVector = v;
    this.onChange();
  }
}

/** The MMIO page of `lapic` at `base` as a Device. */
export function lapicDevice(lapic: LocalApic, base = LAPIC_BASE): Device {
  return {
    mmio: [{
      base,
      length: LAPIC_SIZE,
      read: (offset, size) => {
        const within = offset & 0xf;
        if (within >= 4) return 0;
        const v = lapic.readRegister(offset & 0xff0) >>> (within * 8);
        return size >= 4 ? v >>> 0 : v & ((1 << (size * 8)) - 1);
      },
      write: (offset, _size, value) => {
        if ((offset & 0xf) !== 0) return; // registers take aligned 32-bit writes
        lapic.writeRegister(offset & 0xff0, value);
      },
    }],
    reset: () => lapic.reset(),
    save: () => lapic.save(),
    restore: (state) => lapic.restore(state),
  };
}

/** A local APIC page with a private instance (the PC platform wires a shared one). */
const plugin: Plugin = definePlugin({
  name: "lapic",
  apiVersion: API_VERSION,
  description: "Local APIC page at 0xFEE00000 (a private instance; the PC platform wires one)",
  create: (host) => lapicDevice(new LocalApic(host.clock)),
});

export default plugin;
