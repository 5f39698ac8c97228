/**
 * The virtual-address layout shared by the native oracle and the interpreter side of the
 * differential tester. One REGION_SIZE region holds the harness, the per-case state blocks, code
 * slots and data windows; it sits at a base the oracle picks when it maps the region (the first
 * free one of `candidateBases()`, so several oracles can live in one process). Code and data have
 * the same addresses in the host process and in guest memory, so memory operands, RIP-relative
 * operands, pushed return addresses and branch targets are identical on both sides. Everything
 * below is an offset from the base or a function of it.
 */

/** Size of the whole mapping. */
export const REGION_SIZE = 0x20_0000;
/** A region base is a multiple of this (one 2 MiB page on the guest side). */
export const REGION_ALIGN = 0x20_0000;
/** The base tried first (far below a PIE Deno binary; the guest's page tables sit below it). */
export const PREFERRED_BASE = 0x20_0000;
/**
 * The region ends at or below 2 GiB: the harness addresses it through sign-extended disp32
 * absolute operands and `mov rsp, imm32`, landing pads store RIP as a dword, and generated
 * cases use 32-bit addressing (0x67), moffs32, [disp32] and far pointers with 32-bit offsets.
 */
export const REGION_LIMIT = 0x8000_0000;

/** Entry, dispatch and exit routines of the native harness. */
export const HARNESS_OFFSET = 0x0_0000;
/** Host FXSAVE image saved at entry (16-byte aligned, 512 bytes). */
export const HOST_FX_OFFSET = 0x0_1000;
/** Host RSP saved at entry. */
export const HOST_RSP_OFFSET = 0x0_1200;
/** Host GS base saved at entry. */
export const HOST_GS_OFFSET = 0x0_1208;
/** Address of the next slot's code, advanced by the dispatcher. */
export const NEXT_SLOT_OFFSET = 0x0_1210;
/** Address one past the last slot of this batch. */
export const END_SLOT_OFFSET = 0x0_1218;
/** Top of the harness stack (only pushfq/popfq use it; the room below takes signal frames). */
export const HARNESS_STACK_TOP_OFFSET = 0x1_0000;

/** Per-slot input/output state blocks. */
export const STATE_BLOCKS_OFFSET = 0x1_0000;
/** Bytes per state block. */
export const STATE_STRIDE = 0x800;
/** Per-slot code: harness load code, the instruction, landing pads, store code. */
export const CODE_SLOTS_OFFSET = 0x9_0000;
/** Bytes per code slot. */
export const CODE_STRIDE = 0x400;
/** Per-slot data windows. */
export const DATA_SLOTS_OFFSET = 0xe_0000;
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

/** Throws a RangeError unless `base` is a usable region base (aligned, inside [2 MiB, 2 GiB)). */
export function checkBase(base: number): void {
  if (
    !Number.isSafeInteger(base) || base % REGION_ALIGN !== 0 || base < PREFERRED_BASE ||
    base + REGION_SIZE > REGION_LIMIT
  ) {
    throw new RangeError(
      `0x${base.toString(16)} is not a difftest region base: expected a multiple of ` +
        `0x${REGION_ALIGN.toString(16)} from 0x${PREFERRED_BASE.toString(16)} to ` +
        `0x${(REGION_LIMIT - REGION_SIZE).toString(16)}`,
    );
  }
}

/** Every usable region base, in the order the oracle tries them (PREFERRED_BASE first). */
export function candidateBases(): number[] {
  const out: number[] = [];
  for (let b = PREFERRED_BASE; b + REGION_SIZE <= REGION_LIMIT; b += REGION_ALIGN) out.push(b);
  return out;
}

// The functions below take the base of the region a case runs in (an oracle's `base`, a case's
// `base`). The default, PREFERRED_BASE, is only where a lone oracle usually lands: code paired
// with an oracle passes its base (the oracle and the interpreter side refuse mismatched cases).

/** Address of code slot `i` (its harness load code). */
export function codeSlotAddress(i: number, base = PREFERRED_BASE): number {
  return base + CODE_SLOTS_OFFSET + i * CODE_STRIDE;
}

/** Address of the instruction under test in slot `i`. */
export function insnAddress(i: number, base = PREFERRED_BASE): number {
  return codeSlotAddress(i, base) + INSN_OFFSET;
}

/** First byte of the test data window of slot `i`. */
export function dataAddress(i: number, base = PREFERRED_BASE): number {
  return base + DATA_SLOTS_OFFSET + i * DATA_STRIDE + DATA_OFFSET;
}

/** Address of the state block of slot `i`. */
export function stateAddress(i: number, base = PREFERRED_BASE): number {
  return base + STATE_BLOCKS_OFFSET + i * STATE_STRIDE;
}

/** Highest address a taken branch's landing pad may start at, for the instruction in slot `i`. */
export function lastPadAddress(i: number, base = PREFERRED_BASE): number {
  return codeSlotAddress(i, base) + STORE_OFFSET - 2 * PAD_SIZE;
}
