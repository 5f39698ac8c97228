/**
 * The `interp` bench group.
 * - `interp mips`: guest instructions retired per second by the interpreter (with its block
 *   compiler) on the workload guest (sieve, CRC-32, 64-bit xorshift: tests/core/interp/guests/
 *   workload.asm), against QEMU TCG running the same guest from a disk image in the same run.
 *   QEMU cannot count instructions, so its MIPS is the interpreter's instruction count divided
 *   by QEMU's time, and its start-up cost cancels out by timing two repetition counts.
 * - `interp mips (mixed alu/sse2)`: the same measure on the mixed guest (tests/core/interp/
 *   guests/mixed.asm: integer ALU at every width, shifts/rotates, MUL/DIV, JCC/SETCC/CMOVCC,
 *   SSE2 integer and double ops on xorshift operands), whose checksum QEMU must print too.
 * - `interp pio`: time for one guest `OUT` to reach a plugin device and return, on the
 *   interpreter, against the same loop without the OUT (the bare loop's cost per iteration).
 */

import type { BenchRow } from "./report.ts";
import { haveQemu } from "./boot_group.ts";
import { runWorkload, type WorkloadGuest, workloadImage } from "./interp_bench.ts";
import { runFlatOnQemu } from "./_qemu_flat.ts";
import { MmioBus, PortBus } from "../core/bus.ts";
import { NO_INTERRUPTS, RunControl } from "../core/backend.ts";
import { resetCpuState } from "../core/cpu_state.ts";
import { createInterpBackend } from "../core/interp/backend.ts";

/**
 * Repetitions of a workload guest: timed on the interpreter, and the two run lengths QEMU is
 * timed at. QEMU's start-up (~0.1-0.2 s here) varies by tens of ms from run to run, so the long
 * run is long enough that QEMU spends ~0.4 s or more on the repetitions between the two.
 */
interface MipsReps {
  timed: number;
  short: number;
  long: number;
}
/** ~4M instructions a repetition: 20 of them took QEMU ~0.1 s here, within its jitter. */
const WORKLOAD_REPS: MipsReps = { timed: 25, short: 5, long: 100 };
/** ~3.9M instructions a repetition, ~15 MIPS on the interpreter: fewer timed repetitions. */
const MIXED_REPS: MipsReps = { timed: 10, short: 4, long: 50 };

const EXIT_HOLDERS = new WeakMap<PortBus, { control: RunControl }>();

/**
 * Nanoseconds per iteration of a real-mode guest loop of `n` iterations on the interpreter,
 * each doing `OUT dx, al` (or `OUT dx, eax` when `size` is 4) to `port` when `withOut` is set;
 * `ports` holds the devices (an exit device at 0xF4 is added).
 */
export function guestOutLoopNs(
  ports: PortBus,
  port: number,
  opts: { withOut: boolean; n: number; size?: 1 | 4 },
): number {
  const { withOut, n } = opts;
  const code = [0x66, 0xb9, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
  code.push(0xba, port & 0xff, port >> 8); // mov dx, port
  const loop = code.length;
  if (withOut) code.push(...(opts.size === 4 ? [0x66, 0xef] : [0xee])); // out dx, al / eax
  code.push(0x66, 0x49); // dec ecx
  code.push(0x75, (loop - (code.length + 2)) & 0xff); // jnz loop
  code.push(0x30, 0xc0, 0xe6, 0xf4); // xor al, al; out 0xf4, al
  const backend = createInterpBackend();
  const memory = backend.createMemory(1 << 20);
  memory.write(0x7c00, new Uint8Array(code));
  const control = new RunControl();
  // One exit device per bus, reused across runs: it stops whichever run is current.
  let holder = EXIT_HOLDERS.get(ports);
  if (!holder) {
    const h = { control };
    ports.register(0xf4, 1, "exit", {
      read: () => 0,
      write: () => {
        h.control.stop = { kind: "exit", status: 0 };
      },
    });
    EXIT_HOLDERS.set(ports, h);
    holder = h;
  }
  holder.control = control;
  const vcpu = backend.createVcpu(0, {
    memory,
    ports,
    mmio: new MmioBus(),
    control,
    interrupts: NO_INTERRUPTS,
    trace: null,
  });
  const s = resetCpuState();
  s.rip = 0x7c00n;
  vcpu.setState(s);
  const t0 = performance.now();
  const r = vcpu.run();
  const ns = (performance.now() - t0) * 1e6 / n;
  if (r.kind !== "exit") throw new Error(`OUT loop did not finish: ${JSON.stringify(r)}`);
  return ns;
}

/**
 * Nanoseconds one guest OUT to `port` adds to a loop iteration on the interpreter (best of
 * `rounds`), and the bare loop's cost per iteration.
 */
export function guestOutNs(
  ports: PortBus,
  port: number,
  opts: { n?: number; rounds?: number; size?: 1 | 4 } = {},
): { out: number; bare: number } {
  const n = opts.n ?? 1_000_000;
  let withOut = Infinity, bare = Infinity;
  for (let i = 0; i < (opts.rounds ?? 5); i++) {
    withOut = Math.min(
      withOut,
      guestOutLoopNs(ports, port, { withOut: true, n, size: opts.size }),
    );
    bare = Math.min(bare, guestOutLoopNs(ports, port, { withOut: false, n, size: opts.size }));
  }
  return { out: withOut - bare, bare };
}

/**
 * MIPS of the interpreter (block compiler on, best of 3 runs of `reps.timed` repetitions) and
 * of QEMU TCG on workload guest `guest`. QEMU cannot count instructions: its MIPS is the
 * interpreter's instruction count difference between `reps.short` and `reps.long` repetitions
 * over QEMU's time difference (best of 3 each), which cancels QEMU's start-up. Each QEMU run
 * must print what the interpreter printed for the same count (the guest's checksum), or this
 * throws: the two did not do the same work.
 */
async function mipsAgainstQemu(
  guest: WorkloadGuest,
  reps: MipsReps,
): Promise<Omit<BenchRow, "name" | "baseline">> {
  runWorkload(1, { guest }); // warm the compiler up
  let best = { instructions: 0, seconds: Infinity };
  for (let i = 0; i < 3; i++) {
    const r = runWorkload(reps.timed, { guest });
    if (r.seconds < best.seconds) best = r;
  }
  const ourMips = best.instructions / best.seconds / 1e6;
  const image = workloadImage(guest);
  const count = (n: number) => {
    const r = runWorkload(n, { guest });
    return { n, instructions: r.instructions, serial: r.serial, seconds: Infinity };
  };
  const short = count(reps.short), long = count(reps.long);
  for (let i = 0; i < 3; i++) {
    for (const run of [short, long]) { // alternated, as drift in the host's load hits both
      const q = await runFlatOnQemu(image, run.n);
      if (q.serial !== run.serial) {
        throw new Error(
          `${guest} guest, ${run.n} repetitions: QEMU printed ${JSON.stringify(q.serial)} but ` +
            `the interpreter printed ${JSON.stringify(run.serial)}: an interpreter bug (for the ` +
            "mixed guest, tests/mixed_guest_test.ts compares with the host CPU)",
        );
      }
      run.seconds = Math.min(run.seconds, q.seconds);
    }
  }
  const qemuMips = (long.instructions - short.instructions) /
    Math.max(long.seconds - short.seconds, 1e-6) / 1e6;
  return { unit: "MIPS", value: ourMips, baselineValue: qemuMips, ratio: ourMips / qemuMips };
}

/** Runs the group. */
export async function runInterpGroup(): Promise<BenchRow[] | string> {
  const rows: BenchRow[] = [];
  // interp pio: a guest OUT to a plugin-style latch device, best of a few runs.
  const latch = new PortBus();
  let last = 0;
  latch.register(0x510, 1, "latch", {
    read: () => last,
    write: (_o, _s, v) => {
      last = v;
    },
  });
  const { out, bare } = guestOutNs(latch, 0x510, { n: 2_000_000 });
  rows.push({
    name: "interp pio",
    unit: "ns",
    value: out,
    baseline: "the same guest loop without the OUT (ns per iteration)",
    baselineValue: bare,
    ratio: out / bare,
  });

  if (!(await haveQemu())) {
    console.error(
      "bench interp: qemu-system-x86_64 is missing; install qemu-system-x86 for the baseline",
    );
    return rows;
  }
  rows.push({
    ...await mipsAgainstQemu("workload", WORKLOAD_REPS),
    name: "interp mips",
    baseline: "QEMU TCG, same guest (start-up cancelled by two run lengths)",
  });
  rows.push({
    ...await mipsAgainstQemu("mixed", MIXED_REPS),
    name: "interp mips (mixed alu/sse2)",
    baseline: "QEMU TCG, same guest and checksum (start-up cancelled by two run lengths; " +
      "instructions: the interpreter's counter)",
  });
  return rows;
}
