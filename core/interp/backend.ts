/**
 * The interpreter backend: runs guests on the TypeScript x86-64 CPU in `cpu.ts`/`exec.ts` when
 * KVM is not available (or not wanted). A vCPU runs instruction slices, delivers exceptions and
 * interrupts between them, sleeps on HLT until an interrupt or a timer deadline, and returns to
 * the machine when a device or another thread asks it to stop.
 */

import type { Backend, StopReason, Vcpu, VcpuEnv } from "../backend.ts";
import type { CpuEvents, CpuState } from "../cpu_state.ts";
import { VmmError } from "../errors.ts";
import { GuestMemory } from "../memory.ts";
import { Cpu, ExecOutsideRamError, F_IF, FAULT, TRIPLE, UnsupportedError } from "./cpu.ts";
import { setCpuidPlatform } from "./cpuid.ts";
import { cpuModelFor } from "../cpu_model.ts";
import { runSlice } from "./exec.ts";
import { runSliceJit } from "./jit.ts";

/** Instructions per slice between interrupt checks and `control.service()` calls. */
const SLICE = 4096;
/** Longest HLT sleep before looking at requests and console input again (ms). */
const MAX_HALT_WAIT_MS = 1;
/** The interpreter's TSC counts nanoseconds of host time (see `Cpu.readTsc`). */
const TSC_HZ = 1e9;

/** Reads a boolean environment flag ("0" is false), or `dflt` when unset or not permitted. */
function envFlag(name: string, dflt: boolean): boolean {
  try {
    const v = Deno.env.get(name);
    return v === undefined ? dflt : v !== "0";
  } catch {
    return dflt;
  }
}

/** One interpreted vCPU. */
export class InterpVcpu implements Vcpu {
  readonly id: number;
  readonly cpu: Cpu;
  readonly #env: VcpuEnv;
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));
  /**
   * Compile hot basic blocks to JavaScript (jit.ts); false runs the plain interpreter. The
   * environment variable DENOVISOR_INTERP_JIT=0 turns it off (for bisecting a guest problem).
   */
  jit = envFlag("DENOVISOR_INTERP_JIT", true);

  constructor(id: number, env: VcpuEnv) {
    this.id = id;
    this.#env = env;
    this.cpu = new Cpu(env.memory, env);
    this.cpu.setModel(env.cpuModel ?? cpuModelFor("host"));
    env.platform?.attachTsc(() => this.cpu.readTsc(), TSC_HZ);
    // Device writes to guest RAM reach the CPU's code caches through the memory's page-state
    // map (core/page_state.ts), from this thread or a sandboxed device's Worker alike.
  }

  /** An event a restored state (from KVM) was delivering: delivered when the vCPU next runs. */
  #pendingEvent: CpuEvents | null = null;

  getState(): CpuState {
    const s = this.cpu.getState();
    if (this.#pendingEvent !== null) s.events = { ...this.#pendingEvent, shadow: s.events.shadow };
    return s;
  }

  setState(state: CpuState): void {
    const e = state.events;
    if (e.nmiInjected || e.nmiPending || (e.interrupt >= 0 && e.interruptSoft)) {
      throw new VmmError(
        `The interpreter cannot take over a vCPU in the middle of delivering ` +
          `${e.interrupt >= 0 ? `software interrupt ${e.interrupt}` : "an NMI"}: restore this ` +
          `state on KVM`,
      );
    }
    this.cpu.setState(state);
    this.#pendingEvent = e.interrupt >= 0 || e.exception >= 0 ? { ...e } : null;
  }

  /** Runs until the VM must stop or pause, or the guest faults beyond recovery. */
  run(): StopReason {
    const cpu = this.cpu;
    const env = this.#env;
    const ctl = env.control;
    setCpuidPlatform(env.platform ?? null, cpu.model);
    const pending = this.#pendingEvent;
    if (pending !== null) {
      this.#pendingEvent = null;
      cpu.halted = false;
      const r = this.#guard(() =>
        pending.exception >= 0
          ? cpu.deliverChecked(pending.exception, pending.exceptionErrorCode, false, cpu.ip, 0)
          : cpu.deliverChecked(pending.interrupt & 0xff, -1, false, cpu.ip, 1)
      );
      if (r !== null) return r;
    }
    for (;;) {
      if (ctl.checkRequests()) return this.#takeStop();
      if (cpu.halted) {
        const r = this.#halt();
        if (r !== null) return r;
        continue;
      }
      // Maskable interrupts at the slice boundary (not inside an STI/MOV SS shadow).
      if (cpu.shadow) {
        cpu.shadow = false;
        const r = this.#slice(1);
        if (r !== null) return r;
        continue;
      } else if ((cpu.flags & F_IF) && env.interrupts.hasInterrupt()) {
        const vec = env.interrupts.acknowledge();
        const r = this.#guard(() => cpu.deliverChecked(vec & 0xff, -1, false, cpu.ip, 1));
        if (r !== null) return r;
      }
      const r = this.#slice(env.trace !== null ? 1 : SLICE);
      if (r !== null) return r;
      ctl.service();
    }
  }

  close(): void {}

  #takeStop(): StopReason {
    const s = this.#env.control.stop ?? { kind: "pause" };
    this.#env.control.stop = null;
    return s;
  }

  /** Runs up to `n` instructions. Returns a stop reason, or null to keep going. */
  #slice(n: number): StopReason | null {
    const cpu = this.cpu;
    cpu.breakLoop = false;
    const trace = this.#env.trace;
    try {
      if (trace !== null) {
        trace(`rip=0x${cpu.ip.toString(16)} cpl=${cpu.cpl}`);
      }
      if (this.jit && trace === null) runSliceJit(cpu, n);
      else runSlice(cpu, n);
    } catch (e) {
      const r = this.#onThrow(e);
      if (r !== null) return r;
    }
    if (this.#env.control.stop !== null) return this.#takeStop();
    return null;
  }

  /** Runs `fn` (exception delivery) and turns what it throws into a stop reason. */
  #guard(fn: () => void): StopReason | null {
    try {
      fn();
      return null;
    } catch (e) {
      return this.#onThrow(e);
    }
  }

  /** Turns what the CPU threw into a stop reason (the machine appends the register dump). */
  #onThrow(e: unknown): StopReason | null {
    const cpu = this.cpu;
    if (e === FAULT) {
      cpu.ip = cpu.startIp;
      return this.#guard(() =>
        cpu.deliverChecked(
          cpu.excVec,
          cpu.excHasCode ? cpu.excCode : -1,
          false,
          cpu.startIp,
          0,
        )
      );
    }
    if (e === TRIPLE) {
      return {
        kind: "fault",
        message: `triple fault (${cpu.faultChain}): the guest's IDT, GDT, TSS or stacks are ` +
          `unusable, so the CPU shut down`,
      };
    }
    if (e instanceof ExecOutsideRamError || e instanceof UnsupportedError) {
      return { kind: "fault", message: e.message };
    }
    throw e;
  }

  /** HLT: sleep until an interrupt arrives; null means "resume execution". */
  #halt(): StopReason | null {
    const cpu = this.cpu;
    const env = this.#env;
    const ctl = env.control;
    if (!(cpu.flags & F_IF)) {
      return {
        kind: "fault",
        message: "CPU halted with interrupts disabled: nothing can wake it",
      };
    }
    for (;;) {
      if (env.interrupts.hasInterrupt()) {
        cpu.halted = false;
        const vec = env.interrupts.acknowledge();
        return this.#guard(() => cpu.deliverChecked(vec & 0xff, -1, false, cpu.ip, 1));
      }
      ctl.service();
      if (ctl.checkRequests()) return this.#takeStop();
      if (env.interrupts.hasInterrupt()) continue;
      // Both in VM-clock ns: sleep until the next timer is due (at most MAX_HALT_WAIT_MS).
      const untilMs = (ctl.nextDeadline() - ctl.now()) / 1e6;
      const wait = Math.max(0, Math.min(MAX_HALT_WAIT_MS, untilMs));
      if (wait > 0) Atomics.wait(this.#sleeper, 0, 0, wait);
    }
  }
}

/**
 * Creates the interpreter backend.
 *
 * @example
 * ```ts
 * import { createInterpBackend } from "./backend.ts";
 * const backend = createInterpBackend();
 * const memory = backend.createMemory(1 << 20);
 * console.log(backend.name, memory.size);
 * ```
 */
export function createInterpBackend(): Backend {
  return {
    name: "interp",
    createMemory(size: number): GuestMemory {
      return GuestMemory.allocate(size);
    },
    createVcpu(id: number, env: VcpuEnv): Vcpu {
      return new InterpVcpu(id, env);
    },
    close(): void {},
  };
}
