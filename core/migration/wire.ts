/**
 * The migration stream: what a source and a destination VMM (and a primary and its standby)
 * say to each other over one connection. Little-endian throughout.
 *
 * The source opens with a 12-byte preamble: magic `DNVMIGRT` and the stream version (u32). Then
 * both sides send frames:
 *
 * | offset | size | field                                         |
 * | ------ | ---- | --------------------------------------------- |
 * | 0      | 1    | type (FRAME_*)                                |
 * | 1      | 4    | payload length N                              |
 * | 5      | N    | payload                                       |
 * | 5 + N  | 4    | CRC-32 of bytes [0, 5 + N): type, length, payload |
 *
 * A frame whose checksum fails ends the stream: the receiver says so and nothing it carried is
 * used. JSON payloads go through the snapshot codec (bigints, Maps, bytes survive). A PAGES
 * payload is a count `n` (u32), `n` page numbers (u32; bit 31 set: the page is all zeros and no
 * data follows), then 4096 bytes for each page without bit 31, in order.
 */

import { decodeJson, encodeJson } from "../snapshot/codec.ts";
import { crc32 } from "../snapshot/crc32.ts";
import { VmmError } from "../errors.ts";
import type { GuestMemory } from "../memory.ts";
import { PAGE_SIZE } from "../page_state.ts";
import type { MigrationConn } from "./url.ts";

/** A broken, refused or corrupted migration (each side says why). */
export class MigrationError extends VmmError {}

/** The stream's first 8 bytes. */
export const STREAM_MAGIC: Uint8Array = new TextEncoder().encode("DNVMIGRT");
/** The stream version this code speaks. */
export const STREAM_VERSION = 1;

/** Source -> destination: memory size and the machine's state (to build the same machine). */
export const FRAME_HELLO = 1;
/** Source -> destination: guest pages. */
export const FRAME_PAGES = 2;
/** Source -> destination: the final machine state; the VM is paused at the source. */
export const FRAME_STATE = 3;
/** Source -> destination: the source gives up (and runs the VM on); the payload says why. */
export const FRAME_CANCEL = 4;
/** Primary -> standby: a checkpoint's state, after its pages; the standby acknowledges it. */
export const FRAME_CHECKPOINT = 5;
/** Source -> destination: answer SYNC_ACK once everything before this frame is applied. */
export const FRAME_SYNC = 6;
/** Destination -> source: all frames up to the SYNC are applied. */
export const FRAME_SYNC_ACK = 0x16;
/** Destination -> source: the machine is built, send RAM. */
export const FRAME_READY = 0x11;
/** Destination -> source: state verified and loaded; the destination runs the VM now. */
export const FRAME_DONE = 0x12;
/** Either way: a refusal, with a message. */
export const FRAME_ERROR = 0x13;
/** Standby -> primary: checkpoint `epoch` is complete and verified. */
export const FRAME_ACK = 0x14;
/** Standby -> primary: the standby runs the VM now (the primary must stop). */
export const FRAME_TAKEOVER = 0x15;

const FRAME_NAMES: Record<number, string> = {
  [FRAME_HELLO]: "HELLO",
  [FRAME_PAGES]: "PAGES",
  [FRAME_STATE]: "STATE",
  [FRAME_CANCEL]: "CANCEL",
  [FRAME_CHECKPOINT]: "CHECKPOINT",
  [FRAME_SYNC]: "SYNC",
  [FRAME_SYNC_ACK]: "SYNC_ACK",
  [FRAME_READY]: "READY",
  [FRAME_DONE]: "DONE",
  [FRAME_ERROR]: "ERROR",
  [FRAME_ACK]: "ACK",
  [FRAME_TAKEOVER]: "TAKEOVER",
};

/** The name of frame type `t`, for messages. */
export function frameName(t: number): string {
  return FRAME_NAMES[t] ?? `unknown (${t})`;
}

/** Frames larger than this are refused (a corrupted length must not allocate gigabytes). */
export const MAX_FRAME = 64 << 20;
/** Pages per PAGES frame. */
export const PAGES_PER_FRAME = 256;
const ZERO_FLAG = 0x8000_0000;

/** One frame as read. */
export interface Frame {
  type: number;
  payload: Uint8Array;
}

/** The 12-byte stream preamble. */
export function preamble(): Uint8Array {
  const out = new Uint8Array(12);
  out.set(STREAM_MAGIC);
  new DataView(out.buffer).setUint32(8, STREAM_VERSION, true);
  return out;
}

/** Frame bytes for `type` and `payload`. */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  const dv = new DataView(out.buffer);
  out[0] = type;
  dv.setUint32(1, payload.length, true);
  out.set(payload, 5);
  dv.setUint32(5 + payload.length, crc32(out.subarray(0, 5 + payload.length)), true);
  return out;
}

/** A JSON frame (the snapshot codec: bigints, Maps and bytes survive). */
export function jsonFrame(type: number, value: unknown): Uint8Array {
  return encodeFrame(type, new TextEncoder().encode(encodeJson(value)));
}

/** The value of a JSON frame. */
export function frameJson<T>(frame: Frame): T {
  try {
    return decodeJson(new TextDecoder("utf-8", { fatal: true }).decode(frame.payload)) as T;
  } catch (err) {
    throw new MigrationError(
      `the ${frameName(frame.type)} frame is not valid JSON: ${(err as Error).message}`,
    );
  }
}

/** True when RAM page `p` (whole or, for the last, partial) holds only zeros. */
function pageIsZero(words: Int32Array, bytes: Uint8Array, p: number): boolean {
  const w0 = p * (PAGE_SIZE >>> 2), w1 = Math.min(w0 + (PAGE_SIZE >>> 2), words.length);
  for (let i = w0; i < w1; i++) if (words[i] !== 0) return false;
  for (let i = w1 * 4; i < Math.min((p + 1) * PAGE_SIZE, bytes.length); i++) {
    if (bytes[i] !== 0) return false;
  }
  return true;
}

/** A PAGES frame for `pages` (page numbers of `memory`), and how many carried data. */
export function pagesFrame(
  memory: GuestMemory,
  pages: ArrayLike<number>,
): { frame: Uint8Array; dataPages: number } {
  const bytes = memory.bytes;
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  const n = pages.length;
  const zero = new Uint8Array(n);
  let dataPages = 0;
  for (let i = 0; i < n; i++) {
    zero[i] = pageIsZero(words, bytes, pages[i]!) ? 1 : 0;
    if (!zero[i]) dataPages++;
  }
  const payload = new Uint8Array(4 + 4 * n + dataPages * PAGE_SIZE);
  const dv = new DataView(payload.buffer);
  dv.setUint32(0, n, true);
  let at = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const p = pages[i]!;
    dv.setUint32(4 + 4 * i, zero[i] ? (p | ZERO_FLAG) >>> 0 : p, true);
    if (zero[i]) continue;
    const from = p * PAGE_SIZE, to = Math.min(from + PAGE_SIZE, bytes.length);
    payload.set(bytes.subarray(from, to), at);
    at += PAGE_SIZE;
  }
  return { frame: encodeFrame(FRAME_PAGES, payload), dataPages };
}

/** One page of a PAGES payload: its number and its data (null: zeros). */
export interface PageEntry {
  page: number;
  data: Uint8Array | null;
}

/**
 * The pages of a PAGES payload, checked against a RAM of `memSize` bytes: every page number
 * inside RAM and the payload exactly as long as its count says.
 */
export function decodePages(payload: Uint8Array, memSize: number): PageEntry[] {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload.length < 4) throw new MigrationError("a PAGES frame is shorter than its count");
  const n = dv.getUint32(0, true);
  if (4 + 4 * n > payload.length) {
    throw new MigrationError(`a PAGES frame lists ${n} pages but is ${payload.length} bytes`);
  }
  const limit = Math.ceil(memSize / PAGE_SIZE);
  const out: PageEntry[] = [];
  let at = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const raw = dv.getUint32(4 + 4 * i, true);
    const page = (raw & ~ZERO_FLAG) >>> 0;
    if (page >= limit) {
      throw new MigrationError(`a PAGES frame names page ${page}, outside the ${limit}-page RAM`);
    }
    if (raw & ZERO_FLAG) {
      out.push({ page, data: null });
      continue;
    }
    if (at + PAGE_SIZE > payload.length) {
      throw new MigrationError("a PAGES frame ends inside its page data (truncated)");
    }
    out.push({ page, data: payload.subarray(at, at + PAGE_SIZE) });
    at += PAGE_SIZE;
  }
  if (at !== payload.length) {
    throw new MigrationError(`a PAGES frame has ${payload.length - at} bytes after its pages`);
  }
  return out;
}

/**
 * Writes decoded pages into guest RAM, marking them written (code caches, dirty log). With
 * `written` (one byte per page, set here), a zero page never written before is skipped: RAM
 * that started zero already holds it (most of a first pass over an idle guest).
 */
export function applyPages(
  memory: GuestMemory,
  entries: readonly PageEntry[],
  written?: Uint8Array,
): void {
  const bytes = memory.bytes;
  for (const { page, data } of entries) {
    if (data === null && written !== undefined && written[page] === 0) continue;
    if (written !== undefined) written[page] = 1;
    const from = page * PAGE_SIZE, to = Math.min(from + PAGE_SIZE, bytes.length);
    if (data === null) bytes.fill(0, from, to);
    else bytes.set(data.subarray(0, to - from), from);
    memory.pages.written(from, to - from);
  }
}

/** `p`, or a MigrationError "`what` within `ms` ms" once `ms` have passed. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new MigrationError(`${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Writes all of `data` to `conn`. */
export async function writeAll(conn: MigrationConn, data: Uint8Array): Promise<void> {
  let put = 0;
  while (put < data.length) put += await conn.write(data.subarray(put));
}

/** Reads frames from a connection, checking length and checksum. */
export class FrameReader {
  #conn: MigrationConn;
  #buf = new Uint8Array(1 << 20);
  #start = 0;
  #end = 0;
  /** Bytes read so far. */
  bytes = 0;

  constructor(conn: MigrationConn) {
    this.#conn = conn;
  }

  /** Waits until `n` bytes are buffered; false at a clean end of stream before any. */
  async #fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#buf.length - this.#start < n) {
        const next = new Uint8Array(Math.max(this.#buf.length, n * 2));
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#end -= this.#start;
        this.#start = 0;
        this.#buf = next;
      }
      const got = await this.#conn.read(this.#buf.subarray(this.#end));
      if (got === null) {
        if (this.#end === this.#start) return false;
        throw new MigrationError("the connection closed in the middle of a frame");
      }
      this.#end += got;
      this.bytes += got;
    }
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Reads and checks the source's preamble. */
  async preamble(): Promise<void> {
    if (!(await this.#fill(12))) throw new MigrationError("the connection closed at once");
    const head = this.#take(12);
    for (let i = 0; i < 8; i++) {
      if (head[i] !== STREAM_MAGIC[i]) {
        throw new MigrationError("the peer is not a denovisor migration stream (bad magic)");
      }
    }
    const version = new DataView(head.buffer).getUint32(8, true);
    if (version !== STREAM_VERSION) {
      throw new MigrationError(
        `the peer speaks migration stream version ${version}, this denovisor ${STREAM_VERSION}`,
      );
    }
  }

  /** The next frame, or null at a clean end of stream (between frames). */
  async next(): Promise<Frame | null> {
    if (!(await this.#fill(5))) return null;
    const dv = new DataView(this.#buf.buffer, this.#start, 5);
    const type = dv.getUint8(0);
    const n = dv.getUint32(1, true);
    if (n > MAX_FRAME) {
      throw new MigrationError(
        `a ${frameName(type)} frame claims ${n} bytes, above the ${MAX_FRAME}-byte limit ` +
          `(the stream is corrupted)`,
      );
    }
    await this.#fill(5 + n + 4);
    const whole = this.#buf.subarray(this.#start, this.#start + 5 + n);
    const want = new DataView(this.#buf.buffer, this.#start + 5 + n, 4).getUint32(0, true);
    const got = crc32(whole);
    if (want !== got) {
      throw new MigrationError(
        `checksum mismatch in a ${frameName(type)} frame (stored CRC-32 ` +
          `${want.toString(16).padStart(8, "0")}, computed ${
            got.toString(16).padStart(8, "0")
          }): ` +
          `the stream is corrupted`,
      );
    }
    this.#start += 5;
    const payload = this.#take(n);
    this.#start += 4;
    return { type, payload };
  }
}
