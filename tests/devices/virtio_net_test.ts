import { assertEquals, assertTrue as assert } from "../_assert.ts";
import { fakeHost } from "./_fake_host.ts";
import { VERSION_1, VirtioTestDriver } from "./_virtio_driver.ts";
import { bit, REG } from "../../devices/virtio/mmio.ts";
import {
  createNetDevice,
  NET_F_MAC,
  NET_F_STATUS,
  NET_HDR_SIZE,
  NET_RX_BACKLOG,
  NET_TXQ,
  type PacketPort,
  ringPort,
  VIRTIO_ID_NET,
} from "../../devices/virtio/net.ts";
import { FrameRing } from "../../core/net/frame_ring.ts";
import { parseNets } from "../../core/net/spec.ts";

const IRQ = 5, BASE = 0xd000_0000;
const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
// Queue 1 (tx) lives here; the test driver puts queue 0 (rx) at its own addresses.
const TX_DESC = 0x5_0000, TX_AVAIL = 0x5_8000, TX_USED = 0x6_0000, TX_DATA = 0x7_0000;

/** A port the test drives: what the guest sent, and a way to hand the guest frames. */
function fakePort() {
  const sent: Uint8Array[] = [];
  let rx: ((f: Uint8Array) => void) | null = null;
  const port: PacketPort = { send: (f) => sent.push(f), onReceive: (cb) => rx = cb };
  return { port, sent, inject: (f: Uint8Array) => rx!(f) };
}

function frame(len: number, seed = 1): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed) & 0xff;
  return f;
}

function setup() {
  const host = fakeHost({
    memSize: 0x20_0000,
    options: { base: `0x${BASE.toString(16)}`, irq: String(IRQ) },
  });
  const p = fakePort();
  const net = createNetDevice(host, p.port, MAC);
  const drv = new VirtioTestDriver(net.device, host.memory);
  drv.init({ want: VERSION_1 | bit(NET_F_MAC) | bit(NET_F_STATUS), eventIdx: false });
  // Queue 1 by hand (the driver lays out only queue 0).
  drv.w(REG.QueueSel, NET_TXQ);
  drv.w(REG.QueueNum, 16);
  drv.w(REG.QueueDescLow, TX_DESC);
  drv.w(REG.QueueDriverLow, TX_AVAIL);
  drv.w(REG.QueueDeviceLow, TX_USED);
  drv.w(REG.QueueReady, 1);
  let txAvail = 0;
  const transmit = (bufs: Uint8Array[]) => {
    let at = TX_DATA;
    bufs.forEach((b, i) => {
      host.memory.write(at, b);
      drv.writeDesc(TX_DESC, i, at, b.length, i + 1 < bufs.length ? 1 : 0, i + 1);
      at += 0x1000;
    });
    host.memory.writeU16(TX_AVAIL + 4 + 2 * (txAvail % 16), 0);
    txAvail++;
    host.memory.writeU16(TX_AVAIL + 2, txAvail);
    drv.w(REG.QueueNotify, NET_TXQ);
  };
  const txUsed = () => host.memory.readU16(TX_USED + 2);
  return { host, net, drv, ...p, transmit, txUsed };
}

Deno.test("virtio-net: device id, features and the MAC and link status in config space", () => {
  const { drv } = setup();
  assertEquals(drv.r(REG.DeviceID), VIRTIO_ID_NET);
  const f = drv.deviceFeatures();
  assert((f & bit(NET_F_MAC)) !== 0n && (f & bit(NET_F_STATUS)) !== 0n);
  assert((f & bit(0)) === 0n, "no checksum offload");
  const mac = Array.from({ length: 6 }, (_, i) => drv.r(REG.Config + i, 1));
  assertEquals(mac, [...MAC]);
  assertEquals(drv.r(REG.Config + 6, 2), 1); // VIRTIO_NET_S_LINK_UP
  drv.w(REG.QueueSel, 1);
  assertEquals(drv.r(REG.QueueNumMax), 256);
});

Deno.test("virtio-net: a frame the guest transmits comes out of the port without its header", () => {
  const { transmit, sent, txUsed } = setup();
  const f = frame(60);
  transmit([new Uint8Array(NET_HDR_SIZE), f]); // header and frame in two buffers
  assertEquals(sent.length, 1);
  assertEquals(sent[0], f);
  const one = new Uint8Array(NET_HDR_SIZE + 100);
  one.set(frame(100, 3), NET_HDR_SIZE);
  transmit([one]); // both in one buffer
  assertEquals(sent[1], frame(100, 3));
  assertEquals(txUsed(), 2);
});

Deno.test("virtio-net: an injected frame lands in a posted rx buffer after a zero header", () => {
  const { drv, inject, host, net } = setup();
  const { addrs } = drv.submit([{ writeLen: NET_HDR_SIZE + 1514 }]);
  assertEquals(drv.used(), []);
  const before = host.irqEvents.length;
  const f = frame(98, 9);
  inject(f);
  const used = drv.used();
  assertEquals(used.length, 1);
  assertEquals(used[0]!.len, NET_HDR_SIZE + f.length);
  const got = host.memory.read(addrs[0]!, NET_HDR_SIZE + f.length);
  const hdr = new Uint8Array(NET_HDR_SIZE);
  hdr[10] = 1; // num_buffers = 1
  assertEquals(got.subarray(0, NET_HDR_SIZE), hdr);
  assertEquals(got.subarray(NET_HDR_SIZE), f);
  assert(host.irqEvents.length > before, "the guest was interrupted");
  assertEquals(net.stats.rx, 1);
});

Deno.test("virtio-net: frames wait for rx buffers (bounded), a too-small buffer drops one", () => {
  const { drv, inject, host, net } = setup();
  for (let i = 0; i < NET_RX_BACKLOG + 5; i++) inject(frame(60, i));
  assertEquals(net.stats.rxDropped, 5);
  const { addrs } = drv.submit([{ writeLen: NET_HDR_SIZE + 60 }]);
  assertEquals(drv.used().map((u) => u.len), [NET_HDR_SIZE + 60]);
  assertEquals(host.memory.read(addrs[0]! + NET_HDR_SIZE, 60), frame(60, 0));
  drv.submit([{ writeLen: 20 }]); // too small for the next frame
  assertEquals(drv.used().map((u) => u.len), [0]);
  assertEquals(net.stats.rxDropped, 6);
  const second = drv.submit([{ writeLen: 4 }, { writeLen: NET_HDR_SIZE + 100 }]); // split buffer
  assertEquals(drv.used().map((u) => u.len), [NET_HDR_SIZE + 60]);
  const bytes = new Uint8Array([
    ...host.memory.read(second.addrs[0]!, 4),
    ...host.memory.read(second.addrs[1]!, NET_HDR_SIZE + 56),
  ]);
  assertEquals(bytes.subarray(NET_HDR_SIZE), frame(60, 2));
});

Deno.test("virtio-net: a frame before the driver is up is dropped, a reset empties the backlog", () => {
  const host = fakeHost({ memSize: 0x20_0000, options: { base: "0xd0000000", irq: "5" } });
  const p = fakePort();
  const net = createNetDevice(host, p.port, MAC);
  p.inject(frame(60)); // no driver yet
  const drv = new VirtioTestDriver(net.device, host.memory);
  drv.init({ eventIdx: false });
  p.inject(frame(60, 5)); // waits for a buffer
  drv.w(REG.Status, 0); // reset
  drv.init({ eventIdx: false });
  drv.submit([{ writeLen: 2048 }]);
  assertEquals(drv.used(), []);
});

Deno.test("frame rings: frames cross in order, wrap around, and a full ring refuses", () => {
  const ring = new FrameRing(new SharedArrayBuffer(8 + 4096));
  const other = new FrameRing(ring.buffer); // the other thread's view
  for (let round = 0; round < 50; round++) {
    const fs = [frame(1 + round * 13 % 700, round), frame(3, round + 1), frame(0)];
    for (const f of fs) assert(ring.push(f));
    for (const f of fs) assertEquals(other.pop(), f);
    assertEquals(other.pop(), null);
  }
  let n = 0;
  while (ring.push(frame(1000))) n++;
  assertEquals(n, 4); // 4 * 1004 bytes fit in 4096, a fifth does not
  assertEquals(ring.push(frame(70000)), false);
});

Deno.test("virtio-net over a ring port: tx frames enter the tx ring, rx frames wait for poll", () => {
  const tx = new FrameRing(), rx = new FrameRing();
  const port = ringPort({ tx: tx.buffer, rx: rx.buffer });
  const got: Uint8Array[] = [];
  port.onReceive((f) => got.push(f));
  port.send(frame(42));
  assertEquals(tx.pop(), frame(42));
  rx.push(frame(64, 2));
  assertEquals(got.length, 0);
  port.poll!();
  assertEquals(got, [frame(64, 2)]);
});

Deno.test("--net parsing: switch=PATH with mac and id; a random local MAC; errors", () => {
  const [a, b] = parseNets(["switch=/tmp/s.sock,mac=52:54:00:AA:00:01", "switch=/tmp/s.sock,id=x"]);
  assertEquals(a!.path, "/tmp/s.sock");
  assertEquals(a!.mac, "52:54:00:aa:00:01");
  assertEquals(a!.id, "net0");
  assertEquals(b!.id, "x");
  assert(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(b!.mac), b!.mac);
  assertEquals(parseInt(b!.mac.slice(0, 2), 16) & 3, 2, "locally administered unicast");
  const [t] = parseNets(["tap=tap0,mac=02:00:00:00:00:05"]);
  assertEquals([t!.kind, t!.path, t!.mac], ["tap", "tap0", "02:00:00:00:00:05"]);
  for (
    const bad of [
      "switch=",
      "foo=1",
      "switch=/x,mac=01:00:00:00:00:00",
      "switch=/x,mac=zz",
    ]
  ) {
    let threw = false;
    try {
      parseNets([bad]);
    } catch {
      threw = true;
    }
    assert(threw, bad);
  }
});
