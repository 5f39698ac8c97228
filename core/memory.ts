/**
 * Guest-physical RAM. Backends hand in the bytes (an mmap'd buffer for KVM, a
 * SharedArrayBuffer for the interpreter); everything above sees the same typed views and
 * bounds-checked accessors, so no device DMA can reach outside guest RAM.
 */

import { GuestMemoryError } from "./errors.ts";
import { PAGE_SIZE, PageState } from "./page_state.ts";

/** Guest-physical addresses from here to 4 GiB are never RAM: MMIO devices live there. */
export const MMIO_GAP_START = 0xC000_0000;
/** Where RAM above the MMIO gap starts. */
export const HIGH_RAM_START = 0x1_0000_0000;

/** One contiguous range of guest-physical RAM. */
export interface MemoryRegion {
  /** First guest-physical address of the region. */
  readonly gpa: number;
  /** Size in bytes. */
  readonly size: number;
  /** Offset of the region in the backing buffer. */
  readonly offset: number;
}

/** Splits `size` bytes of RAM around the MMIO gap, as a PC does. */
export function layoutRegions(size: number): MemoryRegion[] {
  if (size <= MMIO_GAP_START) return [{ gpa: 0, size, offset: 0 }];
  return [
    { gpa: 0, size: MMIO_GAP_START, offset: 0 },
    { gpa: HIGH_RAM_START, size: size - MMIO_GAP_START, offset: MMIO_GAP_START },
  ];
}

/**
 * Guest RAM over one backing buffer. `bytes` and `view` cover the whole buffer; guest-physical
 * addresses are translated through the regions (identity below the MMIO gap). `pages` is the
 * page-state map (code and dirty bits, `page_state.ts`): every view of the same RAM, on any
 * thread, is made over the same map, and every write through the DMA accessors below records
 * itself there, which is how device writes reach the interpreter's code caches and the dirty log.
 */
export class GuestMemory {
  /** Total RAM in bytes. */
  readonly size: number;
  /** The regions, sorted by guest-physical address. */
  readonly regions: readonly MemoryRegion[];
  /** Every byte of RAM, in region order. */
  readonly bytes: Uint8Array;
  /** A DataView over the same bytes (little-endian accessors). */
  readonly view: DataView;
  /** The buffer the backend allocated (shared with Workers where it is a SharedArrayBuffer). */
  readonly buffer: ArrayBufferLike;
  /**
   * Per-page code and dirty state, in a SharedArrayBuffer (`pages.buffer`) that goes wherever
   * `buffer` goes: hand both to `new GuestMemory(buffer, size, pageState)` on another thread.
   */
  readonly pages: PageState;

  /**
   * RAM over `buffer`. `pageState` is the buffer of another view's `pages` over the same RAM;
   * without it the memory gets a new, clean map.
   */
  constructor(
    buffer: ArrayBufferLike,
    size: number = buffer.byteLength,
    pageState?: SharedArrayBuffer | ArrayBuffer,
  ) {
    if (size > buffer.byteLength) {
      throw new RangeError(
        `Guest memory of ${size} bytes does not fit its ${buffer.byteLength}-byte buffer`,
      );
    }
    this.buffer = buffer;
    this.size = size;
    this.regions = layoutRegions(size);
    this.bytes = new Uint8Array(buffer, 0, size);
    this.view = new DataView(buffer, 0, size);
    this.pages = new PageState(Math.ceil(size / PAGE_SIZE), pageState);
  }

  /** Allocates zeroed RAM in a SharedArrayBuffer (the interpreter's and the tests' memory). */
  static allocate(size: number): GuestMemory {
    let buffer: SharedArrayBuffer;
    try {
      buffer = new SharedArrayBuffer(size);
    } catch (err) {
      throw new GuestMemoryError(
        `Cannot allocate ${size} bytes of guest memory on this host: ${(err as Error).message}. ` +
          `Use a smaller --mem.`,
      );
    }
    return new GuestMemory(buffer, size);
  }

  /**
   * Offset in `bytes` of guest-physical `gpa` when `[gpa, gpa+len)` lies in one RAM region,
   * otherwise -1. The hot-path translation: no allocation, no throw.
   */
  offsetOf(gpa: number, len = 1): number {
    const r0 = this.regions[0]!;
    if (gpa >= 0 && gpa + len <= r0.size) return gpa;
    const r1 = this.regions[1];
    if (r1 && gpa >= r1.gpa && gpa + len <= r1.gpa + r1.size) return gpa - r1.gpa + r1.offset;
    return -1;
  }

  /** True when `[gpa, gpa+len)` is RAM. */
  isRam(gpa: number, len = 1): boolean {
    return this.offsetOf(gpa, len) >= 0;
  }

  #check(gpa: number, len: number, what: string): number {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || len < 0) {
      throw new GuestMemoryError(
        `Guest ${what} at ${hex(gpa)} of ${len} bytes is not a valid range`,
      );
    }
    const off = this.offsetOf(gpa, len);
    if (off < 0) {
      throw new GuestMemoryError(
        `Guest ${what} of ${len} bytes at ${hex(gpa)} is outside guest RAM (${this.describe()})`,
      );
    }
    return off;
  }

  /** A copy of `len` bytes at `gpa`; throws GuestMemoryError outside RAM. */
  read(gpa: number, len: number): Uint8Array {
    const off = this.#check(gpa, len, "read");
    return this.bytes.slice(off, off + len);
  }

  /** Copies `data` to `gpa`; throws GuestMemoryError outside RAM. */
  write(gpa: number, data: Uint8Array): void {
    const off = this.#check(gpa, data.length, "write");
    this.bytes.set(data, off);
    this.pages.written(off, data.length);
  }

  /** Fills `len` bytes at `gpa` with `value`. */
  fill(gpa: number, len: number, value = 0): void {
    const off = this.#check(gpa, len, "write");
    this.bytes.fill(value, off, off + len);
    this.pages.written(off, len);
  }

  /** Reads a little-endian 8/16/32-bit value. */
  readU8(gpa: number): number {
    return this.view.getUint8(this.#check(gpa, 1, "read"));
  }
  /** Reads a little-endian 16-bit value. */
  readU16(gpa: number): number {
    return this.view.getUint16(this.#check(gpa, 2, "read"), true);
  }
  /** Reads a little-endian 32-bit value. */
  readU32(gpa: number): number {
    return this.view.getUint32(this.#check(gpa, 4, "read"), true);
  }
  /** Reads a little-endian 64-bit value. */
  readU64(gpa: number): bigint {
    return this.view.getBigUint64(this.#check(gpa, 8, "read"), true);
  }
  /** Writes an 8-bit value. */
  writeU8(gpa: number, v: number): void {
    const off = this.#check(gpa, 1, "write");
    this.view.setUint8(off, v);
    this.pages.written(off, 1);
  }
  /** Writes a little-endian 16-bit value. */
  writeU16(gpa: number, v: number): void {
    const off = this.#check(gpa, 2, "write");
    this.view.setUint16(off, v, true);
    this.pages.written(off, 2);
  }
  /** Writes a little-endian 32-bit value. */
  writeU32(gpa: number, v: number): void {
    const off = this.#check(gpa, 4, "write");
    this.view.setUint32(off, v >>> 0, true);
    this.pages.written(off, 4);
  }
  /** Writes a little-endian 64-bit value. */
  writeU64(gpa: number, v: bigint): void {
    const off = this.#check(gpa, 8, "write");
    this.view.setBigUint64(off, BigInt.asUintN(64, v), true);
    this.pages.written(off, 8);
  }

  /** Human-readable layout, for error messages. */
  describe(): string {
    return this.regions.map((r) => `[${hex(r.gpa)}, ${hex(r.gpa + r.size)})`).join(" and ");
  }
}

/** Formats a number or bigint as 0x-prefixed hex. */
export function hex(v: number | bigint, width = 0): string {
  if (typeof v === "number" && !Number.isFinite(v)) return String(v); // NaN, Infinity: as they are
  const s = (typeof v === "bigint" ? v : BigInt(Math.trunc(v))).toString(16);
  return "0x" + s.padStart(width, "0");
}
