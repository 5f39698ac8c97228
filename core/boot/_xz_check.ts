/**
 * Integrity checks of the .xz format: CRC32 (IEEE 802.3, reflected polynomial 0xEDB88320) and
 * CRC64 (ECMA-182, reflected polynomial 0xC96C5795D7870F42, table driven over typed arrays).
 * CRC64 keeps its 64-bit state in two 32-bit halves so no BigInt is touched per byte.
 */

import { crc32 as crc32Any } from "../snapshot/crc32.ts";

const CRC64_POLY_HI = 0xC96C_5795;
const CRC64_POLY_LO = 0xD787_0F42;

const CRC64_TABLE_LO = new Uint32Array(256);
const CRC64_TABLE_HI = new Uint32Array(256);
for (let i = 0; i < 256; i++) {
  let lo = i, hi = 0;
  for (let k = 0; k < 8; k++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | (hi << 31)) >>> 0;
    hi = hi >>> 1;
    if (carry) {
      lo = (lo ^ CRC64_POLY_LO) >>> 0;
      hi = (hi ^ CRC64_POLY_HI) >>> 0;
    }
  }
  CRC64_TABLE_LO[i] = lo;
  CRC64_TABLE_HI[i] = hi;
}

/**
 * CRC32 of `data[start, end)`, continuing from `crc` (0 for a fresh checksum): the snapshot
 * layer's (node:zlib's native CRC-32 where there is one; the kernel's 63 MiB took 0.15 s
 * through a table here).
 */
export function crc32(data: Uint8Array, start = 0, end = data.length, crc = 0): number {
  return crc32Any(data.subarray(start, end), crc);
}

/** CRC64 of `data[start, end)` as [low 32 bits, high 32 bits]. */
export function crc64(data: Uint8Array, start = 0, end = data.length): [number, number] {
  let lo = 0xffff_ffff, hi = 0xffff_ffff;
  const tl = CRC64_TABLE_LO, th = CRC64_TABLE_HI;
  for (let i = start; i < end; i++) {
    const idx = (lo ^ data[i]!) & 0xff;
    lo = (tl[idx]! ^ ((lo >>> 8) | (hi << 24))) >>> 0;
    hi = (th[idx]! ^ (hi >>> 8)) >>> 0;
  }
  return [~lo >>> 0, ~hi >>> 0];
}
