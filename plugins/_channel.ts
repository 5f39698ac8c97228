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
export const CTL_SPIN = 10; // polls the worker makes before blocking (the host's current choice)
export const CTL_FAULT = 11; // set by the worker when the plugin failed outside a call
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
export const REQ_PING = 10; // does nothing: fetches a fault the worker holds
// A virtio plugin's chain: A0 queue, A1 readable bytes, A2 writable room, A3/A4 the features'
// low/high 32 bits; the first readable bytes in the data area. The reply's A0 is the used
// length, the data area holds the written bytes from offset A1 (earlier ones came by
// CB_CHAIN_WRITE).
export const REQ_VIRTIO_CHAIN = 11;
export const REQ_VIRTIO_CONFIG = 12; // the reply's data area is the config space
export const REQ_VIRTIO_CONFIG_WRITE = 13; // A0 offset, A1 size, A2 value
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
export const CB_FILE_OPEN = 35;
export const CB_FILE_READ = 36;
export const CB_FILE_WRITE = 37;
export const CB_FILE_CLOSE = 38;
export const CB_CHAIN_READ = 39; // A0 offset, A1 length: readable bytes of the chain being handled
export const CB_CHAIN_WRITE = 40; // A0 offset, data: written bytes of the chain being handled

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
 * How many times a side polls the counter before blocking in `Atomics.wait`, when spinning. A
 * spin hand-off costs well under a microsecond when both threads have a core of their own; a
 * futex wake-up costs about ten. On a busy host (fewer free cores than runnable threads) spinning
 * keeps the other side off the core it needs and costs far more than it saves (measured here:
 * 11 µs per access blocking, 45-240 µs spinning, under a load of 2 on 2 cores). So the host
 * measures both ways now and then and uses the faster (see `SpinChooser`). Counted in polls, not
 * clock reads: a clock read costs more than a poll.
 */
export const DEFAULT_SPIN = 20_000;

/** How a channel waits: measure and choose, always spin first, or always block. */
export type SpinMode = "adaptive" | "always" | "never";

/** Accesses between two measurements of spinning against blocking (doubled, up to the maximum,
 * each time blocking wins again, since a spinning probe on a busy host is expensive). */
const RUN_CALLS = 8192;
const MAX_RUN_CALLS = 1 << 20;
/** Accesses timed in each way per measurement. */
const PROBE_CALLS = 128;

/**
 * Chooses, by measurement, whether the channel's two sides spin or block while they wait: every
 * `RUN_CALLS` accesses it times `PROBE_CALLS` of each and keeps the faster. `spin` is the polls
 * to use now (0 or the maximum); `timing` says whether the current call is being timed.
 */
export class SpinChooser {
  readonly #max: number;
  spin: number;
  timing = true;
  #phase = 0; // 0 run, 1 timing spin, 2 timing block
  #left = PROBE_CALLS;
  #spinTime = 0;
  #blockTime = 0;
  #runCalls = RUN_CALLS;

  /** `mode` "always" spins `max` polls every time, "never" always blocks. */
  constructor(max: number, mode: SpinMode = "adaptive") {
    const adaptive = mode === "adaptive" && max > 0;
    this.#max = max;
    this.spin = mode === "never" ? 0 : max;
    this.#phase = adaptive ? 1 : 0;
    this.timing = adaptive;
    this.#left = adaptive ? PROBE_CALLS : Infinity;
  }

  /** Records one access (with its duration in ms when timed); moves between phases. */
  record(ms: number): void {
    if (this.#phase === 1) this.#spinTime += ms;
    else if (this.#phase === 2) this.#blockTime += ms;
    if (--this.#left > 0) return;
    if (this.#phase === 0) {
      this.#phase = 1;
      this.#spinTime = 0;
      this.spin = this.#max;
      this.timing = true;
      this.#left = PROBE_CALLS;
    } else if (this.#phase === 1) {
      this.#phase = 2;
      this.#blockTime = 0;
      this.spin = 0;
      this.#left = PROBE_CALLS;
    } else {
      this.#phase = 0;
      const spinWins = this.#spinTime < this.#blockTime;
      this.spin = spinWins ? this.#max : 0;
      this.#runCalls = spinWins ? RUN_CALLS : Math.min(MAX_RUN_CALLS, this.#runCalls * 2);
      this.timing = false;
      this.#left = this.#runCalls;
    }
  }
}

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
 * Waits until `ctl[index]` differs from `seen`: polls `spins` times, then blocks. Returns false
 * when `deadline` (a `performance.now()` time in ms) passes first. Allocates nothing.
 */
export function waitChange(
  ctl: Int32Array,
  index: number,
  seen: number,
  spins: number,
  deadline: number,
): boolean {
  for (let i = 0; i < spins; i++) {
    if (Atomics.load(ctl, index) !== seen) return true;
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
