/**
 * SSE and SSE2 for the interpreter: XMM moves, packed and scalar single/double arithmetic,
 * conversions, compares, logic, shuffles
 * and the SSE2 packed-integer instructions compilers and C libraries use for memcpy/strlen-style
 * code. MMX forms (no 66 prefix on the integer opcodes) are not implemented (#UD). Floating
 * point lanes go through `_sse_fp.ts` (exact rounding, DAZ/FTZ, MXCSR exception flags); unmasked
 * SIMD floating-point exceptions are flagged but never delivered (#XM is not raised).
 */

import { type Cpu, F_CF, F_PF, F_ZF, NM } from "./cpu.ts";
import {
  arithLane,
  cmpLane,
  comiLane,
  convertLane,
  DF,
  fastFlags,
  fastFromInt,
  fastLaneD,
  fastLaneS,
  fastNarrow,
  fastToInt,
  fromIntLane,
  plainD,
  plainS,
  rcOf,
  SF,
  toIntLane,
} from "./_sse_fp.ts";

const TWO32 = 4294967296;

// Scratch source operand (16 bytes) with typed views.
const SB = new ArrayBuffer(16);
const S8 = new Uint8Array(SB);
const SI8 = new Int8Array(SB);
const S16 = new Uint16Array(SB);
const SI16 = new Int16Array(SB);
const S32 = new Int32Array(SB);
const SU32 = new Uint32Array(SB);
const SF32 = new Float32Array(SB);
const SF64 = new Float64Array(SB);
// Scratch result.
const RB = new ArrayBuffer(16);
const R8 = new Uint8Array(RB);
const R16 = new Uint16Array(RB);
const R32 = new Int32Array(RB);

/** Typed views over the CPU's XMM bytes; rebuilt when the FPU state object changes. */
export class XmmViews {
  u8: Uint8Array;
  i8: Int8Array;
  u16: Uint16Array;
  i16: Int16Array;
  i32: Int32Array;
  u32: Uint32Array;
  f32: Float32Array;
  f64: Float64Array;
  constructor(xmm: Uint8Array) {
    const b = xmm.buffer, o = xmm.byteOffset;
    this.u8 = xmm;
    this.i8 = new Int8Array(b, o, 256);
    this.u16 = new Uint16Array(b, o, 128);
    this.i16 = new Int16Array(b, o, 128);
    this.i32 = new Int32Array(b, o, 64);
    this.u32 = new Uint32Array(b, o, 64);
    this.f32 = new Float32Array(b, o, 64);
    this.f64 = new Float64Array(b, o, 32);
  }
}

let views: XmmViews | null = null;
let viewsOf: Uint8Array | null = null;

function xv(c: Cpu): XmmViews {
  if (viewsOf !== c.fpu.xmm) {
    viewsOf = c.fpu.xmm;
    views = new XmmViews(c.fpu.xmm);
  }
  return views!;
}

/** The XMM registers as 64 dwords (register r is dwords 4r..4r+3), for compiled templates. */
export function xmmDwords(c: Cpu): Int32Array {
  return xv(c).i32;
}

/** Reads the source operand (`size` bytes) into the scratch buffer S. */
function loadSrc(c: Cpu, rm: number, ea: number, size: number, align: boolean): void {
  if (rm >= 0) {
    const x = xv(c).i32;
    const b = rm * 4;
    S32[0] = x[b]!;
    S32[1] = x[b + 1]!;
    S32[2] = x[b + 2]!;
    S32[3] = x[b + 3]!;
    return;
  }
  if (align && ea % 16 !== 0) c.gp(0);
  S32[0] = c.rd32(ea);
  if (size > 4) S32[1] = c.rd32(c.wrapLin(ea + 4));
  if (size > 8) {
    S32[2] = c.rd32(c.wrapLin(ea + 8));
    S32[3] = c.rd32(c.wrapLin(ea + 12));
  }
}

/** Stores `size` bytes of XMM register `x` to memory at `ea`. */
function storeMem(c: Cpu, x: number, ea: number, size: number, align: boolean): void {
  if (align && ea % 16 !== 0) c.gp(0);
  const v = xv(c).i32;
  c.probeWrite(ea, size);
  c.wr32(ea, v[x * 4]!);
  if (size > 4) c.wr32(c.wrapLin(ea + 4), v[x * 4 + 1]!);
  if (size > 8) {
    c.wr32(c.wrapLin(ea + 8), v[x * 4 + 2]!);
    c.wr32(c.wrapLin(ea + 12), v[x * 4 + 3]!);
  }
}

function satS8(v: number): number {
  return v > 127 ? 127 : v < -128 ? -128 : v;
}
function satU8(v: number): number {
  return v > 255 ? 255 : v < 0 ? 0 : v;
}
function satS16(v: number): number {
  return v > 32767 ? 32767 : v < -32768 ? -32768 : v;
}
function satU16(v: number): number {
  return v > 65535 ? 65535 : v < 0 ? 0 : v;
}

/**
 * Executes 0F-map SSE/SSE2 opcode `op` with mandatory prefix `pfx` (0, 0x66, 0xF2, 0xF3).
 * Returns false when the opcode is not an SSE instruction this interpreter knows.
 */
export function execSse(
  c: Cpu,
  op: number,
  pfx: number,
  modrm: number,
  reg: number,
  rm: number,
  ea: number,
  imm: number,
  osz: number,
): boolean {
  return isSse(op, pfx) && execKnownSse(c, op, pfx, modrm, reg, rm, ea, imm, osz);
}

/** `execSse` for an opcode `isSse` accepted (the block compiler checks it when compiling). */
export function execKnownSse(
  c: Cpu,
  op: number,
  pfx: number,
  modrm: number,
  reg: number,
  rm: number,
  ea: number,
  imm: number,
  osz: number,
): boolean {
  if (c.cr0 & 4 || !(c.cr4 & 0x200)) c.ud(); // CR0.EM set or CR4.OSFXSR clear
  if (c.cr0 & 8) c.raise(NM); // CR0.TS: lazy FPU switching
  const x = xv(c);
  const d = reg * 4; // dword index of the destination register
  const pd = pfx === 0x66, ss = pfx === 0xf3, sd = pfx === 0xf2;
  switch (op) {
    case 0x10: // MOVUPS/MOVUPD/MOVSS/MOVSD load
      if (ss || sd) {
        loadSrc(c, rm, ea, ss ? 4 : 8, false);
        x.i32[d] = S32[0]!;
        if (sd) x.i32[d + 1] = S32[1]!;
        if (rm < 0) {
          if (ss) x.i32[d + 1] = 0;
          x.i32[d + 2] = 0;
          x.i32[d + 3] = 0;
        }
      } else {
        loadSrc(c, rm, ea, 16, false);
        copyS(x, d);
      }
      return true;
    case 0x11: // store forms
      if (rm >= 0) {
        const s = rm * 4;
        if (ss) x.i32[s] = x.i32[d]!;
        else if (sd) {
          x.i32[s] = x.i32[d]!;
          x.i32[s + 1] = x.i32[d + 1]!;
        } else for (let i = 0; i < 4; i++) x.i32[s + i] = x.i32[d + i]!;
      } else storeMem(c, reg, ea, ss ? 4 : sd ? 8 : 16, false);
      return true;
    case 0x12:
    case 0x13: // MOVLPS/MOVLPD (MOVHLPS for 0F 12 reg-reg)
      if (op === 0x13) {
        if (rm >= 0) c.ud();
        storeMem(c, reg, ea, 8, false);
        return true;
      }
      loadSrc(c, rm, ea, 8, false);
      if (rm >= 0) {
        x.i32[d] = S32[2]!;
        x.i32[d + 1] = S32[3]!;
      } else {
        x.i32[d] = S32[0]!;
        x.i32[d + 1] = S32[1]!;
      }
      return true;
    case 0x16:
    case 0x17: // MOVHPS/MOVHPD (MOVLHPS for 0F 16 reg-reg)
      if (op === 0x17) {
        if (rm >= 0) c.ud();
        c.probeWrite(ea, 8);
        c.wr32(ea, x.i32[d + 2]!);
        c.wr32(c.wrapLin(ea + 4), x.i32[d + 3]!);
        return true;
      }
      loadSrc(c, rm, ea, 8, false);
      x.i32[d + 2] = S32[0]!;
      x.i32[d + 3] = S32[1]!;
      return true;
    case 0x14:
    case 0x15: { // UNPCKL/HPS, UNPCKL/HPD
      loadSrc(c, rm, ea, 16, !pd && false);
      const hi = op === 0x15;
      if (pd) {
        const a0 = hi ? x.i32[d + 2]! : x.i32[d]!, a1 = hi ? x.i32[d + 3]! : x.i32[d + 1]!;
        const b0 = hi ? S32[2]! : S32[0]!, b1 = hi ? S32[3]! : S32[1]!;
        x.i32[d] = a0;
        x.i32[d + 1] = a1;
        x.i32[d + 2] = b0;
        x.i32[d + 3] = b1;
      } else {
        const o = hi ? 2 : 0;
        const a0 = x.i32[d + o]!, a1 = x.i32[d + o + 1]!;
        x.i32[d] = a0;
        x.i32[d + 1] = S32[o]!;
        x.i32[d + 2] = a1;
        x.i32[d + 3] = S32[o + 1]!;
      }
      return true;
    }
    case 0x28: // MOVAPS/MOVAPD
      loadSrc(c, rm, ea, 16, true);
      copyS(x, d);
      return true;
    case 0x29:
    case 0x2b: // MOVAPS store, MOVNTPS
      if (rm >= 0) {
        if (op === 0x2b) c.ud();
        for (let i = 0; i < 4; i++) x.i32[rm * 4 + i] = x.i32[d + i]!;
      } else storeMem(c, reg, ea, 16, true);
      return true;
    case 0x2a: { // CVTSI2SS/SD
      if ((c.fpu.mxcsr & MXCSR_RC) === 0) {
        const lo = rm >= 0 ? c.lo[rm]! : c.rd32(ea);
        const hi = osz !== 8 ? 0 : rm >= 0 ? c.hi[rm]! : c.rd32(c.wrapLin(ea + 4));
        const r = fastFromInt(lo, hi, osz === 8, !sd);
        if (r !== null) {
          if (sd) x.f64[reg * 2] = r;
          else x.f32[d] = r;
          c.fpu.mxcsr |= fastFlags;
          return true;
        }
      }
      const v = readGprBig(c, rm, ea, osz === 8 ? 8 : 4);
      const [r, fl] = fromIntLane(v, sd ? DF : SF, c.fpu.mxcsr);
      c.fpu.mxcsr |= fl;
      if (sd) setLaneD(x, reg * 2, r);
      else x.u32[d] = Number(r);
      return true;
    }
    case 0x2c:
    case 0x2d: { // CVT(T)SS2SI / CVT(T)SD2SI
      loadSrc(c, rm, ea, sd ? 8 : 4, false);
      const bits = osz === 8 ? 64 : 32;
      const a = sd ? SF64[0]! : SF32[0]!;
      if (sd ? plainD(a) : plainS(a)) {
        const q = fastToInt(a, op === 0x2c ? 3 : rcOf(c.fpu.mxcsr), bits);
        if (q !== null) {
          setGprNum(c, reg, bits, q);
          c.fpu.mxcsr |= fastFlags;
          return true;
        }
      }
      const [v, fl] = toIntLane(
        sd ? srcD(0) : srcS(0),
        sd ? DF : SF,
        c.fpu.mxcsr,
        op === 0x2c,
        bits,
      );
      c.fpu.mxcsr |= fl;
      setGprBig(c, reg, osz === 8 ? 8 : 4, v);
      return true;
    }
    case 0x2e:
    case 0x2f: { // (U)COMISS/SD
      loadSrc(c, rm, ea, pd ? 8 : 4, false);
      const fa = pd ? x.f64[reg * 2]! : x.f32[d]!, fb = pd ? SF64[0]! : SF32[0]!;
      if (pd ? plainD(fa) && plainD(fb) : plainS(fa) && plainS(fb)) {
        c.setArith(fa > fb ? 0 : fa < fb ? F_CF : F_ZF);
        return true;
      }
      const a = pd ? laneD(x, reg * 2) : BigInt(x.u32[d]!);
      const b = pd ? srcD(0) : srcS(0);
      const [rel, fl] = comiLane(a, b, pd ? DF : SF, c.fpu.mxcsr, op === 0x2e);
      c.fpu.mxcsr |= fl;
      c.setArith([0, F_CF, F_ZF, F_ZF | F_PF | F_CF][rel]!);
      return true;
    }
    case 0x50: { // MOVMSKPS/PD
      if (rm < 0) c.ud();
      let m = 0;
      if (pd) m = (x.i32[rm * 4 + 1]! >>> 31) | ((x.i32[rm * 4 + 3]! >>> 31) << 1);
      else for (let i = 0; i < 4; i++) m |= (x.i32[rm * 4 + i]! >>> 31) << i;
      c.lo[reg] = m;
      c.hi[reg] = 0;
      return true;
    }
    case 0x51: // SQRT
      return fpArith(c, x, op, pfx, reg, rm, ea);
    case 0x54:
    case 0x55:
    case 0x56:
    case 0x57: { // AND/ANDN/OR/XOR PS/PD
      loadSrc(c, rm, ea, 16, true);
      for (let i = 0; i < 4; i++) {
        const a = x.i32[d + i]!, b = S32[i]!;
        x.i32[d + i] = op === 0x54 ? a & b : op === 0x55 ? ~a & b : op === 0x56 ? a | b : a ^ b;
      }
      return true;
    }
    case 0x58:
    case 0x59:
    case 0x5c:
    case 0x5d:
    case 0x5e:
    case 0x5f:
      return fpArith(c, x, op, pfx, reg, rm, ea);
    case 0x5a: { // CVTPS2PD / CVTPD2PS / CVTSS2SD / CVTSD2SS
      const mx = c.fpu.mxcsr;
      let fl = 0;
      if (ss) {
        loadSrc(c, rm, ea, 4, false);
        fl = widenLane(x, reg * 2, 0, mx);
      } else if (sd) {
        loadSrc(c, rm, ea, 8, false);
        fl = narrowLane(x, d, 0, mx);
      } else if (pd) {
        loadSrc(c, rm, ea, 16, true);
        fl = narrowLane(x, d, 0, mx) | narrowLane(x, d + 1, 1, mx);
        x.i32[d + 2] = 0;
        x.i32[d + 3] = 0;
      } else {
        loadSrc(c, rm, ea, 8, false);
        fl = widenLane(x, reg * 2, 0, mx) | widenLane(x, reg * 2 + 1, 1, mx);
      }
      c.fpu.mxcsr |= fl;
      return true;
    }
    case 0x5b: { // CVTDQ2PS / CVTPS2DQ / CVTTPS2DQ
      loadSrc(c, rm, ea, 16, true);
      let fl = 0;
      for (let i = 0; i < 4; i++) {
        if (pd || ss) {
          const a = SF32[i]!;
          const q = plainS(a) ? fastToInt(a, ss ? 3 : rcOf(c.fpu.mxcsr), 32) : null;
          if (q !== null) {
            x.i32[d + i] = q;
            fl |= fastFlags;
            continue;
          }
          const [v, f] = toIntLane(srcS(i), SF, c.fpu.mxcsr, ss, 32);
          x.i32[d + i] = v === null ? 0x8000_0000 | 0 : Number(v);
          fl |= f;
        } else {
          const [r, f] = fromIntLane(BigInt(S32[i]!), SF, c.fpu.mxcsr);
          x.u32[d + i] = Number(r);
          fl |= f;
        }
      }
      c.fpu.mxcsr |= fl;
      return true;
    }
    case 0xe6: { // CVTTPD2DQ (66) / CVTDQ2PD (F3) / CVTPD2DQ (F2)
      if (ss) {
        loadSrc(c, rm, ea, 8, false);
        const a = S32[0]!, b = S32[1]!;
        x.f64[reg * 2] = a;
        x.f64[reg * 2 + 1] = b;
      } else {
        loadSrc(c, rm, ea, 16, true);
        let fl = 0;
        for (let i = 0; i < 2; i++) {
          const a = SF64[i]!;
          const q = plainD(a) ? fastToInt(a, pd ? 3 : rcOf(c.fpu.mxcsr), 32) : null;
          if (q !== null) {
            x.i32[d + i] = q;
            fl |= fastFlags;
            continue;
          }
          const [v, f] = toIntLane(srcD(i), DF, c.fpu.mxcsr, pd, 32);
          x.i32[d + i] = v === null ? 0x8000_0000 | 0 : Number(v);
          fl |= f;
        }
        c.fpu.mxcsr |= fl;
        x.i32[d + 2] = 0;
        x.i32[d + 3] = 0;
      }
      return true;
    }
    case 0x6e: { // MOVD/MOVQ xmm, r/m
      if (rm >= 0) {
        x.i32[d] = c.lo[rm]!;
        x.i32[d + 1] = osz === 8 ? c.hi[rm]! : 0;
      } else {
        x.i32[d] = c.rd32(ea);
        x.i32[d + 1] = osz === 8 ? c.rd32(c.wrapLin(ea + 4)) : 0;
      }
      x.i32[d + 2] = 0;
      x.i32[d + 3] = 0;
      return true;
    }
    case 0x7e:
      if (ss) { // MOVQ xmm, xmm/m64
        loadSrc(c, rm, ea, 8, false);
        x.i32[d] = S32[0]!;
        x.i32[d + 1] = S32[1]!;
        x.i32[d + 2] = 0;
        x.i32[d + 3] = 0;
        return true;
      }
      // MOVD/MOVQ r/m, xmm
      if (rm >= 0) {
        c.lo[rm] = x.i32[d]!;
        c.hi[rm] = osz === 8 ? x.i32[d + 1]! : 0;
      } else if (osz === 8) c.wr64(ea, x.i32[d]!, x.i32[d + 1]!);
      else c.wr32(ea, x.i32[d]!);
      return true;
    case 0xd6: // MOVQ xmm/m64, xmm
      if (rm >= 0) {
        x.i32[rm * 4] = x.i32[d]!;
        x.i32[rm * 4 + 1] = x.i32[d + 1]!;
        x.i32[rm * 4 + 2] = 0;
        x.i32[rm * 4 + 3] = 0;
      } else c.wr64(ea, x.i32[d]!, x.i32[d + 1]!);
      return true;
    case 0x6f: // MOVDQA / MOVDQU
      loadSrc(c, rm, ea, 16, pd);
      copyS(x, d);
      return true;
    case 0x7f:
    case 0xe7: // store MOVDQA / MOVDQU / MOVNTDQ
      if (rm >= 0) {
        if (op === 0xe7) c.ud();
        for (let i = 0; i < 4; i++) x.i32[rm * 4 + i] = x.i32[d + i]!;
      } else storeMem(c, reg, ea, 16, pd);
      return true;
    case 0x70: { // PSHUFD / PSHUFHW / PSHUFLW
      loadSrc(c, rm, ea, 16, pd);
      if (pd) {
        for (let i = 0; i < 4; i++) x.i32[d + i] = S32[(imm >> (2 * i)) & 3]!;
      } else {
        const o = ss ? 4 : 0; // words 4..7 for HW, 0..3 for LW
        for (let i = 0; i < 8; i++) R16[i] = S16[i]!;
        for (let i = 0; i < 4; i++) R16[o + i] = S16[o + ((imm >> (2 * i)) & 3)]!;
        for (let i = 0; i < 8; i++) x.u16[reg * 8 + i] = R16[i]!;
      }
      return true;
    }
    case 0x71:
    case 0x72:
    case 0x73: {
      if (rm < 0) c.ud();
      const sub = (modrm >> 3) & 7;
      shiftImm(x, op, sub, rm, imm & 0xff);
      return true;
    }
    case 0xc2: { // CMPPS/PD/SS/SD
      const n = ss ? 1 : sd ? 1 : pd ? 2 : 4;
      const dbl = pd || sd;
      loadSrc(c, rm, ea, ss ? 4 : sd ? 8 : 16, !(ss || sd));
      let fl = 0;
      for (let i = 0; i < n; i++) {
        const fa = dbl ? x.f64[reg * 2 + i]! : x.f32[d + i]!, fb = dbl ? SF64[i]! : SF32[i]!;
        if (dbl ? plainD(fa) && plainD(fb) : plainS(fa) && plainS(fb)) {
          const p = imm & 7;
          const t = p === 0
            ? fa === fb
            : p === 1
            ? fa < fb
            : p === 2
            ? fa <= fb
            : p === 3
            ? false
            : p === 4
            ? fa !== fb
            : p === 5
            ? !(fa < fb)
            : p === 6
            ? !(fa <= fb)
            : true;
          if (dbl) {
            x.i32[d + 2 * i] = t ? -1 : 0;
            x.i32[d + 2 * i + 1] = t ? -1 : 0;
          } else x.i32[d + i] = t ? -1 : 0;
          continue;
        }
        if (dbl) {
          const [t, f] = cmpLane(imm, laneD(x, reg * 2 + i), srcD(i), DF, c.fpu.mxcsr);
          x.i32[d + 2 * i] = t ? -1 : 0;
          x.i32[d + 2 * i + 1] = t ? -1 : 0;
          fl |= f;
        } else {
          const [t, f] = cmpLane(imm, BigInt(x.u32[d + i]!), srcS(i), SF, c.fpu.mxcsr);
          x.i32[d + i] = t ? -1 : 0;
          fl |= f;
        }
      }
      c.fpu.mxcsr |= fl;
      return true;
    }
    case 0xc3: // MOVNTI m32/64, r
      if (rm >= 0) c.ud();
      if (osz === 8) c.wr64(ea, c.lo[reg]!, c.hi[reg]!);
      else c.wr32(ea, c.lo[reg]!);
      return true;
    case 0xc4: { // PINSRW
      const v = rm >= 0 ? c.lo[rm]! & 0xffff : c.rd16(ea);
      x.u16[reg * 8 + (imm & 7)] = v;
      return true;
    }
    case 0xc5: // PEXTRW
      if (rm < 0) c.ud();
      c.lo[reg] = x.u16[rm * 8 + (imm & 7)]!;
      c.hi[reg] = 0;
      return true;
    case 0xc6: { // SHUFPS / SHUFPD
      loadSrc(c, rm, ea, 16, true);
      if (pd) {
        const lo0 = x.i32[d + (imm & 1) * 2]!, lo1 = x.i32[d + (imm & 1) * 2 + 1]!;
        const hi0 = S32[((imm >> 1) & 1) * 2]!, hi1 = S32[((imm >> 1) & 1) * 2 + 1]!;
        x.i32[d] = lo0;
        x.i32[d + 1] = lo1;
        x.i32[d + 2] = hi0;
        x.i32[d + 3] = hi1;
      } else {
        const r0 = x.i32[d + (imm & 3)]!, r1 = x.i32[d + ((imm >> 2) & 3)]!;
        const r2 = S32[(imm >> 4) & 3]!, r3 = S32[(imm >> 6) & 3]!;
        x.i32[d] = r0;
        x.i32[d + 1] = r1;
        x.i32[d + 2] = r2;
        x.i32[d + 3] = r3;
      }
      return true;
    }
    case 0xd7: { // PMOVMSKB
      if (rm < 0) c.ud();
      let m = 0;
      for (let i = 0; i < 16; i++) m |= (x.u8[rm * 16 + i]! >> 7) << i;
      c.lo[reg] = m;
      c.hi[reg] = 0;
      return true;
    }
    case 0xf7: { // MASKMOVDQU: store bytes of xmm[reg] selected by xmm[rm] to DS:rDI
      if (rm < 0) c.ud();
      const base = c.long64
        ? c.hi[7]! * TWO32 + (c.lo[7]! >>> 0)
        : (c.segBase[3]! + (c.lo[7]! >>> 0)) >>> 0;
      for (let i = 0; i < 16; i++) {
        if (x.u8[rm * 16 + i]! & 0x80) c.wr8(c.wrapLin(base + i), x.u8[reg * 16 + i]!);
      }
      return true;
    }
  }
  return packedInt(c, x, op, reg, rm, ea);
}

function copyS(x: XmmViews, d: number): void {
  x.i32[d] = S32[0]!;
  x.i32[d + 1] = S32[1]!;
  x.i32[d + 2] = S32[2]!;
  x.i32[d + 3] = S32[3]!;
}

/** Which (opcode, prefix) pairs are SSE/SSE2 instructions we implement. */
/** True when `execSse` executes 0F `op` with mandatory prefix `pfx` (66, F2, F3 or 0). */
export function isSse(op: number, pfx: number): boolean {
  switch (op) {
    case 0x10:
    case 0x11:
    case 0x2a:
    case 0x2c:
    case 0x2d:
    case 0x51:
    case 0x58:
    case 0x59:
    case 0x5a:
    case 0x5c:
    case 0x5d:
    case 0x5e:
    case 0x5f:
    case 0xc2:
      return true;
    case 0x12:
    case 0x13:
    case 0x14:
    case 0x15:
    case 0x16:
    case 0x17:
    case 0x28:
    case 0x29:
    case 0x2b:
    case 0x2e:
    case 0x2f:
    case 0x50:
    case 0x54:
    case 0x55:
    case 0x56:
    case 0x57:
    case 0xc6:
      return pfx === 0 || pfx === 0x66;
    case 0x5b:
      return true;
    case 0xc3:
      return pfx === 0;
    case 0x6f:
    case 0x7f:
      return pfx === 0x66 || pfx === 0xf3;
    case 0x70:
      return pfx !== 0;
    case 0x7e:
      return pfx === 0x66 || pfx === 0xf3;
    case 0xd6:
      return pfx === 0x66;
    case 0xe6:
      return pfx !== 0;
  }
  if (op >= 0x60 && op <= 0x76) return pfx === 0x66 && op !== 0x77;
  if (op >= 0xd1 && op <= 0xfe) return pfx === 0x66 && op !== 0xff;
  if (op === 0xc4 || op === 0xc5) return pfx === 0x66;
  return false;
}

/** MXCSR rounding-control field (bits 13-14). */
const MXCSR_RC = 0x6000;

function fpArith(
  c: Cpu,
  x: XmmViews,
  op: number,
  pfx: number,
  reg: number,
  rm: number,
  ea: number,
): boolean {
  const d = reg * 4;
  const mx = c.fpu.mxcsr;
  let fl = 0;
  const dbl = pfx === 0x66 || pfx === 0xf2;
  const n = pfx === 0xf3 || pfx === 0xf2 ? 1 : dbl ? 2 : 4;
  loadSrc(c, rm, ea, n === 1 ? (dbl ? 8 : 4) : 16, n !== 1);
  const minMax = op === 0x5d || op === 0x5f;
  const fast = (mx & MXCSR_RC) === 0 && !minMax;
  for (let i = 0; i < n; i++) {
    if (minMax) {
      // Plain operands: the source unless the destination is strictly smaller (larger).
      const a = dbl ? x.f64[reg * 2 + i]! : x.f32[d + i]!, b = dbl ? SF64[i]! : SF32[i]!;
      if (dbl ? plainD(a) && plainD(b) : plainS(a) && plainS(b)) {
        const r = op === 0x5d ? (a < b ? a : b) : (a > b ? a : b);
        if (dbl) x.f64[reg * 2 + i] = r;
        else x.f32[d + i] = r;
        continue;
      }
    } else if (fast) {
      if (dbl) {
        const r = fastLaneD(op, x.f64[reg * 2 + i]!, SF64[i]!);
        if (r !== null) {
          x.f64[reg * 2 + i] = r;
          fl |= fastFlags;
          continue;
        }
      } else {
        const r = fastLaneS(op, x.f32[d + i]!, SF32[i]!);
        if (r !== null) {
          x.f32[d + i] = r;
          fl |= fastFlags;
          continue;
        }
      }
    }
    if (dbl) {
      const [r, f] = arithLane(op, laneD(x, reg * 2 + i), srcD(i), DF, mx);
      setLaneD(x, reg * 2 + i, r);
      fl |= f;
    } else {
      const [r, f] = arithLane(op, BigInt(x.u32[d + i]!), srcS(i), SF, mx);
      x.u32[d + i] = Number(r);
      fl |= f;
    }
  }
  c.fpu.mxcsr |= fl;
  return true;
}

/** Bits of single lane `i` of the scratch source. */
function srcS(i: number): bigint {
  return BigInt(SU32[i]!);
}

/** Bits of double lane `i` of the scratch source. */
function srcD(i: number): bigint {
  return (BigInt(SU32[2 * i + 1]!) << 32n) | BigInt(SU32[2 * i]!);
}

/** Bits of double lane `q` (qword index) of the XMM file. */
function laneD(x: XmmViews, q: number): bigint {
  return (BigInt(x.u32[2 * q + 1]!) << 32n) | BigInt(x.u32[2 * q]!);
}

function setLaneD(x: XmmViews, q: number, v: bigint): void {
  x.u32[2 * q] = Number(v & 0xffff_ffffn);
  x.u32[2 * q + 1] = Number(v >> 32n);
}

/** Reads a 4- or 8-byte general-purpose r/m operand as a signed BigInt. */
function readGprBig(c: Cpu, rm: number, ea: number, sz: number): bigint {
  let lo: number, hi: number;
  if (rm >= 0) {
    lo = c.lo[rm]!;
    hi = c.hi[rm]!;
  } else {
    lo = c.rd32(ea);
    hi = sz === 8 ? c.rd32(c.wrapLin(ea + 4)) : 0;
  }
  if (sz === 4) return BigInt(lo | 0);
  return (BigInt(hi | 0) << 32n) | BigInt(lo >>> 0);
}

/** Writes an integer `q` (a double within range) to GPR `r` as a `bits`-bit result. */
function setGprNum(c: Cpu, r: number, bits: number, q: number): void {
  if (bits === 32) {
    c.lo[r] = q | 0;
    c.hi[r] = 0;
    return;
  }
  const hi = Math.floor(q / TWO32);
  c.lo[r] = (q - hi * TWO32) | 0;
  c.hi[r] = hi | 0;
}

/** CVTSS2SD of single source lane `i` into double lane `q`: the flags raised. */
function widenLane(x: XmmViews, q: number, i: number, mx: number): number {
  const a = SF32[i]!;
  if (plainS(a)) {
    x.f64[q] = a; // exact
    return 0;
  }
  const [r, f] = convertLane(srcS(i), SF, DF, mx);
  setLaneD(x, q, r);
  return f;
}

/** CVTSD2SS of double source lane `i` into single lane (dword index) `k`: the flags raised. */
function narrowLane(x: XmmViews, k: number, i: number, mx: number): number {
  const a = SF64[i]!;
  if ((mx & MXCSR_RC) === 0 && plainD(a)) {
    const r = fastNarrow(a);
    if (r !== null) {
      x.f32[k] = r;
      return fastFlags;
    }
  }
  const [r, f] = convertLane(srcD(i), DF, SF, mx);
  x.u32[k] = Number(r);
  return f;
}

/** Writes a conversion result (null: the integer indefinite 80000000h / 8000000000000000h). */
function setGprBig(c: Cpu, r: number, sz: number, v: bigint | null): void {
  if (sz === 8) {
    if (v === null) {
      c.lo[r] = 0;
      c.hi[r] = 0x8000_0000 | 0;
      return;
    }
    c.lo[r] = Number(BigInt.asIntN(32, v));
    c.hi[r] = Number(BigInt.asIntN(32, v >> 32n));
  } else {
    c.lo[r] = v === null ? 0x8000_0000 | 0 : Number(BigInt.asIntN(32, v));
    c.hi[r] = 0;
  }
}

function shiftImm(x: XmmViews, op: number, sub: number, r: number, n: number): void {
  const b = r * 4;
  if (op === 0x73 && (sub === 3 || sub === 7)) { // PSRLDQ / PSLLDQ: bytes
    for (let i = 0; i < 16; i++) R8[i] = x.u8[r * 16 + i]!;
    for (let i = 0; i < 16; i++) {
      const s = sub === 3 ? i + n : i - n;
      x.u8[r * 16 + i] = s >= 0 && s < 16 && n < 16 ? R8[s]! : 0;
    }
    return;
  }
  shiftLanes(x, op === 0x71 ? 16 : op === 0x72 ? 32 : 64, sub === 2 ? 0 : sub === 4 ? 1 : 2, b, n);
}

/** Shifts every lane of register (dword index `b`): kind 0 logical right, 1 arithmetic, 2 left. */
function shiftLanes(x: XmmViews, bits: number, kind: number, b: number, n: number): void {
  if (bits === 16) {
    for (let i = 0; i < 8; i++) {
      const k = b * 2 + i;
      if (kind === 1) x.i16[k] = x.i16[k]! >> (n > 15 ? 15 : n);
      else if (n > 15) x.u16[k] = 0;
      else x.u16[k] = kind === 0 ? x.u16[k]! >>> n : x.u16[k]! << n;
    }
  } else if (bits === 32) {
    for (let i = 0; i < 4; i++) {
      const k = b + i;
      if (kind === 1) x.i32[k] = x.i32[k]! >> (n > 31 ? 31 : n);
      else if (n > 31) x.i32[k] = 0;
      else x.i32[k] = kind === 0 ? x.i32[k]! >>> n : x.i32[k]! << n;
    }
  } else {
    if (kind === 1) return; // no PSRAQ in SSE2
    for (let i = 0; i < 2; i++) {
      const k = b + 2 * i;
      let lo = x.i32[k]!, hi = x.i32[k + 1]!;
      if (n > 63) lo = hi = 0;
      else if (n >= 32) {
        if (kind === 0) {
          lo = hi >>> (n - 32);
          hi = 0;
        } else {
          hi = lo << (n - 32);
          lo = 0;
        }
      } else if (n > 0) {
        if (kind === 0) {
          lo = (lo >>> n) | (hi << (32 - n));
          hi = hi >>> n;
        } else {
          hi = (hi << n) | (lo >>> (32 - n));
          lo = lo << n;
        }
      }
      x.i32[k] = lo;
      x.i32[k + 1] = hi;
    }
  }
}

/** The 66-prefixed packed-integer opcodes 0x60..0x76 and 0xD1..0xFE. */
function packedInt(c: Cpu, x: XmmViews, op: number, reg: number, rm: number, ea: number): boolean {
  loadSrc(c, rm, ea, 16, true);
  const d8 = reg * 16, d16 = reg * 8, d32 = reg * 4;
  switch (op) {
    case 0x60:
    case 0x68: { // PUNPCKLBW / PUNPCKHBW
      const o = op === 0x68 ? 8 : 0;
      for (let i = 0; i < 8; i++) {
        R8[2 * i] = x.u8[d8 + o + i]!;
        R8[2 * i + 1] = S8[o + i]!;
      }
      break;
    }
    case 0x61:
    case 0x69: { // PUNPCKLWD / PUNPCKHWD
      const o = op === 0x69 ? 4 : 0;
      for (let i = 0; i < 4; i++) {
        R16[2 * i] = x.u16[d16 + o + i]!;
        R16[2 * i + 1] = S16[o + i]!;
      }
      break;
    }
    case 0x62:
    case 0x6a: { // PUNPCKLDQ / PUNPCKHDQ
      const o = op === 0x6a ? 2 : 0;
      R32[0] = x.i32[d32 + o]!;
      R32[1] = S32[o]!;
      R32[2] = x.i32[d32 + o + 1]!;
      R32[3] = S32[o + 1]!;
      break;
    }
    case 0x6c:
    case 0x6d: { // PUNPCKLQDQ / PUNPCKHQDQ
      const o = op === 0x6d ? 2 : 0;
      R32[0] = x.i32[d32 + o]!;
      R32[1] = x.i32[d32 + o + 1]!;
      R32[2] = S32[o]!;
      R32[3] = S32[o + 1]!;
      break;
    }
    case 0x63: // PACKSSWB
    case 0x67: // PACKUSWB
      for (let i = 0; i < 8; i++) {
        const a = x.i16[d16 + i]!, b = SI16[i]!;
        R8[i] = op === 0x63 ? satS8(a) & 0xff : satU8(a);
        R8[i + 8] = op === 0x63 ? satS8(b) & 0xff : satU8(b);
      }
      break;
    case 0x6b: // PACKSSDW
      for (let i = 0; i < 4; i++) {
        R16[i] = satS16(x.i32[d32 + i]!) & 0xffff;
        R16[i + 4] = satS16(S32[i]!) & 0xffff;
      }
      break;
    case 0x64:
    case 0x74: // PCMPGTB / PCMPEQB
      for (let i = 0; i < 16; i++) {
        const t = op === 0x74 ? x.u8[d8 + i] === S8[i] : x.i8[d8 + i]! > SI8[i]!;
        R8[i] = t ? 0xff : 0;
      }
      break;
    case 0x65:
    case 0x75: // PCMPGTW / PCMPEQW
      for (let i = 0; i < 8; i++) {
        const t = op === 0x75 ? x.u16[d16 + i] === S16[i] : x.i16[d16 + i]! > SI16[i]!;
        R16[i] = t ? 0xffff : 0;
      }
      break;
    case 0x66:
    case 0x76: // PCMPGTD / PCMPEQD
      for (let i = 0; i < 4; i++) {
        const t = op === 0x76 ? x.i32[d32 + i] === S32[i] : x.i32[d32 + i]! > S32[i]!;
        R32[i] = t ? -1 : 0;
      }
      break;
    case 0xd1:
    case 0xd2:
    case 0xd3:
    case 0xe1:
    case 0xe2:
    case 0xf1:
    case 0xf2:
    case 0xf3: { // shifts by xmm/m128 count
      const n = S32[1] !== 0 || SU32[0]! > 255 ? 255 : S32[0]!;
      const bits = (op & 3) === 1 ? 16 : (op & 3) === 2 ? 32 : 64;
      const kind = op < 0xe0 ? 0 : op < 0xf0 ? 1 : 2;
      shiftLanes(x, bits, kind, d32, n);
      return true;
    }
    case 0xd4:
    case 0xfb: // PADDQ / PSUBQ
      for (let i = 0; i < 2; i++) {
        const al = x.i32[d32 + 2 * i]!, ah = x.i32[d32 + 2 * i + 1]!;
        const bl = S32[2 * i]!, bh = S32[2 * i + 1]!;
        if (op === 0xd4) {
          const s = (al >>> 0) + (bl >>> 0);
          R32[2 * i] = s | 0;
          R32[2 * i + 1] = (ah + bh + (s >= TWO32 ? 1 : 0)) | 0;
        } else {
          const s = (al >>> 0) - (bl >>> 0);
          R32[2 * i] = s | 0;
          R32[2 * i + 1] = (ah - bh - (s < 0 ? 1 : 0)) | 0;
        }
      }
      break;
    case 0xd5: // PMULLW
      for (let i = 0; i < 8; i++) R16[i] = Math.imul(x.i16[d16 + i]!, SI16[i]!) & 0xffff;
      break;
    case 0xe5: // PMULHW
      for (let i = 0; i < 8; i++) R16[i] = (x.i16[d16 + i]! * SI16[i]!) >> 16 & 0xffff;
      break;
    case 0xe4: // PMULHUW
      for (let i = 0; i < 8; i++) R16[i] = (x.u16[d16 + i]! * S16[i]!) >>> 16;
      break;
    case 0xf4: { // PMULUDQ
      for (let i = 0; i < 2; i++) {
        const a = x.u32[d32 + 2 * i]!, b = SU32[2 * i]!;
        const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
        const ll = al * bl, mid = (ll >>> 16) + (al * bh & 0xffff) + (ah * bl & 0xffff);
        R32[2 * i] = (ll & 0xffff) | (mid << 16);
        R32[2 * i + 1] =
          (ah * bh + ((al * bh) >>> 16) + ((ah * bl) >>> 16) + Math.floor(mid / 65536)) | 0;
      }
      break;
    }
    case 0xf5: // PMADDWD
      for (let i = 0; i < 4; i++) {
        R32[i] = (x.i16[d16 + 2 * i]! * SI16[2 * i]! + x.i16[d16 + 2 * i + 1]! * SI16[2 * i + 1]!) |
          0;
      }
      break;
    case 0xf6: { // PSADBW
      for (let h = 0; h < 2; h++) {
        let sum = 0;
        for (let i = 0; i < 8; i++) sum += Math.abs(x.u8[d8 + 8 * h + i]! - S8[8 * h + i]!);
        R32[2 * h] = sum;
        R32[2 * h + 1] = 0;
      }
      break;
    }
    case 0xd8:
    case 0xd9:
    case 0xdc:
    case 0xdd:
    case 0xe8:
    case 0xe9:
    case 0xec:
    case 0xed:
    case 0xf8:
    case 0xf9:
    case 0xfa:
    case 0xfc:
    case 0xfd:
    case 0xfe: { // add/sub, wrapping or saturating
      const sub = op === 0xd8 || op === 0xd9 || op === 0xe8 || op === 0xe9 ||
        (op >= 0xf8 && op <= 0xfa);
      const words = op === 0xd9 || op === 0xdd || op === 0xe9 || op === 0xed || op === 0xf9 ||
        op === 0xfd;
      const dwords = op === 0xfa || op === 0xfe;
      const satU = op === 0xd8 || op === 0xd9 || op === 0xdc || op === 0xdd;
      const satS = op === 0xe8 || op === 0xe9 || op === 0xec || op === 0xed;
      if (dwords) {
        for (let i = 0; i < 4; i++) {
          R32[i] = sub ? x.i32[d32 + i]! - S32[i]! : x.i32[d32 + i]! + S32[i]!;
        }
      } else if (words) {
        for (let i = 0; i < 8; i++) {
          const a = satS ? x.i16[d16 + i]! : x.u16[d16 + i]!, b = satS ? SI16[i]! : S16[i]!;
          const r = sub ? a - b : a + b;
          R16[i] = (satU ? satU16(r) : satS ? satS16(r) : r) & 0xffff;
        }
      } else {
        for (let i = 0; i < 16; i++) {
          const a = satS ? x.i8[d8 + i]! : x.u8[d8 + i]!, b = satS ? SI8[i]! : S8[i]!;
          const r = sub ? a - b : a + b;
          R8[i] = (satU ? satU8(r) : satS ? satS8(r) : r) & 0xff;
        }
      }
      break;
    }
    case 0xda:
    case 0xde: // PMINUB / PMAXUB
      for (let i = 0; i < 16; i++) {
        const a = x.u8[d8 + i]!, b = S8[i]!;
        R8[i] = op === 0xda ? (a < b ? a : b) : (a > b ? a : b);
      }
      break;
    case 0xea:
    case 0xee: // PMINSW / PMAXSW
      for (let i = 0; i < 8; i++) {
        const a = x.i16[d16 + i]!, b = SI16[i]!;
        R16[i] = (op === 0xea ? (a < b ? a : b) : (a > b ? a : b)) & 0xffff;
      }
      break;
    case 0xe0: // PAVGB
      for (let i = 0; i < 16; i++) R8[i] = (x.u8[d8 + i]! + S8[i]! + 1) >> 1;
      break;
    case 0xe3: // PAVGW
      for (let i = 0; i < 8; i++) R16[i] = (x.u16[d16 + i]! + S16[i]! + 1) >> 1;
      break;
    case 0xdb:
    case 0xdf:
    case 0xeb:
    case 0xef: // PAND / PANDN / POR / PXOR
      for (let i = 0; i < 4; i++) {
        const a = x.i32[d32 + i]!, b = S32[i]!;
        R32[i] = op === 0xdb ? a & b : op === 0xdf ? ~a & b : op === 0xeb ? a | b : a ^ b;
      }
      break;
    default:
      c.ud();
  }
  for (let i = 0; i < 4; i++) x.i32[d32 + i] = R32[i]!;
  return true;
}
