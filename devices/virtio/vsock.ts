/**
 * virtio-vsock (virtio 1.2, section 5.10; device ID 19): stream sockets between the guest and
 * the host (CID 2), with the guest's CID in config space. Three queues: rx (0, packets for the
 * guest), tx (1, the guest's packets) and event (2, where a restore would announce a transport
 * reset). Every packet starts with the 44-byte little-endian `virtio_vsock_hdr` (src_cid u64,
 * dst_cid u64, src_port u32, dst_port u32, len u32, type u16, op u16, flags u32, buf_alloc u32,
 * fwd_cnt u32), then `len` bytes of data for OP_RW.
 *
 * Credit: each side tells the other, in every packet, how much receive buffer it has for the
 * connection (buf_alloc) and how many bytes it has taken out of it (fwd_cnt). The device never
 * sends the guest more than `peer buf_alloc - (bytes sent - peer fwd_cnt)`; what does not fit
 * waits in the connection's pending list (bounded: the host side may have at most
 * {@link VSOCK_HOST_WINDOW} bytes outstanding, which `credit` messages return as the guest
 * takes them). It advertises {@link VSOCK_BUF_ALLOC} and counts a byte forwarded only once the
 * host side wrote it to its socket (`written`), so a slow host reader slows the guest down
 * instead of filling memory; a guest that sends beyond its credit is reset.
 *
 * The host side ({@link VsockPort}, the VMM's main thread: `core/vsock/host.ts`) owns the unix
 * sockets; the device only sees the messages of `core/vsock/wire.ts`.
 *
 * Snapshots: the device saves its transport and CID; a restore (as Firecracker's) starts with no
 * connections and puts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in the guest's next event buffer, so
 * Linux resets its sockets (ECONNRESET) and re-reads the CID.
 *
 * Hostile input (a header cut short, a length past the buffer, a wrong CID or type, an unknown
 * op, a packet for no connection) gets a reset or is dropped; nothing the guest sends throws.
 *
 * @module
 */

import { API_VERSION, definePlugin, type Device, type DeviceHost } from "../../plugins/mod.ts";
import {
  INT_VRING,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_NEEDS_RESET,
  transportOptions,
  type VirtioDeviceModel,
  VirtioMmioTransport,
} from "./mmio.ts";
import { type Chain, type SplitQueue, VirtqueueError } from "./queue.ts";
import { FrameRing } from "../../core/net/frame_ring.ts";
import {
  decodeMessage,
  HOST_ID_BASE,
  MAX_DATA,
  MessageQueue,
  type ToDevice,
  type ToHost,
  VSOCK_HOST_WINDOW,
} from "../../core/vsock/wire.ts";

export { VSOCK_HOST_WINDOW };

/** Virtio device ID of a socket device. */
export const VIRTIO_ID_VSOCK = 19;
/** Bytes of `virtio_vsock_hdr`. */
export const VSOCK_HDR_SIZE = 44;
/** Queue indices. */
export const VSOCK_RXQ = 0, VSOCK_TXQ = 1, VSOCK_EVQ = 2;
/** Each queue's size. */
export const VSOCK_QUEUE_SIZE = 256;
/** The host's CID (VMADDR_CID_HOST). */
export const VSOCK_HOST_CID = 2;
/** The only socket type served. */
export const VSOCK_TYPE_STREAM = 1;
/** Packet ops (5.10.6). */
export const OP_INVALID = 0, OP_REQUEST = 1, OP_RESPONSE = 2, OP_RST = 3, OP_SHUTDOWN = 4;
export const OP_RW = 5, OP_CREDIT_UPDATE = 6, OP_CREDIT_REQUEST = 7;
/** SHUTDOWN flags: the sender will receive no more, send no more. */
export const SHUTDOWN_RCV = 1, SHUTDOWN_SEND = 2;
/** The event queue's transport-reset event id. */
export const EVENT_TRANSPORT_RESET = 0;
/** The receive buffer the device advertises for each connection (bytes the guest may send ahead). */
export const VSOCK_BUF_ALLOC = 256 * 1024;
/** Connections open at once (a guest or client opening more is reset). */
export const VSOCK_MAX_CONNS = 256;
/** The largest data a guest packet may carry (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
export const VSOCK_MAX_PKT = 64 * 1024;
/** Resets for packets of no connection, kept while the guest has no receive buffer. */
const MAX_STRAY_RESETS = 256;

/** The decoded `virtio_vsock_hdr`. CIDs above 2^53 read as inexact numbers, never as a match. */
export interface VsockHeader {
  srcCid: number;
  dstCid: number;
  srcPort: number;
  dstPort: number;
  len: number;
  type: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
}

/** Encodes a header. */
export function encodeHeader(h: VsockHeader): Uint8Array {
  const b = new Uint8Array(VSOCK_HDR_SIZE);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, BigInt(h.srcCid), true);
  dv.setBigUint64(8, BigInt(h.dstCid), true);
  dv.setUint32(16, h.srcPort >>> 0, true);
  dv.setUint32(20, h.dstPort >>> 0, true);
  dv.setUint32(24, h.len >>> 0, true);
  dv.setUint16(28, h.type, true);
  dv.setUint16(30, h.op, true);
  dv.setUint32(32, h.flags >>> 0, true);
  dv.setUint32(36, h.bufAlloc >>> 0, true);
  dv.setUint32(40, h.fwdCnt >>> 0, true);
  return b;
}

/** Decodes the first 44 bytes of `b` (the caller checked there are that many). */
export function decodeHeader(b: Uint8Array): VsockHeader {
  const dv = new DataView(b.buffer, b.byteOffset, VSOCK_HDR_SIZE);
  const u64 = (at: number) => dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 0x1_0000_0000;
  return {
    srcCid: u64(0),
    dstCid: u64(8),
    srcPort: dv.getUint32(16, true),
    dstPort: dv.getUint32(20, true),
    len: dv.getUint32(24, true),
    type: dv.getUint16(28, true),
    op: dv.getUint16(30, true),
    flags: dv.getUint32(32, true),
    bufAlloc: dv.getUint32(36, true),
    fwdCnt: dv.getUint32(40, true),
  };
}

/** Where a vsock device's connections go: the host side's messages (core/vsock/wire.ts). */
export interface VsockPort {
  /** A message for the host side. */
  send(m: ToHost): void;
  /** Messages from the host side go to `cb` (called on the vCPU's thread). */
  onReceive(cb: (m: ToDevice) => void): void;
  /** Delivers what arrived from another thread (the vCPU loop's service tick calls it). */
  poll?(): void;
}

/**
 * The vCPU thread's side of a `--vsock`'s two rings: messages for the host go into `tx` (in
 * order; what does not fit waits and is retried on the next poll), `poll` delivers `rx`'s.
 */
export function vsockRingPort(rings: { tx: SharedArrayBuffer; rx: SharedArrayBuffer }): VsockPort {
  const tx = new MessageQueue(new FrameRing(rings.tx)), rx = new FrameRing(rings.rx);
  let receiver: ((m: ToDevice) => void) | null = null;
  return {
    send: (m) => void tx.send(m),
    onReceive: (cb) => receiver = cb,
    poll() {
      tx.flush();
      if (receiver === null) return;
      // A bounded batch: a flood cannot keep the vCPU from running.
      for (let i = 0; i < 256; i++) {
        const f = rx.pop();
        if (f === null) break;
        const m = decodeMessage(f);
        if (m !== null) receiver(m as ToDevice);
      }
    },
  };
}

type ConnState =
  /** Host-initiated: REQUEST queued or sent, waiting for the guest's RESPONSE. */
  | "requesting"
  /** Guest-initiated: waiting for the host side to reach `<uds>_<port>`. */
  | "connecting"
  | "established";

/** One stream connection, keyed by its host and guest ports. */
interface Conn {
  id: number;
  hostPort: number;
  guestPort: number;
  state: ConnState;
  /** The guest's buffer and what it took out of it (from its last packet). */
  peerBufAlloc: number;
  peerFwdCnt: number;
  /** Data bytes sent to the guest. */
  txCnt: number;
  /** Data bytes received from the guest, and of those, written by the host side. */
  rxCnt: number;
  fwdCnt: number;
  /** The fwd_cnt the guest last heard. */
  fwdCntSent: number;
  /** Host bytes waiting for guest credit or receive buffers. */
  pending: Uint8Array[];
  pendingBytes: number;
  /** Bytes sent to the guest that the host side has not been credited for yet. */
  creditOwed: number;
  /** Control packets to send (ops, with flags for SHUTDOWN). */
  control: { op: number; flags: number }[];
  /** The host client sends no more; SHUTDOWN(SEND) goes once `pending` is empty. */
  hostEof: boolean;
  hostEofSent: boolean;
  /** The guest's SHUTDOWN flags so far. */
  peerShutdown: number;
}

/** Counters of what the device dropped or refused (tests, diagnostics). */
export interface VsockStats {
  /** Guest packets dropped: too short, wrong source CID. */
  dropped: number;
  /** Resets sent to the guest. */
  resets: number;
  /** Connections established (either way). */
  established: number;
}

/** A virtio-vsock device: its transport, what the machine attaches and its counters. */
export interface VsockDevice {
  readonly transport: VirtioMmioTransport;
  readonly device: Device;
  readonly stats: VsockStats;
  /** Open connections (for tests). */
  connections(): number;
  /**
   * The vCPU loop's service tick: delivers the host side's messages and, after a restore, the
   * transport reset the guest is owed.
   */
  service(): void;
}

/** The guest CIDs a device accepts: 3 up to 2^32 - 2 (0-2 are reserved, 2^32 - 1 is ANY). */
export function checkGuestCid(cid: number, what = "cid"): number {
  if (!Number.isSafeInteger(cid) || cid < 3 || cid > 0xffff_fffe) {
    throw new RangeError(
      `${what} ${cid} is not a guest CID: use a whole number from 3 to 4294967294 ` +
        `(0-2 are the hypervisor, local and host CIDs)`,
    );
  }
  return cid;
}

/**
 * Builds a virtio-vsock device for guest `cid` on `host` (its `base` and `irq`) over `port`;
 * with no port (null), every connection the guest tries is refused.
 */
export function createVsockDevice(
  host: DeviceHost,
  port: VsockPort | null,
  cid: number,
): VsockDevice {
  checkGuestCid(cid);
  const config = new Uint8Array(8);
  new DataView(config.buffer).setBigUint64(0, BigInt(cid), true);
  const stats: VsockStats = { dropped: 0, resets: 0, established: 0 };
  /** By `${hostPort}:${guestPort}`, and by id. */
  const byPorts = new Map<string, Conn>();
  const byId = new Map<number, Conn>();
  /** Resets for packets of no connection: [host port, guest port]. */
  const strays: [number, number][] = [];
  let nextGuestConnId = 1;

  const send = (m: ToHost) => port?.send(m);
  const key = (hostPort: number, guestPort: number) => `${hostPort}:${guestPort}`;

  const live = () =>
    (transport.status & STATUS_DRIVER_OK) !== 0 &&
    (transport.status & (STATUS_NEEDS_RESET | STATUS_FAILED)) === 0;

  function newConn(id: number, hostPort: number, guestPort: number, state: ConnState): Conn {
    const c: Conn = {
      id,
      hostPort,
      guestPort,
      state,
      peerBufAlloc: 0,
      peerFwdCnt: 0,
      txCnt: 0,
      rxCnt: 0,
      fwdCnt: 0,
      fwdCntSent: 0,
      pending: [],
      pendingBytes: 0,
      creditOwed: 0,
      control: [],
      hostEof: false,
      hostEofSent: false,
      peerShutdown: 0,
    };
    byPorts.set(key(hostPort, guestPort), c);
    byId.set(id, c);
    return c;
  }

  function drop(c: Conn): void {
    byPorts.delete(key(c.hostPort, c.guestPort));
    byId.delete(c.id);
  }

  /** Ends `c`: a reset for the guest, and (unless the host side ended it) a close for it. */
  function reset(c: Conn, tellHost: boolean): void {
    drop(c);
    strayReset(c.hostPort, c.guestPort);
    if (tellHost) send({ kind: "close", id: c.id });
  }

  function strayReset(hostPort: number, guestPort: number): void {
    if (strays.length < MAX_STRAY_RESETS) strays.push([hostPort, guestPort]);
  }

  /** The guest's credit left on `c` (never negative, even if it shrank its buffer). */
  const peerCredit = (c: Conn) => Math.max(0, c.peerBufAlloc - ((c.txCnt - c.peerFwdCnt) >>> 0));

  /** True when `c` has a packet to send now. */
  function ready(c: Conn): boolean {
    if (c.control.length > 0) return true;
    if (c.state !== "established") return false;
    if (c.pendingBytes > 0) return (c.peerShutdown & SHUTDOWN_RCV) === 0 && peerCredit(c) > 0;
    return c.hostEof && !c.hostEofSent;
  }

  function header(c: { hostPort: number; guestPort: number }, op: number, len = 0, flags = 0) {
    const conn = byPorts.get(key(c.hostPort, c.guestPort));
    if (conn !== undefined) conn.fwdCntSent = conn.fwdCnt;
    return encodeHeader({
      srcCid: VSOCK_HOST_CID,
      dstCid: cid,
      srcPort: c.hostPort,
      dstPort: c.guestPort,
      len,
      type: VSOCK_TYPE_STREAM,
      op,
      flags,
      bufAlloc: VSOCK_BUF_ALLOC,
      fwdCnt: conn?.fwdCnt ?? 0,
    });
  }

  /** The next packet of `c` for a buffer of `room` data bytes. */
  function packetOf(c: Conn, room: number): Uint8Array {
    const ctl = c.control.shift();
    if (ctl !== undefined) return header(c, ctl.op, 0, ctl.flags);
    if (c.pendingBytes === 0) {
      c.hostEofSent = true;
      return header(c, OP_SHUTDOWN, 0, SHUTDOWN_SEND);
    }
    const n = Math.min(c.pendingBytes, peerCredit(c), room, VSOCK_MAX_PKT);
    const pkt = new Uint8Array(VSOCK_HDR_SIZE + n);
    let at = VSOCK_HDR_SIZE;
    while (at < pkt.length) {
      const first = c.pending[0]!;
      const take = Math.min(first.length, pkt.length - at);
      pkt.set(first.subarray(0, take), at);
      at += take;
      if (take === first.length) c.pending.shift();
      else c.pending[0] = first.subarray(take);
    }
    c.pendingBytes -= n;
    c.txCnt = (c.txCnt + n) >>> 0;
    c.creditOwed += n;
    pkt.set(header(c, OP_RW, n), 0);
    return pkt;
  }

  /** Fills the guest's receive buffers with what waits; true when it used any. */
  function fill(q: SplitQueue): boolean {
    if (!live() || !q.ready) return false;
    let used = false;
    let conns = [...byId.values()];
    for (;;) {
      const next = conns.find(ready);
      if (strays.length === 0 && next === undefined) break;
      const chain = q.pop();
      if (chain === null) break;
      used = true;
      if (chain.writableLength < VSOCK_HDR_SIZE) {
        q.push(chain.head, 0); // a buffer too small for any packet: returned unused
        continue;
      }
      let pkt: Uint8Array;
      if (strays.length > 0) {
        const [hostPort, guestPort] = strays.shift()!;
        pkt = header({ hostPort, guestPort }, OP_RST);
        stats.resets++;
      } else {
        pkt = packetOf(next!, chain.writableLength - VSOCK_HDR_SIZE);
        // Round robin: the connection served goes to the back.
        conns = [...conns.filter((c) => c !== next), next!];
      }
      q.push(chain.head, chain.write(0, pkt));
    }
    for (const c of byId.values()) {
      if (c.creditOwed > 0) {
        send({ kind: "credit", id: c.id, count: c.creditOwed });
        c.creditOwed = 0;
      }
    }
    return used;
  }

  /** Fills the receive queue and interrupts the guest if it wants it. */
  function flushRx(): void {
    const q = transport.queues[VSOCK_RXQ]!;
    try {
      if (fill(q) && q.needsInterrupt()) transport.interrupt(INT_VRING);
    } catch (err) {
      if (!(err instanceof VirtqueueError)) throw err;
      transport.fail(`queue ${VSOCK_RXQ}: ${err.message}`);
    }
  }

  /** Asks for a credit update to the guest on `c` once, if none is queued. */
  function queueCreditUpdate(c: Conn): void {
    if (!c.control.some((p) => p.op === OP_CREDIT_UPDATE)) {
      c.control.push({ op: OP_CREDIT_UPDATE, flags: 0 });
    }
  }

  /** One packet the guest sent. */
  function handleTx(chain: Chain): void {
    if (chain.readableLength < VSOCK_HDR_SIZE) {
      stats.dropped++;
      return;
    }
    const h = decodeHeader(chain.read(0, VSOCK_HDR_SIZE));
    if (h.srcCid !== cid) {
      stats.dropped++; // not from this guest: nobody to answer
      return;
    }
    const c = byPorts.get(key(h.dstPort, h.srcPort));
    const refuse = () => {
      if (c !== undefined) reset(c, true);
      else strayReset(h.dstPort, h.srcPort);
    };
    if (h.op === OP_RST) {
      if (c !== undefined) {
        drop(c);
        send({ kind: "close", id: c.id });
      }
      return;
    }
    const badLength = h.len > chain.readableLength - VSOCK_HDR_SIZE || h.len > VSOCK_MAX_PKT ||
      (h.op !== OP_RW && h.len !== 0);
    if (h.dstCid !== VSOCK_HOST_CID || h.type !== VSOCK_TYPE_STREAM || badLength) {
      refuse();
      return;
    }
    if (c !== undefined) {
      c.peerBufAlloc = h.bufAlloc;
      c.peerFwdCnt = h.fwdCnt;
    }
    switch (h.op) {
      case OP_REQUEST: {
        if (c !== undefined || byId.size >= VSOCK_MAX_CONNS || port === null) {
          refuse();
          return;
        }
        // Ids below HOST_ID_BASE, none in use (at most VSOCK_MAX_CONNS are).
        while (byId.has(nextGuestConnId)) {
          nextGuestConnId = nextGuestConnId % (HOST_ID_BASE - 1) + 1;
        }
        const conn = newConn(nextGuestConnId, h.dstPort, h.srcPort, "connecting");
        nextGuestConnId = nextGuestConnId % (HOST_ID_BASE - 1) + 1;
        conn.peerBufAlloc = h.bufAlloc;
        conn.peerFwdCnt = h.fwdCnt;
        send({ kind: "connect", id: conn.id, port: h.dstPort });
        return;
      }
      case OP_RESPONSE:
        if (c === undefined || c.state !== "requesting") return refuse();
        c.state = "established";
        stats.established++;
        send({ kind: "accepted", id: c.id });
        return;
      case OP_SHUTDOWN: {
        if (c === undefined) return refuse();
        const fresh = h.flags & ~c.peerShutdown;
        c.peerShutdown |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
        if (c.peerShutdown === (SHUTDOWN_RCV | SHUTDOWN_SEND)) {
          // The guest closed: the host side closes its socket after writing what came before,
          // and the reset completes the guest's close.
          reset(c, true);
        } else if (fresh & SHUTDOWN_SEND) send({ kind: "shutdown", id: c.id });
        return;
      }
      case OP_RW: {
        if (c === undefined || c.state !== "established") return refuse();
        if (((c.rxCnt - c.fwdCnt) >>> 0) + h.len > VSOCK_BUF_ALLOC) {
          return refuse(); // beyond the credit it was given
        }
        c.rxCnt = (c.rxCnt + h.len) >>> 0;
        for (let at = 0; at < h.len; at += MAX_DATA) {
          const n = Math.min(MAX_DATA, h.len - at);
          send({ kind: "data", id: c.id, bytes: chain.read(VSOCK_HDR_SIZE + at, n) });
        }
        return;
      }
      case OP_CREDIT_UPDATE:
        if (c === undefined) return refuse();
        return; // the credit was taken above; the flush after this batch uses it
      case OP_CREDIT_REQUEST:
        if (c === undefined) return refuse();
        queueCreditUpdate(c);
        return;
      default:
        refuse(); // OP_INVALID or unknown
    }
  }

  /** A message from the host side. */
  function receive(m: ToDevice): void {
    const c = byId.get(m.id);
    switch (m.kind) {
      case "open": {
        if (!live() || c !== undefined || byId.size >= VSOCK_MAX_CONNS) {
          send({ kind: "close", id: m.id });
          return;
        }
        const conn = newConn(m.id, m.id, m.port, "requesting");
        conn.control.push({ op: OP_REQUEST, flags: 0 });
        break;
      }
      case "connected":
        if (c === undefined || c.state !== "connecting") return;
        c.state = "established";
        stats.established++;
        c.control.push({ op: OP_RESPONSE, flags: 0 });
        break;
      case "data":
        if (c === undefined || c.hostEof) return;
        c.pending.push(m.bytes);
        c.pendingBytes += m.bytes.length;
        break;
      case "written":
        if (c === undefined) return;
        c.fwdCnt = (c.fwdCnt + m.count) >>> 0;
        // Tell the guest once a quarter of its window is free again, or all of it: it may be
        // waiting for credit, and Linux does not ask.
        if (
          ((c.fwdCnt - c.fwdCntSent) >>> 0) >= VSOCK_BUF_ALLOC / 4 ||
          (c.fwdCnt === c.rxCnt && c.fwdCnt !== c.fwdCntSent)
        ) queueCreditUpdate(c);
        break;
      case "shutdown":
        if (c === undefined) return;
        c.hostEof = true;
        break;
      case "close":
        if (c === undefined) return;
        reset(c, false);
        break;
    }
    flushRx();
  }

  /** Ends every connection (the driver reset the device, or it is going away). */
  function closeAll(): void {
    for (const c of byId.values()) send({ kind: "close", id: c.id });
    byId.clear();
    byPorts.clear();
    strays.length = 0;
  }

  const model: VirtioDeviceModel = {
    deviceId: VIRTIO_ID_VSOCK,
    features: 0n, // stream sockets only (VIRTIO_VSOCK_F_STREAM is implied without features)
    queueSizes: [VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE],
    config: () => config,
    process(index: number, queue: SplitQueue) {
      if (index === VSOCK_TXQ) {
        for (let c = queue.pop(); c !== null; c = queue.pop()) {
          try {
            handleTx(c);
          } finally {
            queue.push(c.head, 0);
          }
        }
        flushRx(); // answers, and data the guest's new credit lets out
      } else if (index === VSOCK_RXQ) {
        fill(queue); // the transport interrupts if the guest wants it
      }
      // The event queue's buffers stay posted until an event needs one.
      if (index === VSOCK_EVQ) deliverReset();
    },
    reset: closeAll,
  };
  const transport = new VirtioMmioTransport(host, model, transportOptions(host));
  port?.onReceive(receive);

  /** A restore owes the guest a transport reset: its connections did not survive. */
  let resetOwed = false;
  /** Puts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in the next event buffer, once there is one. */
  function deliverReset(): void {
    if (!resetOwed) return;
    if (!live()) {
      resetOwed = false; // no driver, no sockets to reset
      return;
    }
    const q = transport.queues[VSOCK_EVQ]!;
    try {
      const c = q.pop();
      if (c === null) return; // no event buffer posted yet: the next service tick tries again
      resetOwed = false;
      const ev = new Uint8Array(4); // struct virtio_vsock_event { le32 id; }
      new DataView(ev.buffer).setUint32(0, EVENT_TRANSPORT_RESET, true);
      q.push(c.head, c.write(0, ev));
      if (q.needsInterrupt()) transport.interrupt(INT_VRING);
    } catch (err) {
      if (!(err instanceof VirtqueueError)) throw err;
      transport.fail(`queue ${VSOCK_EVQ}: ${err.message}`);
    }
  }

  const base = transport.device({
    save: () => ({ guestCid: cid }),
    restore(f) {
      if (Number(f.guestCid) !== cid) {
        throw new RangeError(
          `virtio-vsock state is for guest CID ${f.guestCid}, the device has ${cid}`,
        );
      }
      // As Firecracker: the connections are gone (their host sockets were another process's);
      // the guest hears so through the event queue and resets its sockets.
      closeAll();
      resetOwed = true;
    },
  });
  const device: Device = {
    ...base,
    close() {
      closeAll();
      base.close?.();
    },
  };
  return {
    transport,
    device,
    stats,
    connections: () => byId.size,
    service() {
      port?.poll?.();
      deliverReset();
    },
  };
}

/** The `cid` option. */
function cidOption(host: DeviceHost): number {
  const text = host.options.string("cid", "3");
  const n = Number(text);
  try {
    return checkGuestCid(n, `"${host.name}": cid "${text}"`);
  } catch (err) {
    throw new TypeError((err as Error).message);
  }
}

/**
 * The plugin over `port` (the VMM attaches it with the port its `--vsock` host side gives);
 * `created` receives the device (the VMM calls its `service` from the vCPU loop).
 */
export function vsockPlugin(port: VsockPort | null, created?: (d: VsockDevice) => void) {
  return definePlugin({
    name: "virtio-vsock",
    apiVersion: API_VERSION,
    description: "virtio-vsock (--vsock cid=N,uds=PATH)",
    create(host) {
      const d = createVsockDevice(host, port, cidOption(host));
      created?.(d);
      return d.device;
    },
  });
}

/** Attached as a plugin without a host side (`--device devices/virtio/vsock.ts,cid=N`). */
export default vsockPlugin(null);
