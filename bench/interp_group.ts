/**
 * The `interp` bench group.
 * - `interp mips`: guest instructions retired per second by the interpreter (with its block
 *   compiler) on the workload guest (sieve, CRC-32, 64-bit xorshift: tests/core/interp/guests/
 *   workload.asm), against QEMU TCG running the same guest from a disk image in the same run.
 *   QEMU cannot count instructions, so its MIPS is the interpreter's instruction count divided
 *   by QEMU's time, and its start-up cost cancels out by timing two repetition counts.
 * - `interp pio`: time for one guest `OUT` to reach a plugin device and return, on the
 *   interpreter, against the same loop without the OUT (the bare loop's cost per iteration).
 */

import type { BenchRow } from "./report.ts";
import { haveQemu } from "./boot_group.ts";
import { runWorkload } from "./interp_bench.ts";
import { MmioBus, PortBus } from "../core/bus.ts";
import { NO_INTERRUPTS, RunControl } from "../core/backend.ts";
import { resetCpuState } from "../core/cpu_state.ts";
import { createInterpBackend } from "../core/interp/backend.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const WORKLOAD = `${ROOT}tests/core/interp/guests/workload.bin`;
const LOADER = `${ROOT}bench/guests/disk_loader.bin`;
const REPS_SHORT = 5, REPS_LONG = 25;

/** A raw disk: the loader sector (patched with the image size and `reps`) and the image. */
export function diskImage(loader: Uint8Array, image: Uint8Array, reps: number): Uint8Array {
  const sectors = Math.ceil(image.length / 512);
  const disk = new Uint8Array(512 * (1 + sectors));
  disk.set(loader);
  disk.set(image, 512);
  // The DAP: size 16, reserved 0, sector count, offset 0x7C00, segment 0, LBA 1; reps follows.
  let dap = -1;
  for (let i = 0; i < 500; i += 4) {
    if (disk[i] === 16 && disk[i + 1] === 0 && disk[i + 4] === 0x00 && disk[i + 5] === 0x7c) {
      dap = i;
      break;
    }
  }
  if (dap < 0) throw new Error("disk_loader.bin has no DAP: rebuild it from disk_loader.asm");
  const dv = new DataView(disk.buffer);
  dv.setUint16(dap + 2, sectors, true);
  dv.setUint32(dap + 16, reps, true);
  return disk;
}

async function qemuSeconds(disk: Uint8Array): Promise<number> {
  const path = await Deno.makeTempFile({ suffix: ".img" });
  try {
    await Deno.writeFile(path, disk);
    const t0 = performance.now();
    const out = await new Deno.Command("qemu-system-x86_64", {
      args: [
        "-M",
        "pc",
        "-accel",
        "tcg",
        "-cpu",
        "qemu64",
        "-m",
        "128M",
        "-display",
        "none",
        "-serial",
        "null",
        "-monitor",
        "none",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive",
        `file=${path},format=raw,if=ide`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - t0) / 1000;
    // The workload ends with debug-exit 0: QEMU exits with (0 << 1) | 1.
    if (out.code !== 1) {
      throw new Error(
        `QEMU ended with status ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return seconds;
  } finally {
    await Deno.remove(path);
  }
}

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

  runWorkload(1); // warm the compiler up
  let best = { instructions: 0, seconds: Infinity };
  for (let i = 0; i < 3; i++) {
    const r = runWorkload(REPS_LONG);
    if (r.seconds < best.seconds) best = r;
  }
  const ourMips = best.instructions / best.seconds / 1e6;
  if (!(await haveQemu())) {
    console.error(
      "bench interp: qemu-system-x86_64 is missing; install qemu-system-x86 for the baseline",
    );
    return rows;
  }
  const image = await Deno.readFile(WORKLOAD);
  const loader = await Deno.readFile(LOADER);
  const short = runWorkload(REPS_SHORT).instructions;
  const long = runWorkload(REPS_LONG).instructions;
  let qShort = Infinity, qLong = Infinity;
  for (let i = 0; i < 3; i++) {
    qShort = Math.min(qShort, await qemuSeconds(diskImage(loader, image, REPS_SHORT)));
    qLong = Math.min(qLong, await qemuSeconds(diskImage(loader, image, REPS_LONG)));
  }
  const qemuMips = (long - short) / Math.max(qLong - qShort, 1e-6) / 1e6;
  rows.push({
    name: "interp mips",
    unit: "MIPS",
    value: ourMips,
    baseline: "QEMU TCG, same guest (start-up cancelled by two run lengths)",
    baselineValue: qemuMips,
    ratio: ourMips / qemuMips,
  });
  return rows;
}
