/**
 * Example plugin: a DMA checksum engine. The guest writes a guest-physical address and a length,
 * then starts it; the device reads guest RAM through the bounds-checked DMA interface, computes
 * CRC-32 (IEEE), and raises its interrupt line when done.
 *
 * Registers (32-bit, at `port`, default 0x5B0): +0 address, +4 length, +8 command (write 1 to
 * start), +12 result (CRC-32), +16 status (1 done, 2 error: range outside guest RAM).
 * Options: `port`, `irq` (default 5).
 */

import { API_VERSION, definePlugin } from "../mod.ts";

const TABLE = new Uint32Array(256);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[i] = c >>> 0;
}

/** CRC-32 (IEEE 802.3) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const ADDR = 0, LEN = 4, CMD = 8, RESULT = 12, STATUS = 16;
const STATUS_DONE = 1, STATUS_ERROR = 2;

export default definePlugin({
  name: "crc32-dma",
  apiVersion: API_VERSION,
  description: "CRC-32 of guest memory by DMA, registers at port 0x5B0, IRQ 5",
  create(host) {
    const base = host.options.number("port", 0x5b0);
    const irq = host.irq(host.options.number("irq", 5));
    let addr = 0, len = 0, result = 0, status = 0;

    function start(): void {
      try {
        result = crc32(host.memory.read(addr, len));
        status = STATUS_DONE;
      } catch (err) {
        host.log.warn(`DMA refused: ${(err as Error).message}`);
        result = 0;
        status = STATUS_ERROR;
      }
      irq.pulse();
    }

    return {
      ports: [{
        base,
        length: 20,
        read(offset) {
          switch (offset) {
            case ADDR:
              return addr;
            case LEN:
              return len;
            case RESULT:
              return result;
            case STATUS:
              return status;
            default:
              return 0;
          }
        },
        write(offset, _size, value) {
          if (offset === ADDR) addr = value >>> 0;
          else if (offset === LEN) len = value >>> 0;
          else if (offset === CMD && (value & 1)) start();
        },
      }],
      reset() {
        addr =
          len =
          result =
          status =
            0;
      },
      save: () => ({ version: 1, fields: { addr, len, result, status } }),
      restore(s) {
        addr = Number(s.fields.addr ?? 0);
        len = Number(s.fields.len ?? 0);
        result = Number(s.fields.result ?? 0);
        status = Number(s.fields.status ?? 0);
      },
    };
  },
});
