/**
 * Example plugin: a block device that moves 512-byte sectors between a host file and guest RAM
 * by DMA and raises its interrupt when a command completes. Read-only unless the options say
 * `writable=true`. The file is opened through `openHostFile`, so the VMM opens it on the
 * device's behalf: the same code runs in-process and sandboxed.
 *
 * Registers (32-bit, at `port`, default 0x5D0): +0 sector (LBA), +4 guest-physical address,
 * +8 sector count, +12 command (write 1 to read sectors into RAM, 2 to write RAM to sectors),
 * +16 status, +20 capacity in sectors (read-only).
 * Options: `file` (the image, required), `writable`, `port`, `irq` (default 9).
 *
 * Use: deno run -A mod.ts --kernel guest.bin --device plugins/examples/block_dev.ts,file=disk.img
 */

import { API_VERSION, definePlugin, openHostFile } from "../mod.ts";

/** Bytes per sector. */
export const SECTOR_SIZE = 512;

/** Register offsets. */
export const REG_SECTOR = 0, REG_ADDR = 4, REG_COUNT = 8, REG_CMD = 12, REG_STATUS = 16;
/** Capacity register (sectors). */
export const REG_CAPACITY = 20;
/** Commands. */
export const CMD_READ = 1, CMD_WRITE = 2;
/** Status values: idle, done, bad sector range, bad guest address, device is read-only. */
export const STATUS_IDLE = 0,
  STATUS_DONE = 1,
  STATUS_BAD_SECTOR = 2,
  STATUS_BAD_ADDRESS = 3,
  STATUS_READ_ONLY = 4;

export default definePlugin({
  name: "block-dev",
  apiVersion: API_VERSION,
  description: "sector DMA from a host file (read-only unless writable=true), port 0x5D0, IRQ 9",
  create(host) {
    const base = host.options.number("port", 0x5d0);
    const irq = host.irq(host.options.number("irq", 9));
    const disk = openHostFile(host, "file", { writable: host.options.boolean("writable", false) });
    const capacity = Math.floor(disk.size / SECTOR_SIZE);
    let sector = 0, addr = 0, count = 0, status = STATUS_IDLE;

    function run(cmd: number): void {
      const bytes = count * SECTOR_SIZE;
      if (cmd === CMD_WRITE && !disk.writable) status = STATUS_READ_ONLY;
      else if (count === 0 || sector + count > capacity) status = STATUS_BAD_SECTOR;
      else {
        try {
          if (cmd === CMD_READ) host.memory.write(addr, disk.read(sector * SECTOR_SIZE, bytes));
          else disk.write(sector * SECTOR_SIZE, host.memory.read(addr, bytes));
          status = STATUS_DONE;
        } catch (err) {
          host.log.warn(`DMA refused: ${(err as Error).message}`);
          status = STATUS_BAD_ADDRESS;
        }
      }
      irq.pulse();
    }

    return {
      ports: [{
        base,
        length: 24,
        read(offset) {
          switch (offset) {
            case REG_SECTOR:
              return sector;
            case REG_ADDR:
              return addr;
            case REG_COUNT:
              return count;
            case REG_STATUS:
              return status;
            case REG_CAPACITY:
              return capacity;
            default:
              return 0;
          }
        },
        write(offset, _size, value) {
          if (offset === REG_SECTOR) sector = value >>> 0;
          else if (offset === REG_ADDR) addr = value >>> 0;
          else if (offset === REG_COUNT) count = value >>> 0;
          else if (offset === REG_CMD) run(value);
        },
      }],
      reset() {
        sector = addr = count = 0;
        status = STATUS_IDLE;
      },
      save: () => ({ version: 1, fields: { sector, addr, count, status } }),
      restore(s) {
        sector = Number(s.fields.sector ?? 0);
        addr = Number(s.fields.addr ?? 0);
        count = Number(s.fields.count ?? 0);
        status = Number(s.fields.status ?? 0);
      },
      close() {
        disk.close();
      },
    };
  },
});
