/**
 * x87 for the interpreter: the register stack held as raw 80-bit extended values, loads and
 * stores of 32/64/80-bit reals and 16/32/64-bit integers, the four arithmetic operations in all
 * their forms, compares (FCOM, FUCOM, FCOMI, FTST, FXAM), constants, FCHS/FABS/FSQRT/FRNDINT,
 * FXCH, FCMOVcc, control/status word access and FNINIT/FNCLEX. Arithmetic is exact extended
 * precision (soft-float, `_softfloat.ts`) honouring precision and rounding control, with the
 * exception flags, C1 (rounded up / stack overflow) and stack faults (IE+SF, indefinite) as in
 * Intel SDM Vol. 1, chapter 8. Exceptions are always handled as masked (no #MF delivery).
 * FSCALE, FPREM, F2XM1, FYL2X, FSIN and FCOS are approximated through doubles.
 */

import { type Cpu, F_CF, F_PF, F_ZF } from "./cpu.ts";
import {
  addExact,
  bitLen,
  divSticky,
  type Exact,
  F32,
  F64,
  F80,
  FL_DE,
  FL_IE,
  FL_PE,
  FL_ZE,
  type Fmt,
  mulExact,
  RC_DOWN,
  RC_ZERO,
  round,
  type Rounded,
  roundToInt,
  sqrtSticky,
} from "./_softfloat.ts";

/** FSW bits (Intel SDM Vol. 1, 8.1.3). */
const SW_SF = 0x40, SW_C0 = 0x100, SW_C1 = 0x200, SW_C2 = 0x400, SW_C3 = 0x4000;
const SW_CC = SW_C0 | SW_C1 | SW_C2 | SW_C3;

/** An 80-bit register value: sign and biased exponent (`se`), 64-bit significand (`m`). */
interface XV {
  se: number;
  m: bigint;
}

const INT_BIT = 1n << 63n;
const QUIET_BIT = 1n << 62n;
const MASK64 = (1n << 64n) - 1n;
/** The QNaN floating-point indefinite (SDM Vol. 1, 4.8.3.7). */
const INDEFINITE: XV = { se: 0xffff, m: 0xc000_0000_0000_0000n };

/** The x87 register file as the interpreter keeps it. */
export class X87 {
  /** Physical registers R0..R7: sign+exponent words. */
  readonly se = new Uint16Array(8);
  /** Physical registers R0..R7: significands. */
  readonly m: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
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

// Operand classes.
const ZERO = 0, NORMAL = 1, DENORMAL = 2, INF = 3, QNAN = 4, SNAN = 5, UNSUPPORTED = 6;

function cls(v: XV): number {
  const exp = v.se & 0x7fff;
  if (exp === 0x7fff) {
    if (!(v.m & INT_BIT)) return UNSUPPORTED;
    if ((v.m & ~INT_BIT) === 0n) return INF;
    return v.m & QUIET_BIT ? QNAN : SNAN;
  }
  if (exp === 0) return v.m === 0n ? ZERO : DENORMAL;
  return v.m & INT_BIT ? NORMAL : UNSUPPORTED;
}

function isNaNc(k: number): boolean {
  return k === QNAN || k === SNAN;
}

function sgn(v: XV): number {
  return v.se >> 15;
}

function exact(v: XV): Exact {
  const exp = v.se & 0x7fff;
  return { s: sgn(v), m: v.m, e: (exp === 0 ? 1 : exp) - 16383 - 63 };
}

function zeroOf(s: number): XV {
  return { se: s << 15, m: 0n };
}

function infOf(s: number): XV {
  return { se: (s << 15) | 0x7fff, m: INT_BIT };
}

function quiet(v: XV): XV {
  return { se: v.se, m: v.m | QUIET_BIT };
}

/** Packs a rounded value into extended format. */
function pack(r: Rounded): XV {
  if (r.inf) return infOf(r.s);
  if (r.q === 0n) return zeroOf(r.s);
  const E = r.e + bitLen(r.q) - 1;
  if (E >= F80.emin) return { se: (r.s << 15) | (E + 16383), m: r.q << BigInt(64 - bitLen(r.q)) };
  return { se: r.s << 15, m: r.q << BigInt(r.e - (F80.emin - 63)) };
}

function rcOf(c: Cpu): number {
  return (c.x87.cw >> 10) & 3;
}

/** Significand precision selected by FCW.PC (0: 24, 2: 53, 3 and reserved 1: 64 bits). */
function pcOf(c: Cpu): number {
  const pc = (c.x87.cw >> 8) & 3;
  return pc === 0 ? 24 : pc === 2 ? 53 : 64;
}

// ---- register stack ----

function phys(c: Cpu, i: number): number {
  return (c.x87.top + i) & 7;
}

function isEmpty(c: Cpu, i: number): boolean {
  return !(c.x87.valid & (1 << phys(c, i)));
}

function get(c: Cpu, i: number): XV {
  const p = phys(c, i);
  return { se: c.x87.se[p]!, m: c.x87.m[p]! };
}

function put(c: Cpu, i: number, v: XV): void {
  const p = phys(c, i);
  c.x87.se[p] = v.se;
  c.x87.m[p] = v.m;
  c.x87.valid |= 1 << p;
}

function pop(c: Cpu): void {
  const f = c.x87;
  f.valid &= ~(1 << f.top);
  f.top = (f.top + 1) & 7;
}

/** Raises exception flags (sticky) and sets or clears C1. */
function flag(c: Cpu, flags: number, c1: boolean): void {
  const f = c.x87;
  f.sw = (f.sw | (flags & 0x7f)) & ~SW_C1;
  if (c1) f.sw |= SW_C1;
}

/** Stack underflow: IE and SF with C1 = 0 (SDM 8.5.1.1). */
function underflow(c: Cpu): void {
  c.x87.sw = (c.x87.sw | FL_IE | SW_SF) & ~SW_C1;
}

/** Pushes `v`; on stack overflow pushes the indefinite and sets IE, SF and C1. */
function push(c: Cpu, v: XV, flags = 0, c1 = false): void {
  const f = c.x87;
  const t = (f.top - 1) & 7;
  if (f.valid & (1 << t)) {
    f.top = t;
    put(c, 0, INDEFINITE);
    f.sw = f.sw | FL_IE | SW_SF | SW_C1;
    return;
  }
  f.top = t;
  put(c, 0, v);
  flag(c, flags, c1);
}

// ---- conversions ----

interface BinLayout {
  fmt: Fmt;
  fbits: number;
  ebits: number;
}

const L32: BinLayout = { fmt: F32, fbits: 23, ebits: 8 };
const L64: BinLayout = { fmt: F64, fbits: 52, ebits: 11 };

/** Converts a single/double bit pattern to extended: [value, flags]. */
function fromBin(bits: bigint, l: BinLayout): [XV, number] {
  const s = Number(bits >> BigInt(l.fbits + l.ebits)) & 1;
  const emaxField = (1 << l.ebits) - 1;
  const be = Number((bits >> BigInt(l.fbits)) & BigInt(emaxField));
  const frac = bits & ((1n << BigInt(l.fbits)) - 1n);
  const shift = BigInt(63 - l.fbits);
  if (be === emaxField) {
    if (frac === 0n) return [infOf(s), 0];
    const v = { se: (s << 15) | 0x7fff, m: INT_BIT | (frac << shift) };
    return v.m & QUIET_BIT ? [v, 0] : [quiet(v), FL_IE];
  }
  if (be === 0) {
    if (frac === 0n) return [zeroOf(s), 0];
    const r = round(s, frac, l.fmt.emin - l.fbits, F80, 0);
    return [pack(r), FL_DE];
  }
  const bias = l.fmt.emax;
  return [{ se: (s << 15) | (be - bias + 16383), m: INT_BIT | (frac << shift) }, 0];
}

/** Converts extended to single/double bits with rounding: [bits, flags, rounded up]. */
function toBin(c: Cpu, v: XV, l: BinLayout): [bigint, number, boolean] {
  const k = cls(v);
  const s = BigInt(sgn(v));
  const signBit = s << BigInt(l.fbits + l.ebits);
  const expAll = ((1n << BigInt(l.ebits)) - 1n) << BigInt(l.fbits);
  if (k === UNSUPPORTED) return [expAll | signBitOf(l) | (1n << BigInt(l.fbits - 1)), FL_IE, false];
  if (isNaNc(k)) {
    const frac = (v.m >> BigInt(63 - l.fbits)) & ((1n << BigInt(l.fbits)) - 1n);
    return [signBit | expAll | frac | (1n << BigInt(l.fbits - 1)), k === SNAN ? FL_IE : 0, false];
  }
  if (k === INF) return [signBit | expAll, 0, false];
  if (k === ZERO) return [signBit, 0, false];
  const x = exact(v);
  const r = round(x.s, x.m, x.e, l.fmt, rcOf(c));
  const fl = r.flags | (k === DENORMAL ? FL_DE : 0);
  if (r.inf) return [signBit | expAll, fl, r.up];
  if (r.q === 0n) return [signBit, fl, r.up];
  const hidden = 1n << BigInt(l.fbits);
  if (r.q >= hidden) {
    const be = BigInt(r.e + l.fbits + l.fmt.emax);
    return [signBit | (be << BigInt(l.fbits)) | (r.q - hidden), fl, r.up];
  }
  return [signBit | r.q, fl, r.up];
}

function signBitOf(l: BinLayout): bigint {
  return 1n << BigInt(l.fbits + l.ebits);
}

function fromInt(v: bigint): XV {
  if (v === 0n) return zeroOf(0);
  const s = v < 0n ? 1 : 0;
  const m = s ? -v : v;
  const n = bitLen(m);
  return { se: (s << 15) | (n - 1 + 16383), m: m << BigInt(64 - n) };
}

function rdBits(c: Cpu, ea: number, size: number): bigint {
  const lo = BigInt(c.rd32(ea) >>> 0);
  if (size === 4) return lo;
  return (BigInt(c.rd32(c.wrapLin(ea + 4)) >>> 0) << 32n) | lo;
}

function wrBits(c: Cpu, ea: number, size: number, v: bigint): void {
  if (size === 2) c.wr16(ea, Number(v & 0xffffn));
  else if (size === 4) c.wr32(ea, Number(BigInt.asIntN(32, v)));
  else c.wr64(ea, Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n)));
}

/** Reads a memory real as extended: [value, flags]. */
function readReal(c: Cpu, ea: number, size: number): [XV, number] {
  if (size === 4) return fromBin(rdBits(c, ea, 4), L32);
  if (size === 8) return fromBin(rdBits(c, ea, 8), L64);
  const m = rdBits(c, ea, 8);
  return [{ se: c.rd16(c.wrapLin(ea + 8)), m }, 0];
}

function readInt(c: Cpu, ea: number, size: number): bigint {
  if (size === 2) return BigInt((c.rd16(ea) << 16) >> 16);
  if (size === 4) return BigInt(c.rd32(ea) | 0);
  return BigInt.asIntN(64, rdBits(c, ea, 8));
}

/** FST/FSTP to memory (4, 8 or 10 bytes) of ST(0). */
function storeReal(c: Cpu, ea: number, size: number): void {
  if (isEmpty(c, 0)) {
    underflow(c);
    if (size === 4) wrBits(c, ea, 4, 0xffc0_0000n);
    else if (size === 8) wrBits(c, ea, 8, 0xfff8_0000_0000_0000n);
    else writeExt(c, ea, INDEFINITE);
    return;
  }
  const v = get(c, 0);
  if (size === 10) {
    writeExt(c, ea, v);
    flag(c, 0, false);
    return;
  }
  const [bits, fl, up] = toBin(c, v, size === 4 ? L32 : L64);
  c.probeWrite(ea, size);
  wrBits(c, ea, size, bits);
  flag(c, fl, up && (fl & FL_PE) !== 0);
}

function writeExt(c: Cpu, ea: number, v: XV): void {
  c.probeWrite(ea, 10);
  wrBits(c, ea, 8, v.m);
  c.wr16(c.wrapLin(ea + 8), v.se);
}

/** FIST/FISTP (and FISTTP with `trunc`) of ST(0) to a `size`-byte integer. */
function storeInt(c: Cpu, ea: number, size: number, trunc: boolean): void {
  const indef = 1n << BigInt(8 * size - 1);
  if (isEmpty(c, 0)) {
    underflow(c);
    wrBits(c, ea, size, indef);
    return;
  }
  const v = get(c, 0);
  const k = cls(v);
  if (k === ZERO) {
    wrBits(c, ea, size, 0n);
    flag(c, 0, false);
    return;
  }
  if (k !== NORMAL && k !== DENORMAL) {
    wrBits(c, ea, size, indef);
    flag(c, FL_IE, false);
    return;
  }
  const x = exact(v);
  const [q, inexact, up] = roundToInt(x.s, x.m, x.e, trunc ? RC_ZERO : rcOf(c));
  if (x.s ? q > indef : q >= indef) {
    wrBits(c, ea, size, indef);
    flag(c, FL_IE, false);
    return;
  }
  wrBits(c, ea, size, x.s ? -q : q);
  flag(c, (inexact ? FL_PE : 0) | (k === DENORMAL ? FL_DE : 0), inexact && up);
}

// ---- arithmetic ----

/** Picks the NaN result of a two-operand operation (SDM Vol. 1, Table 4-7). */
function nanPick(a: XV, ka: number, b: XV, kb: number): XV {
  if (isNaNc(ka) && isNaNc(kb)) {
    if (ka !== kb) return quiet(ka === QNAN ? a : b); // an SNaN and a QNaN: the QNaN
    const ma = a.m & ~QUIET_BIT & MASK64, mb = b.m & ~QUIET_BIT & MASK64;
    if (ma === mb) return quiet(ka === QNAN || kb !== QNAN ? a : b);
    return quiet(ma > mb ? a : b);
  }
  return quiet(isNaNc(ka) ? a : b);
}

const OP_ADD = 0, OP_MUL = 1, OP_SUB = 4, OP_SUBR = 5, OP_DIV = 6, OP_DIVR = 7;

/** a op b for the D8-row operation codes (0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr). */
function arith(c: Cpu, op: number, a0: XV, b0: XV, extraFlags: number): XV {
  let a = a0, b = b0;
  if (op === OP_SUBR || op === OP_DIVR) {
    a = b0;
    b = a0;
    op = op === OP_SUBR ? OP_SUB : OP_DIV;
  }
  const ka = cls(a), kb = cls(b);
  if (ka === UNSUPPORTED || kb === UNSUPPORTED) return invalid(c);
  if (isNaNc(ka) || isNaNc(kb)) {
    flag(c, (extraFlags & ~FL_DE) | (ka === SNAN || kb === SNAN ? FL_IE : 0), false);
    return nanPick(a, ka, b, kb);
  }
  const fl = extraFlags | (ka === DENORMAL || kb === DENORMAL ? FL_DE : 0);
  const rc = rcOf(c);
  const sa = sgn(a);
  let sb = sgn(b);
  let x: Exact | null;
  switch (op) {
    case OP_ADD:
    case OP_SUB: {
      if (op === OP_SUB) sb ^= 1;
      if (ka === INF || kb === INF) {
        if (ka === INF && kb === INF && sa !== sb) return invalid(c);
        flag(c, fl, false);
        return infOf(ka === INF ? sa : sb);
      }
      if (ka === ZERO && kb === ZERO) {
        flag(c, fl, false);
        return zeroOf(sa === sb ? sa : rc === RC_DOWN ? 1 : 0);
      }
      const xa = exact(a), xb = { ...exact(b), s: sb };
      x = ka === ZERO ? xb : kb === ZERO ? xa : addExact(xa, xb);
      if (x === null) {
        flag(c, fl, false);
        return zeroOf(rc === RC_DOWN ? 1 : 0);
      }
      break;
    }
    case OP_MUL: {
      const s = sa ^ sb;
      if (ka === INF || kb === INF) {
        if (ka === ZERO || kb === ZERO) return invalid(c);
        flag(c, fl, false);
        return infOf(s);
      }
      if (ka === ZERO || kb === ZERO) {
        flag(c, fl, false);
        return zeroOf(s);
      }
      x = mulExact(exact(a), exact(b));
      break;
    }
    default: {
      const s = sa ^ sb;
      if (ka === INF) {
        if (kb === INF) return invalid(c);
        flag(c, fl, false);
        return infOf(s);
      }
      if (kb === INF) {
        flag(c, fl, false);
        return zeroOf(s);
      }
      if (kb === ZERO) {
        if (ka === ZERO) return invalid(c);
        flag(c, FL_ZE, false); // divide-by-zero wins over denormal
        return infOf(s);
      }
      if (ka === ZERO) {
        flag(c, fl, false);
        return zeroOf(s);
      }
      x = divSticky(exact(a), exact(b), 64);
    }
  }
  return finish(c, x, fl);
}

/** Rounds an exact result to the precision control and rounding mode, with flags and C1. */
function finish(c: Cpu, x: Exact, fl: number): XV {
  const r = round(x.s, x.m, x.e, F80, rcOf(c), pcOf(c));
  flag(c, fl | r.flags, r.up && (r.flags & FL_PE) !== 0);
  return pack(r);
}

function invalid(c: Cpu): XV {
  flag(c, FL_IE, false);
  return INDEFINITE;
}

/** Ordering of two values: 0 greater, 1 less, 2 equal, 3 unordered; raises IE/DE. */
function compareX(c: Cpu, a: XV, b: XV, unordered: boolean): number {
  const ka = cls(a), kb = cls(b);
  if (ka === UNSUPPORTED || kb === UNSUPPORTED || isNaNc(ka) || isNaNc(kb)) {
    const sig = !unordered || ka === SNAN || kb === SNAN || ka === UNSUPPORTED ||
      kb === UNSUPPORTED;
    flag(c, sig ? FL_IE : 0, false);
    return 3;
  }
  flag(c, ka === DENORMAL || kb === DENORMAL ? FL_DE : 0, false);
  const o = order(a, ka, b, kb);
  return o > 0 ? 0 : o < 0 ? 1 : 2;
}

function order(a: XV, ka: number, b: XV, kb: number): number {
  const va = ka === ZERO ? 0 : ka === INF ? (sgn(a) ? -2 : 2) : sgn(a) ? -1 : 1;
  const vb = kb === ZERO ? 0 : kb === INF ? (sgn(b) ? -2 : 2) : sgn(b) ? -1 : 1;
  if (va !== vb || ka === ZERO || ka === INF) return Math.sign(va - vb);
  const d = addExact(exact(a), { ...exact(b), s: sgn(b) ^ 1 });
  return d === null ? 0 : d.s ? -1 : 1;
}

/** FCOM-family: sets C3/C2/C0 (C1 cleared) from comparing ST(0) with `b`. */
function fcom(c: Cpu, b: XV | null, unordered: boolean, bEmpty = false): void {
  let rel: number;
  if (isEmpty(c, 0) || bEmpty || b === null) {
    underflow(c);
    rel = 3;
  } else rel = compareX(c, get(c, 0), b, unordered);
  const f = c.x87;
  f.sw &= ~(SW_C0 | SW_C2 | SW_C3);
  f.sw |= [0, SW_C0, SW_C3, SW_C0 | SW_C2 | SW_C3][rel]!;
}

/** FCOMI-family: sets ZF/PF/CF from comparing ST(0) with ST(i). */
function fcomi(c: Cpu, i: number, unordered: boolean): void {
  let rel: number;
  if (isEmpty(c, 0) || isEmpty(c, i)) {
    underflow(c);
    rel = 3;
  } else {
    const c1 = c.x87.sw & SW_C1; // FCOMI leaves C1 unchanged (AMD hardware)
    rel = compareX(c, get(c, 0), get(c, i), unordered);
    c.x87.sw |= c1;
  }
  c.setArith([0, F_CF, F_ZF, F_ZF | F_PF | F_CF][rel]!);
}

/** ST(dst) = ST(dst) op src with stack-underflow handling. */
function arithTo(c: Cpu, op: number, dst: number, src: XV | null, flags = 0): void {
  if (src === null || isEmpty(c, dst)) {
    underflow(c);
    put(c, dst, INDEFINITE);
    return;
  }
  put(c, dst, arith(c, op, get(c, dst), src, flags));
}

function regOrNull(c: Cpu, i: number): XV | null {
  return isEmpty(c, i) ? null : get(c, i);
}

// Constants with more precision than the register holds, rounded per RC (SDM FLD1/FLDZ/...):
// [significand bits beyond 64 as a 128-bit value, unbiased exponent].
const CONSTS: Record<number, [bigint, number]> = {
  0xe9: [0xd49a_784b_cd1b_8afe_492b_f6ff_4daf_db4cn, 1], // log2(10)
  0xea: [0xb8aa_3b29_5c17_f0bb_be87_fed0_691d_3e89n, 0], // log2(e)
  0xeb: [0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1n, 1], // pi
  0xec: [0x9a20_9a84_fbcf_f798_8f89_59ac_0b7c_9178n, -2], // log10(2)
  0xed: [0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6afn, -1], // ln(2)
};

function constant(c: Cpu, code: number): XV {
  const k = CONSTS[code]!;
  const r = round(0, k[0], k[1] - 127, F80, rcOf(c));
  return pack(r);
}

/** Converts a double (for the transcendental approximations) to extended. */
function fromDouble(v: number): XV {
  const b = new DataView(new ArrayBuffer(8));
  b.setFloat64(0, v, true);
  return fromBin(b.getBigUint64(0, true), L64)[0];
}

function toDouble(v: XV): number {
  const k = cls(v);
  if (k === ZERO) return sgn(v) ? -0 : 0;
  if (k === INF) return sgn(v) ? -Infinity : Infinity;
  if (k !== NORMAL && k !== DENORMAL) return NaN;
  const x = exact(v);
  const mag = Number(x.m >> 11n) * 2 ** (x.e + 11);
  return x.s ? -mag : mag;
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
        let v: XV, fl = 0;
        if (op === 0xd8) [v, fl] = readReal(c, ea, 4);
        else if (op === 0xdc) [v, fl] = readReal(c, ea, 8);
        else v = fromInt(readInt(c, ea, op === 0xda ? 4 : 2));
        if (reg === 2 || reg === 3) {
          // A signalling source converted for a compare still raises IE (via the compare).
          const raw = fl & FL_IE ? { se: v.se, m: v.m & ~QUIET_BIT } : v;
          fcom(c, raw, false);
          if (fl & FL_DE && !isEmpty(c, 0) && !isNaNc(cls(get(c, 0)))) f.sw |= FL_DE;
          if (reg === 3) pop(c);
        } else {
          const raw = fl & FL_IE ? { se: v.se, m: v.m & ~QUIET_BIT } : v;
          arithTo(c, reg, 0, raw, fl & FL_DE);
        }
        return;
      }
      case 0xd9:
        switch (reg) {
          case 0: {
            const [v, fl] = readReal(c, ea, 4);
            push(c, v, fl);
            return;
          }
          case 2:
          case 3:
            storeReal(c, ea, 4);
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
            push(c, fromInt(readInt(c, ea, 4)));
            return;
          case 1: // FISTTP m32 (SSE3)
            storeInt(c, ea, 4, true);
            pop(c);
            return;
          case 2:
          case 3:
            storeInt(c, ea, 4, false);
            if (reg === 3) pop(c);
            return;
          case 5:
            push(c, readReal(c, ea, 10)[0]);
            return;
          case 7:
            storeReal(c, ea, 10);
            pop(c);
            return;
        }
        break;
      case 0xdd:
        switch (reg) {
          case 0: {
            const [v, fl] = readReal(c, ea, 8);
            push(c, v, fl);
            return;
          }
          case 1:
            storeInt(c, ea, 8, true);
            pop(c);
            return;
          case 2:
          case 3:
            storeReal(c, ea, 8);
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
            push(c, fromInt(readInt(c, ea, 2)));
            return;
          case 1:
            storeInt(c, ea, 2, true);
            pop(c);
            return;
          case 2:
          case 3:
            storeInt(c, ea, 2, false);
            if (reg === 3) pop(c);
            return;
          case 5:
            push(c, fromInt(readInt(c, ea, 8)));
            return;
          case 7:
            storeInt(c, ea, 8, false);
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
        fcom(c, regOrNull(c, i), false);
        if (reg === 3) pop(c);
      } else arithTo(c, reg, 0, regOrNull(c, i));
      return;
    case 0xdc: // ST(i) = ST(i) op ST(0); sub/div directions are swapped in this row
      if (reg < 2) arithTo(c, reg, i, regOrNull(c, 0));
      else if (reg >= 4) arithTo(c, reg ^ 1, i, regOrNull(c, 0));
      else {
        fcom(c, regOrNull(c, i), false);
        if (reg === 3) pop(c);
      }
      return;
    case 0xde:
      if (modrm === 0xd9) { // FCOMPP
        fcom(c, regOrNull(c, 1), false);
        pop(c);
        pop(c);
        return;
      }
      if (reg < 2) arithTo(c, reg, i, regOrNull(c, 0));
      else if (reg >= 4) arithTo(c, reg ^ 1, i, regOrNull(c, 0));
      else c.ud();
      pop(c);
      return;
    case 0xd9:
      switch (reg) {
        case 0: // FLD ST(i)
          if (isEmpty(c, i)) { // underflow reported (C1 = 0) even if the push overflows
            f.top = (f.top - 1) & 7;
            put(c, 0, INDEFINITE);
            underflow(c);
          } else push(c, get(c, i));
          return;
        case 1: { // FXCH
          if (isEmpty(c, 0) || isEmpty(c, i)) {
            const a = isEmpty(c, 0) ? INDEFINITE : get(c, 0);
            const b = isEmpty(c, i) ? INDEFINITE : get(c, i);
            put(c, 0, b);
            put(c, i, a);
            underflow(c);
            return;
          }
          const a = get(c, 0), b = get(c, i);
          put(c, 0, b);
          put(c, i, a);
          flag(c, 0, false);
          return;
        }
        case 2: // FNOP
          return;
      }
      return execD9(c, modrm);
    case 0xda:
      if (modrm === 0xe9) { // FUCOMPP
        fcom(c, regOrNull(c, 1), true);
        pop(c);
        pop(c);
        return;
      }
      if (reg < 4) { // FCMOVB/E/BE/U
        const cc = [c.cf(), c.zf(), c.cf() | c.zf(), c.pf()][reg]!;
        fcmov(c, i, cc !== 0);
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
        fcomi(c, i, reg === 5);
        return;
      }
      if (reg < 4) { // FCMOVNB/NE/NBE/NU
        const cc = [c.cf(), c.zf(), c.cf() | c.zf(), c.pf()][reg]!;
        fcmov(c, i, cc === 0);
        return;
      }
      if (modrm === 0xe0 || modrm === 0xe1 || modrm === 0xe4) return; // FENI/FDISI/FSETPM
      break;
    case 0xdd:
      switch (reg) {
        case 0: // FFREE
          f.valid &= ~(1 << phys(c, i));
          // C0-C3 are undefined: AMD clears C1 and keeps the rest (measured); the Intel model
          // leaves all four (unverified on silicon).
          if (!c.intel) f.sw &= ~SW_C1;
          return;
        case 2:
        case 3:
          if (isEmpty(c, 0)) {
            underflow(c);
            put(c, i, INDEFINITE);
          } else {
            put(c, i, get(c, 0));
            flag(c, 0, false);
          }
          if (reg === 3) pop(c);
          return;
        case 4:
        case 5:
          fcom(c, regOrNull(c, i), true);
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
        fcomi(c, i, reg === 5);
        pop(c);
        return;
      }
      break;
  }
  c.ud();
}

function fcmov(c: Cpu, i: number, cond: boolean): void {
  if (isEmpty(c, 0) || isEmpty(c, i)) {
    underflow(c);
    put(c, 0, INDEFINITE);
    return;
  }
  if (cond) put(c, 0, get(c, i)); // C1 is left unchanged (AMD hardware)
}

/** D9 E0..FF: one-byte-operand operations on ST(0). */
function execD9(c: Cpu, modrm: number): void {
  const f = c.x87;
  if (modrm >= 0xe8 && modrm <= 0xee) { // constants
    const v = modrm === 0xe8 ? fromInt(1n) : modrm === 0xee ? zeroOf(0) : constant(c, modrm);
    push(c, v);
    return;
  }
  if (modrm === 0xf6 || modrm === 0xf7) { // FDECSTP / FINCSTP
    f.top = (f.top + (modrm === 0xf7 ? 1 : -1)) & 7;
    flag(c, 0, false);
    return;
  }
  if (modrm === 0xe5) { // FXAM
    const p = f.top;
    const v = get(c, 0);
    f.sw &= ~SW_CC;
    if (sgn(v)) f.sw |= SW_C1;
    if (!(f.valid & (1 << p))) f.sw |= SW_C3 | SW_C0;
    else {
      f.sw |= [SW_C3, SW_C2, SW_C3 | SW_C2, SW_C2 | SW_C0, SW_C0, SW_C0, 0][cls(v)]!;
    }
    return;
  }
  if (isEmpty(c, 0)) {
    underflow(c);
    if (modrm === 0xe4) f.sw |= SW_C0 | SW_C2 | SW_C3;
    else if (modrm !== 0xf1 && modrm !== 0xf5 && modrm !== 0xf8 && modrm !== 0xfd) {
      put(c, 0, INDEFINITE);
    }
    return;
  }
  const v = get(c, 0);
  const k = cls(v);
  switch (modrm) {
    case 0xe0: // FCHS
      put(c, 0, { se: v.se ^ 0x8000, m: v.m });
      flag(c, 0, false);
      return;
    case 0xe1: // FABS
      put(c, 0, { se: v.se & 0x7fff, m: v.m });
      flag(c, 0, false);
      return;
    case 0xe4: // FTST
      fcom(c, zeroOf(0), false);
      return;
    case 0xfa: { // FSQRT
      if (k === UNSUPPORTED) return void put(c, 0, invalid(c));
      if (isNaNc(k)) {
        flag(c, k === SNAN ? FL_IE : 0, false);
        put(c, 0, quiet(v));
        return;
      }
      const de = k === DENORMAL ? FL_DE : 0;
      if (k === ZERO || (k === INF && !sgn(v))) {
        flag(c, de, false);
        return;
      }
      if (sgn(v)) return void put(c, 0, invalid(c));
      const x = exact(v);
      put(c, 0, finish(c, sqrtSticky(x, pcOf(c)), de));
      return;
    }
    case 0xfc: { // FRNDINT
      if (k === UNSUPPORTED) return void put(c, 0, invalid(c));
      if (isNaNc(k)) {
        flag(c, k === SNAN ? FL_IE : 0, false);
        put(c, 0, quiet(v));
        return;
      }
      if (k === ZERO || k === INF) {
        flag(c, 0, false);
        return;
      }
      const x = exact(v);
      const [q, inexact, up] = roundToInt(x.s, x.m, x.e, rcOf(c));
      put(c, 0, q === 0n ? zeroOf(x.s) : fromInt(x.s ? -q : q));
      flag(c, (inexact ? FL_PE : 0) | (k === DENORMAL ? FL_DE : 0), inexact && up);
      return;
    }
  }
  // Transcendentals and friends: approximated through doubles.
  const a = toDouble(v);
  switch (modrm) {
    case 0xf0: // F2XM1
      put(c, 0, fromDouble(2 ** a - 1));
      return;
    case 0xf1: // FYL2X
      put(c, 1, fromDouble(toDouble(get(c, 1)) * Math.log2(a)));
      pop(c);
      return;
    case 0xf8:
    case 0xf5: { // FPREM / FPREM1
      const b = toDouble(get(c, 1));
      const q = modrm === 0xf8 ? Math.trunc(a / b) : Math.round(a / b);
      put(c, 0, fromDouble(a - q * b));
      f.sw &= ~SW_CC;
      if (q & 1) f.sw |= SW_C1;
      if (q & 2) f.sw |= SW_C3;
      if (q & 4) f.sw |= SW_C0;
      return;
    }
    case 0xfd: // FSCALE
      put(c, 0, fromDouble(a * 2 ** Math.trunc(toDouble(get(c, 1)))));
      return;
    case 0xfe:
      put(c, 0, fromDouble(Math.sin(a)));
      f.sw &= ~SW_C2;
      return;
    case 0xff:
      put(c, 0, fromDouble(Math.cos(a)));
      f.sw &= ~SW_C2;
      return;
  }
  c.ud();
}

/** The full 16-bit tag word (00 valid, 01 zero, 10 special, 11 empty) for FNSTENV. */
function tagWord(c: Cpu): number {
  const f = c.x87;
  let t = 0;
  for (let p = 0; p < 8; p++) {
    let tag = 3;
    if (f.valid & (1 << p)) {
      const k = cls({ se: f.se[p]!, m: f.m[p]! });
      tag = k === ZERO ? 1 : k === NORMAL ? 0 : 2;
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
  const dv = new DataView(s.st.buffer, s.st.byteOffset, s.st.byteLength);
  for (let i = 0; i < 8; i++) {
    const p = (f.top + i) & 7;
    dv.setBigUint64(i * 16, f.m[p]! & MASK64, true);
    dv.setUint16(i * 16 + 8, f.se[p]!, true);
    for (let k = 10; k < 16; k++) s.st[i * 16 + k] = 0;
  }
  s.ftw = f.valid & 0xff;
}

/** Loads the x87 registers from FXSAVE-layout bytes and the abridged tag. */
export function x87FromFpuState(c: Cpu): void {
  const f = c.x87;
  const s = c.fpu;
  f.cw = s.fcw;
  f.top = (s.fsw >> 11) & 7;
  f.sw = s.fsw & ~0x3800;
  f.valid = s.ftw & 0xff;
  const dv = new DataView(s.st.buffer, s.st.byteOffset, s.st.byteLength);
  for (let i = 0; i < 8; i++) {
    const p = (f.top + i) & 7;
    f.m[p] = dv.getBigUint64(i * 16, true);
    f.se[p] = dv.getUint16(i * 16 + 8, true);
  }
}
