/**
 * virtio devices in a whole machine: `--drive` and `--rng` attach virtio-mmio devices at the
 * windows and lines the resource allocator hands out, the DSDT announces exactly those, a
 * driver reaches them over the machine's MMIO bus on each backend, and a snapshot taken on one
 * backend restores them mid-stream on the other.
 */

import { assertEquals, assertTrue as assert } from "../_assert.ts";
import { BACKENDS, ROOT } from "../_run.ts";
import { buildMachine, restoreMachine, type VmConfig } from "../../core/vm.ts";
import { createSnapshot } from "../../core/snapshot/mod.ts";
import { readAcpiTables } from "../../core/boot/acpi.ts";
import { ResourceAllocator } from "../../core/resources.ts";
import { parseCli, parseDrives } from "../../core/cli.ts";
import { UsageError, VmmError } from "../../core/errors.ts";
import { assertThrows } from "../_assert.ts";
import type { Machine } from "../../core/machine.ts";
import type { Device, IoRange } from "../../plugins/mod.ts";
import { VIRTIO_MMIO_MAGIC } from "../../devices/virtio/mmio.ts";
import { BLK_S_OK, BLK_T_IN, BLK_T_OUT } from "../../devices/virtio/blk.ts";
import { VirtioTestDriver } from "./_virtio_driver.ts";

const GUEST = `${ROOT}tests/core/snapshot/guests/counter.bin`;

function config(
  image: string,
  backend: "interp" | "kvm",
  extra: Partial<VmConfig> = {},
): VmConfig {
  return {
    backend,
    memSize: 16 << 20,
    kernel: GUEST,
    format: "flat",
    cmdline: "",
    initrd: null,
    devices: [],
    serial: { kind: "none" },
    trace: false,
    drives: [{ path: image, readOnly: false, id: "root" }],
    rng: true,
    ...extra,
  };
}

/** The device the bus routes `addr` to, as a Device a test driver can use. */
function busDevice(m: Machine, addr: number): Device {
  const range: IoRange = {
    base: addr,
    length: 0x1000,
    read: (o, s) => m.mmio.read(addr + o, s),
    write: (o, s, v) => m.mmio.write(addr + o, s, v),
  };
  return { mmio: [range], reset() {}, save: () => ({ version: 1, fields: {} }), restore() {} };
}

function request(drv: VirtioTestDriver, type: number, sector: number, data: Uint8Array | number) {
  const hdr = new Uint8Array(16);
  new DataView(hdr.buffer).setUint32(0, type, true);
  new DataView(hdr.buffer).setUint32(8, sector, true);
  const { addrs } = drv.submit([
    { data: hdr },
    typeof data === "number" ? { writeLen: data } : { data },
    { writeLen: 1 },
  ]);
  return { status: drv.mem.readU8(addrs[2]!), dataAt: addrs[1]! };
}

Deno.test("resource allocator: 4 KiB windows from 0xD0000000, free lines, plugin lines skipped", () => {
  const a = new ResourceAllocator({ reservedIrqs: [6] });
  assertEquals(a.allocate(), { base: 0xd000_0000, size: 0x1000, irq: 5 });
  assertEquals(a.allocate(), { base: 0xd000_1000, size: 0x1000, irq: 7 });
  const lines = Array.from({ length: 13 }, () => a.allocate().irq);
  assertEquals(lines, [10, 11, 14, 15, 3, 16, 17, 18, 19, 20, 21, 22, 23]);
  assertThrows(() => a.allocate(), Error, "No interrupt line left");
});

Deno.test("--drive parsing: ro, id, defaults and refusals", () => {
  assertEquals(parseDrives(["a.img", "b.img,ro,id=data"]), [
    { path: "a.img", readOnly: false, id: "drive0" },
    { path: "b.img", readOnly: true, id: "data" },
  ]);
  assertThrows(() => parseDrives(["a.img,rw"]), UsageError, 'unknown option "rw"');
  assertThrows(() => parseDrives([",ro"]), UsageError, "no path");
  assertThrows(() => parseDrives(["a,id=x", "b,id=x"]), UsageError, "id=x");
  const c = parseCli(["--drive", "a.img", "--drive", "b.img,ro", "--rng"]);
  assert(typeof c === "object");
  assertEquals(c.drives?.map((d) => d.path), ["a.img", "b.img"]);
  assertEquals(c.rng, true);
});

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] virtio in a machine: DSDT nodes match the devices; snapshot and restore mid-stream`, async () => {
    const dir = Deno.makeTempDirSync();
    const image = `${dir}/disk.img`;
    Deno.writeFileSync(image, new Uint8Array(64 * 512));
    const quiet = { log: () => {} };
    const m = await buildMachine(config(image, backend), quiet);
    let restored: Machine | null = null;
    try {
      const names = m.devices.map((d) => d.name);
      assert(names.includes("virtio-blk-root") && names.includes("virtio-rng"), names.join());
      assertEquals(m.mmio.read(0xd000_0000, 4), VIRTIO_MMIO_MAGIC);
      assertEquals(m.mmio.read(0xd000_0008, 4), 2);
      assertEquals(m.mmio.read(0xd000_1008, 4), 4);
      // The DSDT lists both, with the same windows and lines.
      const dsdtInfo = readAcpiTables(m.memory, 0xe0000)!.tables.find((t) =>
        t.signature === "DSDT"
      )!;
      const dsdt = m.memory.read(dsdtInfo.addr, dsdtInfo.length);
      const text = new TextDecoder("latin1").decode(dsdt);
      assertEquals(text.split("LNRO0005").length - 1, 2);
      for (const [base, irq] of [[0xd000_0000, 5], [0xd000_1000, 6]] as const) {
        const mem32 = new Uint8Array(12);
        const dv = new DataView(mem32.buffer);
        dv.setUint8(0, 0x86), dv.setUint16(1, 9, true), dv.setUint8(3, 1);
        dv.setUint32(4, base, true), dv.setUint32(8, 0x1000, true);
        const at = text.indexOf(new TextDecoder("latin1").decode(mem32));
        assert(at > 0, `Memory32Fixed 0x${base.toString(16)}`);
        // Extended interrupt: consumer, edge, active high, one line.
        assertEquals(Array.from(dsdt.subarray(at + 12, at + 21)), [
          0x89,
          6,
          0,
          0x03,
          1,
          irq,
          0,
          0,
          0,
        ]);
      }
      // A driver over the machine's bus writes a sector, then the VM is snapshotted.
      const drv = new VirtioTestDriver(busDevice(m, 0xd000_0000), m.memory);
      drv.init();
      const sector = new Uint8Array(512).map((_, i) => i ^ 0x5a);
      assertEquals(request(drv, BLK_T_OUT, 7, sector).status, BLK_S_OK);
      assertEquals(Deno.readFileSync(image).subarray(7 * 512, 8 * 512), sector);
      const statePath = `${dir}/vm.state`, memPath = `${dir}/vm.mem`;
      createSnapshot(m, { statePath, memPath });
      const saved = m.devices.find((d) => d.name === "virtio-blk-root")!.device.save();
      // The machine checks the queues' fields by name before it changes anything.
      const bad = m.saveState();
      const blkState = bad.devices.find((d) => d.name === "virtio-blk-root")!.state;
      delete (blkState.fields.queues as Record<string, Record<string, unknown>>)["0"]!.lastAvail;
      assertThrows(() => m.restoreState(bad), VmmError, 'field "queues.0.lastAvail" is missing');
      m.close();
      // On the other backend where both run: the device state is backend-independent.
      const other = BACKENDS.find((b) => b !== backend) ?? backend;
      restored = await restoreMachine({ statePath, memPath }, quiet, {
        serial: { kind: "none" },
        backend: other,
      });
      assertEquals(restored.backend.name, other);
      const blk = restored.devices.find((d) => d.name === "virtio-blk-root")!;
      assertEquals(blk.device.save(), saved);
      assertEquals(blk.source?.options.base, "0xd0000000");
      // The restored device carries on with the same queue.
      const drv2 = drv.continueOn(busDevice(restored, 0xd000_0000), restored.memory);
      const r = request(drv2, BLK_T_IN, 7, 512);
      assertEquals(r.status, BLK_S_OK);
      assertEquals(restored.memory.read(r.dataAt, 512), sector);
      assertEquals(drv2.used().length, 2);
    } finally {
      restored?.close();
      Deno.removeSync(dir, { recursive: true });
    }
  });
}
