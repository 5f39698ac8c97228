/**
 * Which RFLAGS bits each instruction leaves undefined, per the Intel SDM (Vol. 2, each
 * instruction's "Flags Affected" section, and Vol. 1 Appendix A "EFLAGS Cross-Reference") and
 * the AMD APM (Vol. 3, each instruction's flag table, where "U" marks undefined), the union of
 * the two. Silicon computes these bits the same way every time, so the interpreter models each
 * vendor's rule (core/interp/alu.ts, exec.ts) and difftest compares them against the host
 * exactly, except where a vendor's rule is not yet verified on its silicon
 * (`unverifiedFlags`): those are reported as model gaps, not failures.
 */

import type { CpuVendor } from "../../core/cpu_model.ts";
import {
  FLAG_AF,
  FLAG_CF,
  FLAG_OF,
  FLAG_PF,
  FLAG_SF,
  FLAG_ZF,
  STATUS_FLAGS,
  type TestCase,
} from "./state.ts";

/**
 * Undefined flags by mnemonic, for instructions whose rule does not depend on the operands.
 * Mnemonics not listed leave no flag undefined (they define or preserve every flag).
 */
export const UNDEFINED_FLAGS: Readonly<Record<string, number>> = {
  // SDM AND/OR/XOR/TEST: "OF and CF flags cleared; SF, ZF, PF set by result; AF undefined".
  and: FLAG_AF,
  or: FLAG_AF,
  xor: FLAG_AF,
  test: FLAG_AF,
  // SDM MUL/IMUL: "SF, ZF, AF, PF flags are undefined" (CF and OF defined).
  mul: FLAG_SF | FLAG_ZF | FLAG_AF | FLAG_PF,
  imul: FLAG_SF | FLAG_ZF | FLAG_AF | FLAG_PF,
  // SDM DIV/IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
  div: STATUS_FLAGS,
  idiv: STATUS_FLAGS,
  // SDM BT/BTS/BTR/BTC: "OF, SF, AF, PF undefined", ZF unaffected; APM marks ZF "U" too.
  bt: FLAG_OF | FLAG_SF | FLAG_AF | FLAG_PF | FLAG_ZF,
  bts: FLAG_OF | FLAG_SF | FLAG_AF | FLAG_PF | FLAG_ZF,
  btr: FLAG_OF | FLAG_SF | FLAG_AF | FLAG_PF | FLAG_ZF,
  btc: FLAG_OF | FLAG_SF | FLAG_AF | FLAG_PF | FLAG_ZF,
  // SDM BSF/BSR: ZF defined; "CF, OF, SF, AF, and PF flags are undefined".
  bsf: FLAG_CF | FLAG_OF | FLAG_SF | FLAG_AF | FLAG_PF,
  bsr: FLAG_CF | FLAG_OF | FLAG_SF | FLAG_AF | FLAG_PF,
  // SDM TZCNT/LZCNT: CF and ZF defined; "OF, SF, PF and AF flags are undefined".
  tzcnt: FLAG_OF | FLAG_SF | FLAG_PF | FLAG_AF,
  lzcnt: FLAG_OF | FLAG_SF | FLAG_PF | FLAG_AF,
  // SDM ANDN/BLSI/BLSMSK/BLSR/BZHI/BEXTR: "AF and PF flags are undefined".
  andn: FLAG_AF | FLAG_PF,
  blsi: FLAG_AF | FLAG_PF,
  blsmsk: FLAG_AF | FLAG_PF,
  blsr: FLAG_AF | FLAG_PF,
  bzhi: FLAG_AF | FLAG_PF,
  bextr: FLAG_AF | FLAG_PF | FLAG_SF,
};

/** Undefined flags of a mnemonic whose rule does not depend on its operands. */
export function undefinedFlagsOf(mnemonic: string): number {
  return UNDEFINED_FLAGS[mnemonic] ?? 0;
}

/**
 * Undefined flags of a shift or rotate by `count` (the count operand before masking) on an
 * operand of `bits` bits.
 *
 * SDM SAL/SAR/SHL/SHR: "If the count is 0, the flags are not affected. ... The OF flag is
 * affected only for 1-bit shifts; otherwise, it is undefined. ... For a non-zero count, the AF
 * flag is undefined." CF "is undefined for SHL and SHR instructions where the count is greater
 * than or equal to the size (in bits) of the destination operand".
 * SDM RCL/RCR/ROL/ROR: "If the masked count is 0, the flags are not affected. If the masked
 * count is 1, then the OF flag is affected, otherwise (masked count is greater than 1) the OF
 * flag is undefined." SF, ZF, AF, PF are unaffected.
 * The count is masked to 5 bits (6 with REX.W) before any of this.
 */
export function shiftUndefinedFlags(mnemonic: string, count: number, bits: number): number {
  const masked = count & (bits === 64 ? 63 : 31);
  if (masked === 0) return 0;
  const of = masked === 1 ? 0 : FLAG_OF;
  switch (mnemonic) {
    case "rol":
    case "ror":
    case "rcl":
    case "rcr":
      return of;
    case "shl":
    case "shr":
      return of | FLAG_AF | (masked >= bits ? FLAG_CF : 0);
    case "sar":
      return of | FLAG_AF;
    default:
      throw new RangeError(`"${mnemonic}" is not a shift or rotate`);
  }
}

/**
 * Undefined flags of SHLD/SHRD by `count` on `bits`-bit operands. SDM SHLD/SHRD: "If the count
 * operand is 0, the flags are not affected. ... For shifts greater than 1 bit, the OF flag is
 * undefined. ... If the count is greater than the operand size, the flags are undefined."
 * (AF: APM marks it "U" for any non-zero count.)
 */
export function doubleShiftUndefinedFlags(count: number, bits: number): number {
  const masked = count & (bits === 64 ? 63 : 31);
  if (masked === 0) return 0;
  if (masked > bits) return STATUS_FLAGS;
  return FLAG_AF | (masked === 1 ? 0 : FLAG_OF);
}

/**
 * Undefined flags whose Intel model is checked against Intel silicon: SHL/SAL/SAR OF for counts
 * above 1 (the `branches` guest's hash from an Intel host's KVM, which folds OF after
 * `shl ecx, 31` and `sar rcx, 7`, is what the Intel model computes).
 */
const INTEL_VERIFIED: Readonly<Record<string, number>> = {
  shl: FLAG_OF,
  sal: FLAG_OF,
  sar: FLAG_OF,
};

/**
 * Undefined flags of case `c` whose model for `vendor` has not been checked against that
 * vendor's silicon. AMD's rules were all measured on an AMD EPYC (Zen) host; on Intel only
 * `INTEL_VERIFIED` was. difftest on such a host reports a difference in these bits as a model
 * gap (what the silicon did, to be modelled), not as a failure.
 */
export function unverifiedFlags(vendor: CpuVendor, c: TestCase): number {
  if (vendor === "amd") return 0;
  const name = c.mnemonic.split(" ")[0]!;
  return c.undefinedFlags & ~(INTEL_VERIFIED[name] ?? 0);
}

/** Undefined GPRs of case `c` (BSF/BSR with a zero source) not yet verified for `vendor`. */
export function unverifiedGprs(vendor: CpuVendor, c: TestCase): number {
  return vendor === "amd" ? 0 : c.undefinedGprs;
}
