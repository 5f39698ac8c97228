/**
 * A .xz decompressor (file format 1.0.x: streams, blocks, index, footer) for what Linux
 * kernels are packed with: LZMA2 preceded by the optional BCJ x86 or Delta filters, with
 * None/CRC32/CRC64/SHA-256 checks. Whole-buffer and synchronous: the loader calls it once on a
 * bzImage's payload and gets the ELF vmlinux back.
 *
 * Written from the .xz file format specification (tukaani.org/xz/xz-file-format.txt).
 */

import { createHash } from "node:crypto";
import { crc32, crc64 } from "./_xz_check.ts";
import { bcjX86Decode } from "./_xz_bcj.ts";
import { Lzma2Decoder, XzDataError } from "./_xz_lzma2.ts";

export { XzDataError };

/** Stream header magic: FD '7' 'z' 'X' 'Z' 00. */
export const XZ_MAGIC: readonly number[] = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
/** Stream footer magic: 'Y' 'Z'. */
const FOOTER_MAGIC = [0x59, 0x5a] as const;
const STREAM_HEADER_SIZE = 12;
const STREAM_FOOTER_SIZE = 12;

/** Check types (stream flags, low 4 bits) and the size of their value in bytes. */
export const XZ_CHECK_NONE = 0x0, XZ_CHECK_CRC32 = 0x1, XZ_CHECK_CRC64 = 0x4;
/** Check types (stream flags, low 4 bits). */
export const XZ_CHECK_SHA256 = 0xa;

/** Filter IDs (file format spec section 5.3). */
const FILTER_DELTA = 0x03, FILTER_X86 = 0x04, FILTER_LZMA2 = 0x21;

/** Options of `xzDecompress`. */
export interface XzOptions {
  /** Expected decompressed size (e.g. the size a kernel appends to its payload): preallocates. */
  sizeHint?: number;
  /** Verify each block's check value (default true). */
  verifyChecks?: boolean;
}

/** True when `data` starts with the .xz stream header magic. */
export function isXz(data: Uint8Array): boolean {
  return XZ_MAGIC.every((b, i) => data[i] === b);
}

function checkSize(type: number): number {
  if (type === 0) return 0;
  // Spec 3.4: types 1-3 take 4 bytes, 4-6 take 8, 7-9 take 16, 10-12 take 32, 13-15 take 64.
  return 4 << Math.floor((type - 1) / 3);
}

function u32le(d: Uint8Array, p: number): number {
  return (d[p]! | (d[p + 1]! << 8) | (d[p + 2]! << 16) | (d[p + 3]! << 24)) >>> 0;
}

/** Reads a multibyte integer (7 bits per byte, at most 9 bytes); returns [value, next pos]. */
function readVli(d: Uint8Array, p: number, end: number): [number, number] {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    if (p >= end) throw new XzDataError("a variable-length integer is truncated");
    const b = d[p++]!;
    value += (b & 0x7f) * 2 ** (7 * i);
    if ((b & 0x80) === 0) {
      if (b === 0 && i > 0) throw new XzDataError("a variable-length integer is not minimal");
      if (!Number.isSafeInteger(value)) throw new XzDataError("a size does not fit 2^53");
      return [value, p];
    }
  }
  throw new XzDataError("a variable-length integer is longer than 9 bytes");
}

interface Filter {
  id: number;
  props: Uint8Array;
}

interface IndexRecord {
  unpadded: number;
  uncompressed: number;
}

/**
 * The total uncompressed size from the indexes, walking the streams backwards from the end;
 * undefined when the data does not end in an intact footer (then the output grows instead).
 */
function totalFromIndexes(d: Uint8Array): number | undefined {
  let end = d.length;
  let total = 0;
  while (end > 0) {
    while (end >= 4 && u32le(d, end - 4) === 0) end -= 4; // stream padding
    if (end === 0) break;
    if (end < STREAM_HEADER_SIZE + STREAM_FOOTER_SIZE) return undefined;
    const f = end - STREAM_FOOTER_SIZE;
    if (d[f + 10] !== FOOTER_MAGIC[0] || d[f + 11] !== FOOTER_MAGIC[1]) return undefined;
    const indexSize = (u32le(d, f + 4) + 1) * 4;
    const indexStart = f - indexSize;
    if (indexStart < STREAM_HEADER_SIZE || d[indexStart] !== 0) return undefined;
    try {
      let [count, p] = readVli(d, indexStart + 1, f);
      let blocks = 0;
      for (; count > 0; count--) {
        let unpadded: number, uncompressed: number;
        [unpadded, p] = readVli(d, p, f);
        [uncompressed, p] = readVli(d, p, f);
        total += uncompressed;
        blocks += (unpadded + 3) & ~3;
      }
      end = indexStart - blocks - STREAM_HEADER_SIZE;
      if (end < 0) return undefined;
    } catch {
      return undefined;
    }
  }
  return total;
}

/**
 * Decompresses a complete .xz file (one or more streams, with stream padding). Throws
 * XzDataError naming what is wrong for data that is not .xz, is truncated, uses an unsupported
 * filter, or fails its check.
 *
 * @example
 * ```ts ignore
 * import { xzDecompress } from "./xz.ts";
 * const vmlinux = xzDecompress(await Deno.readFile("vmlinux.xz"));
 * ```
 */
export function xzDecompress(data: Uint8Array, opts: XzOptions = {}): Uint8Array {
  const verify = opts.verifyChecks ?? true;
  const size = opts.sizeHint ?? totalFromIndexes(data) ?? data.length * 4;
  const dec = new Lzma2Decoder(new Uint8Array(size), 0);
  let p = 0;
  let streams = 0;
  while (p < data.length) {
    if (streams > 0) {
      // Stream padding: multiples of four zero bytes between and after streams.
      while (p + 4 <= data.length && u32le(data, p) === 0) p += 4;
      if (p === data.length) break;
    }
    p = decodeStream(data, p, dec, verify);
    streams++;
  }
  return dec.out.length === dec.pos ? dec.out : dec.out.subarray(0, dec.pos);
}

function decodeStream(d: Uint8Array, start: number, dec: Lzma2Decoder, verify: boolean): number {
  if (d.length - start < STREAM_HEADER_SIZE) {
    throw new XzDataError(`data at offset ${start} is too short for an .xz stream header`);
  }
  if (!XZ_MAGIC.every((b, i) => d[start + i] === b)) {
    throw new XzDataError(`no .xz stream header magic at offset ${start}`);
  }
  if (crc32(d, start + 6, start + 8) !== u32le(d, start + 8)) {
    throw new XzDataError("the .xz stream header's CRC32 does not match");
  }
  if (d[start + 6] !== 0 || (d[start + 7]! & 0xf0) !== 0) {
    throw new XzDataError("the .xz stream flags use an unsupported (newer) version");
  }
  const checkType = d[start + 7]! & 0x0f;
  const checkLen = checkSize(checkType);
  let p = start + STREAM_HEADER_SIZE;
  const records: IndexRecord[] = [];

  for (;;) {
    if (p >= d.length) throw new XzDataError("the .xz stream is truncated before its index");
    if (d[p] === 0) break; // index indicator
    const blockStart = p;
    const headerSize = (d[p]! + 1) * 4;
    if (p + headerSize > d.length) throw new XzDataError("an .xz block header is truncated");
    if (crc32(d, p, p + headerSize - 4) !== u32le(d, p + headerSize - 4)) {
      throw new XzDataError("an .xz block header's CRC32 does not match");
    }
    const hEnd = p + headerSize - 4;
    const flags = d[p + 1]!;
    if (flags & 0x3c) throw new XzDataError("an .xz block header has reserved flags set");
    let q = p + 2;
    let compressedSize = -1, uncompressedSize = -1;
    if (flags & 0x40) [compressedSize, q] = readVli(d, q, hEnd);
    if (flags & 0x80) [uncompressedSize, q] = readVli(d, q, hEnd);
    const filters: Filter[] = [];
    for (let i = 0; i <= (flags & 3); i++) {
      let id: number, propSize: number;
      [id, q] = readVli(d, q, hEnd);
      [propSize, q] = readVli(d, q, hEnd);
      if (q + propSize > hEnd) throw new XzDataError("an .xz filter's properties are truncated");
      filters.push({ id, props: d.subarray(q, q + propSize) });
      q += propSize;
    }
    validateFilters(filters);
    p += headerSize;

    const outStart = dec.pos;
    const dataStart = p;
    p = dec.decode(d, p, d.length);
    if (compressedSize >= 0 && p - dataStart !== compressedSize) {
      throw new XzDataError("an .xz block's compressed size does not match its header");
    }
    if (uncompressedSize >= 0 && dec.pos - outStart !== uncompressedSize) {
      throw new XzDataError("an .xz block's uncompressed size does not match its header");
    }
    for (let i = filters.length - 2; i >= 0; i--) {
      applyFilter(filters[i]!, dec.out, outStart, dec.pos);
    }
    const unpadded = p - blockStart + checkLen;
    while ((p - blockStart) & 3) {
      if (d[p++] !== 0) throw new XzDataError("an .xz block's padding is not zero");
    }
    if (p + checkLen > d.length) throw new XzDataError("an .xz block's check is truncated");
    if (verify) verifyCheck(checkType, d.subarray(p, p + checkLen), dec.out, outStart, dec.pos);
    p += checkLen;
    records.push({ unpadded, uncompressed: dec.pos - outStart });
  }

  // Index.
  const indexStart = p;
  let count: number;
  [count, p] = readVli(d, p + 1, d.length);
  if (count !== records.length) {
    throw new XzDataError(
      `the .xz index lists ${count} blocks but the stream has ${records.length}`,
    );
  }
  for (const r of records) {
    let unpadded: number, uncompressed: number;
    [unpadded, p] = readVli(d, p, d.length);
    [uncompressed, p] = readVli(d, p, d.length);
    if (unpadded !== r.unpadded || uncompressed !== r.uncompressed) {
      throw new XzDataError("the .xz index does not match the blocks");
    }
  }
  while ((p - indexStart) & 3) {
    if (d[p++] !== 0) throw new XzDataError("the .xz index padding is not zero");
  }
  if (p + 4 > d.length || crc32(d, indexStart, p) !== u32le(d, p)) {
    throw new XzDataError("the .xz index's CRC32 does not match");
  }
  p += 4;

  // Footer.
  if (p + STREAM_FOOTER_SIZE > d.length) {
    throw new XzDataError("the .xz stream footer is truncated");
  }
  if (d[p + 10] !== FOOTER_MAGIC[0] || d[p + 11] !== FOOTER_MAGIC[1]) {
    throw new XzDataError("the .xz stream footer magic is missing");
  }
  if (crc32(d, p + 4, p + 10) !== u32le(d, p)) {
    throw new XzDataError("the .xz stream footer's CRC32 does not match");
  }
  if ((u32le(d, p + 4) + 1) * 4 !== p - indexStart) {
    throw new XzDataError("the .xz stream footer's index size does not match the index");
  }
  if (d[p + 8] !== d[start + 6] || d[p + 9] !== d[start + 7]) {
    throw new XzDataError("the .xz stream footer's flags differ from its header's");
  }
  return p + STREAM_FOOTER_SIZE;
}

function validateFilters(filters: Filter[]): void {
  filters.forEach((f, i) => {
    const last = i === filters.length - 1;
    if (last !== (f.id === FILTER_LZMA2)) {
      throw new XzDataError("an .xz block's filter chain must end with LZMA2 (and use it once)");
    }
    if (f.id === FILTER_LZMA2) {
      if (f.props.length !== 1 || f.props[0]! > 40) {
        throw new XzDataError("an .xz block's LZMA2 dictionary size property is invalid");
      }
    } else if (f.id === FILTER_X86) {
      if (f.props.length !== 0 && f.props.length !== 4) {
        throw new XzDataError("an .xz block's x86 filter properties are invalid");
      }
    } else if (f.id === FILTER_DELTA) {
      if (f.props.length !== 1) {
        throw new XzDataError("an .xz block's delta properties are invalid");
      }
    } else {
      throw new XzDataError(
        `an .xz block uses filter 0x${f.id.toString(16)}, which this decoder does not support ` +
          `(only LZMA2, x86 BCJ and Delta); recompress with plain "xz" or "xz --x86"`,
      );
    }
  });
}

function applyFilter(f: Filter, out: Uint8Array, start: number, end: number): void {
  if (f.id === FILTER_X86) {
    bcjX86Decode(out, start, end, f.props.length === 4 ? u32le(f.props, 0) : 0);
  } else if (f.id === FILTER_DELTA) {
    const dist = f.props[0]! + 1;
    for (let i = start + dist; i < end; i++) out[i] = (out[i]! + out[i - dist]!) & 0xff;
  }
}

function verifyCheck(
  type: number,
  stored: Uint8Array,
  out: Uint8Array,
  start: number,
  end: number,
): void {
  let ok = true;
  let name = "";
  if (type === XZ_CHECK_CRC32) {
    name = "CRC32";
    ok = crc32(out, start, end) === u32le(stored, 0);
  } else if (type === XZ_CHECK_CRC64) {
    name = "CRC64";
    const [lo, hi] = crc64(out, start, end);
    ok = lo === u32le(stored, 0) && hi === u32le(stored, 4);
  } else if (type === XZ_CHECK_SHA256) {
    name = "SHA-256";
    const digest = createHash("sha256").update(out.subarray(start, end)).digest();
    ok = digest.length === stored.length && digest.every((b, i) => b === stored[i]);
  }
  // Other check types are reserved by the spec; a decoder may skip them (spec 3.4).
  if (!ok) throw new XzDataError(`an .xz block's ${name} check does not match: data is corrupt`);
}
