/**
 * ACPI fixed hardware for a PC that is not hardware-reduced: the PM1a event block (PM1_STS,
 * PM1_EN), the PM1a control block (SCI_EN, SLP_TYP, SLP_EN), the 24-bit PM timer at 3.579545 MHz
 * computed from the VM clock, a reset register, and the SCI on IRQ 9 (level, active high).
 * Writing SLP_TYP = {@link SLP_TYP_S5} with SLP_EN powers the VM off; writing the reset value
 * resets it. `core/boot/acpi.ts` describes exactly these ports in the FADT.
 *
 * Port layout from `base` (default 0x600): +0 PM1_STS, +2 PM1_EN, +4 PM1_CNT, +8 PM_TMR,
 * +0xC reset register. Options: `base`, `sci`, `reset_port` (e.g. 0xcf9).
 *
 * @module
 */

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
  type Power,
  type Timer,
} from "../plugins/mod.ts";

/** Default first port of the PM register block. */
export const ACPI_PM_BASE = 0x600;
/** Ports the PM block spans. */
export const ACPI_PM_LENGTH = 0x10;
/** Offsets in the block, and the lengths the FADT gives for them. */
export const PM1_EVT_OFFSET = 0, PM1_EVT_LEN = 4;
/** PM1a control block offset and length. */
export const PM1_CNT_OFFSET = 4, PM1_CNT_LEN = 2;
/** PM timer offset and length. */
export const PM_TMR_OFFSET = 8, PM_TMR_LEN = 4;
/** Reset register offset (default; `reset_port` moves it). */
export const RESET_REG_OFFSET = 0x0c;
/** The value the FADT tells the OS to write to the reset register (bit 2 resets, as at 0xCF9). */
export const RESET_VALUE = 0x06;
/** The SCI's ISA IRQ (the FADT's SCI_INT; the MADT makes it level, active high). */
export const SCI_IRQ = 9;
/** SLP_TYP for S5 (soft off); the DSDT's `\_S5_` package carries the same value. */
export const SLP_TYP_S5 = 5;
/** The PM timer's rate (ACPI spec 4.8.3.3: 3.579545 MHz). */
export const PM_TIMER_HZ = 3_579_545;

// PM1 status / enable bits (ACPI spec 4.8.3.1).
const TMR_STS = 0x0001, PWRBTN_STS = 0x0100, WAK_STS = 0x8000;
const STS_WRITABLE = 0x8731; // TMR, BM, GBL, PWRBTN, SLPBTN, RTC, WAK: write 1 to clear
const EN_WRITABLE = 0x0721; // TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN
// PM1 control bits (ACPI spec 4.8.3.2).
const SCI_EN = 0x0001, SLP_TYP_SHIFT = 10, SLP_TYP_MASK = 0x1c00, SLP_EN = 0x2000;
const CNT_WRITABLE = 0x1c07;
const TIMER_MASK = 0xff_ffff, TIMER_MSB = 0x80_0000;
const RESET_CPU_BIT = 0x04;

/**
 * The PM registers and what they do.
 *
 * @example The PM timer after one millisecond
 * ```ts
 * import { AcpiPm } from "./acpi_pm.ts";
 * let now = 0;
 * const clock = { now: () => now, timer: () => ({ arm() {}, cancel() {} }) };
 * const irq = { line: 9, raise() {}, lower() {}, pulse() {} };
 * const power = { exit() {}, reset() {}, off: () => console.log("off") };
 * const pm = new AcpiPm(clock, irq, power);
 * now = 1_000_000;
 * console.log(pm.timerValue()); // 3579
 * ```
 */
export class AcpiPm {
  /** PM1_STS. */
  status = 0;
  /** PM1_EN. */
  enable = 0;
  /** PM1_CNT (SLP_EN reads as 0). SCI_EN is set: the platform starts in ACPI mode. */
  control: number = SCI_EN;
  /** Number of PM timer MSB transitions already reported in TMR_STS. */
  timerEpoch = 0;
  readonly #clock: Clock;
  readonly #sci: IrqLine;
  readonly #power: Power;
  readonly #log: Logger | null;
  readonly #timer: Timer;
  #sciHigh = false;

  /** A PM block on `clock`, raising the SCI on `sci`, ending the VM through `power`. */
  constructor(clock: Clock, sci: IrqLine, power: Power, log: Logger | null = null) {
    this.#clock = clock;
    this.#sci = sci;
    this.#power = power;
    this.#log = log;
    this.#timer = clock.timer(() => this.#onTimerCarry());
  }

  /** The 24-bit PM timer value now. */
  timerValue(): number {
    return this.#ticks() & TIMER_MASK;
  }

  /** Presses the fixed-feature power button (the OS sees PWRBTN_STS and an SCI). */
  pressPowerButton(): void {
    this.status |= PWRBTN_STS;
    this.#updateSci();
  }

  /** Reads `size` bytes at `offset` in the PM block (not the reset register). */
  read(offset: number, size: number): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.#readByte(offset + i) << (8 * i);
    return v >>> 0;
  }

  /** Writes `size` bytes at `offset` in the PM block. */
  write(offset: number, size: number, value: number): void {
    if (offset === PM1_EVT_OFFSET && size >= 2) {
      this.#writeStatus(value & 0xffff);
      if (size === 4) this.#writeEnable(value >>> 16);
      return;
    }
    if (offset === PM1_EVT_OFFSET + 2 && size >= 2) {
      this.#writeEnable(value & 0xffff);
      return;
    }
    if (offset === PM1_CNT_OFFSET && size >= 2) {
      this.#writeControl(value & 0xffff);
      return;
    }
    // Byte accesses: merge into the 16-bit register they belong to.
    for (let i = 0; i < size; i++) {
      const off = offset + i, byte = (value >>> (8 * i)) & 0xff;
      const shift = (off & 1) * 8;
      if (off < 2) this.#writeStatus(byte << shift);
      else if (off < 4) {
        this.#writeEnable((this.enable & ~(0xff << shift)) | (byte << shift));
      } else if (off < 6) {
        this.#writeControl((this.control & ~(0xff << shift)) | (byte << shift));
      }
    }
  }

  /** A write to the reset register. */
  writeReset(value: number): void {
    if (value & RESET_CPU_BIT) this.#power.reset();
  }

  /** Power-on state. */
  reset(): void {
    this.status = 0;
    this.enable = 0;
    this.control = SCI_EN;
    this.timerEpoch = Math.floor(this.#ticks() / TIMER_MSB);
    this.#timer.cancel();
    this.#updateSci();
  }

  /** State for snapshots. */
  save(): DeviceState {
    return {
      version: 1,
      fields: {
        status: this.status,
        enable: this.enable,
        control: this.control,
        timerEpoch: this.timerEpoch,
      },
    };
  }

  /** Loads a state `save` returned. */
  restore(state: DeviceState): void {
    const f = state.fields;
    this.status = Number(f.status ?? 0);
    this.enable = Number(f.enable ?? 0);
    this.control = Number(f.control ?? SCI_EN);
    this.timerEpoch = Number(f.timerEpoch ?? 0);
    this.#armCarryTimer();
    this.#updateSci();
  }

  #ticks(): number {
    return Math.floor(this.#clock.now() * PM_TIMER_HZ / 1e9);
  }

  #readByte(off: number): number {
    if (off >= PM_TMR_OFFSET && off < PM_TMR_OFFSET + PM_TMR_LEN) {
      return (this.timerValue() >>> (8 * (off - PM_TMR_OFFSET))) & 0xff;
    }
    if (off < 2) {
      this.#pollTimerCarry();
      return (this.status >> ((off & 1) * 8)) & 0xff;
    }
    if (off < 4) return (this.enable >> ((off & 1) * 8)) & 0xff;
    if (off < 6) return (this.control >> ((off & 1) * 8)) & 0xff;
    return 0;
  }

  #writeStatus(value: number): void {
    this.#pollTimerCarry();
    this.status &= ~(value & STS_WRITABLE);
    this.#updateSci();
  }

  #writeEnable(value: number): void {
    this.enable = value & EN_WRITABLE;
    this.#armCarryTimer();
    this.#updateSci();
  }

  #writeControl(value: number): void {
    this.control = (this.control & SCI_EN) | (value & CNT_WRITABLE);
    if (value & SLP_EN) {
      const type = (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
      if (type === SLP_TYP_S5) {
        this.#power.off();
      } else {
        // Only S5 is offered in the DSDT; other sleep states wake at once.
        this.#log?.warn(`guest asked for sleep type ${type}, which this machine does not offer`);
        this.status |= WAK_STS;
      }
    }
    this.#updateSci();
  }

  /** Sets TMR_STS if the timer's MSB changed since it was last reported. */
  #pollTimerCarry(): void {
    const epoch = Math.floor(this.#ticks() / TIMER_MSB);
    if (epoch !== this.timerEpoch) {
      this.timerEpoch = epoch;
      this.status |= TMR_STS;
    }
  }

  #armCarryTimer(): void {
    if (!(this.enable & TMR_STS)) {
      this.#timer.cancel();
      return;
    }
    const nextTick = (Math.floor(this.#ticks() / TIMER_MSB) + 1) * TIMER_MSB;
    const at = Math.ceil(nextTick * 1e9 / PM_TIMER_HZ);
    this.#timer.arm(at - this.#clock.now());
  }

  #onTimerCarry(): void {
    this.#pollTimerCarry();
    this.#updateSci();
    this.#armCarryTimer();
  }

  #updateSci(): void {
    const high = (this.control & SCI_EN) !== 0 && (this.status & this.enable & EN_WRITABLE) !== 0;
    if (high === this.#sciHigh) return;
    this.#sciHigh = high;
    if (high) this.#sci.raise();
    else this.#sci.lower();
  }
}

/** Ports of `pm`: the PM block at `base` and, if it is outside the block, the reset port. */
export function acpiPmDevice(
  pm: AcpiPm,
  base = ACPI_PM_BASE,
  resetPort = base + RESET_REG_OFFSET,
): Device {
  const inBlock = resetPort >= base && resetPort < base + ACPI_PM_LENGTH;
  const ports: IoRange[] = [{
    base,
    length: ACPI_PM_LENGTH,
    read: (offset, size) => (inBlock && base + offset === resetPort) ? 0 : pm.read(offset, size),
    write: (offset, size, value) => {
      if (inBlock && base + offset === resetPort) pm.writeReset(value & 0xff);
      else pm.write(offset, size, value);
    },
  }];
  if (!inBlock) {
    ports.push({
      base: resetPort,
      length: 1,
      read: () => 0,
      write: (_offset, _size, value) => pm.writeReset(value & 0xff),
    });
  }
  return {
    ports,
    reset: () => pm.reset(),
    save: () => pm.save(),
    restore: (state) => pm.restore(state),
  };
}

/** The ACPI PM block as a plugin (options: base, sci, reset_port). */
const plugin: Plugin = definePlugin({
  name: "acpi_pm",
  apiVersion: API_VERSION,
  description: "ACPI PM1a event/control, PM timer, reset register, SCI (ports 0x600-0x60F)",
  create(host) {
    const base = host.options.number("base", ACPI_PM_BASE);
    const pm = new AcpiPm(
      host.clock,
      host.irq(host.options.number("sci", SCI_IRQ)),
      host.power,
      host.log,
    );
    return acpiPmDevice(pm, base, host.options.number("reset_port", base + RESET_REG_OFFSET));
  },
});

export default plugin;
