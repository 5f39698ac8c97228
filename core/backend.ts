/**
 * The seam between the machine and a CPU backend (`kvm` or `interp`). A backend allocates guest
 * RAM it can run on and creates vCPUs; a vCPU runs guest code, sends every port and MMIO access
 * to the buses synchronously, and returns from `run()` only when the machine must act.
 */

import type { CpuModel } from "./cpu_model.ts";
import type { MmioBus, PortBus } from "./bus.ts";
import type { CpuState } from "./cpu_state.ts";
import type { GuestMemory } from "./memory.ts";

/** Backend names, as `--backend` spells them. */
export type BackendName = "kvm" | "interp";

/** Why `Vcpu.run()` returned. */
export type StopReason =
  | { kind: "exit"; status: number }
  | { kind: "reset" }
  | { kind: "poweroff" }
  | { kind: "pause" }
  | { kind: "fault"; message: string };

/** Requests from other threads, in a shared Int32Array (index CONTROL_REQUEST). */
export const CONTROL_REQUEST = 0;
/** No request. */
export const REQUEST_NONE = 0;
/** Pause at the next exit. */
export const REQUEST_PAUSE = 1;
/** Stop the VM (exit status in CONTROL_STATUS). */
export const REQUEST_STOP = 2;
/** Exit status that goes with REQUEST_STOP. */
export const CONTROL_STATUS = 1;
/**
 * Time slices for work the vCPU's thread does between runs (live migration): SLICE_OFF, or
 * SLICE_ARMED while the thread runs a slice, which another thread ends by moving it to
 * SLICE_DUE (compare-and-swap, so a late tick after the work is done changes nothing).
 */
export const CONTROL_SLICE = 2;
/** No slicing. */
export const SLICE_OFF = 0;
/** A slice runs; the ticker may end it. */
export const SLICE_ARMED = 1;
/** The slice is over: the vCPU returns `pause`. */
export const SLICE_DUE = 2;
/** The slice length the vCPU's thread asks for (ms), set before it arms a slice. */
export const CONTROL_SLICE_MS = 3;
/** Bumped by the vCPU's thread each time it arms a slice (the ticker times each from then). */
export const CONTROL_SLICE_SEQ = 4;
/** Cells of the shared control array. */
export const CONTROL_CELLS = 8;

/**
 * Stop requests shared by devices (same thread) and the supervisor (other threads through a
 * SharedArrayBuffer). A vCPU checks `stop` after every exit or I/O instruction and calls
 * `service()` often enough for timers and console input to stay on time.
 */
export class RunControl {
  /** Set by a device (debug-exit, reset) or by `checkRequests`; the vCPU returns it. */
  stop: StopReason | null = null;
  /** Cross-thread requests (see CONTROL_REQUEST). */
  readonly requests: Int32Array;
  /** Runs due timers and delivers console input; installed by the machine. */
  service: () => void = () => {};
  /** Earliest timer deadline in VM-clock ns (Infinity when none), for backends that sleep. */
  nextDeadline: () => number = () => Infinity;
  /** The VM clock in ns, the time base of `nextDeadline`; installed by the machine. */
  now: () => number = () => performance.now() * 1e6;

  constructor(
    requests: Int32Array = new Int32Array(new SharedArrayBuffer(4 * CONTROL_CELLS)),
  ) {
    this.requests = requests;
  }

  /** Turns a pending cross-thread request into `stop`. Returns true when the vCPU must return. */
  checkRequests(): boolean {
    if (this.stop !== null) return true;
    const r = Atomics.load(this.requests, CONTROL_REQUEST);
    if (r === REQUEST_NONE) {
      if (
        this.requests.length <= CONTROL_SLICE ||
        Atomics.load(this.requests, CONTROL_SLICE) !== SLICE_DUE
      ) return false;
      Atomics.compareExchange(this.requests, CONTROL_SLICE, SLICE_DUE, SLICE_ARMED);
      this.stop = { kind: "pause" };
      return true;
    }
    Atomics.store(this.requests, CONTROL_REQUEST, REQUEST_NONE);
    this.stop = r === REQUEST_PAUSE
      ? { kind: "pause" }
      : { kind: "exit", status: Atomics.load(this.requests, CONTROL_STATUS) };
    return true;
  }
}

/** The machine's maskable-interrupt input, as the PIC/APIC present it to a vCPU. */
export interface InterruptController {
  /** True while an unmasked interrupt waits for the CPU (the INTR pin). */
  hasInterrupt(): boolean;
  /** The CPU accepts it: returns the vector (the INTA cycle). */
  acknowledge(): number;
}

/** An interrupt controller with nothing attached. */
export const NO_INTERRUPTS: InterruptController = {
  hasInterrupt: () => false,
  acknowledge: () => 0,
};

/** Receives a one-line description of each executed instruction or exit with `--trace`. */
export type TraceSink = (line: string) => void;

/** The EAX, EBX, ECX and EDX of one CPUID leaf. */
export interface CpuidLeaf {
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/**
 * What the machine's platform tells a backend that emulates CPUID and MSRs itself (the
 * interpreter): which platform features CPUID may announce, and the MSRs the machine's devices
 * own (IA32_APIC_BASE, kvm-clock). KVM implements all of this in the kernel and ignores it.
 */
export interface VcpuPlatform {
  /** A local APIC answers at IA32_APIC_BASE (CPUID.1:EDX.APIC). */
  readonly localApic: boolean;
  /** Platform CPUID leaves (the hypervisor range 0x40000000+), or null for the CPU's own. */
  cpuid(leaf: number, sub: number): CpuidLeaf | null;
  /** RDMSR of an MSR the machine owns, or undefined when it is the CPU's own. */
  rdmsr(msr: number): number | undefined;
  /**
   * WRMSR: false when the machine does not own `msr`. Throws a VmmError (GuestMemoryError for a
   * bad guest address) for a value the guest may not write; the CPU raises #GP then.
   */
  wrmsr(msr: number, value: number): boolean;
  /**
   * The backend hands over its TSC: `readTsc` returns what RDTSC would now, counting `tscHz`
   * per second. Called once by `createVcpu`; paravirtual clocks are offered only after it.
   */
  attachTsc(readTsc: () => number, tscHz: number): void;
}

/** Everything a vCPU needs from the machine. */
export interface VcpuEnv {
  readonly memory: GuestMemory;
  readonly ports: PortBus;
  readonly mmio: MmioBus;
  readonly control: RunControl;
  interrupts: InterruptController;
  readonly trace: TraceSink | null;
  /** Platform CPUID leaves and MSRs, for backends that emulate them (absent: none). */
  readonly platform?: VcpuPlatform;
  /** The CPU the vCPU presents (absent: the host vendor's model). */
  readonly cpuModel?: CpuModel;
}

/** One virtual CPU. */
export interface Vcpu {
  readonly id: number;
  /** Reads the architectural state. */
  getState(): CpuState;
  /** Writes the architectural state. */
  setState(state: CpuState): void;
  /**
   * Runs guest code until the VM must stop or pause. Guest faults the VM cannot survive (triple
   * fault, host limits) come back as `{ kind: "fault" }` with a message.
   */
  run(): StopReason;
  /** Releases host resources. */
  close(): void;
}

/** A CPU backend. */
export interface Backend {
  readonly name: BackendName;
  /** Allocates `size` bytes of zeroed guest RAM this backend can run on. */
  createMemory(size: number): GuestMemory;
  /**
   * Guest RAM over a snapshot's memory file (`size` bytes of raw RAM), mapped copy-on-write
   * (MAP_PRIVATE): no copy up front, and the file is never written. Absent where the backend
   * cannot run on such a mapping (the interpreter's RAM is a SharedArrayBuffer): read the file.
   */
  mapMemoryFile?(path: string, size: number): GuestMemory;
  /**
   * Feeds the pages the guest wrote that the page-state map cannot see itself (KVM's stores
   * go straight to RAM: KVM_GET_DIRTY_LOG) into its dirty bits. Absent where every store
   * marks the map already (the interpreter). Call it while no vCPU runs.
   */
  collectDirtyLog?(): void;
  /** Creates vCPU `id` over `env.memory` (which must come from `createMemory`). */
  createVcpu(id: number, env: VcpuEnv): Vcpu;
  /**
   * VM-wide state the backend keeps itself, for snapshots (KVM: its kvmclock, KVM_GET_CLOCK);
   * absent when there is none. Plain data (bigints allowed).
   */
  saveState?(): Record<string, unknown>;
  /** Loads what `saveState` of a backend of the same name returned. */
  restoreState?(state: Record<string, unknown>): void;
  /** Releases host resources. */
  close(): void;
}
