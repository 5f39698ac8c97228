/**
 * The fixed virtual-address layout shared by the native oracle and the interpreter side of the
 * differential tester: code, input/output state blocks and data windows live at the same low
 * addresses in the host process and in guest memory, so memory operands, RIP-relative operands,
 * pushed return addresses and branch targets are identical on both sides.
 */

/** Start of the whole tester mapping (2 MiB aligned; far below a PIE Deno binary). */
export const REGION_BASE = 0x20_0000;
/** Size of the whole mapping. */
export const REGION_SIZE = 0x20_0000;

/** Entry, dispatch and exit routines of the native harness. */
export const HARNESS_CODE = 0x20_0000;
/** Host FXSAVE image saved at entry (16-byte aligned, 512 bytes). */
export const HOST_FX = 0x20_1000;
/** Host RSP saved at entry. */
export const HOST_RSP = 0x20_1200;
/** Host GS base saved at entry. */
export const HOST_GS = 0x20_1208;
/** Address of the next slot's code, advanced by the dispatcher. */
export const NEXT_SLOT = 0x20_1210;
/** Address one past the last slot of this batch. */
export const END_SLOT = 0x20_1218;
/** Top of the harness stack (only pushfq/popfq use it; the room below takes signal frames). */
export const HARNESS_STACK_TOP = 0x21_0000;

/** Per-slot input/output state blocks. */
export const STATE_BASE = 0x21_0000;
/** Bytes per state block. */
export const STATE_STRIDE = 0x800;
/** Per-slot code: harness load code, the instruction, landing pads, store code. */
export const CODE_BASE = 0x29_0000;
/** Bytes per code slot. */
export const CODE_STRIDE = 0x400;
/** Per-slot data windows. */
export const DATA_BASE = 0x2e_0000;
/**
 * Bytes per data slot. Only the top DATA_SIZE bytes are test data: the padding below takes a
 * signal frame the kernel might push while RSP points into the window, so one case cannot
 * corrupt the data of the case before it.
 */
export const DATA_STRIDE = 0x1000;
/** Bytes of test data per case (memory operands, stack, string buffers all stay inside). */
export const DATA_SIZE = 0x200;
/** Offset of the test data inside its data slot. */
export const DATA_OFFSET = DATA_STRIDE - DATA_SIZE;
/** Cases run per native call. */
export const SLOT_COUNT = 256;

/** Offsets inside a state block. */
export const ST_IN_GPR = 0x000,
  ST_IN_RFLAGS = 0x080,
  ST_IN_GSBASE = 0x088,
  ST_IN_FX = 0x100,
  ST_OUT_GPR = 0x300,
  ST_OUT_RFLAGS = 0x380,
  ST_OUT_RIP = 0x388,
  ST_OUT_FX = 0x400;

/** Offsets inside a code slot: the instruction starts at INSN_OFFSET, store code at STORE_OFFSET. */
export const INSN_OFFSET = 0xb0, STORE_OFFSET = 0x280;
/** Bytes of a landing pad (records its own address as the RIP after, then jumps to the store). */
export const PAD_SIZE = 16;
/** Longest x86 instruction. */
export const MAX_INSN_LENGTH = 15;

/** Address of the instruction under test in slot `i`. */
export function insnAddress(i: number): number {
  return CODE_BASE + i * CODE_STRIDE + INSN_OFFSET;
}

/** First byte of the test data window of slot `i`. */
export function dataAddress(i: number): number {
  return DATA_BASE + i * DATA_STRIDE + DATA_OFFSET;
}

/** Address of the state block of slot `i`. */
export function stateAddress(i: number): number {
  return STATE_BASE + i * STATE_STRIDE;
}

/** Highest address a taken branch's landing pad may start at, for the instruction in slot `i`. */
export function lastPadAddress(i: number): number {
  return CODE_BASE + i * CODE_STRIDE + STORE_OFFSET - 2 * PAD_SIZE;
}
