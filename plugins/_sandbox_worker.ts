/**
 * The runtime inside a sandboxed device's Worker (no permissions at all). The Worker's entry
 * module imports this file and the plugin statically, then calls `serve`. After the VMM attaches
 * the device, the Worker answers requests from the channel in a synchronous loop: it runs the
 * plugin's handlers, turns everything the plugin asks of its host into channel events, and
 * reports failures (a throw, a wrong return type, a denied permission) as structured errors.
 */

import { GuestMemory } from "../core/memory.ts";
import { GuestMemoryError } from "../core/errors.ts";
import {
  checkExitStatus,
  checkIrqLine,
  type Clock,
  type Console,
  type Device,
  type DeviceHost,
  type DmaMemory,
  HOST_FILES,
  type HostFile,
  type IoRange,
  type IrqLine,
  isPlugin,
  type Logger,
  type Plugin,
  type Power,
  type Timer,
  type VirtioDevice,
} from "./mod.ts";
import { makeOptions } from "./options.ts";
import { decodeState, encodeState } from "./state.ts";
import {
  ANS_DATA,
  ANS_ERROR,
  CB_CHAIN_READ,
  CB_CHAIN_WRITE,
  CB_DMA_READ,
  CB_DMA_WRITE,
  CB_FILE_CLOSE,
  CB_FILE_OPEN,
  CB_FILE_READ,
  CB_FILE_WRITE,
  CB_FLUSH,
  Channel,
  CTL_A0,
  CTL_A1,
  CTL_A2,
  CTL_A3,
  CTL_A4,
  CTL_EVENTS_LEN,
  CTL_FAULT,
  CTL_KIND,
  CTL_SPIN,
  CTL_TO_HOST,
  CTL_TO_WORKER,
  DATA_OFFSET,
  DATA_SIZE,
  EV_CONSOLE_SUBSCRIBE,
  EV_CONSOLE_WRITE,
  EV_IRQ,
  EV_LOG,
  EV_POWER,
  EV_TIMER_ARM,
  EV_TIMER_CANCEL,
  EVENTS_OFFSET,
  EVENTS_SIZE,
  F64_ARG,
  F64_NOW,
  IRQ_LOWER,
  IRQ_PULSE,
  IRQ_RAISE,
  LOG_DEBUG,
  LOG_INFO,
  LOG_WARN,
  POWER_EXIT,
  POWER_OFF,
  POWER_RESET,
  REP_DONE,
  REP_ERROR,
  REQ_CLOSE,
  REQ_CREATE,
  REQ_INPUT,
  REQ_PING,
  REQ_READ,
  REQ_RESET,
  REQ_RESTORE,
  REQ_SAVE,
  REQ_TIMER,
  REQ_VIRTIO_CHAIN,
  REQ_VIRTIO_CONFIG,
  REQ_VIRTIO_CONFIG_WRITE,
  REQ_WRITE,
  SPACE_PORT,
  utf8,
  waitChange,
} from "./_channel.ts";

/** The first message from the host: the channel. */
export interface InitMessage {
  kind: "init";
  channel: SharedArrayBuffer;
}

/** Sent just before REQ_CREATE: guest RAM, shared when the backend allows it. */
export interface AttachMessage {
  kind: "attach";
  /** Guest RAM when it is a SharedArrayBuffer (the interpreter), else null (DMA by channel). */
  memory: SharedArrayBuffer | null;
  /**
   * The RAM's page-state map (`GuestMemory.pages.buffer`), shared with `memory`: the worker's
   * view records its writes there, which is how they reach the vCPU's code caches and the dirty
   * log. Null with `memory` (the host's view records channel DMA).
   */
  pageState: SharedArrayBuffer | null;
  memSize: number;
}

/** What the worker tells the host once the plugin module has loaded. */
export type ReadyMessage =
  | {
    kind: "ready";
    name: string;
    stateVersion: number;
    description?: string;
    /** Set for a virtio plugin (defineVirtioPlugin). */
    virtio?: { deviceId: number };
  }
  | { kind: "error"; message: string }
  | LoadErrorMessage;

/** The plugin's module threw while it was evaluated (`report` of what it threw). */
export interface LoadErrorMessage extends ErrorReport {
  kind: "load-error";
}

/** A failure report in REP_ERROR's data area (JSON). */
export interface ErrorReport {
  message: string;
  /** The permission the plugin was denied ("read", "net", ...), with what it asked for. */
  permission?: string;
  target?: string;
  /** Set when a handler returned something that is not a number (or not `wanted`). */
  returned?: string;
  wanted?: string;
  /** Set when the Worker's heap grew past its limit: the bytes in use. */
  heapUsed?: number;
  /** Set when the failure came from code no call awaited (a promise, a timer of its own). */
  async?: boolean;
}

/** Ranges as REQ_CREATE reports them: [base, length] pairs; and a virtio device's shape. */
export interface CreatedRanges {
  ports: [number, number][];
  mmio: [number, number][];
  /** A virtio plugin's device: its feature bits (hex) and queue sizes, as it gave them. */
  virtio?: { features: string; queues: unknown; config: boolean; writeConfig: boolean };
}

interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
  addEventListener(type: string, listener: (e: Event) => void): void;
}

const scope = globalThis as unknown as WorkerScope;

/** Set once the host has been told the plugin loaded (or failed to). */
let loaded = false;

/**
 * Errors no call awaited: a top-level `throw` or rejected `await` while the module loads, a
 * promise the plugin never awaited (`Deno.connect(...)` without `await`: its NotCapable
 * rejection), an exception in a callback of its own. Deno would print its own "error: Uncaught"
 * report with a stack trace and, after loading, let the VM run on. The entry imports this module
 * first, so these listeners are in place before any plugin code: cancelling the event stops that
 * report; before the plugin is ready the host gets a load error, after it a fault that the next
 * request (or the host's fault check) turns into a stop of the VM.
 */
function onUncaught(e: Event, thrown: unknown): void {
  e.preventDefault();
  if (!loaded) {
    loaded = true; // one report is enough
    scope.postMessage({ kind: "load-error", ...loadReport(thrown) } satisfies LoadErrorMessage);
  } else if (runtime) runtime.fault({ ...report(thrown), async: true });
}

function loadReport(thrown: unknown): ErrorReport {
  const r = report(thrown);
  // "TypeError: x is not a function" says more than the message alone; plain Errors need no name.
  if (thrown instanceof Error && thrown.name && thrown.name !== "Error") {
    r.message = `${thrown.name}: ${r.message}`;
  }
  return r;
}

if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "function") {
  scope.addEventListener("error", (e) => onUncaught(e, (e as ErrorEvent).error));
  scope.addEventListener(
    "unhandledrejection",
    (e) => onUncaught(e, (e as PromiseRejectionEvent).reason),
  );
}

/** Finds the permission a thrown value reports being denied, if any (following `cause`). */
export function deniedPermission(err: unknown): { permission: string; target?: string } | null {
  for (let e = err, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    const msg = (e as Error).message;
    if (typeof msg !== "string") continue;
    const m = /Requires (\w+) access(?: to "?([^",]*)"?)?/.exec(msg);
    if (m) return { permission: m[1]!, target: m[2] };
    if ((e as Error).name === "NotCapable") return { permission: "unknown" };
  }
  return null;
}

function report(err: unknown): ErrorReport {
  const message = err instanceof Error ? err.message : String(err);
  const denied = deniedPermission(err);
  return denied ? { message, ...denied } : { message };
}

function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "number") return "NaN";
  if (typeof v === "string") return `the string ${JSON.stringify(v.slice(0, 40))}`;
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

class WrongTypeError extends Error {
  constructor(readonly returned: string, readonly wanted = "a number") {
    super(`it returned ${returned}, not ${wanted}`);
  }
}

/**
 * Imports the plugin at `href` (under this Worker's permissions: its own code modules only)
 * and serves it; a failure to load is reported to the host as a load error.
 */
export async function serveModule(href: string): Promise<void> {
  // The host's "init" may arrive while the plugin loads: keep it for `serve`.
  const early: MessageEvent[] = [];
  scope.onmessage = (e) => early.push(e);
  let mod: Record<string, unknown>;
  try {
    mod = await import(href);
    // A rejection the module left unhandled is reported once the event loop turns: before
    // "ready", so it is a load error (the listeners above set `loaded`).
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (loaded) return;
  } catch (err) {
    if (loaded) return;
    loaded = true;
    scope.postMessage({ kind: "load-error", ...loadReport(err) } satisfies LoadErrorMessage);
    return;
  }
  serve(mod);
  for (const e of early) scope.onmessage?.(e);
}

/** Serves `mod.default` (a plugin) over the channel the host sends. */
export function serve(mod: Record<string, unknown>): void {
  scope.onmessage = (e: MessageEvent) => {
    const msg = e.data as InitMessage | AttachMessage;
    if (msg.kind === "init") {
      const plugin = mod.default;
      if (!isPlugin(plugin)) {
        scope.postMessage(
          {
            kind: "error",
            message: "it does not export a device: its default export must be made with " +
              "definePlugin() from denovisor's plugins/mod.ts",
          } satisfies ReadyMessage,
        );
        return;
      }
      runtime = new SandboxRuntime(plugin, new Channel(msg.channel));
      loaded = true;
      scope.postMessage(
        {
          kind: "ready",
          name: plugin.name,
          stateVersion: plugin.stateVersion,
          description: plugin.description,
          ...(plugin.virtio === undefined ? {} : { virtio: { deviceId: plugin.virtio.deviceId } }),
        } satisfies ReadyMessage,
      );
    } else if (msg.kind === "attach" && runtime) {
      scope.onmessage = null;
      runtime.attach(msg);
      runtime.loop();
    }
  };
}

let runtime: SandboxRuntime | null = null;

/**
 * Requests between two looks at the heap (`Deno.memoryUsage()` costs about 3 us, a port access
 * a few). Deno's Workers have no heap limit of their own (`resourceLimits` exists only for
 * node:worker_threads, which cannot drop permissions), so the runtime watches: a plugin that
 * grows across calls is stopped near its limit, and one call that allocates without end is
 * stopped by the call time limit.
 */
const MEMORY_CHECK_EVERY = 16;

/** How long the request loop runs before it lets the event loop turn, in ms. */
const YIELD_MS = 20;

class SandboxRuntime {
  readonly #plugin: Plugin;
  readonly #ch: Channel;
  readonly #ctl: Int32Array;
  #seen = 0; // last CTL_TO_WORKER value handled
  #evLen = 0;
  #memory: DmaMemory | null = null;
  #device: Device | null = null;
  /** A virtio plugin's device (then #device is null). */
  #virtio: VirtioDevice | null = null;
  #ports: IoRange[] = [];
  #mmio: IoRange[] = [];
  readonly #timers: (() => void)[] = [];
  #input: ((byte: number) => void) | null = null;
  /** Heap limit in bytes (0 until create), checked every MEMORY_CHECK_EVERY requests. */
  #memoryLimit = 0;
  #sinceMemoryCheck = 0;

  constructor(plugin: Plugin, ch: Channel) {
    this.#plugin = plugin;
    this.#ch = ch;
    this.#ctl = ch.ctl;
  }

  /** A failure outside any call: held for the next request, flagged for the host's check. */
  fault(r: ErrorReport): void {
    this.#fault ??= r;
    Atomics.store(this.#ctl, CTL_FAULT, 1);
  }
  #fault: ErrorReport | null = null;

  attach(msg: AttachMessage): void {
    this.#memory = msg.memory
      ? new GuestMemory(msg.memory, msg.memSize, msg.pageState ?? undefined)
      : this.#channelMemory(msg.memSize);
  }

  /**
   * Serves requests until REQ_CLOSE, then returns to the event loop so the host can terminate
   * the worker (Deno's terminate() does not stop a worker blocked in synchronous code). About
   * every YIELD_MS (when idle that long, or at a memory check past it), between requests, it
   * lets the event loop turn and comes back, since that is where Deno reports promises the
   * plugin left rejected.
   */
  loop(): void {
    const ctl = this.#ctl;
    const until = performance.now() + YIELD_MS;
    for (;;) {
      if (!waitChange(ctl, CTL_TO_WORKER, this.#seen, ctl[CTL_SPIN]!, until)) {
        setTimeout(() => this.loop(), 0);
        return;
      }
      this.#seen = Atomics.load(ctl, CTL_TO_WORKER);
      let kind = REP_DONE;
      const request = ctl[CTL_KIND]!;
      try {
        if (this.#fault) throw this.#fault;
        ctl[CTL_A0] = this.#handle(request);
      } catch (err) {
        kind = REP_ERROR;
        const r = err === this.#fault
          ? this.#fault!
          : err instanceof WrongTypeError
          ? { message: err.message, returned: err.returned, wanted: err.wanted }
          : report(err);
        this.#ch.setText(JSON.stringify(r));
      }
      let yieldNow = false;
      if (++this.#sinceMemoryCheck >= MEMORY_CHECK_EVERY || request === REQ_CREATE) {
        this.#sinceMemoryCheck = 0;
        yieldNow = performance.now() > until; // read the clock here only: it costs ~0.3 us
        // Typed arrays' bytes are "external" to the V8 heap, and count too.
        const m = this.#memoryLimit > 0 ? Deno.memoryUsage() : null;
        const heapUsed = m ? m.heapUsed + m.external : 0;
        if (heapUsed > this.#memoryLimit) {
          kind = REP_ERROR;
          this.#ch.setText(JSON.stringify({ message: "out of memory", heapUsed }));
        }
      }
      this.#handOff(kind);
      if (request === REQ_CLOSE) return;
      if (yieldNow) {
        setTimeout(() => this.loop(), 0);
        return;
      }
    }
  }

  /** Gives the turn to the host: the message is `kind` plus whatever was set; events go along. */
  #handOff(kind: number): void {
    const ctl = this.#ctl;
    ctl[CTL_KIND] = kind;
    ctl[CTL_EVENTS_LEN] = this.#evLen;
    this.#evLen = 0;
    Atomics.add(ctl, CTL_TO_HOST, 1);
    Atomics.notify(ctl, CTL_TO_HOST);
  }

  /** A callback to the host in the middle of a request; returns the answer's kind. */
  #callHost(kind: number): number {
    this.#handOff(kind);
    waitChange(this.#ctl, CTL_TO_WORKER, this.#seen, this.#ctl[CTL_SPIN]!, Infinity);
    this.#seen = Atomics.load(this.#ctl, CTL_TO_WORKER);
    return this.#ctl[CTL_KIND]!;
  }

  #handle(kind: number): number {
    const ctl = this.#ctl;
    switch (kind) {
      case REQ_READ: {
        const ranges = ctl[CTL_A0] === SPACE_PORT ? this.#ports : this.#mmio;
        const v: unknown = ranges[ctl[CTL_A1]!]!.read(ctl[CTL_A2]! >>> 0, ctl[CTL_A3]!);
        if (typeof v !== "number" || Number.isNaN(v)) throw new WrongTypeError(describeValue(v));
        return v | 0;
      }
      case REQ_WRITE: {
        const ranges = ctl[CTL_A0] === SPACE_PORT ? this.#ports : this.#mmio;
        ranges[ctl[CTL_A1]!]!.write(ctl[CTL_A2]! >>> 0, ctl[CTL_A3]!, ctl[CTL_A4]! >>> 0);
        return 0;
      }
      case REQ_TIMER:
        this.#timers[ctl[CTL_A0]!]?.();
        return 0;
      case REQ_INPUT:
        this.#input?.(ctl[CTL_A0]! & 0xff);
        return 0;
      case REQ_PING:
        return 0;
      case REQ_CREATE:
        return this.#create();
      case REQ_VIRTIO_CHAIN:
        return this.#chain();
      case REQ_VIRTIO_CONFIG: {
        const cfg: unknown = this.#virtio!.config?.() ?? new Uint8Array(0);
        if (!(cfg instanceof Uint8Array)) {
          throw new WrongTypeError(`${describeValue(cfg)} from config()`, "a Uint8Array");
        }
        this.#ch.setData(cfg.subarray(0, DATA_SIZE));
        return cfg.length;
      }
      case REQ_VIRTIO_CONFIG_WRITE:
        this.#virtio!.writeConfig?.(ctl[CTL_A0]!, ctl[CTL_A1]!, ctl[CTL_A2]! >>> 0);
        return 0;
      case REQ_RESET:
        this.#device?.reset();
        this.#virtio?.reset?.();
        return 0;
      case REQ_SAVE: {
        const state = this.#device?.save() ?? this.#virtio?.save?.() ??
          { version: 1, fields: {} };
        const text = encodeState(state);
        const bytes = utf8(text);
        if (bytes.length > DATA_SIZE) {
          throw new RangeError(
            `its saved state is ${bytes.length} bytes; a sandboxed device's state must fit in ` +
              `${DATA_SIZE} bytes`,
          );
        }
        this.#ch.setData(bytes);
        return 0;
      }
      case REQ_RESTORE: {
        const state = decodeState(this.#ch.text());
        if (this.#device) this.#device.restore(state);
        else this.#virtio?.restore?.(state);
        return 0;
      }
      case REQ_CLOSE:
        if (ctl[CTL_A0] === 1) {
          this.#device?.close?.();
          this.#virtio?.close?.();
        }
        return 0;
      default:
        throw new Error(`unknown sandbox request ${kind}`);
    }
  }

  #create(): number {
    const { name, options, memoryLimit } = JSON.parse(this.#ch.text()) as {
      name: string;
      options: Record<string, string>;
      memoryLimit: number;
    };
    this.#memoryLimit = memoryLimit;
    if (this.#plugin.virtio !== undefined) return this.#createVirtio(name, options);
    const device = this.#plugin.create(this.#host(name, options));
    if (typeof device !== "object" || device === null) {
      throw new TypeError("create() must return a device object");
    }
    const check = (list: unknown, what: string): IoRange[] => {
      if (list === undefined) return [];
      if (!Array.isArray(list)) {
        throw new TypeError(`create() returned ${what} that is not an array`);
      }
      for (const r of list as IoRange[]) {
        if (
          typeof r !== "object" || r === null || typeof r.read !== "function" ||
          typeof r.write !== "function" || typeof r.base !== "number" ||
          typeof r.length !== "number"
        ) {
          throw new TypeError(
            `create() returned a ${what} range without numeric base/length and read/write handlers`,
          );
        }
      }
      return list as IoRange[];
    };
    this.#ports = check(device.ports, "ports");
    this.#mmio = check(device.mmio, "mmio");
    for (const fn of ["reset", "save", "restore"] as const) {
      if (typeof device[fn] !== "function") {
        throw new TypeError(`create() returned a device without ${fn}()`);
      }
    }
    this.#device = device;
    const ranges: CreatedRanges = {
      ports: this.#ports.map((r) => [r.base, r.length]),
      mmio: this.#mmio.map((r) => [r.base, r.length]),
    };
    this.#ch.setText(JSON.stringify(ranges));
    return 0;
  }

  /** A virtio plugin's create: the device's shape goes to the host, which checks it. */
  #createVirtio(name: string, options: Record<string, string>): number {
    const dev = this.#plugin.virtio!.create(this.#host(name, options));
    if (typeof dev !== "object" || dev === null || typeof dev.handle !== "function") {
      throw new TypeError("create() must return a virtio device object with handle()");
    }
    const f: unknown = dev.features ?? 0n;
    if (typeof f !== "bigint") {
      throw new TypeError(`create() returned features that are ${describeValue(f)}, not a bigint`);
    }
    this.#virtio = dev;
    const ranges: CreatedRanges = {
      ports: [],
      mmio: [],
      virtio: {
        features: f.toString(16),
        queues: Array.isArray(dev.queues) ? dev.queues.map((n) => Number(n)) : null,
        config: typeof dev.config === "function",
        writeConfig: typeof dev.writeConfig === "function",
      },
    };
    this.#ch.setText(JSON.stringify(ranges));
    return 0;
  }

  /**
   * One chain for the virtio device: its readable bytes (the first in the request, the rest
   * fetched), the handler, then the written bytes back (all but the last piece by callback).
   */
  #chain(): number {
    const ctl = this.#ctl;
    const ch = this.#ch;
    const queue = ctl[CTL_A0]!, rlen = ctl[CTL_A1]!, wlen = ctl[CTL_A2]!;
    const features = BigInt(ctl[CTL_A3]! >>> 0) | (BigInt(ctl[CTL_A4]! >>> 0) << 32n);
    const readable = new Uint8Array(rlen);
    readable.set(ch.bytes.subarray(DATA_OFFSET, DATA_OFFSET + Math.min(rlen, DATA_SIZE)));
    for (let off = DATA_SIZE; off < rlen; off += DATA_SIZE) {
      ctl[CTL_A0] = off;
      ctl[CTL_A1] = Math.min(DATA_SIZE, rlen - off);
      if (this.#callHost(CB_CHAIN_READ) !== ANS_DATA) {
        throw new Error("sandbox channel out of step");
      }
      readable.set(ch.bytes.subarray(DATA_OFFSET, DATA_OFFSET + ctl[CTL_A1]!), off);
    }
    const writable = new Uint8Array(wlen);
    const used: unknown = this.#virtio!.handle({ queue, readable, writable, features });
    if (typeof used !== "number" || !Number.isInteger(used) || used < 0 || used > wlen) {
      throw new WrongTypeError(
        typeof used === "number" ? String(used) : describeValue(used),
        `a used length from 0 to ${wlen} (the chain's writable bytes)`,
      );
    }
    let off = 0;
    for (; used - off > DATA_SIZE; off += DATA_SIZE) {
      ctl[CTL_A0] = off;
      ch.setData(writable.subarray(off, off + DATA_SIZE));
      if (this.#callHost(CB_CHAIN_WRITE) === ANS_ERROR) throw new Error(ch.text());
    }
    ch.setData(writable.subarray(off, used));
    ctl[CTL_A1] = off;
    return used;
  }

  // ---- events ----

  /** Room for `n` more event bytes; flushes queued events to the host when full. */
  #reserve(n: number): number {
    if (this.#evLen + n > EVENTS_SIZE) this.#callHost(CB_FLUSH);
    const at = EVENTS_OFFSET + this.#evLen;
    this.#evLen += n;
    return at;
  }

  #event(kind: number, op: number, value: number): void {
    const at = this.#reserve(6);
    const v = this.#ch.view;
    v.setUint8(at, kind);
    v.setUint8(at + 1, op);
    v.setInt32(at + 2, value, true);
  }

  #eventBytes(kind: number, op: number, bytes: Uint8Array): void {
    const room = EVENTS_SIZE - 6;
    for (let off = 0; off < bytes.length || off === 0; off += room) {
      const part = bytes.subarray(off, Math.min(bytes.length, off + room));
      const at = this.#reserve(6 + part.length);
      const v = this.#ch.view;
      v.setUint8(at, kind);
      v.setUint8(at + 1, op);
      v.setUint32(at + 2, part.length, true);
      this.#ch.bytes.set(part, at + 6);
      if (kind === EV_LOG) break; // a log line longer than the area is cut
    }
  }

  #host(name: string, raw: Record<string, string>): DeviceHost {
    const irq = (line: number): IrqLine => {
      checkIrqLine(line);
      return {
        line,
        raise: () => this.#event(EV_IRQ, IRQ_RAISE, line),
        lower: () => this.#event(EV_IRQ, IRQ_LOWER, line),
        pulse: () => this.#event(EV_IRQ, IRQ_PULSE, line),
      };
    };
    const clock: Clock = {
      now: () => this.#ch.f64[F64_NOW]!,
      timer: (callback: () => void): Timer => {
        const id = this.#timers.push(callback) - 1;
        return {
          arm: (delayNs: number) => {
            const at = this.#reserve(13);
            const v = this.#ch.view;
            v.setUint8(at, EV_TIMER_ARM);
            v.setInt32(at + 1, id, true);
            v.setFloat64(at + 5, Number(delayNs) || 0, true);
          },
          cancel: () => this.#event(EV_TIMER_CANCEL, 0, id),
        };
      },
    };
    const log: Logger = {
      info: (m) => this.#eventBytes(EV_LOG, LOG_INFO, utf8(String(m))),
      warn: (m) => this.#eventBytes(EV_LOG, LOG_WARN, utf8(String(m))),
      debug: (m) => this.#eventBytes(EV_LOG, LOG_DEBUG, utf8(String(m))),
    };
    const cons: Console = {
      write: (bytes) => this.#eventBytes(EV_CONSOLE_WRITE, 0, bytes),
      onInput: (receiver) => {
        this.#input = receiver;
        this.#event(EV_CONSOLE_SUBSCRIBE, 0, 0);
      },
    };
    const power: Power = {
      exit: (status) => {
        checkExitStatus(status);
        this.#event(EV_POWER, POWER_EXIT, status);
      },
      reset: () => this.#event(EV_POWER, POWER_RESET, 0),
      off: () => this.#event(EV_POWER, POWER_OFF, 0),
    };
    return {
      name,
      options: makeOptions(raw, name),
      memory: this.#memory!,
      irq,
      clock,
      log,
      console: cons,
      power,
      [HOST_FILES]: (key: string, writable: boolean) => this.#openFile(key, writable),
    } as DeviceHost;
  }

  /** A host file the VMM opened for the device (reads and writes go through the channel). */
  #openFile(key: string, writable: boolean): HostFile {
    const ch = this.#ch;
    const ctl = this.#ctl;
    ch.setText(key);
    ctl[CTL_A0] = writable ? 1 : 0;
    if (this.#callHost(CB_FILE_OPEN) === ANS_ERROR) throw new Error(ch.text());
    const info = JSON.parse(ch.text()) as { id: number; path: string; size: number; w: boolean };
    return {
      path: info.path,
      size: info.size,
      writable: info.w,
      read: (offset: number, length: number): Uint8Array => {
        const parts: Uint8Array[] = [];
        let total = 0;
        while (total < length) {
          ctl[CTL_A0] = info.id;
          ctl[CTL_A1] = Math.min(DATA_SIZE, length - total);
          ch.f64[F64_ARG] = offset + total;
          if (this.#callHost(CB_FILE_READ) === ANS_ERROR) throw new Error(ch.text());
          const part = ch.data();
          parts.push(part);
          total += part.length;
          if (part.length < ctl[CTL_A1]!) break; // end of file
        }
        const out = new Uint8Array(total);
        let at = 0;
        for (const p of parts) {
          out.set(p, at);
          at += p.length;
        }
        return out;
      },
      write: (offset: number, data: Uint8Array): void => {
        for (let off = 0; off < data.length; off += DATA_SIZE) {
          ctl[CTL_A0] = info.id;
          ch.f64[F64_ARG] = offset + off;
          ch.setData(data.subarray(off, off + DATA_SIZE));
          if (this.#callHost(CB_FILE_WRITE) === ANS_ERROR) throw new Error(ch.text());
        }
      },
      close: () => {
        ctl[CTL_A0] = info.id;
        this.#callHost(CB_FILE_CLOSE);
      },
    };
  }

  /** DMA through the host, for guest RAM the worker cannot share (KVM's mmap'd memory). */
  #channelMemory(size: number): DmaMemory {
    const ctl = this.#ctl;
    const ch = this.#ch;
    const check = (gpa: number, len: number) => {
      if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || len < 0 || gpa < 0) {
        throw new GuestMemoryError(`Guest DMA at ${gpa} of ${len} bytes is not a valid range`);
      }
    };
    const read = (gpa: number, len: number): Uint8Array => {
      check(gpa, len);
      const out = new Uint8Array(len);
      for (let off = 0; off < len || off === 0; off += DATA_SIZE) {
        const n = Math.min(DATA_SIZE, len - off);
        ch.f64[F64_ARG] = gpa + off;
        ctl[CTL_A0] = n;
        ctl[CTL_A1] = off === 0 ? len : -1;
        const answer = this.#callHost(CB_DMA_READ);
        if (answer === ANS_ERROR) throw new GuestMemoryError(ch.text());
        if (answer !== ANS_DATA) throw new Error("sandbox channel out of step");
        out.set(ch.bytes.subarray(DATA_OFFSET, DATA_OFFSET + n), off);
        if (len === 0) break;
      }
      return out;
    };
    const write = (gpa: number, data: Uint8Array): void => {
      check(gpa, data.length);
      for (let off = 0; off < data.length || off === 0; off += DATA_SIZE) {
        const part = data.subarray(off, Math.min(data.length, off + DATA_SIZE));
        ch.f64[F64_ARG] = gpa + off;
        ctl[CTL_A1] = off === 0 ? data.length : -1;
        ch.setData(part);
        const answer = this.#callHost(CB_DMA_WRITE);
        if (answer === ANS_ERROR) throw new GuestMemoryError(ch.text());
        if (data.length === 0) break;
      }
    };
    return {
      size,
      read,
      write,
      readU32: (gpa) => new DataView(read(gpa, 4).buffer).getUint32(0, true),
      writeU32: (gpa, value) => {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setUint32(0, value >>> 0, true);
        write(gpa, b);
      },
    };
  }
}
