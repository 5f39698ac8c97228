/**
 * x87 basics for the interpreter: the register stack, loads and stores of 32/64/80-bit reals and
 * 16/32/64-bit integers, the four arithmetic operations in all their forms, compares (FCOM,
 * FUCOM, FCOMI, FTST, FXAM), constants, FCHS/FABS/FSQRT/FRNDINT/FSCALE/FPREM, FXCH, FCMOVcc,
 * control/status word access and FNINIT/FNCLEX. Values are held as doubles: 80-bit extended
 * precision is kept only in FXSAVE images and state transfer, arithmetic rounds to 53 bits, and
 * floating-point exceptions set no status bits and are never delivered.
 */

import { type Cpu, F_CF, F_PF, F_ZF } from "./cpu.ts";

const TWO32 = 4294967296;

/** The x87 register file as the interpreter keeps it. */
export class X87 {
  /** Physical registers R0..R7. */
  readonly r = new Float64Array(8);
  /** Bit i set: physical register i holds a value. */
  valid = 0;
  top = 0;
  /** Status word without TOP (condition codes C0-C3 and flags). */
  sw = 0;
  cw = 0x37f;

  reset(): void {
    this.valid = 0;
    this.top = 0;
    this.sw = 0;
    this.cw = 0x37f;
  }

  /** The status word with TOP in bits 11-13. */
  fsw(): number {
    return (this.sw & ~0x3800) | (this.top << 11);
  }
}

/** Encodes `v` as an 80-bit extended real into `out[o..o+10)`. */
export function toExtended(v: number, out: Uint8Array, o: number): void {
  const dv = new DataView(out.buffer, out.byteOffset);
  let sign = 0;
  if (v < 0 || Object.is(v, -0)) {
    sign = 0x8000;
    v = -v;
  }
  let exp: number, mhi: number, mlo: number;
  if (v === 0) {
    exp = 0;
    mhi = mlo = 0;
  } else if (!Number.isFinite(v)) {
    exp = 0x7fff;
    mhi = Number.isNaN(v) ? 0xc0000000 : 0x80000000;
    mlo = 0;
  } else {
    let e = Math.floor(Math.log2(v));
    if (2 ** e > v) e--;
    if (2 ** (e + 1) <= v) e++;
    const m = v / 2 ** (e - 63); // 2^63 <= m < 2^64, exact (a power-of-two scale)
    mhi = Math.floor(m / TWO32);
    mlo = m - mhi * TWO32;
    exp = e + 16383;
  }
  dv.setUint32(o, mlo >>> 0, true);
  dv.setUint32(o + 4, mhi >>> 0, true);
  dv.setUint16(o + 8, sign | exp, true);
}

/** Decodes an 80-bit extended real at `b[o..o+10)`. */
export function fromExtended(b: Uint8Array, o: number): number {
  const dv = new DataView(b.buffer, b.byteOffset);
  const mlo = dv.getUint32(o, true), mhi = dv.getUint32(o + 4, true);
  const se = dv.getUint16(o + 8, true);
  const sign = se & 0x8000 ? -1 : 1;
  const exp = se & 0x7fff;
  if (exp === 0x7fff) return (mhi & 0x7fffffff) || mlo ? NaN : sign * Infinity;
  const m = mhi * TWO32 + mlo;
  if (m === 0) return sign * 0;
  return sign * m * 2 ** ((exp === 0 ? 1 : exp) - 16383 - 63);
}

function st(c: Cpu, i: number): number {
  const f = c.x87;
  const p = (f.top + i) & 7;
  if (!(f.valid & (1 << p))) return NaN; // stack underflow: the indefinite NaN
  return f.r[p]!;
}

function setSt(c: Cpu, i: number, v: number): void {
  const f = c.x87;
  const p = (f.top + i) & 7;
  f.r[p] = v;
  f.valid |= 1 << p;
}

function push(c: Cpu, v: number): void {
  const f = c.x87;
  f.top = (f.top - 1) & 7;
  f.r[f.top] = v;
  f.valid |= 1 << f.top;
}

function pop(c: Cpu): void {
  const f = c.x87;
  f.valid &= ~(1 << f.top);
  f.top = (f.top + 1) & 7;
}

function round(c: Cpu, v: number): number {
  switch ((c.x87.cw >> 10) & 3) {
    case 0: {
      const r = Math.round(v);
      return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
    }
    case 1:
      return Math.floor(v);
    case 2:
      return Math.ceil(v);
    default:
      return Math.trunc(v);
  }
}

function readReal(c: Cpu, ea: number, size: number): number {
  if (size === 4) {
    F32I[0] = c.rd32(ea);
    return F32[0]!;
  }
  if (size === 8) {
    F64I[0] = c.rd32(ea);
    F64I[1] = c.rd32(c.wrapLin(ea + 4));
    return F64[0]!;
  }
  for (let i = 0; i < 10; i++) B10[i] = c.rd8(c.wrapLin(ea + i));
  return fromExtended(B10, 0);
}

function writeReal(c: Cpu, ea: number, size: number, v: number): void {
  if (size === 4) {
    F32[0] = v;
    c.wr32(ea, F32I[0]!);
  } else if (size === 8) {
    F64[0] = v;
    c.wr64(ea, F64I[0]!, F64I[1]!);
  } else {
    toExtended(v, B10, 0);
    c.probeWrite(ea, 10);
    for (let i = 0; i < 10; i++) c.wr8(c.wrapLin(ea + i), B10[i]!);
  }
}

function readInt(c: Cpu, ea: number, size: number): number {
  if (size === 2) return (c.rd16(ea) << 16) >> 16;
  if (size === 4) return c.rd32(ea);
  const lo = c.rd32(ea), hi = c.rd32(c.wrapLin(ea + 4));
  return hi * TWO32 + (lo >>> 0);
}

function writeInt(c: Cpu, ea: number, size: number, v: number): void {
  const r = round(c, v);
  const lim = size === 2 ? 32768 : size === 4 ? 2147483648 : 9223372036854775808;
  const bad = !(r >= -lim && r < lim);
  if (size === 2) c.wr16(ea, bad ? 0x8000 : r & 0xffff);
  else if (size === 4) c.wr32(ea, bad ? 0x8000_0000 | 0 : r | 0);
  else if (bad) c.wr64(ea, 0, 0x8000_0000 | 0);
  else c.wr64(ea, r | 0, Math.floor(r / TWO32) | 0);
}

const F32B = new ArrayBuffer(4), F32 = new Float32Array(F32B), F32I = new Int32Array(F32B);
const F64B = new ArrayBuffer(8), F64 = new Float64Array(F64B), F64I = new Int32Array(F64B);
const B10 = new Uint8Array(10);

function arith(op: number, a: number, b: number): number {
  // op is the ModRM reg field of D8/DC: 0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr.
  switch (op) {
    case 0:
      return a + b;
    case 1:
      return a * b;
    case 4:
      return a - b;
    case 5:
      return b - a;
    case 6:
      return a / b;
    default:
      return b / a;
  }
}

/** Sets C0/C2/C3 from comparing a with b (FCOM semantics). */
function compare(c: Cpu, a: number, b: number): void {
  const f = c.x87;
  f.sw &= ~0x4500;
  if (Number.isNaN(a) || Number.isNaN(b)) f.sw |= 0x4500;
  else if (a < b) f.sw |= 0x100;
  else if (a === b) f.sw |= 0x4000;
}

/** Sets ZF/PF/CF from comparing a with b (FCOMI semantics). */
function compareFlags(c: Cpu, a: number, b: number): void {
  let fl: number;
  if (Number.isNaN(a) || Number.isNaN(b)) fl = F_ZF | F_PF | F_CF;
  else if (a > b) fl = 0;
  else if (a < b) fl = F_CF;
  else fl = F_ZF;
  c.setArith(fl);
}

/** Executes x87 escape opcode `op` (0xD8..0xDF) with its ModRM. */
export function execX87(c: Cpu, op: number, modrm: number, rm: number, ea: number): void {
  const f = c.x87;
  const reg = (modrm >> 3) & 7;
  const i = modrm & 7;
  if (rm < 0) {
    // Memory forms.
    switch (op) {
      case 0xd8:
      case 0xdc:
      case 0xda:
      case 0xde: {
        const v = op === 0xd8
          ? readReal(c, ea, 4)
          : op === 0xdc
          ? readReal(c, ea, 8)
          : readInt(c, ea, op === 0xda ? 4 : 2);
        if (reg === 2 || reg === 3) {
          compare(c, st(c, 0), v);
          if (reg === 3) pop(c);
        } else setSt(c, 0, arith(reg, st(c, 0), v));
        return;
      }
      case 0xd9:
        switch (reg) {
          case 0:
            push(c, readReal(c, ea, 4));
            return;
          case 2:
          case 3:
            writeReal(c, ea, 4, st(c, 0));
            if (reg === 3) pop(c);
            return;
          case 5:
            f.cw = c.rd16(ea) | 0x40;
            return;
          case 7:
            c.wr16(ea, f.cw);
            return;
          case 4: // FLDENV: control, status, tag from a 28-byte (32-bit) environment
            f.cw = c.rd16(ea);
            f.sw = c.rd16(c.wrapLin(ea + 4));
            f.top = (f.sw >> 11) & 7;
            return;
          case 6: // FNSTENV
            c.wr16(ea, f.cw);
            c.wr16(c.wrapLin(ea + 4), f.fsw());
            c.wr16(c.wrapLin(ea + 8), tagWord(c));
            f.cw |= 0x3f;
            return;
        }
        break;
      case 0xdb:
        switch (reg) {
          case 0:
            push(c, readInt(c, ea, 4));
            return;
          case 1: // FISTTP m32 (SSE3: not advertised, but harmless)
            writeIntTrunc(c, ea, 4, st(c, 0));
            pop(c);
            return;
          case 2:
          case 3:
            writeInt(c, ea, 4, st(c, 0));
            if (reg === 3) pop(c);
            return;
          case 5:
            push(c, readReal(c, ea, 10));
            return;
          case 7:
            writeReal(c, ea, 10, st(c, 0));
            pop(c);
            return;
        }
        break;
      case 0xdd:
        switch (reg) {
          case 0:
            push(c, readReal(c, ea, 8));
            return;
          case 1:
            writeIntTrunc(c, ea, 8, st(c, 0));
            pop(c);
            return;
          case 2:
          case 3:
            writeReal(c, ea, 8, st(c, 0));
            if (reg === 3) pop(c);
            return;
          case 7:
            c.wr16(ea, f.fsw());
            return;
        }
        break;
      case 0xdf:
        switch (reg) {
          case 0:
            push(c, readInt(c, ea, 2));
            return;
          case 1:
            writeIntTrunc(c, ea, 2, st(c, 0));
            pop(c);
            return;
          case 2:
          case 3:
            writeInt(c, ea, 2, st(c, 0));
            if (reg === 3) pop(c);
            return;
          case 5:
            push(c, readInt(c, ea, 8));
            return;
          case 7:
            writeInt(c, ea, 8, st(c, 0));
            pop(c);
            return;
        }
        break;
    }
    c.ud();
  }
  // Register forms.
  switch (op) {
    case 0xd8:
      if (reg === 2 || reg === 3) {
        compare(c, st(c, 0), st(c, i));
        if (reg === 3) pop(c);
      } else setSt(c, 0, arith(reg, st(c, 0), st(c, i)));
      return;
    case 0xdc: // ST(i) = ST(i) op ST(0); sub/div directions are swapped in this row
      if (reg < 2) setSt(c, i, arith(reg, st(c, i), st(c, 0)));
      else if (reg >= 4) setSt(c, i, arith(reg ^ 1, st(c, i), st(c, 0)));
      else {
        compare(c, st(c, 0), st(c, i));
        if (reg === 3) pop(c);
      }
      return;
    case 0xde:
      if (modrm === 0xd9) { // FCOMPP
        compare(c, st(c, 0), st(c, 1));
        pop(c);
        pop(c);
        return;
      }
      if (reg < 2) setSt(c, i, arith(reg, st(c, i), st(c, 0)));
      else if (reg >= 4) setSt(c, i, arith(reg ^ 1, st(c, i), st(c, 0)));
      else c.ud();
      pop(c);
      return;
    case 0xd9:
      switch (reg) {
        case 0: // FLD ST(i)
          push(c, st(c, i));
          return;
        case 1: { // FXCH
          const a = st(c, 0), b = st(c, i);
          setSt(c, 0, b);
          setSt(c, i, a);
          return;
        }
        case 2: // FNOP
          return;
      }
      switch (modrm) {
        case 0xe0:
          setSt(c, 0, -st(c, 0));
          return;
        case 0xe1:
          setSt(c, 0, Math.abs(st(c, 0)));
          return;
        case 0xe4:
          compare(c, st(c, 0), 0);
          return;
        case 0xe5: { // FXAM
          const p = f.top;
          const v = f.r[p]!;
          f.sw &= ~0x4700;
          if ((Object.is(v, -0) || v < 0) && (f.valid & (1 << p))) f.sw |= 0x200;
          if (!(f.valid & (1 << p))) f.sw |= 0x4100; // empty
          else if (Number.isNaN(v)) f.sw |= 0x100;
          else if (!Number.isFinite(v)) f.sw |= 0x500;
          else if (v === 0) f.sw |= 0x4000;
          else f.sw |= 0x400;
          return;
        }
        case 0xe8:
          push(c, 1);
          return;
        case 0xe9:
          push(c, Math.log2(10));
          return;
        case 0xea:
          push(c, Math.LOG2E);
          return;
        case 0xeb:
          push(c, Math.PI);
          return;
        case 0xec:
          push(c, Math.LOG10E * Math.LN2);
          return;
        case 0xed:
          push(c, Math.LN2);
          return;
        case 0xee:
          push(c, 0);
          return;
        case 0xf0: // F2XM1
          setSt(c, 0, 2 ** st(c, 0) - 1);
          return;
        case 0xf1: // FYL2X
          setSt(c, 1, st(c, 1) * Math.log2(st(c, 0)));
          pop(c);
          return;
        case 0xf8:
        case 0xf5: { // FPREM / FPREM1
          const a = st(c, 0), b = st(c, 1);
          const q = modrm === 0xf8 ? Math.trunc(a / b) : round(c, a / b);
          setSt(c, 0, a - q * b);
          f.sw &= ~0x4700;
          if (q & 1) f.sw |= 0x200;
          if (q & 2) f.sw |= 0x4000;
          if (q & 4) f.sw |= 0x100;
          return;
        }
        case 0xfa:
          setSt(c, 0, Math.sqrt(st(c, 0)));
          return;
        case 0xfc:
          setSt(c, 0, round(c, st(c, 0)));
          return;
        case 0xfd:
          setSt(c, 0, st(c, 0) * 2 ** Math.trunc(st(c, 1)));
          return;
        case 0xfe:
          setSt(c, 0, Math.sin(st(c, 0)));
          f.sw &= ~0x400;
          return;
        case 0xff:
          setSt(c, 0, Math.cos(st(c, 0)));
          f.sw &= ~0x400;
          return;
      }
      break;
    case 0xda:
      if (modrm === 0xe9) { // FUCOMPP
        compare(c, st(c, 0), st(c, 1));
        pop(c);
        pop(c);
        return;
      }
      if (reg < 4) { // FCMOVB/E/BE/U
        const cc = [c.cf(), c.zf(), c.cf() | c.zf(), c.pf()][reg]!;
        if (cc) setSt(c, 0, st(c, i));
        return;
      }
      break;
    case 0xdb:
      if (modrm === 0xe2) { // FNCLEX
        f.sw &= 0x4700;
        return;
      }
      if (modrm === 0xe3) { // FNINIT
        f.reset();
        return;
      }
      if (reg === 5 || reg === 6) { // FUCOMI / FCOMI
        compareFlags(c, st(c, 0), st(c, i));
        return;
      }
      if (reg < 4) { // FCMOVNB/NE/NBE/NU
        const cc = [c.cf(), c.zf(), c.cf() | c.zf(), c.pf()][reg]!;
        if (!cc) setSt(c, 0, st(c, i));
        return;
      }
      if (modrm === 0xe0 || modrm === 0xe1 || modrm === 0xe4) return; // FENI/FDISI/FSETPM
      break;
    case 0xdd:
      switch (reg) {
        case 0: // FFREE
          f.valid &= ~(1 << ((f.top + i) & 7));
          return;
        case 2:
          setSt(c, i, st(c, 0));
          return;
        case 3:
          setSt(c, i, st(c, 0));
          pop(c);
          return;
        case 4:
        case 5:
          compare(c, st(c, 0), st(c, i));
          if (reg === 5) pop(c);
          return;
      }
      break;
    case 0xdf:
      if (modrm === 0xe0) { // FNSTSW AX
        c.lo[0] = (c.lo[0]! & ~0xffff) | f.fsw();
        return;
      }
      if (reg === 5 || reg === 6) { // FUCOMIP / FCOMIP
        compareFlags(c, st(c, 0), st(c, i));
        pop(c);
        return;
      }
      break;
  }
  c.ud();
}

function writeIntTrunc(c: Cpu, ea: number, size: number, v: number): void {
  const saved = c.x87.cw;
  c.x87.cw |= 0xc00;
  writeInt(c, ea, size, v);
  c.x87.cw = saved;
}

/** The full 16-bit tag word (00 valid, 01 zero, 10 special, 11 empty) for FNSTENV. */
function tagWord(c: Cpu): number {
  const f = c.x87;
  let t = 0;
  for (let p = 0; p < 8; p++) {
    let tag = 3;
    if (f.valid & (1 << p)) {
      const v = f.r[p]!;
      tag = v === 0 ? 1 : Number.isFinite(v) ? 0 : 2;
    }
    t |= tag << (2 * p);
  }
  return t;
}

/** Copies the x87 registers into FXSAVE-layout bytes (ST0 first) and the abridged tag. */
export function x87ToFpuState(c: Cpu): void {
  const f = c.x87;
  const s = c.fpu;
  s.fcw = f.cw;
  s.fsw = f.fsw();
  let ftw = 0;
  for (let i = 0; i < 8; i++) {
    const p = (f.top + i) & 7;
    toExtended(f.valid & (1 << p) ? f.r[p]! : 0, s.st, i * 16);
    for (let k = 10; k < 16; k++) s.st[i * 16 + k] = 0;
    if (f.valid & (1 << p)) ftw |= 1 << p;
  }
  s.ftw = ftw;
}

/** Loads the x87 registers from FXSAVE-layout bytes and the abridged tag. */
export function x87FromFpuState(c: Cpu): void {
  const f = c.x87;
  const s = c.fpu;
  f.cw = s.fcw;
  f.top = (s.fsw >> 11) & 7;
  f.sw = s.fsw & ~0x3800;
  f.valid = s.ftw & 0xff;
  for (let i = 0; i < 8; i++) f.r[(f.top + i) & 7] = fromExtended(s.st, i * 16);
}
