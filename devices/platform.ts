/**
 * The PC's interrupt routing for one vCPU, as a single InterruptController: ISA IRQ lines go to
 * the 8259 pair and to the IOAPIC (ISA IRQ 0 to pin 2, as the MADT's override says; lines 16-23
 * are IOAPIC-only GSIs); the IOAPIC sends messages to the local APIC; the local APIC's own
 * timer and self-IPIs land in its IRR; 8259 interrupts reach the CPU through LINT0 while it is
 * in ExtINT (virtual-wire) mode, while the APIC is software- or hardware-disabled, or always
 * when the platform is built without APICs. An EOI of a level-triggered vector at the local
 * APIC is broadcast to the IOAPIC.
 *
 * `hasInterrupt()` is a field read, recomputed whenever the PIC or local APIC changes.
 *
 * @module
 */

import type { InterruptController } from "../core/backend.ts";
import { GuestFaultError } from "../core/errors.ts";
import {
  API_VERSION,
  type Clock,
  definePlugin,
  type Device,
  type DeviceState,
  type IoRange,
  type IrqLine,
  type Logger,
  type Plugin,
} from "../plugins/mod.ts";
import { IoApic, IOAPIC_BASE, ioapicDevice } from "./ioapic.ts";
import {
  DM_EXTINT,
  DM_MASK,
  LAPIC_BASE,
  lapicDevice,
  LocalApic,
  LVT_LINT0,
  LVT_MASKED,
} from "./lapic.ts";
import { Pic8259, picDevice } from "./pic8259.ts";

/** IA32_APIC_BASE MSR number and bits (Intel SDM Vol. 3A, 11.4.4). */
export const MSR_APIC_BASE = 0x1b;
/** IA32_APIC_BASE bit 8: this CPU is the bootstrap processor (read-only). */
export const APIC_BASE_BSP = 0x100;
/** IA32_APIC_BASE bit 10: x2APIC mode (not offered: CPUID has no x2APIC bit). */
export const APIC_BASE_EXTD = 0x400;
/** IA32_APIC_BASE bit 11: the local APIC is enabled. */
export const APIC_BASE_ENABLE = 0x800;

/** The IOAPIC pin ISA IRQ 0 (the PIT) is wired to; the MADT carries the matching override. */
export const ISA_IRQ0_GSI = 2;
/** Number of ISA IRQ lines the 8259 pair receives. */
export const ISA_IRQS = 16;

/** How to build the platform. */
export interface PcPlatformOptions {
  /** The VM clock (the local APIC timer runs on it). */
  clock: Clock;
  /** Messages about guest behaviour the platform cannot honour (NMI IPIs and the like). */
  log?: Logger;
  /** Include the IOAPIC and local APIC (default true); false gives a PIC-only PC. */
  apic?: boolean;
}

/**
 * The interrupt controllers of a one-vCPU PC and the routing between them.
 *
 * @example An ISA device interrupt through the PIC
 * ```ts
 * import { createPcPlatform } from "./platform.ts";
 * const clock = { now: () => 0, timer: () => ({ arm() {}, cancel() {} }) };
 * const pc = createPcPlatform({ clock });
 * for (const [p, v] of [[0x20, 0x11], [0x21, 0x20], [0x21, 4], [0x21, 1], [0x21, 0]]) {
 *   pc.pic.ioWrite(p!, v!);
 * }
 * pc.irqLine(4).raise();
 * console.log(pc.hasInterrupt(), pc.acknowledge()); // true 36
 * ```
 */
export class PcPlatform implements InterruptController {
  /** The 8259 pair. */
  readonly pic: Pic8259 = new Pic8259();
  /** The IOAPIC (present but unattached when `apicEnabled` is false). */
  readonly ioapic: IoApic = new IoApic();
  /** The local APIC of vCPU 0. */
  readonly lapic: LocalApic;
  /** Whether the APICs are part of this machine. */
  readonly apicEnabled: boolean;
  /** The devices that claim the controllers' ports and MMIO, to attach to the buses. */
  readonly device: Device;
  #pending = false;
  readonly #lines = new Map<number, IrqLine>();
  readonly #log: Logger | null;

  /** Builds the controllers and wires them (see {@link createPcPlatform}). */
  constructor(opts: PcPlatformOptions) {
    this.apicEnabled = opts.apic ?? true;
    this.#log = opts.log ?? null;
    this.lapic = new LocalApic(opts.clock);
    this.pic.onChange = () => this.#update();
    this.lapic.onChange = () => this.#update();
    this.lapic.onEoi = (vector) => this.ioapic.eoi(vector);
    this.lapic.onUnhandled = (what) => this.#log?.debug(`local APIC ignored ${what}`);
    this.ioapic.deliver = (dest, logical, mode, vector, level) => {
      if (mode === DM_EXTINT) {
        // 8259 output through an IOAPIC pin: not wired on this platform (ISA IRQ 0 is on pin 2).
        this.#log?.debug(`IOAPIC ExtINT message ignored (vector ${vector})`);
        return;
      }
      this.lapic.acceptMessage(dest, logical, mode, vector, level);
    };
    this.device = this.#makeDevice();
    this.#update();
  }

  /** True while an interrupt waits for the CPU (a field read: called at every block boundary). */
  hasInterrupt(): boolean {
    return this.#pending;
  }

  /** The CPU takes the interrupt: the local APIC's highest deliverable vector, else the PIC's. */
  acknowledge(): number {
    if (this.apicEnabled && this.lapic.pendingVector >= 0) return this.lapic.acknowledge();
    if (this.#picPassesThrough()) return this.pic.acknowledge();
    return this.lapic.svr & 0xff; // nothing there any more: the spurious vector
  }

  /** IA32_APIC_BASE as RDMSR reads it: the default base, BSP, and the enable bit. */
  get apicBaseMsr(): number {
    return LAPIC_BASE + APIC_BASE_BSP + (this.lapic.hardwareEnabled ? APIC_BASE_ENABLE : 0);
  }

  /**
   * WRMSR IA32_APIC_BASE: the enable bit turns the local APIC on or off. Moving the APIC page,
   * x2APIC mode and reserved bits are refused with a GuestFaultError (the CPU raises #GP).
   */
  writeApicBaseMsr(value: number): void {
    const rest = value - (value % 0x1000) + (value & ~(APIC_BASE_ENABLE | APIC_BASE_BSP) & 0xfff);
    if (!this.apicEnabled || rest !== LAPIC_BASE) {
      throw new GuestFaultError(
        `IA32_APIC_BASE write 0x${value.toString(16)} asks for ` +
          (this.apicEnabled ? "a moved APIC page or x2APIC mode" : "a local APIC") +
          ", which this platform does not have",
      );
    }
    this.lapic.setHardwareEnabled((value & APIC_BASE_ENABLE) !== 0);
  }

  /** Drives interrupt line `line`: ISA IRQs 0-15 to PIC and IOAPIC, 16-23 to the IOAPIC. */
  setLevel(line: number, high: boolean): void {
    if (line < ISA_IRQS) this.pic.setIrq(line, high);
    if (this.apicEnabled) this.ioapic.setPin(line === 0 ? ISA_IRQ0_GSI : line, high);
  }

  /** An IrqLine for `line`, suitable as `DeviceHost.irq(line)`. */
  irqLine(line: number): IrqLine {
    let l = this.#lines.get(line);
    if (!l) {
      l = {
        line,
        raise: () => this.setLevel(line, true),
        lower: () => this.setLevel(line, false),
        pulse: () => {
          this.setLevel(line, true);
          this.setLevel(line, false);
        },
      };
      this.#lines.set(line, l);
    }
    return l;
  }

  /** Power-on state of all controllers. */
  reset(): void {
    this.pic.reset();
    this.ioapic.reset();
    this.lapic.reset();
    this.#update();
  }

  /** State of all controllers. */
  save(): DeviceState {
    return {
      version: 1,
      fields: {
        pic: this.pic.save(),
        ioapic: this.ioapic.save(),
        lapic: this.lapic.save(),
      },
    };
  }

  /** Loads a state `save` returned. */
  restore(state: DeviceState): void {
    const f = state.fields as Record<string, DeviceState | undefined>;
    if (f.pic) this.pic.restore(f.pic);
    if (f.ioapic) this.ioapic.restore(f.ioapic);
    if (f.lapic) this.lapic.restore(f.lapic);
    this.#update();
  }

  /** A plugin whose device claims this platform's ports and MMIO (for `Machine.attach`). */
  plugin(): Plugin {
    const device = this.device;
    return definePlugin({
      name: "pc-platform",
      apiVersion: API_VERSION,
      description: "8259 PIC pair, IOAPIC and local APIC with PC interrupt routing",
      create: () => device,
    });
  }

  #picPassesThrough(): boolean {
    if (!this.apicEnabled) return true;
    const l = this.lapic;
    if (!l.hardwareEnabled || !l.softwareEnabled) return true;
    const lint0 = l.lvt[LVT_LINT0]!;
    return (lint0 & (LVT_MASKED | DM_MASK)) === DM_EXTINT;
  }

  #update(): void {
    this.#pending = (this.apicEnabled && this.lapic.pendingVector >= 0) ||
      (this.pic.output && this.#picPassesThrough());
  }

  #makeDevice(): Device {
    const pic = picDevice(this.pic);
    const ports: IoRange[] = [...pic.ports!];
    const mmio: IoRange[] = [];
    if (this.apicEnabled) {
      mmio.push(...ioapicDevice(this.ioapic, IOAPIC_BASE).mmio!);
      mmio.push(...lapicDevice(this.lapic, LAPIC_BASE).mmio!);
    }
    return {
      ports,
      mmio,
      reset: () => this.reset(),
      save: () => this.save(),
      restore: (state) => this.restore(state),
    };
  }
}

/**
 * Builds the PC interrupt platform. Attach `platform.device` (or `platform.plugin()`), make
 * `platform` the vCPU's InterruptController, and give devices `platform.irqLine(n)` as their
 * `host.irq(n)` (or set the machine's IRQ sink to `platform`: it has `setLevel(line, high)`).
 *
 * @example
 * ```ts
 * import { createPcPlatform } from "./platform.ts";
 * const clock = { now: () => 0, timer: () => ({ arm() {}, cancel() {} }) };
 * const pc = createPcPlatform({ clock, apic: true });
 * console.log(pc.device.mmio!.map((r) => r.base.toString(16))); // ["fec00000", "fee00000"]
 * ```
 */
export function createPcPlatform(opts: PcPlatformOptions): PcPlatform {
  return new PcPlatform(opts);
}
