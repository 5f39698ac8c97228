/**
 * A fake virtio-vsock driver for tests: brings a vsock device up as Linux does (features,
 * three split queues in a GuestMemory), posts receive buffers, sends packets on the transmit
 * queue and reads back what the device put in the receive queue.
 */

import { type FakeHost, fakeHost } from "./_fake_host.ts";
import {
  REG,
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
} from "../../devices/virtio/mmio.ts";
import {
  createVsockDevice,
  decodeHeader,
  encodeHeader,
  OP_RW,
  VSOCK_HDR_SIZE,
  VSOCK_HOST_CID,
  VSOCK_TYPE_STREAM,
  type VsockDevice,
  type VsockHeader,
  type VsockPort,
} from "../../devices/virtio/vsock.ts";
import type { ToDevice, ToHost } from "../../core/vsock/wire.ts";

export const GUEST_CID = 42;
const BASE = 0xd000_0000, IRQ = 7, QSIZE = 64;
/** Where queue i's rings live, and the data area of each. */
const ringsAt = (i: number) => 0x1_0000 + i * 0x1_0000;
const DATA_AT = 0x10_0000;
/** A receive buffer as Linux posts one: the header and 4 KiB. */
export const RX_BUF = VSOCK_HDR_SIZE + 4096;

/** A packet the device gave the guest. */
export interface Packet {
  h: VsockHeader;
  data: Uint8Array;
}

/** A port whose messages the test reads and whose host side it plays. */
export class FakeVsockPort implements VsockPort {
  sent: ToHost[] = [];
  #cb: ((m: ToDevice) => void) | null = null;
  send(m: ToHost): void {
    this.sent.push(m);
  }
  onReceive(cb: (m: ToDevice) => void): void {
    this.#cb = cb;
  }
  /** Delivers `m` to the device as the host side would. */
  deliver(m: ToDevice): void {
    this.#cb!(m);
  }
  /** The messages since the last call. */
  take(): ToHost[] {
    const out = this.sent;
    this.sent = [];
    return out;
  }
}

/** One queue's driver state. */
class Queue {
  avail = 0;
  usedSeen = 0;
  nextDesc = 0;
  /** Buffer address of each head still with the device. */
  bufs = new Map<number, number>();
  constructor(readonly index: number) {}
  get desc() {
    return ringsAt(this.index);
  }
  get driver() {
    return ringsAt(this.index) + 0x4000;
  }
  get device() {
    return ringsAt(this.index) + 0x8000;
  }
}

/** The fake driver over a fresh device. */
export class VsockTestDriver {
  readonly host: FakeHost;
  readonly port: FakeVsockPort;
  readonly vsock: VsockDevice;
  readonly queues = [new Queue(0), new Queue(1), new Queue(2)];
  #data = DATA_AT;

  constructor(opts: { port?: FakeVsockPort | null } = {}) {
    this.host = fakeHost({
      memSize: 0x100_0000,
      options: { base: `0x${BASE.toString(16)}`, irq: String(IRQ) },
    });
    this.port = opts.port === undefined ? new FakeVsockPort() : opts.port ?? new FakeVsockPort();
    this.vsock = createVsockDevice(this.host, opts.port === null ? null : this.port, GUEST_CID);
  }

  r(offset: number, size = 4): number {
    return this.vsock.device.mmio![0]!.read(offset, size) >>> 0;
  }
  w(offset: number, value: number, size = 4): void {
    this.vsock.device.mmio![0]!.write(offset, size, value >>> 0);
  }

  /** Negotiation (VERSION_1 only) and the three queues, then DRIVER_OK. */
  init(): void {
    this.w(REG.Status, 0);
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    this.w(REG.DriverFeaturesSel, 1);
    this.w(REG.DriverFeatures, 1); // VERSION_1
    this.w(REG.DriverFeaturesSel, 0);
    this.w(REG.DriverFeatures, 0);
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    for (const q of this.queues) {
      this.w(REG.QueueSel, q.index);
      this.w(REG.QueueNum, QSIZE);
      this.w(REG.QueueDescLow, q.desc);
      this.w(REG.QueueDriverLow, q.driver);
      this.w(REG.QueueDeviceLow, q.device);
      this.w(REG.QueueReady, 1);
    }
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  }

  #alloc(len: number): number {
    const at = this.#data;
    this.#data += Math.ceil(Math.max(len, 1) / 16) * 16;
    if (this.#data > 0xf0_0000) this.#data = DATA_AT; // old buffers are long returned
    return at;
  }

  /** Posts a chain of buffers ({data}: readable, {len}: writable) on queue `qi`. */
  submit(qi: number, bufs: ({ data: Uint8Array } | { len: number })[], notify = true): number {
    const q = this.queues[qi]!, mem = this.host.memory;
    const head = q.nextDesc % QSIZE;
    let first = 0;
    bufs.forEach((b, i) => {
      const len = "data" in b ? b.data.length : b.len;
      const at = this.#alloc(len);
      if (i === 0) first = at;
      if ("data" in b) mem.write(at, b.data);
      const idx = (q.nextDesc + i) % QSIZE;
      const d = q.desc + 16 * idx;
      mem.writeU64(d, BigInt(at));
      mem.writeU32(d + 8, len);
      mem.writeU16(d + 12, ("data" in b ? 0 : 2) | (i + 1 < bufs.length ? 1 : 0));
      mem.writeU16(d + 14, (q.nextDesc + i + 1) % QSIZE);
    });
    q.nextDesc += bufs.length;
    q.bufs.set(head, first);
    mem.writeU16(q.driver + 4 + 2 * (q.avail % QSIZE), head);
    q.avail = (q.avail + 1) & 0xffff;
    mem.writeU16(q.driver + 2, q.avail);
    if (notify) this.w(REG.QueueNotify, qi);
    return head;
  }

  /** Posts `n` receive buffers of `size` bytes. */
  postRx(n: number, size = RX_BUF): void {
    for (let i = 0; i < n; i++) this.submit(0, [{ len: size }], i === n - 1);
  }

  /** Sends a packet from the guest (header fields over the defaults, `data` after it). */
  send(h: Partial<VsockHeader>, data: Uint8Array = new Uint8Array(0)): void {
    const hdr = encodeHeader({
      srcCid: GUEST_CID,
      dstCid: VSOCK_HOST_CID,
      srcPort: 5000,
      dstPort: 1234,
      len: data.length,
      type: VSOCK_TYPE_STREAM,
      op: OP_RW,
      flags: 0,
      bufAlloc: 256 * 1024,
      fwdCnt: 0,
      ...h,
    });
    this.submit(1, data.length > 0 ? [{ data: hdr }, { data }] : [{ data: hdr }]);
  }

  /** Packets the device put in the receive queue since the last call. */
  received(): Packet[] {
    const q = this.queues[0]!, mem = this.host.memory, out: Packet[] = [];
    const idx = mem.readU16(q.device + 2);
    while (q.usedSeen !== idx) {
      const at = q.device + 4 + 8 * (q.usedSeen % QSIZE);
      const head = mem.readU32(at), len = mem.readU32(at + 4);
      q.usedSeen = (q.usedSeen + 1) & 0xffff;
      const buf = q.bufs.get(head)!;
      q.bufs.delete(head);
      if (len < VSOCK_HDR_SIZE) continue;
      const h = decodeHeader(mem.read(buf, VSOCK_HDR_SIZE));
      out.push({ h, data: mem.read(buf + VSOCK_HDR_SIZE, len - VSOCK_HDR_SIZE) });
    }
    return out;
  }

  /** Event ids the device put in the event queue since the last call. */
  events(): number[] {
    const q = this.queues[2]!, mem = this.host.memory, out: number[] = [];
    const idx = mem.readU16(q.device + 2);
    while (q.usedSeen !== idx) {
      const at = q.device + 4 + 8 * (q.usedSeen % QSIZE);
      const head = mem.readU32(at), len = mem.readU32(at + 4);
      q.usedSeen = (q.usedSeen + 1) & 0xffff;
      const buf = q.bufs.get(head)!;
      q.bufs.delete(head);
      if (len === 4) out.push(mem.readU32(buf));
    }
    return out;
  }

  /** Takes over `other`'s guest: its RAM and where its queues are (a restore's driver). */
  continueFrom(other: VsockTestDriver): void {
    this.host.memory.write(0, other.host.memory.read(0, other.host.memory.size));
    other.queues.forEach((q, i) => Object.assign(this.queues[i]!, q, { bufs: new Map(q.bufs) }));
    this.#data = other.#data;
  }

  /** Chains the device returned on the transmit queue. */
  txUsed(): number {
    return this.host.memory.readU16(this.queues[1]!.device + 2);
  }
}
