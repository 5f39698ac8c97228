import { assertEquals, assertThrows, assertTrue as assert } from "../_assert.ts";
import { fakeHost } from "./_fake_host.ts";
import { type Buf, DATA_AT, DESC_AT, VirtioTestDriver } from "./_virtio_driver.ts";
import {
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_VERSION_1,
  INT_CONFIG,
  INT_VRING,
  REG,
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_FEATURES_OK,
  STATUS_NEEDS_RESET,
  VIRTIO_MMIO_MAGIC,
  VirtioMmioTransport,
} from "../../devices/virtio/mmio.ts";
import {
  BLK_F_FLUSH,
  BLK_F_RO,
  BLK_S_IOERR,
  BLK_S_OK,
  BLK_S_UNSUPP,
  BLK_T_FLUSH,
  BLK_T_GET_ID,
  BLK_T_IN,
  BLK_T_OUT,
  blkModel,
  type Disk,
} from "../../devices/virtio/blk.ts";
import blkPlugin from "../../devices/virtio/blk.ts";
import { rngModel } from "../../devices/virtio/rng.ts";

const IRQ = 5, BASE = 0xd000_0000;

function memDisk(size: number): Disk & { bytes: Uint8Array; flushes: number } {
  const bytes = new Uint8Array(size);
  const d = {
    size,
    bytes,
    flushes: 0,
    read(offset: number, buf: Uint8Array) {
      buf.set(bytes.subarray(offset, offset + buf.length));
    },
    write(offset: number, data: Uint8Array) {
      bytes.set(data, offset);
    },
    flush() {
      d.flushes++;
    },
  };
  return d;
}

function setup(model: "blk" | "rng" = "blk", opts: { readOnly?: boolean; disk?: Disk } = {}) {
  const host = fakeHost({ memSize: 0x20_0000 });
  const disk = opts.disk ?? memDisk(64 * 512);
  const m = model === "blk"
    ? blkModel(host.memory, disk, { readOnly: opts.readOnly, id: "disk-one" })
    : rngModel();
  const t = new VirtioMmioTransport(host, m, { base: BASE, irq: host.irq(IRQ) });
  const device = t.device();
  const drv = new VirtioTestDriver(device, host.memory);
  return { host, disk, t, device, drv };
}

function header(type: number, sector: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, type, true);
  dv.setBigUint64(8, BigInt(sector), true);
  return b;
}

function blkRequest(
  drv: VirtioTestDriver,
  type: number,
  sector: number,
  data: Buf[],
  opts: { indirect?: boolean } = {},
) {
  const { head, addrs } = drv.submit(
    [{ data: header(type, sector) }, ...data, { writeLen: 1 }],
    opts,
  );
  const status = drv.mem.readU8(addrs[addrs.length - 1]!);
  return { head, addrs, status };
}

Deno.test("virtio-mmio: identity registers and feature negotiation", () => {
  const { drv, t } = setup();
  assertEquals(drv.r(REG.MagicValue), VIRTIO_MMIO_MAGIC);
  assertEquals(drv.r(REG.Version), 2);
  assertEquals(drv.r(REG.DeviceID), 2);
  const f = drv.deviceFeatures();
  for (const b of [F_VERSION_1, F_INDIRECT_DESC, F_EVENT_IDX, BLK_F_FLUSH]) {
    assert((f >> BigInt(b)) & 1n, `feature ${b}`);
  }
  assertEquals((f >> BigInt(BLK_F_RO)) & 1n, 0n);
  // Without VERSION_1 the device refuses FEATURES_OK.
  drv.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  drv.w(REG.DriverFeatures, 1 << BLK_F_FLUSH);
  drv.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  assertEquals(drv.r(REG.Status) & STATUS_FEATURES_OK, 0);
  // Non-32-bit register reads give 0; config space reads at any width.
  assertEquals(drv.r(REG.MagicValue, 2), 0);
  drv.init();
  assertEquals(drv.r(REG.Config, 4), 64); // capacity low word
  assertEquals(drv.r(REG.Config + 4, 4), 0);
  assertEquals(drv.r(REG.Config, 1), 64);
  assertEquals(drv.r(REG.QueueNumMax), 256);
  assertEquals(drv.r(REG.QueueReady), 1);
  assertEquals(t.lastError, null);
  // Status 0 resets everything.
  drv.w(REG.Status, 0);
  assertEquals(drv.r(REG.Status), 0);
  assertEquals(drv.r(REG.QueueReady), 0);
  assertEquals(t.driverFeatures, 0n);
});

Deno.test("virtio-blk: write, read back, flush, GET_ID; direct and indirect chains", () => {
  for (const indirect of [false, true]) {
    const { drv, disk, host } = setup();
    drv.init();
    const data = new Uint8Array(1024).map((_, i) => (i * 7 + 3) & 0xff);
    // The data split over two descriptors of odd sizes (any layout is allowed in 1.x).
    const w = blkRequest(drv, BLK_T_OUT, 3, [
      { data: data.subarray(0, 100) },
      { data: data.subarray(100) },
    ], { indirect });
    assertEquals(w.status, BLK_S_OK);
    assertEquals((disk as ReturnType<typeof memDisk>).bytes.subarray(3 * 512, 5 * 512), data);
    assertEquals(drv.used(), [{ id: w.head, len: 1 }]);
    assertEquals(drv.ack(), INT_VRING);
    const r = blkRequest(drv, BLK_T_IN, 3, [{ writeLen: 512 }, { writeLen: 512 }], { indirect });
    assertEquals(r.status, BLK_S_OK);
    assertEquals(host.memory.read(r.addrs[1]!, 512), data.subarray(0, 512));
    assertEquals(host.memory.read(r.addrs[2]!, 512), data.subarray(512));
    assertEquals(drv.used(), [{ id: r.head, len: 1025 }]);
    const fl = blkRequest(drv, BLK_T_FLUSH, 0, [], { indirect });
    assertEquals(fl.status, BLK_S_OK);
    assertEquals((disk as ReturnType<typeof memDisk>).flushes, 1);
    assertEquals(drv.used(), [{ id: fl.head, len: 1 }]);
    const id = blkRequest(drv, BLK_T_GET_ID, 0, [{ writeLen: 20 }], { indirect });
    assertEquals(id.status, BLK_S_OK);
    assertEquals(new TextDecoder().decode(host.memory.read(id.addrs[1]!, 8)), "disk-one");
    assertEquals(host.memory.readU8(id.addrs[1]! + 8), 0);
    assertEquals(host.risingEdges(IRQ), 4);
  }
});

Deno.test("virtio-blk: read-only drive, out-of-range sectors, odd lengths, unknown types", () => {
  const { drv, disk } = setup("blk", { readOnly: true });
  assert((drv.deviceFeatures() >> BigInt(BLK_F_RO)) & 1n);
  drv.init();
  const before = (disk as ReturnType<typeof memDisk>).bytes.slice();
  assertEquals(
    blkRequest(drv, BLK_T_OUT, 0, [{ data: new Uint8Array(512).fill(9) }]).status,
    BLK_S_IOERR,
  );
  assertEquals((disk as ReturnType<typeof memDisk>).bytes, before);
  assertEquals(blkRequest(drv, BLK_T_IN, 63, [{ writeLen: 512 }]).status, BLK_S_OK);
  assertEquals(blkRequest(drv, BLK_T_IN, 63, [{ writeLen: 1024 }]).status, BLK_S_IOERR);
  assertEquals(blkRequest(drv, BLK_T_IN, 2 ** 60, [{ writeLen: 512 }]).status, BLK_S_IOERR);
  assertEquals(blkRequest(drv, BLK_T_IN, 0, [{ writeLen: 100 }]).status, BLK_S_IOERR);
  assertEquals(blkRequest(drv, 77, 0, [{ writeLen: 512 }]).status, BLK_S_UNSUPP);
  // A request shorter than its header.
  const short = drv.submit([{ data: new Uint8Array(8) }, { writeLen: 1 }]);
  assertEquals(drv.mem.readU8(short.addrs[1]!), BLK_S_IOERR);
});

Deno.test("virtio-blk: a host I/O error is VIRTIO_BLK_S_IOERR, the device carries on", () => {
  const bad: Disk = {
    size: 64 * 512,
    read() {
      throw new Error("EIO");
    },
    write() {
      throw new Error("ENOSPC");
    },
    flush() {
      throw new Error("EIO");
    },
  };
  const { drv, t } = setup("blk", { disk: bad });
  drv.init();
  assertEquals(blkRequest(drv, BLK_T_IN, 0, [{ writeLen: 512 }]).status, BLK_S_IOERR);
  assertEquals(blkRequest(drv, BLK_T_OUT, 0, [{ data: new Uint8Array(512) }]).status, BLK_S_IOERR);
  assertEquals(blkRequest(drv, BLK_T_FLUSH, 0, []).status, BLK_S_IOERR);
  assertEquals(t.lastError, null);
  assertEquals(drv.r(REG.Status) & STATUS_NEEDS_RESET, 0);
});

Deno.test("virtio: EVENT_IDX suppresses interrupts until used_event, avail_event follows", () => {
  const { drv, host } = setup();
  drv.init();
  drv.setUsedEvent(2); // interrupt when used idx passes 2 (the third request)
  for (let i = 0; i < 3; i++) blkRequest(drv, BLK_T_IN, i, [{ writeLen: 512 }]);
  assertEquals(host.risingEdges(IRQ), 1);
  assertEquals(drv.availEvent(), 3);
  // Without EVENT_IDX, avail flags NO_INTERRUPT suppresses.
  const b = setup();
  b.drv.init({ eventIdx: false });
  b.host.memory.writeU16(0x2_0000, 1);
  blkRequest(b.drv, BLK_T_IN, 0, [{ writeLen: 512 }]);
  assertEquals(b.host.risingEdges(IRQ), 0);
  b.host.memory.writeU16(0x2_0000, 0);
  blkRequest(b.drv, BLK_T_IN, 0, [{ writeLen: 512 }]);
  assertEquals(b.host.risingEdges(IRQ), 1);
});

Deno.test("virtio: notifications before DRIVER_OK wait for it", () => {
  const { drv, host } = setup();
  drv.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  drv.w(REG.DriverFeaturesSel, 1);
  drv.w(REG.DriverFeatures, 1);
  drv.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  drv.setupQueue(0);
  blkRequest(drv, BLK_T_IN, 0, [{ writeLen: 512 }]);
  assertEquals(drv.used().length, 0);
  drv.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | 4);
  assertEquals(drv.used().length, 1);
  assertEquals(host.risingEdges(IRQ), 1);
});

function expectNeedsReset(t: VirtioMmioTransport, drv: VirtioTestDriver, what: RegExp) {
  assert(drv.r(REG.Status) & STATUS_NEEDS_RESET, "NEEDS_RESET set");
  assert(what.test(t.lastError ?? ""), `error ${t.lastError} matches ${what}`);
}

Deno.test("virtio hostile: a looping chain sets DEVICE_NEEDS_RESET, a reset recovers", () => {
  const { drv, t, host } = setup();
  drv.init();
  // Two descriptors pointing at each other.
  drv.writeDesc(DESC_AT, 0, DATA_AT, 16, 1, 1);
  drv.writeDesc(DESC_AT, 1, DATA_AT, 16, 1, 0);
  drv.publish(0);
  expectNeedsReset(t, drv, /loops/);
  assertEquals(drv.ack() & INT_CONFIG, INT_CONFIG);
  // Ignored until reset.
  blkRequest(drv, BLK_T_IN, 0, [{ writeLen: 512 }]);
  assertEquals(drv.used().length, 0);
  drv.init();
  assertEquals(drv.r(REG.Status) & STATUS_NEEDS_RESET, 0);
  assertEquals(blkRequest(drv, BLK_T_IN, 0, [{ writeLen: 512 }]).status, BLK_S_OK);
  assert(host.logLines.some((l) => l.includes("needs reset")));
});

Deno.test("virtio hostile: buffers outside RAM, readable after writable, nested indirect", () => {
  const cases: [string, (drv: VirtioTestDriver) => void, RegExp][] = [
    ["outside RAM", (drv) => {
      drv.writeDesc(DESC_AT, 0, 0x1f_ff00, 0x200, 2, 0);
      drv.publish(0, false);
    }, /outside guest RAM/],
    ["huge length", (drv) => {
      drv.writeDesc(DESC_AT, 0, DATA_AT, 0xffff_ffff, 2, 0);
      drv.publish(0, false);
    }, /outside guest RAM/],
    ["address above 2^53", (drv) => {
      drv.mem.writeU64(DESC_AT, 0xffff_ffff_ffff_f000n);
      drv.mem.writeU32(DESC_AT + 8, 16);
      drv.publish(0, false);
    }, /beyond any guest RAM/],
    ["readable after writable", (drv) => {
      drv.writeDesc(DESC_AT, 0, DATA_AT, 16, 3, 1);
      drv.writeDesc(DESC_AT, 1, DATA_AT, 16, 0, 0);
      drv.publish(0, false);
    }, /follows a device-writable/],
    ["nested indirect", (drv) => {
      drv.writeDesc(DESC_AT, 0, 0x4_0000, 32, 4, 0);
      drv.writeDesc(0x4_0000, 0, 0x4_1000, 16, 4, 0);
      drv.publish(0, false);
    }, /indirect too/],
    ["head past the queue", (drv) => {
      drv.publish(300, false);
    }, /past the queue size/],
    ["next past the table", (drv) => {
      drv.writeDesc(DESC_AT, 0, DATA_AT, 16, 1, 999);
      drv.publish(0, false);
    }, /past its table/],
    ["no status byte", (drv) => {
      drv.writeDesc(DESC_AT, 0, DATA_AT, 16, 0, 0);
      drv.publish(0, false);
    }, /no writable status/],
  ];
  for (const [name, act, re] of cases) {
    const { drv, t, host } = setup();
    drv.init();
    act(drv);
    const snapshot = host.memory.read(0, host.memory.size);
    drv.w(REG.QueueNotify, 0);
    expectNeedsReset(t, drv, re);
    // Nothing was written but the device's own ring (and not even a used entry).
    assertEquals(drv.used().length, 0, name);
    const after = host.memory.read(0, host.memory.size);
    let changed = 0;
    for (let i = 0; i < after.length; i++) if (after[i] !== snapshot[i]) changed++;
    assert(changed <= 2, `${name}: ${changed} bytes changed`);
  }
});

Deno.test("virtio hostile: bad queue sizes, rings outside RAM, reconfiguration while ready", () => {
  for (const size of [0, 3, 100, 512, 0x1_0000]) {
    const { drv, t } = setup();
    drv.init({ queueSize: size });
    expectNeedsReset(t, drv, /power of 2/);
    assertEquals(drv.r(REG.QueueReady), 0);
  }
  {
    const { drv, t } = setup();
    drv.init();
    drv.w(REG.QueueSel, 0);
    drv.w(REG.QueueDescLow, 0x1234_0000);
    expectNeedsReset(t, drv, /reconfigured while ready/);
    assertEquals(t.queues[0]!.desc, DESC_AT);
  }
  {
    const { drv, t } = setup();
    drv.w(REG.QueueSel, 0);
    drv.w(REG.QueueNum, 256);
    drv.w(REG.QueueDescLow, 0x1f_f800);
    drv.w(REG.QueueReady, 1);
    expectNeedsReset(t, drv, /outside guest RAM/);
  }
  {
    // A queue the device does not have: reads 0, writes ignored, notifies ignored.
    const { drv, t } = setup();
    drv.init();
    drv.w(REG.QueueSel, 5);
    assertEquals(drv.r(REG.QueueNumMax), 0);
    drv.w(REG.QueueReady, 1);
    drv.w(REG.QueueNotify, 5);
    assertEquals(t.lastError, null);
  }
});

Deno.test("virtio-rng: fills the writable buffers with host randomness", () => {
  const { drv } = setup("rng");
  assertEquals(drv.r(REG.DeviceID), 4);
  drv.init();
  const { head, addrs } = drv.submit([{ writeLen: 64 }]);
  assertEquals(drv.used(), [{ id: head, len: 64 }]);
  const bytes = drv.mem.read(addrs[0]!, 64);
  assert(bytes.some((b) => b !== 0));
  // A huge request gets at most 64 KiB.
  const big = drv.submit([{ writeLen: 0x2_0000 }]);
  assertEquals(drv.used(), [{ id: big.head, len: 0x1_0000 }]);
});

Deno.test("virtio: save/restore mid-stream carries queues, features and status", () => {
  const a = setup();
  a.drv.init();
  blkRequest(a.drv, BLK_T_OUT, 1, [{ data: new Uint8Array(512).fill(0xab) }]);
  const state = a.device.save();
  // A new device over a copy of RAM and the same disk continues where the first stopped.
  const b = setup("blk", { disk: a.disk });
  b.host.memory.write(0, a.host.memory.read(0, a.host.memory.size));
  b.device.restore(JSON.parse(JSON.stringify(state)));
  assertEquals(b.t.save(), a.t.save());
  const drv = b.drv;
  Object.assign(drv, {
    queueSize: a.drv.queueSize,
    availIdx: a.drv.availIdx,
    features: a.drv.features,
  });
  drv.used(); // skip the first request's entry
  (drv as unknown as { alloc(n: number): number }).alloc(0x1000);
  const r = blkRequest(drv, BLK_T_IN, 1, [{ writeLen: 512 }]);
  assertEquals(r.status, BLK_S_OK);
  assertEquals(b.host.memory.read(r.addrs[1]!, 512), new Uint8Array(512).fill(0xab));
  assertEquals(b.t.queues[0]!.usedIdx, 2);
  // Strict about each queue's fields, as the machine is about the device's.
  const bad = JSON.parse(JSON.stringify(state));
  delete bad.fields.queues["0"].lastAvail;
  assertThrows(() => b.device.restore(bad), Error, 'queue 0 state: field "lastAvail" is missing');
  bad.fields.queues["0"].lastAvail = 0;
  bad.fields.queues["0"].extra = 1;
  assertThrows(() => b.device.restore(bad), Error, 'unknown field "extra"');
});

Deno.test("virtio-blk plugin: opens the image, capacity in config, ro refuses writes", () => {
  const path = Deno.makeTempFileSync({ suffix: ".img" });
  try {
    Deno.writeFileSync(path, new Uint8Array(8192 + 100).fill(0x5a));
    const host = fakeHost({
      memSize: 0x20_0000,
      options: { path, ro: "true", base: String(BASE), irq: String(IRQ), id: "x" },
    });
    const device = blkPlugin.create(host);
    assertEquals(device.mmio![0]!.base, BASE);
    const drv = new VirtioTestDriver(device, host.memory);
    drv.init();
    assertEquals(drv.r(REG.Config), 16); // 8292 bytes = 16 whole sectors
    const r = blkRequest(drv, BLK_T_IN, 15, [{ writeLen: 512 }]);
    assertEquals(r.status, BLK_S_OK);
    assertEquals(host.memory.read(r.addrs[1]!, 512), new Uint8Array(512).fill(0x5a));
    assertEquals(
      blkRequest(drv, BLK_T_OUT, 0, [{ data: new Uint8Array(512) }]).status,
      BLK_S_IOERR,
    );
    device.close?.();
    assertEquals(Deno.readFileSync(path)[0], 0x5a);
  } finally {
    Deno.removeSync(path);
  }
});
