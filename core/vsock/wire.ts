/**
 * The messages between a virtio-vsock device (on the vCPU's thread) and its host side (the
 * VMM's main thread, which owns the unix sockets): what crosses the two {@link FrameRing}s of
 * a `--vsock`. Each message is one frame: a kind byte, the connection's id (u32 LE), a number
 * (u32 LE: a port or a byte count) and, for data, the bytes.
 *
 * Connection ids: the host side numbers the connections it opens (a host client's `CONNECT`)
 * from {@link HOST_ID_BASE} up, which is also the host port the guest sees and `OK <port>`
 * reports, as Firecracker does; the device numbers the guest's connections below it.
 *
 * @module
 */

import { type FrameRing, MAX_FRAME } from "../net/frame_ring.ts";

/** The first id (and host port) of a host-initiated connection (Firecracker's 1 << 30). */
export const HOST_ID_BASE = 0x4000_0000;
/** Bytes the host side may send on a connection before the guest took them (`credit`). */
export const VSOCK_HOST_WINDOW = 256 * 1024;
/** The most data bytes one message carries (a frame holds the 9-byte head too). */
export const MAX_DATA = MAX_FRAME - 16;

/** Device -> host side. */
export type ToHost =
  /** The guest connects to host port `port` (`<uds>_<port>`). */
  | { kind: "connect"; id: number; port: number }
  /** The guest accepted host connection `id` (answer `OK <id>`). */
  | { kind: "accepted"; id: number }
  /** Bytes the guest sent on `id`. */
  | { kind: "data"; id: number; bytes: Uint8Array }
  /** The host side may send `count` more bytes on `id` (the guest got them). */
  | { kind: "credit"; id: number; count: number }
  /** The guest sends no more on `id` (a half close): shut the socket's write side. */
  | { kind: "shutdown"; id: number }
  /** `id` is over (reset, refused, or closed by the guest): close its socket. */
  | { kind: "close"; id: number };

/** Host side -> device. */
export type ToDevice =
  /** A host client asked for guest port `port` (`CONNECT <port>`) as connection `id`. */
  | { kind: "open"; id: number; port: number }
  /** The guest's connection `id` reached a listener at `<uds>_<port>`. */
  | { kind: "connected"; id: number }
  /** Bytes a host client sent on `id`. */
  | { kind: "data"; id: number; bytes: Uint8Array }
  /** The host wrote `count` more of the guest's bytes of `id` to its socket. */
  | { kind: "written"; id: number; count: number }
  /** The host client sends no more on `id` (end of its stream). */
  | { kind: "shutdown"; id: number }
  /** `id` is over on the host (refused, reset, gone): reset it in the guest. */
  | { kind: "close"; id: number };

const KINDS = [
  "connect",
  "accepted",
  "data",
  "credit",
  "shutdown",
  "close",
  "open",
  "connected",
  "written",
] as const;

/** Encodes `m` as one frame. */
export function encodeMessage(m: ToHost | ToDevice): Uint8Array {
  const bytes = m.kind === "data" ? m.bytes : new Uint8Array(0);
  if (bytes.length > MAX_DATA) {
    throw new RangeError(`a vsock message carries at most ${MAX_DATA} bytes`);
  }
  const out = new Uint8Array(9 + bytes.length);
  const dv = new DataView(out.buffer);
  out[0] = KINDS.indexOf(m.kind);
  dv.setUint32(1, m.id >>> 0, true);
  const n = "port" in m ? m.port : "count" in m ? m.count : 0;
  dv.setUint32(5, n >>> 0, true);
  out.set(bytes, 9);
  return out;
}

/** Decodes a frame `encodeMessage` made, or null for anything else. */
export function decodeMessage(f: Uint8Array): ToHost | ToDevice | null {
  if (f.length < 9) return null;
  const kind = KINDS[f[0]!];
  if (kind === undefined) return null;
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  const id = dv.getUint32(1, true), n = dv.getUint32(5, true);
  switch (kind) {
    case "connect":
    case "open":
      return { kind, id, port: n };
    case "credit":
    case "written":
      return { kind, id, count: n };
    case "data":
      return { kind, id, bytes: f.slice(9) };
    default:
      return { kind, id };
  }
}

/**
 * One direction's queue over a FrameRing: messages that do not fit wait in order in a local
 * outbox until the consumer makes room (`flush`, called again later).
 */
export class MessageQueue {
  readonly ring: FrameRing;
  readonly #outbox: Uint8Array[] = [];

  constructor(ring: FrameRing) {
    this.ring = ring;
  }

  /** Queues `m` (after anything waiting, so the order holds); false when it had to wait. */
  send(m: ToHost | ToDevice): boolean {
    this.#outbox.push(encodeMessage(m));
    return this.flush();
  }

  /** Moves waiting messages into the ring; true when none is left waiting. */
  flush(): boolean {
    while (this.#outbox.length > 0) {
      if (!this.ring.push(this.#outbox[0]!)) return false;
      this.#outbox.shift();
    }
    return true;
  }

  /** Messages still waiting for room. */
  get waiting(): number {
    return this.#outbox.length;
  }
}
