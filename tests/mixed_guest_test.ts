/**
 * The mixed ALU/SSE2 bench guest (tests/core/interp/guests/mixed.asm, the `interp mips (mixed
 * alu/sse2)` bench row) through the CLI: the interpreter prints the same checksum line with the
 * block compiler and without it (DENOVISOR_INTERP_JIT=0), on the AMD and Intel CPU models, and
 * the same line as an oracle — the
 * host CPU through KVM where KVM runs the guest, else QEMU TCG where qemu-system-x86_64 is
 * installed; with neither, the oracle comparison is skipped with a message. The guest's work is
 * also a plain user-mode function (`mix_run`), so the host CPU runs it directly through FFI on
 * any x86-64 Linux host, with or without KVM. A difference is an interpreter bug, not a reason
 * to change the guest.
 */

import { assertEquals, assertTrue } from "./_assert.ts";
import { KVM_OK, ROOT, runCli } from "./_run.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";
import { qemuPresent, runFlatOnQemu } from "../bench/_qemu_flat.ts";
import { hostCpuUnavailable, runOnHostCpu } from "./_host_cpu.ts";
import { runGuest } from "./core/interp/_harness.ts";

const GUEST = "tests/core/interp/guests/mixed.bin";
const ARGS = ["--kernel", GUEST, "--format", "flat"];
/** The checksum line: integer, 192-bit ADC/SBB, double-bits, double and vector sums. */
const LINE = /^MIX I=[0-9a-f]{16} A=[0-9a-f]{48} F=[0-9a-f]{16} D=[0-9a-f]{16} V=[0-9a-f]{32}\n$/;
/** Each interpreter run is ~3.9M instructions; the plain interpreter under load needs room. */
const TIMEOUT_MS = 180_000;

/** Offsets of mix_run's results in its work area (R_* in mixed.asm). */
const R_I = 64, R_A = 72, R_F = 96, R_D = 104, R_V = 112, AREA = 128;

/** The checksum line the guest prints, from mix_run's work area. */
function lineFromArea(area: Uint8Array): string {
  const dv = new DataView(area.buffer, area.byteOffset, area.byteLength);
  const h = (off: number) => dv.getBigUint64(off, true).toString(16).padStart(16, "0");
  return `MIX I=${h(R_I)} A=${h(R_A + 16)}${h(R_A + 8)}${h(R_A)} F=${h(R_F)} D=${h(R_D)} ` +
    `V=${h(R_V + 8)}${h(R_V)}\n`;
}

/** The checksum line of `reps` repetitions computed by the host CPU running mix_run. */
function hostCpuLine(image: Uint8Array, reps: number): string {
  const sig = new TextEncoder().encode("MIXRUN64");
  const at = image.findIndex((_, i) => sig.every((b, k) => image[i + k] === b));
  assertTrue(at >= 0, "mixed.bin has no MIXRUN64 signature: rebuild it from mixed.asm");
  return lineFromArea(runOnHostCpu(image, { entry: at + sig.length, count: reps, areaSize: AREA }));
}

/** The oracle's line, or why there is none here. */
async function oracle(): Promise<{ name: string; out: string } | { skip: string }> {
  let why = "/dev/kvm is not usable here";
  if (KVM_OK) {
    const kvm = await runCli(["--backend", "kvm", ...ARGS], { timeoutMs: TIMEOUT_MS });
    // Status 1 is both debug-exit 0 and a fault: a fault also prints its message on stderr.
    if (kvm.status === 1 && kvm.stderr === "") return { name: "kvm", out: kvm.stdout };
    // This workplace's nested kvm_pvm stops at the first SSE instruction with an emulation
    // failure; any other KVM must run the guest.
    assertTrue(hostKvmFlavor() === "kvm_pvm", `KVM failed on the mixed guest: ${kvm.stderr}`);
    why = `this host's nested KVM (kvm_pvm) cannot run it: ${kvm.stderr.split("\n")[0]}`;
  }
  if (await qemuPresent()) {
    console.warn(`note: mixed guest checked against QEMU TCG: ${why}`);
    const image = await Deno.readFile(`${ROOT}${GUEST}`);
    return { name: "qemu", out: (await runFlatOnQemu(image, 1)).serial };
  }
  return { skip: `${why}, and qemu-system-x86_64 is not installed` };
}

Deno.test("mixed ALU/SSE2 guest: the same checksum with and without the block compiler, on both vendor models and on the oracle (KVM, else QEMU TCG)", async () => {
  const jit = await runCli(["--backend", "interp", ...ARGS], {
    timeoutMs: TIMEOUT_MS,
    env: { DENOVISOR_INTERP_JIT: "1" },
  });
  assertEquals(jit.stderr, "");
  assertEquals(jit.status, 1); // debug-exit 0
  assertTrue(LINE.test(jit.stdout), `unexpected output: ${JSON.stringify(jit.stdout)}`);
  const plain = await runCli(["--backend", "interp", ...ARGS], {
    timeoutMs: TIMEOUT_MS,
    env: { DENOVISOR_INTERP_JIT: "0" },
  });
  assertEquals(plain.stderr, "");
  assertEquals(plain.status, 1);
  assertEquals(plain.stdout, jit.stdout, "block compiler on vs DENOVISOR_INTERP_JIT=0");
  // Only flags the manuals define feed the checksum, so both vendors' models agree.
  for (const cpu of ["amd", "intel"]) {
    const v = await runCli(["--backend", "interp", "--cpu", cpu, ...ARGS], {
      timeoutMs: TIMEOUT_MS,
    });
    assertEquals([v.status, v.stderr, v.stdout], [1, "", jit.stdout], `--cpu ${cpu}`);
  }
  const o = await oracle();
  if ("skip" in o) {
    console.warn(`note: mixed guest oracle comparison skipped: ${o.skip}`);
    return;
  }
  assertEquals(jit.stdout, o.out, `interpreter vs ${o.name}`);
});

Deno.test("mixed ALU/SSE2 guest: the interpreter's checksum over 1 and 3 repetitions is the host CPU's (mix_run through FFI)", () => {
  const why = hostCpuUnavailable();
  if (why) {
    console.warn(`note: mixed guest host-CPU comparison skipped: ${why}`);
    return;
  }
  const image = Deno.readFileSync(`${ROOT}${GUEST}`);
  for (const reps of [1, 3]) {
    const r = runGuest(image, { maxSlices: 1e6, before: (m) => m.writeU32(0x500, reps) });
    assertEquals(r.stop, { kind: "exit", status: 0 }, `${reps} repetitions`);
    assertTrue(LINE.test(r.out), `unexpected output: ${JSON.stringify(r.out)}`);
    assertEquals(r.out, hostCpuLine(image, reps), `interpreter vs host CPU, ${reps} repetitions`);
  }
});
