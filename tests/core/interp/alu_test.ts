/**
 * Unit tests for single instructions whose results or flags are easy to get wrong: run one
 * instruction at a time through the difftest API in 64-bit CPL3 mode and check registers and
 * RFLAGS against values worked out by hand from the SDM's definitions.
 */

import { assertEquals } from "../../_assert.ts";
import { flatSegment, resetCpuState } from "../../../core/cpu_state.ts";
import { createUserModeCpu, type StepResult } from "../../../core/interp/difftest_api.ts";
import { GuestMemory } from "../../../core/memory.ts";

const CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, OF = 0x800;
const ARITH = CF | PF | AF | ZF | SF | OF;
const CODE = 0x1000;

interface Run {
  gpr: bigint[];
  flags: number;
  result: StepResult;
  memory: GuestMemory;
}

/** Runs the instruction `hex` once with the given registers (by index) and RFLAGS. */
function run(
  hex: string,
  regs: Record<number, bigint>,
  rflags = 0x2,
  setup?: (m: GuestMemory) => void,
): Run {
  const memory = GuestMemory.allocate(1 << 20);
  const code = new Uint8Array(hex.match(/../g)!.map((b) => parseInt(b, 16)));
  memory.write(CODE, code);
  setup?.(memory);
  const cpu = createUserModeCpu(memory, { identityPaging: true });
  const s = resetCpuState();
  s.cr0 = 0x8000_0011;
  s.cr4 = 0x20;
  s.efer = 0x500;
  s.cs = { ...flatSegment(0x33, true), l: 1, db: 0, dpl: 3 };
  s.ss = { ...flatSegment(0x2b, false), dpl: 3 };
  s.rip = BigInt(CODE);
  s.rflags = rflags;
  for (const [i, v] of Object.entries(regs)) s.gpr[Number(i)] = BigInt.asUintN(64, v);
  cpu.setState(s);
  const result = cpu.step();
  const after = cpu.getState();
  return { gpr: after.gpr, flags: after.rflags & ARITH, result, memory };
}

const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RDI = 7;
const M64 = (1n << 64n) - 1n;

Deno.test("ADD AL, 0xFF with AL=1 sets CF, ZF, AF and PF but not OF or SF", () => {
  const r = run("04ff", { [RAX]: 1n });
  assertEquals(r.gpr[RAX], 0n);
  assertEquals(r.flags, CF | ZF | AF | PF);
});

Deno.test("SUB EAX, 1 from 0x80000000 overflows (OF) and zero-extends into RAX", () => {
  const r = run("83e801", { [RAX]: 0xffff_ffff_8000_0000n });
  assertEquals(r.gpr[RAX], 0x7fff_ffffn);
  assertEquals(r.flags, OF | AF | PF);
});

Deno.test("ADC RAX, RBX with carry in and RBX = -1 keeps the carry and leaves RAX unchanged", () => {
  const r = run("4811d8", { [RAX]: 5n, [RBX]: M64 }, 0x3);
  assertEquals(r.gpr[RAX], 5n);
  assertEquals(r.flags & (CF | ZF | OF), CF);
});

Deno.test("SBB RAX, RBX with borrow in computes a - b - 1 across the 32-bit halves", () => {
  const r = run("4819d8", { [RAX]: 0x1_0000_0000n, [RBX]: 0n }, 0x3);
  assertEquals(r.gpr[RAX], 0xffff_ffffn);
  assertEquals(r.flags & (CF | ZF | SF | OF), 0);
});

Deno.test("INC keeps CF from before", () => {
  const r = run("ffc1", { [RCX]: 0xffff_ffffn }, 0x3);
  assertEquals(r.gpr[RCX], 0n);
  assertEquals(r.flags & (CF | ZF), CF | ZF);
});

Deno.test("NEG of zero clears CF, NEG of nonzero sets it", () => {
  assertEquals(run("48f7d8", { [RAX]: 0n }).flags & CF, 0);
  const r = run("48f7d8", { [RAX]: 1n });
  assertEquals(r.gpr[RAX], M64);
  assertEquals(r.flags & (CF | SF), CF | SF);
});

Deno.test("64-bit shifts: SHL by 63, SAR by 40 of a negative value, RCR through carry", () => {
  let r = run("48c1e03f", { [RAX]: 3n });
  assertEquals(r.gpr[RAX], 1n << 63n);
  assertEquals(r.flags & (CF | SF | ZF), CF | SF);
  r = run("48c1f828", { [RAX]: 0x8000_0000_0000_0000n });
  assertEquals(r.gpr[RAX], BigInt.asUintN(64, -(1n << 23n)));
  r = run("48c1d803", { [RAX]: 0b101n }, 0x3);
  // RCR by 3 with CF=1: bits 1,0 rotate to the top, CF gets bit 2, the old CF lands in bit 61.
  assertEquals(r.gpr[RAX], (1n << 61n) | (1n << 62n));
  assertEquals(r.flags & CF, CF);
});

Deno.test("ROL/ROR by 1 set OF from the top bits", () => {
  let r = run("48d1c0", { [RAX]: 0x4000_0000_0000_0000n });
  assertEquals(r.gpr[RAX], 0x8000_0000_0000_0000n);
  assertEquals(r.flags & (CF | OF), OF);
  r = run("d1c8", { [RAX]: 1n });
  assertEquals(r.gpr[RAX], 0x8000_0000n);
  assertEquals(r.flags & (CF | OF), CF | OF);
});

Deno.test("SHLD and SHRD of 64-bit registers move bits across the halves", () => {
  let r = run("480fa4d80c", { [RAX]: 0x0123_4567_89ab_cdefn, [RBX]: 0xfedc_ba98_7654_3210n });
  assertEquals(r.gpr[RAX], 0x3456_789a_bcde_ffedn);
  r = run("480facd828", { [RAX]: 0x0123_4567_89ab_cdefn, [RBX]: 0xfedc_ba98_7654_3210n });
  assertEquals(r.gpr[RAX], 0x9876_5432_1001_2345n); // (rax >> 40) | (rbx << 24)
});

Deno.test("IMUL r64 sets CF/OF on signed overflow; MUL r64 gives the 128-bit product", () => {
  let r = run("480fafc3", { [RAX]: 1n << 62n, [RBX]: 2n });
  assertEquals(r.gpr[RAX], 1n << 63n);
  assertEquals(r.flags & (CF | OF), CF | OF);
  r = run("480fafc3", { [RAX]: BigInt.asUintN(64, -3n), [RBX]: 7n });
  assertEquals(r.gpr[RAX], BigInt.asUintN(64, -21n));
  assertEquals(r.flags & (CF | OF), 0);
  const a = 0xdead_beef_1234_5678n, b = 0xfeed_face_cafe_baben;
  r = run("48f7e3", { [RAX]: a, [RBX]: b });
  assertEquals((r.gpr[RDX]! << 64n) | r.gpr[RAX]!, a * b);
  assertEquals(r.flags & (CF | OF), CF | OF);
});

Deno.test("DIV r64 divides a 128-bit dividend; IDIV rounds toward zero; divide by zero is #DE", () => {
  const n = (0x1234n << 64n) | 0x5678_9abc_def0_1234n, d = 0x1_0000_0001n;
  let r = run("48f7f3", { [RAX]: n & M64, [RDX]: n >> 64n, [RBX]: d });
  assertEquals(r.gpr[RAX], n / d);
  assertEquals(r.gpr[RDX], n % d);
  r = run("48f7fb", { [RAX]: BigInt.asUintN(64, -7n), [RDX]: M64, [RBX]: 2n });
  assertEquals(r.gpr[RAX], BigInt.asUintN(64, -3n));
  assertEquals(r.gpr[RDX], BigInt.asUintN(64, -1n));
  r = run("f7f1", { [RAX]: 1n, [RCX]: 0n });
  assertEquals(r.result, { kind: "exception", vector: 0 });
  r = run("48f7f3", { [RAX]: 0n, [RDX]: 5n, [RBX]: 5n });
  assertEquals(r.result, { kind: "exception", vector: 0 }); // quotient overflow
});

/** A seeded xorshift32 stream of 32- and 64-bit BigInts (for the BigInt-reference tests). */
function xorshift(seed: number): { r32: () => bigint; r64: () => bigint } {
  let x = seed;
  const r32 = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return BigInt(x >>> 0);
  };
  return { r32, r64: () => (r32() << 32n) | r32() };
}

Deno.test("DIV/IDIV r64 and r32 match BigInt division on random and edge operands, #DE included", () => {
  // A seeded xorshift, with operands drawn near the edges the limb arithmetic must get right:
  // quotients just below and at 2^64 / 2^63, divisors with a zero high word, remainders near d.
  const { r32, r64 } = xorshift(0x9e3779b9);
  const pick = (bits: bigint): bigint => {
    const m = (1n << bits) - 1n;
    switch (Number(r32() % 6n)) {
      case 0:
        return r64() & m;
      case 1:
        return (r64() >> (r32() % bits)) & m; // small
      case 2:
        return m - (r32() % 3n); // near the top
      case 3:
        return (1n << (bits - 1n)) + (r32() % 3n) - 1n; // near the sign bit
      case 4:
        return r32() & m;
      default:
        return ((r32() << 32n) & m) | (r32() & 1n);
    }
  };
  const ops = [
    { hex: "48f7f3", bits: 64n, signed: false },
    { hex: "48f7fb", bits: 64n, signed: true },
    { hex: "f7f3", bits: 32n, signed: false },
    { hex: "f7fb", bits: 32n, signed: true },
  ];
  let checked = 0, faults = 0;
  for (let i = 0; i < 2400; i++) {
    const op = ops[i % 4]!;
    const n = op.bits, m = (1n << n) - 1n;
    const d = pick(n) || 1n;
    // Half the dividends give a quotient that fits: q * d + r built from a random quotient.
    let hi: bigint, lo: bigint;
    if (r32() & 1n) {
      hi = pick(n);
      lo = pick(n);
    } else {
      const wide = BigInt.asUintN(
        Number(2n * n),
        pick(n) * (op.signed ? BigInt.asIntN(Number(n), d) : d) + (r32() % d),
      );
      hi = wide >> n;
      lo = wide & m;
    }
    const r = run(op.hex, { [RAX]: lo, [RDX]: hi, [RBX]: d });
    const sx = (v: bigint, b: bigint) => (op.signed ? BigInt.asIntN(Number(b), v) : v);
    const num = sx((hi << n) | lo, 2n * n), den = sx(d, n);
    const q = num / den, rem = num % den; // BigInt division truncates toward zero, as IDIV does
    const fits = op.signed ? q >= -(1n << (n - 1n)) && q < (1n << (n - 1n)) : q <= m;
    if (!fits) {
      assertEquals(r.result, { kind: "exception", vector: 0 }, `${op.hex} ${num} / ${den}`);
      faults++;
      continue;
    }
    assertEquals(r.result, { kind: "ok" }, `${op.hex} ${num} / ${den}`);
    assertEquals(
      r.gpr[RAX]! & m,
      BigInt.asUintN(Number(n), q),
      `${op.hex} quotient ${num} / ${den}`,
    );
    assertEquals(
      r.gpr[RDX]! & m,
      BigInt.asUintN(Number(n), rem),
      `${op.hex} remainder ${num} / ${den}`,
    );
    checked++;
  }
  // Both outcomes were exercised, not just one.
  assertEquals(checked > 600 && faults > 120, true, `${checked} results, ${faults} #DE`);
});

Deno.test("IMUL r64, r/m64 truncates and sets CF/OF exactly at the 64-bit boundary (BigInt reference)", () => {
  // Operands whose products land on both sides of +-2^63, where the double estimate cannot decide.
  const { r32, r64 } = xorshift(0x2545f491);
  let over = 0, fit = 0;
  for (let i = 0; i < 2000; i++) {
    const kind = i % 4;
    let a: bigint, b: bigint;
    if (kind === 0) {
      a = BigInt.asIntN(64, r64());
      b = BigInt.asIntN(64, r64());
    } else if (kind === 3) {
      // Zero-extended 32-bit halves, as a generic umul_ppmm multiplies them.
      a = r32();
      b = r32() >> (r32() % 3n);
    } else {
      // a * b near 2^63: b = 2^63 / a, nudged.
      a = BigInt.asIntN(64, (r64() >> (r32() % 62n)) | 2n);
      b = (1n << 63n) / a + BigInt(Number(r32() % 5n) - 2);
      if (kind === 2) b = -b;
      b = BigInt.asIntN(64, b);
    }
    const r = run("480fafc3", { [RAX]: a, [RBX]: b });
    const p = a * b;
    const of = p < -(1n << 63n) || p >= 1n << 63n;
    assertEquals(r.gpr[RAX], BigInt.asUintN(64, p), `${a} * ${b}`);
    assertEquals(r.flags & (CF | OF), of ? CF | OF : 0, `${a} * ${b} flags`);
    if (of) over++;
    else fit++;
  }
  assertEquals(over > 300 && fit > 300, true, `${over} overflowing, ${fit} fitting`);
});

Deno.test("BSF/BSR find bits in the high half and set ZF for zero", () => {
  let r = run("480fbcc3", { [RBX]: 1n << 40n });
  assertEquals(r.gpr[RAX], 40n);
  r = run("480fbdc3", { [RBX]: (1n << 63n) | 1n });
  assertEquals(r.gpr[RAX], 63n);
  r = run("480fbcc3", { [RAX]: 77n, [RBX]: 0n });
  assertEquals(r.gpr[RAX], 77n);
  assertEquals(r.flags & ZF, ZF);
});

Deno.test("byte registers: BH without REX, SPL with REX", () => {
  let r = run("0fb6c7", { [RBX]: 0xab00n });
  assertEquals(r.gpr[RAX], 0xabn);
  r = run("88dc", { [RAX]: 0x1111n, [RBX]: 0x22n });
  assertEquals(r.gpr[RAX], 0x2211n);
  r = run("4088dc", { [RBX]: 0x22n, 4: 0x1000n });
  assertEquals(r.gpr[4], 0x1022n);
  r = run("480fbec3", { [RBX]: 0x80n });
  assertEquals(r.gpr[RAX], BigInt.asUintN(64, -128n));
});

Deno.test("CMPXCHG, XADD and BSWAP on 64-bit values", () => {
  let r = run(
    "480fb11f",
    { [RAX]: 5n, [RBX]: 9n, [RDI]: 0x3000n },
    2,
    (m) => m.writeU64(0x3000, 5n),
  );
  assertEquals(r.memory.readU64(0x3000), 9n);
  assertEquals(r.flags & ZF, ZF);
  r = run("480fb11f", { [RAX]: 4n, [RBX]: 9n, [RDI]: 0x3000n }, 2, (m) => m.writeU64(0x3000, 5n));
  assertEquals(r.gpr[RAX], 5n);
  assertEquals(r.flags & ZF, 0);
  r = run("480fc1d8", { [RAX]: 1n << 32n, [RBX]: 3n });
  assertEquals([r.gpr[RAX], r.gpr[RBX]], [(1n << 32n) + 3n, 1n << 32n]);
  r = run("480fc8", { [RAX]: 0x0102_0304_0506_0708n });
  assertEquals(r.gpr[RAX], 0x0807_0605_0403_0201n);
});

Deno.test("RIP-relative addressing accounts for the immediate after the displacement", () => {
  const r = run("c705f60f000044332211", {});
  assertEquals(r.memory.readU32(0x2000), 0x11223344);
});

Deno.test("SIB addressing with a negative displacement, LEA with a 32-bit result, CMOV", () => {
  let r = run("488b44cff8", { [RDI]: 0x3000n, [RCX]: 2n }, 2, (m) => m.writeU64(0x3008, 0x42n));
  assertEquals(r.gpr[RAX], 0x42n);
  r = run("8d448f10", { [RDI]: 0xffff_ffff_ffff_fff0n, [RCX]: 1n, [RAX]: M64 });
  assertEquals(r.gpr[RAX], 4n);
  r = run("480f42c3", { [RAX]: 1n, [RBX]: 2n }, 0x3);
  assertEquals(r.gpr[RAX], 2n);
  r = run("0f42c3", { [RAX]: M64, [RBX]: 2n }, 0x2); // not taken, but the 32-bit form zero-extends
  assertEquals(r.gpr[RAX], 0xffff_ffffn);
});

Deno.test("BTS with a register bit offset addresses memory beyond the operand", () => {
  const r = run("480fab07", { [RAX]: 70n, [RDI]: 0x3000n });
  assertEquals(r.memory.readU8(0x3008), 0x40);
  assertEquals(r.flags & CF, 0);
});

Deno.test("HLT at CPL3 raises #GP(0) and leaves RIP on the instruction", () => {
  const r = run("f4", {});
  assertEquals(r.result, { kind: "exception", vector: 13, errorCode: 0 });
});

Deno.test("IMUL r32, r/m32, imm8 sign-extends the immediate; CQO fills RDX with the sign", () => {
  let r = run("6bcbfd", { [RBX]: 5n });
  assertEquals(r.gpr[RCX], 0xffff_fff1n);
  r = run("4899", { [RAX]: 1n << 63n });
  assertEquals(r.gpr[RDX], M64);
});

Deno.test("LEA computes exact 64-bit results even far outside the canonical range", () => {
  const x = 0xfd15_0e7b_3daf_dc00n;
  const r = run("4f8d7c7f01", { 15: x }); // lea r15, [r15 + r15*2 + 1]
  assertEquals(r.gpr[15], (x * 3n + 1n) & M64);
});

Deno.test("REP MOVSB/STOSQ across pages match element-by-element semantics, overlap included", () => {
  const RSI = 6;
  const src = Uint8Array.from({ length: 10000 }, (_, i) => (i * 7 + 3) & 0xff);
  // Plain copy of 10000 bytes from 0x10ff0 to 0x30ffd (both straddle several pages).
  let r = run(
    "f3a4",
    { [RSI]: 0x10ff0n, [RDI]: 0x30ffdn, [RCX]: 10000n },
    2,
    (m) => m.write(0x10ff0, src),
  );
  assertEquals([...r.memory.read(0x30ffd, 10000)], [...src]);
  assertEquals([r.gpr[RSI], r.gpr[RDI], r.gpr[RCX]], [0x10ff0n + 10000n, 0x30ffdn + 10000n, 0n]);
  // Overlapping forward copy (dst = src + 3) replicates the first 3 bytes, as element-wise MOVSB does.
  r = run(
    "f3a4",
    { [RSI]: 0x20000n, [RDI]: 0x20003n, [RCX]: 6000n },
    2,
    (m) => m.write(0x20000, src),
  );
  const want = Array.from({ length: 6003 }, (_, i) => src[i % 3]!);
  assertEquals([...r.memory.read(0x20000, 6003)], want);
  // STOSQ of a 64-bit pattern over 3000 qwords.
  r = run("f348ab", { [RAX]: 0x1122_3344_5566_7788n, [RDI]: 0x40ff8n, [RCX]: 3000n });
  const got = r.memory.read(0x40ff8, 24000);
  const v = new DataView(got.buffer);
  let ok = true;
  for (let i = 0; i < 3000; i++) ok &&= v.getBigUint64(i * 8, true) === 0x1122_3344_5566_7788n;
  assertEquals(ok, true);
  assertEquals(r.gpr[RDI], 0x40ff8n + 24000n);
});
