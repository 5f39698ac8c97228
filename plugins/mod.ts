/**
 * The device plugin API: everything a device author needs. A device is an ES module whose
 * default export is made with {@link definePlugin}; built-in devices use the same API.
 *
 * @example A one-port device that reads back the last byte written to it
 * ```ts
 * import { API_VERSION, definePlugin } from "./mod.ts";
 *
 * export default definePlugin({
 *   name: "latch",
 *   apiVersion: API_VERSION,
 *   create(host) {
 *     const port = host.options.number("port", 0x510);
 *     let value = 0;
 *     return {
 *       ports: [{
 *         base: port,
 *         length: 1,
 *         read: () => value,
 *         write: (_offset, _size, v) => {
 *           value = v & 0xff;
 *         },
 *       }],
 *       reset() {
 *         value = 0;
 *       },
 *       save: () => ({ version: 1, fields: { value } }),
 *       restore(state) {
 *         value = Number(state.fields.value);
 *       },
 *     };
 *   },
 * });
 * ```
 * @module
 */

/**
 * The plugin API version this build of denovisor implements. A plugin states the version it was
 * written for, and the loader refuses one written for another.
 *
 * @example
 * ```ts
 * import { API_VERSION } from "./mod.ts";
 * console.log(`plugin API v${API_VERSION}`);
 * ```
 */
export const API_VERSION = 1;

/**
 * Read handler: `offset` is relative to the range's base, `size` is 1, 2 or 4 bytes.
 * Return the value read (only the low `size` bytes are used).
 *
 * @example
 * ```ts
 * import type { ReadHandler } from "./mod.ts";
 * const read: ReadHandler = (offset) => offset === 0 ? 0x42 : 0;
 * ```
 */
export type ReadHandler = (offset: number, size: number) => number;

/**
 * Write handler: `offset` is relative to the range's base, `size` is 1, 2 or 4 bytes.
 *
 * @example
 * ```ts
 * import type { WriteHandler } from "./mod.ts";
 * const write: WriteHandler = (_offset, _size, value) => console.log(value);
 * ```
 */
export type WriteHandler = (offset: number, size: number, value: number) => void;

/**
 * A port or MMIO range a device claims, with its handlers.
 *
 * @example
 * ```ts
 * import type { IoRange } from "./mod.ts";
 * const range: IoRange = { base: 0x510, length: 2, read: () => 0, write: () => {} };
 * ```
 */
export interface IoRange {
  /** First port or guest-physical address. */
  base: number;
  /** Number of ports or bytes. */
  length: number;
  /** Called for guest reads inside the range. */
  read: ReadHandler;
  /** Called for guest writes inside the range. */
  write: WriteHandler;
}

/**
 * A device's saved state: named fields and the version of their layout.
 *
 * @example
 * ```ts
 * import type { DeviceState } from "./mod.ts";
 * const state: DeviceState = { version: 1, fields: { counter: 3 } };
 * ```
 */
export interface DeviceState {
  /** Version of the field layout; `restore` refuses a version newer than the device's. */
  version: number;
  /** Named fields: JSON-compatible values or Uint8Arrays. */
  fields: Record<string, unknown>;
}

/**
 * A running device instance, as `create` returns it.
 *
 * @example
 * ```ts
 * import type { Device } from "./mod.ts";
 * const device: Device = { ports: [], reset() {}, save: () => ({ version: 1, fields: {} }), restore() {} };
 * ```
 */
export interface Device {
  /** Port ranges the device claims. */
  ports?: IoRange[];
  /** MMIO ranges the device claims. */
  mmio?: IoRange[];
  /** Returns the device to its power-on state (called on guest reset). */
  reset(): void;
  /** Returns the device's state. */
  save(): DeviceState;
  /** Loads a state `save` returned (the version is checked before this is called). */
  restore(state: DeviceState): void;
  /** Releases host resources when the VM ends. */
  close?(): void;
}

/**
 * Bounds-checked guest RAM for DMA. Every access outside guest RAM throws.
 *
 * @example
 * ```ts
 * import type { DmaMemory } from "./mod.ts";
 * function zeroSector(mem: DmaMemory, gpa: number) {
 *   mem.write(gpa, new Uint8Array(512));
 * }
 * ```
 */
export interface DmaMemory {
  /** Size of guest RAM in bytes. */
  readonly size: number;
  /** Copies `length` bytes out of guest RAM. */
  read(gpa: number, length: number): Uint8Array;
  /** Copies `data` into guest RAM. */
  write(gpa: number, data: Uint8Array): void;
  /** Reads a little-endian 32-bit value. */
  readU32(gpa: number): number;
  /** Writes a little-endian 32-bit value. */
  writeU32(gpa: number, value: number): void;
}

/**
 * An interrupt line into the machine's interrupt controller.
 *
 * @example
 * ```ts
 * import type { IrqLine } from "./mod.ts";
 * function signal(irq: IrqLine) {
 *   irq.pulse();
 * }
 * ```
 */
export interface IrqLine {
  /** The line number (ISA IRQ or GSI). */
  readonly line: number;
  /** Drives the line high (level-triggered devices hold it until serviced). */
  raise(): void;
  /** Drives the line low. */
  lower(): void;
  /** Raises and lowers the line (an edge). */
  pulse(): void;
}

/**
 * The VM's clock, in nanoseconds since the VM started. Timers fire on the vCPU thread between
 * guest instructions, so handlers and timer callbacks never run at the same time.
 *
 * @example
 * ```ts
 * import type { Clock } from "./mod.ts";
 * function elapsedMs(clock: Clock, since: number) {
 *   return (clock.now() - since) / 1e6;
 * }
 * ```
 */
export interface Clock {
  /** Nanoseconds of guest time since the VM started. */
  now(): number;
  /** Creates a one-shot timer; `arm` it with a delay. */
  timer(callback: () => void): Timer;
}

/**
 * A one-shot timer made by {@link Clock.timer}.
 *
 * @example
 * ```ts
 * import type { Timer } from "./mod.ts";
 * function every10ms(t: Timer) {
 *   t.arm(10_000_000);
 * }
 * ```
 */
export interface Timer {
  /** Fires the callback once after `delayNs` (re-arming replaces the pending deadline). */
  arm(delayNs: number): void;
  /** Cancels a pending deadline. */
  cancel(): void;
}

/**
 * Messages from a device, shown on the VMM's stderr (`debug` only with `--trace`).
 *
 * @example
 * ```ts
 * import type { Logger } from "./mod.ts";
 * function hello(log: Logger) {
 *   log.info("ready");
 * }
 * ```
 */
export interface Logger {
  /** Shown always. */
  info(message: string): void;
  /** Shown always, marked as a warning. */
  warn(message: string): void;
  /** Shown with `--trace`. */
  debug(message: string): void;
}

/**
 * The options given on the command line after the plugin path (`--device x.ts,port=0x510`).
 *
 * @example
 * ```ts
 * import type { PluginOptions } from "./mod.ts";
 * function base(opts: PluginOptions) {
 *   return opts.number("port", 0x510);
 * }
 * ```
 */
export interface PluginOptions {
  /** Every option as given (a bare `key` has the value "true"). */
  readonly raw: Readonly<Record<string, string>>;
  /** A string option, or `fallback`. */
  string(key: string, fallback: string): string;
  /** A number option (decimal or 0x hex), or `fallback`. Throws on a value that is not one. */
  number(key: string, fallback: number): number;
  /** A boolean option (`true/false/1/0/yes/no` or a bare key), or `fallback`. */
  boolean(key: string, fallback: boolean): boolean;
}

/**
 * The console a UART-like device reads from and writes to (the VMM's `--serial` target).
 *
 * @example
 * ```ts
 * import type { Console } from "./mod.ts";
 * function greet(c: Console) {
 *   c.write(new TextEncoder().encode("hi\n"));
 * }
 * ```
 */
export interface Console {
  /** Sends guest output to the serial target. */
  write(bytes: Uint8Array): void;
  /** Registers the receiver of host input bytes (called on the vCPU thread). */
  onInput(receiver: (byte: number) => void): void;
}

/**
 * How a device ends or resets the whole VM (debug-exit, keyboard-controller reset, ACPI).
 *
 * @example
 * ```ts
 * import type { Power } from "./mod.ts";
 * function fail(p: Power) {
 *   p.exit(3);
 * }
 * ```
 */
export interface Power {
  /** Ends the VMM with this exit status (a whole number 0-255; anything else throws). */
  exit(status: number): void;
  /** Guest reset: the VM ends with status 0. */
  reset(): void;
  /** Guest power-off: the VM ends with status 0. */
  off(): void;
}

/**
 * What the machine gives a device.
 *
 * @example
 * ```ts
 * import type { DeviceHost } from "./mod.ts";
 * function describe(host: DeviceHost) {
 *   host.log.info(`${host.name} sees ${host.memory.size} bytes of RAM`);
 * }
 * ```
 */
export interface DeviceHost {
  /** The device's name. */
  readonly name: string;
  /** Command-line options given to this device. */
  readonly options: PluginOptions;
  /** Guest RAM, bounds-checked. */
  readonly memory: DmaMemory;
  /**
   * An interrupt line: ISA IRQs 0-15 (PIC and IOAPIC) or 16-23 (IOAPIC only) on the PC platform;
   * any other number throws a RangeError.
   */
  irq(line: number): IrqLine;
  /** The VM clock. */
  readonly clock: Clock;
  /** Device messages. */
  readonly log: Logger;
  /** The serial console. */
  readonly console: Console;
  /** VM power control. */
  readonly power: Power;
}

/**
 * A host file the user gave a device in one of its options (`--device disk.ts,file=disk.img`).
 * The VMM opens it on the device's behalf, so the same code works in-process and sandboxed: a
 * sandboxed device never names a path itself, it only asks for "the file in option `file`".
 *
 * @example
 * ```ts
 * import type { HostFile } from "./mod.ts";
 * function firstSector(f: HostFile): Uint8Array {
 *   return f.read(0, Math.min(512, f.size));
 * }
 * ```
 */
export interface HostFile {
  /** The path as the user gave it. */
  readonly path: string;
  /** Size in bytes when opened. */
  readonly size: number;
  /** True when opened for writing (the user's options must say `writable=true`). */
  readonly writable: boolean;
  /** Reads up to `length` bytes at `offset` (fewer at the end of the file). */
  read(offset: number, length: number): Uint8Array;
  /** Writes `data` at `offset`; throws when the file is read-only. */
  write(offset: number, data: Uint8Array): void;
  /** Closes the file. */
  close(): void;
}

/**
 * The key under which a host that opens files for its devices (the sandbox) keeps its opener;
 * {@link openHostFile} looks for it.
 *
 * @example
 * ```ts
 * import { HOST_FILES } from "./mod.ts";
 * console.log(HOST_FILES.description); // "denovisor.hostFiles"
 * ```
 */
export const HOST_FILES: unique symbol = Symbol.for("denovisor.hostFiles");

/**
 * A host that opens option-named files for its device. The sandbox's host has one; an
 * in-process device without one opens the file itself.
 *
 * @example
 * ```ts
 * import { HOST_FILES, type HostFileOpener } from "./mod.ts";
 * function canOpen(host: object): boolean {
 *   return (host as Partial<HostFileOpener>)[HOST_FILES] !== undefined;
 * }
 * ```
 */
export interface HostFileOpener {
  /** Opens the file named by option `key`; writable only when asked and allowed. */
  [HOST_FILES](key: string, writable: boolean): HostFile;
}

/**
 * Opens the host file named by option `key` of the device (read-only unless `writable` and the
 * user's options say `writable=true`). Throws when the option is missing or the file cannot be
 * opened. Works the same in-process and sandboxed.
 *
 * @example
 * ```ts ignore
 * import { openHostFile } from "./mod.ts";
 * // inside create(host):
 * // const disk = openHostFile(host, "file", { writable: host.options.boolean("writable", false) });
 * ```
 */
export function openHostFile(
  host: DeviceHost,
  key: string,
  opts: { writable?: boolean } = {},
): HostFile {
  const writable = opts.writable === true && host.options.boolean("writable", false);
  const opener = (host as unknown as Partial<HostFileOpener>)[HOST_FILES];
  if (opener) return opener(key, writable);
  const path = host.options.raw[key];
  if (path === undefined) {
    throw new TypeError(`Device "${host.name}" needs a file: give it as ${key}=PATH`);
  }
  return openLocalFile(path, writable);
}

/**
 * Opens `path` with Deno's file API as a {@link HostFile} (what an in-process device gets, and
 * what the sandbox's host side uses on a device's behalf).
 *
 * @example
 * ```ts ignore
 * import { openLocalFile } from "./mod.ts";
 * const f = openLocalFile("disk.img", false);
 * console.log(f.size);
 * f.close();
 * ```
 */
export function openLocalFile(path: string, writable: boolean): HostFile {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: writable });
  } catch (err) {
    throw new Error(
      `Cannot open "${path}"${writable ? " for writing" : ""}: ${(err as Error).message}`,
    );
  }
  const size = file.statSync().size;
  return {
    path,
    size,
    writable,
    read(offset, length) {
      const buf = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
      file.seekSync(offset, Deno.SeekMode.Start);
      let got = 0;
      while (got < buf.length) {
        const n = file.readSync(buf.subarray(got));
        if (n === null || n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    },
    write(offset, data) {
      if (!writable) throw new Error(`"${path}" is open read-only`);
      file.seekSync(offset, Deno.SeekMode.Start);
      let put = 0;
      while (put < data.length) put += file.writeSync(data.subarray(put));
    },
    close: () => file.close(),
  };
}

/**
 * What a plugin module's default export describes.
 *
 * @example
 * ```ts
 * import { API_VERSION, type PluginDefinition } from "./mod.ts";
 * const def: PluginDefinition = {
 *   name: "nothing",
 *   apiVersion: API_VERSION,
 *   create: () => ({ reset() {}, save: () => ({ version: 1, fields: {} }), restore() {} }),
 * };
 * ```
 */
export interface PluginDefinition {
  /** Short name, used in messages (`--device` may override it with `name=`). */
  name: string;
  /** The API version the plugin was written for (use {@link API_VERSION}). */
  apiVersion: number;
  /** One-line description for `--help`-like listings. */
  description?: string;
  /** The newest state version `save` writes; `restore` of a newer one is refused. Default 1. */
  stateVersion?: number;
  /** Builds the device for one VM. */
  create(host: DeviceHost): Device;
  /** Set for a virtio device ({@link defineVirtioPlugin}); `create` then is not called. */
  virtio?: VirtioSpec;
}

/**
 * Marks objects made by definePlugin, so the loader can tell a device module from any other.
 *
 * @example
 * ```ts
 * import { API_VERSION, definePlugin, PLUGIN_BRAND } from "./mod.ts";
 * const p = definePlugin({
 *   name: "nothing",
 *   apiVersion: API_VERSION,
 *   create: () => ({ reset() {}, save: () => ({ version: 1, fields: {} }), restore() {} }),
 * });
 * console.log(p[PLUGIN_BRAND]); // true
 * ```
 */
export const PLUGIN_BRAND: unique symbol = Symbol.for("denovisor.plugin");

/**
 * A validated plugin definition, as {@link definePlugin} returns it.
 *
 * @example
 * ```ts
 * import type { Plugin } from "./mod.ts";
 * function nameOf(p: Plugin) {
 *   return p.name;
 * }
 * ```
 */
export interface Plugin extends PluginDefinition {
  /** Brand checked by the loader. */
  readonly [PLUGIN_BRAND]: true;
  /** The checked state version. */
  readonly stateVersion: number;
}

/**
 * The most bytes of one descriptor chain a virtio plugin sees in each direction: a chain with
 * more readable bytes is a guest error (the device asks for a reset); a longer writable part is
 * offered as its first {@link VIRTIO_CHAIN_LIMIT} bytes.
 *
 * @example
 * ```ts
 * import { VIRTIO_CHAIN_LIMIT } from "./mod.ts";
 * console.log(VIRTIO_CHAIN_LIMIT); // 4194304
 * ```
 */
export const VIRTIO_CHAIN_LIMIT = 4 * 1024 * 1024;

/**
 * One descriptor chain the driver made available, as a virtio plugin's
 * {@link VirtioDevice.handle} gets it: copies, never guest memory. Fill `writable` from its
 * start and return how many bytes you wrote; the VMM copies them into the chain's
 * device-writable buffers and puts the chain in the used ring.
 *
 * @example
 * ```ts
 * import type { VirtioChain } from "./mod.ts";
 * function echo(chain: VirtioChain): number {
 *   const n = Math.min(chain.readable.length, chain.writable.length);
 *   chain.writable.set(chain.readable.subarray(0, n));
 *   return n;
 * }
 * ```
 */
export interface VirtioChain {
  /** The queue the chain came from (0 for the first of {@link VirtioDevice.queues}). */
  readonly queue: number;
  /** The device-readable buffers, concatenated in chain order. */
  readonly readable: Uint8Array;
  /** Room the device-writable buffers give (zeros to start with), concatenated in chain order. */
  readonly writable: Uint8Array;
  /** The feature bits the driver accepted (transport bits included, e.g. bit 32 VERSION_1). */
  readonly features: bigint;
}

/**
 * A virtio device as a plugin implements it. The VMM provides the virtio-mmio transport:
 * registers, feature negotiation, the split queues (indirect descriptors, EVENT_IDX), interrupts,
 * the MMIO window and interrupt line (from its allocator) and the DSDT node the guest finds it
 * by. Handlers are synchronous, like port handlers.
 *
 * @example
 * ```ts
 * import type { VirtioDevice } from "./mod.ts";
 * const zeros: VirtioDevice = {
 *   queues: [64],
 *   handle: (chain) => chain.writable.length, // the writable bytes start as zeros
 * };
 * ```
 */
export interface VirtioDevice {
  /**
   * Device-specific feature bits offered to the driver (bits below 24; the transport adds
   * VERSION_1, INDIRECT_DESC and EVENT_IDX). Default none.
   */
  features?: bigint;
  /** The maximum size of each queue (a power of 2 up to 32768); its length is the queue count. */
  queues: readonly number[];
  /** The device's config space as it is now (the driver reads it at 0x100). Default empty. */
  config?(): Uint8Array;
  /** The driver wrote `size` bytes of `value` at `offset` of the config space. */
  writeConfig?(offset: number, size: number, value: number): void;
  /**
   * A chain the driver made available on `chain.queue`: read `chain.readable`, fill
   * `chain.writable`, return the bytes written (a whole number from 0 to `writable.length`).
   * A throw or any other return makes the device ask the driver for a reset
   * (DEVICE_NEEDS_RESET), with a warning naming what went wrong.
   */
  handle(chain: VirtioChain): number;
  /** The driver (or the machine) reset the device. */
  reset?(): void;
  /** The device's own state for a snapshot (the transport saves its registers and queues). */
  save?(): DeviceState;
  /** Loads a state `save` returned. */
  restore?(state: DeviceState): void;
  /** Releases host resources when the VM ends. */
  close?(): void;
}

/**
 * What a virtio plugin module's default export describes; made with {@link defineVirtioPlugin}.
 *
 * @example
 * ```ts
 * import { API_VERSION, type VirtioPluginDefinition } from "./mod.ts";
 * const def: VirtioPluginDefinition = {
 *   name: "zeros",
 *   apiVersion: API_VERSION,
 *   deviceId: 4,
 *   create: () => ({ queues: [64], handle: (c) => c.writable.length }),
 * };
 * ```
 */
export interface VirtioPluginDefinition {
  /** Short name, used in messages (`--device` may override it with `name=`). */
  name: string;
  /** The API version the plugin was written for (use {@link API_VERSION}). */
  apiVersion: number;
  /**
   * The virtio device ID (1 net, 2 block, 3 console, 4 entropy, ...; virtio 1.2 section 5).
   * The guest picks its driver by it (modalias `virtio:d000000XXv*`), and `--exec` loads that
   * driver.
   */
  deviceId: number;
  /** One-line description for `--help`-like listings. */
  description?: string;
  /** The newest state version the device's `save` writes. Default 1. */
  stateVersion?: number;
  /** Builds the device for one VM. */
  create(host: DeviceHost): VirtioDevice;
}

/**
 * The virtio part of a plugin made by {@link defineVirtioPlugin}: the VMM attaches such a plugin
 * behind its virtio-mmio transport.
 *
 * @example
 * ```ts
 * import type { Plugin } from "./mod.ts";
 * function isVirtio(p: Plugin): boolean {
 *   return p.virtio !== undefined;
 * }
 * ```
 */
export interface VirtioSpec {
  /** The virtio device ID. */
  readonly deviceId: number;
  /** Builds the device (the transport around it is the VMM's). */
  create(host: DeviceHost): VirtioDevice;
}

/**
 * Validates a virtio device definition and marks it as a plugin; use it for a module's default
 * export. The result is loaded like any plugin (`--device PATH[,trusted]`).
 *
 * @example
 * ```ts
 * import { API_VERSION, defineVirtioPlugin } from "./mod.ts";
 * export default defineVirtioPlugin({
 *   name: "zeros",
 *   apiVersion: API_VERSION,
 *   deviceId: 4, // an entropy source: Linux's virtio_rng reads it as /dev/hwrng
 *   create: () => ({ queues: [64], handle: (chain) => chain.writable.length }),
 * });
 * ```
 */
export function defineVirtioPlugin(definition: VirtioPluginDefinition): Plugin {
  if (typeof definition !== "object" || definition === null) {
    throw new TypeError(
      "defineVirtioPlugin needs an object with name, apiVersion, deviceId and create",
    );
  }
  const { deviceId, create, ...rest } = definition;
  if (!Number.isInteger(deviceId) || deviceId < 1 || deviceId > 0xffff) {
    throw new RangeError(
      `Virtio plugin "${definition.name}" has device ID ${deviceId}: give the virtio device ID ` +
        `(a whole number from 1, e.g. 2 block, 4 entropy)`,
    );
  }
  if (typeof create !== "function") {
    throw new TypeError(`Plugin "${definition.name}" has no create(host) function`);
  }
  const name = definition.name;
  return definePlugin({
    ...rest,
    create(): Device {
      throw new TypeError(
        `Plugin "${name}" is a virtio device: the VMM attaches it behind its virtio-mmio ` +
          `transport (--device), and plugins/testing.ts's testDevice does the same`,
      );
    },
    virtio: Object.freeze({ deviceId, create }),
  });
}

/** Interrupt lines a device may use: 0-23 (the IOAPIC's pins). */
export const IRQ_LINES = 24;

/** Throws a RangeError unless `line` is an interrupt line (see {@link IRQ_LINES}). */
export function checkIrqLine(line: number): void {
  if (!Number.isInteger(line) || line < 0 || line >= IRQ_LINES) {
    throw new RangeError(
      `irq(${line}) is not an interrupt line: give 0-15 (ISA) or 16-${IRQ_LINES - 1} (IOAPIC)`,
    );
  }
}

/** Throws a RangeError unless `status` is an exit status (a whole number 0-255). */
export function checkExitStatus(status: number): void {
  if (!Number.isInteger(status) || status < 0 || status > 255) {
    throw new RangeError(
      `power.exit(${status}): an exit status is a whole number from 0 to 255`,
    );
  }
}

/**
 * Validates a device definition and marks it as a plugin; use it for a module's default export.
 *
 * @example
 * ```ts
 * import { API_VERSION, definePlugin } from "./mod.ts";
 * export default definePlugin({
 *   name: "zero",
 *   apiVersion: API_VERSION,
 *   create: () => ({
 *     ports: [{ base: 0x520, length: 1, read: () => 0, write: () => {} }],
 *     reset() {},
 *     save: () => ({ version: 1, fields: {} }),
 *     restore() {},
 *   }),
 * });
 * ```
 */
export function definePlugin(definition: PluginDefinition): Plugin {
  if (typeof definition !== "object" || definition === null) {
    throw new TypeError("definePlugin needs an object with name, apiVersion and create");
  }
  if (typeof definition.name !== "string" || !/^[A-Za-z0-9_.-]+$/.test(definition.name)) {
    throw new TypeError(
      `Plugin name ${
        JSON.stringify(definition.name)
      } is not valid: use letters, digits, "-", "_" or "."`,
    );
  }
  if (definition.apiVersion !== API_VERSION) {
    throw new RangeError(
      `Plugin "${definition.name}" was written for API version ${definition.apiVersion}, but this ` +
        `denovisor implements version ${API_VERSION}`,
    );
  }
  if (typeof definition.create !== "function") {
    throw new TypeError(`Plugin "${definition.name}" has no create(host) function`);
  }
  const stateVersion = definition.stateVersion ?? 1;
  if (!Number.isInteger(stateVersion) || stateVersion < 1) {
    throw new RangeError(`Plugin "${definition.name}" has an invalid stateVersion ${stateVersion}`);
  }
  return Object.freeze({ ...definition, stateVersion, [PLUGIN_BRAND]: true as const });
}

/**
 * True when `value` was made by {@link definePlugin}.
 *
 * @example
 * ```ts
 * import { isPlugin } from "./mod.ts";
 * console.log(isPlugin({})); // false
 * ```
 */
export function isPlugin(value: unknown): value is Plugin {
  return typeof value === "object" && value !== null &&
    (value as Record<symbol, unknown>)[PLUGIN_BRAND] === true;
}
