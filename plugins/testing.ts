/**
 * A fake host for testing device plugins without a VM: real guest memory, recorded interrupt
 * edges, a clock you advance by hand, captured console output and power requests, and a real
 * port/MMIO bus so tests access a device exactly as a guest would.
 *
 * @example
 * ```ts
 * import { testDevice } from "./testing.ts";
 * import uart from "../devices/uart16550.ts";
 *
 * const t = testDevice(uart);
 * t.out(0x3f8, 0x41);
 * console.log(t.outputText()); // "A"
 * ```
 * @module
 */

import { MmioBus, PortBus } from "../core/bus.ts";
import { GuestMemory } from "../core/memory.ts";
import { makeOptions } from "./options.ts";
import type { Clock, Device, DeviceHost, IrqLine, Plugin, Timer } from "./mod.ts";
import { virtioTransportPlugin } from "../devices/virtio/plugin_device.ts";

/**
 * An interrupt edge a device made.
 *
 * @example
 * ```ts
 * import type { IrqEvent } from "./testing.ts";
 * const e: IrqEvent = { line: 4, level: true, at: 0 };
 * ```
 */
export interface IrqEvent {
  /** The line. */
  line: number;
  /** The new level. */
  level: boolean;
  /** Fake-clock time of the change, in ns. */
  at: number;
}

/**
 * A clock that only moves when told to; timers fire inside `advance`.
 *
 * @example
 * ```ts
 * import { ManualClock } from "./testing.ts";
 * const clock = new ManualClock();
 * let fired = false;
 * clock.timer(() => fired = true).arm(1000);
 * clock.advance(1000);
 * console.log(fired); // true
 * ```
 */
export class ManualClock implements Clock {
  #now = 0;
  readonly #timers: { deadline: number; callback: () => void }[] = [];

  /** Current fake time in ns. */
  now(): number {
    return this.#now;
  }

  /** Creates a one-shot timer driven by `advance`. */
  timer(callback: () => void): Timer {
    const t = { deadline: Infinity, callback };
    this.#timers.push(t);
    return {
      arm: (delayNs: number) => {
        t.deadline = this.#now + Math.max(0, delayNs);
      },
      cancel: () => {
        t.deadline = Infinity;
      },
    };
  }

  /** Moves time forward by `ns`, firing due timers in deadline order at their deadlines. */
  advance(ns: number): void {
    const end = this.#now + ns;
    while (true) {
      let next: { deadline: number; callback: () => void } | undefined;
      for (const t of this.#timers) {
        if (t.deadline <= end && (!next || t.deadline < next.deadline)) next = t;
      }
      if (!next) break;
      this.#now = Math.max(this.#now, next.deadline);
      next.deadline = Infinity;
      next.callback();
    }
    this.#now = end;
  }
}

/**
 * Everything `testDevice` gives a test.
 *
 * @example
 * ```ts
 * import type { DeviceUnderTest } from "./testing.ts";
 * function status(t: DeviceUnderTest) {
 *   return t.in(0x3fd);
 * }
 * ```
 */
export interface DeviceUnderTest {
  /** The device as `create` returned it. */
  device: Device;
  /** The host the device got. */
  host: DeviceHost;
  /** Guest RAM the device can DMA to. */
  memory: GuestMemory;
  /** The fake clock. */
  clock: ManualClock;
  /** Interrupt edges so far. */
  irqs: IrqEvent[];
  /** Current level of each line. */
  irqLevel(line: number): boolean;
  /** Power requests so far ("exit:N", "reset", "off"). */
  power: string[];
  /** Log lines so far. */
  logs: string[];
  /** Console output so far. */
  output: number[];
  /** Console output as text. */
  outputText(): string;
  /** Sends host input bytes to the device's console receiver. */
  input(bytes: Uint8Array | string): void;
  /** Port read as the guest would do it. */
  in(port: number, size?: number): number;
  /** Port write as the guest would do it. */
  out(port: number, value: number, size?: number): void;
  /** MMIO read. */
  read(addr: number, size?: number): number;
  /** MMIO write. */
  write(addr: number, value: number, size?: number): void;
}

/**
 * Options for {@link testDevice}.
 *
 * @example
 * ```ts
 * import type { TestDeviceOptions } from "./testing.ts";
 * const o: TestDeviceOptions = { options: { port: "0x2f8" }, memSize: 1 << 20 };
 * ```
 */
export interface TestDeviceOptions {
  /** Options as `--device x,key=value` would give them. */
  options?: Record<string, string>;
  /** Guest RAM size (default 1 MiB). */
  memSize?: number;
  /**
   * Guest RAM to use instead of allocating `memSize` bytes: for example a GuestMemory over a
   * plain ArrayBuffer, which is what a sandboxed device sees on KVM (its DMA then goes through
   * the sandbox channel).
   */
  memory?: GuestMemory;
}

/**
 * Where {@link testDevice} puts a virtio plugin's window unless the options say `base=`.
 *
 * @example
 * ```ts
 * import { TEST_VIRTIO_BASE } from "./testing.ts";
 * console.log(TEST_VIRTIO_BASE); // "0xd0000000"
 * ```
 */
export const TEST_VIRTIO_BASE = "0xd0000000";
/**
 * The interrupt line {@link testDevice} gives a virtio plugin unless the options say `irq=`.
 *
 * @example
 * ```ts
 * import { TEST_VIRTIO_IRQ } from "./testing.ts";
 * console.log(TEST_VIRTIO_IRQ); // "5"
 * ```
 */
export const TEST_VIRTIO_IRQ = "5";

/**
 * Creates `plugin`'s device on a fake host and claims its ranges on real buses. A virtio plugin
 * (made with `defineVirtioPlugin`) gets the VMM's virtio-mmio transport around it, at `base=`
 * ({@link TEST_VIRTIO_BASE} by default) on line `irq=` ({@link TEST_VIRTIO_IRQ}).
 *
 * @example
 * ```ts
 * import { testDevice } from "./testing.ts";
 * import debugExit from "../devices/debug_exit.ts";
 * const t = testDevice(debugExit);
 * t.out(0xf4, 1);
 * console.log(t.power); // ["exit:3"]
 * ```
 */
export function testDevice(plugin: Plugin, opts: TestDeviceOptions = {}): DeviceUnderTest {
  const memory = opts.memory ?? GuestMemory.allocate(opts.memSize ?? 1 << 20);
  const clock = new ManualClock();
  const irqs: IrqEvent[] = [];
  const levels = new Map<number, boolean>();
  const power: string[] = [];
  const logs: string[] = [];
  const output: number[] = [];
  let receiver: ((b: number) => void) | null = null;
  const name = opts.options?.name ?? plugin.name;
  const options = plugin.virtio === undefined
    ? opts.options ?? {}
    : { base: TEST_VIRTIO_BASE, irq: TEST_VIRTIO_IRQ, ...opts.options };
  const host: DeviceHost = {
    name,
    options: makeOptions(options, name),
    memory,
    irq(line: number): IrqLine {
      const set = (level: boolean) => {
        levels.set(line, level);
        irqs.push({ line, level, at: clock.now() });
      };
      return {
        line,
        raise: () => set(true),
        lower: () => set(false),
        pulse: () => {
          set(true);
          set(false);
        },
      };
    },
    clock,
    log: {
      info: (m) => logs.push(m),
      warn: (m) => logs.push(`warning: ${m}`),
      debug: (m) => logs.push(`debug: ${m}`),
    },
    console: {
      write: (bytes) => output.push(...bytes),
      onInput: (r) => {
        receiver = r;
      },
    },
    power: {
      exit: (s) => power.push(`exit:${s}`),
      reset: () => power.push("reset"),
      off: () => power.push("off"),
    },
  };
  // A virtio plugin runs behind the VMM's own transport, as in a VM.
  const device = (plugin.virtio !== undefined ? virtioTransportPlugin(plugin) : plugin).create(
    host,
  );
  const ports = new PortBus();
  const mmio = new MmioBus();
  for (const r of device.ports ?? []) ports.register(r.base, r.length, name, r);
  for (const r of device.mmio ?? []) mmio.register(r.base, r.length, name, r);
  return {
    device,
    host,
    memory,
    clock,
    irqs,
    irqLevel: (line) => levels.get(line) ?? false,
    power,
    logs,
    output,
    outputText: () => new TextDecoder().decode(new Uint8Array(output)),
    input(bytes) {
      const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
      for (const x of b) receiver?.(x);
    },
    in: (port, size = 1) => ports.read(port, size),
    out: (port, value, size = 1) => ports.write(port, size, value),
    read: (addr, size = 4) => mmio.read(addr, size),
    write: (addr, value, size = 4) => mmio.write(addr, size, value),
  };
}
