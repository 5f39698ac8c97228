/**
 * A Machine owns guest memory, the port and MMIO buses, the clock, the serial console, its
 * devices and its vCPU, and runs them: `start` (load + run), `pause`, `resume`, `stop`. Fatal
 * stops come back with a register dump. Devices are attached through the plugin API, so
 * built-in devices and third-party plugins are wired the same way.
 */

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
import { VmClock } from "./clock.ts";
import { formatCpuState } from "./cpu_state.ts";
import { PluginError, VmmError } from "./errors.ts";
import type { GuestMemory } from "./memory.ts";
import { type ByteSink, type InputRing, SerialConsole } from "./serial_io.ts";
import { createPcPlatform, MSR_APIC_BASE, type PcPlatform } from "../devices/platform.ts";
import { KvmClock, kvmCpuidLeaf } from "../devices/kvm_clock.ts";
import { makeOptions } from "../plugins/options.ts";
import type { Device, DeviceHost, IrqLine, Logger, Plugin } from "../plugins/mod.ts";

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
}

/** A device attached to a machine. */
export interface AttachedDevice {
  readonly name: string;
  readonly plugin: Plugin;
  readonly device: Device;
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
    this.memory = opts.backend.createMemory(opts.memSize);
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
    this.attach(this.platform.plugin());
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
      info: (m) => this.#log(`${name}: ${m}`),
      warn: (m) => this.#log(`${name}: warning: ${m}`),
      debug: this.#trace ? (m) => this.#trace!(`${name}: ${m}`) : () => {},
    };
  }

  /** Creates the device a plugin describes and claims its ranges. */
  attach(
    plugin: Plugin,
    options: Record<string, string> = {},
    name: string = options.name ?? plugin.name,
  ): AttachedDevice {
    const host = this.#hostFor(name, options);
    let device: Device;
    try {
      device = plugin.create(host);
    } catch (err) {
      if (err instanceof VmmError) throw err;
      throw new PluginError(`Device "${name}" failed to start: ${(err as Error)?.message ?? err}`, {
        cause: err,
      });
    }
    if (typeof device !== "object" || device === null) {
      throw new PluginError(`Device "${name}": create() must return a device object`);
    }
    for (const r of device.ports ?? []) this.ports.register(r.base, r.length, name, r);
    for (const r of device.mmio ?? []) this.mmio.register(r.base, r.length, name, r);
    const attached = { name, plugin, device };
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
          control.stop ??= { kind: "exit", status: status & 0xff };
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
    try {
      reason = this.vcpu.run();
    } catch (err) {
      if (!(err instanceof VmmError)) throw err;
      reason = { kind: "fault", message: err.message };
    } finally {
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
