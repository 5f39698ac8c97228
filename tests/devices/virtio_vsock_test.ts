import { assertEquals, assertThrows, assertTrue as assert } from "../_assert.ts";
import { type FakeVsockPort, GUEST_CID, RX_BUF, VsockTestDriver } from "./_vsock_driver.ts";
import { REG, STATUS_NEEDS_RESET } from "../../devices/virtio/mmio.ts";
import {
  EVENT_TRANSPORT_RESET,
  OP_CREDIT_REQUEST,
  OP_CREDIT_UPDATE,
  OP_REQUEST,
  OP_RESPONSE,
  OP_RST,
  OP_RW,
  OP_SHUTDOWN,
  SHUTDOWN_RCV,
  SHUTDOWN_SEND,
  VIRTIO_ID_VSOCK,
  VSOCK_BUF_ALLOC,
  VSOCK_HDR_SIZE,
  VSOCK_HOST_CID,
} from "../../devices/virtio/vsock.ts";
import { decodeMessage, encodeMessage, HOST_ID_BASE } from "../../core/vsock/wire.ts";

const HOST_ID = HOST_ID_BASE;

function up(opts: { port?: FakeVsockPort | null } = {}): VsockTestDriver {
  const d = new VsockTestDriver(opts);
  d.init();
  return d;
}

function bytes(n: number, seed = 3): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A host-initiated connection the guest (port 1234, from host port HOST_ID) accepted. */
function hostConnection(d: VsockTestDriver, guestBuf = 256 * 1024) {
  d.postRx(8);
  d.port.deliver({ kind: "open", id: HOST_ID, port: 1234 });
  const [req] = d.received();
  assertEquals(req!.h.op, OP_REQUEST);
  d.send({ op: OP_RESPONSE, srcPort: 1234, dstPort: HOST_ID, bufAlloc: guestBuf });
  assertEquals(d.port.take(), [{ kind: "accepted", id: HOST_ID }]);
}

/** A guest-initiated connection from guest port 5000 to host port 52, connected. */
function guestConnection(d: VsockTestDriver): number {
  d.postRx(8);
  d.send({ op: OP_REQUEST, srcPort: 5000, dstPort: 52 });
  const [m] = d.port.take();
  assertEquals(m?.kind, "connect");
  const id = m!.id;
  assertEquals((m as { port: number }).port, 52);
  d.port.deliver({ kind: "connected", id });
  const [resp] = d.received();
  assertEquals(resp!.h.op, OP_RESPONSE);
  assertEquals([resp!.h.srcPort, resp!.h.dstPort], [52, 5000]);
  return id;
}

Deno.test("virtio-vsock: device id 19, the guest CID in config space, three queues", () => {
  const d = new VsockTestDriver();
  assertEquals(d.r(REG.DeviceID), VIRTIO_ID_VSOCK);
  assertEquals(d.r(REG.Config), GUEST_CID);
  assertEquals(d.r(REG.Config + 4), 0);
  for (const i of [0, 1, 2]) {
    d.w(REG.QueueSel, i);
    assert(d.r(REG.QueueNumMax) > 0, `queue ${i} exists`);
  }
  d.w(REG.QueueSel, 3);
  assertEquals(d.r(REG.QueueNumMax), 0);
});

Deno.test("virtio-vsock: a host connection is a REQUEST, accepted by RESPONSE, data flows", () => {
  const d = up();
  d.postRx(8);
  d.port.deliver({ kind: "open", id: HOST_ID, port: 1234 });
  const [req] = d.received();
  assertEquals(req!.h.op, OP_REQUEST);
  assertEquals([req!.h.srcCid, req!.h.dstCid], [VSOCK_HOST_CID, GUEST_CID]);
  assertEquals([req!.h.srcPort, req!.h.dstPort], [HOST_ID, 1234]);
  assertEquals(req!.h.bufAlloc, VSOCK_BUF_ALLOC);
  d.send({ op: OP_RESPONSE, srcPort: 1234, dstPort: HOST_ID });
  assertEquals(d.port.take(), [{ kind: "accepted", id: HOST_ID }]);
  const data = bytes(10_000);
  d.port.deliver({ kind: "data", id: HOST_ID, bytes: data });
  d.postRx(8);
  const got = d.received();
  assert(got.every((p) => p.h.op === OP_RW && p.data.length <= RX_BUF - VSOCK_HDR_SIZE));
  assertEquals(concat(got.map((p) => p.data)), data);
  const credit = d.port.take().filter((m) => m.kind === "credit");
  assertEquals(credit.reduce((s, m) => s + (m as { count: number }).count, 0), data.length);
});

Deno.test("virtio-vsock: never sends the guest more than its credit, resumes on CREDIT_UPDATE", () => {
  const d = up();
  hostConnection(d, 8192);
  d.port.deliver({ kind: "data", id: HOST_ID, bytes: bytes(20_000) });
  d.postRx(16);
  let got = d.received();
  assertEquals(got.reduce((s, p) => s + p.data.length, 0), 8192, "exactly the credit");
  // The guest read 4096 of them: 4096 more may come.
  d.send({ op: OP_CREDIT_UPDATE, srcPort: 1234, dstPort: HOST_ID, bufAlloc: 8192, fwdCnt: 4096 });
  got = d.received();
  assertEquals(got.reduce((s, p) => s + p.data.length, 0), 4096);
  // A bigger buffer and everything read: the rest.
  d.send({ op: OP_CREDIT_UPDATE, srcPort: 1234, dstPort: HOST_ID, bufAlloc: 65536, fwdCnt: 12288 });
  got = d.received();
  assertEquals(got.reduce((s, p) => s + p.data.length, 0), 20_000 - 12288);
});

Deno.test("virtio-vsock: waits for receive buffers, then delivers in order", () => {
  const d = up();
  d.postRx(1);
  d.port.deliver({ kind: "open", id: HOST_ID, port: 1234 });
  assertEquals(d.received().map((p) => p.h.op), [OP_REQUEST]);
  d.send({ op: OP_RESPONSE, srcPort: 1234, dstPort: HOST_ID });
  const data = bytes(9000, 7);
  d.port.deliver({ kind: "data", id: HOST_ID, bytes: data });
  assertEquals(d.received().length, 0, "no buffer posted");
  d.postRx(1);
  const got = d.received();
  assertEquals(got.map((p) => p.data.length), [4096]);
  d.postRx(4);
  got.push(...d.received());
  assertEquals(got.map((p) => p.data.length), [4096, 4096, 808]);
  assertEquals(concat(got.map((p) => p.data)), data);
});

Deno.test("virtio-vsock: a guest connection goes to the host side, RESPONSE once it connected", () => {
  const d = up();
  const id = guestConnection(d);
  assert(id < HOST_ID_BASE, "guest connection ids stay below the host's");
  const data = bytes(3000);
  d.send({ op: OP_RW, srcPort: 5000, dstPort: 52 }, data);
  const [m] = d.port.take();
  assertEquals(m?.kind, "data");
  assertEquals((m as { bytes: Uint8Array }).bytes, data);
  // Written by the host: all of it forwarded, so the guest hears fwd_cnt = 3000.
  d.port.deliver({ kind: "written", id, count: 3000 });
  const [upd] = d.received();
  assertEquals(upd!.h.op, OP_CREDIT_UPDATE);
  assertEquals(upd!.h.fwdCnt, 3000);
  // A CREDIT_REQUEST is answered.
  d.send({ op: OP_CREDIT_REQUEST, srcPort: 5000, dstPort: 52 });
  assertEquals(d.received()[0]?.h.op, OP_CREDIT_UPDATE);
});

Deno.test("virtio-vsock: a guest that sends beyond the credit it was given is reset", () => {
  const d = up();
  const id = guestConnection(d);
  // 256 KiB advertised, nothing written by the host yet: 4 packets of 64 KiB fit, a fifth not.
  for (let i = 0; i < 4; i++) d.send({ op: OP_RW, srcPort: 5000, dstPort: 52 }, bytes(65536));
  assertEquals(d.received().length, 0);
  d.send({ op: OP_RW, srcPort: 5000, dstPort: 52 }, bytes(1));
  assertEquals(d.received().map((p) => p.h.op), [OP_RST]);
  assert(d.port.take().some((m) => m.kind === "close" && m.id === id));
  assertEquals(d.vsock.connections(), 0);
});

Deno.test("virtio-vsock: refused connections: the host side's close, or no host side at all", () => {
  const d = up();
  d.postRx(4);
  d.send({ op: OP_REQUEST, srcPort: 6000, dstPort: 99 });
  const [m] = d.port.take();
  d.port.deliver({ kind: "close", id: m!.id });
  const [rst] = d.received();
  assertEquals(rst!.h.op, OP_RST);
  assertEquals([rst!.h.srcPort, rst!.h.dstPort], [99, 6000]);
  // The guest refuses a host connection: the host side is told to close it.
  d.port.deliver({ kind: "open", id: HOST_ID + 1, port: 7 });
  assertEquals(d.received()[0]?.h.op, OP_REQUEST);
  d.send({ op: OP_RST, srcPort: 7, dstPort: HOST_ID + 1 });
  assertEquals(d.port.take(), [{ kind: "close", id: HOST_ID + 1 }]);
  assertEquals(d.received().length, 0, "no answer to a reset");

  const lone = up({ port: null });
  lone.postRx(2);
  lone.send({ op: OP_REQUEST, srcPort: 6000, dstPort: 99 });
  assertEquals(lone.received()[0]?.h.op, OP_RST);
});

Deno.test("virtio-vsock: hostile packets are reset or dropped, never thrown, no device reset", () => {
  const d = up();
  d.postRx(32);
  const hdr = (h: Record<string, number>) => ({ srcPort: 5000, dstPort: 52, ...h });
  // Cut short: dropped.
  d.submit(1, [{ data: new Uint8Array(10) }]);
  // A length past the buffer, an op with data it cannot carry.
  d.send(hdr({ op: OP_REQUEST, len: 100 }));
  d.send(hdr({ op: OP_RW, len: 70_000 }), bytes(16));
  // Unknown op, OP_INVALID, wrong destination CID, wrong type.
  d.send(hdr({ op: 99 }));
  d.send(hdr({ op: 0 }));
  d.send(hdr({ op: OP_REQUEST, dstCid: 7 }));
  d.send(hdr({ op: OP_REQUEST, type: 2 }));
  // Data, a response, a shutdown for no connection.
  d.send(hdr({ op: OP_RW }), bytes(5));
  d.send(hdr({ op: OP_RESPONSE }));
  d.send(hdr({ op: OP_SHUTDOWN, flags: 3 }));
  // Not from this guest: dropped, not answered; a stray reset: nothing.
  d.send(hdr({ op: OP_REQUEST, srcCid: 43 }));
  d.send(hdr({ op: OP_RST }));
  const got = d.received();
  assertEquals(got.map((p) => p.h.op), Array(9).fill(OP_RST));
  assert(got.every((p) => p.h.dstCid === GUEST_CID && p.h.srcCid === VSOCK_HOST_CID));
  assertEquals(d.vsock.stats.dropped, 2);
  assertEquals(d.port.take(), [], "the host side never heard of any");
  assertEquals(d.txUsed(), 12, "every chain returned");
  assertEquals(d.r(REG.Status) & STATUS_NEEDS_RESET, 0);
  // A receive buffer too small for a header is returned unused; the reset waits for the next.
  const e = up();
  e.postRx(1, 20);
  e.send(hdr({ op: 99 }));
  assertEquals(e.received().length, 0);
  e.postRx(1);
  assertEquals(e.received().map((p) => p.h.op), [OP_RST]);
  assertEquals(e.r(REG.Status) & STATUS_NEEDS_RESET, 0);
});

Deno.test("virtio-vsock: shutdowns and resets from either side", () => {
  const d = up();
  hostConnection(d);
  d.port.deliver({ kind: "data", id: HOST_ID, bytes: bytes(100) });
  d.port.deliver({ kind: "shutdown", id: HOST_ID });
  const got = d.received();
  assertEquals(got.map((p) => p.h.op), [OP_RW, OP_SHUTDOWN], "the data, then the end of stream");
  assertEquals(got[1]!.h.flags, SHUTDOWN_SEND);
  d.port.take();
  // The guest stops sending: the host side shuts its socket's write half.
  d.send({ op: OP_SHUTDOWN, srcPort: 1234, dstPort: HOST_ID, flags: SHUTDOWN_SEND });
  assertEquals(d.port.take(), [{ kind: "shutdown", id: HOST_ID }]);
  // The guest closes: both flags. The host side closes, the guest gets the reset it waits for.
  d.send({
    op: OP_SHUTDOWN,
    srcPort: 1234,
    dstPort: HOST_ID,
    flags: SHUTDOWN_SEND | SHUTDOWN_RCV,
  });
  assertEquals(d.port.take(), [{ kind: "close", id: HOST_ID }]);
  assertEquals(d.received().map((p) => p.h.op), [OP_RST]);
  assertEquals(d.vsock.connections(), 0);

  // The host side's close resets a guest connection.
  const id = guestConnection(d);
  d.port.deliver({ kind: "close", id });
  assertEquals(d.received().map((p) => p.h.op), [OP_RST]);
  assertEquals(d.vsock.connections(), 0);
});

Deno.test("virtio-vsock: a driver reset closes every connection on the host side", () => {
  const d = up();
  hostConnection(d);
  const id = guestConnection(d);
  d.port.take();
  d.w(REG.Status, 0);
  const closed = d.port.take().filter((m) => m.kind === "close").map((m) => m.id).sort();
  assertEquals(closed, [id, HOST_ID].sort());
  // Not driven any more: a new host connection is refused at once.
  d.port.deliver({ kind: "open", id: HOST_ID + 5, port: 1 });
  assertEquals(d.port.take(), [{ kind: "close", id: HOST_ID + 5 }]);
});

Deno.test("virtio-vsock: a restore drops the connections and sends TRANSPORT_RESET", () => {
  const d = up();
  d.submit(2, [{ len: 4 }]); // Linux keeps event buffers posted
  hostConnection(d);
  guestConnection(d);
  assertEquals(d.vsock.connections(), 2);
  const state = d.vsock.device.save();
  assertEquals(d.vsock.connections(), 2, "saving leaves the running VM's connections alone");

  const r = new VsockTestDriver();
  r.continueFrom(d);
  r.vsock.device.restore(state);
  assertEquals(r.vsock.connections(), 0);
  const edges = r.host.risingEdges(7);
  r.vsock.service();
  assertEquals(r.events(), [EVENT_TRANSPORT_RESET]);
  assertEquals(r.host.risingEdges(7), edges + 1, "the guest is interrupted");
  r.vsock.service();
  assertEquals(r.events(), [], "once");
  // Old connections' packets are reset; new ones work.
  r.send({ op: OP_RW, srcPort: 1234, dstPort: HOST_ID }, bytes(10));
  assertEquals(r.received().map((p) => p.h.op), [OP_RST]);
  r.port.deliver({ kind: "open", id: HOST_ID + 9, port: 1234 });
  assertEquals(r.received().map((p) => p.h.op), [OP_REQUEST]);
  assertEquals(r.r(REG.Status) & STATUS_NEEDS_RESET, 0);
  // A state for another CID is refused.
  const other = new VsockTestDriver();
  const fields = { ...state.fields, guestCid: 99 };
  assertThrows(() => other.vsock.device.restore({ ...state, fields }), RangeError, "guest CID 99");
});

Deno.test("virtio-vsock: a reset owed while no event buffer is posted waits for one", () => {
  const d = up();
  const state = d.vsock.device.save();
  const r = new VsockTestDriver();
  r.continueFrom(d);
  r.vsock.device.restore(state);
  r.vsock.service();
  assertEquals(r.events(), []);
  r.submit(2, [{ len: 4 }]); // the notify delivers it
  assertEquals(r.events(), [EVENT_TRANSPORT_RESET]);
});

Deno.test("vsock wire messages round-trip", () => {
  const msgs = [
    { kind: "open", id: HOST_ID, port: 0xffff_ffff },
    { kind: "data", id: 9, bytes: bytes(1000) },
    { kind: "written", id: 9, count: 12345 },
    { kind: "close", id: 1 },
  ] as const;
  for (const m of msgs) assertEquals(decodeMessage(encodeMessage(m)), m);
  assertEquals(decodeMessage(Uint8Array.of(200, 0, 0, 0, 0, 0, 0, 0, 0)), null);
  assertEquals(decodeMessage(new Uint8Array(3)), null);
});
