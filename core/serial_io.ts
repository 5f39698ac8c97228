/**
 * Where the guest's serial console goes (`--serial stdio|none|file:PATH`) and where its input
 * comes from. Output is buffered and flushed on newlines, when the buffer fills, from the vCPU
 * loop's service tick and at stop, so nothing is lost. Input arrives from the main thread through
 * a SharedArrayBuffer ring, because the vCPU thread may be blocked in KVM_RUN.
 */

import type { Console } from "../plugins/mod.ts";

/** A synchronous byte sink. */
export interface ByteSink {
  writeSync(bytes: Uint8Array): number;
}

const RING_SIZE = 4096;
// Int32 header: [0] = write index, [1] = read index (both free-running).
const HEADER_BYTES = 8;

/** A single-producer, single-consumer byte ring in a SharedArrayBuffer. */
export class InputRing {
  readonly buffer: SharedArrayBuffer;
  readonly #idx: Int32Array;
  readonly #data: Uint8Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(HEADER_BYTES + RING_SIZE)) {
    this.buffer = buffer;
    this.#idx = new Int32Array(buffer, 0, 2);
    this.#data = new Uint8Array(buffer, HEADER_BYTES, RING_SIZE);
  }

  /** Producer side: queues as many bytes as fit; returns how many did. */
  push(bytes: Uint8Array): number {
    const w = Atomics.load(this.#idx, 0), r = Atomics.load(this.#idx, 1);
    const n = Math.min(bytes.length, RING_SIZE - (w - r));
    for (let i = 0; i < n; i++) this.#data[(w + i) % RING_SIZE] = bytes[i]!;
    Atomics.store(this.#idx, 0, w + n);
    return n;
  }

  /** Consumer side: true when bytes are waiting. */
  hasData(): boolean {
    return Atomics.load(this.#idx, 0) !== Atomics.load(this.#idx, 1);
  }

  /** Consumer side: the next byte, or -1. */
  pop(): number {
    const r = Atomics.load(this.#idx, 1);
    if (Atomics.load(this.#idx, 0) === r) return -1;
    const b = this.#data[r % RING_SIZE]!;
    Atomics.store(this.#idx, 1, r + 1);
    return b;
  }
}

/** The machine's side of the serial console. */
export class SerialConsole implements Console {
  readonly #sink: ByteSink | null;
  readonly #buf = new Uint8Array(4096);
  #len = 0;
  #receiver: ((byte: number) => void) | null = null;
  readonly #input: InputRing | null;

  constructor(sink: ByteSink | null, input: InputRing | null) {
    this.#sink = sink;
    this.#input = input;
  }

  write(bytes: Uint8Array): void {
    if (this.#sink === null) return;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      this.#buf[this.#len++] = b;
      if (b === 10 || this.#len === this.#buf.length) this.flush();
    }
  }

  onInput(receiver: (byte: number) => void): void {
    this.#receiver = receiver;
  }

  /** Delivers waiting host input to the receiver; called from the vCPU loop's service tick. */
  pollInput(): void {
    if (this.#input === null || this.#receiver === null || !this.#input.hasData()) return;
    for (let b = this.#input.pop(); b >= 0; b = this.#input.pop()) this.#receiver(b);
  }

  /** Writes out buffered output. */
  flush(): void {
    if (this.#len === 0 || this.#sink === null) return;
    let off = 0;
    while (off < this.#len) off += this.#sink.writeSync(this.#buf.subarray(off, this.#len));
    this.#len = 0;
  }
}
