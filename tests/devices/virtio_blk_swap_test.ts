/**
 * virtio-blk's backing-file swap (PATCH /drives): the new file's content and capacity, a
 * configuration-change interrupt with a new generation, a path that cannot be opened leaving
 * the device on the old file, and `cache=unsafe` offering no flush.
 */

import { assertEquals, assertThrows, assertTrue } from "../_assert.ts";
import { fakeHost } from "./_fake_host.ts";
import { VirtioTestDriver } from "./_virtio_driver.ts";
import { INT_CONFIG, INT_VRING, REG } from "../../devices/virtio/mmio.ts";
import blkPlugin, {
  BLK_F_FLUSH,
  BLK_S_OK,
  BLK_T_IN,
  BLK_T_OUT,
  isBlkDevice,
} from "../../devices/virtio/blk.ts";

const IRQ = 5, BASE = 0xd000_0000;

function header(type: number, sector: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, type, true);
  dv.setBigUint64(8, BigInt(sector), true);
  return b;
}

function request(drv: VirtioTestDriver, type: number, sector: number, data: Uint8Array | null) {
  const { addrs } = drv.submit([
    { data: header(type, sector) },
    ...(data === null ? [{ writeLen: 512 }] : [{ data }]),
    { writeLen: 1 },
  ]);
  return {
    status: drv.mem.readU8(addrs[addrs.length - 1]!),
    data: data === null ? drv.mem.read(addrs[1]!, 512) : null,
  };
}

Deno.test("virtio-blk swap: the new file's data and capacity, a config interrupt; a bad path changes nothing", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const a = `${dir}/a.img`, b = `${dir}/b.img`;
    Deno.writeFileSync(a, new Uint8Array(16 * 512).fill(0xaa));
    Deno.writeFileSync(b, new Uint8Array(40 * 512).fill(0xbb));
    const host = fakeHost({
      memSize: 0x20_0000,
      options: { path: a, base: String(BASE), irq: String(IRQ), id: "swap" },
    });
    const device = blkPlugin.create(host);
    assertTrue(isBlkDevice(device));
    const drv = new VirtioTestDriver(device, host.memory);
    drv.init();
    assertEquals(drv.r(REG.Config), 16);
    assertEquals(request(drv, BLK_T_IN, 0, null).data, new Uint8Array(512).fill(0xaa));
    assertEquals(drv.ack(), INT_VRING);
    const generation = drv.r(REG.ConfigGeneration);

    // A path that cannot be opened: an error naming it, the old file still serves.
    assertThrows(() => device.swapBacking(`${dir}/missing.img`), Error, "missing.img");
    assertEquals(drv.r(REG.Config), 16);
    assertEquals(drv.r(REG.ConfigGeneration), generation);
    assertEquals(drv.r(REG.InterruptStatus), 0);

    device.swapBacking(b);
    assertEquals(drv.r(REG.Config), 40); // the new capacity, in sectors
    assertEquals(drv.r(REG.ConfigGeneration), generation + 1);
    assertEquals(drv.ack(), INT_CONFIG);
    const r = request(drv, BLK_T_IN, 39, null);
    assertEquals(r.status, BLK_S_OK);
    assertEquals(r.data, new Uint8Array(512).fill(0xbb));
    // Writes go to the new file; the old one is closed and unchanged.
    assertEquals(request(drv, BLK_T_OUT, 1, new Uint8Array(512).fill(0x11)).status, BLK_S_OK);
    device.close?.();
    assertEquals(Deno.readFileSync(b)[512], 0x11);
    assertEquals(Deno.readFileSync(a), new Uint8Array(16 * 512).fill(0xaa));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("virtio-blk: cache=unsafe offers no flush, writeback (the default) does, others are refused", () => {
  const path = Deno.makeTempFileSync({ suffix: ".img" });
  try {
    Deno.writeFileSync(path, new Uint8Array(4096));
    const features = (cache?: string) => {
      const host = fakeHost({
        memSize: 0x20_0000,
        options: {
          path,
          base: String(BASE),
          irq: String(IRQ),
          ...(cache === undefined ? {} : { cache }),
        },
      });
      const device = blkPlugin.create(host);
      try {
        return new VirtioTestDriver(device, host.memory).deviceFeatures();
      } finally {
        device.close?.();
      }
    };
    const flush = 1n << BigInt(BLK_F_FLUSH);
    assertEquals(features() & flush, flush);
    assertEquals(features("writeback") & flush, flush);
    assertEquals(features("unsafe") & flush, 0n);
    assertThrows(() => features("none"), TypeError, 'cache "none"');
  } finally {
    Deno.removeSync(path);
  }
});
