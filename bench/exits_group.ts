/**
 * The `exits` bench group: the round-trip time of one guest exit through denovisor's whole KVM
 * path (KVM_RUN -> exit decode -> bus -> device -> back into the guest) for port I/O, MMIO and
 * HLT, each compared with the same guest loop driven by a C program (bench/exits_native.c,
 * compiled with `cc -O2` at run time) in the same run.
 */

import { NO_INTERRUPTS, RunControl } from "../core/backend.ts";
import type { InterruptController } from "../core/backend.ts";
import { MmioBus, PortBus } from "../core/bus.ts";
import { resetCpuState } from "../core/cpu_state.ts";
import { createKvmBackend, kvmAvailable, type KvmOptions } from "../core/kvm/backend.ts";

import type { BenchRow } from "./report.ts";
export type { BenchRow };

/** Guest RAM of the bench VM: 512 KiB, so 0xa0000 is outside RAM (MMIO). */
const MEM_SIZE = 0x80000;
/** Where the guest loop is loaded and starts, in real mode with CS=0. */
const LOAD_ADDRESS = 0x1000;
/** The vector the HLT loop is woken with. */
const IRQ_VECTOR = 0x20;

/** The guest loops (sources: tests/core/kvm/guests/loop_{pio,mmio,hlt}.asm). */
export const EXIT_GUESTS = {
  // .l: out 0x80, al / jmp .l
  pio: new Uint8Array([0xe6, 0x80, 0xeb, 0xfc]),
  // mov ax, 0xa000 / mov ds, ax / .l: mov [0], al / jmp .l
  mmio: new Uint8Array([0xb8, 0x00, 0xa0, 0x8e, 0xd8, 0xa2, 0x00, 0x00, 0xeb, 0xfb]),
  // cli / IVT[0x20] = 0:handler / sti / .l: hlt / jmp .l / handler: iret
  hlt: new Uint8Array([
    0xfa,
    0xc7,
    0x06,
    0x80,
    0x00,
    0x11,
    0x10,
    0xc7,
    0x06,
    0x82,
    0x00,
    0x00,
    0x00,
    0xfb,
    0xf4,
    0xeb,
    0xfd,
    0xcf,
  ]),
} as const;

/** Which exit a loop measures. */
export type ExitKind = keyof typeof EXIT_GUESTS;

/** Exits per timed round and rounds per measurement (best round wins, on both sides). */
export interface ExitBenchOptions {
  /** Exits per timed round (default 100). */
  exits?: number;
  /** Timed rounds per side (default 200). */
  rounds?: number;
}

/** A guest exit loop that can be timed round by round. */
export interface ExitLoop {
  /** Runs `exits` exits; returns the mean time per exit in microseconds. */
  round(exits: number): number;
  /** Releases the VM. */
  close(): void;
}

/**
 * Sets up `kind`'s guest loop on denovisor's KVM backend, with a device as small as a device
 * can be, like the C baseline's.
 */
export function openDenovisorLoop(kind: ExitKind, options: KvmOptions = {}): ExitLoop {
  const kvm = createKvmBackend(options);
  try {
    const memory = kvm.createMemory(MEM_SIZE);
    memory.write(LOAD_ADDRESS, EXIT_GUESTS[kind]);
    const ports = new PortBus();
    const mmio = new MmioBus();
    const control = new RunControl();
    let count = 0;
    let limit = 0;
    const device = {
      last: 0,
      read: () => 0,
      write(_o: number, _s: number, v: number) {
        device.last = v;
        if (++count >= limit) control.stop = { kind: "pause" };
      },
    };
    ports.register(0x80, 1, "bench-port", device);
    mmio.register(0xa0000, 0x1000, "bench-mmio", device);
    const interrupts: InterruptController = kind === "hlt"
      ? {
        hasInterrupt: () => true,
        acknowledge: () => {
          if (++count >= limit) control.stop = { kind: "pause" };
          return IRQ_VECTOR;
        },
      }
      : NO_INTERRUPTS;
    const vcpu = kvm.createVcpu(0, { memory, ports, mmio, control, interrupts, trace: null });
    const state = resetCpuState();
    state.rip = BigInt(LOAD_ADDRESS);
    state.gpr[4] = 0x8000n;
    vcpu.setState(state);
    return {
      round(exits: number): number {
        limit = count + exits;
        const t0 = performance.now();
        const stop = vcpu.run();
        const us = (performance.now() - t0) * 1000 / exits;
        if (stop.kind !== "pause") {
          throw new Error(`The ${kind} bench guest stopped: ${JSON.stringify(stop)}`);
        }
        return us;
      },
      close() {
        vcpu.close();
        kvm.close();
      },
    };
  } catch (err) {
    kvm.close();
    throw err;
  }
}

const NATIVE_SYMBOLS = {
  native_open: { parameters: ["i32", "buffer", "i32"], result: "pointer" },
  native_round: { parameters: ["pointer", "i32"], result: "f64" },
  native_close: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Exit kinds as exits_native.c numbers them. */
const NATIVE_MODE: Record<ExitKind, number> = { pio: 0, mmio: 1, hlt: 2 };

/** Compiles bench/exits_native.c as a shared library in `dir`; throws saying why it cannot. */
async function buildNative(dir: string): Promise<string> {
  const src = new URL("./exits_native.c", import.meta.url).pathname;
  const out = `${dir}/libexits_native.so`;
  let res: Deno.CommandOutput;
  try {
    res = await new Deno.Command("cc", {
      args: ["-O2", "-shared", "-fPIC", "-DEXITS_NATIVE_LIB", "-o", out, src],
      stderr: "piped",
    }).output();
  } catch (err) {
    throw new Error(`cannot run cc to build the native baseline: ${(err as Error).message}`);
  }
  if (!res.success) {
    throw new Error(`cc failed on ${src}:\n${new TextDecoder().decode(res.stderr)}`);
  }
  return out;
}

/**
 * Builds the native baseline and opens `kind`'s loop in it, for benches that want one C loop
 * without the rest of the group. Throws saying why when it cannot be built.
 */
export async function openNativeExitLoop(kind: ExitKind): Promise<ExitLoop> {
  const dir = await Deno.makeTempDir({ prefix: "denovisor-exits-" });
  try {
    const lib = Deno.dlopen(await buildNative(dir), NATIVE_SYMBOLS);
    const loop = openNativeLoop(lib, kind);
    return {
      round: loop.round,
      close() {
        loop.close();
        lib.close();
      },
    };
  } finally {
    // The loaded library stays mapped after its file is gone.
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Opens `kind`'s loop in the native library (the C baseline). */
function openNativeLoop(lib: Deno.DynamicLibrary<typeof NATIVE_SYMBOLS>, kind: ExitKind): ExitLoop {
  const guest = EXIT_GUESTS[kind];
  const vm = lib.symbols.native_open(NATIVE_MODE[kind], guest, guest.length);
  if (vm === null) throw new Error(`The native ${kind} baseline could not create its VM`);
  return {
    round(exits: number): number {
      const ns = lib.symbols.native_round(vm, exits);
      if (ns < 0) throw new Error(`The native ${kind} baseline failed (code ${ns})`);
      return ns / 1000;
    },
    close: () => lib.symbols.native_close(vm),
  };
}

/**
 * Times `a` and `b` in alternating rounds (order flipped each round) and returns the best
 * round of each in µs per exit: on a shared machine, the best round is the one least disturbed.
 */
export function interleave(
  a: ExitLoop,
  b: ExitLoop,
  options: ExitBenchOptions = {},
): [number, number] {
  const exits = options.exits ?? 100;
  const rounds = options.rounds ?? 200;
  a.round(exits); // warm-up: V8 optimizes the exit loop, caches and the host settle
  b.round(exits);
  let bestA = Infinity, bestB = Infinity;
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      bestA = Math.min(bestA, a.round(exits));
      bestB = Math.min(bestB, b.round(exits));
    } else {
      bestB = Math.min(bestB, b.round(exits));
      bestA = Math.min(bestA, a.round(exits));
    }
  }
  return [bestA, bestB];
}

/**
 * Measures the three exit kinds on denovisor and on the native baseline. Returns a string
 * saying why instead when /dev/kvm or a C compiler is missing.
 *
 * @example
 * ```ts ignore
 * import { runExitsGroup } from "./exits_group.ts";
 * const rows = await runExitsGroup();
 * console.log(typeof rows === "string" ? rows : rows.map((r) => `${r.name} ${r.ratio}`));
 * ```
 */
export async function runExitsGroup(options: ExitBenchOptions = {}): Promise<BenchRow[] | string> {
  const k = kvmAvailable();
  if (!k.ok) return `exits: skipped, ${k.reason}`;
  const dir = await Deno.makeTempDir({ prefix: "denovisor-exits-" });
  try {
    let lib: Deno.DynamicLibrary<typeof NATIVE_SYMBOLS>;
    try {
      lib = Deno.dlopen(await buildNative(dir), NATIVE_SYMBOLS);
    } catch (err) {
      return `exits: skipped, ${(err as Error).message}`;
    }
    try {
      const rows: BenchRow[] = [];
      for (const kind of ["pio", "mmio", "hlt"] as const) {
        const ours = openDenovisorLoop(kind);
        const native = openNativeLoop(lib, kind);
        let value: number, baselineValue: number;
        try {
          [value, baselineValue] = interleave(ours, native, options);
        } finally {
          ours.close();
          native.close();
        }
        rows.push({
          name: `exit ${kind}`,
          unit: "µs",
          value: round(value),
          baseline: "C (cc -O2) driving the same guest loop, interleaved",
          baselineValue: round(baselineValue),
          ratio: Math.round((value / baselineValue) * 1000) / 1000,
        });
      }
      return rows;
    } finally {
      lib.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function round(us: number): number {
  return Math.round(us * 1000) / 1000;
}

if (import.meta.main) {
  const rows = await runExitsGroup();
  if (typeof rows === "string") console.log(rows);
  else console.table(rows);
}
