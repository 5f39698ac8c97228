/**
 * Test harness for interpreter guests: loads a flat binary into fresh guest RAM, attaches a
 * byte-collecting UART stand-in at 0x3F8 and an exit port at 0xF4, and runs the vCPU with an
 * instruction budget so a broken guest fails the test instead of hanging it.
 */

import { type IoHandler, MmioBus, PortBus } from "../../../core/bus.ts";
import {
  type InterruptController,
  NO_INTERRUPTS,
  RunControl,
  type StopReason,
} from "../../../core/backend.ts";
import { type CpuState, resetCpuState } from "../../../core/cpu_state.ts";
import { createInterpBackend, type InterpVcpu } from "../../../core/interp/backend.ts";
import type { GuestMemory } from "../../../core/memory.ts";

/** Where guests are loaded (and entered, in real mode at 0000:7C00). */
export const LOAD_ADDR = 0x7c00;

/** What a guest run produced. */
export interface GuestRun {
  stop: StopReason;
  /** Bytes written to port 0x3F8, as text. */
  out: string;
  vcpu: InterpVcpu;
  memory: GuestMemory;
}

/** Options for `runGuest`. */
export interface RunOptions {
  memSize?: number;
  /** Adjusts the start state (defaults: real mode at 0000:7C00). */
  state?: (s: CpuState) => void;
  /** Maximum `service()` calls (≈ 4096 instructions each) before the run is cut off. */
  maxSlices?: number;
  interrupts?: InterruptController;
  /** Runs after the image is loaded, before the vCPU starts (poke parameters into RAM). */
  before?: (memory: GuestMemory) => void;
  /** Compile hot blocks (default true, as the backend does). */
  jit?: boolean;
  /** One MMIO device to attach. */
  mmio?: { base: number; length: number } & IoHandler;
}

/** Reads a guest binary checked in next to this file. */
export function guest(name: string): Uint8Array {
  return Deno.readFileSync(new URL(`./guests/${name}.bin`, import.meta.url));
}

/** Runs `image` until it exits through port 0xF4, faults, or runs out of budget. */
export function runGuest(image: Uint8Array, opts: RunOptions = {}): GuestRun {
  const backend = createInterpBackend();
  const memory = backend.createMemory(opts.memSize ?? 16 << 20);
  memory.write(LOAD_ADDR, image);
  opts.before?.(memory);
  const ports = new PortBus();
  const control = new RunControl();
  let out = "";
  ports.register(0x3f8, 1, "uart-stub", {
    read: () => 0,
    write: (_o, _s, v) => {
      out += String.fromCharCode(v & 0xff);
    },
  });
  ports.register(0xf4, 1, "exit", {
    read: () => 0xff,
    write: (_o, _s, v) => {
      control.stop = { kind: "exit", status: v & 0xff };
    },
  });
  const mmio = new MmioBus();
  if (opts.mmio) mmio.register(opts.mmio.base, opts.mmio.length, "test-mmio", opts.mmio);
  let slices = 0;
  const max = opts.maxSlices ?? 20_000;
  control.service = () => {
    if (++slices > max && control.stop === null) {
      control.stop = { kind: "fault", message: `test budget of ${max} slices exhausted` };
    }
  };
  const vcpu = backend.createVcpu(0, {
    memory,
    ports,
    mmio,
    control,
    interrupts: opts.interrupts ?? NO_INTERRUPTS,
    trace: null,
  }) as InterpVcpu;
  vcpu.jit = opts.jit ?? true;
  const s = resetCpuState();
  s.rip = BigInt(LOAD_ADDR);
  opts.state?.(s);
  vcpu.setState(s);
  const stop = vcpu.run();
  return { stop, out, vcpu, memory };
}
