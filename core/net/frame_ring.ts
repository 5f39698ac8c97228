/**
 * A single-producer, single-consumer ring of Ethernet frames in a SharedArrayBuffer: how frames
 * cross between the VMM's main thread (which does the socket I/O) and the vCPU's thread (whose
 * event loop is blocked while the guest runs). Each frame is a 4-byte little-endian length and
 * its bytes, padded to 4; a frame that does not fit is refused (`push` returns false), which for
 * Ethernet is a dropped frame. The consumer may wait for frames with `waitAsync` (the producer
 * `Atomics.notify`s on every push).
 *
 * @module
 */

/** Largest frame carried (a 1500-byte MTU frame is 1514; jumbo frames up to 64 KiB). */
export const MAX_FRAME = 0x1_0000;
/** Default data bytes of a ring (about 170 full-size frames). */
export const FRAME_RING_BYTES = 256 * 1024;
// Int32 header: [0] write index, [1] read index (free-running byte counts, multiples of 4).
const HEADER_BYTES = 8;

/** A frame ring over `buffer` (a new one when absent). */
export class FrameRing {
  readonly buffer: SharedArrayBuffer;
  readonly #idx: Int32Array;
  readonly #data: Uint8Array;
  readonly #size: number;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(HEADER_BYTES + FRAME_RING_BYTES)) {
    this.buffer = buffer;
    this.#size = buffer.byteLength - HEADER_BYTES;
    // A power of 2, so the free-running 32-bit indices stay right when they wrap.
    if (this.#size < 4 || (this.#size & (this.#size - 1)) !== 0) {
      throw new RangeError(`a frame ring's data size must be a power of 2, not ${this.#size}`);
    }
    this.#idx = new Int32Array(buffer, 0, 2);
    this.#data = new Uint8Array(buffer, HEADER_BYTES, this.#size);
  }

  #copyIn(at: number, bytes: Uint8Array): void {
    const pos = at % this.#size;
    const first = Math.min(bytes.length, this.#size - pos);
    this.#data.set(bytes.subarray(0, first), pos);
    if (first < bytes.length) this.#data.set(bytes.subarray(first), 0);
  }

  #copyOut(at: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    const pos = at % this.#size;
    const first = Math.min(n, this.#size - pos);
    out.set(this.#data.subarray(pos, pos + first));
    if (first < n) out.set(this.#data.subarray(0, n - first), first);
    return out;
  }

  /** Producer: queues `frame`; false (nothing queued) when it is too big or the ring is full. */
  push(frame: Uint8Array): boolean {
    if (frame.length > MAX_FRAME) return false;
    const need = 4 + Math.ceil(frame.length / 4) * 4;
    const w = Atomics.load(this.#idx, 0), r = Atomics.load(this.#idx, 1);
    if (need > this.#size - ((w - r) | 0)) return false;
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, frame.length, true);
    this.#copyIn(w >>> 0, len);
    this.#copyIn((w + 4) >>> 0, frame);
    Atomics.store(this.#idx, 0, (w + need) | 0);
    Atomics.notify(this.#idx, 0);
    return true;
  }

  /** Consumer: true when a frame waits. */
  hasData(): boolean {
    return Atomics.load(this.#idx, 0) !== Atomics.load(this.#idx, 1);
  }

  /** Consumer: the next frame, or null. */
  pop(): Uint8Array | null {
    const r = Atomics.load(this.#idx, 1);
    if (Atomics.load(this.#idx, 0) === r) return null;
    const len = new DataView(this.#copyOut(r >>> 0, 4).buffer).getUint32(0, true);
    const frame = this.#copyOut((r + 4) >>> 0, len);
    Atomics.store(this.#idx, 1, (r + 4 + Math.ceil(len / 4) * 4) | 0);
    return frame;
  }

  /** Consumer: resolves once a frame waits (at once when one does), or after `timeoutMs`. */
  async waitAsync(timeoutMs = Infinity): Promise<void> {
    const w = Atomics.load(this.#idx, 0);
    if (w !== Atomics.load(this.#idx, 1)) return;
    const res = Atomics.waitAsync(this.#idx, 0, w, timeoutMs);
    if (res.async) await res.value;
  }

  /** Wakes a consumer waiting in `waitAsync` (to let it see that it should stop). */
  wake(): void {
    Atomics.notify(this.#idx, 0);
  }
}
