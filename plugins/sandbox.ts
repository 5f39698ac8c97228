/**
 * Runs an untrusted device plugin in its own Worker with no permissions (no files, network,
 * FFI, subprocesses or environment) and gives the machine an ordinary {@link Plugin} whose
 * device forwards every port and MMIO access to the Worker synchronously over a
 * SharedArrayBuffer channel (see `_channel.ts`).
 *
 * How the plugin's code gets into the Worker: a Worker's entry module and its static imports are
 * loaded with the parent's permissions, while a dynamic `import()` inside it is checked against
 * the Worker's own. So the entry (a `data:` module) statically imports only our runtime, which
 * then imports the plugin: the plugin's whole graph loads under the Worker's permissions, which
 * are read access to exactly the code modules `module_graph.ts` found and nothing else. A file
 * the walk would not list, such as `/etc/os-release`, is refused by the walk, naming it, and in
 * any case by Deno, before any of the graph runs.
 *
 * Failures (a handler that throws, returns something that is not a number, runs past the time
 * limit, or tries something it has no permission for) become a PluginError naming the device
 * and what it tried; a bus turns that into a stop of the VM with status 1.
 */

import { GuestMemoryError, PluginError, UsageError } from "../core/errors.ts";
import { escapeConsoleBytes, escapeControl } from "../core/term_text.ts";
import { GuestMemory, hex } from "../core/memory.ts";
import {
  API_VERSION,
  definePlugin,
  defineVirtioPlugin,
  type Device,
  type DeviceHost,
  type DeviceState,
  type HostFile,
  type IoRange,
  type IrqLine,
  openLocalFile,
  type Plugin,
  type Timer,
  type VirtioChain,
  type VirtioDevice,
} from "./mod.ts";
import { resolvePluginUrl } from "./loader.ts";
import { DeviceModelError } from "../devices/virtio/mmio.ts";
import { walkModuleGraph } from "./module_graph.ts";
import { checkStateVersion, decodeState, encodeState } from "./state.ts";
import {
  ANS_ACK,
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
  CTL_DATA_LEN,
  CTL_EVENTS_LEN,
  CTL_FAULT,
  CTL_KIND,
  CTL_SPIN,
  CTL_TO_HOST,
  CTL_TO_WORKER,
  DATA_OFFSET,
  DATA_SIZE,
  DEFAULT_SPIN,
  EV_CONSOLE_SUBSCRIBE,
  EV_CONSOLE_WRITE,
  EV_IRQ,
  EV_LOG,
  EV_POWER,
  EV_TIMER_ARM,
  EV_TIMER_CANCEL,
  EVENTS_OFFSET,
  F64_ARG,
  F64_NOW,
  fromUtf8,
  IRQ_LOWER,
  IRQ_RAISE,
  LOG_DEBUG,
  LOG_INFO,
  POWER_EXIT,
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
  SPACE_MMIO,
  SPACE_PORT,
  SpinChooser,
  type SpinMode,
  waitChange,
} from "./_channel.ts";
import type {
  AttachMessage,
  CreatedRanges,
  ErrorReport,
  InitMessage,
  ReadyMessage,
} from "./_sandbox_worker.ts";

export type { SpinMode };

/** Default time a handler may run before the device is stopped. */
export const DEFAULT_CALL_TIMEOUT_MS = 1000;
/** Default time the plugin module may take to load (remote imports included). */
export const DEFAULT_LOAD_TIMEOUT_MS = 30_000;

/** The option the VMM reads from a sandboxed device's options for its handler time limit. */
export const TIMEOUT_OPTION = "timeout_ms";
/** The option for a sandboxed device's heap limit, in MiB. */
export const MEMORY_OPTION = "memory_mb";
/** Default heap limit of a sandboxed device (its runtime and plugin take about 5 MiB). */
export const DEFAULT_MEMORY_MB = 256;
/** Largest accepted `timeout_ms` (a day) and `memory_mb` (16 GiB). */
const MAX_TIMEOUT_MS = 86_400_000;
const MAX_MEMORY_MB = 16384;

/** How often, in VM time, the host looks for a fault the plugin had outside a call. */
const FAULT_CHECK_NS = 10_000_000;

/** The advice every denial message ends with. */
const TRUSTED_HINT =
  "plugins run with no permissions; use --device PATH,trusted to run it in-process";

/**
 * Limits for a sandboxed device.
 *
 * @example
 * ```ts
 * import type { SandboxLimits } from "./sandbox.ts";
 * const limits: SandboxLimits = { callTimeoutMs: 250 };
 * ```
 */
export interface SandboxLimits {
  /** Longest a handler may run, in ms (default 1000; `timeout_ms=N` in the options overrides). */
  callTimeoutMs?: number;
  /** Heap the plugin may use, in MiB (default 256; `memory_mb=N` in the options overrides). */
  memoryMb?: number;
  /** Longest the plugin module may take to load, in ms (default 30 s). */
  loadTimeoutMs?: number;
  /** Polls of the channel before blocking in `Atomics.wait`, on each side (default 20,000). */
  spin?: number;
  /**
   * Whether to spin before blocking: "adaptive" (default) measures both now and then and keeps
   * the faster, "always" and "never" fix the choice (for benchmarks).
   */
  spinMode?: SpinMode;
}

/** What a denied permission means, in words for the message. */
function describeAttempt(permission: string, target: string | undefined): string {
  const on = target ? ` (${escapeControl(JSON.stringify(target))})` : "";
  switch (permission) {
    case "read":
      return `read a file${on}`;
    case "write":
      return `write a file${on}`;
    case "net":
      return `open a network connection${on}`;
    case "env":
      return `read the environment${on}`;
    case "run":
      return `spawn a process${on}`;
    case "ffi":
      return `call native code through FFI${on}`;
    case "sys":
      return `read system information${on}`;
    case "import":
      return `import a remote module${on}`;
    default:
      return `use a host permission${on}`;
  }
}

function deniedFromText(text: string): { permission: string; target?: string } | null {
  const m = /Requires (\w+) access(?: to "?([^",]*)"?)?/.exec(text);
  return m ? { permission: m[1]!, target: m[2] } : null;
}

const RUNTIME_URL = new URL("./_sandbox_worker.ts", import.meta.url).href;

/**
 * Loads the plugin at `specifier` into a new permission-less Worker and returns a Plugin that
 * `Machine.attach` can use like any other: its synchronous `create(host)` builds the device in
 * the Worker. Each sandboxed Plugin creates one device (load again for another).
 *
 * @example
 * ```ts ignore
 * import { loadSandboxedPlugin } from "./sandbox.ts";
 * const plugin = await loadSandboxedPlugin("plugins/examples/hw_rng.ts");
 * // machine.attach(plugin, { seed: "7" });
 * ```
 */
export async function loadSandboxedPlugin(
  specifier: string,
  limits: SandboxLimits = {},
): Promise<Plugin> {
  const { worker, channel, ready } = await startWorker(specifier, limits);
  return sandboxPlugin(specifier, limits, worker, channel, ready);
}

/**
 * What a plugin module declares, read by loading it in a permission-less Worker that is then
 * ended: its name and, for a virtio plugin, its device ID (`--exec` loads the guest driver for
 * it). Throws PluginError as {@link loadSandboxedPlugin} does.
 *
 * @example
 * ```ts ignore
 * import { probePlugin } from "./sandbox.ts";
 * console.log((await probePlugin("plugins/examples/virtio_rng.ts")).virtio); // { deviceId: 4 }
 * ```
 */
export async function probePlugin(
  specifier: string,
): Promise<{ name: string; virtio?: { deviceId: number } }> {
  const { worker, ready } = await startWorker(specifier, {});
  worker.terminate();
  return { name: ready.name, ...(ready.virtio === undefined ? {} : { virtio: ready.virtio }) };
}

/** Starts the Worker for `specifier` and waits until the plugin module loaded. */
async function startWorker(
  specifier: string,
  limits: SandboxLimits,
): Promise<{ worker: Worker; channel: Channel; ready: ReadyMessage & { kind: "ready" } }> {
  const url = resolvePluginUrl(specifier);
  if (url.protocol === "file:") {
    let isFile = false;
    try {
      isFile = (await Deno.stat(url)).isFile;
    } catch (err) {
      throw new PluginError(
        `Plugin "${specifier}" cannot be read: ${
          (err as Error).message
        }. Check the path given to --device`,
      );
    }
    if (!isFile) {
      throw new PluginError(
        `Plugin "${specifier}" is not a file: give the path of a .ts or .js module`,
      );
    }
  }
  const graph = await walkModuleGraph(url, specifier);

  // The runtime is ours and loads with the VMM's permissions; the plugin is imported by it, so
  // its whole graph loads under the Worker's: read access to the files the walk listed only.
  const entry = `import { serveModule } from ${JSON.stringify(RUNTIME_URL)};\n` +
    `serveModule(${JSON.stringify(url.href)});\n`;
  const permissions = {
    read: graph.files.length > 0 ? graph.files : false,
    import: graph.remoteHosts.length > 0 ? graph.remoteHosts : false,
    write: false,
    net: false,
    env: false,
    run: false,
    ffi: false,
    sys: false,
  };
  const worker = new Worker(`data:application/javascript;base64,${btoa(entry)}`, {
    type: "module",
    name: `denovisor sandbox: ${specifier}`,
    deno: { permissions },
  } as WorkerOptions);
  const channel = new Channel();
  let ready: ReadyMessage & { kind: "ready" };
  try {
    ready = await new Promise<ReadyMessage & { kind: "ready" }>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new PluginError(
              `Plugin "${specifier}" did not load within ${
                limits.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS
              } ms`,
            ),
          ),
        limits.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
      );
      const loadFailed = (
        message: string,
        denied: { permission: string; target?: string } | null,
      ) =>
        new PluginError(
          denied
            ? `Plugin "${specifier}" tried to ${
              describeAttempt(denied.permission, denied.target)
            } while loading and was denied (${TRUSTED_HINT})`
            : `Plugin "${specifier}" failed to load: ${escapeControl(message.split("\n")[0]!)}`,
        );
      worker.onmessage = (e: MessageEvent<ReadyMessage>) => {
        clearTimeout(timer);
        const m = e.data;
        if (m.kind === "ready") resolve(m);
        else if (m.kind === "load-error") {
          // The module threw while it ran; the worker kept Deno from printing its own report.
          const denied = m.permission ? { permission: m.permission, target: m.target } : null;
          reject(loadFailed(m.message, denied));
        } else reject(new PluginError(`Module "${specifier}" ${m.message}`));
      };
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        clearTimeout(timer);
        const msg = String(e.message ?? e).replace(/^Uncaught (\(in promise\) )?/, "");
        reject(loadFailed(msg, deniedFromText(msg)));
      };
      worker.postMessage(
        { kind: "init", channel: channel.buffer } satisfies InitMessage,
      );
    });
  } catch (err) {
    worker.terminate();
    throw err;
  } finally {
    worker.onmessage = null;
  }
  return { worker, channel, ready };
}

/** The Plugin whose device runs in `worker` (loaded, not yet created). */
function sandboxPlugin(
  specifier: string,
  limits: SandboxLimits,
  worker: Worker,
  channel: Channel,
  ready: ReadyMessage & { kind: "ready" },
): Plugin {
  const spin = limits.spin ?? DEFAULT_SPIN;
  let created = false;
  const start = (host: DeviceHost): SandboxedDevice => {
    if (created) {
      throw new PluginError(
        `Sandboxed plugin "${specifier}" already made its device: load it again for another`,
      );
    }
    created = true;
    const timeoutMs = limitOption(
      host,
      TIMEOUT_OPTION,
      limits.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      MAX_TIMEOUT_MS,
    );
    const memoryMb = limitOption(
      host,
      MEMORY_OPTION,
      limits.memoryMb ?? DEFAULT_MEMORY_MB,
      MAX_MEMORY_MB,
    );
    return new SandboxedDevice(worker, channel, host, {
      timeoutMs,
      memoryMb,
      stateVersion: ready.stateVersion,
      pluginName: ready.name,
      spin,
      spinMode: limits.spinMode ?? "adaptive",
    });
  };
  /** Builds the device with `make`; a failure ends the Worker. */
  const build = <T>(proxy: SandboxedDevice, make: (p: SandboxedDevice) => T): T => {
    try {
      return make(proxy);
    } catch (err) {
      proxy.dispose();
      throw err;
    }
  };
  const virtio = ready.virtio;
  if (virtio !== undefined) {
    return defineVirtioPlugin({
      name: ready.name,
      apiVersion: API_VERSION,
      ...(ready.description === undefined ? {} : { description: ready.description }),
      stateVersion: ready.stateVersion,
      deviceId: virtio.deviceId,
      create: (host) => build(start(host), (p) => p.createVirtio()),
    });
  }
  return definePlugin({
    name: ready.name,
    apiVersion: API_VERSION,
    description: ready.description,
    stateVersion: ready.stateVersion,
    create: (host) => build(start(host), (p) => p.create()),
  });
}

/**
 * Loads `specifier` sandboxed and creates its device on `host` (for hosts other than a Machine,
 * such as tests). The device's name is `options.name`, or the plugin's.
 *
 * @example
 * ```ts ignore
 * import { createSandboxedDevice } from "./sandbox.ts";
 * // const { name, device } = await createSandboxedDevice("x.ts", {}, host);
 * ```
 */
export async function createSandboxedDevice(
  specifier: string,
  host: DeviceHost,
  limits: SandboxLimits = {},
): Promise<{ name: string; device: Device; plugin: Plugin }> {
  const plugin = await loadSandboxedPlugin(specifier, limits);
  return { name: host.name, device: plugin.create(host), plugin };
}

/** A positive whole-number limit from the device's options (`fallback` when absent). */
function limitOption(host: DeviceHost, key: string, fallback: number, max: number): number {
  if (host.options.raw[key] === undefined) return fallback;
  const n = host.options.number(key, fallback);
  if (n < 1 || n > max) {
    throw new UsageError(
      `Device "${host.name}": option ${key}=${host.options.raw[key]} is out of range ` +
        `(give 1 to ${max})`,
    );
  }
  return n;
}

interface ProxyOptions {
  timeoutMs: number;
  memoryMb: number;
  spin: number;
  spinMode: SpinMode;
  stateVersion: number;
  pluginName: string;
}

/** The VMM's side of one sandboxed device. */
class SandboxedDevice {
  readonly #worker: Worker;
  readonly #ch: Channel;
  readonly #ctl: Int32Array;
  readonly #host: DeviceHost;
  readonly #name: string;
  readonly #opts: ProxyOptions;
  #seenHost = 0;
  #busy = false;
  readonly #chooser: SpinChooser;
  /** Set once the worker is gone: every later call throws this message. */
  #failed: string | null = null;
  readonly #irqs = new Map<number, IrqLine>();
  readonly #timers = new Map<number, Timer>();
  #inputHooked = false;
  readonly #files: (HostFile | null)[] = [];

  constructor(worker: Worker, ch: Channel, host: DeviceHost, opts: ProxyOptions) {
    this.#worker = worker;
    this.#ch = ch;
    this.#ctl = ch.ctl;
    this.#host = host;
    this.#name = host.name;
    this.#opts = opts;
    this.#chooser = new SpinChooser(opts.spin, opts.spinMode);
  }

  /** Makes the device in the Worker; returns what it claims. */
  #start(): CreatedRanges {
    const memory = this.#host.memory;
    const shared = memory instanceof GuestMemory && memory.buffer instanceof SharedArrayBuffer;
    this.#worker.postMessage(
      {
        kind: "attach",
        memory: shared ? memory.buffer as SharedArrayBuffer : null,
        pageState: shared && memory.pages.buffer instanceof SharedArrayBuffer
          ? memory.pages.buffer
          : null,
        memSize: memory.size,
      } satisfies AttachMessage,
    );
    this.#ch.setText(
      JSON.stringify({
        name: this.#name,
        options: this.#host.options.raw,
        memoryLimit: this.#opts.memoryMb * 1024 * 1024,
      }),
    );
    this.#call(REQ_CREATE, "create");
    const ranges = JSON.parse(this.#ch.text()) as CreatedRanges;
    this.#watchFaults();
    return ranges;
  }

  /** The device's state calls, the same for both kinds of device. */
  #stateCalls(): Pick<Device, "reset" | "save" | "restore" | "close"> {
    return {
      reset: () => {
        this.#call(REQ_RESET, "reset");
      },
      save: (): DeviceState => {
        this.#call(REQ_SAVE, "save");
        return decodeState(this.#ch.text());
      },
      restore: (state: DeviceState) => {
        checkStateVersion(
          { name: this.#opts.pluginName, stateVersion: this.#opts.stateVersion },
          state,
          this.#name,
        );
        this.#ch.setText(encodeState(state));
        this.#call(REQ_RESTORE, "restore");
      },
      close: () => this.dispose(true),
    };
  }

  /**
   * A virtio plugin's device, for the VMM's transport (`devices/virtio/plugin_device.ts`) to
   * drive: each chain's bytes go to the Worker and the bytes it wrote come back, so the plugin
   * never sees guest memory. A failing handler throws an Error the transport answers with a reset
   * request; a Worker that is gone (timed out, out of memory) throws PluginError, which stops
   * the VM.
   */
  createVirtio(): VirtioDevice {
    const shape = this.#start().virtio;
    if (shape === undefined) {
      this.#fail(`Device "${this.#name}": sandbox channel out of step (no virtio device)`);
    }
    // A plugin that failed but whose Worker lives: the guest's device asks for a reset.
    const recoverable = <A extends unknown[], T>(fn: (...a: A) => T) => (...a: A): T => {
      try {
        return fn(...a);
      } catch (err) {
        if (this.#failed !== null || !(err instanceof PluginError)) throw err;
        throw new DeviceModelError(err.message);
      }
    };
    const state = this.#stateCalls();
    const dev: VirtioDevice = {
      features: BigInt(`0x${/^[0-9a-f]+$/.test(shape.features) ? shape.features : "0"}`),
      queues: shape.queues as number[],
      handle: recoverable((chain: VirtioChain) => this.#chain(chain)),
      ...state,
      reset: recoverable(state.reset),
    };
    if (shape.config) dev.config = recoverable(() => this.#config());
    if (shape.writeConfig) {
      dev.writeConfig = recoverable((offset: number, size: number, value: number) => {
        const ctl = this.#ctl;
        ctl[CTL_A0] = offset;
        ctl[CTL_A1] = size;
        ctl[CTL_A2] = value;
        this.#call(REQ_VIRTIO_CONFIG_WRITE, "writeConfig()");
      });
    }
    return dev;
  }

  create(): Device {
    const ranges = this.#start();
    const range =
      (space: number, kind: string) => ([base, length]: [number, number], i: number) => {
        const readWhat = `${kind} read handler`, writeWhat = `${kind} write handler`;
        return {
          base,
          length,
          read: (offset: number, size: number) =>
            this.#access(REQ_READ, space, i, offset, size, 0, readWhat),
          write: (offset: number, size: number, value: number) => {
            this.#access(REQ_WRITE, space, i, offset, size, value, writeWhat);
          },
        } satisfies IoRange;
      };
    return {
      ports: ranges.ports.map(range(SPACE_PORT, "port")),
      mmio: ranges.mmio.map(range(SPACE_MMIO, "MMIO")),
      ...this.#stateCalls(),
    };
  }

  /** The chain being handled (its writable copy fills from CB_CHAIN_WRITE). */
  #pending: VirtioChain | null = null;

  /** Sends one chain to the Worker; returns the used length, the written bytes in `chain`. */
  #chain(chain: VirtioChain): number {
    const ctl = this.#ctl;
    const ch = this.#ch;
    const f = chain.features;
    ctl[CTL_A0] = chain.queue;
    ctl[CTL_A1] = chain.readable.length;
    ctl[CTL_A2] = chain.writable.length;
    ctl[CTL_A3] = Number(f & 0xffff_ffffn) | 0;
    ctl[CTL_A4] = Number((f >> 32n) & 0xffff_ffffn) | 0;
    ch.setData(chain.readable.subarray(0, DATA_SIZE));
    this.#pending = chain;
    let used: number;
    try {
      used = this.#call(REQ_VIRTIO_CHAIN, "chain handler");
    } finally {
      this.#pending = null;
    }
    // The Worker is the plugin's: check what it says before using it.
    const at = ctl[CTL_A1]!, len = ctl[CTL_DATA_LEN]!;
    if (used < 0 || used > chain.writable.length || at < 0 || len < 0 || at + len !== used) {
      throw new DeviceModelError(
        `Device "${this.#name}": its chain handler answered a used length of ${used} (bytes ` +
          `${at}+${len}) for ${chain.writable.length} writable bytes`,
      );
    }
    chain.writable.set(ch.bytes.subarray(DATA_OFFSET, DATA_OFFSET + len), at);
    return used;
  }

  /** The config space, read from the Worker. */
  #config(): Uint8Array {
    const n = this.#call(REQ_VIRTIO_CONFIG, "config()");
    if (n < 0 || n > DATA_SIZE || n !== this.#ctl[CTL_DATA_LEN]) {
      throw new DeviceModelError(
        `Device "${this.#name}": its config() returned ${n} bytes, more than a config space holds`,
      );
    }
    return this.#ch.data();
  }

  /**
   * Checks for a failure the plugin had outside any call (a promise it never awaited) every
   * FAULT_CHECK_NS of VM time, so it stops the VM even if the device is never called again.
   */
  #watchFaults(): void {
    const timer = this.#host.clock.timer(() => {
      if (this.#failed !== null) return;
      if (Atomics.load(this.#ctl, CTL_FAULT) !== 0 && !this.#busy) {
        this.#call(REQ_PING, "fault check");
      }
      timer.arm(FAULT_CHECK_NS);
    });
    timer.arm(FAULT_CHECK_NS);
  }

  /** Ends the worker: runs the plugin's close (when asked and it can), then terminates it. */
  dispose(runClose = false): void {
    try {
      if (this.#failed === null && !this.#busy) {
        this.#ctl[CTL_A0] = runClose ? 1 : 0;
        this.#call(REQ_CLOSE, runClose ? "close" : "shutdown");
      }
    } catch (err) {
      if (runClose) throw err;
    } finally {
      this.#failed ??= `Device "${this.#name}" was closed`;
      this.#worker.terminate();
      for (const f of this.#files) {
        try {
          f?.close();
        } catch {
          // Already closed.
        }
      }
      this.#files.length = 0;
    }
  }

  /** A port or MMIO access. Hot path: no allocation when the device makes no events. */
  #access(
    request: number,
    space: number,
    index: number,
    offset: number,
    size: number,
    value: number,
    what: string,
  ): number {
    const ctl = this.#ctl;
    ctl[CTL_A0] = space;
    ctl[CTL_A1] = index;
    ctl[CTL_A2] = offset;
    ctl[CTL_A3] = size;
    ctl[CTL_A4] = value;
    const chooser = this.#chooser;
    if (!chooser.timing) {
      const v = this.#call(request, what) >>> 0;
      chooser.record(0);
      return v;
    }
    const t0 = performance.now();
    const v = this.#call(request, what) >>> 0;
    chooser.record(performance.now() - t0);
    return v;
  }

  /**
   * Sends request `kind` and services the worker's callbacks until it replies. Returns the
   * reply's value; throws PluginError for a failure, naming `what` the device was doing.
   */
  #call(kind: number, what: string): number {
    if (this.#failed !== null) throw new PluginError(this.#failed);
    if (this.#busy) {
      throw new PluginError(
        `Device "${this.#name}" was called again while its ${what} was still running`,
      );
    }
    this.#busy = true;
    const ctl = this.#ctl;
    try {
      this.#ch.f64[F64_NOW] = this.#host.clock.now();
      ctl[CTL_KIND] = kind;
      const spin = this.#chooser.spin;
      ctl[CTL_SPIN] = spin;
      const deadline = performance.now() + this.#opts.timeoutMs;
      Atomics.add(ctl, CTL_TO_WORKER, 1);
      Atomics.notify(ctl, CTL_TO_WORKER);
      for (;;) {
        if (!waitChange(ctl, CTL_TO_HOST, this.#seenHost, spin, deadline)) {
          this.#fail(
            `Device "${this.#name}" did not return from its ${what} within ` +
              `${this.#opts.timeoutMs} ms and was stopped (a handler must return promptly; ` +
              `the limit is the ${TIMEOUT_OPTION}= device option)`,
          );
        }
        this.#seenHost = Atomics.load(ctl, CTL_TO_HOST);
        if (ctl[CTL_EVENTS_LEN]! > 0) this.#applyEvents();
        const reply = ctl[CTL_KIND]!;
        if (reply === REP_DONE) return ctl[CTL_A0]!;
        if (reply === REP_ERROR) throw this.#error(what);
        this.#answer(reply);
        Atomics.add(ctl, CTL_TO_WORKER, 1);
        Atomics.notify(ctl, CTL_TO_WORKER);
      }
    } finally {
      this.#busy = false;
    }
  }

  #fail(message: string): never {
    this.#failed = message;
    this.#worker.terminate();
    throw new PluginError(message);
  }

  #error(what: string): PluginError {
    let r: ErrorReport;
    try {
      r = JSON.parse(this.#ch.text());
    } catch {
      r = { message: this.#ch.text() };
    }
    const where = r.async
      ? "in a call it did not await"
      : what === "create"
      ? "while starting"
      : `in its ${what}`;
    if (r.heapUsed !== undefined) {
      // Stop it now: the Worker's heap is what the limit protects the VMM from.
      const mib = (r.heapUsed / 1048576).toFixed(0);
      this.#failed = `Device "${this.#name}" used ${mib} MiB of memory ${where}, over its limit ` +
        `of ${this.#opts.memoryMb} MiB, and was stopped (the limit is the ${MEMORY_OPTION}= ` +
        `device option)`;
      this.#worker.terminate();
      return new PluginError(this.#failed);
    }
    if (r.permission) {
      return new PluginError(
        `Device "${this.#name}" tried to ${
          describeAttempt(r.permission, r.target)
        } ${where} and was denied (${TRUSTED_HINT})`,
      );
    }
    if (r.returned) {
      return new PluginError(
        `Device "${this.#name}": its ${what} returned ${escapeControl(r.returned)}, not ${
          escapeControl(r.wanted ?? "a number")
        }`,
      );
    }
    const message = escapeControl(r.message); // the plugin's own text
    if (r.async) {
      return new PluginError(`Device "${this.#name}" failed ${where}: ${message}`);
    }
    if (what === "create") {
      return new PluginError(`Device "${this.#name}" failed to start: ${message}`);
    }
    return new PluginError(`Device "${this.#name}" failed in its ${what}: ${message}`);
  }

  /** Serves a callback the worker made in the middle of a request. */
  #answer(kind: number): void {
    const ch = this.#ch;
    const ctl = this.#ctl;
    switch (kind) {
      case CB_FLUSH:
        ctl[CTL_KIND] = ANS_ACK;
        return;
      case CB_DMA_READ:
      case CB_DMA_WRITE: {
        const gpa = ch.f64[F64_ARG]!;
        const total = ctl[CTL_A1]!;
        try {
          const mem = this.#host.memory;
          if (total >= 0 && mem instanceof GuestMemory && !mem.isRam(gpa, total)) {
            // Check the whole transfer before its first chunk, so a refused DMA writes nothing.
            const what = kind === CB_DMA_READ ? "read" : "write";
            throw new GuestMemoryError(
              `Guest DMA ${what} of ${total} bytes at ${hex(gpa)} is outside guest RAM ` +
                `(${mem.describe()})`,
            );
          }
          if (kind === CB_DMA_READ) {
            ch.setData(mem.read(gpa, ctl[CTL_A0]!));
            ctl[CTL_KIND] = ANS_DATA;
          } else {
            mem.write(gpa, ch.bytes.subarray(DATA_OFFSET, DATA_OFFSET + ctl[CTL_DATA_LEN]!));
            ctl[CTL_KIND] = ANS_ACK;
          }
        } catch (err) {
          ch.setText(err instanceof Error ? err.message : String(err));
          ctl[CTL_KIND] = ANS_ERROR;
        }
        return;
      }
      case CB_CHAIN_READ:
      case CB_CHAIN_WRITE: {
        // Bytes of the chain being handled, and only those.
        const chain = this.#pending;
        const off = ctl[CTL_A0]!;
        const len = kind === CB_CHAIN_READ ? ctl[CTL_A1]! : ctl[CTL_DATA_LEN]!;
        const room = chain === null
          ? -1
          : kind === CB_CHAIN_READ
          ? chain.readable.length
          : chain.writable.length;
        if (off < 0 || len < 0 || len > DATA_SIZE || off + len > room) {
          ch.setText(`bytes ${off}+${len} are outside the chain`);
          ctl[CTL_KIND] = ANS_ERROR;
        } else if (kind === CB_CHAIN_READ) {
          ch.setData(chain!.readable.subarray(off, off + len));
          ctl[CTL_KIND] = ANS_DATA;
        } else {
          chain!.writable.set(ch.bytes.subarray(DATA_OFFSET, DATA_OFFSET + len), off);
          ctl[CTL_KIND] = ANS_ACK;
        }
        return;
      }
      case CB_FILE_OPEN:
      case CB_FILE_READ:
      case CB_FILE_WRITE:
      case CB_FILE_CLOSE:
        try {
          this.#fileRequest(kind);
        } catch (err) {
          ch.setText(err instanceof Error ? err.message : String(err));
          ctl[CTL_KIND] = ANS_ERROR;
        }
        return;
      default:
        this.#fail(`Device "${this.#name}": sandbox channel out of step (message ${kind})`);
    }
  }

  /**
   * Files for the device: it names an option, the VMM opens the path the user put there (for
   * writing only when the options say `writable=true`), so a device never picks a path.
   */
  #fileRequest(kind: number): void {
    const ch = this.#ch;
    const ctl = this.#ctl;
    if (kind === CB_FILE_OPEN) {
      const key = ch.text();
      const path = this.#host.options.raw[key];
      if (path === undefined) {
        throw new Error(`Device "${this.#name}" needs a file: give it as ${key}=PATH`);
      }
      const writable = ctl[CTL_A0] === 1 && this.#host.options.boolean("writable", false);
      const file = openLocalFile(path, writable);
      const id = this.#files.push(file) - 1;
      ch.setText(JSON.stringify({ id, path, size: file.size, w: writable }));
      ctl[CTL_KIND] = ANS_DATA;
      return;
    }
    const file = this.#files[ctl[CTL_A0]!];
    if (!file) throw new Error("that file is closed");
    if (kind === CB_FILE_READ) {
      ch.setData(file.read(ch.f64[F64_ARG]!, ctl[CTL_A1]!));
      ctl[CTL_KIND] = ANS_DATA;
    } else if (kind === CB_FILE_WRITE) {
      file.write(ch.f64[F64_ARG]!, ch.data());
      ctl[CTL_KIND] = ANS_ACK;
    } else {
      file.close();
      this.#files[ctl[CTL_A0]!] = null;
      ctl[CTL_KIND] = ANS_ACK;
    }
  }

  /** Applies the events the worker queued: interrupts, logs, power, timers, console. */
  #applyEvents(): void {
    const v = this.#ch.view;
    const bytes = this.#ch.bytes;
    const end = EVENTS_OFFSET + this.#ctl[CTL_EVENTS_LEN]!;
    let at = EVENTS_OFFSET;
    while (at < end) {
      const kind = v.getUint8(at);
      switch (kind) {
        case EV_IRQ: {
          const op = v.getUint8(at + 1);
          const line = this.#irq(v.getInt32(at + 2, true));
          if (op === IRQ_RAISE) line.raise();
          else if (op === IRQ_LOWER) line.lower();
          else line.pulse();
          at += 6;
          break;
        }
        case EV_POWER: {
          const op = v.getUint8(at + 1);
          const status = v.getInt32(at + 2, true);
          if (op === POWER_EXIT) this.#host.power.exit(status);
          else if (op === POWER_RESET) this.#host.power.reset();
          else this.#host.power.off();
          at += 6;
          break;
        }
        case EV_TIMER_ARM: {
          const id = v.getInt32(at + 1, true);
          this.#timer(id).arm(v.getFloat64(at + 5, true));
          at += 13;
          break;
        }
        case EV_TIMER_CANCEL:
          this.#timer(v.getInt32(at + 2, true)).cancel();
          at += 6;
          break;
        case EV_CONSOLE_SUBSCRIBE:
          if (!this.#inputHooked) {
            this.#inputHooked = true;
            this.#host.console.onInput((byte) => {
              this.#ctl[CTL_A0] = byte;
              this.#call(REQ_INPUT, "console input receiver");
            });
          }
          at += 6;
          break;
        case EV_LOG:
        case EV_CONSOLE_WRITE: {
          const op = v.getUint8(at + 1);
          const len = v.getUint32(at + 2, true);
          const data = bytes.slice(at + 6, at + 6 + len);
          if (kind === EV_CONSOLE_WRITE) this.#host.console.write(escapeConsoleBytes(data));
          else {
            const text = fromUtf8(data);
            if (op === LOG_INFO) this.#host.log.info(text);
            else if (op === LOG_DEBUG) this.#host.log.debug(text);
            else this.#host.log.warn(text);
          }
          at += 6 + len;
          break;
        }
        default:
          this.#fail(
            `Device "${this.#name}": sandbox channel out of step (event ${kind} at ${
              hex(at - EVENTS_OFFSET)
            })`,
          );
      }
    }
    this.#ctl[CTL_EVENTS_LEN] = 0;
  }

  #irq(line: number): IrqLine {
    let l = this.#irqs.get(line);
    if (!l) {
      l = this.#host.irq(line);
      this.#irqs.set(line, l);
    }
    return l;
  }

  #timer(id: number): Timer {
    let t = this.#timers.get(id);
    if (!t) {
      t = this.#host.clock.timer(() => {
        this.#ctl[CTL_A0] = id;
        this.#call(REQ_TIMER, "timer callback");
      });
      this.#timers.set(id, t);
    }
    return t;
  }
}
