/**
 * Exact binary floating point for the interpreter's SSE and x87 paths: finite values are held as
 * an integer significand times a power of two (BigInt), operations are computed exactly (or with
 * a sticky bit) and rounded once to a target format with IEEE 754 rounding, tininess detected
 * after rounding (x86 behaviour, Intel SDM Vol. 1, 4.9.1.5), and the x86 exception flags.
 */

/** Exception flag bits, as in MXCSR bits 0-5 and the x87 FSW bits 0-5. */
export const FL_IE = 1, FL_DE = 2, FL_ZE = 4, FL_OE = 8, FL_UE = 16, FL_PE = 32;

/** Rounding control values (MXCSR.RC, FCW.RC). */
export const RC_NEAREST = 0, RC_DOWN = 1, RC_UP = 2, RC_ZERO = 3;

/** A binary format: `p` significand bits (with the integer bit), normal exponent range. */
export interface Fmt {
  readonly p: number;
  readonly emin: number;
  readonly emax: number;
}

/** IEEE single. */
export const F32: Fmt = { p: 24, emin: -126, emax: 127 };
/** IEEE double. */
export const F64: Fmt = { p: 53, emin: -1022, emax: 1023 };
/** x87 double extended. */
export const F80: Fmt = { p: 64, emin: -16382, emax: 16383 };

/** Bit length of a positive BigInt. */
export function bitLen(m: bigint): number {
  let n = 0;
  while (m >= 1n << 64n) {
    m >>= 64n;
    n += 64;
  }
  while (m >= 1n << 16n) {
    m >>= 16n;
    n += 16;
  }
  while (m > 0n) {
    m >>= 1n;
    n++;
  }
  return n;
}

/** A rounded finite result: value (-1)^s · q · 2^e, or overflow to infinity (`inf`). */
export interface Rounded {
  s: number;
  q: bigint;
  e: number;
  inf: boolean;
  flags: number;
  /** Tiny after rounding (magnitude below 2^emin), exact or not. */
  tiny: boolean;
  /** The magnitude was rounded up (the x87 sets C1 then). */
  up: boolean;
}

function roundAt(
  s: number,
  m: bigint,
  e: number,
  lsb: number,
  rc: number,
): [bigint, boolean, boolean] {
  const sh = lsb - e;
  if (sh <= 0) return [m << BigInt(-sh), false, false];
  const bsh = BigInt(sh);
  let q = m >> bsh;
  const rem = m - (q << bsh);
  if (rem === 0n) return [q, false, false];
  const half = 1n << (bsh - 1n);
  let inc = false;
  if (rc === RC_NEAREST) inc = rem > half || (rem === half && (q & 1n) === 1n);
  else if (rc === RC_DOWN) inc = s === 1;
  else if (rc === RC_UP) inc = s === 0;
  if (inc) q += 1n;
  return [q, true, inc];
}

/**
 * Rounds the exact value (-1)^s · m · 2^e (m > 0) to `f` with precision `p` (defaults to
 * f.p; the x87 precision control narrows it while keeping the extended exponent range).
 */
export function round(s: number, m: bigint, e: number, f: Fmt, rc: number, p = f.p): Rounded {
  const E = e + bitLen(m) - 1;
  const lsb = Math.max(E, f.emin) - (p - 1);
  const r0 = roundAt(s, m, e, lsb, rc);
  let q = r0[0];
  const inexact = r0[1], up = r0[2];
  let flags = inexact ? FL_PE : 0;
  let tiny = false;
  if (E < f.emin) {
    // Tininess after rounding: round to p bits with an unbounded exponent.
    const [qu] = roundAt(s, m, e, E - (p - 1), rc);
    tiny = !(E === f.emin - 1 && bitLen(qu) > p);
    if (tiny && inexact) flags |= FL_UE;
  }
  let le = lsb;
  if (q !== 0n && bitLen(q) > p) {
    q >>= 1n;
    le++;
  }
  if (q !== 0n && le + bitLen(q) - 1 > f.emax) {
    flags |= FL_OE | FL_PE;
    const toInf = rc === RC_NEAREST || (rc === RC_UP && s === 0) || (rc === RC_DOWN && s === 1);
    if (toInf) return { s, q: 0n, e: 0, inf: true, flags, tiny, up: true };
    const q = (1n << BigInt(p)) - 1n;
    return { s, q, e: f.emax - (p - 1), inf: false, flags, tiny, up: false };
  }
  return { s, q, e: le, inf: false, flags, tiny, up };
}

/** Rounds (-1)^s · m · 2^e to an integer: [magnitude, inexact, rounded up]. */
export function roundToInt(
  s: number,
  m: bigint,
  e: number,
  rc: number,
): [bigint, boolean, boolean] {
  return roundAt(s, m, e, 0, rc);
}

/** Integer square root (floor). */
export function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << BigInt((bitLen(n) + 1) >> 1);
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

/** An exact finite nonzero operand: (-1)^s · m · 2^e. */
export interface Exact {
  s: number;
  m: bigint;
  e: number;
}

/** Exact sum; null when it is exactly zero. */
export function addExact(a: Exact, b: Exact): Exact | null {
  const e = Math.min(a.e, b.e);
  const ma = a.m << BigInt(a.e - e), mb = b.m << BigInt(b.e - e);
  const v = (a.s ? -ma : ma) + (b.s ? -mb : mb);
  if (v === 0n) return null;
  return v < 0n ? { s: 1, m: -v, e } : { s: 0, m: v, e };
}

/** Exact product. */
export function mulExact(a: Exact, b: Exact): Exact {
  return { s: a.s ^ b.s, m: a.m * b.m, e: a.e + b.e };
}

/** Quotient with `p + 3` or more significant bits and a sticky low bit (rounds correctly). */
export function divSticky(a: Exact, b: Exact, p: number): Exact {
  const sh = Math.max(0, p + 3 + bitLen(b.m) - bitLen(a.m));
  const n = a.m << BigInt(sh);
  let q = n / b.m;
  let e = a.e - b.e - sh;
  if (q * b.m !== n) {
    q = (q << 1n) | 1n;
    e--;
  }
  return { s: a.s ^ b.s, m: q, e };
}

/** Square root of a positive value with a sticky low bit. */
export function sqrtSticky(a: Exact, p: number): Exact {
  let sh = Math.max(0, 2 * p + 6 - bitLen(a.m));
  if ((a.e - sh) & 1) sh++;
  const n = a.m << BigInt(sh);
  let r = isqrt(n);
  let e = (a.e - sh) / 2;
  if (r * r !== n) {
    r = (r << 1n) | 1n;
    e--;
  }
  return { s: 0, m: r, e };
}
