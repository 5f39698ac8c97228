/**
 * Split virtqueues (virtio 1.2, section 2.7): the descriptor table, the driver ("available")
 * ring and the device ("used") ring in guest memory, with indirect descriptors
 * (`VIRTIO_RING_F_INDIRECT_DESC`) and event-index notification suppression
 * (`VIRTIO_RING_F_EVENT_IDX`).
 *
 * Everything here treats guest memory as hostile: every address and length is checked against
 * guest RAM before it is used, descriptor chains are bounded (a loop is an error, not a hang),
 * an indirect table inside an indirect table, a chain whose readable part follows its writable
 * part and a buffer outside RAM are errors. Errors are {@link VirtqueueError}s, which the
 * transport turns into `DEVICE_NEEDS_RESET`; nothing else is thrown for anything the guest
 * writes. The device only ever writes into the device-writable buffers a chain lists
 * ({@link Chain.write}) and into the used ring.
 *
 * @module
 */

import type { DmaMemory } from "../../plugins/mod.ts";

/** Descriptor flags (2.7.5). */
export const VIRTQ_DESC_F_NEXT = 1, VIRTQ_DESC_F_WRITE = 2, VIRTQ_DESC_F_INDIRECT = 4;
/** Driver ring flag: no used-buffer notification wanted (without EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Size of one descriptor in bytes. */
export const DESC_SIZE = 16;
/** The largest queue the split format allows. */
export const MAX_QUEUE_SIZE = 32768;
/** The most descriptors an indirect table may hold here (QEMU has no lower bound either). */
export const MAX_INDIRECT = 4096;

/** A guest-caused queue error: the device must stop using the queue and ask for a reset. */
export class VirtqueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VirtqueueError";
  }
}

/** One guest buffer of a chain: guest-physical address and length, checked to be RAM. */
export interface Segment {
  addr: number;
  len: number;
}

/** What a queue needs of guest memory: {@link DmaMemory}, plus exact RAM checks when there. */
export interface QueueMemory extends DmaMemory {
  /** True when `[gpa, gpa + len)` is guest RAM in one piece (GuestMemory has it). */
  isRam?(gpa: number, len?: number): boolean;
  readU16?(gpa: number): number;
  writeU16?(gpa: number, v: number): void;
}

/** True when `[gpa, gpa + len)` is RAM: the memory's own check, else `[0, size)`. */
export function inRam(mem: QueueMemory, gpa: number, len: number): boolean {
  if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0) return false;
  if (len === 0) return true; // an empty buffer is never accessed
  if (mem.isRam !== undefined) return mem.isRam(gpa, len);
  return gpa + len <= mem.size;
}

function readU16(mem: QueueMemory, gpa: number): number {
  if (mem.readU16 !== undefined) return mem.readU16(gpa);
  const b = mem.read(gpa, 2);
  return b[0]! | (b[1]! << 8);
}

function writeU16(mem: QueueMemory, gpa: number, v: number): void {
  if (mem.writeU16 !== undefined) return mem.writeU16(gpa, v);
  mem.write(gpa, Uint8Array.of(v & 0xff, (v >>> 8) & 0xff));
}

/** The largest copy done at once (a guest's huge buffer is moved in pieces of this size). */
const CHUNK = 1 << 20;

/**
 * A descriptor chain taken from the driver ring: its head index (what goes back in the used
 * ring), the device-readable buffers and then the device-writable ones, in chain order.
 */
export class Chain {
  /** Total bytes of the readable and of the writable buffers. */
  readonly readableLength: number;
  readonly writableLength: number;

  constructor(
    readonly memory: QueueMemory,
    readonly head: number,
    readonly readable: Segment[],
    readonly writable: Segment[],
  ) {
    this.readableLength = readable.reduce((s, r) => s + r.len, 0);
    this.writableLength = writable.reduce((s, r) => s + r.len, 0);
  }

  /** Up to `length` bytes of the readable buffers from byte `offset` of their concatenation. */
  read(offset: number, length: number): Uint8Array {
    const n = Math.max(0, Math.min(length, this.readableLength - offset));
    const out = new Uint8Array(n);
    let got = 0, skip = offset;
    for (const s of this.readable) {
      if (got >= n) break;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      const take = Math.min(s.len - skip, n - got);
      out.set(this.memory.read(s.addr + skip, take), got);
      got += take;
      skip = 0;
    }
    return out;
  }

  /**
   * Calls `each(addr, len)` for the pieces (at most 1 MiB each) of the writable buffers that
   * cover bytes `[offset, offset + length)` of their concatenation; returns the bytes covered.
   */
  forWritable(offset: number, length: number, each: (addr: number, len: number) => void): number {
    let done = 0, skip = offset;
    for (const s of this.writable) {
      if (done >= length) break;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      let take = Math.min(s.len - skip, length - done);
      let at = s.addr + skip;
      while (take > 0) {
        const piece = Math.min(take, CHUNK);
        each(at, piece);
        at += piece;
        take -= piece;
        done += piece;
      }
      skip = 0;
    }
    return done;
  }

  /**
   * Calls `each(addr, len)` for the pieces (at most 1 MiB each) of the readable buffers that
   * cover bytes `[offset, offset + length)`; returns the bytes covered.
   */
  forReadable(offset: number, length: number, each: (addr: number, len: number) => void): number {
    let done = 0, skip = offset;
    for (const s of this.readable) {
      if (done >= length) break;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      let take = Math.min(s.len - skip, length - done);
      let at = s.addr + skip;
      while (take > 0) {
        const piece = Math.min(take, CHUNK);
        each(at, piece);
        at += piece;
        take -= piece;
        done += piece;
      }
      skip = 0;
    }
    return done;
  }

  /** Writes `data` into the writable buffers from byte `offset`; returns the bytes written. */
  write(offset: number, data: Uint8Array): number {
    let pos = 0;
    return this.forWritable(offset, data.length, (addr, len) => {
      this.memory.write(addr, data.subarray(pos, pos + len));
      pos += len;
    });
  }
}

/** A queue's guest-visible configuration and the device's progress through it. */
export interface QueueState {
  /** Queue size the driver chose (QueueNum). */
  num: number;
  /** QueueReady. */
  ready: boolean;
  /** Guest-physical addresses of the descriptor table, driver ring and device ring. */
  desc: number;
  driver: number;
  device: number;
  /** The next driver-ring index the device will take. */
  lastAvail: number;
  /** The device ring's index (what the device last published). */
  usedIdx: number;
}

/**
 * One split virtqueue. The transport holds its registers; `enable` checks them, then `pop`
 * takes chains, `push` returns them and `needsInterrupt` applies the driver's suppression.
 */
export class SplitQueue {
  num: number;
  ready = false;
  desc = 0;
  driver = 0;
  device = 0;
  lastAvail = 0;
  usedIdx = 0;
  /** Negotiated features the queue follows. */
  eventIdx = false;
  indirect = false;
  /** The used index at the last interrupt decision (for EVENT_IDX). */
  #signalledUsed = 0;

  constructor(readonly memory: QueueMemory, readonly maxSize: number) {
    this.num = maxSize;
  }

  /** Back to the reset state (not ready, size = max, addresses 0). */
  reset(): void {
    this.num = this.maxSize;
    this.ready = false;
    this.desc = this.driver = this.device = 0;
    this.lastAvail = this.usedIdx = this.#signalledUsed = 0;
  }

  /**
   * Checks the configuration the driver wrote and makes the queue ready with fresh (zero)
   * indices; a VirtqueueError says what is wrong (the queue stays not ready).
   */
  enable(): void {
    const n = this.num;
    if (!Number.isInteger(n) || n < 1 || n > this.maxSize || (n & (n - 1)) !== 0) {
      throw new VirtqueueError(
        `queue size ${n} is not a power of 2 from 1 to the maximum ${this.maxSize}`,
      );
    }
    if (this.desc % 16 !== 0 || this.driver % 2 !== 0 || this.device % 4 !== 0) {
      throw new VirtqueueError(
        `misaligned rings (descriptors 0x${this.desc.toString(16)}, driver ` +
          `0x${this.driver.toString(16)}, device 0x${this.device.toString(16)})`,
      );
    }
    const parts: [string, number, number][] = [
      ["descriptor table", this.desc, DESC_SIZE * n],
      ["driver ring", this.driver, 6 + 2 * n],
      ["device ring", this.device, 6 + 8 * n],
    ];
    for (const [what, addr, len] of parts) {
      if (!inRam(this.memory, addr, len)) {
        throw new VirtqueueError(
          `the ${what} at 0x${addr.toString(16)} (${len} bytes) is outside guest RAM`,
        );
      }
    }
    this.lastAvail = 0;
    this.usedIdx = 0;
    this.#signalledUsed = 0;
    this.ready = true;
  }

  /** The driver ring's index. */
  availIdx(): number {
    return readU16(this.memory, this.driver + 2);
  }

  /** True when the driver has published chains the device has not taken. */
  hasWork(): boolean {
    return this.ready && this.availIdx() !== this.lastAvail;
  }

  /**
   * Takes the next chain, or null when there is none. Throws VirtqueueError for a malformed
   * one (the queue must not be used again until reset).
   */
  pop(): Chain | null {
    if (!this.ready) return null;
    const avail = this.availIdx();
    const pending = (avail - this.lastAvail) & 0xffff;
    if (pending === 0) return null;
    if (pending > this.num) {
      throw new VirtqueueError(
        `driver ring index ${avail} is ${pending} ahead of the device's ${this.lastAvail}, ` +
          `more than the queue size ${this.num}`,
      );
    }
    const slot = this.lastAvail % this.num;
    const head = readU16(this.memory, this.driver + 4 + 2 * slot);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (head >= this.num) {
      throw new VirtqueueError(`chain head ${head} is past the queue size ${this.num}`);
    }
    return this.#walk(head);
  }

  #walk(head: number): Chain {
    const mem = this.memory;
    const readable: Segment[] = [], writable: Segment[] = [];
    let table = this.desc, tableSize = this.num, index = head;
    let inIndirect = false;
    // Every descriptor of the ring table at most once, plus those of one indirect table.
    let budget = this.num;
    for (;;) {
      if (budget-- <= 0) {
        throw new VirtqueueError(`descriptor chain from head ${head} loops or is too long`);
      }
      const at = table + DESC_SIZE * index;
      const lo = mem.readU32(at), hi = mem.readU32(at + 4);
      const len = mem.readU32(at + 8);
      const flagsNext = mem.readU32(at + 12);
      const flags = flagsNext & 0xffff, next = flagsNext >>> 16;
      if (hi >= 0x20_0000) {
        throw new VirtqueueError(`descriptor ${index} address is beyond any guest RAM`);
      }
      const addr = hi * 0x1_0000_0000 + lo;
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.indirect) {
          throw new VirtqueueError(`descriptor ${index} is indirect, which was not negotiated`);
        }
        if (inIndirect) {
          throw new VirtqueueError(`descriptor ${index} of an indirect table is indirect too`);
        }
        if (flags & VIRTQ_DESC_F_NEXT) {
          throw new VirtqueueError(`indirect descriptor ${index} also has NEXT set`);
        }
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_INDIRECT) {
          throw new VirtqueueError(
            `indirect table of ${len} bytes is not 1 to ${MAX_INDIRECT} descriptors`,
          );
        }
        if (!inRam(mem, addr, len)) {
          throw new VirtqueueError(
            `indirect table at 0x${addr.toString(16)} (${len} bytes) is outside guest RAM`,
          );
        }
        table = addr;
        tableSize = len / DESC_SIZE;
        budget = tableSize;
        index = 0;
        inIndirect = true;
        continue;
      }
      if (!inRam(mem, addr, len)) {
        throw new VirtqueueError(
          `buffer at 0x${addr.toString(16)} (${len} bytes) of descriptor ${index} is outside ` +
            `guest RAM`,
        );
      }
      if (flags & VIRTQ_DESC_F_WRITE) writable.push({ addr, len });
      else if (writable.length > 0) {
        throw new VirtqueueError(
          `descriptor ${index} is device-readable but follows a device-writable one`,
        );
      } else readable.push({ addr, len });
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      if (next >= tableSize) {
        throw new VirtqueueError(`descriptor ${index} names next ${next}, past its table`);
      }
      index = next;
    }
    return new Chain(mem, head, readable, writable);
  }

  /** Puts chain `head` in the device ring with `len` bytes written. */
  push(head: number, len: number): void {
    const slot = this.usedIdx % this.num;
    const at = this.device + 4 + 8 * slot;
    this.memory.writeU32(at, head);
    this.memory.writeU32(at + 4, len >>> 0);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    writeU16(this.memory, this.device + 2, this.usedIdx);
  }

  /**
   * After a batch of pushes: publishes where the driver should next notify (EVENT_IDX's
   * avail_event: at the next chain) and says whether the driver wants an interrupt now.
   */
  needsInterrupt(): boolean {
    if (!this.ready) return false;
    const old = this.#signalledUsed, now = this.usedIdx;
    if (this.eventIdx) {
      writeU16(this.memory, this.device + 4 + 8 * this.num, this.lastAvail);
      if (old === now) return false;
      this.#signalledUsed = now;
      const usedEvent = readU16(this.memory, this.driver + 4 + 2 * this.num);
      // vring_need_event(event, new, old)
      return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    if (old === now) return false;
    this.#signalledUsed = now;
    return (readU16(this.memory, this.driver) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** The queue's state for a snapshot. */
  save(): QueueState & { signalledUsed: number } {
    return {
      num: this.num,
      ready: this.ready,
      desc: this.desc,
      driver: this.driver,
      device: this.device,
      lastAvail: this.lastAvail,
      usedIdx: this.usedIdx,
      signalledUsed: this.#signalledUsed,
    };
  }

  /** Loads what `save` returned. */
  restore(s: Partial<QueueState & { signalledUsed: number }>): void {
    this.num = Number(s.num ?? this.maxSize);
    this.ready = s.ready === true;
    this.desc = Number(s.desc ?? 0);
    this.driver = Number(s.driver ?? 0);
    this.device = Number(s.device ?? 0);
    this.lastAvail = Number(s.lastAvail ?? 0) & 0xffff;
    this.usedIdx = Number(s.usedIdx ?? 0) & 0xffff;
    this.#signalledUsed = Number(s.signalledUsed ?? this.usedIdx) & 0xffff;
  }
}
