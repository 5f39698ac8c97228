/**
 * A single-stepping view of the interpreter's CPU for the differential tester
 * (`tools/difftest/`): execute exactly one instruction and report an exception instead of
 * delivering it through the IDT, so results can be compared with the host CPU instruction by
 * instruction.
 *
 * How to set it up:
 * - Default (real paging): give a `CpuState` in 64-bit long mode — CR0.PE|PG, CR4.PAE,
 *   EFER.LME|LMA, a 64-bit CS (`l: 1`, `dpl: 3` for CPL 3, selector RPL 3), SS with DPL 3 — and
 *   write 4-level page tables into `memory` with CR3 pointing at them (entries with the U/S bit
 *   for user pages). Translation, A/D bits, permission checks and #PF error codes then behave as
 *   on hardware.
 * - `{ identityPaging: true }`: linear address = guest-physical address even though CR0.PG is
 *   set; no page tables are needed, nothing is ever write-protected or non-executable, and
 *   #PF is never raised (an access outside RAM still goes to the (empty) MMIO bus and reads as
 *   all ones). Non-canonical addresses still raise #GP(0).
 *
 * After `{ kind: "exception" }` the state is the state before the faulting instruction (RIP
 * points at it), except that a REP string instruction keeps the iterations it completed, as on
 * hardware; CR2 holds the faulting address for #PF. No port or MMIO devices are attached:
 * IN/OUT at CPL 3 with IOPL 0 raise #GP as they should.
 *
 * @example
 * ```ts
 * import { createUserModeCpu } from "./difftest_api.ts";
 * import { GuestMemory } from "../memory.ts";
 * import { flatSegment, resetCpuState } from "../cpu_state.ts";
 *
 * const memory = GuestMemory.allocate(1 << 20);
 * memory.write(0x1000, new Uint8Array([0x48, 0x01, 0xd8])); // add rax, rbx
 * const cpu = createUserModeCpu(memory, { identityPaging: true });
 * const s = resetCpuState();
 * s.cr0 = 0x8000_0011;
 * s.cr4 = 0x20;
 * s.efer = 0x500;
 * s.cs = { ...flatSegment(0x33, true), l: 1, db: 0, dpl: 3 };
 * s.ss = { ...flatSegment(0x2b, false), dpl: 3 };
 * s.rip = 0x1000n;
 * s.gpr[0] = 2n;
 * s.gpr[3] = 3n;
 * cpu.setState(s);
 * console.log(cpu.step(), cpu.getState().gpr[0]); // { kind: "ok" } 5n
 * ```
 * @module
 */

import { type CpuModel, cpuModelFor } from "../cpu_model.ts";
import { MmioBus, PortBus } from "../bus.ts";
import { RunControl } from "../backend.ts";
import type { CpuState } from "../cpu_state.ts";
import type { GuestMemory } from "../memory.ts";
import { Cpu, FAULT } from "./cpu.ts";
import { step } from "./exec.ts";
import { stepJit } from "./jit.ts";

/** The outcome of one instruction. */
export type StepResult =
  | { kind: "ok" }
  | { kind: "exception"; vector: number; errorCode?: number };

/** A CPU that executes one instruction at a time and reports exceptions. */
export interface UserModeCpu {
  /** Loads the architectural state (registers, segments, control registers, MSRs). */
  setState(state: CpuState): void;
  /** Reads the architectural state. */
  getState(): CpuState;
  /** Executes exactly one instruction. */
  step(): StepResult;
}

/** Options for `createUserModeCpu`. */
export interface UserModeCpuOptions {
  /** Linear addresses are physical even with paging on (see the module documentation). */
  identityPaging?: boolean;
  /**
   * Execute each instruction through the block compiler's template when it has one (a
   * one-instruction block), to check the templates against the host CPU.
   */
  jit?: boolean;
  /** The CPU model whose vendor behaviour to follow (default: the host vendor's). */
  model?: CpuModel;
}

/**
 * Creates a single-stepping CPU over `memory`.
 *
 * @example
 * ```ts
 * import { createUserModeCpu } from "./difftest_api.ts";
 * import { GuestMemory } from "../memory.ts";
 * const cpu = createUserModeCpu(GuestMemory.allocate(1 << 16));
 * console.log(typeof cpu.step);
 * ```
 */
export function createUserModeCpu(
  memory: GuestMemory,
  options: UserModeCpuOptions = {},
): UserModeCpu {
  const cpu = new Cpu(memory, {
    ports: new PortBus(),
    mmio: new MmioBus(),
    control: new RunControl(),
  });
  cpu.setModel(options.model ?? cpuModelFor("host"));
  cpu.identityPaging = options.identityPaging ?? false;
  const jit = options.jit ?? false;
  return {
    setState(state: CpuState): void {
      cpu.setState(state);
    },
    getState(): CpuState {
      return cpu.getState();
    },
    step(): StepResult {
      try {
        if (jit) stepJit(cpu);
        else step(cpu);
        return { kind: "ok" };
      } catch (e) {
        if (e !== FAULT) throw e;
        cpu.ip = cpu.startIp;
        return cpu.excHasCode
          ? { kind: "exception", vector: cpu.excVec, errorCode: cpu.excCode }
          : { kind: "exception", vector: cpu.excVec };
      }
    },
  };
}
