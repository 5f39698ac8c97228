/**
 * Decoding side of the .xz "BCJ x86" branch filter (filter ID 0x04): the encoder turned the
 * relative targets of E8 (CALL) / E9 (JMP) rel32 operands into absolute ones so they compress
 * better; this turns them back, in place. The filter is defined by the reference
 * implementation's behaviour, including its heuristic for bytes that only look like a CALL
 * (a 3-bit history of recent E8/E9 bytes within the last three positions).
 */

/** For each history mask: may the current E8/E9 be converted at all. */
const MASK_ALLOWED = [true, true, true, false, true, false, false, false] as const;
/** For each history mask: which operand byte (counted from the top) to test. */
const MASK_BYTE = [0, 1, 2, 2, 3, 3, 3, 3] as const;

function isSignByte(b: number): boolean {
  return b === 0x00 || b === 0xff;
}

/**
 * Undoes the x86 BCJ filter on `buf[start, end)`, where `buf[start]` was at uncompressed offset
 * `startOffset` (the filter's start-offset property, 0 unless the block header says otherwise).
 */
export function bcjX86Decode(buf: Uint8Array, start: number, end: number, startOffset = 0): void {
  const size = end - start;
  if (size < 5) return;
  const last = size - 4; // an instruction needs 5 bytes: opcode + rel32
  let mask = 0;
  let prev = -1;
  let i = 0;
  for (;;) {
    while (i < last && (buf[start + i]! & 0xfe) !== 0xe8) i++;
    if (i >= last) return;
    const gap = i - prev;
    if (gap > 3) {
      mask = 0;
    } else {
      mask = (mask << (gap - 1)) & 7;
      if (mask !== 0) {
        const probe = buf[start + i + 4 - MASK_BYTE[mask as 0]!]!;
        if (!MASK_ALLOWED[mask as 0] || isSignByte(probe)) {
          prev = i;
          mask = ((mask << 1) & 7) | 1;
          i++;
          continue;
        }
      }
    }
    prev = i;
    const p = start + i;
    if (!isSignByte(buf[p + 4]!)) {
      mask = ((mask << 1) & 7) | 1;
      i++;
      continue;
    }
    let src = ((buf[p + 4]! << 24) | (buf[p + 3]! << 16) | (buf[p + 2]! << 8) | buf[p + 1]!) >>> 0;
    let dest = 0;
    for (;;) {
      // The operand is relative to the end of the 5-byte instruction.
      dest = (src - (startOffset + i + 5)) >>> 0;
      if (mask === 0) break;
      const shift = MASK_BYTE[mask as 0]! * 8;
      if (!isSignByte((dest >>> (24 - shift)) & 0xff)) break;
      src = (dest ^ ((1 << (32 - shift)) - 1)) >>> 0;
    }
    buf[p + 4] = (dest >>> 24) & 1 ? 0xff : 0x00;
    buf[p + 3] = (dest >>> 16) & 0xff;
    buf[p + 2] = (dest >>> 8) & 0xff;
    buf[p + 1] = dest & 0xff;
    i += 5;
  }
}
