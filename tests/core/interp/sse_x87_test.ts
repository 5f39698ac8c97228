/**
 * SSE/SSE2 and x87 on the interpreter: short instruction sequences run step by step through the
 * difftest API in 64-bit mode, with expected values computed here in TypeScript.
 */

import { assertEquals } from "../../_assert.ts";
import { flatSegment, resetCpuState } from "../../../core/cpu_state.ts";
import { createUserModeCpu } from "../../../core/interp/difftest_api.ts";
import { GuestMemory } from "../../../core/memory.ts";

const CODE = 0x1000, DATA = 0x3000;
const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSI = 6, RDI = 7;

function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(hex.match(/../g)!.map((b) => parseInt(b, 16)));
}

/** Runs `steps` instructions of `hex` at CODE with RDI = DATA. */
function runSeq(
  hex: string,
  steps: number,
  regs: Record<number, bigint> = {},
  setup?: (m: GuestMemory) => void,
  xmm?: (x: DataView) => void,
) {
  const memory = GuestMemory.allocate(1 << 20);
  memory.write(CODE, hexBytes(hex));
  setup?.(memory);
  const cpu = createUserModeCpu(memory, { identityPaging: true });
  const s = resetCpuState();
  s.cr0 = 0x8000_0033; // PE, MP, ET, NE, PG
  s.cr4 = 0x620; // PAE, OSFXSR, OSXMMEXCPT
  s.efer = 0x500;
  s.cs = { ...flatSegment(0x33, true), l: 1, db: 0, dpl: 3 };
  s.ss = { ...flatSegment(0x2b, false), dpl: 3 };
  s.rip = BigInt(CODE);
  s.gpr[RDI] = BigInt(DATA);
  for (const [i, v] of Object.entries(regs)) s.gpr[Number(i)] = BigInt.asUintN(64, v);
  xmm?.(new DataView(s.fpu.xmm.buffer));
  cpu.setState(s);
  for (let i = 0; i < steps; i++) {
    const r = cpu.step();
    if (r.kind !== "ok") throw new Error(`step ${i} raised ${JSON.stringify(r)}`);
  }
  return { state: cpu.getState(), memory };
}

Deno.test("a strlen-style SSE2 sequence finds the first zero byte", () => {
  const { state } = runSeq(
    "f30f6f07660fefc9660f74c1660fd7c00fbcc0",
    5,
    {},
    (m) => m.write(DATA, new TextEncoder().encode("abc\0defghijklmnop")),
  );
  assertEquals(state.gpr[RAX], 3n);
});

Deno.test("scalar double arithmetic, conversions and UCOMISD agree with IEEE doubles", () => {
  const { state } = runSeq(
    "f2480f2ac0f2480f2acbf20f5ec1f20f51d0f20f59d2660f2ed0f2480f2dc9f2480f2cd066480f7ec6",
    9,
    { [RAX]: 7n, [RBX]: 2n },
  );
  const q = 7 / 2;
  const back = Math.sqrt(q) * Math.sqrt(q);
  const cf = state.rflags & 1, zf = (state.rflags >> 6) & 1;
  assertEquals([cf, zf], back > q ? [0, 0] : back < q ? [1, 0] : [0, 1]);
  assertEquals(state.gpr[RCX], 2n);
  assertEquals(state.gpr[RDX], 3n);
  const f = new DataView(new ArrayBuffer(8));
  f.setFloat64(0, q, true);
  assertEquals(state.gpr[RSI], f.getBigUint64(0, true));
});

Deno.test("CVTSD2SI rounds to nearest even under the default MXCSR", () => {
  for (const [v, want] of [[2.5, 2n], [3.5, 4n], [-2.5, -2n], [1e300, -(1n << 31n)]] as const) {
    const { state } = runSeq("f20f2dc0", 1, {}, undefined, (x) => x.setFloat64(0, v, true));
    assertEquals(BigInt.asIntN(32, state.gpr[RAX]!), want, `cvtsd2si(${v})`);
  }
});

Deno.test("packed-integer shuffles, unpacks, byte shifts and PADDQ produce the right lanes", () => {
  const { memory } = runSeq(
    "660f6f07660f70c81b660f60c1660f73d803660fd4c9660f7f4710f30f7f4f20",
    7,
    {},
    (m) => m.write(DATA, Uint8Array.from({ length: 16 }, (_, i) => i * 17 + 1)),
  );
  const src = Array.from({ length: 16 }, (_, i) => (i * 17 + 1) & 0xff);
  const x1 = [12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3].map((i) => src[i]!);
  const unpacked: number[] = [];
  for (let i = 0; i < 8; i++) unpacked.push(src[i]!, x1[i]!);
  const shifted = [...unpacked.slice(3), 0, 0, 0];
  assertEquals([...memory.read(DATA + 16, 16)], shifted);
  const q = (b: number[], o: number) =>
    b.slice(o, o + 8).reduceRight((acc, v) => (acc << 8n) | BigInt(v), 0n);
  const m64 = (1n << 64n) - 1n;
  const doubled = [(q(x1, 0) * 2n) & m64, (q(x1, 8) * 2n) & m64];
  const out = memory.read(DATA + 32, 16);
  const view = new DataView(out.buffer);
  assertEquals([view.getBigUint64(0, true), view.getBigUint64(8, true)], doubled);
});

Deno.test("x87 loads, arithmetic, integer stores, FCOMIP and FXSAVE", () => {
  const { state, memory } = runSeq(
    "dbe3dd07dd4708dec1db4718dec9dd5710db5f1cd9e8d9eedff1ddd8dfe00fae4740",
    14,
    {},
    (m) => {
      const v = new DataView(m.bytes.buffer);
      v.setFloat64(DATA, 1.5, true);
      v.setFloat64(DATA + 8, 2.25, true);
      v.setInt32(DATA + 24, 4, true);
    },
  );
  const v = memory.view;
  assertEquals(v.getFloat64(DATA + 16, true), (1.5 + 2.25) * 4);
  assertEquals(v.getInt32(DATA + 28, true), 15);
  assertEquals(state.rflags & 1, 1); // 0 < 1 sets CF
  assertEquals(Number(state.gpr[RAX]! & 0x3800n), 0); // TOP back at 0
  assertEquals(v.getUint16(DATA + 64, true), 0x37f); // FCW in the FXSAVE image
  assertEquals(v.getUint32(DATA + 64 + 24, true), 0x1f80); // MXCSR
});
