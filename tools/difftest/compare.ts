/**
 * Compares the state after one instruction on the host CPU with the interpreter's, including
 * what the manuals leave undefined (the interpreter models the host vendor's silicon there), and
 * formats a divergence as a reproducer a person can act on.
 */

import type { CpuVendor } from "../../core/cpu_model.ts";
import { flagNames as rflagsNames, GPR_NAMES } from "../../core/cpu_state.ts";
import { unverifiedFlags, unverifiedGprs } from "./flags.ts";
import { DATA_SIZE, dataAddress } from "./layout.ts";
import { COMPARED_FLAGS, type TestCase, type UserState } from "./state.ts";

/** One field that differs between the host CPU and the interpreter. */
export interface FieldDiff {
  /** Field name: `rax`, `rflags`, `xmm3`, `mxcsr`, `mem[0x2e0e10]`, `exception`, ... */
  field: string;
  /** The host CPU's value, formatted. */
  native: string;
  /** The interpreter's value, formatted. */
  interp: string;
  /**
   * The field is one the manuals leave undefined and whose model for the host's vendor is not
   * yet verified on silicon: a model gap to report, not a failure.
   */
  unverified?: boolean;
}

/** What the interpreter reported besides its state. */
export interface InterpOutcome {
  /** The state after `step()` (the state before when the instruction raised an exception). */
  state: UserState;
  /** Set when `step()` reported an exception instead of completing the instruction. */
  exception?: { vector: number; errorCode?: number };
}

/** Options for `compareStates`. */
export interface CompareOptions {
  /** Also compare x87 control/status/tag words and registers (default: only for x87 cases). */
  x87?: boolean;
  /** The host's vendor, whose model the interpreter follows (default "amd": all verified). */
  vendor?: CpuVendor;
}

const EXCEPTION_NAMES: Record<number, string> = {
  0: "#DE",
  1: "#DB",
  3: "#BP",
  4: "#OF",
  5: "#BR",
  6: "#UD",
  7: "#NM",
  8: "#DF",
  10: "#TS",
  11: "#NP",
  12: "#SS",
  13: "#GP",
  14: "#PF",
  16: "#MF",
  17: "#AC",
  18: "#MC",
  19: "#XM",
};

/** Names of the set bits of `flags` among the known RFLAGS bits, e.g. `CF ZF`. */
export function flagNames(flags: number): string {
  return rflagsNames(flags) || "-";
}

function h64(v: bigint): string {
  return "0x" + BigInt.asUintN(64, v).toString(16).padStart(16, "0");
}

function h16(v: number): string {
  return "0x" + v.toString(16).padStart(4, "0");
}

function hexBytes(b: Uint8Array, from = 0, to = b.length): string {
  let s = "";
  for (let i = from; i < to; i++) s += (i > from ? " " : "") + b[i]!.toString(16).padStart(2, "0");
  return s;
}

/** XMM register `i` as a 128-bit hex number (most significant byte first). */
function xmmHex(x: Uint8Array, i: number): string {
  let s = "";
  for (let k = 15; k >= 0; k--) s += x[16 * i + k]!.toString(16).padStart(2, "0");
  return "0x" + s;
}

/**
 * The fields that differ after `c` between the host CPU (`native`) and the interpreter. GPRs and
 * RFLAGS bits the manuals leave undefined are compared too; where the interpreter's model of
 * the vendor is not verified for them, a difference comes back marked `unverified`.
 */
export function compareStates(
  c: TestCase,
  native: UserState,
  interp: InterpOutcome,
  options: CompareOptions = {},
): FieldDiff[] {
  const diffs: FieldDiff[] = [];
  const got = interp.state;
  if (interp.exception) {
    const v = interp.exception.vector;
    diffs.push({
      field: "exception",
      native: "none",
      interp: `${EXCEPTION_NAMES[v] ?? "vector " + v}${
        interp.exception.errorCode !== undefined
          ? ` (error code ${interp.exception.errorCode})`
          : ""
      }`,
    });
    return diffs;
  }
  const vendor = options.vendor ?? "amd";
  const softGprs = unverifiedGprs(vendor, c);
  for (let r = 0; r < 16; r++) {
    const a = native.gpr[r]!, b = got.gpr[r]!;
    if (a === b) continue;
    const d: FieldDiff = { field: GPR_NAMES[r]!, native: h64(a), interp: h64(b) };
    if (softGprs & (1 << r)) d.unverified = true;
    diffs.push(d);
  }
  if (native.rip !== got.rip) {
    diffs.push({ field: "rip", native: h64(native.rip), interp: h64(got.rip) });
  }
  const soft = unverifiedFlags(vendor, c);
  for (const [mask, unverified] of [[COMPARED_FLAGS & ~soft, false], [soft, true]] as const) {
    const fa = native.rflags & mask, fb = got.rflags & mask;
    if (fa === fb) continue;
    diffs.push({
      field: unverified ? "rflags (unverified model)" : "rflags",
      native: `0x${native.rflags.toString(16)} [${flagNames(fa)}]`,
      interp: `0x${got.rflags.toString(16)} [${flagNames(fb)}] (differ: ${flagNames(fa ^ fb)})`,
      ...(unverified ? { unverified } : {}),
    });
  }
  for (let i = 0; i < 16; i++) {
    for (let k = 0; k < 16; k++) {
      if (native.xmm[16 * i + k] !== got.xmm[16 * i + k]) {
        diffs.push({ field: `xmm${i}`, native: xmmHex(native.xmm, i), interp: xmmHex(got.xmm, i) });
        break;
      }
    }
  }
  if (native.mxcsr !== got.mxcsr) {
    diffs.push({
      field: "mxcsr",
      native: `0x${native.mxcsr.toString(16)}`,
      interp: `0x${got.mxcsr.toString(16)}`,
    });
  }
  // Memory: one entry per run of differing bytes.
  const base = dataAddress(c.slot, c.base);
  for (let i = 0; i < DATA_SIZE; i++) {
    if (native.data[i] === got.data[i]) continue;
    let j = i;
    while (j < DATA_SIZE && native.data[j] !== got.data[j]) j++;
    diffs.push({
      field: `mem[0x${(base + i).toString(16)}..+${j - i}]`,
      native: hexBytes(native.data, i, j),
      interp: hexBytes(got.data, i, j),
    });
    i = j;
  }
  if (options.x87 ?? c.cls.startsWith("x87")) {
    if (native.x87.fcw !== got.x87.fcw) {
      diffs.push({ field: "fcw", native: h16(native.x87.fcw), interp: h16(got.x87.fcw) });
    }
    // C0-C3 the manuals leave undefined are compared; only unverified vendor rules are soft.
    const softFsw = vendor === "amd" ? 0 : c.undefinedFsw ?? 0;
    for (const [mask, unverified] of [[0xffff & ~softFsw, false], [softFsw, true]] as const) {
      if ((native.x87.fsw & mask) === (got.x87.fsw & mask)) continue;
      diffs.push({
        field: unverified ? "fsw (unverified model)" : "fsw",
        native: h16(native.x87.fsw),
        interp: `${h16(got.x87.fsw)} (differ: ${h16((native.x87.fsw ^ got.x87.fsw) & mask)})`,
        ...(unverified ? { unverified } : {}),
      });
    }
    if (native.x87.ftw !== got.x87.ftw) {
      diffs.push({ field: "ftw", native: h16(native.x87.ftw), interp: h16(got.x87.ftw) });
    }
    // Only registers tagged valid hold architectural values.
    const top = (native.x87.fsw >> 11) & 7;
    for (let i = 0; i < 8; i++) {
      if (!((native.x87.ftw >> ((top + i) & 7)) & 1)) continue;
      const a = hexBytes(native.x87.st, 16 * i, 16 * i + 10);
      const b = hexBytes(got.x87.st, 16 * i, 16 * i + 10);
      if (a !== b) diffs.push({ field: `st(${i})`, native: a, interp: b });
    }
  }
  return diffs;
}

function gprBlock(s: UserState, indent: string): string[] {
  const lines: string[] = [];
  for (let i = 0; i < 16; i += 4) {
    lines.push(
      indent +
        GPR_NAMES.slice(i, i + 4).map((n, j) => `${n.padStart(3)}=${h64(s.gpr[i + j]!)}`).join(" "),
    );
  }
  lines.push(
    `${indent}rip=${h64(s.rip)} rflags=0x${s.rflags.toString(16)} [${flagNames(s.rflags)}] ` +
      `mxcsr=0x${s.mxcsr.toString(16)}${s.gsBase ? ` gs.base=${h64(s.gsBase)}` : ""}`,
  );
  return lines;
}

function usesXmm(c: TestCase, diffs: readonly FieldDiff[]): boolean {
  return c.cls.startsWith("sse") || diffs.some((d) => d.field.startsWith("xmm"));
}

/** Everything needed to report one divergence. */
export interface DivergenceReport {
  /** Index of the case in the run (with the seed, enough to regenerate it). */
  index: number;
  /** The run's seed. */
  seed: number;
  /** The case, with its state before. */
  testCase: TestCase;
  /** State after, on the host CPU. */
  native: UserState;
  /** State after (or exception), in the interpreter. */
  interp: InterpOutcome;
  /** The differing fields. */
  diffs: readonly FieldDiff[];
}

/**
 * Formats a divergence: instruction bytes and text, state before, both states after, and the
 * differing fields.
 *
 * @example
 * ```ts ignore
 * console.log(formatReproducer(report));
 * ```
 */
export function formatReproducer(r: DivergenceReport): string {
  const c = r.testCase;
  const out: string[] = [];
  out.push(
    `DIVERGENCE in class ${c.cls}, case ${r.index} of seed ${r.seed}: ${c.mnemonic}`,
    `  bytes: ${hexBytes(c.bytes)}   (at 0x${c.state.rip.toString(16)}, ${c.bytes.length} bytes)`,
  );
  if (c.undefinedFlags) {
    out.push(`  flags the manuals leave undefined: ${flagNames(c.undefinedFlags)}`);
  }
  if (c.undefinedGprs) {
    out.push(
      `  registers the manuals leave undefined: ${
        GPR_NAMES.filter((_, i) => c.undefinedGprs & (1 << i)).join(" ")
      }`,
    );
  }
  if (c.targets.length) {
    out.push(`  branch landing pads: ${c.targets.map((t) => "0x" + t.toString(16)).join(" ")}`);
  }
  out.push("  differing fields:");
  for (const d of r.diffs) {
    out.push(`    ${d.field.padEnd(14)} native=${d.native}`);
    out.push(`    ${"".padEnd(14)} interp=${d.interp}`);
  }
  out.push("  before:", ...gprBlock(c.state, "    "));
  out.push("  after (native):", ...gprBlock(r.native, "    "));
  out.push(
    r.interp.exception ? "  after (interp, state at the exception):" : "  after (interp):",
    ...gprBlock(r.interp.state, "    "),
  );
  if (c.cls.startsWith("x87")) {
    const line = (name: string, s: UserState) =>
      `    ${name} fcw=${h16(s.x87.fcw)} fsw=${h16(s.x87.fsw)} ftw=${h16(s.x87.ftw)} ` +
      Array.from(
        { length: 8 },
        (_, i) => `st${i}=${hexBytes(s.x87.st, 16 * i, 16 * i + 10).replaceAll(" ", "")}`,
      )
        .join(" ");
    out.push("  x87 (st as stored little-endian bytes):");
    out.push(line("before", c.state), line("native", r.native), line("interp", r.interp.state));
  }
  if (usesXmm(c, r.diffs)) {
    out.push("  xmm before / native / interp:");
    for (let i = 0; i < 16; i++) {
      const a = xmmHex(c.state.xmm, i),
        b = xmmHex(r.native.xmm, i),
        d = xmmHex(r.interp.state.xmm, i);
      out.push(
        `    xmm${String(i).padEnd(2)} ${a}` + (b !== a || d !== a ? ` -> ${b} / ${d}` : ""),
      );
    }
  }
  // Data rows (16 bytes) that the instruction touched on either side.
  const base = dataAddress(c.slot, c.base);
  const rows: string[] = [];
  for (let row = 0; row < DATA_SIZE; row += 16) {
    const a = hexBytes(c.state.data, row, row + 16);
    const b = hexBytes(r.native.data, row, row + 16);
    const d = hexBytes(r.interp.state.data, row, row + 16);
    if (a === b && a === d) continue;
    rows.push(`    0x${(base + row).toString(16)} before: ${a}`);
    if (b !== a) rows.push(`    ${"".padEnd(8)} native: ${b}`);
    if (d !== b) rows.push(`    ${"".padEnd(8)} interp: ${d}`);
  }
  if (rows.length) out.push("  memory rows that changed:", ...rows);
  return out.join("\n");
}
