/** The host-CPU oracle gives the architecturally known results for hand-picked instructions. */

import { assertEquals } from "../../_assert.ts";
import { makeCase } from "../../../tools/difftest/generator.ts";
import { dataAddress, insnAddress, PAD_SIZE } from "../../../tools/difftest/layout.ts";
import { NativeOracle } from "../../../tools/difftest/native.ts";
import {
  FLAG_AF,
  FLAG_CF,
  FLAG_OF,
  FLAG_PF,
  FLAG_SF,
  FLAG_ZF,
  STATUS_FLAGS,
  type TestCase,
  type UserState,
} from "../../../tools/difftest/state.ts";

const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSI = 6;
const canRun = Deno.build.arch === "x86_64" && Deno.build.os === "linux";
if (!canRun) console.warn("native oracle tests skipped: they need an x86-64 Linux host");

/**
 * Opens an oracle, makes cases (slots 0..n-1) for the region base it got, and runs them in one
 * batch on the host CPU.
 */
function runNative(make: (base: number) => TestCase[]): UserState[] {
  const oracle = NativeOracle.open();
  try {
    return oracle.run(make(oracle.base));
  } finally {
    oracle.close();
  }
}

Deno.test({
  name: "native oracle: add rax, rbx of 0xffff_ffff_ffff_ffff + 1 gives 0 with CF and ZF set",
  ignore: !canRun,
  fn() {
    let base = 0;
    const [after] = runNative((b) => {
      base = b;
      return [makeCase(0, [0x48, 0x01, 0xd8], "add rax, rbx", (s) => {
        s.gpr[RAX] = 0xffff_ffff_ffff_ffffn;
        s.gpr[RBX] = 1n;
      }, { base })];
    });
    assertEquals(after!.gpr[RAX], 0n);
    assertEquals(after!.rflags & STATUS_FLAGS, FLAG_CF | FLAG_ZF | FLAG_PF | FLAG_AF);
    assertEquals(after!.rip, BigInt(insnAddress(0, base) + 3));
  },
});

Deno.test({
  name: "native oracle: imul rax, rbx sets CF and OF when the signed product overflows",
  ignore: !canRun,
  fn() {
    const [a, b] = runNative((base) => [
      makeCase(0, [0x48, 0x0f, 0xaf, 0xc3], "imul rax, rbx", (s) => {
        s.gpr[RAX] = 0x1234n;
        s.gpr[RBX] = -3n & 0xffff_ffff_ffff_ffffn;
      }, { base }),
      makeCase(1, [0x48, 0x0f, 0xaf, 0xc3], "imul rax, rbx", (s) => {
        s.gpr[RAX] = 0x4000_0000_0000_0000n;
        s.gpr[RBX] = 4n;
      }, { base }),
    ]);
    assertEquals(a!.gpr[RAX], BigInt.asUintN(64, -0x1234n * 3n));
    assertEquals(a!.rflags & (FLAG_CF | FLAG_OF), 0);
    assertEquals(b!.gpr[RAX], 0n);
    assertEquals(b!.rflags & (FLAG_CF | FLAG_OF), FLAG_CF | FLAG_OF);
  },
});

Deno.test({
  name: "native oracle: bsf finds the lowest set bit and sets ZF only for a zero source",
  ignore: !canRun,
  fn() {
    const bsf = [0x48, 0x0f, 0xbc, 0xc3]; // bsf rax, rbx
    const [a, b] = runNative((base) => [
      makeCase(0, bsf, "bsf rax, rbx", (s) => {
        s.gpr[RBX] = 0x1000_0080n;
      }, { base }),
      makeCase(1, bsf, "bsf rax, rbx", (s) => {
        s.gpr[RAX] = 0x55n;
        s.gpr[RBX] = 0n;
      }, { base }),
    ]);
    assertEquals(a!.gpr[RAX], 7n);
    assertEquals(a!.rflags & FLAG_ZF, 0);
    assertEquals(b!.rflags & FLAG_ZF, FLAG_ZF);
  },
});

Deno.test({
  name: "native oracle: shl by a zero count in CL leaves every flag as it was",
  ignore: !canRun,
  fn() {
    const flags = FLAG_CF | FLAG_OF | FLAG_SF | FLAG_PF;
    const [a] = runNative((base) => [
      makeCase(0, [0x48, 0xd3, 0xe0], "shl rax, cl", (s) => {
        s.gpr[RAX] = 0x8000_0000_0000_0001n;
        s.gpr[RCX] = 0x100n; // CL = 0
        s.rflags |= flags;
      }, { base }),
    ]);
    assertEquals(a!.gpr[RAX], 0x8000_0000_0000_0001n);
    assertEquals(a!.rflags & STATUS_FLAGS, flags);
  },
});

Deno.test({
  name: "native oracle: div rbx divides rdx:rax and leaves the remainder in rdx",
  ignore: !canRun,
  fn() {
    const [a] = runNative((base) => [
      makeCase(0, [0x48, 0xf7, 0xf3], "div rbx", (s) => {
        s.gpr[RDX] = 1n;
        s.gpr[RAX] = 5n;
        s.gpr[RBX] = 3n;
      }, { base }),
    ]);
    const dividend = (1n << 64n) + 5n;
    assertEquals(a!.gpr[RAX], dividend / 3n);
    assertEquals(a!.gpr[RDX], dividend % 3n);
  },
});

Deno.test({
  name: "native oracle: a memory operand reads and writes the case's own data window",
  ignore: !canRun,
  fn() {
    // add dword [rsi+4], eax, in slot 2 so the address differs from slot 0's.
    const [, , a] = runNative((base) => [
      ...[0, 1].map((i) => makeCase(i, [0x90], "nop", undefined, { base })),
      makeCase(2, [0x01, 0x46, 0x04], "add dword [rsi+4], eax", (s) => {
        s.gpr[RSI] = BigInt(dataAddress(2, base));
        s.gpr[RAX] = 0x11n;
        s.data.set([0xff, 0xff, 0xff, 0xff], 4);
      }, { cls: "alu", base }),
    ]);
    assertEquals([...a!.data.subarray(0, 12)], [0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    assertEquals(a!.rflags & FLAG_CF, FLAG_CF);
  },
});

Deno.test({
  name: "native oracle: a taken jz reports the landing pad it reached as RIP",
  ignore: !canRun,
  fn() {
    const jz = [0x74, PAD_SIZE + 8];
    let base = 0;
    const [a, b] = runNative((got) => {
      base = got;
      const taken = makeCase(0, jz, "jz", (s) => {
        s.rflags |= FLAG_ZF;
      }, { targets: [insnAddress(0, base) + 2 + PAD_SIZE + 8], base });
      const notTaken = makeCase(1, jz, "jz", undefined, {
        targets: [insnAddress(1, base) + 2 + PAD_SIZE + 8],
        base,
      });
      return [taken, notTaken];
    });
    assertEquals(a!.rip, BigInt(insnAddress(0, base) + 2 + PAD_SIZE + 8));
    assertEquals(b!.rip, BigInt(insnAddress(1, base) + 2));
  },
});

Deno.test({
  name: "native oracle: divss 1/3 rounds and sets the precision flag in MXCSR",
  ignore: !canRun,
  fn() {
    const [a] = runNative((base) => [
      makeCase(0, [0xf3, 0x0f, 0x5e, 0xc1], "divss xmm0, xmm1", (s) => {
        const v = new DataView(s.xmm.buffer);
        v.setFloat32(0, 1, true);
        v.setFloat32(16, 3, true);
      }, { base }),
    ]);
    const got = new DataView(a!.xmm.buffer).getFloat32(0, true);
    assertEquals(got, Math.fround(1 / 3));
    assertEquals(a!.mxcsr, 0x1f80 | 0x20);
  },
});

Deno.test({
  name: "native oracle: running one case alone in its slot gives the batch's result",
  ignore: !canRun,
  fn() {
    const oracle = NativeOracle.open();
    try {
      const cases = [0, 1, 2].map((i) =>
        makeCase(i, [0x48, 0x0f, 0xc1, 0xd8], "xadd rax, rbx", (s) => {
          s.gpr[RAX] = BigInt(100 + i);
          s.gpr[RBX] = 7n;
        }, { base: oracle.base })
      );
      const batch = oracle.run(cases);
      const alone = oracle.runOne(cases[2]!);
      assertEquals(alone.gpr, batch[2]!.gpr);
      assertEquals(alone.gpr[RAX], 109n);
      assertEquals(alone.gpr[RBX], 102n);
    } finally {
      oracle.close();
    }
  },
});
