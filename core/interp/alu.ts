/**
 * Integer arithmetic helpers for the interpreter: ALU operations with lazy flags, shifts and
 * rotates with eager flags, and exact 32/64-bit multiply and divide on int32 halves (no BigInt
 * except the rare 128-bit division whose dividend exceeds 2^53).
 */

// Module-level decoder state uses `var`: V8 checks `let` bindings for the temporal dead zone on
// every access from a function, which measured 40% slower on the interpreter's hot path.
// deno-lint-ignore-file no-var

import {
  Cpu,
  DE,
  F_AF,
  F_ARITH,
  F_CF,
  F_OF,
  LF_ADC,
  LF_ADD,
  LF_DEC,
  LF_INC,
  LF_LOGIC,
  LF_SBB,
  LF_SUB,
} from "./cpu.ts";

const TWO32 = 4294967296;
const TWO64 = TWO32 * TWO32;

/** Masks `v` to operand size `sz` (1, 2, 4 bytes); 4 gives an int32. */
export function mask(v: number, sz: number): number {
  return sz === 1 ? v & 0xff : sz === 2 ? v & 0xffff : v | 0;
}

/** Sign-extends a value of size `sz` to an int32. */
export function sext(v: number, sz: number): number {
  return sz === 1 ? (v << 24) >> 24 : sz === 2 ? (v << 16) >> 16 : v | 0;
}

/**
 * ALU operation `op` (0 add, 1 or, 2 adc, 3 sbb, 4 and, 5 sub, 6 xor, 7 cmp) on operands of size
 * `sz` ≤ 4. Returns the result (masked); records lazy flags.
 */
export function alu(c: Cpu, op: number, a: number, b: number, sz: number): number {
  a = mask(a, sz);
  b = mask(b, sz);
  let r: number;
  switch (op) {
    case 0:
      r = mask(a + b, sz);
      c.setLazy(LF_ADD, sz, r, a, b);
      return r;
    case 1:
      r = mask(a | b, sz);
      c.setLazy(LF_LOGIC, sz, r, a, b);
      return r;
    case 2: {
      const cf = c.cf();
      r = mask(a + b + cf, sz);
      c.setLazy(LF_ADC, sz, r, a, b);
      c.lcf = cf;
      return r;
    }
    case 3: {
      const cf = c.cf();
      r = mask(a - b - cf, sz);
      c.setLazy(LF_SBB, sz, r, a, b);
      c.lcf = cf;
      return r;
    }
    case 4:
      r = mask(a & b, sz);
      c.setLazy(LF_LOGIC, sz, r, a, b);
      return r;
    case 6:
      r = mask(a ^ b, sz);
      c.setLazy(LF_LOGIC, sz, r, a, b);
      return r;
    default: // 5 sub, 7 cmp
      r = mask(a - b, sz);
      c.setLazy(LF_SUB, sz, r, a, b);
      return r;
  }
}

/** 64-bit ALU operation on halves; returns the low half, high half in `c.rh`. */
export function alu64(c: Cpu, op: number, al: number, ah: number, bl: number, bh: number): number {
  let rl: number, rh: number, kind: number;
  let cin = 0;
  switch (op) {
    case 1:
      rl = al | bl;
      rh = ah | bh;
      kind = LF_LOGIC;
      break;
    case 4:
      rl = al & bl;
      rh = ah & bh;
      kind = LF_LOGIC;
      break;
    case 6:
      rl = al ^ bl;
      rh = ah ^ bh;
      kind = LF_LOGIC;
      break;
    case 0:
    case 2: {
      if (op === 2) cin = c.cf();
      const s = (al >>> 0) + (bl >>> 0) + cin;
      rl = s | 0;
      rh = (ah + bh + (s >= TWO32 ? 1 : 0)) | 0;
      kind = op === 0 ? LF_ADD : LF_ADC;
      break;
    }
    default: { // 3 sbb, 5 sub, 7 cmp
      if (op === 3) cin = c.cf();
      const s = (al >>> 0) - (bl >>> 0) - cin;
      rl = s | 0;
      rh = (ah - bh - (s < 0 ? 1 : 0)) | 0;
      kind = op === 3 ? LF_SBB : LF_SUB;
    }
  }
  c.lop = kind;
  c.lsz = 8;
  c.lres = rl;
  c.lresH = rh;
  c.la = al;
  c.laH = ah;
  c.lb = bl;
  c.lbH = bh;
  c.lcf = cin;
  c.rh = rh;
  return rl;
}

/** INC/DEC of size `sz` ≤ 4 (CF preserved). */
export function incdec(c: Cpu, dec: boolean, a: number, sz: number): number {
  const cf = c.cf();
  a = mask(a, sz);
  const r = mask(dec ? a - 1 : a + 1, sz);
  c.setLazy(dec ? LF_DEC : LF_INC, sz, r, a, 1);
  c.lcf = cf;
  return r;
}

/** 64-bit INC/DEC; high half in `c.rh`. */
export function incdec64(c: Cpu, dec: boolean, al: number, ah: number): number {
  const cf = c.cf();
  const r = alu64(c, dec ? 5 : 0, al, ah, 1, 0);
  c.lop = dec ? LF_DEC : LF_INC;
  c.lcf = cf;
  return r;
}

/** Unsigned 32×32 → 64 multiply; returns low half, high half in `c.rh`. */
export function mulu32(c: Cpu, a: number, b: number): number {
  a >>>= 0;
  b >>>= 0;
  const lo = Math.imul(a, b);
  c.rh = mulHi(a, b, lo >>> 0) | 0;
  return lo;
}

const INV32 = 1 / TWO32;

/**
 * The high 32 bits of the unsigned product of `a` and `b` (both below 2^32) whose low 32 bits
 * are `lo`: the double product is within 2^10 of the true one, so (product - lo) / 2^32 is
 * within 2^-21 of the high word, an integer, and rounding gives it exactly.
 */
function mulHi(a: number, b: number, lo: number): number {
  return ((a * b - lo) * INV32 + 0.5) >>> 0;
}

/** Signed 32×32 → 64 multiply; returns low half, high half in `c.rh`. */
export function muls32(c: Cpu, a: number, b: number): number {
  const lo = mulu32(c, a, b);
  let hi = c.rh;
  if (a < 0 || (a | 0) < 0) hi = (hi - (b | 0)) | 0;
  if ((b | 0) < 0) hi = (hi - (a | 0)) | 0;
  c.rh = hi;
  return lo;
}

/** Scratch for 128-bit products: words w0 (least) .. w3. */
export const prod = new Int32Array(4);

/** Unsigned 64×64 → 128 multiply into `prod`. */
export function mulu64(_c: Cpu, al: number, ah: number, bl: number, bh: number): void {
  al >>>= 0;
  ah >>>= 0;
  bl >>>= 0;
  bh >>>= 0;
  const l0 = Math.imul(al, bl) >>> 0, h0 = mulHi(al, bl, l0);
  const l1 = Math.imul(al, bh) >>> 0, h1 = mulHi(al, bh, l1);
  const l2 = Math.imul(ah, bl) >>> 0, h2 = mulHi(ah, bl, l2);
  const l3 = Math.imul(ah, bh) >>> 0, h3 = mulHi(ah, bh, l3);
  prod[0] = l0;
  let s = h0 + l1 + l2; // below 3 * 2^32: exact; `| 0` keeps its low word
  prod[1] = s | 0;
  s = Math.floor(s * INV32) + h1 + h2 + l3;
  prod[2] = s | 0;
  prod[3] = (Math.floor(s * INV32) + h3) | 0;
}

/**
 * Flags after MUL or IMUL: CF = OF = `overflow`. SF, ZF, AF and PF are undefined: AMD leaves
 * them unchanged (measured); the Intel model takes `szp` (SF/ZF/PF of the result) with AF clear
 * (unverified on silicon).
 */
export function mulFlags(c: Cpu, overflow: boolean, szp: number): void {
  if (c.intel) {
    c.setArith((overflow ? F_CF | F_OF : 0) | szp);
    return;
  }
  c.materialize();
  c.flags = (c.flags & ~(F_CF | F_OF)) | (overflow ? F_CF | F_OF : 0);
}

/** Two/three-operand IMUL, 32 bits: the truncated product; flags as `mulFlags`. */
export function imul32(c: Cpu, a: number, b: number): number {
  const l = Math.imul(a, b);
  // The double product is exact within int32 range and never rounds back into it from outside.
  mulFlags(c, (a | 0) * (b | 0) !== l, Cpu.szp(l, 4));
  return l;
}

/**
 * Two/three-operand IMUL, 64 bits: the low half of the truncated product (high half in `c.rh`);
 * flags as `mulFlags` (Intel model: SF from bit 63, PF from the low byte, ZF clear).
 */
export function imul64(c: Cpu, al: number, ah: number, bl: number, bh: number): number {
  const ul = al >>> 0, vl = bl >>> 0;
  let l: number, h: number, of: boolean;
  if (ah === al >> 31 && bh === bl >> 31) {
    // Both operands are sign-extended dwords (an immediate, a small value): the product fits
    // in 64 bits, so it never overflows.
    l = muls32(c, al, bl);
    h = c.rh;
    of = false;
  } else if (ah === 0 && bh === 0) {
    // Both below 2^32 (generic C's umul_ppmm in Linux's MPI code multiplies such halves): the
    // product is below 2^64 and fits in a signed 64-bit result unless its bit 63 is set.
    l = Math.imul(ul, vl);
    h = mulHi(ul, vl, l >>> 0) | 0;
    of = h < 0;
  } else {
    // The truncated product from three 32-bit products; whether the full one fits in 64 bits
    // from its double estimate (relative error below 2^-50), exactly only near the boundary.
    l = Math.imul(ul, vl);
    h = (mulHi(ul, vl, l >>> 0) + Math.imul(ul, bh) + Math.imul(ah, vl)) | 0;
    const est = Math.abs((ah * TWO32 + ul) * (bh * TWO32 + vl));
    if (est < 4611686018427387904) of = false; // 2^62
    else if (est >= 18446744073709551616) of = true; // 2^64
    else {
      muls64(c, al, ah, bl, bh);
      of = prod[2] !== (h >> 31) || prod[3] !== (h >> 31);
    }
  }
  mulFlags(c, of, (Cpu.szp(l, 4) & ~0xc0) | ((h >>> 31) << 7));
  c.rh = h;
  return l;
}

/** Signed 64×64 → 128 multiply into `prod`. */
export function muls64(c: Cpu, al: number, ah: number, bl: number, bh: number): void {
  mulu64(c, al, ah, bl, bh);
  if (ah < 0) sub64hi(bl, bh);
  if (bh < 0) sub64hi(al, ah);
}

function sub64hi(l: number, h: number): void {
  const s = (prod[2]! >>> 0) - (l >>> 0);
  prod[2] = s | 0;
  prod[3] = (prod[3]! - h - (s < 0 ? 1 : 0)) | 0;
}

/** Scratch results of a division: quotient and remainder as 64-bit halves. */
export const divr = new Int32Array(4); // qlo, qhi, rlo, rhi

/** Remainder limbs left by `div96`. */
let remLo = 0, remHi = 0;

/**
 * (n2:n1:n0) / (vh:vl) on unsigned 32-bit limbs, for (n2:n1) < (vh:vl) so that the quotient fits
 * in 32 bits; the remainder is left in `remLo`/`remHi`. A double estimate of the quotient is
 * within one of the truth (relative error about 2^-51 on a quotient below 2^32); the exact
 * remainder, computed on limbs, corrects it.
 */
function div96(c: Cpu, n2: number, n1: number, n0: number, vh: number, vl: number): number {
  let q = Math.floor((n2 * TWO64 + n1 * TWO32 + n0) / (vh * TWO32 + vl));
  if (q > 0xffffffff) q = 0xffffffff;
  const a0 = mulu32(c, q, vl) >>> 0, a1 = c.rh >>> 0;
  const b0 = mulu32(c, q, vh) >>> 0, b1 = c.rh >>> 0;
  // r = n - q * v, limbs normalised to [0, 2^32) with the sign in r2.
  let r0 = n0 - a0, r1 = n1 - a1 - b0, r2 = n2 - b1;
  let k = Math.floor(r0 / TWO32);
  r0 -= k * TWO32;
  r1 += k;
  k = Math.floor(r1 / TWO32);
  r1 -= k * TWO32;
  r2 += k;
  while (r2 < 0) { // the estimate was too large: add the divisor back
    q--;
    r0 += vl;
    if (r0 >= TWO32) r0 -= TWO32, r1++;
    r1 += vh;
    if (r1 >= TWO32) r1 -= TWO32, r2++;
  }
  while (r2 > 0 || r1 > vh || (r1 === vh && r0 >= vl)) { // too small: take one more divisor
    q++;
    r0 -= vl;
    if (r0 < 0) r0 += TWO32, r1--;
    r1 -= vh;
    if (r1 < 0) r1 += TWO32, r2--;
  }
  remLo = r0;
  remHi = r1;
  return q;
}

/**
 * Unsigned (n3:n2:n1:n0) / (dh:dl), all limbs unsigned, divisor not zero, into `divr`. Returns
 * false when the quotient does not fit in 64 bits.
 */
function divuLimbs(
  c: Cpu,
  n0: number,
  n1: number,
  n2: number,
  n3: number,
  dl: number,
  dh: number,
): boolean {
  if (n3 > dh || (n3 === dh && n2 >= dl)) return false;
  let qh = 0;
  if (n3 !== 0 || n2 !== 0 || n1 >= (dh === 0 ? dl : TWO32)) {
    qh = div96(c, n3, n2, n1, dh, dl);
    n1 = remLo;
    n2 = remHi;
  } else n2 = 0;
  // (n2:n1) < divisor now, so the low quotient word fits in 32 bits.
  const ql = div96(c, n2, n1, n0, dh, dl);
  divr[0] = ql | 0;
  divr[1] = qh | 0;
  divr[2] = remLo | 0;
  divr[3] = remHi | 0;
  return true;
}

/**
 * Unsigned division of the 128-bit (n3:n2:n1:n0) by (dh:dl). #DE on zero or quotient overflow
 * past `qbits` bits. Results in `divr`.
 */
export function divu(
  c: Cpu,
  n0: number,
  n1: number,
  n2: number,
  n3: number,
  dl: number,
  dh: number,
  qbits: number,
): void {
  if (dl === 0 && dh === 0) c.raise(DE);
  if (n2 === 0 && n3 === 0 && dh === 0 && (n1 >>> 0) < 0x200000) {
    // Dividend below 2^53: exact in doubles.
    const n = (n1 >>> 0) * TWO32 + (n0 >>> 0);
    const d = dl >>> 0;
    const q = Math.floor(n / d);
    const r = n - q * d;
    if (qbits === 32 && q >= TWO32) c.raise(DE);
    divr[0] = q | 0;
    divr[1] = Math.floor(q / TWO32) | 0;
    divr[2] = r | 0;
    divr[3] = 0;
    return;
  }
  if (!divuLimbs(c, n0 >>> 0, n1 >>> 0, n2 >>> 0, n3 >>> 0, dl >>> 0, dh >>> 0)) c.raise(DE);
  if (qbits === 32 && divr[1] !== 0) c.raise(DE);
}

/** Two's-complement negation of limbs `x` (least first, unsigned) in place. */
function negLimbs(x: number[]): void {
  let carry = 1;
  for (let i = 0; i < x.length; i++) {
    const v = (~x[i]! >>> 0) + carry;
    carry = v >= TWO32 ? 1 : 0;
    x[i] = v >>> 0;
  }
}

/** Signed division as `divu`, for 64/32 (qbits 32) or 128/64 (qbits 64). */
export function divs(
  c: Cpu,
  n0: number,
  n1: number,
  n2: number,
  n3: number,
  dl: number,
  dh: number,
  qbits: number,
): void {
  if (dl === 0 && dh === 0) c.raise(DE);
  const dls = dl | 0, dhs = dh | 0, n1s = n1 | 0, n1Sign = n1s >> 31;
  const wideD = qbits === 64 && !(dhs === 0 && dls >= 0) && !(dhs === -1 && dls < 0);
  if (
    !wideD && (n1s + 0x200000) >>> 0 < 0x400000 &&
    (qbits === 32 || ((n2 | 0) === n1Sign && (n3 | 0) === n1Sign))
  ) {
    // Dividend and divisor within +-2^53: exact in doubles (a rounded quotient cannot reach the
    // next integer: its error is below 1/|divisor|).
    const n = n1s * TWO32 + (n0 >>> 0);
    const d = dls;
    const q = Math.trunc(n / d);
    const r = n - q * d;
    const lim = qbits === 32 ? 2147483648 : 9223372036854775808;
    if (q >= lim || q < -lim) c.raise(DE);
    const qh = Math.floor(q / TWO32);
    divr[0] = (q - qh * TWO32) | 0;
    divr[1] = qh | 0;
    const rh = Math.floor(r / TWO32);
    divr[2] = (r - rh * TWO32) | 0;
    divr[3] = rh | 0;
    return;
  }
  // Divide the magnitudes, then give the quotient and remainder their signs.
  const n = qbits === 32
    ? [n0 >>> 0, n1 >>> 0, n1Sign >>> 0, n1Sign >>> 0]
    : [n0 >>> 0, n1 >>> 0, n2 >>> 0, n3 >>> 0];
  const d = qbits === 32 ? [dl >>> 0, (dls >> 31) >>> 0] : [dl >>> 0, dh >>> 0];
  const nNeg = (n[3]! | 0) < 0, dNeg = (d[1]! | 0) < 0;
  if (nNeg) negLimbs(n);
  if (dNeg) negLimbs(d);
  if (!divuLimbs(c, n[0]!, n[1]!, n[2]!, n[3]!, d[0]!, d[1]!)) c.raise(DE);
  // |quotient| at most 2^(qbits-1), and exactly that only when it is negative.
  const qNeg = nNeg !== dNeg;
  const ql = divr[0]! >>> 0, qh = divr[1]! >>> 0;
  const top = qbits === 32 ? (qh !== 0 ? TWO32 : ql) : qh; // the word holding bit qbits-1
  const over = top > 0x80000000 || (top === 0x80000000 && (!qNeg || (qbits === 64 && ql !== 0)));
  if (over) c.raise(DE);
  if (qNeg) {
    const q = [ql, qh];
    negLimbs(q);
    divr[0] = q[0]! | 0;
    divr[1] = q[1]! | 0;
  }
  if (nNeg) {
    const r = [divr[2]! >>> 0, divr[3]! >>> 0];
    negLimbs(r);
    divr[2] = r[0]! | 0;
    divr[3] = r[1]! | 0;
  }
  if (qbits === 32) { // 32-bit results: the high words are not part of them
    divr[1] = 0;
    divr[3] = 0;
  }
}

/**
 * Shift/rotate group 2 (`op`: 0 rol, 1 ror, 2 rcl, 3 rcr, 4 shl, 5 shr, 6 sal, 7 sar) on a value of
 * size `sz` ≤ 4 by `cnt` (already masked to 5 bits). Flags eager. Returns the result.
 */
export function shift(c: Cpu, op: number, a: number, cnt: number, sz: number): number {
  a = mask(a, sz);
  if (cnt === 0) return a;
  const bits = sz * 8;
  // Rotates keep SF/ZF/PF/AF, so they need the current flags; shifts overwrite them all.
  if (op < 4) c.materialize();
  else c.lop = 0;
  let f = c.flags;
  let r: number, cf: number, of: number;
  switch (op) {
    case 0: { // ROL
      const n = cnt & (bits - 1);
      r = n === 0 ? a : mask((a << n) | (a >>> (bits - n)), sz);
      if (sz < 4 && n !== 0) r = mask((a << n) | (a >> (bits - n)), sz);
      cf = r & 1;
      of = ((r >>> (bits - 1)) & 1) ^ cf;
      c.flags = (f & ~(F_CF | F_OF)) | cf | (of << 11);
      return r;
    }
    case 1: { // ROR
      const n = cnt & (bits - 1);
      r = n === 0 ? a : mask((a >>> n) | (a << (bits - n)), sz);
      cf = (r >>> (bits - 1)) & 1;
      of = cf ^ ((r >>> (bits - 2)) & 1);
      c.flags = (f & ~(F_CF | F_OF)) | cf | (of << 11);
      return r;
    }
    case 2: { // RCL
      const n = cnt % (bits + 1);
      r = a;
      cf = f & 1;
      for (let i = 0; i < n; i++) {
        const top = (r >>> (bits - 1)) & 1;
        r = mask((r << 1) | cf, sz);
        cf = top;
      }
      of = ((r >>> (bits - 1)) & 1) ^ cf;
      c.flags = (f & ~(F_CF | F_OF)) | cf | (of << 11);
      return r;
    }
    case 3: { // RCR
      const n = cnt % (bits + 1);
      r = a;
      cf = f & 1;
      // OF for counts above 1 (undefined): Intel keeps the 1-bit rule on the operand before the
      // rotate (unverified on silicon); AMD takes the top two bits of the result (measured).
      of = ((r >>> (bits - 1)) & 1) ^ cf;
      for (let i = 0; i < n; i++) {
        const low = r & 1;
        r = mask((r >>> 1) | (cf << (bits - 1)), sz);
        cf = low;
      }
      if (!c.intel) of = ((r >>> (bits - 1)) ^ (r >>> (bits - 2))) & 1;
      c.flags = (f & ~(F_CF | F_OF)) | cf | (of << 11);
      return r;
    }
    case 4:
    case 6: // SHL
      cf = cnt <= bits ? (a >>> (bits - cnt)) & 1 : 0;
      if (cnt === 32 && sz === 4) cf = a & 1;
      r = cnt >= bits ? 0 : mask(a << cnt, sz);
      // OF for counts above 1 (undefined): AMD applies the 1-bit rule to the result (MSB xor
      // CF); Intel to the operand (its top two bits), as for a 1-bit shift.
      of = c.intel && cnt > 1
        ? ((a >>> (bits - 1)) ^ (a >>> (bits - 2))) & 1
        : ((r >>> (bits - 1)) & 1) ^ cf;
      break;
    case 5: // SHR
      cf = cnt <= bits ? ((a >>> 0) >>> (cnt - 1)) & 1 : 0;
      r = cnt >= bits ? 0 : mask((a >>> 0) >>> cnt, sz);
      // Intel: the operand's MSB, as for a 1-bit shift; AMD: bit B-2 of the result.
      of = c.intel ? (a >>> (bits - 1)) & 1 : (r >>> (bits - 2)) & 1;
      break;
    default: { // SAR
      const s = sext(a, sz);
      cf = (s >> Math.min(cnt - 1, 31)) & 1;
      r = mask(s >> Math.min(cnt, 31), sz);
      of = 0;
    }
  }
  // AF (undefined for shifts): AMD sets it (measured); Intel clears it (unverified on silicon).
  f = (f & ~(F_CF | F_OF | F_AF | 0xc4)) | cf | (of << 11) | Cpu.szp(r, sz) |
    (c.intel ? 0 : F_AF);
  c.flags = f;
  return r;
}

/** Scratch halves for 64-bit shift helpers. */
var sh = 0;

function shl64(l: number, h: number, n: number): number {
  if (n === 0) {
    sh = h;
    return l;
  }
  if (n < 32) {
    sh = (h << n) | (l >>> (32 - n));
    return l << n;
  }
  sh = n === 32 ? l : n < 64 ? l << (n - 32) : 0;
  return 0;
}

function shr64(l: number, h: number, n: number): number {
  if (n === 0) {
    sh = h;
    return l;
  }
  if (n < 32) {
    sh = h >>> n;
    return (l >>> n) | (h << (32 - n));
  }
  sh = 0;
  return n === 32 ? h : n < 64 ? h >>> (n - 32) : 0;
}

/** Group-2 shift/rotate on a 64-bit value (`cnt` masked to 6 bits); high half in `c.rh`. */
export function shift64(c: Cpu, op: number, l: number, h: number, cnt: number): number {
  if (cnt === 0) {
    c.rh = h;
    return l;
  }
  if (op < 4) c.materialize();
  else c.lop = 0;
  const f = c.flags;
  let rl: number, rh: number, cf: number, of: number;
  switch (op) {
    case 0: { // ROL
      const a = shl64(l, h, cnt), ah = sh;
      const b = shr64(l, h, 64 - cnt), bh = sh;
      rl = a | b;
      rh = ah | bh;
      cf = rl & 1;
      of = (rh >>> 31) ^ cf;
      c.flags = (f & ~(F_CF | F_OF)) | cf | (of << 11);
      c.rh = rh;
      return rl;
    }
    case 1: { // ROR
      const a = shr64(l, h, cnt), ah = sh;
      const b = shl64(l, h, 64 - cnt), bh = sh;
      rl = a | b;
      rh = ah | bh;
      cf = rh >>> 31;
      of = cf ^ ((rh >>> 30) & 1);
      c.flags = (f & ~(F_CF | F_OF)) | cf | (of << 11);
      c.rh = rh;
      return rl;
    }
    case 2:
    case 3: { // RCL / RCR bit by bit
      rl = l;
      rh = h;
      cf = f & 1;
      of = 0;
      if (op === 3) of = (rh >>> 31) ^ cf;
      for (let i = 0; i < cnt; i++) {
        if (op === 2) {
          const top = rh >>> 31;
          rh = (rh << 1) | (rl >>> 31);
          rl = (rl << 1) | cf;
          cf = top;
        } else {
          const low = rl & 1;
          rl = (rl >>> 1) | (rh << 31);
          rh = (rh >>> 1) | (cf << 31);
          cf = low;
        }
      }
      if (op === 2) of = (rh >>> 31) ^ cf;
      else if (!c.intel) of = ((rh >>> 31) ^ (rh >>> 30)) & 1; // RCR, as in `shift`
      c.flags = (f & ~(F_CF | F_OF)) | cf | (of << 11);
      c.rh = rh;
      return rl;
    }
    case 4:
    case 6: // SHL (OF and AF as in `shift`)
      cf = shr64(l, h, 64 - cnt) & 1;
      rl = shl64(l, h, cnt);
      rh = sh;
      of = c.intel && cnt > 1 ? ((h >>> 31) ^ (h >>> 30)) & 1 : (rh >>> 31) ^ cf;
      break;
    case 5: // SHR
      cf = shr64(l, h, cnt - 1) & 1;
      rl = shr64(l, h, cnt);
      rh = sh;
      of = c.intel ? h >>> 31 : (rh >>> 30) & 1;
      break;
    default: { // SAR
      cf = shr64(l, h, cnt - 1) & 1;
      if (cnt - 1 >= 32) cf = (h >> Math.min(cnt - 1 - 32, 31)) & 1;
      rl = shr64(l, h, cnt);
      rh = sh;
      if (h < 0) {
        // Fill the vacated high bits with ones.
        const fillL = cnt >= 32 ? (cnt === 32 ? 0 : ~0 << (64 - cnt)) : 0;
        const fillH = cnt >= 32 ? -1 : ~0 << (32 - cnt);
        rl |= fillL;
        rh |= fillH;
      }
      of = 0;
    }
  }
  let zf = (rl | rh) === 0 ? 0x40 : 0;
  zf |= (rh >>> 31) << 7;
  const pf = Cpu.szp(rl & 0xff, 1) & 0x4;
  c.flags = (f & ~(F_CF | F_OF | F_AF | 0xc4)) | cf | (of << 11) | zf | pf |
    (c.intel ? 0 : F_AF);
  c.rh = rh;
  return rl;
}

/** Shifts `hi:lo` of 64 bits left by `n` (0..63); returns the low half, high in `c.rh`. */
export function shl64x(c: Cpu, l: number, h: number, n: number): number {
  const r = shl64(l, h, n);
  c.rh = sh;
  return r;
}

/** Logical right shift of 64 bits by `n` (0..63); returns the low half, high in `c.rh`. */
export function shr64x(c: Cpu, l: number, h: number, n: number): number {
  const r = shr64(l, h, n);
  c.rh = sh;
  return r;
}

/**
 * One-operand MUL, IMUL, DIV, IDIV (group 3 /4../7) of rDX:rAX by a 32- or 64-bit operand
 * `v` (high half `vh`): results and flags as the instruction defines them; #DE leaves the
 * registers unchanged.
 */
export function mulDivAx(c: Cpu, sub: number, sz: 4 | 8, v: number, vh: number): void {
  const lo = c.lo, hi = c.hi;
  if (sub < 6) {
    const s = sub === 5;
    if (sz === 4) {
      const l = s ? muls32(c, lo[0]!, v) : mulu32(c, lo[0]!, v);
      const h = c.rh;
      lo[0] = l;
      hi[0] = 0;
      lo[2] = h;
      hi[2] = 0;
      mulFlags(c, s ? h !== (l >> 31) : h !== 0, Cpu.szp(l, 4));
      return;
    }
    if (s) muls64(c, lo[0]!, hi[0]!, v, vh);
    else mulu64(c, lo[0]!, hi[0]!, v, vh);
    lo[0] = prod[0]!;
    hi[0] = prod[1]!;
    lo[2] = prod[2]!;
    hi[2] = prod[3]!;
    const sign = prod[1]! >> 31;
    const of = s ? prod[2] !== sign || prod[3] !== sign : (prod[2]! | prod[3]!) !== 0;
    mulFlags(c, of, Cpu.szp(prod[0]!, 1) & 4);
    return;
  }
  const s = sub === 7;
  if (sz === 4) {
    if (s) divs(c, lo[0]!, lo[2]!, 0, 0, v, 0, 32);
    else divu(c, lo[0]!, lo[2]!, 0, 0, v, 0, 32);
    lo[0] = divr[0]!;
    hi[0] = 0;
    lo[2] = divr[2]!;
    hi[2] = 0;
  } else {
    if (s) divs(c, lo[0]!, hi[0]!, lo[2]!, hi[2]!, v, vh, 64);
    else divu(c, lo[0]!, hi[0]!, lo[2]!, hi[2]!, v, vh, 64);
    lo[0] = divr[0]!;
    hi[0] = divr[1]!;
    lo[2] = divr[2]!;
    hi[2] = divr[3]!;
  }
  // Every status flag is undefined after a division. AMD keeps CF and OF, clears SF, ZF
  // and PF and sets AF (measured); the Intel model leaves them all (unverified on silicon).
  if (!c.intel) {
    c.materialize();
    c.flags = (c.flags & ~(F_ARITH & ~(F_CF | F_OF))) | F_AF;
  }
}
