/**
 * The 8254 programmable interval timer (ports 0x40-0x43) and the PC's system control port B
 * (0x61: channel 2 gate, speaker enable, refresh toggle and channel 2's OUT). Counters are not
 * ticked: each channel computes its count and OUT from the VM clock at 1.193182 MHz, and
 * channel 0 arms one host timer for its next rising OUT edge, which pulses IRQ 0.
 *
 * Linux relies on: mode 2 (or 4 in one-shot) on channel 0 for its tick, and channel 2 in
 * mode 0 with the gate in port 0x61 for "Fast TSC calibration using PIT", which polls the MSB
 * of the count and OUT2 (bit 5 of port 0x61).
 *
 * @module
 */

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

/** The PIT's input clock (IBM PC: 14.31818 MHz / 12). */
export const PIT_HZ = 1_193_182;
/** First PIT port (channel 0 data); 0x43 is the mode/command register. */
export const PIT_PORT = 0x40;
/** System control port B (speaker gate, OUT2, refresh toggle). */
export const PORT_B = 0x61;
/** The DRAM refresh request bit of port 0x61 toggles every 15.085 µs (IBM AT). */
const REFRESH_PERIOD_NS = 15_085;

const NS_PER_S = 1e9;
const ACCESS_LATCH = 0, ACCESS_LSB = 1, ACCESS_MSB = 2, ACCESS_LOHI = 3;
const PORT_B_GATE2 = 0x01, PORT_B_SPEAKER = 0x02, PORT_B_WRITABLE = 0x0f;
const PORT_B_REFRESH = 0x10, PORT_B_OUT2 = 0x20;

const CHANNEL_FIELDS = [
  "mode",
  "access",
  "bcd",
  "reload",
  "armed",
  "triggered",
  "gate",
  "startNs",
  "heldTicks",
  "running",
  "writeMsbNext",
  "pendingLsb",
  "readMsbNext",
  "latchedCount",
  "latchedBytes",
  "latchedStatus",
  "nullCount",
  "nextIrqTick",
] as const;

/** One counter of the 8254. Times are VM-clock nanoseconds. */
export class PitChannel {
  /** Counter mode 0-5 (6 and 7 are stored as 2 and 3). */
  mode = 0;
  /** Read/write access: 1 LSB, 2 MSB, 3 LSB then MSB. */
  access: number = ACCESS_LOHI;
  /** BCD counting requested (counted in binary; no known guest depends on it). */
  bcd = false;
  /** The count register as written (0 stands for 65536). */
  reload = 0;
  /** A count was written since the last control word. */
  armed = false;
  /** Modes 1 and 5: a gate rising edge started the count. */
  triggered = false;
  /** The GATE input. */
  gate: boolean;
  /** Clock time at which `running` counting last (re)started. */
  startNs = 0;
  /** Input clocks counted before `startNs`. */
  heldTicks = 0;
  /** Counting (false while the gate holds the counter). */
  running = false;
  /** LOHI access: the next write is the MSB. */
  writeMsbNext = false;
  /** The LSB of a LOHI write waiting for its MSB. */
  pendingLsb = 0;
  /** LOHI access: the next read returns the MSB. */
  readMsbNext = false;
  /** Count latched by a latch or read-back command. */
  latchedCount = 0;
  /** Bytes of `latchedCount` still to be read (0 = not latched). */
  latchedBytes = 0;
  /** Status latched by read-back, or -1. */
  latchedStatus: number = -1;
  /** The count register was written but not yet loaded into the counter. */
  nullCount = true;
  /** Channel 0: the input-clock count at which IRQ 0 is due, or -1. */
  nextIrqTick: number = -1;

  /** A channel whose GATE starts at `gate`. */
  constructor(gate: boolean) {
    this.gate = gate;
  }

  /** The initial count N in clocks (0 means 65536). */
  get initial(): number {
    const n = this.reload === 0 ? 0x10000 : this.reload;
    return (this.mode === 2 || this.mode === 3) && n < 2 ? 2 : n;
  }

  /** Input clocks counted since the count was loaded. */
  ticks(now: number): number {
    if (!this.armed) return 0;
    if (!this.running) return this.heldTicks;
    return this.heldTicks + Math.floor((now - this.startNs) * PIT_HZ / NS_PER_S);
  }

  /** The clock time at which `ticks` reaches `tick` (the channel must be running). */
  timeOfTick(tick: number): number {
    return this.startNs + Math.ceil((tick - this.heldTicks) * NS_PER_S / PIT_HZ);
  }

  /** The value the counting element holds now (0..0xffff). */
  count(now: number): number {
    if (!this.armed) return this.reload & 0xffff;
    const n = this.initial, t = this.ticks(now);
    switch (this.mode) {
      case 2:
        return n - (t % n);
      case 3: {
        const half = Math.ceil(n / 2), phase = t % n;
        const c = phase < half ? n - 2 * phase : n - 2 * (phase - half);
        return Math.max(0, c) & 0xfffe;
      }
      default:
        return (((n - t) % 0x10000) + 0x10000) % 0x10000;
    }
  }

  /** The OUT pin now. */
  out(now: number): boolean {
    if (!this.armed) return this.mode !== 0;
    const n = this.initial, t = this.ticks(now);
    switch (this.mode) {
      case 0:
        return t >= n;
      case 1:
        return !this.triggered || t >= n;
      case 2:
        return !this.running || t % n !== n - 1;
      case 3:
        return !this.running || t % n < Math.ceil(n / 2);
      default: // 4, 5: one low clock at terminal count
        return (this.mode === 5 && !this.triggered) || t !== n;
    }
  }

  /** The tick of the next rising OUT edge after tick `t`, or -1 when there is none. */
  nextRisingEdge(t: number): number {
    if (!this.armed || !this.running) return -1;
    const n = this.initial;
    switch (this.mode) {
      case 0:
      case 1:
        return t < n ? n : -1;
      case 2:
      case 3:
        return (Math.floor(t / n) + 1) * n;
      default:
        return t < n ? n : -1;
    }
  }

  /** Status byte for read-back. */
  status(now: number): number {
    return (this.out(now) ? 0x80 : 0) | (this.nullCount ? 0x40 : 0) | (this.access << 4) |
      (this.mode << 1) | (this.bcd ? 1 : 0);
  }

  /** Control word for this channel (not a latch command). */
  setMode(access: number, mode: number, bcd: boolean): void {
    this.access = access;
    this.mode = mode > 5 ? mode - 4 : mode;
    this.bcd = bcd;
    this.armed = false;
    this.running = false;
    this.triggered = false;
    this.writeMsbNext = false;
    this.readMsbNext = false;
    this.nullCount = true;
  }

  /** Loads `reload` into the counter and starts counting as the mode and gate allow. */
  load(now: number): void {
    this.armed = true;
    this.nullCount = false;
    this.heldTicks = 0;
    this.startNs = now;
    const triggeredMode = this.mode === 1 || this.mode === 5;
    this.triggered = false;
    this.running = triggeredMode ? false : this.gate;
  }

  /** A write to the channel's data port. */
  writeData(value: number, now: number): void {
    switch (this.access) {
      case ACCESS_LSB:
        this.reload = value;
        break;
      case ACCESS_MSB:
        this.reload = value << 8;
        break;
      default:
        if (!this.writeMsbNext) {
          this.pendingLsb = value;
          this.writeMsbNext = true;
          // Mode 0: writing the first byte stops the count until the second arrives.
          if (this.mode === 0 && this.armed) {
            this.heldTicks = this.ticks(now);
            this.running = false;
          }
          return;
        }
        this.writeMsbNext = false;
        this.reload = this.pendingLsb | (value << 8);
    }
    this.load(now);
  }

  /** A read of the channel's data port. */
  readData(now: number): number {
    if (this.latchedStatus >= 0) {
      const s = this.latchedStatus;
      this.latchedStatus = -1;
      return s;
    }
    if (this.latchedBytes > 0) {
      this.latchedBytes--;
      const c = this.latchedCount;
      if (this.access === ACCESS_MSB) return (c >> 8) & 0xff;
      if (this.access === ACCESS_LSB) return c & 0xff;
      return this.latchedBytes === 1 ? c & 0xff : (c >> 8) & 0xff;
    }
    const c = this.count(now);
    switch (this.access) {
      case ACCESS_LSB:
        return c & 0xff;
      case ACCESS_MSB:
        return (c >> 8) & 0xff;
      default:
        this.readMsbNext = !this.readMsbNext;
        return this.readMsbNext ? c & 0xff : (c >> 8) & 0xff;
    }
  }

  /** Counter latch command (ignored while a latched count is unread). */
  latch(now: number): void {
    if (this.latchedBytes > 0) return;
    this.latchedCount = this.count(now);
    this.latchedBytes = this.access === ACCESS_LOHI ? 2 : 1;
  }

  /** Drives GATE. */
  setGate(high: boolean, now: number): void {
    if (high === this.gate) return;
    this.gate = high;
    if (!this.armed) return;
    switch (this.mode) {
      case 0:
      case 4:
        if (high) {
          this.startNs = now;
          this.running = true;
        } else {
          this.heldTicks = this.ticks(now);
          this.running = false;
        }
        break;
      case 2:
      case 3:
        // Gate low holds OUT high and stops counting; the rising edge reloads the counter.
        this.heldTicks = 0;
        this.startNs = now;
        this.running = high;
        break;
      default: // 1, 5: a rising edge (re)triggers
        if (high) {
          this.triggered = true;
          this.heldTicks = 0;
          this.startNs = now;
          this.running = true;
        }
    }
  }

  /** The channel's fields, for snapshots. */
  save(): Record<string, number | boolean> {
    const out: Record<string, number | boolean> = {};
    for (const k of CHANNEL_FIELDS) out[k] = this[k];
    return out;
  }

  /** Loads fields `save` produced. */
  restore(fields: Record<string, unknown>): void {
    for (const k of CHANNEL_FIELDS) {
      if (typeof this[k] === "boolean") (this as Record<string, unknown>)[k] = Boolean(fields[k]);
      else (this as Record<string, unknown>)[k] = Number(fields[k] ?? 0);
    }
  }
}

/**
 * The three-channel PIT plus port 0x61. Channel 0's OUT pulses `irq0` on each rising edge.
 *
 * @example A 250 Hz tick as Linux programs it
 * ```ts
 * import { Pit8254 } from "./pit8254.ts";
 * let now = 0, ticks = 0;
 * const clock = { now: () => now, timer: (_cb: () => void) => ({ arm() {}, cancel() {} }) };
 * const pit = new Pit8254(clock, { line: 0, raise() {}, lower() {}, pulse: () => ticks++ });
 * pit.ioWrite(0x43, 0x34);
 * pit.ioWrite(0x40, 4773 & 0xff);
 * pit.ioWrite(0x40, 4773 >> 8);
 * now = 2_000_000; // 2 ms later the counter has counted 2386 clocks
 * pit.ioWrite(0x43, 0x00);
 * console.log(pit.ioRead(0x40) | (pit.ioRead(0x40) << 8)); // 2387
 * ```
 */
export class Pit8254 {
  /** Channels 0-2 (channel 2's gate comes from port 0x61; 0 and 1 are tied high). */
  readonly channels: [PitChannel, PitChannel, PitChannel] = [
    new PitChannel(true),
    new PitChannel(true),
    new PitChannel(false),
  ];
  /** Writable bits of port 0x61 (gate 2, speaker data, parity/IO check enables). */
  portB = 0;
  readonly #clock: Clock;
  readonly #irq0: IrqLine;
  readonly #timer: Timer;

  /** A PIT on `clock` whose channel 0 pulses `irq0`. */
  constructor(clock: Clock, irq0: IrqLine) {
    this.#clock = clock;
    this.#irq0 = irq0;
    this.#timer = clock.timer(() => this.#onTimer());
  }

  /** A read of port 0x40-0x43 or 0x61. */
  ioRead(port: number): number {
    const now = this.#clock.now();
    if (port === PORT_B) {
      const refresh = Math.floor(now / REFRESH_PERIOD_NS) & 1 ? PORT_B_REFRESH : 0;
      return this.portB | refresh | (this.channels[2].out(now) ? PORT_B_OUT2 : 0);
    }
    const index = port - PIT_PORT;
    if (index < 0 || index > 2) return 0xff; // the command register is write-only
    return this.channels[index as 0 | 1 | 2].readData(now);
  }

  /** A write of port 0x40-0x43 or 0x61. */
  ioWrite(port: number, value: number): void {
    const now = this.#clock.now();
    value &= 0xff;
    if (port === PORT_B) {
      this.portB = value & PORT_B_WRITABLE;
      this.channels[2].setGate((value & PORT_B_GATE2) !== 0, now);
      return;
    }
    const index = port - PIT_PORT;
    if (index >= 0 && index <= 2) {
      this.channels[index as 0 | 1 | 2].writeData(value, now);
      if (index === 0) this.#schedule(now);
    } else if (index === 3) {
      this.#command(value, now);
    }
  }

  /** True when the speaker would sound (gate 2 and speaker data both on). */
  get speakerOn(): boolean {
    return (this.portB & (PORT_B_GATE2 | PORT_B_SPEAKER)) === (PORT_B_GATE2 | PORT_B_SPEAKER);
  }

  /** Power-on state. */
  reset(): void {
    for (const c of this.channels) {
      c.setMode(ACCESS_LOHI, 0, false);
      c.reload = 0;
      c.latchedBytes = 0;
      c.latchedStatus = -1;
      c.nextIrqTick = -1;
    }
    this.channels[2].gate = false;
    this.portB = 0;
    this.#timer.cancel();
  }

  /** State of all channels and port 0x61. */
  save(): DeviceState {
    return {
      version: 1,
      fields: { portB: this.portB, channels: this.channels.map((c) => c.save()) },
    };
  }

  /** Loads a state `save` returned and re-arms the channel 0 timer. */
  restore(state: DeviceState): void {
    this.portB = Number(state.fields.portB ?? 0);
    const chans = (state.fields.channels ?? []) as Record<string, unknown>[];
    this.channels.forEach((c, i) => c.restore(chans[i] ?? {}));
    this.#timer.cancel();
    const c0 = this.channels[0];
    if (c0.nextIrqTick >= 0 && c0.running) {
      this.#timer.arm(c0.timeOfTick(c0.nextIrqTick) - this.#clock.now());
    }
  }

  #command(value: number, now: number): void {
    const select = value >> 6;
    const access = (value >> 4) & 3;
    if (select === 3) {
      // Read-back: bit 5 clear latches counts, bit 4 clear latches status; bits 1-3 select.
      for (let i = 0; i < 3; i++) {
        if (!(value & (2 << i))) continue;
        const c = this.channels[i as 0 | 1 | 2];
        if (!(value & 0x20)) c.latch(now);
        if (!(value & 0x10) && c.latchedStatus < 0) c.latchedStatus = c.status(now);
      }
      return;
    }
    const c = this.channels[select as 0 | 1 | 2];
    if (access === ACCESS_LATCH) {
      c.latch(now);
      return;
    }
    c.setMode(access, (value >> 1) & 7, (value & 1) !== 0);
    if (select === 0) this.#schedule(now);
  }

  /** Arms the host timer for channel 0's next rising OUT edge. */
  #schedule(now: number): void {
    const c = this.channels[0];
    const next = c.nextRisingEdge(c.ticks(now));
    c.nextIrqTick = next;
    if (next < 0) this.#timer.cancel();
    else this.#timer.arm(c.timeOfTick(next) - now);
  }

  #onTimer(): void {
    const c = this.channels[0];
    if (c.nextIrqTick < 0 || !c.running) return;
    this.#irq0.pulse();
    const now = this.#clock.now();
    // Periodic modes: the next period after this one, skipping any the host was too late for.
    let next = c.nextRisingEdge(c.nextIrqTick);
    const t = c.ticks(now);
    if (next >= 0 && next <= t) next = c.nextRisingEdge(t);
    c.nextIrqTick = next;
    if (next >= 0) this.#timer.arm(c.timeOfTick(next) - now);
  }
}

/** Port ranges for `pit`: 0x40-0x43 and, unless `portB` is false, 0x61. */
export function pitDevice(pit: Pit8254, portB = true): Device {
  const ports = [{
    base: PIT_PORT,
    length: 4,
    read: (offset: number) => pit.ioRead(PIT_PORT + offset),
    write: (offset: number, _size: number, value: number) => pit.ioWrite(PIT_PORT + offset, value),
  }];
  if (portB) {
    ports.push({
      base: PORT_B,
      length: 1,
      read: () => pit.ioRead(PORT_B),
      write: (_offset, _size, value) => pit.ioWrite(PORT_B, value),
    });
  }
  return {
    ports,
    reset: () => pit.reset(),
    save: () => pit.save(),
    restore: (state) => pit.restore(state),
  };
}

/** The PIT and port 0x61 as a plugin (options: irq, port61). */
const plugin: Plugin = definePlugin({
  name: "pit8254",
  apiVersion: API_VERSION,
  description: "8254 interval timer (ports 0x40-0x43, IRQ 0) and port 0x61 (option port61=false)",
  create(host) {
    const pit = new Pit8254(host.clock, host.irq(host.options.number("irq", 0)));
    return pitDevice(pit, host.options.boolean("port61", true));
  },
});

export default plugin;
