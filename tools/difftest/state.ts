/**
 * The user-mode register and memory state the differential tester sets before an instruction
 * and reads back after it, in one shape for the native oracle and the interpreter.
 */

/** x87 state in FXSAVE terms (only what the tester sets and compares). */
export interface X87State {
  /** Control word. */
  fcw: number;
  /** Status word (TOP in bits 11-13). */
  fsw: number;
  /** Abridged tag word: bit i set when physical register i holds a value. */
  ftw: number;
  /** ST0..ST7 as 8 × 16 bytes (80-bit values, zero padded), FXSAVE layout. */
  st: Uint8Array;
}

/** Registers and the data window of one test case. */
export interface UserState {
  /** RAX..R15 in encoding order, as unsigned 64-bit values. */
  gpr: bigint[];
  /** RFLAGS (bit 1 always set). */
  rflags: number;
  /** RIP: the instruction's address before, the landing pad reached after. */
  rip: bigint;
  /** GS base (FS base is the host's TLS and never used by generated code). */
  gsBase: bigint;
  /** XMM0..XMM15 as 16 × 16 bytes. */
  xmm: Uint8Array;
  /** MXCSR. */
  mxcsr: number;
  /** x87 registers. */
  x87: X87State;
  /** The case's data window (memory operands, stack, string buffers). */
  data: Uint8Array;
}

/** RFLAGS bits. */
export const FLAG_CF = 1 << 0, FLAG_PF = 1 << 2, FLAG_AF = 1 << 4, FLAG_ZF = 1 << 6;
/** RFLAGS bits. */
export const FLAG_SF = 1 << 7, FLAG_TF = 1 << 8, FLAG_IF = 1 << 9, FLAG_DF = 1 << 10;
/** RFLAGS bits. */
export const FLAG_OF = 1 << 11, FLAG_AC = 1 << 18;
/** RFLAGS bit 1 reads as 1. */
export const FLAG_FIXED = 1 << 1;
/** The six arithmetic status flags. */
export const STATUS_FLAGS = FLAG_CF | FLAG_PF | FLAG_AF | FLAG_ZF | FLAG_SF | FLAG_OF;
/** Flags a generated case may set before the instruction (never TF or AC: they would trap). */
export const SETTABLE_FLAGS = STATUS_FLAGS | FLAG_DF;
/** Flags compared after the instruction (IF is always 1 in user mode on the host). */
export const COMPARED_FLAGS = SETTABLE_FLAGS | FLAG_TF | FLAG_AC | (1 << 14);

/** MXCSR with all exceptions masked, round to nearest: the power-on value. */
export const MXCSR_DEFAULT = 0x1f80;
/** MXCSR bits a case may set: flags, DAZ, masks, rounding, FTZ (never unmask: SIGFPE). */
export const MXCSR_SETTABLE = 0xffff;
/** MXCSR exception-mask bits, which generated cases keep set. */
export const MXCSR_MASKS = 0x1f80;

/** A copy of a state. */
export function cloneUserState(s: UserState): UserState {
  return {
    gpr: [...s.gpr],
    rflags: s.rflags,
    rip: s.rip,
    gsBase: s.gsBase,
    xmm: s.xmm.slice(),
    mxcsr: s.mxcsr,
    x87: { ...s.x87, st: s.x87.st.slice() },
    data: s.data.slice(),
  };
}

/** One generated instruction with its input state, as both sides run it. */
export interface TestCase {
  /** Instruction class (`alu`, `shift`, `sse_fp`, ...), for `--only` and the summary. */
  cls: string;
  /** Intel-syntax text of the instruction, as the generator meant it. */
  mnemonic: string;
  /** The encoded instruction. */
  bytes: Uint8Array;
  /** Layout slot the case was generated for (its code and data addresses depend on it). */
  slot: number;
  /**
   * Base of the region the case was generated for (an oracle's `base`): its code and data
   * addresses depend on it, so it runs only on an oracle mapped there.
   */
  base: number;
  /** State before; `rip` is the instruction's address. */
  state: UserState;
  /** Addresses a taken branch may land on (each gets a landing pad). */
  targets: number[];
  /** RFLAGS bits the manuals leave undefined after this instruction with these operands. */
  undefinedFlags: number;
  /** GPRs (bit i = register i) whose value the manuals leave undefined afterwards. */
  undefinedGprs: number;
  /**
   * A REP-prefixed string instruction: an implementation may stop after any iteration with RIP
   * still at the instruction (as hardware does for interrupts), so the interpreter side steps it
   * until RIP moves on.
   */
  rep?: boolean;
  /** x87 status-word bits (C0-C3) the manuals leave undefined after this instruction. */
  undefinedFsw?: number;
}
