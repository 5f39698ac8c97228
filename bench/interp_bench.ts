/**
 * Interpreter speed: the workload guest (sieve, bitwise CRC-32, xorshift64* in 64-bit long mode)
 * run to completion on the interpreter backend. `deno bench` times one full run; run this file
 * directly (`deno run -A bench/interp_bench.ts [reps]`) to print millions of guest instructions
 * per second (MIPS), the figure the interpreter is judged by.
 */

import process from "node:process";
import { MmioBus, PortBus } from "../core/bus.ts";
import { NO_INTERRUPTS, RunControl } from "../core/backend.ts";
import { resetCpuState } from "../core/cpu_state.ts";
import { createInterpBackend, type InterpVcpu } from "../core/interp/backend.ts";

const IMAGE = Deno.readFileSync(
  new URL("../tests/core/interp/guests/workload.bin", import.meta.url),
);
/** Where the guest is loaded and entered (real mode, 0000:7C00). */
const LOAD_ADDR = 0x7c00;
/** The dword the workload guest reads its repetition count from. */
const REPS_ADDR = 0x500;

/**
 * Runs the workload `reps` times; returns guest instructions executed, wall-clock seconds and
 * CPU seconds of this process (the fairer figure on a machine shared with other work).
 */
export function runWorkload(
  reps: number,
  jit = true,
): { instructions: number; seconds: number; cpuSeconds: number } {
  const backend = createInterpBackend();
  const memory = backend.createMemory(16 << 20);
  memory.write(LOAD_ADDR, IMAGE);
  memory.writeU32(REPS_ADDR, reps);
  const ports = new PortBus();
  const control = new RunControl();
  ports.register(0xf4, 1, "exit", {
    read: () => 0,
    write: (_o, _s, v) => {
      control.stop = { kind: "exit", status: v };
    },
  });
  const vcpu = backend.createVcpu(0, {
    memory,
    ports,
    mmio: new MmioBus(),
    control,
    interrupts: NO_INTERRUPTS,
    trace: null,
  }) as InterpVcpu;
  vcpu.jit = jit;
  const s = resetCpuState();
  s.rip = BigInt(LOAD_ADDR);
  vcpu.setState(s);
  const t0 = performance.now();
  const u0 = process.cpuUsage();
  const stop = vcpu.run();
  const u1 = process.cpuUsage(u0);
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = (u1.user + u1.system) / 1e6;
  if (stop.kind !== "exit" || stop.status !== 0) {
    throw new Error(`workload guest did not finish: ${JSON.stringify(stop)}`);
  }
  return { instructions: vcpu.cpu.icount, seconds, cpuSeconds };
}

Deno.bench({
  name: "interp: workload guest, 1 repetition (~4M instructions), plain interpreter",
  group: "interp",
  baseline: true,
  fn: () => void runWorkload(1, false),
});

Deno.bench({
  name: "interp: workload guest, 1 repetition (~4M instructions), with the block compiler",
  group: "interp",
  fn: () => void runWorkload(1, true),
});

if (import.meta.main) {
  const reps = Number(Deno.args[0] ?? 5);
  for (const jit of [false, true]) {
    runWorkload(1, jit); // warm-up
    const { instructions, seconds, cpuSeconds } = runWorkload(reps, jit);
    console.log(
      `interp${jit ? " + block compiler" : ""}: ${(instructions / 1e6).toFixed(1)}M instructions ` +
        `in ${seconds.toFixed(3)} s wall (${(instructions / seconds / 1e6).toFixed(1)} MIPS), ` +
        `${cpuSeconds.toFixed(3)} s CPU (${(instructions / cpuSeconds / 1e6).toFixed(1)} MIPS)`,
    );
  }
}
