/**
 * The page-state map of guest RAM: per 4 KiB page, whether a vCPU holds code decoded from it and
 * whether it was written since a consumer last looked. It lives in a SharedArrayBuffer owned by
 * {@link GuestMemory} and travels with the RAM to every thread that gets a view of it (a
 * sandboxed device's Worker), so a write from anywhere reaches the interpreter's code caches and
 * the dirty log alike.
 *
 * Buffer layout (pages are indexed by RAM offset / 4096, the offset in `GuestMemory.bytes`):
 *
 * ```
 * [0, 64)            header, 16 Int32 cells (H_*)
 * [64, 64+P)         code plane: one byte per page, CODE | STALE
 * [64+P, 64+2P)      dirty plane: one byte per page, one bit per dirty-log consumer
 * ```
 *
 * (P is the page count plus one spare byte, rounded up to a multiple of 8.)
 *
 * How a write reaches the vCPU's code caches: the vCPU sets CODE on a page before it decodes from
 * it, and drops write-TLB entries for it, so its own stores to the page take the slow path and
 * invalidate at once. Any other writer (DMA through any `GuestMemory` view, on any thread) calls
 * {@link PageState.written} after storing the bytes: it marks the pages dirty, sets STALE on those
 * holding code and bumps `H_GEN`. The vCPU compares `H_GEN` with the value it last saw before
 * each block it dispatches, on each loop back to a block's start and after each port or MMIO
 * access (one plain Int32Array load; an `Atomics.load` there cost 20-30 % of the block
 * compiler's speed), and on a change drops the code of every STALE page (`Cpu.pageSync`). A
 * writer on another thread is picked up at the vCPU's next block boundary at the latest; one
 * during a synchronous device call (DMA from a port or MMIO handler) before the instruction
 * after the access.
 *
 * Dirty pages: every write sets all eight bits of its pages' dirty byte (a plain byte store, so
 * writers on different threads never race on a shared word); consumer `k` (say 0 for snapshots,
 * 1 for migration) reads and clears bit `k` with {@link PageState.takeDirty}. The interpreter's
 * own stores go through write-TLB entries, so it marks a page dirty when it installs one; taking
 * the dirty bits bumps `H_DIRTY_EPOCH` and `H_GEN`, the vCPU then drops its write-TLB entries
 * (the next store to each page marks it again) and acknowledges in `H_DIRTY_ACK`. KVM's own
 * dirty log (KVM_GET_DIRTY_LOG, a bitmap per memory slot) feeds the same bits through
 * {@link PageState.markDirtyBitmap}.
 */

/** Guest page size: the unit of code tracking and dirty logging. */
export const PAGE_SIZE = 4096;

/** Code plane: a vCPU holds instructions decoded (or blocks compiled) from this page. */
export const CODE = 1;
/** Code plane: the page was written by someone other than the vCPU while it held code. */
export const STALE = 2;
/** Dirty plane: the byte every write stores (all consumers' bits). */
export const DIRTY_ALL = 0xff;

/** Header cell: bumped for everything a vCPU must act on (stale code, dirty bits taken). */
export const H_GEN = 0;
/** Header cell: bumped each time dirty bits are taken. */
export const H_DIRTY_EPOCH = 1;
/** Header cell: the dirty epoch the interpreter vCPU has dropped its write-TLB entries for. */
export const H_DIRTY_ACK = 2;
/** Header cell: number of pages (to check a map handed to another view). */
export const H_PAGES = 3;

const HEADER_BYTES = 64;
const HEADER_CELLS = HEADER_BYTES / 4;

/** Bytes of a page-state buffer for `pages` pages. */
export function pageStateBytes(pages: number): number {
  return HEADER_BYTES + 2 * planeBytes(pages);
}

/** Bytes of one plane: a spare byte past the last page, rounded up to whole words. */
function planeBytes(pages: number): number {
  return Math.ceil((pages + 1) / 8) * 8;
}

/** Per-page state of one guest RAM, over a (shared) buffer every view of that RAM uses. */
export class PageState {
  /** The buffer: a SharedArrayBuffer wherever the runtime has one. */
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
  /** Pages tracked. */
  readonly pages: number;
  /** The header cells (H_*). */
  readonly header: Int32Array;
  /** One byte per page: CODE | STALE. */
  readonly code: Uint8Array;
  /** One byte per page: one bit per dirty-log consumer. */
  readonly dirty: Uint8Array;
  /** The code plane as words, for finding STALE pages four at a time. */
  readonly #codeWords: Uint32Array;

  /**
   * A map for `pages` pages: over `buffer` when given (another view's map: it must be one made
   * for the same number of pages), otherwise a new zeroed one.
   */
  constructor(pages: number, buffer?: SharedArrayBuffer | ArrayBuffer) {
    const bytes = pageStateBytes(pages);
    if (buffer === undefined) {
      buffer = typeof SharedArrayBuffer === "function"
        ? new SharedArrayBuffer(bytes)
        : new ArrayBuffer(bytes);
    }
    if (buffer.byteLength < bytes) {
      throw new RangeError(
        `A page-state map for ${pages} pages needs ${bytes} bytes, not ${buffer.byteLength}`,
      );
    }
    this.buffer = buffer;
    this.pages = pages;
    this.header = new Int32Array(buffer, 0, HEADER_CELLS);
    const planed = planeBytes(pages);
    this.code = new Uint8Array(buffer, HEADER_BYTES, planed);
    this.dirty = new Uint8Array(buffer, HEADER_BYTES + planed, planed);
    this.#codeWords = new Uint32Array(buffer, HEADER_BYTES, planed / 4);
    const had = Atomics.load(this.header, H_PAGES);
    if (had === 0) Atomics.store(this.header, H_PAGES, pages);
    else if (had !== pages) {
      throw new RangeError(`This page-state map tracks ${had} pages, not ${pages}`);
    }
  }

  /**
   * Records a write of `len` bytes at RAM offset `off` by anyone but the vCPU's own stores: marks
   * the pages dirty and, where a vCPU holds code from them, STALE, then bumps `H_GEN`. Call it
   * after the bytes are stored (the dirty store is a full fence before the code bytes are read,
   * so a vCPU that set CODE before decoding either sees the new bytes or gets the STALE bit).
   */
  written(off: number, len: number): void {
    if (len <= 0) return;
    const first = Math.floor(off / PAGE_SIZE);
    const last = Math.floor((off + len - 1) / PAGE_SIZE);
    const code = this.code, dirty = this.dirty;
    let stale = false;
    for (let p = first; p <= last; p++) {
      Atomics.store(dirty, p, DIRTY_ALL);
      if (Atomics.load(code, p) !== 0) {
        Atomics.or(code, p, STALE);
        stale = true;
      }
    }
    if (stale) Atomics.add(this.header, H_GEN, 1);
  }

  /** Marks page `page` dirty (a write the caller tracks itself, such as a vCPU's TLB fill). */
  markDirty(page: number): void {
    this.dirty[page] = DIRTY_ALL;
  }

  /**
   * Marks dirty every page whose bit is set in `bitmap` (bit i of byte j is page
   * `firstPage + 8j + i`, the layout of KVM_GET_DIRTY_LOG on a little-endian host).
   */
  markDirtyBitmap(bitmap: Uint8Array, firstPage = 0): void {
    for (let j = 0; j < bitmap.length; j++) {
      const b = bitmap[j]!;
      if (b === 0) continue;
      for (let i = 0; i < 8; i++) {
        const p = firstPage + 8 * j + i;
        if ((b & (1 << i)) !== 0 && p < this.pages) Atomics.store(this.dirty, p, DIRTY_ALL);
      }
    }
  }

  /** True when page `page` was written since consumer `consumer` (0..7) last took its bits. */
  isDirty(page: number, consumer = 0): boolean {
    return (this.dirty[page]! & (1 << consumer)) !== 0;
  }

  /**
   * The pages written since consumer `consumer` (0..7) last called this, in order; clears that
   * consumer's bits and tells vCPUs to re-arm their own tracking. While an interpreter vCPU runs,
   * its stores through write-TLB entries it installed before are marked only once it has seen
   * the returned epoch in `H_DIRTY_ACK` (it does so at its next block boundary); pause it first,
   * or wait for {@link PageState.dirtyAcked}, when every store must count.
   */
  takeDirty(consumer = 0): { pages: number[]; epoch: number } {
    const bit = 1 << consumer;
    const out: number[] = [];
    const dirty = this.dirty;
    const epoch = Atomics.add(this.header, H_DIRTY_EPOCH, 1) + 1;
    Atomics.add(this.header, H_GEN, 1);
    for (let p = 0; p < this.pages; p++) {
      if ((dirty[p]! & bit) !== 0) {
        Atomics.and(dirty, p, ~bit & 0xff);
        out.push(p);
      }
    }
    return { pages: out, epoch };
  }

  /** True once the interpreter vCPU has re-armed its dirty tracking for `epoch`. */
  dirtyAcked(epoch: number): boolean {
    return Atomics.load(this.header, H_DIRTY_ACK) - epoch >= 0;
  }

  /**
   * Calls `drop(page)` for every page marked STALE, after clearing its code byte (a write landing
   * meanwhile sets STALE again and bumps `H_GEN`, so nothing is lost). Returns how many.
   */
  takeStale(drop: (page: number) => void): number {
    const words = this.#codeWords;
    const code = this.code;
    let n = 0;
    for (let w = 0; w < words.length; w++) {
      if ((words[w]! & 0x0202_0202) === 0) continue;
      for (let p = w * 4; p < w * 4 + 4; p++) {
        if ((Atomics.load(code, p) & STALE) !== 0) {
          Atomics.store(code, p, 0);
          drop(p);
          n++;
        }
      }
    }
    return n;
  }
}
