/**
 * The MC146818 real-time clock and its CMOS RAM (ports 0x70 index / 0x71 data, IRQ 8). The time
 * of day follows the VM clock from a base taken from the host's `Date` (UTC) or the `time`
 * option, in BCD or binary and 12/24-hour form as register B asks. The CMOS holds the memory
 * sizes a PC BIOS reports (0x15-0x18, 0x30/0x31, 0x34/0x35, 0x5B-0x5D) and the century (0x32,
 * the FADT's CENTURY field). Update-ended, alarm and periodic interrupts raise IRQ 8.
 *
 * @module
 */

import { layoutRegions, MMIO_GAP_START } from "../core/memory.ts";
import {
  API_VERSION,
  type Clock,
  definePlugin,
  type Device,
  type DeviceState,
  type IrqLine,
  type Plugin,
  type Timer,
} from "../plugins/mod.ts";

/** Index port (bit 7 masks NMI); the data port is RTC_PORT + 1. */
export const RTC_PORT = 0x70;
/** CMOS offset of the century byte (IBM PS/2 and the ACPI FADT CENTURY field). */
export const CMOS_CENTURY = 0x32;

// Register numbers (MC146818A datasheet).
const REG_SEC = 0x00, REG_SEC_ALARM = 0x01, REG_MIN = 0x02, REG_MIN_ALARM = 0x03;
const REG_HOUR = 0x04, REG_HOUR_ALARM = 0x05, REG_WEEKDAY = 0x06, REG_DAY = 0x07;
const REG_MONTH = 0x08, REG_YEAR = 0x09;
const REG_A = 0x0a, REG_B = 0x0b, REG_C = 0x0c, REG_D = 0x0d;
const A_UIP = 0x80, A_RESET = 0x26; // 32.768 kHz time base, 1024 Hz rate
const B_SET = 0x80, B_PIE = 0x40, B_AIE = 0x20, B_UIE = 0x10, B_DM_BINARY = 0x04, B_24H = 0x02;
const B_RESET = B_24H;
const C_IRQF = 0x80, C_PF = 0x40, C_AF = 0x20, C_UF = 0x10;
const D_VRT = 0x80;
const HOUR_PM = 0x80;
const ALARM_DONT_CARE = 0xc0;
/** UIP rises this long before each update (MC146818A: 244 µs). */
const UIP_LEAD_MS = 0.244;
// BIOS memory bytes (IBM AT CMOS map, plus the SeaBIOS/QEMU extensions at 0x34 and 0x5B).
const CMOS_BASE_MEM = 0x15, CMOS_EXT_MEM_AT = 0x17, CMOS_EXT_MEM = 0x30;
const CMOS_MEM_ABOVE_16M = 0x34, CMOS_MEM_ABOVE_4G = 0x5b, CMOS_CPU_COUNT = 0x5f;
const CMOS_EQUIPMENT = 0x14, CMOS_CHECKSUM = 0x2e;
const EQUIPMENT_FPU_PS2 = 0x06;
const MIB = 0x10_0000, KIB = 1024, UNITS_64K = 0x1_0000;

function toBcd(v: number): number {
  return (Math.floor(v / 10) << 4) | (v % 10);
}
function fromBcd(v: number): number {
  return (v >> 4) * 10 + (v & 0x0f);
}

/**
 * The RTC and 128 bytes of CMOS RAM.
 *
 * @example Reading the seconds register in BCD
 * ```ts
 * import { RtcCmos } from "./rtc_cmos.ts";
 * const clock = { now: () => 0, timer: () => ({ arm() {}, cancel() {} }) };
 * const irq = { line: 8, raise() {}, lower() {}, pulse() {} };
 * const rtc = new RtcCmos(clock, irq, { baseTimeMs: Date.UTC(2024, 0, 2, 3, 4, 56) });
 * rtc.ioWrite(0x70, 0x00);
 * console.log(rtc.ioRead(0x71).toString(16)); // "56"
 * ```
 */
export class RtcCmos {
  /** The 128 CMOS bytes (time registers hold the last value read or written). */
  readonly cmos: Uint8Array = new Uint8Array(128);
  /** Selected register. */
  index = 0;
  /** Bit 7 of the last index write (NMI disabled). */
  nmiDisabled = false;
  /** Guest wall time in ms = offsetMs + clock ns / 1e6. */
  offsetMs: number;
  /** Whole second of guest time at which UF was last reported, for polled reads of C. */
  lastUpdateSecond: number;
  readonly #clock: Clock;
  readonly #irq: IrqLine;
  readonly #updateTimer: Timer;
  readonly #periodicTimer: Timer;
  readonly #memSize: number;
  #irqHigh = false;

  /** An RTC on `clock` raising `irq`, starting at `opts.baseTimeMs`, reporting `opts.memSize`. */
  constructor(
    clock: Clock,
    irq: IrqLine,
    opts: { baseTimeMs?: number; memSize?: number } = {},
  ) {
    this.#clock = clock;
    this.#irq = irq;
    this.#memSize = opts.memSize ?? 0;
    this.offsetMs = (opts.baseTimeMs ?? Date.now()) - clock.now() / 1e6;
    this.lastUpdateSecond = Math.floor(this.#timeMs() / 1000);
    this.#updateTimer = clock.timer(() => this.#onUpdate());
    this.#periodicTimer = clock.timer(() => this.#onPeriodic());
    this.reset();
  }

  /** Power-on state: registers A-D, time format, memory bytes (the time keeps running). */
  reset(): void {
    this.cmos.fill(0);
    this.cmos[REG_A] = A_RESET;
    this.cmos[REG_B] = B_RESET;
    this.cmos[REG_D] = D_VRT;
    this.index = 0;
    this.nmiDisabled = false;
    this.#writeMemoryBytes();
    this.#setIrq(false);
    this.#armTimers();
  }

  /** A read of port 0x70 or 0x71. */
  ioRead(port: number): number {
    if (port === RTC_PORT) return this.index | (this.nmiDisabled ? 0x80 : 0);
    const reg = this.index;
    switch (reg) {
      case REG_SEC:
      case REG_MIN:
      case REG_HOUR:
      case REG_WEEKDAY:
      case REG_DAY:
      case REG_MONTH:
      case REG_YEAR:
      case CMOS_CENTURY:
        if (!(this.cmos[REG_B]! & B_SET)) this.#latchTime();
        return this.cmos[reg]!;
      case REG_A: {
        const ms = this.#timeMs();
        const frac = ms - Math.floor(ms / 1000) * 1000;
        const uip = !(this.cmos[REG_B]! & B_SET) && frac >= 1000 - UIP_LEAD_MS;
        return (this.cmos[REG_A]! & 0x7f) | (uip ? A_UIP : 0);
      }
      case REG_C: {
        this.#pollUpdate();
        const v = this.cmos[REG_C]!;
        this.cmos[REG_C] = 0;
        this.#setIrq(false);
        return v;
      }
      default:
        return this.cmos[reg]!;
    }
  }

  /** A write of port 0x70 or 0x71. */
  ioWrite(port: number, value: number): void {
    value &= 0xff;
    if (port === RTC_PORT) {
      this.index = value & 0x7f;
      this.nmiDisabled = (value & 0x80) !== 0;
      return;
    }
    const reg = this.index;
    switch (reg) {
      case REG_A:
        this.cmos[REG_A] = value & 0x7f;
        this.#armTimers();
        return;
      case REG_B: {
        const old = this.cmos[REG_B]!;
        if ((value & B_SET) && !(old & B_SET)) this.#latchTime();
        // Changing the data mode reformats nothing stored: the next read re-encodes the time.
        this.cmos[REG_B] = value;
        if (!(value & B_SET) && (old & B_SET)) this.#loadTimeFromRegisters();
        this.#armTimers();
        this.#updateIrq();
        return;
      }
      case REG_C:
      case REG_D:
        return; // read-only
      default:
        this.cmos[reg] = value;
        if (reg <= REG_YEAR || reg === CMOS_CENTURY) {
          // A time write without SET takes effect at once.
          if (
            !(this.cmos[REG_B]! & B_SET) && reg !== REG_SEC_ALARM && reg !== REG_MIN_ALARM &&
            reg !== REG_HOUR_ALARM
          ) {
            this.#loadTimeFromRegisters();
          }
        }
    }
  }

  /** The RTC's current time as a Date (for tests and diagnostics). */
  now(): Date {
    return new Date(Math.floor(this.#timeMs()));
  }

  /** State for snapshots. */
  save(): DeviceState {
    return {
      version: 1,
      fields: {
        cmos: Array.from(this.cmos),
        index: this.index,
        nmiDisabled: this.nmiDisabled,
        // The wall-clock base: a restored VM keeps the time it had.
        offsetMs: this.offsetMs,
        lastUpdateSecond: this.lastUpdateSecond,
        irqHigh: this.#irqHigh,
      },
    };
  }

  /** Loads a state `save` returned. */
  restore(state: DeviceState): void {
    const f = state.fields;
    const bytes = (f.cmos ?? []) as number[];
    for (let i = 0; i < 128; i++) this.cmos[i] = Number(bytes[i] ?? 0);
    this.index = Number(f.index ?? 0) & 0x7f;
    this.nmiDisabled = Boolean(f.nmiDisabled);
    this.offsetMs = Number(f.offsetMs ?? this.offsetMs);
    this.lastUpdateSecond = Number(f.lastUpdateSecond ?? 0);
    this.#irqHigh = !f.irqHigh;
    this.#setIrq(Boolean(f.irqHigh));
    this.#armTimers();
  }

  #timeMs(): number {
    return this.offsetMs + this.#clock.now() / 1e6;
  }

  #encode(v: number): number {
    return this.cmos[REG_B]! & B_DM_BINARY ? v : toBcd(v);
  }
  #decode(v: number): number {
    return this.cmos[REG_B]! & B_DM_BINARY ? v : fromBcd(v);
  }

  /** Copies the current time into the time registers in the current format. */
  #latchTime(): void {
    const d = new Date(Math.floor(this.#timeMs()));
    const c = this.cmos;
    c[REG_SEC] = this.#encode(d.getUTCSeconds());
    c[REG_MIN] = this.#encode(d.getUTCMinutes());
    const h = d.getUTCHours();
    if (c[REG_B]! & B_24H) {
      c[REG_HOUR] = this.#encode(h);
    } else {
      c[REG_HOUR] = this.#encode(h % 12 === 0 ? 12 : h % 12) | (h >= 12 ? HOUR_PM : 0);
    }
    c[REG_WEEKDAY] = this.#encode(d.getUTCDay() + 1);
    c[REG_DAY] = this.#encode(d.getUTCDate());
    c[REG_MONTH] = this.#encode(d.getUTCMonth() + 1);
    const year = d.getUTCFullYear();
    c[REG_YEAR] = this.#encode(year % 100);
    c[CMOS_CENTURY] = this.#encode(Math.floor(year / 100));
  }

  /** Sets the clock from the time registers (after the guest set the time). */
  #loadTimeFromRegisters(): void {
    const c = this.cmos;
    let hour: number;
    if (c[REG_B]! & B_24H) {
      hour = this.#decode(c[REG_HOUR]!);
    } else {
      const raw = c[REG_HOUR]!;
      hour = this.#decode(raw & 0x7f) % 12 + (raw & HOUR_PM ? 12 : 0);
    }
    const century = this.#decode(c[CMOS_CENTURY]!) || 20;
    const ms = Date.UTC(
      century * 100 + this.#decode(c[REG_YEAR]!),
      this.#decode(c[REG_MONTH]!) - 1,
      this.#decode(c[REG_DAY]!),
      hour,
      this.#decode(c[REG_MIN]!),
      this.#decode(c[REG_SEC]!),
    );
    if (Number.isFinite(ms)) this.offsetMs = ms - this.#clock.now() / 1e6;
    this.lastUpdateSecond = Math.floor(this.#timeMs() / 1000);
    this.#armTimers();
  }

  #writeMemoryBytes(): void {
    const c = this.cmos;
    const regions = layoutRegions(this.#memSize);
    const below4g = Math.min(this.#memSize, MMIO_GAP_START);
    const above4g = regions[1]?.size ?? 0;
    const baseKb = 640;
    c[CMOS_BASE_MEM] = baseKb & 0xff;
    c[CMOS_BASE_MEM + 1] = baseKb >> 8;
    const extKb = Math.min(0xffff, Math.max(0, below4g / KIB - 1024));
    c[CMOS_EXT_MEM_AT] = c[CMOS_EXT_MEM] = extKb & 0xff;
    c[CMOS_EXT_MEM_AT + 1] = c[CMOS_EXT_MEM + 1] = extKb >> 8;
    const above16m = Math.min(0xffff, Math.max(0, Math.floor((below4g - 16 * MIB) / UNITS_64K)));
    c[CMOS_MEM_ABOVE_16M] = above16m & 0xff;
    c[CMOS_MEM_ABOVE_16M + 1] = above16m >> 8;
    const high = Math.floor(above4g / UNITS_64K);
    c[CMOS_MEM_ABOVE_4G] = high & 0xff;
    c[CMOS_MEM_ABOVE_4G + 1] = (high >> 8) & 0xff;
    c[CMOS_MEM_ABOVE_4G + 2] = (high >> 16) & 0xff;
    c[CMOS_CPU_COUNT] = 0; // one CPU, reported as count - 1
    c[CMOS_EQUIPMENT] = EQUIPMENT_FPU_PS2;
    let sum = 0;
    for (let i = 0x10; i < CMOS_CHECKSUM; i++) sum += c[i]!;
    c[CMOS_CHECKSUM] = (sum >> 8) & 0xff;
    c[CMOS_CHECKSUM + 1] = sum & 0xff;
    this.#latchTime();
  }

  /** Periodic interrupt period in ns for rate bits RS3-0 of register A, or 0 when off. */
  #periodNs(): number {
    const rate = this.cmos[REG_A]! & 0x0f;
    if (rate === 0) return 0;
    // 32.768 kHz divided by 2^(rate-1); rates 1 and 2 alias to 256 Hz and 128 Hz.
    const shift = rate <= 2 ? rate + 6 : rate - 1;
    return (1e9 * (1 << shift)) / 32768;
  }

  #armTimers(): void {
    const b = this.cmos[REG_B]!;
    if ((b & (B_UIE | B_AIE)) && !(b & B_SET)) {
      const ms = this.#timeMs();
      const next = (Math.floor(ms / 1000) + 1) * 1000;
      this.#updateTimer.arm(Math.max(0, (next - ms) * 1e6));
    } else {
      this.#updateTimer.cancel();
    }
    const period = this.#periodNs();
    if ((b & B_PIE) && period > 0) {
      const now = this.#clock.now();
      this.#periodicTimer.arm((Math.floor(now / period) + 1) * period - now);
    } else {
      this.#periodicTimer.cancel();
    }
  }

  /** Sets UF (and AF on an alarm match) for every second boundary crossed since the last look. */
  #pollUpdate(): void {
    if (this.cmos[REG_B]! & B_SET) return;
    const second = Math.floor(this.#timeMs() / 1000);
    if (second === this.lastUpdateSecond) return;
    this.lastUpdateSecond = second;
    let flags = C_UF;
    if (this.#alarmMatches()) flags |= C_AF;
    this.cmos[REG_C]! |= flags;
  }

  #alarmMatches(): boolean {
    this.#latchTime();
    const c = this.cmos;
    const match = (alarm: number, now: number) =>
      (c[alarm]! & ALARM_DONT_CARE) === ALARM_DONT_CARE || c[alarm] === c[now];
    return match(REG_SEC_ALARM, REG_SEC) && match(REG_MIN_ALARM, REG_MIN) &&
      match(REG_HOUR_ALARM, REG_HOUR);
  }

  #onUpdate(): void {
    this.#pollUpdate();
    this.#updateIrq();
    this.#armTimers();
  }

  #onPeriodic(): void {
    this.cmos[REG_C]! |= C_PF;
    this.#updateIrq();
    const period = this.#periodNs();
    if ((this.cmos[REG_B]! & B_PIE) && period > 0) {
      const now = this.#clock.now();
      this.#periodicTimer.arm((Math.floor(now / period) + 1) * period - now);
    }
  }

  #updateIrq(): void {
    const c = this.cmos[REG_C]! & (C_PF | C_AF | C_UF);
    const enabled = c & this.cmos[REG_B]! & (B_PIE | B_AIE | B_UIE);
    if (enabled) {
      this.cmos[REG_C] = c | C_IRQF;
      this.#setIrq(true);
    }
  }

  #setIrq(high: boolean): void {
    if (high === this.#irqHigh) return;
    this.#irqHigh = high;
    if (high) this.#irq.raise();
    else this.#irq.lower();
  }
}

/** Parses the `time` option: an ISO date or seconds since the epoch; empty means the host's. */
function parseBaseTime(text: string): number {
  if (text === "") return Date.now();
  const n = Number(text);
  const ms = Number.isFinite(n) ? n * 1000 : Date.parse(text);
  if (!Number.isFinite(ms)) {
    throw new TypeError(
      `RTC option time=${text} is not a time: give an ISO date such as 2024-01-02T03:04:05Z ` +
        `or seconds since 1970`,
    );
  }
  return ms;
}

/** The ports 0x70-0x71 of `rtc` as a Device. */
export function rtcDevice(rtc: RtcCmos): Device {
  return {
    ports: [{
      base: RTC_PORT,
      length: 2,
      read: (offset) => rtc.ioRead(RTC_PORT + offset),
      write: (offset, _size, value) => rtc.ioWrite(RTC_PORT + offset, value),
    }],
    reset: () => rtc.reset(),
    save: () => rtc.save(),
    restore: (state) => rtc.restore(state),
  };
}

/** The RTC and CMOS as a plugin (options: irq, time). */
const plugin: Plugin = definePlugin({
  name: "rtc_cmos",
  apiVersion: API_VERSION,
  description: "MC146818 RTC and CMOS RAM (ports 0x70-0x71, IRQ 8; option time=ISO|epoch)",
  create(host) {
    const rtc = new RtcCmos(host.clock, host.irq(host.options.number("irq", 8)), {
      baseTimeMs: parseBaseTime(host.options.string("time", "")),
      memSize: host.memory.size,
    });
    return rtcDevice(rtc);
  },
});

export default plugin;
