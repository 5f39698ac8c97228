/**
 * A Machine owns guest memory, the port and MMIO buses, the clock, the serial console, its
 * devices and its vCPU, and runs them: `start` (load + run), `pause`, `resume`, `stop`. Fatal
 * stops come back with a register dump. Devices are attached through the plugin API, so
 * built-in devices and third-party plugins are wired the same way.
 */

import { escapeControl, prefixLines } from "./term_text.ts";
import { deviceDenial } from "./denial.ts";
import { type CpuModel, cpuModelFor } from "./cpu_model.ts";
import { MmioBus, PortBus } from "./bus.ts";
import {
  type Backend,
  CONTROL_REQUEST,
  CONTROL_STATUS,
  REQUEST_PAUSE,
  REQUEST_STOP,
  RunControl,
  type StopReason,
  type TraceSink,
  type Vcpu,
  type VcpuPlatform,
} from "./backend.ts";
import type { BootSetup } from "./boot/types.ts";
import { type ClockState, VmClock } from "./clock.ts";
import { type CpuState, formatCpuState } from "./cpu_state.ts";
import { PluginError, UsageError, VmmError } from "./errors.ts";
import type { GuestMemory } from "./memory.ts";
import { type ByteSink, type InputRing, SerialConsole } from "./serial_io.ts";
import { createPcPlatform, MSR_APIC_BASE, type PcPlatform } from "../devices/platform.ts";
import {
  KvmClock,
  kvmCpuidLeaf,
  MSR_KVM_SYSTEM_TIME_NEW,
  MSR_KVM_WALL_CLOCK_NEW,
} from "../devices/kvm_clock.ts";
import { makeOptions } from "../plugins/options.ts";
import type { Device, DeviceHost, DeviceState, IrqLine, Logger, Plugin } from "../plugins/mod.ts";
import { checkExitStatus, checkIrqLine } from "../plugins/mod.ts";
import { checkStateVersion } from "../plugins/state.ts";
import type { BackendName } from "./backend.ts";

/** Where interrupt lines go (the PIC/APIC platform when one is attached). */
export interface IrqSink {
  setLevel(line: number, high: boolean): void;
}

/** How to build a Machine. */
export interface MachineOptions {
  backend: Backend;
  /** The CPU the vCPU presents (default: the host vendor's model). */
  cpuModel?: CpuModel;
  /** Guest RAM in bytes. */
  memSize: number;
  /** Serial output sink (null discards) and host input ring. */
  serialSink?: ByteSink | null;
  serialInput?: InputRing | null;
  /** Per-instruction/per-exit trace, with --trace. */
  trace?: TraceSink | null;
  /** VMM messages (stderr). */
  log?: (message: string) => void;
  /** Shared stop/pause requests (the supervisor thread holds the same Int32Array). */
  control?: RunControl;
  /**
   * Announce the local APIC in CPUID to guests of backends that emulate CPUID (default true;
   * false gives a PIC-only PC, as on machines before the APIC).
   */
  localApic?: boolean;
  /**
   * A snapshot's memory file (raw RAM of `memSize` bytes) to map as guest RAM where the
   * backend can (`Backend.mapMemoryFile`, KVM); otherwise RAM is fresh and the caller reads the
   * file in (`memoryMapped` says which).
   */
  memoryFile?: string;
}

/**
 * Where an attached device came from, so a restore can attach the same one: a built-in device
 * module or a `--device` plugin (by resolved module URL and the options it was given, `trusted`
 * included), or the machine's own PC platform.
 */
export interface DeviceSource {
  kind: "builtin" | "plugin" | "platform";
  /** The plugin module's URL (the platform: "pc-platform"). */
  specifier: string;
  /** The options it was attached with. */
  options: Record<string, string>;
}

/** A device attached to a machine. */
export interface AttachedDevice {
  readonly name: string;
  readonly plugin: Plugin;
  readonly device: Device;
  /** Where it came from (absent: attached without a source, so a snapshot cannot rebuild it). */
  readonly source?: DeviceSource;
}

/** One device in a MachineState. */
export interface DeviceSnapshot {
  name: string;
  /** Absent for a device attached without a source. */
  source?: DeviceSource;
  state: DeviceState;
}

/**
 * The format version of MachineState; `restoreState` refuses any other. 3: CpuState carries the
 * debug registers, XCR0, the KVM XSAVE area and the MP state.
 */
export const MACHINE_STATE_VERSION = 3;

/**
 * Everything a Machine is besides guest RAM: what a snapshot's state file holds. Plain data with
 * bigints, a Map and Uint8Arrays (inside `cpu` and `cpuModel`); `core/snapshot/codec.ts` turns
 * it into JSON.
 */
export interface MachineState {
  version: number;
  /** The backend the state was taken on (informational: a restore may pick another). */
  backend: BackendName;
  memSize: number;
  cpuModel: CpuModel;
  clock: ClockState;
  cpu: CpuState;
  /** Every attached device, in attach order. */
  devices: DeviceSnapshot[];
  /** kvm-clock's MSRs (the interpreter), or null when the backend has none. */
  kvmClock: DeviceState | null;
  /** What the backend keeps itself (KVM: its kvmclock), or null; restored on the same backend. */
  backendState: Record<string, unknown> | null;
}

/** The result of a run, with a register dump for faults. */
export interface RunResult {
  reason: StopReason;
  /** Register dump when the VM stopped on a fault. */
  dump?: string;
}

/** Process exit status for a stop reason: debug-exit value, 0 for reset/power-off, 1 for faults. */
export function exitStatusOf(reason: StopReason): number {
  switch (reason.kind) {
    case "exit":
      return reason.status;
    case "reset":
    case "poweroff":
      return 0;
    default:
      return 1;
  }
}

/** One virtual machine. */
export class Machine {
  readonly backend: Backend;
  /** The CPU the vCPU presents. */
  readonly cpuModel: CpuModel;
  readonly memory: GuestMemory;
  /** RAM is `memoryFile` mapped copy-on-write (the backend could map it): nothing to read. */
  readonly memoryMapped: boolean;
  readonly ports: PortBus = new PortBus();
  readonly mmio: MmioBus = new MmioBus();
  readonly control: RunControl;
  /** VM time: it advances only while `run()` runs the vCPU. */
  readonly clock: VmClock = new VmClock({ running: false });
  readonly console: SerialConsole;
  readonly devices: AttachedDevice[] = [];
  readonly vcpu: Vcpu;
  readonly #log: (message: string) => void;
  readonly #trace: TraceSink | null;
  readonly #announceLocalApic: boolean;
  /** The PIC pair, IOAPIC and local APIC, and the routing between them. */
  readonly platform: PcPlatform;
  /** Where device interrupt lines go (the platform's routing). */
  irqSink: IrqSink;
  /** kvm-clock, once a backend that emulates MSRs attached its TSC (the interpreter). */
  kvmClock: KvmClock | null = null;

  constructor(opts: MachineOptions) {
    this.backend = opts.backend;
    this.cpuModel = opts.cpuModel ?? cpuModelFor("host");
    this.#log = opts.log ?? ((m) => console.error(m));
    this.#trace = opts.trace ?? null;
    this.#announceLocalApic = opts.localApic ?? true;
    this.control = opts.control ?? new RunControl();
    this.memory = opts.memoryFile !== undefined && opts.backend.mapMemoryFile !== undefined
      ? opts.backend.mapMemoryFile(opts.memoryFile, opts.memSize)
      : opts.backend.createMemory(opts.memSize);
    this.memoryMapped = opts.memoryFile !== undefined && opts.backend.mapMemoryFile !== undefined;
    this.console = new SerialConsole(opts.serialSink ?? null, opts.serialInput ?? null);
    this.control.service = () => {
      this.clock.fireDue();
      this.console.pollInput();
      this.console.flush();
    };
    this.control.nextDeadline = () => this.clock.nextDeadline;
    this.control.now = () => this.clock.now();
    if (this.#trace) {
      const trace = this.#trace;
      const hex = (v: number) => "0x" + v.toString(16);
      this.ports.onUnclaimed = (k, a, s, v) =>
        trace(`unclaimed port ${k} ${hex(a)} size ${s} value ${hex(v)}`);
      this.mmio.onUnclaimed = (k, a, s, v) =>
        trace(`unclaimed MMIO ${k} ${hex(a)} size ${s} value ${hex(v)}`);
    }
    this.platform = createPcPlatform({
      clock: this.clock,
      log: this.#loggerFor("pc-platform"),
    });
    this.irqSink = this.platform;
    this.vcpu = this.backend.createVcpu(0, {
      memory: this.memory,
      ports: this.ports,
      mmio: this.mmio,
      control: this.control,
      interrupts: this.platform,
      trace: this.#trace,
      platform: this.#vcpuPlatform(),
      cpuModel: this.cpuModel,
    });
    this.attach(this.platform.plugin(), {}, "pc-platform", {
      kind: "platform",
      specifier: "pc-platform",
      options: {},
    });
  }

  /** CPUID leaves and MSRs of this PC for a backend that emulates them (the interpreter). */
  #vcpuPlatform(): VcpuPlatform {
    const pc = this.platform;
    return {
      localApic: this.#announceLocalApic && pc.apicEnabled,
      cpuid: (leaf) => this.kvmClock !== null ? kvmCpuidLeaf(leaf) : null,
      rdmsr: (msr) => {
        if (msr === MSR_APIC_BASE && pc.apicEnabled) return pc.apicBaseMsr;
        const kvm = this.kvmClock;
        return kvm !== null && kvm.handles(msr) ? kvm.rdmsr(msr) : undefined;
      },
      wrmsr: (msr, value) => {
        if (msr === MSR_APIC_BASE && pc.apicEnabled) {
          pc.writeApicBaseMsr(value);
          return true;
        }
        return this.kvmClock?.wrmsr(msr, value) ?? false;
      },
      attachTsc: (readTsc, tscHz) => {
        this.kvmClock = new KvmClock(this.memory, this.clock, { readTsc, tscHz });
      },
    };
  }

  #loggerFor(name: string): Logger {
    return {
      // A plugin's text: controls escaped, every line prefixed (see core/term_text.ts).
      info: (m) => this.#log(prefixLines(`${name}: `, m)),
      warn: (m) => this.#log(prefixLines(`${name}: warning: `, m)),
      debug: this.#trace ? (m) => this.#trace!(prefixLines(`${name}: `, m)) : () => {},
    };
  }

  /** Creates the device a plugin describes and claims its ranges. */
  attach(
    plugin: Plugin,
    options: Record<string, string> = {},
    name: string = options.name ?? plugin.name,
    source?: DeviceSource,
  ): AttachedDevice {
    const taken = this.devices.find((a) => a.name === name);
    if (taken) {
      const by = taken.source?.kind === "plugin" ? "another --device" : "a built-in device";
      throw new PluginError(
        `Device name "${name}" is already taken by ${by}: give this one another with ` +
          `--device PATH,name=NEW_NAME`,
      );
    }
    const host = this.#hostFor(name, options);
    let device: Device;
    try {
      device = plugin.create(host);
    } catch (err) {
      if (err instanceof VmmError) throw err;
      const denied = deviceDenial(name, "while starting", err);
      if (denied !== null) throw denied;
      const msg = escapeControl(String((err as Error)?.message ?? err));
      throw new PluginError(`Device "${name}" failed to start: ${msg}`, {
        cause: err,
      });
    }
    if (typeof device !== "object" || device === null) {
      throw new PluginError(`Device "${name}": create() must return a device object`);
    }
    for (const r of device.ports ?? []) this.ports.register(r.base, r.length, name, r);
    for (const r of device.mmio ?? []) this.mmio.register(r.base, r.length, name, r);
    const attached: AttachedDevice = source === undefined
      ? { name, plugin, device }
      : { name, plugin, device, source: { ...source, options: { ...source.options } } };
    this.devices.push(attached);
    return attached;
  }

  #hostFor(name: string, options: Record<string, string>): DeviceHost {
    const log = this.#loggerFor(name);
    const irqLines = new Map<number, IrqLine>();
    const control = this.control;
    return {
      name,
      options: makeOptions(options, name),
      memory: this.memory,
      irq: (line) => {
        checkIrqLine(line);
        let l = irqLines.get(line);
        if (!l) {
          l = {
            line,
            raise: () => this.irqSink.setLevel(line, true),
            lower: () => this.irqSink.setLevel(line, false),
            pulse: () => {
              this.irqSink.setLevel(line, true);
              this.irqSink.setLevel(line, false);
            },
          };
          irqLines.set(line, l);
        }
        return l;
      },
      clock: this.clock,
      log,
      console: this.console,
      power: {
        exit: (status) => {
          checkExitStatus(status);
          control.stop ??= { kind: "exit", status };
        },
        reset: () => {
          control.stop ??= { kind: "reset" };
        },
        off: () => {
          control.stop ??= { kind: "poweroff" };
        },
      },
    };
  }

  /** Puts the vCPU in the loader's start state. */
  load(setup: BootSetup): void {
    this.vcpu.setState(setup.state);
  }

  /**
   * Runs the guest until it stops or is paused. Device failures and guest faults come back as
   * `{ kind: "fault" }` with a register dump; nothing a guest or device does escapes as a throw.
   */
  run(): RunResult {
    this.control.stop = null;
    let reason: StopReason;
    this.clock.resume();
    this.#running = true;
    try {
      reason = this.vcpu.run();
    } catch (err) {
      if (!(err instanceof VmmError)) throw err;
      reason = { kind: "fault", message: err.message };
    } finally {
      this.#running = false;
      this.clock.pause();
    }
    this.console.flush();
    if (reason.kind !== "fault") return { reason };
    let dump: string | undefined;
    try {
      dump = formatCpuState(this.vcpu.getState());
    } catch {
      dump = undefined;
    }
    return { reason, dump };
  }

  /** True while `run()` runs the vCPU (a device or timer callback sees it; a snapshot must not). */
  get running(): boolean {
    return this.#running;
  }
  #running = false;

  /** Asks a running vCPU to pause at its next exit (safe from any thread holding `control`). */
  pause(): void {
    Atomics.store(this.control.requests, CONTROL_STATUS, 0);
    Atomics.store(this.control.requests, CONTROL_REQUEST, REQUEST_PAUSE);
  }

  /** Asks a running vCPU to stop with `status`. */
  stop(status = 0): void {
    Atomics.store(this.control.requests, CONTROL_STATUS, status);
    Atomics.store(this.control.requests, CONTROL_REQUEST, REQUEST_STOP);
  }

  /**
   * The machine's state besides RAM: vCPU, clock, every device (with where it came from), CPU
   * model, memory size and backend. Call it while the vCPU is not running (before `run()`, or
   * after it returned, e.g. paused).
   */
  saveState(): MachineState {
    if (this.#running) {
      throw new UsageError(
        "Cannot save the state of a running machine: pause it first (its run() must return)",
      );
    }
    const devices: DeviceSnapshot[] = this.devices.map((d) => {
      const state = d.device.save();
      return d.source === undefined ? { name: d.name, state } : {
        name: d.name,
        source: { ...d.source, options: { ...d.source.options } },
        state,
      };
    });
    return {
      version: MACHINE_STATE_VERSION,
      backend: this.backend.name,
      memSize: this.memory.size,
      cpuModel: { ...this.cpuModel },
      clock: this.clock.save(),
      cpu: this.vcpu.getState(),
      devices,
      kvmClock: this.kvmClock?.save() ?? null,
      backendState: this.backend.saveState?.() ?? null,
    };
  }

  /**
   * Loads a state `saveState` returned (from this process or another) into this machine, which
   * must have the same memory size and the same devices attached, by name and in order. Strict:
   * another format version, a missing, extra or renamed device, a device state version newer
   * than the device writes, or (for a state of the device's own version) a missing or unknown
   * field is a VmmError naming it. The clock is restored first, so devices re-arm their timers
   * in the restored VM time. Guest RAM is not part of it (see core/snapshot/).
   */
  restoreState(s: MachineState): void {
    if (s.version !== MACHINE_STATE_VERSION) {
      throw new VmmError(
        `Cannot restore machine state version ${JSON.stringify(s.version)}: this denovisor ` +
          `reads version ${MACHINE_STATE_VERSION} only`,
      );
    }
    if (s.memSize !== this.memory.size) {
      throw new VmmError(
        `Cannot restore a machine state of ${s.memSize} bytes of RAM into a machine with ` +
          `${this.memory.size}: build the machine with the snapshot's memory size`,
      );
    }
    const have = this.devices.map((d) => d.name);
    const want = s.devices.map((d) => d.name);
    for (const name of want) {
      if (!have.includes(name)) {
        throw new VmmError(
          `Cannot restore device "${name}": this machine has no such device (it has ` +
            `${have.join(", ")}); attach it before restoring`,
        );
      }
    }
    for (const name of have) {
      if (!want.includes(name)) {
        throw new VmmError(
          `Cannot restore: the state has no section for device "${name}" (it has ` +
            `${want.join(", ")}); a state is restored into the device set it was saved from`,
        );
      }
    }
    // The interpreter always has a kvm-clock; one the guest never enabled carries nothing.
    const kvmClockUsed = s.kvmClock !== null &&
      (Number(s.kvmClock.fields.systemTimeMsr ?? 0) !== 0 ||
        Number(s.kvmClock.fields.wallClockMsr ?? 0) !== 0);
    if (kvmClockUsed && this.kvmClock === null) {
      throw new VmmError(
        `Cannot restore the guest's kvm-clock state on the ${this.backend.name} backend, which ` +
          `has no userspace kvm-clock: restore this snapshot on the ${s.backend} backend`,
      );
    }
    // Check every device state before changing anything, so a refused state leaves the
    // machine as it was.
    for (const d of s.devices) {
      const attached = this.devices.find((a) => a.name === d.name)!;
      checkStateVersion(attached.plugin, d.state, d.name);
      if (d.state.version === attached.plugin.stateVersion) {
        checkFields(d.name, attached.device.save().fields, d.state.fields);
      }
    }
    this.clock.restore(s.clock);
    this.clock.pause();
    if (s.backendState !== null && s.backend === this.backend.name) {
      this.backend.restoreState?.(s.backendState);
    }
    // A KVM guest's kvmclock registration travels in its MSRs; here the machine's own kvm-clock
    // (the interpreter's) takes it over.
    let cpu = s.cpu;
    const kvmClockMsrs: [number, bigint][] = [];
    if (this.kvmClock !== null && s.kvmClock === null) {
      cpu = { ...s.cpu, msrs: new Map(s.cpu.msrs) };
      for (const msr of [MSR_KVM_WALL_CLOCK_NEW, MSR_KVM_SYSTEM_TIME_NEW]) {
        const v = cpu.msrs.get(msr);
        if (v === undefined) continue;
        cpu.msrs.delete(msr);
        if (v !== 0n) kvmClockMsrs.push([msr, v]);
      }
    }
    this.vcpu.setState(cpu);
    for (const d of s.devices) {
      const attached = this.devices.find((a) => a.name === d.name)!;
      try {
        attached.device.restore(d.state);
      } catch (err) {
        if (err instanceof VmmError) throw err;
        throw new PluginError(
          `Device "${d.name}" failed to restore its state: ${(err as Error)?.message ?? err}`,
          { cause: err },
        );
      }
    }
    if (s.kvmClock !== null && this.kvmClock !== null) this.kvmClock.restore(s.kvmClock);
    for (const [msr, v] of kvmClockMsrs) this.kvmClock!.wrmsr(msr, Number(v));
  }

  /** Resets every device to its power-on state. */
  resetDevices(): void {
    for (const d of this.devices) d.device.reset();
  }

  /** Releases devices, the vCPU and the backend. */
  close(): void {
    this.console.flush();
    for (const d of this.devices) {
      try {
        d.device.close?.();
      } catch {
        // A device failing to close must not hide the VM's own result.
      }
    }
    this.vcpu.close();
    this.backend.close();
  }
}

/**
 * Refuses a device state whose field names differ from what the device itself saves (same
 * version): a missing field would silently become a default, an unknown one would be dropped.
 */
function checkFields(
  device: string,
  expected: Record<string, unknown>,
  got: Record<string, unknown>,
  path = "",
): void {
  for (const k of Object.keys(expected)) {
    if (!(k in got)) {
      throw new VmmError(
        `Device "${device}" cannot restore its state: field "${path}${k}" is missing`,
      );
    }
  }
  for (const k of Object.keys(got)) {
    if (!(k in expected)) {
      throw new VmmError(
        `Device "${device}" cannot restore its state: unknown field "${path}${k}"`,
      );
    }
    const e = expected[k], g = got[k];
    if (isPlainObject(e) && isPlainObject(g)) {
      checkFields(device, e, g, `${path}${k}.`);
    }
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}
