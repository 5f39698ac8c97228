/**
 * Random user-mode x86-64 test cases for the differential tester: a seeded PRNG, an encoder for
 * ModRM/SIB/REX/prefix forms, and one generator per instruction class. Every case keeps its
 * memory accesses inside its own data window and never faults (no #DE, #GP, #UD, #AC), because
 * the native oracle runs it on the host CPU in this process.
 */

import { GPR_NAMES } from "../../core/cpu_state.ts";
import { doubleShiftUndefinedFlags, shiftUndefinedFlags, undefinedFlagsOf } from "./flags.ts";
import {
  checkBase,
  DATA_SIZE,
  dataAddress,
  insnAddress,
  lastPadAddress,
  MAX_INSN_LENGTH,
  PAD_SIZE,
  PREFERRED_BASE,
} from "./layout.ts";
import {
  FLAG_DF,
  FLAG_FIXED,
  FLAG_IF,
  MXCSR_MASKS,
  SETTABLE_FLAGS,
  type TestCase,
  type UserState,
} from "./state.ts";

// ---------------------------------------------------------------------------------------------
// PRNG

/**
 * xoshiro128** seeded through splitmix32: fast, 32-bit only (no BigInt), and the same stream
 * for the same seed on every run.
 *
 * @example
 * ```ts
 * import { Rng } from "./generator.ts";
 * const a = new Rng(42), b = new Rng(42);
 * console.assert(a.u32() === b.u32());
 * ```
 */
export class Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#s0 = next();
    this.#s1 = next();
    this.#s2 = next();
    this.#s3 = next() | 1;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.#s1, 5), 7), 9) >>> 0;
    const t = this.#s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return r;
  }

  /** A uniform integer in [0, n), n ≤ 2^32. */
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.u32() < p * 0x1_0000_0000;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  /** A uniform unsigned 64-bit value. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A value of `bits` bits biased toward the edges arithmetic gets wrong. */
export function interesting(rng: Rng, bits: number): bigint {
  const mask = (1n << BigInt(bits)) - 1n;
  const top = 1n << BigInt(bits - 1);
  switch (rng.below(8)) {
    case 0:
      return BigInt(rng.below(4));
    case 1:
      return rng.pick([0n, 1n, top - 1n, top, top + 1n, mask, mask - 1n]) & mask;
    case 2:
      return (-BigInt(rng.range(1, 4))) & mask;
    case 3:
      return BigInt(rng.u32() & 0xff) & mask;
    case 4:
      return (1n << BigInt(rng.below(bits))) & mask;
    default:
      return rng.u64() & mask;
  }
}

// ---------------------------------------------------------------------------------------------
// Registers and operands

const R32 = [
  "eax",
  "ecx",
  "edx",
  "ebx",
  "esp",
  "ebp",
  "esi",
  "edi",
  ...[8, 9, 10, 11, 12, 13, 14, 15].map((i) => `r${i}d`),
];
const R16 = [
  "ax",
  "cx",
  "dx",
  "bx",
  "sp",
  "bp",
  "si",
  "di",
  ...[8, 9, 10, 11, 12, 13, 14, 15].map((i) => `r${i}w`),
];
const R8_REX = [
  "al",
  "cl",
  "dl",
  "bl",
  "spl",
  "bpl",
  "sil",
  "dil",
  ...[8, 9, 10, 11, 12, 13, 14, 15].map((i) => `r${i}b`),
];
const R8_LEGACY = ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"];
const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;
const PTR: Record<number, string> = {
  1: "byte",
  2: "word",
  4: "dword",
  8: "qword",
  10: "tword",
  16: "xmmword",
};

/** The operand size of an integer instruction and how its 8-bit registers are named. */
interface OpSize {
  bits: 8 | 16 | 32 | 64;
  bytes: number;
  /** 8-bit only: a REX prefix is present, so registers 4-7 are SPL..DIL, not AH..BH. */
  rex: boolean;
}

/** A ModRM r/m operand: a register or a memory reference. */
type Rm = RegRm | MemRm;

interface RegRm {
  kind: "reg";
  num: number;
}

interface MemRm {
  kind: "mem";
  mod: number;
  rm: number;
  sib?: number;
  disp: number[];
  rexB: boolean;
  rexX: boolean;
  /** Prefix bytes the operand needs (0x67, segment overrides). */
  prefixes: number[];
  /** For RIP-relative operands: the absolute address the disp32 must reach. */
  ripTarget?: number;
  /** With 0x67, RIP-relative addressing uses EIP: the wrap is modulo 2^32. */
  addr32: boolean;
  /** Address the operand designates (the target inside the data window). */
  addr: number;
  /** Address text, e.g. `gs:[rbx+rcx*4+0x10]`. */
  text: string;
}

/** How one instruction is encoded. */
interface Enc {
  /** Legacy prefixes in order (LOCK, REP, segment, 0x66 as an operand-size prefix, 0x67). */
  prefixes?: number[];
  /** A mandatory SSE prefix (66/F2/F3), emitted last before REX. */
  mandatory?: number;
  w?: boolean;
  /** Emit a REX prefix even when no bit is needed (8-bit SPL..DIL). */
  rex?: boolean;
  /** Emit an empty REX prefix just to test it is ignored (dropped if the encoding is too long). */
  optRex?: boolean;
  opcode: number[];
  /** ModRM.reg (0-15; bit 3 goes to REX.R) or the /digit. */
  reg?: number;
  rm?: Rm;
  /** For +r opcodes: the register added to the last opcode byte (bit 3 goes to REX.B). */
  opReg?: number;
  imm?: number[];
}

function immBytes(v: bigint, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

function hexs(v: bigint | number): string {
  const b = BigInt(v);
  return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
}

function mask(bits: number): bigint {
  return (1n << BigInt(bits)) - 1n;
}

function signed(v: bigint, bits: number): bigint {
  return BigInt.asIntN(bits, v);
}

// ---------------------------------------------------------------------------------------------
// The case builder

/** Options for generating cases. */
export interface GeneratorOptions {
  /** Allow GS-relative memory operands (the host must allow WRGSBASE). Default false. */
  gsBase?: boolean;
  /**
   * Base of the region the cases will run in: the oracle's `base` (default PREFERRED_BASE).
   * The cases' addresses (RIP, pointers, displacements, branch targets) follow it; the random
   * choices do not depend on it, so a seed gives the same instruction mix at any base.
   */
  base?: number;
}

/** Builds one test case: its state, operands, encoding and text. */
class Builder {
  readonly rng: Rng;
  readonly slot: number;
  readonly base: number;
  readonly code: number;
  readonly data: number;
  readonly state: UserState;
  readonly opts: GeneratorOptions;
  /** GPRs whose values an operand fixed (addresses, counts); later operands must keep them. */
  readonly pinned = new Set<number>([RSP]);
  undefinedFlags = 0;
  undefinedGprs = 0;
  targets: number[] = [];
  rep = false;
  undefinedFsw = 0;
  mnemonic = "";
  bytes: number[] = [];

  constructor(rng: Rng, slot: number, opts: GeneratorOptions) {
    this.rng = rng;
    this.slot = slot;
    this.opts = opts;
    this.base = opts.base ?? PREFERRED_BASE;
    this.code = insnAddress(slot, this.base);
    this.data = dataAddress(slot, this.base);
    const gpr: bigint[] = [];
    for (let i = 0; i < 16; i++) {
      gpr.push(rng.bool(0.7) ? interesting(rng, 64) : interesting(rng, rng.pick([8, 16, 32])));
    }
    // The stack pointer always starts inside the data window, with room both ways.
    gpr[RSP] = BigInt(this.data + 0x100 + 8 * rng.range(-8, 8) + (rng.bool(0.1) ? 4 : 0));
    const dataBytes = new Uint8Array(DATA_SIZE);
    const words = new Uint32Array(dataBytes.buffer);
    for (let i = 0; i < words.length; i++) words[i] = rng.u32() < 0xcccc_cccc ? rng.u32() : 0;
    const xmm = new Uint8Array(256);
    const xw = new Uint32Array(xmm.buffer);
    for (let i = 0; i < xw.length; i++) xw[i] = rng.u32();
    this.state = {
      gpr,
      rflags: FLAG_FIXED | FLAG_IF | (rng.u32() & SETTABLE_FLAGS),
      rip: BigInt(this.code),
      gsBase: 0n,
      xmm,
      mxcsr: MXCSR_MASKS,
      x87: { fcw: 0x37f, fsw: 0, ftw: 0, st: new Uint8Array(128) },
      data: dataBytes,
    };
  }

  // --- state helpers

  gpr(r: number): bigint {
    return this.state.gpr[r]!;
  }
  setGpr(r: number, v: bigint, pin = true): void {
    this.state.gpr[r] = BigInt.asUintN(64, v);
    if (pin) this.pinned.add(r);
  }
  /** Reads an operand-size register the way the instruction sees it (AH..BH included). */
  readReg(num: number, sz: OpSize): bigint {
    if (sz.bits === 8 && !sz.rex && num >= 4) return (this.gpr(num - 4) >> 8n) & 0xffn;
    return this.gpr(num) & mask(sz.bits);
  }
  /** Writes the low `sz` bits of a register, keeping the rest. */
  writeReg(num: number, sz: OpSize, v: bigint): void {
    if (sz.bits === 8 && !sz.rex && num >= 4) {
      const p = num - 4;
      this.setGpr(p, (this.gpr(p) & ~0xff00n) | ((v & 0xffn) << 8n));
      return;
    }
    this.setGpr(num, (this.gpr(num) & ~mask(sz.bits)) | (v & mask(sz.bits)));
  }
  /** The physical GPR an operand-size register lives in. */
  physical(num: number, sz: OpSize): number {
    return sz.bits === 8 && !sz.rex && num >= 4 ? num - 4 : num;
  }
  readMem(addr: number, n: number): bigint {
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.state.data[addr - this.data + i]!);
    return v;
  }
  writeMem(addr: number, n: number, v: bigint): void {
    for (let i = 0; i < n; i++) {
      this.state.data[addr - this.data + i] = Number((v >> BigInt(8 * i)) & 0xffn);
    }
  }
  readRm(rm: Rm, sz: OpSize): bigint {
    return rm.kind === "reg" ? this.readReg(rm.num, sz) : this.readMem(rm.addr, sz.bytes);
  }
  writeRm(rm: Rm, sz: OpSize, v: bigint): void {
    if (rm.kind === "reg") this.writeReg(rm.num, sz, v);
    else this.writeMem(rm.addr, sz.bytes, v);
  }

  // --- operand choice

  /** A random integer operand size; 8-bit sizes decide whether a REX prefix is present. */
  size(allowed: readonly number[] = [8, 16, 32, 64]): OpSize {
    const bits = this.rng.pick(allowed) as 8 | 16 | 32 | 64;
    return { bits, bytes: bits / 8, rex: bits === 8 ? this.rng.bool() : false };
  }

  /** A register number for an operand of size `sz`, avoiding `avoid` (physical registers). */
  reg(sz: OpSize, avoid: readonly number[] = []): number {
    const limit = sz.bits === 8 && !sz.rex ? 8 : 16;
    for (let tries = 0; tries < 100; tries++) {
      const r = this.rng.below(limit);
      if (!avoid.includes(this.physical(r, sz))) return r;
    }
    throw new Error("difftest generator: no register left to choose");
  }

  regName(num: number, sz: OpSize | number): string {
    const bits = typeof sz === "number" ? sz : sz.bits;
    if (bits === 64) return GPR_NAMES[num]!;
    if (bits === 32) return R32[num]!;
    if (bits === 16) return R16[num]!;
    const rex = typeof sz === "number" ? true : sz.rex;
    return rex ? R8_REX[num]! : R8_LEGACY[num]!;
  }

  /**
   * A memory operand of `n` bytes at a random place in the data window. Registers in `avoid`
   * are neither base nor index; `lowRegs` keeps both below r8 (no REX.B/X, for legacy 8-bit
   * forms). `margin` keeps the target that far from both ends of the window.
   */
  mem(
    n: number,
    o: { align?: number; avoid?: readonly number[]; lowRegs?: boolean; margin?: number } = {},
  ): MemRm {
    const rng = this.rng;
    const align = o.align ?? 1;
    const margin = o.margin ?? 0;
    const hi = DATA_SIZE - n - margin;
    let t = rng.range(margin, hi);
    t -= t % align;
    if (t < margin) t += align;
    const addr = this.data + t;
    const prefixes: number[] = [];
    const addr32 = rng.bool(0.15);
    if (addr32) prefixes.push(0x67);
    let seg = "";
    let gs = 0n;
    if (this.opts.gsBase && rng.bool(0.1)) {
      // WRGSBASE faults on a non-canonical base: a random one is sign-extended from bit 47.
      gs = addr32 || rng.bool(0.5)
        ? BigInt(rng.range(0, addr))
        : BigInt.asUintN(64, BigInt.asIntN(48, rng.u64()));
      this.state.gsBase = gs;
      prefixes.push(0x65);
      seg = "gs:";
    } else if (rng.bool(0.05)) {
      // CS/SS/DS/ES overrides are ignored in 64-bit mode.
      const p = rng.pick([0x2e, 0x36, 0x3e, 0x26]);
      prefixes.push(p);
      seg = { 0x2e: "cs:", 0x36: "ss:", 0x3e: "ds:", 0x26: "es:" }[p]!;
    }
    const amask = addr32 ? 0xffff_ffffn : 0xffff_ffff_ffff_ffffn;
    let form = rng.below(100);
    const rspBase = !(o.avoid ?? []).includes(RSP) && rng.bool(0.08);
    if (seg === "gs:" && (form < 10 || rspBase)) {
      // RIP- and RSP-relative operands have a fixed base, so a random GS base could put the
      // target out of disp32 reach: drop GS for them.
      prefixes.splice(prefixes.indexOf(0x65), 1);
      this.state.gsBase = gs = 0n;
      seg = "";
    }
    // The effective address (before the segment base) the operand must produce.
    const ea = BigInt.asUintN(64, BigInt(addr) - gs);
    const avoid = new Set<number>([...(o.avoid ?? []), ...this.pinned]);
    const pickReg = (extra: number[] = []) => {
      const cands: number[] = [];
      for (let r = 0; r < (o.lowRegs ? 8 : 16); r++) {
        if (!avoid.has(r) && !extra.includes(r)) cands.push(r);
      }
      return cands.length ? rng.pick(cands) : -1;
    };
    const rn = (r: number) => (addr32 ? R32[r]! : GPR_NAMES[r]!);
    const upper = (low: bigint) =>
      addr32 ? (rng.bool(0.5) ? (rng.u64() & ~0xffff_ffffn) | low : low) : low;
    const base = rspBase ? RSP : pickReg();
    if (base < 0) form = 0;
    let out: Omit<MemRm, "kind" | "prefixes" | "addr32" | "addr" | "text"> & { t: string };
    if (form < 10) {
      // RIP-relative: disp32 is patched once the instruction's length is known.
      out = { mod: 0, rm: 5, disp: [0, 0, 0, 0], rexB: false, rexX: false, t: "rip" };
      out.ripTarget = addr;
      out.t = `${addr32 ? "eip" : "rip"}=>${hexs(addr)}`;
    } else if (form < 15 && ea < 0x8000_0000n) {
      // [disp32] through a SIB byte with no base and no index.
      out = {
        mod: 0,
        rm: 4,
        sib: 0x25,
        disp: immBytes(ea, 4),
        rexB: false,
        rexX: false,
        t: hexs(ea),
      };
    } else if (base === RSP) {
      const d = BigInt.asIntN(64, (ea - this.gpr(RSP)) & amask);
      const d8 = d >= -128n && d < 128n;
      out = {
        mod: d8 ? 1 : 2,
        rm: 4,
        sib: 0x24,
        disp: immBytes(d, d8 ? 1 : 4),
        rexB: false,
        rexX: false,
        t: `${rn(RSP)}${d < 0n ? "-" : "+"}${hexs(d < 0n ? -d : d)}`,
      };
    } else if (form < 60) {
      // [base + disp]
      const kind = rng.below(3);
      let disp = kind === 0 ? 0n : kind === 1 ? BigInt(rng.range(-128, 127)) : BigInt(
        rng.range(-0x8000_0000, 0x7fff_ffff),
      );
      let mod = kind === 0 ? 0 : kind === 1 ? 1 : 2;
      if (mod === 0 && (base & 7) === RBP) mod = 1;
      if (mod === 1 && kind === 0) disp = 0n;
      const bv = upper((ea - disp) & amask);
      this.setGpr(base, bv);
      const needSib = (base & 7) === RSP;
      out = {
        mod,
        rm: needSib ? 4 : base & 7,
        sib: needSib ? 0x24 : undefined,
        disp: mod === 0 ? [] : immBytes(disp, mod === 1 ? 1 : 4),
        rexB: base >= 8,
        rexX: false,
        t: `${rn(base)}${
          mod === 0 ? "" : (disp < 0n ? "-" : "+") + hexs(disp < 0n ? -disp : disp)
        }`,
      };
    } else {
      // [base + index*scale + disp], or [index*scale + disp32] with no base.
      const index = pickReg([base, RSP]);
      const ss = rng.below(4);
      const scale = 1n << BigInt(ss);
      const noBase = form >= 95 || index < 0;
      if (index < 0) {
        // Nothing left to index with: fall back to [base].
        this.setGpr(base, upper(ea & amask));
        const needSib = (base & 7) === RSP;
        const mod = (base & 7) === RBP ? 1 : 0;
        out = {
          mod,
          rm: needSib ? 4 : base & 7,
          sib: needSib ? 0x24 : undefined,
          disp: mod ? [0] : [],
          rexB: base >= 8,
          rexX: false,
          t: rn(base),
        };
      } else if (noBase) {
        const iv = (ea / scale) - BigInt(rng.below(16));
        const disp = ea - iv * scale;
        this.setGpr(index, upper(iv & amask));
        out = {
          mod: 0,
          rm: 4,
          sib: (ss << 6) | ((index & 7) << 3) | 5,
          disp: immBytes(disp, 4),
          rexB: false,
          rexX: index >= 8,
          t: `${rn(index)}*${scale}+${hexs(disp)}`,
        };
      } else {
        const kind = rng.below(3);
        let mod = kind;
        let disp = kind === 0 ? 0n : kind === 1 ? BigInt(rng.range(-128, 127)) : BigInt(
          rng.range(-0x8000_0000, 0x7fff_ffff),
        );
        if (mod === 0 && (base & 7) === RBP) {
          mod = 1;
          disp = 0n;
        }
        const iv = rng.bool(0.5) ? this.gpr(index) : interesting(rng, 64);
        const bv = (ea - disp - iv * scale) & amask;
        this.setGpr(index, iv);
        this.setGpr(base, upper(bv));
        out = {
          mod,
          rm: 4,
          sib: (ss << 6) | ((index & 7) << 3) | (base & 7),
          disp: mod === 0 ? [] : immBytes(disp, mod === 1 ? 1 : 4),
          rexB: base >= 8,
          rexX: index >= 8,
          t: `${rn(base)}+${rn(index)}*${scale}${
            mod === 0 ? "" : (disp < 0n ? "-" : "+") + hexs(disp < 0n ? -disp : disp)
          }`,
        };
      }
    }
    const { t: addrText, ...rest } = out;
    return { kind: "mem", ...rest, prefixes, addr32, addr, text: `${seg}[${addrText}]` };
  }

  /** A register or (with probability pMem) memory r/m operand of integer size `sz`. */
  rm(
    sz: OpSize,
    o: { pMem?: number; avoid?: readonly number[]; regAvoid?: readonly number[] } = {},
  ): Rm {
    if (this.rng.bool(o.pMem ?? 0.4)) {
      return this.mem(sz.bytes, { avoid: o.avoid, lowRegs: sz.bits === 8 && !sz.rex });
    }
    return { kind: "reg", num: this.reg(sz, o.regAvoid) };
  }

  rmText(rm: Rm, sz: OpSize | number): string {
    if (rm.kind === "reg") return this.regName(rm.num, sz);
    const bytes = typeof sz === "number" ? sz / 8 : sz.bytes;
    return `${PTR[bytes]} ${rm.text}`;
  }

  // --- encoding

  /** Encodes one instruction and records its text. */
  emit(text: string, e: Enc): void {
    const out: number[] = [...(e.prefixes ?? [])];
    const rm = e.rm;
    if (rm?.kind === "mem") out.push(...rm.prefixes);
    if (e.mandatory !== undefined) out.push(e.mandatory);
    const reg = e.reg ?? 0;
    let rex = e.w ? 8 : 0;
    if (reg >= 8) rex |= 4;
    if (rm?.kind === "mem") rex |= (rm.rexX ? 2 : 0) | (rm.rexB ? 1 : 0);
    if (rm?.kind === "reg" && rm.num >= 8) rex |= 1;
    if (e.opReg !== undefined && e.opReg >= 8) rex |= 1;
    if (rex || e.rex || e.optRex) out.push(0x40 | rex);
    const op = [...e.opcode];
    if (e.opReg !== undefined) op[op.length - 1]! += e.opReg & 7;
    out.push(...op);
    let dispAt = -1;
    if (rm) {
      if (rm.kind === "reg") {
        out.push(0xc0 | ((reg & 7) << 3) | (rm.num & 7));
      } else {
        out.push((rm.mod << 6) | ((reg & 7) << 3) | rm.rm);
        if (rm.sib !== undefined) out.push(rm.sib);
        dispAt = out.length;
        out.push(...rm.disp);
      }
    }
    out.push(...(e.imm ?? []));
    if (rm?.kind === "mem" && rm.ripTarget !== undefined) {
      const next = this.code + out.length;
      const d = rm.ripTarget - next;
      out.splice(dispAt, 4, ...immBytes(BigInt(d), 4));
    }
    if (out.length > MAX_INSN_LENGTH) {
      // Drop the meaning-preserving extras (0x66 under REX.W, an empty REX) to fit 15 bytes.
      const pre = e.prefixes ?? [];
      if (e.w && pre.includes(0x66)) {
        return this.emit(text, { ...e, prefixes: pre.filter((p) => p !== 0x66) });
      }
      if (e.optRex) return this.emit(text, { ...e, optRex: false });
      throw new Error(`difftest generator made a ${out.length}-byte instruction: ${text}`);
    }
    this.bytes = out;
    const pre = e.prefixes ?? [];
    const a32 = pre.includes(0x67) && rm?.kind !== "mem" ? "a32 " : "";
    this.mnemonic = (pre.includes(0xf0) ? "lock " : "") + a32 + text;
  }

  /**
   * Prefixes and REX.W for an integer operand size. Sometimes adds prefixes that must not change
   * the meaning: 0x66 together with REX.W (REX.W wins) and an empty REX (0x40) where no 8-bit
   * register is involved.
   */
  sized(sz: OpSize, e: Enc): Enc {
    const prefixes = [...(e.prefixes ?? [])];
    if (sz.bits === 16 || (sz.bits === 64 && this.rng.bool(0.08))) prefixes.push(0x66);
    const rex = e.rex || (sz.bits === 8 && sz.rex);
    const optRex = sz.bits !== 8 && this.rng.bool(0.08);
    return { ...e, prefixes, w: sz.bits === 64 || e.w, rex, optRex };
  }

  /** An immediate of `n` bytes. */
  imm(n: number): bigint {
    return interesting(this.rng, 8 * n);
  }

  /** Where the instruction ends once encoded with `len` bytes. */
  end(len: number): number {
    return this.code + len;
  }

  /** A landing-pad address at least one pad after `from`, at most `maxDisp` past it. */
  target(from: number, maxDisp: number): number {
    const hi = Math.min(from + maxDisp, lastPadAddress(this.slot, this.base));
    const t = this.rng.range(from + PAD_SIZE, hi);
    this.targets.push(t);
    return t;
  }

  build(cls: string): TestCase {
    return {
      cls,
      mnemonic: this.mnemonic,
      bytes: new Uint8Array(this.bytes),
      slot: this.slot,
      base: this.base,
      state: this.state,
      targets: this.targets,
      undefinedFlags: this.undefinedFlags,
      undefinedGprs: this.undefinedGprs,
      rep: this.rep,
      undefinedFsw: this.undefinedFsw,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Integer classes

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
/** Mnemonics a LOCK prefix is legal on (with a memory destination). */
const LOCKABLE = new Set([
  "add",
  "or",
  "adc",
  "sbb",
  "and",
  "sub",
  "xor",
  "inc",
  "dec",
  "not",
  "neg",
  "bts",
  "btr",
  "btc",
  "xadd",
  "xchg",
  "cmpxchg",
  "cmpxchg8b",
  "cmpxchg16b",
]);

function lockPrefix(b: Builder, name: string, rm: Rm): number[] {
  return rm.kind === "mem" && LOCKABLE.has(name) && b.rng.bool(0.3) ? [0xf0] : [];
}

function immFor(b: Builder, sz: OpSize): { bytes: number[]; value: bigint } {
  const n = Math.min(sz.bytes, 4);
  const v = b.imm(n);
  return { bytes: immBytes(v, n), value: v };
}

function genAlu(b: Builder): void {
  const op = b.rng.below(8);
  const name = ALU[op]!;
  const sz = b.size();
  b.undefinedFlags = undefinedFlagsOf(name);
  const form = b.rng.below(6);
  const base = op * 8 + (sz.bits === 8 ? 0 : 1);
  if (form === 0 || form === 1) {
    const rm = b.rm(sz);
    const reg = b.reg(sz);
    const lock = form === 0 ? lockPrefix(b, name, rm) : [];
    const text = form === 0
      ? `${name} ${b.rmText(rm, sz)}, ${b.regName(reg, sz)}`
      : `${name} ${b.regName(reg, sz)}, ${b.rmText(rm, sz)}`;
    b.emit(text, b.sized(sz, { prefixes: lock, opcode: [base + (form === 1 ? 2 : 0)], reg, rm }));
  } else if (form === 2) {
    const { bytes, value } = immFor(b, sz);
    b.emit(
      `${name} ${b.regName(RAX, sz)}, ${hexs(value)}`,
      b.sized(sz, { opcode: [op * 8 + (sz.bits === 8 ? 4 : 5)], imm: bytes }),
    );
  } else {
    const rm = b.rm(sz);
    const lock = lockPrefix(b, name, rm);
    const short = form === 5 && sz.bits !== 8;
    const { bytes, value } = short ? { bytes: [b.rng.u32() & 0xff], value: 0n } : immFor(b, sz);
    const v = short ? signed(BigInt(bytes[0]!), 8) : value;
    b.emit(
      `${name} ${b.rmText(rm, sz)}, ${hexs(v)}`,
      b.sized(sz, {
        prefixes: lock,
        opcode: [sz.bits === 8 ? 0x80 : short ? 0x83 : 0x81],
        reg: op,
        rm,
        imm: bytes,
      }),
    );
  }
}

function genTest(b: Builder): void {
  const sz = b.size();
  b.undefinedFlags = undefinedFlagsOf("test");
  const w = sz.bits === 8 ? 0 : 1;
  switch (b.rng.below(3)) {
    case 0: {
      const rm = b.rm(sz);
      const reg = b.reg(sz);
      b.emit(
        `test ${b.rmText(rm, sz)}, ${b.regName(reg, sz)}`,
        b.sized(sz, { opcode: [0x84 + w], reg, rm }),
      );
      break;
    }
    case 1: {
      const { bytes, value } = immFor(b, sz);
      b.emit(
        `test ${b.regName(RAX, sz)}, ${hexs(value)}`,
        b.sized(sz, { opcode: [0xa8 + w], imm: bytes }),
      );
      break;
    }
    default: {
      const rm = b.rm(sz);
      const { bytes, value } = immFor(b, sz);
      b.emit(
        `test ${b.rmText(rm, sz)}, ${hexs(value)}`,
        b.sized(sz, { opcode: [0xf6 + w], reg: 0, rm, imm: bytes }),
      );
    }
  }
}

function genIncDecNotNeg(b: Builder): void {
  const sz = b.size();
  const which = b.rng.below(4);
  const name = ["inc", "dec", "not", "neg"][which]!;
  const rm = b.rm(sz);
  const w = sz.bits === 8 ? 0 : 1;
  const lock = lockPrefix(b, name, rm);
  const enc: Enc = which < 2
    ? { prefixes: lock, opcode: [0xfe + w], reg: which, rm }
    : { prefixes: lock, opcode: [0xf6 + w], reg: which, rm };
  b.emit(`${name} ${b.rmText(rm, sz)}`, b.sized(sz, enc));
}

function genMulDiv(b: Builder): void {
  const rng = b.rng;
  const kind = rng.below(6);
  if (kind === 4 || kind === 5) {
    // imul r, r/m  and  imul r, r/m, imm
    const sz = b.size([16, 32, 64]);
    b.undefinedFlags = undefinedFlagsOf("imul");
    const rm = b.rm(sz);
    const reg = b.reg(sz);
    if (kind === 4) {
      b.emit(
        `imul ${b.regName(reg, sz)}, ${b.rmText(rm, sz)}`,
        b.sized(sz, { opcode: [0x0f, 0xaf], reg, rm }),
      );
    } else {
      const short = rng.bool();
      const { bytes, value } = short ? { bytes: [rng.u32() & 0xff], value: 0n } : immFor(b, sz);
      const v = short ? signed(BigInt(bytes[0]!), 8) : value;
      b.emit(
        `imul ${b.regName(reg, sz)}, ${b.rmText(rm, sz)}, ${hexs(v)}`,
        b.sized(sz, { opcode: [short ? 0x6b : 0x69], reg, rm, imm: bytes }),
      );
    }
    return;
  }
  const name = ["mul", "imul", "div", "idiv"][kind]!;
  const sz = b.size();
  b.undefinedFlags = undefinedFlagsOf(name);
  const w = sz.bits === 8 ? 0 : 1;
  if (kind < 2) {
    const rm = b.rm(sz);
    b.emit(`${name} ${b.rmText(rm, sz)}`, b.sized(sz, { opcode: [0xf6 + w], reg: 4 + kind, rm }));
    return;
  }
  // Division: the divisor is never RAX/RDX (or AL/AH for 8 bits) and addresses avoid them, so
  // the dividend can be chosen afterwards to give a quotient that fits (no #DE).
  const implicit = sz.bits === 8 ? [RAX] : [RAX, RDX];
  const rm = b.rm(sz, { avoid: implicit, regAvoid: implicit });
  let d = b.readRm(rm, sz);
  if (d === 0n) {
    d = rng.bool() ? 1n : BigInt(rng.range(1, 255));
    b.writeRm(rm, sz, d);
  }
  const n = BigInt(sz.bits);
  let hi: bigint, lo: bigint;
  if (kind === 2) {
    hi = interesting(rng, sz.bits) % d;
    lo = interesting(rng, sz.bits);
  } else {
    const ds = signed(d, sz.bits);
    const qmax = (1n << (n - 1n)) - 1n;
    let q = signed(interesting(rng, sz.bits), sz.bits);
    if (q > qmax || q < -qmax - 1n) q = 0n;
    if (rng.bool(0.5)) q = signed(q, Math.max(8, sz.bits / 2));
    const absd = ds < 0n ? -ds : ds;
    let r = absd > 1n ? BigInt(rng.below(Math.min(Number(absd - 1n), 0x7fff_ffff) + 1)) : 0n;
    let dividend = q * ds;
    // The remainder takes the dividend's sign.
    if (dividend < 0n || (dividend === 0n && rng.bool())) r = -r;
    dividend += r;
    if (dividend / ds !== q) dividend = q * ds;
    const wide = BigInt.asUintN(2 * sz.bits, dividend);
    hi = wide >> n;
    lo = wide & mask(sz.bits);
  }
  if (sz.bits === 8) {
    b.setGpr(RAX, (b.gpr(RAX) & ~0xffffn) | (hi << 8n) | lo);
  } else {
    b.writeReg(RDX, sz, hi);
    b.writeReg(RAX, sz, lo);
  }
  b.emit(`${name} ${b.rmText(rm, sz)}`, b.sized(sz, { opcode: [0xf6 + w], reg: 4 + kind, rm }));
}

const SHIFTS: [string, number][] = [
  ["rol", 0],
  ["ror", 1],
  ["rcl", 2],
  ["rcr", 3],
  ["shl", 4],
  ["shr", 5],
  ["sar", 7],
];

function genShift(b: Builder): void {
  const rng = b.rng;
  if (rng.bool(0.25)) return genDoubleShift(b);
  const [name, digit] = rng.pick(SHIFTS);
  const sz = b.size();
  const w = sz.bits === 8 ? 0 : 1;
  const form = rng.below(3);
  let count: number;
  if (form === 2) {
    count = rng.bool(0.5) ? rng.below(sz.bits + 2) : rng.u32() & 0xff;
    b.setGpr(RCX, (b.gpr(RCX) & ~0xffn) | BigInt(count));
  }
  const rm = b.rm(sz);
  if (form === 0) {
    count = 1;
    b.emit(`${name} ${b.rmText(rm, sz)}, 1`, b.sized(sz, { opcode: [0xd0 + w], reg: digit, rm }));
  } else if (form === 1) {
    count = rng.bool(0.7) ? rng.below(sz.bits + 2) : rng.u32() & 0xff;
    b.emit(
      `${name} ${b.rmText(rm, sz)}, ${count}`,
      b.sized(sz, { opcode: [0xc0 + w], reg: digit, rm, imm: [count] }),
    );
  } else {
    count = Number(b.gpr(RCX) & 0xffn);
    b.emit(`${name} ${b.rmText(rm, sz)}, cl`, b.sized(sz, { opcode: [0xd2 + w], reg: digit, rm }));
  }
  b.undefinedFlags = shiftUndefinedFlags(name, count, sz.bits);
}

function genDoubleShift(b: Builder): void {
  const rng = b.rng;
  const sz = b.size([16, 32, 64]);
  const left = rng.bool();
  const name = left ? "shld" : "shrd";
  const byCl = rng.bool();
  // 16-bit counts above 16 leave the result undefined (SDM SHLD/SHRD): keep them defined.
  const maxCount = sz.bits === 16 ? 16 : 255;
  let count = rng.bool(0.7) ? rng.below(Math.min(maxCount, sz.bits + 1) + 1) : rng.below(256);
  if (sz.bits === 16 && (count & 31) > 16) count &= 15;
  if (byCl) b.setGpr(RCX, (b.gpr(RCX) & ~0xffn) | BigInt(count));
  const rm = b.rm(sz);
  const reg = b.reg(sz);
  const op = left ? 0xa4 : 0xac;
  if (byCl) {
    b.emit(
      `${name} ${b.rmText(rm, sz)}, ${b.regName(reg, sz)}, cl`,
      b.sized(sz, { opcode: [0x0f, op + 1], reg, rm }),
    );
  } else {
    b.emit(
      `${name} ${b.rmText(rm, sz)}, ${b.regName(reg, sz)}, ${count}`,
      b.sized(sz, { opcode: [0x0f, op], reg, rm, imm: [count] }),
    );
  }
  b.undefinedFlags = doubleShiftUndefinedFlags(count, sz.bits);
}

function genBit(b: Builder): void {
  const rng = b.rng;
  const kind = rng.below(7);
  if (kind < 4) {
    const name = ["bt", "bts", "btr", "btc"][kind]!;
    const sz = b.size([16, 32, 64]);
    b.undefinedFlags = undefinedFlagsOf(name);
    if (rng.bool()) {
      // bt r/m, imm8: the offset is taken modulo the operand size.
      const rm = b.rm(sz);
      const bit = rng.u32() & 0xff;
      b.emit(
        `${name} ${b.rmText(rm, sz)}, ${bit}`,
        b.sized(sz, {
          prefixes: lockPrefix(b, name, rm),
          opcode: [0x0f, 0xba],
          reg: 4 + kind,
          rm,
          imm: [bit],
        }),
      );
    } else {
      // bt r/m, r: with a memory operand the bit offset is signed and can leave the operand,
      // so the offset register is chosen to keep the addressed word inside the window.
      const offReg = b.reg(sz, [RSP]);
      b.pinned.add(offReg);
      const rm = b.rm(sz, { avoid: [offReg] });
      const op = [0xa3, 0xab, 0xb3, 0xbb][kind]!;
      if (rm.kind === "mem") {
        // Keep the addressed bit inside the window: bit `off` lives in byte addr + off>>3.
        const t = rm.addr - b.data;
        const off = rng.range(Math.max(-8 * t, -300), Math.min(8 * (DATA_SIZE - t) - 1, 300));
        b.writeReg(offReg, sz, BigInt.asUintN(sz.bits, BigInt(off)));
      }
      b.emit(
        `${name} ${b.rmText(rm, sz)}, ${b.regName(offReg, sz)}`,
        b.sized(sz, { prefixes: lockPrefix(b, name, rm), opcode: [0x0f, op], reg: offReg, rm }),
      );
    }
    return;
  }
  if (kind < 6) {
    const name = kind === 4 ? "bsf" : "bsr";
    const sz = b.size([16, 32, 64]);
    b.undefinedFlags = undefinedFlagsOf(name);
    const rm = b.rm(sz);
    const reg = b.reg(sz);
    if (rng.bool(0.2)) b.writeRm(rm, sz, 0n);
    // SDM: "If the content of the source operand is 0, the content of the destination operand
    // is undefined" (AMD: unchanged).
    if (b.readRm(rm, sz) === 0n) b.undefinedGprs |= 1 << reg;
    b.emit(
      `${name} ${b.regName(reg, sz)}, ${b.rmText(rm, sz)}`,
      b.sized(sz, { opcode: [0x0f, kind === 4 ? 0xbc : 0xbd], reg, rm }),
    );
    return;
  }
  const sz = b.size([32, 64]);
  const r = b.reg(sz);
  b.emit(`bswap ${b.regName(r, sz)}`, b.sized(sz, { opcode: [0x0f, 0xc8], opReg: r }));
}

/**
 * popcnt / lzcnt / tzcnt (F3 0F B8/BD/BC). Without POPCNT/LZCNT/BMI1 a CPU runs F3 0F BC/BD as
 * BSF/BSR, so these are separate classes, run only where the interpreter advertises them.
 */
function genBitCount(b: Builder, which: number): void {
  const rng = b.rng;
  const name = ["popcnt", "tzcnt", "lzcnt"][which]!;
  const sz = b.size([16, 32, 64]);
  b.undefinedFlags = undefinedFlagsOf(name);
  const rm = b.rm(sz);
  if (rng.bool(0.15)) b.writeRm(rm, sz, 0n);
  const reg = b.reg(sz);
  b.emit(`${name} ${b.regName(reg, sz)}, ${b.rmText(rm, sz)}`, {
    prefixes: sz.bits === 16 ? [0x66] : [],
    mandatory: 0xf3,
    w: sz.bits === 64,
    opcode: [0x0f, [0xb8, 0xbc, 0xbd][which]!],
    reg,
    rm,
  });
}

const CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

function genMov(b: Builder): void {
  const rng = b.rng;
  switch (rng.below(14)) {
    case 0: {
      const sz = b.size();
      const rm = b.rm(sz);
      const reg = b.reg(sz);
      const w = sz.bits === 8 ? 0 : 1;
      if (rng.bool()) {
        b.emit(
          `mov ${b.rmText(rm, sz)}, ${b.regName(reg, sz)}`,
          b.sized(sz, { opcode: [0x88 + w], reg, rm }),
        );
      } else {
        b.emit(
          `mov ${b.regName(reg, sz)}, ${b.rmText(rm, sz)}`,
          b.sized(sz, { opcode: [0x8a + w], reg, rm }),
        );
      }
      return;
    }
    case 1: {
      const sz = b.size();
      const r = b.reg(sz);
      const n = sz.bytes;
      const v = b.imm(n);
      b.emit(
        `mov ${b.regName(r, sz)}, ${hexs(v)}`,
        b.sized(sz, { opcode: [sz.bits === 8 ? 0xb0 : 0xb8], opReg: r, imm: immBytes(v, n) }),
      );
      return;
    }
    case 2: {
      const sz = b.size();
      const rm = b.rm(sz);
      const { bytes, value } = immFor(b, sz);
      b.emit(
        `mov ${b.rmText(rm, sz)}, ${hexs(value)}`,
        b.sized(sz, { opcode: [sz.bits === 8 ? 0xc6 : 0xc7], reg: 0, rm, imm: bytes }),
      );
      return;
    }
    case 3: {
      // movzx / movsx
      const signx = rng.bool();
      const srcBits = rng.bool() ? 8 : 16;
      const sz = b.size(srcBits === 8 ? [16, 32, 64] : [32, 64]);
      const src: OpSize = {
        bits: srcBits as 8 | 16,
        bytes: srcBits / 8,
        rex: sz.bits === 64 || rng.bool(),
      };
      const rm = b.rm(src);
      let reg = b.reg(sz);
      if (srcBits === 8 && !src.rex && (reg >= 8)) reg &= 7;
      const name = signx ? "movsx" : "movzx";
      b.emit(
        `${name} ${b.regName(reg, sz)}, ${b.rmText(rm, src)}`,
        b.sized(sz, {
          rex: src.rex && srcBits === 8,
          opcode: [0x0f, (signx ? 0xbe : 0xb6) + (srcBits === 16 ? 1 : 0)],
          reg,
          rm,
        }),
      );
      return;
    }
    case 4: {
      // movsxd r64, r/m32 (and the rarely used 32-bit form, which is a plain move)
      const sz: OpSize = { bits: 32, bytes: 4, rex: false };
      const rm = b.rm(sz);
      const reg = b.reg(sz);
      b.emit(
        `movsxd ${b.regName(reg, 64)}, ${b.rmText(rm, sz)}`,
        { w: true, opcode: [0x63], reg, rm },
      );
      return;
    }
    case 5: {
      // lea: the address is computed, not accessed; FS/GS overrides are ignored.
      const sz = b.size([16, 32, 64]);
      const rm = b.mem(1);
      const reg = b.reg(sz);
      const seg = rng.bool(0.1) ? [0x64] : [];
      b.emit(
        `lea ${b.regName(reg, sz)}, ${rm.text}`,
        b.sized(sz, { prefixes: seg, opcode: [0x8d], reg, rm }),
      );
      return;
    }
    case 6: {
      // xchg r/m, r  and  xchg rAX, r
      const sz = b.size();
      if (sz.bits !== 8 && rng.bool(0.3)) {
        const r = b.reg(sz);
        if (r === RAX && sz.bits === 32) {
          // 90 is NOP; use 87 C0 for xchg eax, eax (it zero-extends RAX).
          b.emit("xchg eax, eax", { opcode: [0x87], reg: 0, rm: { kind: "reg", num: 0 } });
          return;
        }
        b.emit(
          `xchg ${b.regName(RAX, sz)}, ${b.regName(r, sz)}`,
          b.sized(sz, {
            opcode: [0x90],
            opReg: r,
            rex: r === RAX && sz.bits === 16 ? false : undefined,
          }),
        );
        return;
      }
      const rm = b.rm(sz);
      const reg = b.reg(sz);
      b.emit(
        `xchg ${b.rmText(rm, sz)}, ${b.regName(reg, sz)}`,
        b.sized(sz, {
          prefixes: lockPrefix(b, "xchg", rm),
          opcode: [0x86 + (sz.bits === 8 ? 0 : 1)],
          reg,
          rm,
        }),
      );
      return;
    }
    case 7: {
      const cc = rng.below(16);
      const sz = b.size([16, 32, 64]);
      const rm = b.rm(sz);
      const reg = b.reg(sz);
      b.emit(
        `cmov${CC[cc]} ${b.regName(reg, sz)}, ${b.rmText(rm, sz)}`,
        b.sized(sz, { opcode: [0x0f, 0x40 + cc], reg, rm }),
      );
      return;
    }
    case 8: {
      const cc = rng.below(16);
      const sz = b.size([8]);
      const rm = b.rm(sz);
      b.emit(
        `set${CC[cc]} ${b.rmText(rm, sz)}`,
        b.sized(sz, { opcode: [0x0f, 0x90 + cc], reg: 0, rm }),
      );
      return;
    }
    case 9: {
      const sz = b.size([16, 32, 64]);
      const conv = rng.bool();
      const names = conv
        ? { 16: "cbw", 32: "cwde", 64: "cdqe" }
        : { 16: "cwd", 32: "cdq", 64: "cqo" };
      b.emit(names[sz.bits as 16 | 32 | 64], b.sized(sz, { opcode: [conv ? 0x98 : 0x99] }));
      return;
    }
    case 10: {
      // xadd / cmpxchg
      const sz = b.size();
      const isX = rng.bool();
      const name = isX ? "xadd" : "cmpxchg";
      if (isX) b.undefinedFlags = 0;
      const rm = b.rm(sz, { avoid: [RAX] });
      const reg = b.reg(sz);
      if (!isX && rng.bool(0.5)) b.writeReg(RAX, sz, b.readRm(rm, sz));
      b.emit(
        `${name} ${b.rmText(rm, sz)}, ${b.regName(reg, sz)}`,
        b.sized(sz, {
          prefixes: lockPrefix(b, name, rm),
          opcode: [0x0f, (isX ? 0xc0 : 0xb0) + (sz.bits === 8 ? 0 : 1)],
          reg,
          rm,
        }),
      );
      return;
    }
    case 11: {
      // cmpxchg8b / cmpxchg16b (memory only; 16b needs 16-byte alignment)
      const wide = rng.bool();
      const n = wide ? 16 : 8;
      const rm = b.mem(n, { align: wide ? 16 : 1, avoid: [RAX, RDX, RBX, RCX] });
      if (rng.bool(0.5)) {
        const half = wide ? 64 : 32;
        const cur = b.readMem(rm.addr, n);
        const lo = cur & mask(half), hi = cur >> BigInt(half);
        if (wide) {
          b.setGpr(RAX, lo);
          b.setGpr(RDX, hi);
        } else {
          b.setGpr(RAX, (b.gpr(RAX) & ~0xffff_ffffn) | lo);
          b.setGpr(RDX, (b.gpr(RDX) & ~0xffff_ffffn) | hi);
        }
      }
      b.emit(
        `${wide ? "cmpxchg16b" : "cmpxchg8b"} ${PTR[n] ?? "oword"} ${rm.text}`,
        { prefixes: lockPrefix(b, "cmpxchg8b", rm), w: wide, opcode: [0x0f, 0xc7], reg: 1, rm },
      );
      return;
    }
    case 12: {
      // mov al/ax/eax/rax, moffs  and back (64-bit absolute address, or 32-bit with 0x67)
      const sz = b.size();
      const store = rng.bool();
      const a32 = rng.bool(0.3);
      const t = rng.range(0, DATA_SIZE - sz.bytes);
      const addr = b.data + t;
      const w = sz.bits === 8 ? 0 : 1;
      const text = `${PTR[sz.bytes]} [${hexs(addr)}]`;
      b.emit(
        store ? `mov ${text}, ${b.regName(RAX, sz)}` : `mov ${b.regName(RAX, sz)}, ${text}`,
        b.sized(sz, {
          prefixes: a32 ? [0x67] : [],
          opcode: [(store ? 0xa2 : 0xa0) + w],
          imm: immBytes(BigInt(addr), a32 ? 4 : 8),
        }),
      );
      return;
    }
    default: {
      // xlat: al = [rbx + al]
      const al = b.gpr(RAX) & 0xffn;
      const t = rng.range(0, DATA_SIZE - 256);
      const a32 = rng.bool(0.2);
      const rbx = BigInt(b.data + t) - 0n;
      b.setGpr(RBX, a32 ? (rng.u64() & ~0xffff_ffffn) | rbx : rbx);
      void al;
      b.emit("xlatb", { prefixes: a32 ? [0x67] : [], opcode: [0xd7] });
    }
  }
}

function genFlagOps(b: Builder): void {
  const ops: [string, number][] = [
    ["clc", 0xf8],
    ["stc", 0xf9],
    ["cmc", 0xf5],
    ["cld", 0xfc],
    ["std", 0xfd],
    ["lahf", 0x9f],
    ["sahf", 0x9e],
  ];
  const rng = b.rng;
  switch (rng.below(4)) {
    case 0: {
      // Multi-byte NOP (0F 1F /0): the memory form computes no access.
      const sz = b.size([16, 32]);
      const rm = b.rm(sz, { pMem: 0.8 });
      b.emit(`nop ${b.rmText(rm, sz)}`, b.sized(sz, { opcode: [0x0f, 0x1f], reg: 0, rm }));
      return;
    }
    case 1: {
      const [name, bytes] = rng.pick<[string, number[]]>([
        ["pause", [0xf3, 0x90]],
        ["xchg ax, ax", [0x66, 0x90]],
        ["nop", [0x90]],
      ]);
      b.emit(name, { opcode: bytes });
      return;
    }
    case 2: {
      // mov r/m, Sreg (8C /r): CS=0x33, SS=0x2b and null DS/ES/FS/GS in Linux user mode.
      const sreg = rng.below(6);
      const names = ["es", "cs", "ss", "ds", "fs", "gs"];
      const sz = b.size([16, 32, 64]);
      const rm = b.rm(sz);
      const memSz: OpSize = { bits: 16, bytes: 2, rex: false };
      b.emit(
        `mov ${b.rmText(rm, rm.kind === "mem" ? memSz : sz)}, ${names[sreg]}`,
        b.sized(sz, { opcode: [0x8c], reg: sreg, rm }),
      );
      return;
    }
    default: {
      const [name, op] = rng.pick(ops);
      b.emit(name, { opcode: [op] });
    }
  }
}

function genStack(b: Builder): void {
  const rng = b.rng;
  const rsp = b.gpr(RSP);
  switch (rng.below(12)) {
    case 0: {
      const wide = rng.bool(0.8);
      const r = rng.below(16);
      b.emit(`push ${wide ? GPR_NAMES[r] : R16[r]}`, {
        prefixes: wide ? [] : [0x66],
        opcode: [0x50],
        opReg: r,
      });
      return;
    }
    case 1: {
      const wide = rng.bool(0.8);
      const r = rng.below(16);
      b.emit(`pop ${wide ? GPR_NAMES[r] : R16[r]}`, {
        prefixes: wide ? [] : [0x66],
        opcode: [0x58],
        opReg: r,
      });
      return;
    }
    case 2: {
      const short = rng.bool();
      const v = short ? BigInt(rng.u32() & 0xff) : BigInt(rng.u32());
      b.emit(`push ${hexs(signed(v, short ? 8 : 32))}`, {
        opcode: [short ? 0x6a : 0x68],
        imm: immBytes(v, short ? 1 : 4),
      });
      return;
    }
    case 3: {
      const wide = rng.bool(0.8);
      const sz: OpSize = wide
        ? { bits: 64, bytes: 8, rex: false }
        : { bits: 16, bytes: 2, rex: false };
      const rm = b.rm(sz, { avoid: [RSP] });
      b.emit(`push ${b.rmText(rm, sz)}`, {
        prefixes: wide ? [] : [0x66],
        opcode: [0xff],
        reg: 6,
        rm,
      });
      return;
    }
    case 4: {
      const wide = rng.bool(0.8);
      const sz: OpSize = wide
        ? { bits: 64, bytes: 8, rex: false }
        : { bits: 16, bytes: 2, rex: false };
      // The address of pop r/m uses RSP after the pop (SDM POP): keep a margin for that.
      const rm = b.mem(sz.bytes, { avoid: [RSP], margin: 16 });
      b.emit(`pop ${b.rmText(rm, sz)}`, {
        prefixes: wide ? [] : [0x66],
        opcode: [0x8f],
        reg: 0,
        rm,
      });
      return;
    }
    case 5: {
      if (rng.bool(0.6)) {
        b.emit("pushfq", { opcode: [0x9c] });
        return;
      }
      // push fs / push gs: the null selectors of Linux user mode, 8 bytes (2 with 0x66).
      const gs = rng.bool();
      const wide = rng.bool(0.8);
      b.emit(`push ${wide ? "" : "word "}${gs ? "gs" : "fs"}`, {
        prefixes: wide ? [] : [0x66],
        opcode: [0x0f, gs ? 0xa8 : 0xa0],
      });
      return;
    }
    case 6: {
      // popfq: TF and AC would trap; IF/IOPL are silently kept at CPL3; upper half ignored.
      const v = BigInt(rng.u32() & ~((1 << 8) | (1 << 18) | (1 << 16))) |
        (rng.u64() & ~0xffff_ffffn);
      b.writeMem(Number(rsp), 8, v);
      b.emit("popfq", { opcode: [0x9d] });
      return;
    }
    case 7: {
      // leave: rsp = rbp; pop rbp
      const rbp = b.data + 0x80 + 8 * rng.range(0, 32);
      b.setGpr(RBP, BigInt(rbp));
      b.emit("leave", { opcode: [0xc9] });
      return;
    }
    case 8: {
      // enter size, level: level copies pointers from [rbp-8*i].
      const size = rng.range(0, 96);
      const level = rng.bool(0.6) ? 0 : rng.range(1, 4);
      b.setGpr(RBP, BigInt(b.data + 0x100 + 8 * rng.range(0, 16)));
      b.emit(`enter ${size}, ${level}`, {
        opcode: [0xc8],
        imm: [...immBytes(BigInt(size), 2), level],
      });
      return;
    }
    case 9: {
      // call rel32: pushes the next RIP, lands on a pad.
      const end = b.end(5);
      const t = b.target(end, 400);
      b.emit(`call ${hexs(t)}`, { opcode: [0xe8], imm: immBytes(BigInt(t - end), 4) });
      return;
    }
    case 10: {
      // ret / ret imm16: the return address on the stack is a landing pad.
      const withImm = rng.bool(0.3);
      const len = withImm ? 3 : 1;
      const t = b.target(b.end(len), 400);
      b.writeMem(Number(rsp), 8, BigInt(t));
      const n = rng.range(0, 12) * 8;
      if (withImm) b.emit(`ret ${n}`, { opcode: [0xc2], imm: immBytes(BigInt(n), 2) });
      else b.emit("ret", { opcode: [0xc3] });
      return;
    }
    default: {
      // call r/m64 / jmp r/m64 to a landing pad held in a register or memory.
      const isCall = rng.bool();
      const sz: OpSize = { bits: 64, bytes: 8, rex: false };
      const rm = b.rm(sz, { avoid: [RSP], regAvoid: [RSP] });
      // Encode once to learn the length, then place the target.
      b.emit("probe", { opcode: [0xff], reg: isCall ? 2 : 4, rm });
      const t = b.target(b.end(b.bytes.length), 400);
      b.writeRm(rm, sz, BigInt(t));
      b.emit(`${isCall ? "call" : "jmp"} ${b.rmText(rm, sz)}`, {
        opcode: [0xff],
        reg: isCall ? 2 : 4,
        rm,
      });
    }
  }
}

function genBranch(b: Builder): void {
  const rng = b.rng;
  switch (rng.below(5)) {
    case 0: {
      const cc = rng.below(16);
      // 2E/3E before Jcc are branch hints (not taken/taken), ignored for the result.
      const hint = rng.bool(0.15) ? [rng.pick([0x2e, 0x3e])] : [];
      const end = b.end(2 + hint.length);
      const t = b.target(end, 127);
      b.emit(`${hint.length ? "hinted " : ""}j${CC[cc]} short ${hexs(t)}`, {
        prefixes: hint,
        opcode: [0x70 + cc],
        imm: [t - end],
      });
      return;
    }
    case 1: {
      const cc = rng.below(16);
      const end = b.end(6);
      const t = b.target(end, 400);
      b.emit(`j${CC[cc]} near ${hexs(t)}`, {
        opcode: [0x0f, 0x80 + cc],
        imm: immBytes(BigInt(t - end), 4),
      });
      return;
    }
    case 2: {
      const short = rng.bool();
      const end = b.end(short ? 2 : 5);
      const t = b.target(end, short ? 127 : 400);
      b.emit(`jmp ${hexs(t)}`, {
        opcode: [short ? 0xeb : 0xe9],
        imm: immBytes(BigInt(t - end), short ? 1 : 4),
      });
      return;
    }
    default: {
      // loop / loope / loopne / jrcxz, with 0x67 for the ECX forms.
      const op = rng.below(4);
      const a32 = rng.bool(0.3);
      if (rng.bool(0.3)) b.setGpr(RCX, rng.pick([0n, 1n, 2n, 0x1_0000_0000n, 0x1_0000_0001n]));
      const len = a32 ? 3 : 2;
      const end = b.end(len);
      const t = b.target(end, 127);
      const names = ["loopne", "loope", "loop", a32 ? "jecxz" : "jrcxz"];
      b.emit(`${names[op]} ${hexs(t)}`, {
        prefixes: a32 ? [0x67] : [],
        opcode: [0xe0 + op],
        imm: [t - end],
      });
    }
  }
}

function genString(b: Builder): void {
  const rng = b.rng;
  const kinds: [string, number, boolean][] = [
    // name, base opcode, uses rsi (source)
    ["movs", 0xa4, true],
    ["cmps", 0xa6, true],
    ["stos", 0xaa, false],
    ["lods", 0xac, true],
    ["scas", 0xae, false],
  ];
  const [name, op, usesSi] = rng.pick(kinds);
  const usesDi = name !== "lods";
  const sz = b.size();
  const suffix = { 8: "b", 16: "w", 32: "d", 64: "q" }[sz.bits];
  const rep = rng.below(3); // 0: none, 1: rep/repe (F3), 2: repne (F2)
  const cond = name === "cmps" || name === "scas";
  const prefixes: number[] = [];
  let text = `${name}${suffix}`;
  if (rep === 1) {
    prefixes.push(0xf3);
    text = `${cond ? "repe" : "rep"} ${text}`;
  } else if (rep === 2 && cond) {
    prefixes.push(0xf2);
    text = `repne ${text}`;
  }
  const a32 = rng.bool(0.2);
  if (a32) prefixes.push(0x67);
  const count = rep === 0 || (rep === 2 && !cond) ? 1 : rng.range(0, 8);
  if (rep !== 0) {
    const c = BigInt(count);
    b.setGpr(RCX, a32 ? (rng.u64() & ~0xffff_ffffn) | c : c);
  }
  if (rep === 2 && !cond) {
    // F2 on a non-comparing string op acts like REP on every CPU; avoid relying on that.
    prefixes.length = 0;
    text = `${name}${suffix}`;
    if (a32) prefixes.push(0x67);
  }
  const span = (count + 1) * sz.bytes;
  const place = () => {
    const off = rng.range(span, DATA_SIZE - span - sz.bytes);
    const v = BigInt(b.data + off);
    return a32 ? (rng.u64() & ~0xffff_ffffn) | v : v;
  };
  if (usesSi) {
    let si = place();
    if (b.opts.gsBase && rng.bool(0.12)) {
      // A GS override applies to the source (RSI) only; DS would be ignored, so test GS.
      const low = Number(si & 0xffff_ffffn);
      const g = BigInt(rng.range(0, low - span));
      b.state.gsBase = g;
      si -= g;
      prefixes.push(0x65);
      text = `gs ${text}`;
    }
    b.setGpr(RSI, si);
  }
  if (usesDi) b.setGpr(RDI, place());
  if (cond && rng.bool(0.5)) {
    // Make the compared data partly equal so REPE/REPNE stop at interesting places.
    const di = Number(b.gpr(RDI) & 0xffff_ffffn) - b.data;
    const down = (b.state.rflags & FLAG_DF) !== 0;
    const first = down ? di - (count - 1) * sz.bytes : di;
    const n = Math.max(1, count) * sz.bytes;
    if (name === "cmps") {
      const si = Number(b.gpr(RSI) & 0xffff_ffffn) - b.data;
      const sfirst = down ? si - (count - 1) * sz.bytes : si;
      for (let i = 0; i < n; i++) {
        if (rng.bool(0.9) && first + i >= 0 && sfirst + i >= 0) {
          b.state.data[first + i] = b.state.data[sfirst + i]!;
        }
      }
    } else {
      const v = b.readMem(b.data + di, sz.bytes);
      b.writeReg(RAX, sz, v);
    }
  }
  b.rep = prefixes.includes(0xf3) || prefixes.includes(0xf2);
  b.emit(text, b.sized(sz, { prefixes, opcode: [op + (sz.bits === 8 ? 0 : 1)] }));
}

/** Linux user-mode selectors: 64-bit code and data (GDT entries 6 and 5, RPL 3). */
const USER_CS = 0x33n, USER_SS = 0x2bn;

/**
 * Far control transfers within CPL 3: IRETQ, RETF, and far JMP/CALL through m16:32, all back to
 * the Linux user code selector 0x33 and a landing pad. (The m16:64 form is avoided: AMD CPUs
 * ignore REX.W there.)
 */
function genFar(b: Builder): void {
  const rng = b.rng;
  const rsp = Number(b.gpr(RSP));
  switch (rng.below(4)) {
    case 0: {
      // iretq: pops RIP, CS, RFLAGS, RSP, SS.
      const t = b.target(b.end(2), 400);
      const flags = BigInt((rng.u32() & SETTABLE_FLAGS) | FLAG_FIXED | FLAG_IF);
      const newRsp = BigInt(b.data + 0x40 + 8 * rng.range(0, 40));
      b.writeMem(rsp, 8, BigInt(t));
      b.writeMem(rsp + 8, 8, USER_CS);
      b.writeMem(rsp + 16, 8, flags);
      b.writeMem(rsp + 24, 8, newRsp);
      b.writeMem(rsp + 32, 8, USER_SS);
      b.emit("iretq", { w: true, opcode: [0xcf] });
      return;
    }
    case 1: {
      // retf (REX.W: 8-byte slots) or retf with 4-byte slots, optionally with an imm16.
      const wide = rng.bool();
      const withImm = rng.bool(0.3);
      const len = (wide ? 1 : 0) + (withImm ? 3 : 1);
      const t = b.target(b.end(len), 400);
      const slot = wide ? 8 : 4;
      b.writeMem(rsp, slot, BigInt(t));
      b.writeMem(rsp + slot, slot, USER_CS);
      const n = rng.range(0, 8) * 8;
      b.emit(`retf${wide ? "q" : ""}${withImm ? ` ${n}` : ""}`, {
        w: wide,
        opcode: [withImm ? 0xca : 0xcb],
        imm: withImm ? immBytes(BigInt(n), 2) : [],
      });
      return;
    }
    default: {
      // jmp far / call far [m16:32]
      const isCall = rng.bool();
      const rm = b.mem(6, { avoid: [RSP] });
      b.emit("probe", { opcode: [0xff], reg: isCall ? 3 : 5, rm });
      const t = b.target(b.end(b.bytes.length), 400);
      b.writeMem(rm.addr, 4, BigInt(t));
      b.writeMem(rm.addr + 4, 2, USER_CS);
      b.emit(`${isCall ? "call" : "jmp"} far ${rm.text}`, {
        opcode: [0xff],
        reg: isCall ? 3 : 5,
        rm,
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SSE

/** How an SSE instruction's operands are laid out. */
type SseForm =
  | "xx" // xmm, xmm/m
  | "mx" // xmm/m, xmm (stores)
  | "xm" // xmm, m (memory-only loads such as movlps)
  | "xi" // xmm (rm), imm8 with /digit
  | "xg" // xmm, r/m32|64
  | "gx" // r32|64, xmm/m
  | "gr" // r32|64, xmm (register only)
  | "rx" // xmm, xmm (register only)
  | "mg"; // r/m32|64, xmm

interface SseOp {
  name: string;
  pfx?: number;
  op: number[];
  form: SseForm;
  /** Bytes a memory operand covers. */
  mem: number;
  /** Memory operand must be 16-byte aligned. */
  align?: boolean;
  /** An imm8 follows: "any" byte, or "cmp" (0-7 predicate). */
  imm?: "any" | "cmp";
  /** /digit for "xi" forms. */
  digit?: number;
  /** Lane type for choosing interesting values. */
  lane: "i" | "s" | "d";
  /** GPR operand may be 64-bit (REX.W) */
  w?: boolean;
}

function sse(
  name: string,
  pfx: number | undefined,
  op: number[],
  form: SseForm,
  mem: number,
  lane: "i" | "s" | "d",
  extra: Partial<SseOp> = {},
): SseOp {
  return { name, pfx, op, form, mem, lane, align: mem === 16 && form !== "mx", ...extra };
}

const SSE_INT: SseOp[] = [
  ...(
    [
      ["paddb", 0xfc],
      ["paddw", 0xfd],
      ["paddd", 0xfe],
      ["paddq", 0xd4],
      ["psubb", 0xf8],
      ["psubw", 0xf9],
      ["psubd", 0xfa],
      ["psubq", 0xfb],
      ["paddsb", 0xec],
      ["paddsw", 0xed],
      ["paddusb", 0xdc],
      ["paddusw", 0xdd],
      ["psubsb", 0xe8],
      ["psubsw", 0xe9],
      ["psubusb", 0xd8],
      ["psubusw", 0xd9],
      ["pand", 0xdb],
      ["pandn", 0xdf],
      ["por", 0xeb],
      ["pxor", 0xef],
      ["pcmpeqb", 0x74],
      ["pcmpeqw", 0x75],
      ["pcmpeqd", 0x76],
      ["pcmpgtb", 0x64],
      ["pcmpgtw", 0x65],
      ["pcmpgtd", 0x66],
      ["pmullw", 0xd5],
      ["pmulhw", 0xe5],
      ["pmulhuw", 0xe4],
      ["pmuludq", 0xf4],
      ["pmaddwd", 0xf5],
      ["psadbw", 0xf6],
      ["pavgb", 0xe0],
      ["pavgw", 0xe3],
      ["pmaxub", 0xde],
      ["pminub", 0xda],
      ["pmaxsw", 0xee],
      ["pminsw", 0xea],
      ["packsswb", 0x63],
      ["packuswb", 0x67],
      ["packssdw", 0x6b],
      ["punpcklbw", 0x60],
      ["punpcklwd", 0x61],
      ["punpckldq", 0x62],
      ["punpcklqdq", 0x6c],
      ["punpckhbw", 0x68],
      ["punpckhwd", 0x69],
      ["punpckhdq", 0x6a],
      ["punpckhqdq", 0x6d],
      ["psrlw", 0xd1],
      ["psrld", 0xd2],
      ["psrlq", 0xd3],
      ["psraw", 0xe1],
      ["psrad", 0xe2],
      ["psllw", 0xf1],
      ["pslld", 0xf2],
      ["psllq", 0xf3],
    ] as [string, number][]
  ).map(([n, o]) => sse(n, 0x66, [0x0f, o], "xx", 16, "i")),
  sse("pshufd", 0x66, [0x0f, 0x70], "xx", 16, "i", { imm: "any" }),
  sse("pshuflw", 0xf2, [0x0f, 0x70], "xx", 16, "i", { imm: "any" }),
  sse("pshufhw", 0xf3, [0x0f, 0x70], "xx", 16, "i", { imm: "any" }),
  sse("psrlw", 0x66, [0x0f, 0x71], "xi", 0, "i", { digit: 2 }),
  sse("psraw", 0x66, [0x0f, 0x71], "xi", 0, "i", { digit: 4 }),
  sse("psllw", 0x66, [0x0f, 0x71], "xi", 0, "i", { digit: 6 }),
  sse("psrld", 0x66, [0x0f, 0x72], "xi", 0, "i", { digit: 2 }),
  sse("psrad", 0x66, [0x0f, 0x72], "xi", 0, "i", { digit: 4 }),
  sse("pslld", 0x66, [0x0f, 0x72], "xi", 0, "i", { digit: 6 }),
  sse("psrlq", 0x66, [0x0f, 0x73], "xi", 0, "i", { digit: 2 }),
  sse("psrldq", 0x66, [0x0f, 0x73], "xi", 0, "i", { digit: 3 }),
  sse("psllq", 0x66, [0x0f, 0x73], "xi", 0, "i", { digit: 6 }),
  sse("pslldq", 0x66, [0x0f, 0x73], "xi", 0, "i", { digit: 7 }),
  sse("movdqa", 0x66, [0x0f, 0x6f], "xx", 16, "i"),
  sse("movdqu", 0xf3, [0x0f, 0x6f], "xx", 16, "i", { align: false }),
  sse("movdqa", 0x66, [0x0f, 0x7f], "mx", 16, "i", { align: true }),
  sse("movdqu", 0xf3, [0x0f, 0x7f], "mx", 16, "i"),
  sse("movd", 0x66, [0x0f, 0x6e], "xg", 4, "i", { w: true }),
  sse("movd", 0x66, [0x0f, 0x7e], "mg", 4, "i", { w: true }),
  sse("movq", 0xf3, [0x0f, 0x7e], "xx", 8, "i"),
  sse("movq", 0x66, [0x0f, 0xd6], "mx", 8, "i"),
  sse("pmovmskb", 0x66, [0x0f, 0xd7], "gr", 0, "i"),
  sse("pextrw", 0x66, [0x0f, 0xc5], "gr", 0, "i", { imm: "any" }),
  sse("pinsrw", 0x66, [0x0f, 0xc4], "xg", 2, "i", { imm: "any" }),
];

const SSE_FP: SseOp[] = [
  ...(
    [
      ["add", 0x58],
      ["mul", 0x59],
      ["sub", 0x5c],
      ["min", 0x5d],
      ["div", 0x5e],
      ["max", 0x5f],
      ["sqrt", 0x51],
    ] as [string, number][]
  ).flatMap(([n, o]) => [
    sse(`${n}ps`, undefined, [0x0f, o], "xx", 16, "s"),
    sse(`${n}pd`, 0x66, [0x0f, o], "xx", 16, "d"),
    sse(`${n}ss`, 0xf3, [0x0f, o], "xx", 4, "s"),
    sse(`${n}sd`, 0xf2, [0x0f, o], "xx", 8, "d"),
  ]),
  ...(
    [
      ["and", 0x54],
      ["andn", 0x55],
      ["or", 0x56],
      ["xor", 0x57],
      ["unpckl", 0x14],
      ["unpckh", 0x15],
    ] as [string, number][]
  ).flatMap(([n, o]) => [
    sse(`${n}ps`, undefined, [0x0f, o], "xx", 16, "s"),
    sse(`${n}pd`, 0x66, [0x0f, o], "xx", 16, "d"),
  ]),
  sse("cmpps", undefined, [0x0f, 0xc2], "xx", 16, "s", { imm: "cmp" }),
  sse("cmppd", 0x66, [0x0f, 0xc2], "xx", 16, "d", { imm: "cmp" }),
  sse("cmpss", 0xf3, [0x0f, 0xc2], "xx", 4, "s", { imm: "cmp" }),
  sse("cmpsd", 0xf2, [0x0f, 0xc2], "xx", 8, "d", { imm: "cmp" }),
  sse("shufps", undefined, [0x0f, 0xc6], "xx", 16, "s", { imm: "any" }),
  sse("shufpd", 0x66, [0x0f, 0xc6], "xx", 16, "d", { imm: "any" }),
  sse("ucomiss", undefined, [0x0f, 0x2e], "xx", 4, "s"),
  sse("comiss", undefined, [0x0f, 0x2f], "xx", 4, "s"),
  sse("ucomisd", 0x66, [0x0f, 0x2e], "xx", 8, "d"),
  sse("comisd", 0x66, [0x0f, 0x2f], "xx", 8, "d"),
  sse("movaps", undefined, [0x0f, 0x28], "xx", 16, "s"),
  sse("movups", undefined, [0x0f, 0x10], "xx", 16, "s", { align: false }),
  sse("movapd", 0x66, [0x0f, 0x28], "xx", 16, "d"),
  sse("movupd", 0x66, [0x0f, 0x10], "xx", 16, "d", { align: false }),
  sse("movaps", undefined, [0x0f, 0x29], "mx", 16, "s", { align: true }),
  sse("movups", undefined, [0x0f, 0x11], "mx", 16, "s"),
  sse("movss", 0xf3, [0x0f, 0x10], "xx", 4, "s"),
  sse("movss", 0xf3, [0x0f, 0x11], "mx", 4, "s"),
  sse("movsd", 0xf2, [0x0f, 0x10], "xx", 8, "d"),
  sse("movsd", 0xf2, [0x0f, 0x11], "mx", 8, "d"),
  sse("movlps", undefined, [0x0f, 0x12], "xm", 8, "s"),
  sse("movhps", undefined, [0x0f, 0x16], "xm", 8, "s"),
  sse("movhlps", undefined, [0x0f, 0x12], "rx", 0, "s"),
  sse("movlhps", undefined, [0x0f, 0x16], "rx", 0, "s"),
  sse("movlpd", 0x66, [0x0f, 0x12], "xm", 8, "d"),
  sse("movhpd", 0x66, [0x0f, 0x16], "xm", 8, "d"),
  sse("movmskps", undefined, [0x0f, 0x50], "gr", 0, "s"),
  sse("movmskpd", 0x66, [0x0f, 0x50], "gr", 0, "d"),
  sse("cvtsi2ss", 0xf3, [0x0f, 0x2a], "xg", 4, "s", { w: true }),
  sse("cvtsi2sd", 0xf2, [0x0f, 0x2a], "xg", 4, "d", { w: true }),
  sse("cvttss2si", 0xf3, [0x0f, 0x2c], "gx", 4, "s", { w: true }),
  sse("cvtss2si", 0xf3, [0x0f, 0x2d], "gx", 4, "s", { w: true }),
  sse("cvttsd2si", 0xf2, [0x0f, 0x2c], "gx", 8, "d", { w: true }),
  sse("cvtsd2si", 0xf2, [0x0f, 0x2d], "gx", 8, "d", { w: true }),
  sse("cvtss2sd", 0xf3, [0x0f, 0x5a], "xx", 4, "s"),
  sse("cvtsd2ss", 0xf2, [0x0f, 0x5a], "xx", 8, "d"),
  sse("cvtps2pd", undefined, [0x0f, 0x5a], "xx", 8, "s"),
  sse("cvtpd2ps", 0x66, [0x0f, 0x5a], "xx", 16, "d"),
  sse("cvtdq2ps", undefined, [0x0f, 0x5b], "xx", 16, "i"),
  sse("cvtps2dq", 0x66, [0x0f, 0x5b], "xx", 16, "s"),
  sse("cvttps2dq", 0xf3, [0x0f, 0x5b], "xx", 16, "s"),
  sse("cvtdq2pd", 0xf3, [0x0f, 0xe6], "xx", 8, "i"),
  sse("cvtpd2dq", 0xf2, [0x0f, 0xe6], "xx", 16, "d"),
  sse("cvttpd2dq", 0x66, [0x0f, 0xe6], "xx", 16, "d"),
];

/** An interesting 32-bit float bit pattern. */
function f32Bits(rng: Rng): number {
  switch (rng.below(10)) {
    case 0:
      return rng.pick([0, 0x8000_0000, 0x7f80_0000, 0xff80_0000]); // ±0, ±inf
    case 1:
      return (rng.pick([0x7fc0_0000, 0x7f80_0000, 0xffc0_0000]) | (rng.u32() & 0x3f_ffff)) ||
        0x7fc0_0000; // NaNs (quiet and signalling)
    case 2:
      return (rng.u32() & 0x807f_ffff) >>> 0; // denormals
    case 3:
      return rng.pick([
        0x3f80_0000,
        0xbf80_0000,
        0x7f7f_ffff,
        0x0080_0000,
        0x4f00_0000,
        0xcf00_0000,
      ]);
    case 4: {
      const f = new Float32Array([rng.range(-70000, 70000) / rng.pick([1, 2, 4, 3, 10])]);
      return new Uint32Array(f.buffer)[0]!;
    }
    default:
      // Random sign and mantissa, exponent near 1.0 so arithmetic rounds instead of saturating.
      return ((rng.u32() & 0x807f_ffff) | ((rng.range(100, 160)) << 23)) >>> 0;
  }
}

/** An interesting 64-bit float bit pattern as [lo, hi] dwords. */
function f64Bits(rng: Rng): [number, number] {
  switch (rng.below(10)) {
    case 0:
      return [0, rng.pick([0, 0x8000_0000, 0x7ff0_0000, 0xfff0_0000])];
    case 1:
      return [
        rng.u32(),
        (rng.pick([0x7ff8_0000, 0x7ff0_0000, 0xfff8_0000]) | (rng.u32() & 0x7_ffff) | 1) >>> 0,
      ];
    case 2:
      return [rng.u32(), (rng.u32() & 0x800f_ffff) >>> 0];
    case 3: {
      const v = rng.pick([
        1,
        -1,
        1.7976931348623157e308,
        2.2250738585072014e-308,
        2 ** 63,
        -(2 ** 63),
        2 ** 31,
        -(2 ** 31) - 1,
      ]);
      const u = new Uint32Array(new Float64Array([v]).buffer);
      return [u[0]!, u[1]!];
    }
    case 4: {
      const u = new Uint32Array(
        new Float64Array([rng.range(-70000, 70000) / rng.pick([1, 2, 4, 3, 10])]).buffer,
      );
      return [u[0]!, u[1]!];
    }
    default:
      return [rng.u32(), ((rng.u32() & 0x800f_ffff) | (rng.range(990, 1060) << 20)) >>> 0];
  }
}

function fillLanes(rng: Rng, bytes: Uint8Array, lane: "i" | "s" | "d"): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i + 4 <= bytes.length; i += lane === "d" ? 8 : 4) {
    if (lane === "s") v.setUint32(i, f32Bits(rng), true);
    else if (lane === "d" && i + 8 <= bytes.length) {
      const [lo, hi] = f64Bits(rng);
      v.setUint32(i, lo, true);
      v.setUint32(i + 4, hi, true);
    } else if (lane === "i") {
      v.setUint32(i, rng.bool(0.3) ? Number(interesting(rng, 32)) : rng.u32(), true);
    }
  }
}

function genSse(b: Builder, table: readonly SseOp[], fp: boolean): void {
  const rng = b.rng;
  const op = rng.pick(table);
  if (fp) {
    fillLanes(rng, b.state.xmm, op.lane);
    fillLanes(rng, b.state.data, op.lane);
    // Random rounding, DAZ, FTZ and sticky flags; exceptions stay masked (an unmasked one
    // would raise SIGFPE in the host).
    b.state.mxcsr = MXCSR_MASKS | (rng.u32() & 0x3f) | (rng.below(4) << 13) |
      (rng.bool(0.2) ? 0x8000 : 0) | (rng.bool(0.2) ? 0x40 : 0);
  } else if (rng.bool(0.3)) {
    fillLanes(rng, b.state.xmm, "i");
  }
  const xr = rng.below(16);
  const imm = op.imm === "any" ? [rng.u32() & 0xff] : op.imm === "cmp" ? [rng.below(8)] : [];
  const immText = imm.length ? `, ${imm[0]}` : "";
  const memOpt = { align: op.align ? 16 : 1 };
  const xmmRm = (allowMem: boolean, pMem = 0.4): Rm =>
    allowMem && op.mem > 0 && rng.bool(pMem)
      ? b.mem(op.mem, memOpt)
      : { kind: "reg", num: rng.below(16) };
  const xText = (rm: Rm) => (rm.kind === "reg" ? `xmm${rm.num}` : `${PTR[op.mem]} ${rm.text}`);
  const base: Enc = { mandatory: op.pfx, opcode: op.op, imm };
  switch (op.form) {
    case "xx": {
      const rm = xmmRm(true);
      b.emit(`${op.name} xmm${xr}, ${xText(rm)}${immText}`, { ...base, reg: xr, rm });
      break;
    }
    case "mx": {
      const rm = xmmRm(true, 0.7);
      b.emit(`${op.name} ${xText(rm)}, xmm${xr}`, { ...base, reg: xr, rm });
      break;
    }
    case "xm": {
      const rm = b.mem(op.mem, memOpt);
      b.emit(`${op.name} xmm${xr}, ${xText(rm)}`, { ...base, reg: xr, rm });
      break;
    }
    case "rx": {
      const rm: Rm = { kind: "reg", num: rng.below(16) };
      b.emit(`${op.name} xmm${xr}, ${xText(rm)}`, { ...base, reg: xr, rm });
      break;
    }
    case "xi": {
      const count = rng.bool(0.7) ? rng.below(20) : rng.u32() & 0xff;
      b.emit(`${op.name} xmm${xr}, ${count}`, {
        ...base,
        reg: op.digit,
        rm: { kind: "reg", num: xr },
        imm: [count],
      });
      break;
    }
    case "xg":
    case "mg": {
      const wide = op.w === true && op.name !== "pinsrw" && rng.bool();
      const sz: OpSize = { bits: wide ? 64 : 32, bytes: wide ? 8 : 4, rex: false };
      const memBytes = op.name === "pinsrw" ? 2 : sz.bytes;
      const rm: Rm = rng.bool(0.4) ? b.mem(memBytes) : { kind: "reg", num: rng.below(16) };
      const gText = rm.kind === "reg" ? b.regName(rm.num, sz) : `${PTR[memBytes]} ${rm.text}`;
      const name = op.name === "movd" && wide ? "movq" : op.name;
      const text = op.form === "xg"
        ? `${name} xmm${xr}, ${gText}${immText}`
        : `${name} ${gText}, xmm${xr}`;
      b.emit(text, { ...base, w: wide, reg: xr, rm });
      break;
    }
    case "gx":
    case "gr": {
      const wide = op.w === true && rng.bool();
      const sz: OpSize = { bits: wide ? 64 : 32, bytes: wide ? 8 : 4, rex: false };
      const g = rng.below(16);
      const rm = xmmRm(op.form === "gx");
      b.emit(`${op.name} ${b.regName(g, sz)}, ${xText(rm)}${immText}`, {
        ...base,
        w: wide,
        reg: g,
        rm,
      });
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// x87

/** FSW condition-code bits. */
const C0 = 1 << 8, C1 = 1 << 9, C2 = 1 << 10, C3 = 1 << 14;
/** SDM: arithmetic and load/store instructions leave C0, C2 and C3 undefined. */
const C023 = C0 | C2 | C3;

/** Writes an 80-bit extended value for `f64` bits ([lo, hi] dwords) into `out` at `at`. */
function toExtended(lo: number, hi: number, out: Uint8Array, at: number): void {
  const sign = hi >>> 31;
  const e = (hi >>> 20) & 0x7ff;
  let frac = (BigInt(hi & 0xf_ffff) << 32n) | BigInt(lo);
  let exp: number;
  let mant: bigint;
  if (e === 0x7ff) {
    exp = 0x7fff;
    mant = (1n << 63n) | (frac << 11n);
  } else if (e === 0) {
    if (frac === 0n) {
      exp = 0;
      mant = 0n;
    } else {
      // A double denormal is a normal extended value.
      let shift = 0;
      while (!(frac & (1n << 52n))) {
        frac <<= 1n;
        shift++;
      }
      exp = 1 - 1023 - shift + 16383;
      mant = frac << 11n;
    }
  } else {
    exp = e - 1023 + 16383;
    mant = (1n << 63n) | (frac << 11n);
  }
  const v = new DataView(out.buffer, out.byteOffset + at, 10);
  v.setBigUint64(0, mant, true);
  v.setUint16(8, (sign << 15) | exp, true);
}

/** An interesting extended value, sometimes with mantissa bits a double cannot hold. */
function extendedBits(rng: Rng, out: Uint8Array, at: number): void {
  const [lo, hi] = f64Bits(rng);
  toExtended(lo, hi, out, at);
  if (rng.bool(0.3)) {
    const v = new DataView(out.buffer, out.byteOffset + at, 10);
    if ((v.getUint16(8, true) & 0x7fff) !== 0 && (v.getUint16(8, true) & 0x7fff) !== 0x7fff) {
      v.setUint32(0, rng.u32(), true);
    }
  }
}

interface X87Op {
  text: string;
  bytes?: number[];
  /** Memory form: opcode byte, /digit, operand bytes and kind of value placed there. */
  mem?: { op: number; digit: number; n: number; kind: "f32" | "f64" | "f80" | "int" | "cw" };
  fsw: number;
  flags?: number;
}

function x87Ops(i: number): X87Op[] {
  const st = `st(${i})`;
  const arith = ["fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"];
  const ops: X87Op[] = [
    { text: `fld ${st}`, bytes: [0xd9, 0xc0 + i], fsw: C023 },
    { text: `fxch ${st}`, bytes: [0xd9, 0xc8 + i], fsw: C023 },
    { text: "fchs", bytes: [0xd9, 0xe0], fsw: C023 },
    { text: "fabs", bytes: [0xd9, 0xe1], fsw: C023 },
    { text: "ftst", bytes: [0xd9, 0xe4], fsw: 0 },
    { text: "fxam", bytes: [0xd9, 0xe5], fsw: 0 },
    ...["fld1", "fldl2t", "fldl2e", "fldpi", "fldlg2", "fldln2", "fldz"].map((n, k) => ({
      text: n,
      bytes: [0xd9, 0xe8 + k],
      fsw: C023,
    })),
    { text: "fsqrt", bytes: [0xd9, 0xfa], fsw: C023 },
    { text: "frndint", bytes: [0xd9, 0xfc], fsw: C023 },
    { text: "fincstp", bytes: [0xd9, 0xf7], fsw: C023 },
    { text: "fdecstp", bytes: [0xd9, 0xf6], fsw: C023 },
    { text: `ffree ${st}`, bytes: [0xdd, 0xc0 + i], fsw: C023 | C1 },
    { text: "fninit", bytes: [0xdb, 0xe3], fsw: 0 },
    { text: "fnclex", bytes: [0xdb, 0xe2], fsw: C023 | C1 },
    { text: "fnstsw ax", bytes: [0xdf, 0xe0], fsw: 0 },
    { text: "fcompp", bytes: [0xde, 0xd9], fsw: 0 },
    { text: "fucompp", bytes: [0xda, 0xe9], fsw: 0 },
    { text: `fucom ${st}`, bytes: [0xdd, 0xe0 + i], fsw: 0 },
    { text: `fucomp ${st}`, bytes: [0xdd, 0xe8 + i], fsw: 0 },
    { text: `fcomi st, ${st}`, bytes: [0xdb, 0xf0 + i], fsw: C023 },
    { text: `fucomi st, ${st}`, bytes: [0xdb, 0xe8 + i], fsw: C023 },
    { text: `fcomip st, ${st}`, bytes: [0xdf, 0xf0 + i], fsw: C023 },
    { text: `fucomip st, ${st}`, bytes: [0xdf, 0xe8 + i], fsw: C023 },
    ...["fcmovb", "fcmove", "fcmovbe", "fcmovu"].map((n, k) => ({
      text: `${n} st, ${st}`,
      bytes: [0xda, 0xc0 + 8 * k + i],
      fsw: C023,
    })),
    ...["fcmovnb", "fcmovne", "fcmovnbe", "fcmovnu"].map((n, k) => ({
      text: `${n} st, ${st}`,
      bytes: [0xdb, 0xc0 + 8 * k + i],
      fsw: C023,
    })),
    ...arith.map((n, k) => ({
      text: `${n} st, ${st}`,
      bytes: [0xd8, 0xc0 + 8 * k + i],
      fsw: k === 2 || k === 3 ? 0 : C023,
    })),
    // DC/DE register forms per the SDM opcode tables (DC E0+i is FSUBR ST(i), ST(0)).
    ...([["fadd", 0], ["fmul", 1], ["fsubr", 4], ["fsub", 5], ["fdivr", 6], ["fdiv", 7]] as const)
      .flatMap(([n, k]) => [
        { text: `${n} ${st}, st`, bytes: [0xdc, 0xc0 + 8 * k + i], fsw: C023 },
        { text: `${n}p ${st}, st`, bytes: [0xde, 0xc0 + 8 * k + i], fsw: C023 },
      ]),
    ...arith.flatMap((n, k) => {
      const fsw = k === 2 || k === 3 ? 0 : C023;
      return [
        { text: `${n} dword`, mem: { op: 0xd8, digit: k, n: 4, kind: "f32" as const }, fsw },
        { text: `${n} qword`, mem: { op: 0xdc, digit: k, n: 8, kind: "f64" as const }, fsw },
        {
          text: `fi${n.slice(1)} dword`,
          mem: { op: 0xda, digit: k, n: 4, kind: "int" as const },
          fsw,
        },
        {
          text: `fi${n.slice(1)} word`,
          mem: { op: 0xde, digit: k, n: 2, kind: "int" as const },
          fsw,
        },
      ];
    }),
    { text: "fld dword", mem: { op: 0xd9, digit: 0, n: 4, kind: "f32" }, fsw: C023 },
    { text: "fld qword", mem: { op: 0xdd, digit: 0, n: 8, kind: "f64" }, fsw: C023 },
    { text: "fld tword", mem: { op: 0xdb, digit: 5, n: 10, kind: "f80" }, fsw: C023 },
    { text: "fst dword", mem: { op: 0xd9, digit: 2, n: 4, kind: "f32" }, fsw: C023 },
    { text: "fstp dword", mem: { op: 0xd9, digit: 3, n: 4, kind: "f32" }, fsw: C023 },
    { text: "fst qword", mem: { op: 0xdd, digit: 2, n: 8, kind: "f64" }, fsw: C023 },
    { text: "fstp qword", mem: { op: 0xdd, digit: 3, n: 8, kind: "f64" }, fsw: C023 },
    { text: "fstp tword", mem: { op: 0xdb, digit: 7, n: 10, kind: "f80" }, fsw: C023 },
    { text: "fild word", mem: { op: 0xdf, digit: 0, n: 2, kind: "int" }, fsw: C023 },
    { text: "fild dword", mem: { op: 0xdb, digit: 0, n: 4, kind: "int" }, fsw: C023 },
    { text: "fild qword", mem: { op: 0xdf, digit: 5, n: 8, kind: "int" }, fsw: C023 },
    { text: "fist word", mem: { op: 0xdf, digit: 2, n: 2, kind: "int" }, fsw: C023 },
    { text: "fist dword", mem: { op: 0xdb, digit: 2, n: 4, kind: "int" }, fsw: C023 },
    { text: "fistp word", mem: { op: 0xdf, digit: 3, n: 2, kind: "int" }, fsw: C023 },
    { text: "fistp dword", mem: { op: 0xdb, digit: 3, n: 4, kind: "int" }, fsw: C023 },
    { text: "fistp qword", mem: { op: 0xdf, digit: 7, n: 8, kind: "int" }, fsw: C023 },
    { text: "fnstcw word", mem: { op: 0xd9, digit: 7, n: 2, kind: "int" }, fsw: 0 },
    { text: "fldcw word", mem: { op: 0xd9, digit: 5, n: 2, kind: "cw" }, fsw: C023 | C1 },
    { text: "fnstsw word", mem: { op: 0xdd, digit: 7, n: 2, kind: "int" }, fsw: 0 },
  ];
  return ops;
}

/** Random x87 control word: all exceptions masked, random precision and rounding control. */
function randomFcw(rng: Rng): number {
  return 0x1040 | 0x3f | (rng.pick([0, 2, 3, 3]) << 8) | (rng.below(4) << 10);
}

function genX87(b: Builder): void {
  const rng = b.rng;
  const x = b.state.x87;
  const top = rng.below(8);
  x.fcw = randomFcw(rng);
  // Sticky exception flags and condition codes random; ES/B clear (everything is masked).
  x.fsw = (top << 11) | (rng.u32() & (0x3f | C0 | C1 | C2 | C3));
  x.ftw = rng.bool(0.6) ? 0xff : rng.u32() & 0xff;
  for (let i = 0; i < 8; i++) extendedBits(rng, x.st, 16 * i);
  const op = rng.pick(x87Ops(rng.below(8)));
  b.undefinedFsw = op.fsw;
  if (op.bytes) {
    b.emit(op.text, { opcode: op.bytes });
    return;
  }
  const m = op.mem!;
  const rm = b.mem(m.n);
  const at = rm.addr - b.data;
  const v = new DataView(b.state.data.buffer, at, m.n);
  if (m.kind === "f32") v.setUint32(0, f32Bits(rng), true);
  else if (m.kind === "f64") {
    const [lo, hi] = f64Bits(rng);
    v.setUint32(0, lo, true);
    v.setUint32(4, hi, true);
  } else if (m.kind === "f80") extendedBits(rng, b.state.data, at);
  else if (m.kind === "cw") v.setUint16(0, randomFcw(rng), true);
  else b.writeMem(rm.addr, m.n, interesting(rng, 8 * m.n));
  b.emit(`${op.text} ${rm.text}`, { opcode: [m.op], reg: m.digit, rm });
}

// ---------------------------------------------------------------------------------------------
// Classes

type GenFn = (b: Builder) => void;

/** Instruction classes: name → generator. */
const CLASSES: Record<string, GenFn> = {
  alu: genAlu,
  test: genTest,
  unary: genIncDecNotNeg,
  muldiv: genMulDiv,
  shift: genShift,
  bit: genBit,
  popcnt: (b) => genBitCount(b, 0),
  lzcnt_tzcnt: (b) => genBitCount(b, 1 + b.rng.below(2)),
  mov: genMov,
  flagop: genFlagOps,
  stack: genStack,
  branch: genBranch,
  far: genFar,
  string: genString,
  sse_int: (b) => genSse(b, SSE_INT, false),
  sse_fp: (b) => genSse(b, SSE_FP, true),
  x87: genX87,
};

/** Every instruction class the generator knows, in a stable order. */
export const CLASS_NAMES: readonly string[] = Object.keys(CLASSES);

/**
 * Generates test cases from one seed. The same seed, class list and options give the same
 * cases in the same order.
 *
 * @example
 * ```ts
 * import { Generator } from "./generator.ts";
 * const g = new Generator(1);
 * const c = g.next(0);
 * console.assert(c.bytes.length > 0 && c.mnemonic.length > 0);
 * ```
 */
export class Generator {
  readonly rng: Rng;
  readonly classes: readonly string[];
  readonly options: GeneratorOptions;

  constructor(
    seed: number,
    classes: readonly string[] = CLASS_NAMES,
    options: GeneratorOptions = {},
  ) {
    for (const c of classes) {
      if (!(c in CLASSES)) {
        throw new RangeError(
          `Unknown instruction class "${c}": expected one of ${CLASS_NAMES.join(", ")}`,
        );
      }
    }
    if (classes.length === 0) throw new RangeError("The generator needs at least one class");
    if (options.base !== undefined) checkBase(options.base);
    this.rng = new Rng(seed);
    this.classes = classes;
    this.options = options;
  }

  /** The next case, laid out for batch slot `slot`. */
  next(slot: number): TestCase {
    const cls = this.rng.pick(this.classes);
    const b = new Builder(this.rng, slot, this.options);
    CLASSES[cls]!(b);
    return b.build(cls);
  }

  /** `n` cases for slots 0..n-1. */
  batch(n: number): TestCase[] {
    const out: TestCase[] = [];
    for (let i = 0; i < n; i++) out.push(this.next(i));
    return out;
  }
}

/**
 * A hand-written case for slot `slot` of the region at `extra.base` (default PREFERRED_BASE;
 * pass the oracle's `base`): zeroed registers (RSP in the data window), flags 0x202, MXCSR
 * 0x1f80, zeroed data; `setup` adjusts the state. For tests and replays.
 *
 * @example
 * ```ts
 * import { makeCase } from "./generator.ts";
 * const c = makeCase(0, [0x48, 0x01, 0xd8], "add rax, rbx", (s) => {
 *   s.gpr[0] = 0xffff_ffff_ffff_ffffn;
 *   s.gpr[3] = 1n;
 * });
 * console.assert(c.bytes.length === 3);
 * ```
 */
export function makeCase(
  slot: number,
  bytes: readonly number[],
  mnemonic: string,
  setup?: (s: UserState) => void,
  extra: { cls?: string; targets?: number[]; undefinedFlags?: number; base?: number } = {},
): TestCase {
  const base = extra.base ?? PREFERRED_BASE;
  checkBase(base);
  const gpr = new Array<bigint>(16).fill(0n);
  gpr[RSP] = BigInt(dataAddress(slot, base) + 0x100);
  const state: UserState = {
    gpr,
    rflags: FLAG_FIXED | FLAG_IF,
    rip: BigInt(insnAddress(slot, base)),
    gsBase: 0n,
    xmm: new Uint8Array(256),
    mxcsr: MXCSR_MASKS,
    x87: { fcw: 0x37f, fsw: 0, ftw: 0, st: new Uint8Array(128) },
    data: new Uint8Array(DATA_SIZE),
  };
  setup?.(state);
  return {
    cls: extra.cls ?? "manual",
    mnemonic,
    bytes: new Uint8Array(bytes),
    slot,
    base,
    state,
    targets: extra.targets ?? [],
    undefinedFlags: extra.undefinedFlags ?? undefinedFlagsOf(mnemonic.split(" ")[0]!),
    undefinedGprs: 0,
  };
}

/** A CPUID feature bit an instruction class needs. */
export interface CpuidFeature {
  /** Feature name as the manuals spell it. */
  name: string;
  leaf: number;
  /** Output register: 0 = EAX, 1 = EBX, 2 = ECX, 3 = EDX. */
  reg: number;
  bit: number;
}

const SSE: CpuidFeature = { name: "SSE", leaf: 1, reg: 3, bit: 25 };
const SSE2: CpuidFeature = { name: "SSE2", leaf: 1, reg: 3, bit: 26 };

/**
 * CPUID features each class needs beyond the x86-64 integer baseline (Intel SDM Vol. 2A, CPUID
 * feature tables). The tester skips a class the interpreter does not advertise unless `--only`
 * names it.
 */
export const CLASS_FEATURES: Readonly<Record<string, readonly CpuidFeature[]>> = {
  sse_int: [SSE2],
  sse_fp: [SSE, SSE2],
  popcnt: [{ name: "POPCNT", leaf: 1, reg: 2, bit: 23 }],
  x87: [{ name: "FPU", leaf: 1, reg: 3, bit: 0 }, { name: "CMOV", leaf: 1, reg: 3, bit: 15 }],
  lzcnt_tzcnt: [
    { name: "LZCNT", leaf: 0x8000_0001, reg: 2, bit: 5 },
    { name: "BMI1", leaf: 7, reg: 1, bit: 3 },
  ],
};
