/**
 * virtio-blk (virtio 1.2, section 5.2) over a raw image: reads, writes, flush
 * (`VIRTIO_BLK_F_FLUSH`), `GET_ID`, read-only enforced by the device (`VIRTIO_BLK_F_RO`, and a
 * write answered `VIRTIO_BLK_S_IOERR`), the capacity in config space, and `IOERR` for whatever
 * the host refuses (a failed read, write or sync) or a request outside the disk. Host I/O is
 * synchronous, done while the guest's queue notification is handled.
 *
 * Options (the VMM gives them from `--drive PATH[,ro][,id=ID]` or `PUT /drives`): `path`, `ro`,
 * `id`, `cache` (`writeback`, the default: `VIRTIO_BLK_F_FLUSH` offered and a flush syncs the
 * file; `unsafe`, Firecracker's default: no flush feature, writes reach the host's page cache
 * only), and the transport's `base` and `irq`.
 *
 * The backing file can be swapped while the guest runs (`PATCH /drives`, as
 * firecracker-containerd swaps a container's rootfs): {@link BlkDevice.swapBacking} opens the
 * new file first (a failure leaves the device as it was), then puts it in place, updates the
 * capacity in config space and raises a configuration-change interrupt, so Linux re-reads the
 * size. Requests run to completion while a queue notification is handled, so none is in flight
 * at a swap: every request the guest made before it finished on the old file.
 *
 * @module
 */

import { API_VERSION, definePlugin, type Device } from "../../plugins/mod.ts";
import { bit, transportOptions, type VirtioDeviceModel, VirtioMmioTransport } from "./mmio.ts";
import { type Chain, type QueueMemory, type SplitQueue, VirtqueueError } from "./queue.ts";

/** Virtio device ID of a block device. */
export const VIRTIO_ID_BLOCK = 2;
/** Feature bits (5.2.3). */
export const BLK_F_SEG_MAX = 2, BLK_F_RO = 5, BLK_F_BLK_SIZE = 6, BLK_F_FLUSH = 9;
/** Request types (5.2.6). */
export const BLK_T_IN = 0, BLK_T_OUT = 1, BLK_T_FLUSH = 4, BLK_T_GET_ID = 8;
/** Request status values. */
export const BLK_S_OK = 0, BLK_S_IOERR = 1, BLK_S_UNSUPP = 2;
/** Bytes of a GET_ID answer. */
export const BLK_ID_BYTES = 20;
/** The sector size requests count in. */
export const SECTOR = 512;
/** The request queue's size. */
export const BLK_QUEUE_SIZE = 256;

/** The backing store of a block device. */
export interface Disk {
  /** Size in bytes. */
  readonly size: number;
  /** Fills `buf` from byte `offset` (zeros past the end). */
  read(offset: number, buf: Uint8Array): void;
  /** Writes `data` at byte `offset`. */
  write(offset: number, data: Uint8Array): void;
  /** Makes written data durable. */
  flush(): void;
  close?(): void;
}

/** A raw image file, opened for reading (and writing unless `readOnly`); synchronous I/O. */
export function openDiskFile(path: string, readOnly: boolean): Disk {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: !readOnly });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot open drive "${path}": no such file`);
    }
    if (err instanceof Deno.errors.NotCapable) {
      // The machine's Worker opens only the files its VM was configured with (README
      // "Permissions"): Deno's own "run again with --allow-read" advice does not apply.
      throw new Error(
        `Cannot open drive "${path}": the VM may open only the files it was started with; ` +
          `for a drive a migrated or replicated VM brings, or one PATCH /drives swaps in, start ` +
          `the VMM with --allow-path ${path}`,
      );
    }
    const hint = !readOnly && err instanceof Deno.errors.PermissionDenied
      ? " for writing (add ,ro to use it read-only)"
      : "";
    throw new Error(`Cannot open drive "${path}"${hint}: ${(err as Error).message}`);
  }
  const size = file.statSync().size;
  return {
    size,
    read(offset, buf) {
      file.seekSync(offset, Deno.SeekMode.Start);
      let got = 0;
      while (got < buf.length) {
        const n = file.readSync(buf.subarray(got));
        if (n === null || n === 0) break;
        got += n;
      }
      buf.fill(0, got);
    },
    write(offset, data) {
      file.seekSync(offset, Deno.SeekMode.Start);
      let put = 0;
      while (put < data.length) put += file.writeSync(data.subarray(put));
    },
    flush: () => file.syncDataSync(),
    close: () => file.close(),
  };
}

/** A block device model whose backing store can be replaced. */
export interface BlkModel extends VirtioDeviceModel {
  /** Puts `next` in place of the current disk (which the caller closes) and returns that one. */
  replaceDisk(next: Disk): Disk;
}

/** The block device model over `disk`. */
export function blkModel(
  memory: QueueMemory,
  initial: Disk,
  opts: { readOnly?: boolean; id?: string; flush?: boolean } = {},
): BlkModel {
  const readOnly = opts.readOnly === true;
  const flush = opts.flush !== false;
  const id = new TextEncoder().encode(opts.id ?? "").subarray(0, BLK_ID_BYTES);
  let disk = initial;
  let capacity = 0;
  const config = new Uint8Array(0x3c);
  const dv = new DataView(config.buffer);
  const setCapacity = () => {
    capacity = Math.floor(disk.size / SECTOR);
    dv.setBigUint64(0, BigInt(capacity), true); // capacity, in 512-byte sectors
  };
  setCapacity();
  dv.setUint32(12, BLK_QUEUE_SIZE - 2, true); // seg_max
  dv.setUint32(20, SECTOR, true); // blk_size

  /** Answers one request; returns the bytes written into its writable buffers. */
  function handle(c: Chain): number {
    if (c.writableLength < 1) {
      throw new VirtqueueError(`block request ${c.head} has no writable status byte`);
    }
    const statusAt = c.writableLength - 1;
    const finish = (status: number, written = 0) => {
      c.write(statusAt, Uint8Array.of(status));
      return written + 1;
    };
    if (c.readableLength < 16) return finish(BLK_S_IOERR);
    const hdr = new DataView(c.read(0, 16).buffer);
    const type = hdr.getUint32(0, true);
    const sectorLo = hdr.getUint32(8, true), sectorHi = hdr.getUint32(12, true);
    // Sectors past 2^53 / 512 are past any disk: clamp so the range check refuses them.
    const sector = sectorHi >= 0x1000 ? Number.MAX_SAFE_INTEGER : sectorHi * 2 ** 32 + sectorLo;
    const inRange = (len: number) =>
      len % SECTOR === 0 && sector <= capacity && len / SECTOR <= capacity - sector;
    try {
      switch (type) {
        case BLK_T_IN: {
          const len = statusAt;
          if (!inRange(len)) return finish(BLK_S_IOERR);
          let pos = sector * SECTOR;
          c.forWritable(0, len, (addr, n) => {
            const buf = new Uint8Array(n);
            disk.read(pos, buf);
            memory.write(addr, buf);
            pos += n;
          });
          return finish(BLK_S_OK, len);
        }
        case BLK_T_OUT: {
          const len = c.readableLength - 16;
          if (readOnly || !inRange(len)) return finish(BLK_S_IOERR);
          let pos = sector * SECTOR;
          c.forReadable(16, len, (addr, n) => {
            disk.write(pos, memory.read(addr, n));
            pos += n;
          });
          return finish(BLK_S_OK);
        }
        case BLK_T_FLUSH:
          if (!readOnly && flush) disk.flush();
          return finish(BLK_S_OK);
        case BLK_T_GET_ID: {
          const answer = new Uint8Array(Math.min(BLK_ID_BYTES, statusAt));
          answer.set(id.subarray(0, answer.length));
          c.write(0, answer);
          return finish(BLK_S_OK, answer.length);
        }
        default:
          return finish(BLK_S_UNSUPP);
      }
    } catch (err) {
      if (err instanceof VirtqueueError) throw err;
      return finish(BLK_S_IOERR);
    }
  }

  return {
    deviceId: VIRTIO_ID_BLOCK,
    features: bit(BLK_F_SEG_MAX) | bit(BLK_F_BLK_SIZE) | (flush ? bit(BLK_F_FLUSH) : 0n) |
      (readOnly ? bit(BLK_F_RO) : 0n),
    queueSizes: [BLK_QUEUE_SIZE],
    config: () => config,
    process(_index: number, queue: SplitQueue) {
      for (let c = queue.pop(); c !== null; c = queue.pop()) {
        queue.push(c.head, handle(c));
      }
    },
    replaceDisk(next) {
      const old = disk;
      disk = next;
      setCapacity();
      return old;
    },
  };
}

/** The `cache` option's values. */
export const BLK_CACHE_TYPES = ["writeback", "unsafe"] as const;

/** A virtio-blk device: what the machine attaches, plus the backing-file swap. */
export interface BlkDevice extends Device {
  /**
   * Backs the device with the file at `path` from now on (opened with the device's read-only
   * setting; a failure throws and changes nothing), closes the old one and tells the guest its
   * new capacity with a configuration-change interrupt.
   */
  swapBacking(path: string): void;
}

/** True when `device` is a virtio-blk device that can swap its backing file. */
export function isBlkDevice(device: Device): device is BlkDevice {
  return typeof (device as Partial<BlkDevice>).swapBacking === "function";
}

export default definePlugin({
  name: "virtio-blk",
  apiVersion: API_VERSION,
  description: "virtio-blk over a raw image (--drive PATH[,ro][,id=ID])",
  create(host): BlkDevice {
    const path = host.options.string("path", "");
    if (path === "") throw new TypeError(`"${host.name}" needs path=IMAGE`);
    const readOnly = host.options.boolean("ro", false);
    const cache = host.options.string("cache", "writeback");
    if (!(BLK_CACHE_TYPES as readonly string[]).includes(cache)) {
      throw new TypeError(
        `"${host.name}": cache "${cache}" is not one of ${BLK_CACHE_TYPES.join(", ")}`,
      );
    }
    let disk = openDiskFile(path, readOnly);
    const model = blkModel(host.memory, disk, {
      readOnly,
      id: host.options.string("id", ""),
      flush: cache === "writeback",
    });
    const transport = new VirtioMmioTransport(host, model, transportOptions(host));
    const device = transport.device();
    return {
      ...device,
      close: () => disk.close?.(),
      swapBacking(next: string) {
        const opened = openDiskFile(next, readOnly); // throws before anything changes
        const old = model.replaceDisk(opened);
        disk = opened;
        try {
          old.close?.();
        } catch {
          // The old file is gone from the device either way.
        }
        transport.configChanged();
      },
    };
  },
});
