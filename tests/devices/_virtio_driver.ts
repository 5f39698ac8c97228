/**
 * A small virtio-mmio driver for tests: negotiates features like Linux's virtio_mmio does,
 * lays out one split queue in a GuestMemory, submits descriptor chains (direct or through an
 * indirect table) and reads the used ring back.
 */

import type { GuestMemory } from "../../core/memory.ts";
import type { Device, IoRange } from "../../plugins/mod.ts";
import {
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_VERSION_1,
  REG,
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
} from "../../devices/virtio/mmio.ts";

export const DESC_AT = 0x1_0000, AVAIL_AT = 0x2_0000, USED_AT = 0x3_0000;
export const INDIRECT_AT = 0x4_0000, DATA_AT = 0x8_0000;

/** One buffer of a chain: bytes the device reads, or a length the device may write. */
export type Buf = { data: Uint8Array } | { writeLen: number };

export class VirtioTestDriver {
  readonly range: IoRange;
  queueSize = 0;
  availIdx = 0;
  #usedSeen = 0;
  #dataNext = DATA_AT;
  #nextDesc = 0;
  features = 0n;

  constructor(readonly device: Device, readonly mem: GuestMemory) {
    this.range = device.mmio![0]!;
  }

  /** A driver for `device` (over `mem`) that carries on where this one is (after a restore). */
  continueOn(device: Device, mem: GuestMemory): VirtioTestDriver {
    const d = new VirtioTestDriver(device, mem);
    d.queueSize = this.queueSize;
    d.availIdx = this.availIdx;
    d.features = this.features;
    d.#usedSeen = this.#usedSeen;
    d.#dataNext = this.#dataNext;
    d.#nextDesc = this.#nextDesc;
    return d;
  }

  r(offset: number, size = 4): number {
    return this.range.read(offset, size) >>> 0;
  }
  w(offset: number, value: number, size = 4): void {
    this.range.write(offset, size, value >>> 0);
  }

  deviceFeatures(): bigint {
    this.w(REG.DeviceFeaturesSel, 1);
    const hi = this.r(REG.DeviceFeatures);
    this.w(REG.DeviceFeaturesSel, 0);
    return (BigInt(hi) << 32n) | BigInt(this.r(REG.DeviceFeatures));
  }

  /** Negotiation and queue 0 setup; `want` filters the device's features. */
  init(
    opts: { want?: bigint; queueSize?: number; eventIdx?: boolean; indirect?: boolean } = {},
  ): void {
    this.w(REG.Status, 0);
    this.w(REG.Status, STATUS_ACKNOWLEDGE);
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    let want = opts.want ?? this.deviceFeatures();
    if (opts.eventIdx === false) want &= ~(1n << BigInt(F_EVENT_IDX));
    if (opts.indirect === false) want &= ~(1n << BigInt(F_INDIRECT_DESC));
    this.features = want & this.deviceFeatures();
    this.w(REG.DriverFeaturesSel, 1);
    this.w(REG.DriverFeatures, Number(this.features >> 32n));
    this.w(REG.DriverFeaturesSel, 0);
    this.w(REG.DriverFeatures, Number(this.features & 0xffff_ffffn));
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(this.r(REG.Status) & STATUS_FEATURES_OK)) throw new Error("FEATURES_OK refused");
    this.setupQueue(0, opts.queueSize);
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  }

  setupQueue(index: number, size?: number): void {
    this.w(REG.QueueSel, index);
    const max = this.r(REG.QueueNumMax);
    this.queueSize = size ?? max;
    this.w(REG.QueueNum, this.queueSize);
    this.w(REG.QueueDescLow, DESC_AT);
    this.w(REG.QueueDescHigh, 0);
    this.w(REG.QueueDriverLow, AVAIL_AT);
    this.w(REG.QueueDriverHigh, 0);
    this.w(REG.QueueDeviceLow, USED_AT);
    this.w(REG.QueueDeviceHigh, 0);
    this.mem.fill(DESC_AT, 0x3_0000 + 8 * 1024, 0);
    this.availIdx = 0;
    this.#usedSeen = 0;
    this.#nextDesc = 0;
    this.w(REG.QueueReady, 1);
  }

  alloc(len: number): number {
    const at = this.#dataNext;
    this.#dataNext += Math.ceil(Math.max(len, 1) / 16) * 16;
    return at;
  }

  /** Writes descriptor `i` of the table at `table`. */
  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number) {
    const at = table + 16 * i;
    this.mem.writeU64(at, BigInt(addr));
    this.mem.writeU32(at + 8, len);
    this.mem.writeU16(at + 12, flags);
    this.mem.writeU16(at + 14, next);
  }

  /**
   * Submits one chain and notifies; returns the head and the guest addresses of the buffers.
   * `indirect` puts the buffers in an indirect table.
   */
  submit(bufs: Buf[], opts: { indirect?: boolean; notify?: boolean } = {}): {
    head: number;
    addrs: number[];
  } {
    const addrs = bufs.map((b) => {
      const len = "data" in b ? b.data.length : b.writeLen;
      const at = this.alloc(len);
      if ("data" in b) this.mem.write(at, b.data);
      return at;
    });
    const head = this.#nextDesc % this.queueSize;
    if (opts.indirect) {
      const table = INDIRECT_AT + 0x1000 * (this.availIdx % 16);
      bufs.forEach((b, i) => {
        const len = "data" in b ? b.data.length : b.writeLen;
        const flags = ("data" in b ? 0 : 2) | (i + 1 < bufs.length ? 1 : 0);
        this.writeDesc(table, i, addrs[i]!, len, flags, i + 1);
      });
      this.writeDesc(DESC_AT, head, table, 16 * bufs.length, 4, 0);
      this.#nextDesc++;
    } else {
      bufs.forEach((b, i) => {
        const len = "data" in b ? b.data.length : b.writeLen;
        const idx = (this.#nextDesc + i) % this.queueSize;
        const next = (this.#nextDesc + i + 1) % this.queueSize;
        const flags = ("data" in b ? 0 : 2) | (i + 1 < bufs.length ? 1 : 0);
        this.writeDesc(DESC_AT, idx, addrs[i]!, len, flags, next);
      });
      this.#nextDesc += bufs.length;
    }
    this.publish(head, opts.notify ?? true);
    return { head, addrs };
  }

  /** Puts `head` in the driver ring and (optionally) notifies queue 0. */
  publish(head: number, notify = true): void {
    this.mem.writeU16(AVAIL_AT + 4 + 2 * (this.availIdx % this.queueSize), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.writeU16(AVAIL_AT + 2, this.availIdx);
    if (notify) this.w(REG.QueueNotify, 0);
  }

  /** New used-ring entries since the last call. */
  used(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.mem.readU16(USED_AT + 2);
    while (this.#usedSeen !== idx) {
      const at = USED_AT + 4 + 8 * (this.#usedSeen % this.queueSize);
      out.push({ id: this.mem.readU32(at), len: this.mem.readU32(at + 4) });
      this.#usedSeen = (this.#usedSeen + 1) & 0xffff;
    }
    // As Linux's virtqueue_enable_cb: interrupt me at the next used entry.
    this.setUsedEvent(this.#usedSeen);
    return out;
  }

  /** used_event (the driver's "interrupt me after this used index"). */
  setUsedEvent(v: number): void {
    this.mem.writeU16(AVAIL_AT + 4 + 2 * this.queueSize, v);
  }
  /** avail_event as the device wrote it. */
  availEvent(): number {
    return this.mem.readU16(USED_AT + 4 + 8 * this.queueSize);
  }

  /** Reads and ACKs InterruptStatus, as Linux's vm_interrupt does. */
  ack(): number {
    const s = this.r(REG.InterruptStatus);
    this.w(REG.InterruptACK, s);
    return s;
  }
}

export const VERSION_1 = 1n << BigInt(F_VERSION_1);
