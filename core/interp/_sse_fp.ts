/**
 * SSE/SSE2 floating-point lane operations with the exact x86 semantics: MXCSR rounding control,
 * DAZ/FTZ, exception flags (IE DE ZE OE UE PE), QNaN/SNaN propagation (first-operand rule,
 * default NaN), as described in Intel SDM Vol. 1, 11.5 and 4.8.3. Lane values are raw bit
 * patterns held as BigInt; every function returns the result with the flags it raises.
 */

import {
  addExact,
  divSticky,
  type Exact,
  F32,
  F64,
  FL_DE,
  FL_IE,
  FL_PE,
  FL_UE,
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

/** A binary interchange format with its bit layout. */
export interface BinFmt extends Fmt {
  readonly fbits: number;
  readonly bias: number;
  readonly expMask: bigint;
  readonly signBit: bigint;
  readonly qbit: bigint;
  readonly fracMask: bigint;
}

function binFmt(f: Fmt, fbits: number, ebits: number): BinFmt {
  return {
    ...f,
    fbits,
    bias: f.emax,
    expMask: (1n << BigInt(ebits)) - 1n,
    signBit: 1n << BigInt(fbits + ebits),
    qbit: 1n << BigInt(fbits - 1),
    fracMask: (1n << BigInt(fbits)) - 1n,
  };
}

/** Single precision layout. */
export const SF: BinFmt = binFmt(F32, 23, 8);
/** Double precision layout. */
export const DF: BinFmt = binFmt(F64, 52, 11);

const ZERO = 0, FINITE = 1, INF = 2, QNAN = 3, SNAN = 4;

/** MXCSR fields used here (Intel SDM Vol. 1, 10.2.3). */
const MX_DAZ = 0x40, MX_FTZ = 0x8000, MX_RC_SHIFT = 13;

interface Un extends Exact {
  k: number;
  den: boolean;
}

function unpack(bits: bigint, f: BinFmt): Un {
  const s = bits & f.signBit ? 1 : 0;
  const be = Number((bits >> BigInt(f.fbits)) & f.expMask);
  const frac = bits & f.fracMask;
  if (be === Number(f.expMask)) {
    const k = frac === 0n ? INF : frac & f.qbit ? QNAN : SNAN;
    return { k, s, m: frac, e: 0, den: false };
  }
  if (be === 0) {
    if (frac === 0n) return { k: ZERO, s, m: 0n, e: 0, den: false };
    return { k: FINITE, s, m: frac, e: f.emin - (f.p - 1), den: true };
  }
  return {
    k: FINITE,
    s,
    m: frac | (1n << BigInt(f.fbits)),
    e: be - f.bias - (f.p - 1),
    den: false,
  };
}

function signOf(s: number, f: BinFmt): bigint {
  return s ? f.signBit : 0n;
}

function infBits(s: number, f: BinFmt): bigint {
  return signOf(s, f) | (f.expMask << BigInt(f.fbits));
}

/** The default QNaN (negative, quiet bit only): 0xFFC00000 / 0xFFF8000000000000. */
export function defaultNaN(f: BinFmt): bigint {
  return infBits(1, f) | f.qbit;
}

/** Packs a rounded result, applying FTZ. Returns [bits, flags]. */
function pack(r: Rounded, f: BinFmt, mx: number): [bigint, number] {
  if (r.tiny && mx & MX_FTZ) return [signOf(r.s, f), r.flags | FL_UE | FL_PE];
  if (r.inf) return [infBits(r.s, f), r.flags];
  if (r.q === 0n) return [signOf(r.s, f), r.flags];
  const hidden = 1n << BigInt(f.fbits);
  if (r.q >= hidden) {
    const be = r.e + f.fbits + f.bias;
    return [signOf(r.s, f) | (BigInt(be) << BigInt(f.fbits)) | (r.q - hidden), r.flags];
  }
  return [signOf(r.s, f) | r.q, r.flags];
}

/** Applies DAZ to a finite denormal operand or raises DE for it. */
function daz(u: Un, mx: number): number {
  if (!u.den) return 0;
  if (mx & MX_DAZ) {
    u.k = ZERO;
    u.m = 0n;
    u.den = false;
    return 0;
  }
  return FL_DE;
}

/** MXCSR rounding control of `mx` (0 nearest-even, 1 down, 2 up, 3 toward zero). */
export function rcOf(mx: number): number {
  return (mx >> MX_RC_SHIFT) & 3;
}

/** Arithmetic operation codes (the 0F-map opcodes). */
export const OP_SQRT = 0x51, OP_ADD = 0x58, OP_MUL = 0x59, OP_SUB = 0x5c;
export const OP_MIN = 0x5d, OP_DIV = 0x5e, OP_MAX = 0x5f;

/** One lane of ADD/SUB/MUL/DIV/SQRT/MIN/MAX: `a` is the destination, `b` the source. */
export function arithLane(
  op: number,
  a: bigint,
  b: bigint,
  f: BinFmt,
  mx: number,
): [bigint, number] {
  const ub = unpack(b, f);
  if (op === OP_SQRT) {
    if (ub.k >= QNAN) return [b | f.qbit, ub.k === SNAN ? FL_IE : 0];
    const fl = daz(ub, mx);
    if (ub.k === ZERO) return [signOf(ub.s, f), fl];
    if (ub.s) return [defaultNaN(f), FL_IE]; // invalid wins over denormal
    if (ub.k === INF) return [b, fl];
    const r = round(0, ...spread(sqrtSticky(ub, f.p)), f, rcOf(mx));
    const [bits, rf] = pack(r, f, mx);
    return [bits, rf | fl];
  }
  const ua = unpack(a, f);
  if (op === OP_MIN || op === OP_MAX) {
    if (ua.k >= QNAN || ub.k >= QNAN) {
      // The source is returned, flushed by DAZ when denormal.
      return [ub.den && mx & MX_DAZ ? signOf(ub.s, f) : b, FL_IE];
    }
    const fl = daz(ua, mx) | daz(ub, mx);
    const c = compare(ua, ub);
    if (c === 0) return [ub.k === ZERO ? signOf(ub.s, f) : b, fl];
    const pickA = op === OP_MIN ? c < 0 : c > 0;
    const u = pickA ? ua : ub;
    return [u.k === ZERO ? signOf(u.s, f) : pickA ? a : b, fl];
  }
  if (ua.k >= QNAN || ub.k >= QNAN) {
    const fl = ua.k === SNAN || ub.k === SNAN ? FL_IE : 0;
    return [(ua.k >= QNAN ? a : b) | f.qbit, fl];
  }
  const fl = daz(ua, mx) | daz(ub, mx);
  const rc = rcOf(mx);
  let r: Rounded;
  switch (op) {
    case OP_ADD:
    case OP_SUB: {
      if (op === OP_SUB) ub.s ^= 1;
      if (ua.k === INF || ub.k === INF) {
        if (ua.k === INF && ub.k === INF && ua.s !== ub.s) return [defaultNaN(f), FL_IE | fl];
        return [infBits(ua.k === INF ? ua.s : ub.s, f), fl];
      }
      if (ua.k === ZERO && ub.k === ZERO) {
        const s = ua.s === ub.s ? ua.s : rc === RC_DOWN ? 1 : 0;
        return [signOf(s, f), fl];
      }
      const sum = ua.k === ZERO ? ub : ub.k === ZERO ? ua : addExact(ua, ub);
      if (sum === null) return [signOf(rc === RC_DOWN ? 1 : 0, f), fl];
      r = round(sum.s, sum.m, sum.e, f, rc);
      break;
    }
    case OP_MUL: {
      const s = ua.s ^ ub.s;
      if (ua.k === INF || ub.k === INF) {
        if (ua.k === ZERO || ub.k === ZERO) return [defaultNaN(f), FL_IE | fl];
        return [infBits(s, f), fl];
      }
      if (ua.k === ZERO || ub.k === ZERO) return [signOf(s, f), fl];
      r = round(s, ...spread(mulExact(ua, ub)), f, rc);
      break;
    }
    default: { // DIV
      const s = ua.s ^ ub.s;
      if (ua.k === INF) {
        if (ub.k === INF) return [defaultNaN(f), FL_IE | fl];
        return [infBits(s, f), fl];
      }
      if (ub.k === INF) return [signOf(s, f), fl];
      if (ub.k === ZERO) {
        if (ua.k === ZERO) return [defaultNaN(f), FL_IE | fl];
        return [infBits(s, f), FL_ZE]; // divide-by-zero wins over denormal
      }
      if (ua.k === ZERO) return [signOf(s, f), fl];
      r = round(s, ...spread(divSticky(ua, ub, f.p)), f, rc);
    }
  }
  const [bits, rf] = pack(r, f, mx);
  return [bits, rf | fl];
}

function spread(x: Exact): [bigint, number] {
  return [x.m, x.e];
}

/** Orders two non-NaN operands: -1, 0 or 1. */
function compare(a: Un, b: Un): number {
  const va = value(a), vb = value(b);
  return va < vb ? -1 : va > vb ? 1 : 0;
}

/** The exact value of a non-NaN operand as a JS number (singles and doubles fit). */
function value(u: Un): number {
  const mag = u.k === INF ? Infinity : u.k === ZERO ? 0 : Number(u.m) * 2 ** u.e;
  return u.s ? -mag : mag;
}

/** CMPPS-family predicate (imm & 7) on one lane: [true?, flags]. */
export function cmpLane(
  pred: number,
  a: bigint,
  b: bigint,
  f: BinFmt,
  mx: number,
): [boolean, number] {
  const ua = unpack(a, f), ub = unpack(b, f);
  const p = pred & 7;
  if (ua.k >= QNAN || ub.k >= QNAN) {
    const signaling = p === 1 || p === 2 || p === 5 || p === 6;
    const fl = signaling || ua.k === SNAN || ub.k === SNAN ? FL_IE : 0;
    return [p >= 3 && p <= 6, fl];
  }
  const fl = daz(ua, mx) | daz(ub, mx);
  const c = compare(ua, ub);
  const r = [c === 0, c < 0, c <= 0, false, c !== 0, !(c < 0), !(c <= 0), true][p]!;
  return [r, fl];
}

/** (U)COMISS/SD: [relation 0 greater, 1 less, 2 equal, 3 unordered, flags]. */
export function comiLane(
  a: bigint,
  b: bigint,
  f: BinFmt,
  mx: number,
  quiet: boolean,
): [number, number] {
  const ua = unpack(a, f), ub = unpack(b, f);
  if (ua.k >= QNAN || ub.k >= QNAN) {
    return [3, !quiet || ua.k === SNAN || ub.k === SNAN ? FL_IE : 0];
  }
  const fl = daz(ua, mx) | daz(ub, mx);
  const c = compare(ua, ub);
  return [c > 0 ? 0 : c < 0 ? 1 : 2, fl];
}

/** Float lane to a signed integer of `bits` bits: [value or null for indefinite, flags]. */
export function toIntLane(
  a: bigint,
  f: BinFmt,
  mx: number,
  trunc: boolean,
  bits: number,
): [bigint | null, number] {
  const u = unpack(a, f);
  if (u.k >= INF) return [null, FL_IE];
  const fl = daz(u, mx) & 0; // conversions to integer do not report DE
  if (u.k === ZERO) return [0n, fl];
  const [q, inexact] = roundToInt(u.s, u.m, u.e, trunc ? RC_ZERO : rcOf(mx));
  const lim = 1n << BigInt(bits - 1);
  if (u.s ? q > lim : q >= lim) return [null, FL_IE];
  return [u.s ? -q : q, inexact ? FL_PE : 0];
}

/** Signed integer to a float lane. */
export function fromIntLane(v: bigint, f: BinFmt, mx: number): [bigint, number] {
  if (v === 0n) return [0n, 0];
  const s = v < 0n ? 1 : 0;
  return pack(round(s, s ? -v : v, 0, f, rcOf(mx)), f, mx);
}

/** Float lane in format `from` to format `to` (CVTSS2SD, CVTSD2SS and packed forms). */
export function convertLane(a: bigint, from: BinFmt, to: BinFmt, mx: number): [bigint, number] {
  const u = unpack(a, from);
  if (u.k >= QNAN) {
    const shift = to.fbits - from.fbits;
    const frac = shift >= 0 ? u.m << BigInt(shift) : u.m >> BigInt(-shift);
    return [infBits(u.s, to) | frac | to.qbit, u.k === SNAN ? FL_IE : 0];
  }
  if (u.k === INF) return [infBits(u.s, to), 0];
  const fl = daz(u, mx);
  if (u.k === ZERO) return [signOf(u.s, to), fl];
  const [bits, rf] = pack(round(u.s, u.m, u.e, to, rcOf(mx)), to, mx);
  return [bits, rf | fl];
}

// ---- fast paths (round-to-nearest, normal operands and results) ----

/** Smallest normal double, and the range where Dekker's splitting cannot over/underflow. */
const MIN_NORMAL_D = 2.2250738585072014e-308;
const MIN_NORMAL_S = 1.1754943508222875e-38;
const SAFE_LO = 2 ** -960, SAFE_HI = 2 ** 995;
/** Veltkamp splitter 2^27 + 1 (Dekker 1971). */
const SPLITTER = 134217729;

/** Flags raised by the last successful fast-path call. */
export let fastFlags = 0;

/** Error of the product a·b rounded to `p` (exact when no over/underflow in the split). */
function productError(a: number, b: number, p: number): number {
  const ca = SPLITTER * a, ah = ca - (ca - a), al = a - ah;
  const cb = SPLITTER * b, bh = cb - (cb - b), bl = b - bh;
  return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

function safe(v: number): boolean {
  const m = Math.abs(v);
  return m > SAFE_LO && m < SAFE_HI;
}

/**
 * ADD/SUB/MUL/DIV/SQRT of one double lane under round-to-nearest in host arithmetic: the
 * result, with `fastFlags` set (PE only), or null when the operands or result need the exact
 * path (NaN, infinity, denormal, zero divisor, over/underflow).
 */
export function fastLaneD(op: number, a: number, b: number): number | null {
  const ab = Math.abs(b);
  if (!(ab < Infinity) || (ab < MIN_NORMAL_D && ab !== 0)) return null;
  let r: number, exact: boolean;
  if (op === OP_SQRT) {
    if (b < 0 || (b !== 0 && !safe(b))) return null;
    r = Math.sqrt(b);
    exact = b === 0 || (r * r === b && productError(r, r, r * r) === 0);
  } else {
    const aa = Math.abs(a);
    if (!(aa < Infinity) || (aa < MIN_NORMAL_D && aa !== 0)) return null;
    switch (op) {
      case OP_ADD:
      case OP_SUB: {
        const bs = op === OP_SUB ? -b : b;
        r = a + bs;
        const bb = r - a;
        exact = (a - (r - bb)) + (bs - bb) === 0;
        break;
      }
      case OP_MUL:
        if (a === 0 || b === 0) {
          r = a * b;
          exact = true;
          break;
        }
        if (!safe(a) || !safe(b)) return null;
        r = a * b;
        if (!safe(r)) return null;
        exact = productError(a, b, r) === 0;
        break;
      case OP_DIV:
        if (b === 0) return null;
        r = a / b;
        if (a === 0) {
          exact = true;
          break;
        }
        if (!safe(a) || !safe(b) || !safe(r)) return null;
        exact = r * b === a && productError(r, b, r * b) === 0;
        break;
      default:
        return null;
    }
  }
  const ar = Math.abs(r);
  // Results near the normal threshold may be tiny after rounding: exact path.
  if (!(ar < Infinity) || (ar < 2 * MIN_NORMAL_D && ar !== 0)) return null;
  fastFlags = exact ? 0 : FL_PE;
  return r;
}

/**
 * The single-precision counterpart of `fastLaneD`: computes in doubles and rounds once more,
 * which is correctly rounded for + - * / sqrt because 53 >= 2·24 + 2 (Figueroa 1995).
 */
export function fastLaneS(op: number, a: number, b: number): number | null {
  const ab = Math.abs(b);
  if (!(ab < Infinity) || (ab < MIN_NORMAL_S && ab !== 0)) return null;
  let d: number, r: number, exact: boolean;
  if (op === OP_SQRT) {
    if (b < 0) return null;
    d = Math.sqrt(b);
    r = Math.fround(d);
    exact = r * r === b; // exact in doubles: 24-bit factors
  } else {
    const aa = Math.abs(a);
    if (!(aa < Infinity) || (aa < MIN_NORMAL_S && aa !== 0)) return null;
    switch (op) {
      case OP_ADD:
      case OP_SUB: {
        const bs = op === OP_SUB ? -b : b;
        d = a + bs;
        const bb = d - a;
        r = Math.fround(d);
        exact = (a - (d - bb)) + (bs - bb) === 0 && r === d;
        break;
      }
      case OP_MUL:
        d = a * b; // exact: 48-bit product
        r = Math.fround(d);
        exact = r === d;
        break;
      case OP_DIV:
        if (b === 0) return null;
        d = a / b;
        r = Math.fround(d);
        exact = r * b === a;
        break;
      default:
        return null;
    }
  }
  const ar = Math.abs(r);
  if (!(ar < Infinity) || (ar < 2 * MIN_NORMAL_S && ar !== 0)) return null;
  // A zero from nonzero operands is an underflow (product or quotient): exact path.
  if (r === 0 && (op === OP_MUL || op === OP_DIV) && a !== 0 && b !== 0) return null;
  fastFlags = exact ? 0 : FL_PE;
  return r;
}

/**
 * True when `v` is zero, normal or infinite (not NaN, not denormal): such operands raise no
 * DE and are untouched by DAZ, so compares, MIN/MAX and conversions can use host arithmetic.
 */
export function plainD(v: number): boolean {
  const m = Math.abs(v);
  return m === 0 || m >= MIN_NORMAL_D;
}

/** `plainD` for a single-precision lane value. */
export function plainS(v: number): boolean {
  const m = Math.abs(v);
  return m === 0 || m >= MIN_NORMAL_S;
}

/** A finite double rounded to an integer under rounding control `rc`. */
function roundNum(a: number, rc: number): number {
  switch (rc) {
    case 0: {
      // Math.round breaks ties upward; x86 breaks them to even. r - a is exact here.
      let r = Math.round(a);
      if (r - a === 0.5 && r % 2 !== 0) r -= 1;
      return r;
    }
    case 1:
      return Math.floor(a);
    case 2:
      return Math.ceil(a);
    default:
      return Math.trunc(a);
  }
}

/**
 * CVT(T)SD2SI-style conversion of a plain lane value `a` (see `plainD`/`plainS`) to a signed
 * integer of `bits` bits under rounding control `rc`: the integer as a double with `fastFlags`
 * (PE when inexact), or null for infinities and results out of range (the exact path raises IE).
 */
export function fastToInt(a: number, rc: number, bits: number): number | null {
  if (!(Math.abs(a) < Infinity)) return null;
  const q = roundNum(a, rc);
  const lim = bits === 32 ? 2147483648 : 9223372036854775808;
  if (q >= lim || q < -lim) return null;
  fastFlags = q === a ? 0 : FL_PE;
  return q;
}

/**
 * CVTSI2SD/CVTSI2SS of the integer in (`hi`:)`lo` (`wide`: 64-bit) under round-to-nearest:
 * the lane value with `fastFlags`, or null when the exact path must round (64-bit to single
 * beyond 2^53, where rounding through a double could round twice).
 */
export function fastFromInt(lo: number, hi: number, wide: boolean, single: boolean): number | null {
  if (!wide) {
    const v = lo | 0;
    const r = single ? Math.fround(v) : v;
    fastFlags = r === v ? 0 : FL_PE;
    return r;
  }
  const h = (hi | 0) * 4294967296, l = lo >>> 0;
  const r = h + l; // one rounding, to nearest even: the correctly rounded double
  if (single) {
    if (!(Math.abs(r) < 9007199254740992)) return null;
    const f = Math.fround(r);
    fastFlags = f === r ? 0 : FL_PE;
    return f;
  }
  // |hi| >= 1 (other than -1) puts r within a factor of two of h: r - h is exact (Sterbenz).
  fastFlags = hi === 0 || hi === -1 || r - h === l ? 0 : FL_PE;
  return r;
}

/**
 * CVTSD2SS of a plain double under round-to-nearest: the single with `fastFlags`, or null
 * when the result overflows or may be tiny (the exact path applies OE/UE and FTZ).
 */
export function fastNarrow(a: number): number | null {
  const m = Math.abs(a);
  if (m !== 0 && !(m >= MIN_NORMAL_S && m < Infinity)) return null;
  const r = Math.fround(a);
  if (!(Math.abs(r) < Infinity)) return null;
  fastFlags = r === a ? 0 : FL_PE;
  return r;
}
