/**
 * A small, fully controllable DeviceHost for device tests: a manual clock whose timers fire in
 * deadline order as the test advances time, recorded interrupt-line changes, recorded power
 * requests and a GuestMemory for DMA. (To be replaced by `plugins/testing.ts`.)
 */

import { GuestMemory } from "../../core/memory.ts";
import type {
  Clock,
  Device,
  DeviceHost,
  IrqLine,
  Logger,
  Plugin,
  PluginOptions,
  Timer,
} from "../../plugins/mod.ts";

class FakeTimer implements Timer {
  deadline = Infinity;
  constructor(readonly clock: FakeClock, readonly callback: () => void) {}
  arm(delayNs: number): void {
    this.deadline = this.clock.now() + Math.max(0, delayNs);
  }
  cancel(): void {
    this.deadline = Infinity;
  }
}

/** A clock that only moves when the test says so; timers fire at their exact deadlines. */
export class FakeClock implements Clock {
  #now = 0;
  readonly timers: FakeTimer[] = [];

  now(): number {
    return this.#now;
  }

  timer(callback: () => void): Timer {
    const t = new FakeTimer(this, callback);
    this.timers.push(t);
    return t;
  }

  /** Moves time forward by `ns`, firing each due timer with `now()` at its deadline. */
  advance(ns: number): void {
    this.advanceTo(this.#now + ns);
  }

  /** Moves time forward to `target` ns, firing due timers in deadline order. */
  advanceTo(target: number): void {
    for (;;) {
      let next: FakeTimer | null = null;
      for (const t of this.timers) {
        if (t.deadline <= target && (next === null || t.deadline < next.deadline)) next = t;
      }
      if (next === null) break;
      this.#now = Math.max(this.#now, next.deadline);
      next.deadline = Infinity;
      next.callback();
    }
    this.#now = Math.max(this.#now, target);
  }

  /** The earliest armed deadline, or Infinity. */
  nextDeadline(): number {
    let d = Infinity;
    for (const t of this.timers) d = Math.min(d, t.deadline);
    return d;
  }
}

/** One recorded change of an interrupt line. */
export interface IrqEvent {
  line: number;
  high: boolean;
  at: number;
}

/** A DeviceHost with everything recorded. */
export interface FakeHost extends DeviceHost {
  readonly clock: FakeClock;
  readonly memory: GuestMemory;
  /** Every raise/lower, in order. */
  readonly irqEvents: IrqEvent[];
  /** Current level of each line that was touched. */
  readonly irqLevels: Map<number, boolean>;
  /** Power requests in order: "exit:N", "reset", "off". */
  readonly powerEvents: string[];
  /** Log lines. */
  readonly logLines: string[];
  /** Rising edges seen on `line`. */
  risingEdges(line: number): number;
  /** Times (ns) of the rising edges on `line`. */
  risingEdgeTimes(line: number): number[];
}

function fakeOptions(raw: Record<string, string>): PluginOptions {
  return {
    raw,
    string: (k, f) => raw[k] ?? f,
    number(k, f) {
      const v = raw[k];
      if (v === undefined) return f;
      const n = Number(v);
      if (!Number.isFinite(n)) throw new TypeError(`option ${k}=${v} is not a number`);
      return n;
    },
    boolean(k, f) {
      const v = raw[k];
      if (v === undefined) return f;
      return v === "true" || v === "1" || v === "yes";
    },
  };
}

/** Makes a fake host with `memSize` bytes of RAM and the given plugin options. */
export function fakeHost(
  opts: { memSize?: number; options?: Record<string, string>; name?: string } = {},
): FakeHost {
  const clock = new FakeClock();
  const memory = GuestMemory.allocate(opts.memSize ?? 0x10_0000);
  const irqEvents: IrqEvent[] = [];
  const irqLevels = new Map<number, boolean>();
  const powerEvents: string[] = [];
  const logLines: string[] = [];
  const lines = new Map<number, IrqLine>();
  function set(line: number, high: boolean): void {
    irqEvents.push({ line, high, at: clock.now() });
    irqLevels.set(line, high);
  }
  const log: Logger = {
    info: (m) => logLines.push(`info: ${m}`),
    warn: (m) => logLines.push(`warn: ${m}`),
    debug: (m) => logLines.push(`debug: ${m}`),
  };
  return {
    name: opts.name ?? "test-device",
    options: fakeOptions(opts.options ?? {}),
    memory,
    clock,
    log,
    irqEvents,
    irqLevels,
    powerEvents,
    logLines,
    irq(line: number): IrqLine {
      let l = lines.get(line);
      if (!l) {
        l = {
          line,
          raise: () => set(line, true),
          lower: () => set(line, false),
          pulse: () => {
            set(line, true);
            set(line, false);
          },
        };
        lines.set(line, l);
      }
      return l;
    },
    console: { write() {}, onInput() {} },
    power: {
      exit: (s) => powerEvents.push(`exit:${s}`),
      reset: () => powerEvents.push("reset"),
      off: () => powerEvents.push("off"),
    },
    risingEdges(line: number): number {
      return this.risingEdgeTimes(line).length;
    },
    risingEdgeTimes(line: number): number[] {
      const out: number[] = [];
      let level = false;
      for (const e of irqEvents) {
        if (e.line !== line) continue;
        if (e.high && !level) out.push(e.at);
        level = e.high;
      }
      return out;
    },
  };
}

/** Port-I/O helpers over a created device: find the range that holds `port` and call it. */
export class PortIo {
  constructor(readonly device: Device) {}
  #find(port: number, mmio = false) {
    const ranges = (mmio ? this.device.mmio : this.device.ports) ?? [];
    for (const r of ranges) {
      if (port >= r.base && port < r.base + r.length) return r;
    }
    throw new RangeError(`device claims no ${mmio ? "address" : "port"} 0x${port.toString(16)}`);
  }
  inb(port: number): number {
    return this.#find(port).read(port - this.#find(port).base, 1) & 0xff;
  }
  inw(port: number): number {
    return this.#find(port).read(port - this.#find(port).base, 2) & 0xffff;
  }
  inl(port: number): number {
    return this.#find(port).read(port - this.#find(port).base, 4) >>> 0;
  }
  outb(port: number, v: number): void {
    this.#find(port).write(port - this.#find(port).base, 1, v & 0xff);
  }
  outw(port: number, v: number): void {
    this.#find(port).write(port - this.#find(port).base, 2, v & 0xffff);
  }
  outl(port: number, v: number): void {
    this.#find(port).write(port - this.#find(port).base, 4, v >>> 0);
  }
  readl(addr: number): number {
    const r = this.#find(addr, true);
    return r.read(addr - r.base, 4) >>> 0;
  }
  writel(addr: number, v: number): void {
    const r = this.#find(addr, true);
    r.write(addr - r.base, 4, v >>> 0);
  }
}

/** Creates `plugin` on a fresh fake host; returns both and a port helper. */
export function createOnFakeHost(
  plugin: Plugin,
  opts: { memSize?: number; options?: Record<string, string> } = {},
): { host: FakeHost; device: Device; io: PortIo } {
  const host = fakeHost({ ...opts, name: plugin.name });
  const device = plugin.create(host);
  return { host, device, io: new PortIo(device) };
}
