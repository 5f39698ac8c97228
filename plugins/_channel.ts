/**
 * The synchronous channel between the VMM and a sandboxed device's Worker: one
 * SharedArrayBuffer, used in turns. The side whose turn it is writes a message (kind, integer
 * arguments, a float argument, bytes in the data area), bumps its sequence counter and notifies;
 * the other side spins briefly, then blocks in `Atomics.wait`, until the counter moves. Events the
 * device makes during a call (interrupts, log lines, power requests, timer arming, console
 * output) are appended to the events area and applied by the host whenever the turn comes back.
 */

/** Int32 cells of the control block. */
export const CTL_TO_WORKER = 0; // bumped by the host when a message for the worker is ready
export const CTL_TO_HOST = 1; // bumped by the worker when a message for the host is ready
export const CTL_KIND = 2; // message kind (REQ_*, ANS_*, REP_*, CB_*)
export const CTL_A0 = 3; // integer arguments
export const CTL_A1 = 4;
export const CTL_A2 = 5;
export const CTL_A3 = 6;
export const CTL_A4 = 7;
export const CTL_DATA_LEN = 8; // bytes used in the data area
export const CTL_EVENTS_LEN = 9; // bytes used in the events area
const CTL_CELLS = 16;

/** Float64 cells (after the Int32 block). */
export const F64_NOW = 8; // the host's clock.now() when the request was sent, in ns
export const F64_ARG = 9; // a float argument (DMA address, timer delay)

/** Byte layout of the buffer. */
export const EVENTS_OFFSET = 128;
/** Room for events queued during one call before the worker flushes them early. */
export const EVENTS_SIZE = 16 * 1024;
/** Where message bytes (DMA data, encoded state, error text) go. */
export const DATA_OFFSET = EVENTS_OFFSET + EVENTS_SIZE;
/** Largest message payload; bigger DMA transfers are split into chunks of this size. */
export const DATA_SIZE = 64 * 1024;
/** Total size of a channel buffer. */
export const CHANNEL_BYTES = DATA_OFFSET + DATA_SIZE;

// Requests, host to worker.
export const REQ_CREATE = 1;
export const REQ_READ = 2;
export const REQ_WRITE = 3;
export const REQ_RESET = 4;
export const REQ_SAVE = 5;
export const REQ_RESTORE = 6;
export const REQ_CLOSE = 7;
export const REQ_TIMER = 8;
export const REQ_INPUT = 9;
// Answers to a worker's callback, host to worker.
export const ANS_ACK = 20;
export const ANS_DATA = 21;
export const ANS_ERROR = 22;
// Replies and callbacks, worker to host.
export const REP_DONE = 30;
export const REP_ERROR = 31;
export const CB_FLUSH = 32;
export const CB_DMA_READ = 33;
export const CB_DMA_WRITE = 34;

/** Address spaces in REQ_READ / REQ_WRITE (CTL_A0). */
export const SPACE_PORT = 0;
export const SPACE_MMIO = 1;

// Events (first byte of each record in the events area).
export const EV_IRQ = 1; // u8 op, i32 line
export const EV_LOG = 2; // u8 level, u32 length, UTF-8 bytes
export const EV_POWER = 3; // u8 op, i32 status
export const EV_TIMER_ARM = 4; // i32 id, f64 delay
export const EV_TIMER_CANCEL = 5; // i32 id
export const EV_CONSOLE_WRITE = 6; // u32 length, bytes
export const EV_CONSOLE_SUBSCRIBE = 7;

export const IRQ_RAISE = 0;
export const IRQ_LOWER = 1;
export const IRQ_PULSE = 2;
export const LOG_INFO = 0;
export const LOG_WARN = 1;
export const LOG_DEBUG = 2;
export const POWER_EXIT = 0;
export const POWER_RESET = 1;
export const POWER_OFF = 2;

/**
 * How long a side spins on the counter before blocking in `Atomics.wait`. A futex wake-up costs
 * tens of microseconds on these hosts, a spin hand-off well under one; a vCPU's port accesses
 * come in bursts, so the worker keeps spinning a little after each reply.
 */
export const HOST_SPIN_NS = 200_000;
/** How long the worker spins for the next request after a reply. */
export const WORKER_SPIN_NS = 200_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Typed views over one channel buffer. */
export class Channel {
  readonly buffer: SharedArrayBuffer;
  readonly ctl: Int32Array;
  readonly f64: Float64Array;
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(CHANNEL_BYTES)) {
    if (buffer.byteLength < CHANNEL_BYTES) {
      throw new RangeError(`A sandbox channel needs ${CHANNEL_BYTES} bytes`);
    }
    this.buffer = buffer;
    this.ctl = new Int32Array(buffer, 0, CTL_CELLS);
    this.f64 = new Float64Array(buffer, 0, F64_ARG + 1);
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
  }

  /** Puts `data` in the data area (it must fit: callers chunk). */
  setData(data: Uint8Array): void {
    this.bytes.set(data, DATA_OFFSET);
    this.ctl[CTL_DATA_LEN] = data.length;
  }

  /** A copy of the data area's current message bytes. */
  data(): Uint8Array {
    return this.bytes.slice(DATA_OFFSET, DATA_OFFSET + this.ctl[CTL_DATA_LEN]!);
  }

  /** Puts text in the data area, cut to fit. */
  setText(text: string): void {
    const r = encoder.encodeInto(text, this.bytes.subarray(DATA_OFFSET, DATA_OFFSET + DATA_SIZE));
    this.ctl[CTL_DATA_LEN] = r.written;
  }

  /** The data area as text. */
  text(): string {
    return decoder.decode(this.bytes.subarray(DATA_OFFSET, DATA_OFFSET + this.ctl[CTL_DATA_LEN]!));
  }
}

/**
 * Waits until `ctl[index]` differs from `seen`: spins for `spinNs`, then blocks. Returns false
 * when `deadline` (a `performance.now()` time in ms) passes first. Allocates nothing.
 */
export function waitChange(
  ctl: Int32Array,
  index: number,
  seen: number,
  spinNs: number,
  deadline: number,
): boolean {
  if (Atomics.load(ctl, index) !== seen) return true;
  const spinUntil = performance.now() + spinNs / 1e6;
  for (let i = 1;; i++) {
    if (Atomics.load(ctl, index) !== seen) return true;
    // Reading the clock costs more than a load: look at it every 64 spins.
    if ((i & 63) === 0 && performance.now() >= spinUntil) break;
  }
  while (Atomics.load(ctl, index) === seen) {
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(ctl, index, seen, left === Infinity ? undefined : left);
  }
  return true;
}

/** Encodes a string as UTF-8 (shared so both sides use one encoder). */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes UTF-8 bytes. */
export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
