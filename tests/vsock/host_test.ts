/**
 * The vsock host side (core/vsock/host.ts) with the real device on its rings and a fake guest
 * (tests/devices/_vsock_driver.ts) that echoes: Firecracker's `CONNECT <port>` / `OK <port>`
 * handshake over a unix socket, 256 KiB through credit flow control both ways, guest
 * connections to `<uds>_P`, refusals, and the paths a `--vsock uds=` may not take.
 */

import { assertEquals, assertRejects, assertTrue as assert } from "../_assert.ts";
import {
  FakeVsockPort,
  GUEST_CID,
  type Packet,
  VsockTestDriver,
} from "../devices/_vsock_driver.ts";
import {
  OP_CREDIT_UPDATE,
  OP_REQUEST,
  OP_RESPONSE,
  OP_RST,
  OP_RW,
  OP_SHUTDOWN,
  vsockRingPort,
} from "../../devices/virtio/vsock.ts";
import { startVsockHost } from "../../core/vsock/host.ts";
import type { VsockSpec } from "../../core/vsock/spec.ts";
import { VmmError } from "../../core/errors.ts";

/** A fake guest over the ring port: answers REQUESTs on `listen`, echoes what it reads. */
class EchoGuest {
  readonly d: VsockTestDriver;
  readonly port;
  /** Per connection (by "hostPort:guestPort"): our credit from the device, bytes to echo. */
  readonly conns = new Map<
    string,
    {
      hostPort: number;
      guestPort: number;
      bufAlloc: number;
      fwdCnt: number;
      sent: number;
      read: number;
      out: Uint8Array[];
    }
  >();
  readonly got: Packet[] = [];
  stop = false;

  constructor(spec: VsockSpec, readonly listen: number | null) {
    const rp = vsockRingPort(spec.rings!);
    this.port = rp;
    // The device talks to the ring port; the fake driver plays the guest.
    const relay = new FakeVsockPort();
    relay.send = (m) => rp.send(m);
    rp.onReceive((m) => relay.deliver(m));
    this.d = new VsockTestDriver({ port: relay });
    this.d.init();
    this.d.postRx(32);
  }

  /** Runs the guest until `stop`. */
  async run(): Promise<void> {
    while (!this.stop) {
      this.port.poll!();
      this.step();
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  step(): void {
    const pkts = this.d.received();
    if (pkts.length > 0) this.d.postRx(pkts.length);
    for (const p of pkts) {
      this.got.push(p);
      const key = `${p.h.srcPort}:${p.h.dstPort}`;
      let c = this.conns.get(key);
      if (p.h.op === OP_REQUEST) {
        if (p.h.dstPort !== this.listen) {
          this.d.send({ op: OP_RST, srcPort: p.h.dstPort, dstPort: p.h.srcPort });
          continue;
        }
        c = {
          hostPort: p.h.srcPort,
          guestPort: p.h.dstPort,
          bufAlloc: 0,
          fwdCnt: 0,
          sent: 0,
          read: 0,
          out: [],
        };
        this.conns.set(key, c);
        this.d.send({ op: OP_RESPONSE, srcPort: c.guestPort, dstPort: c.hostPort });
      }
      if (c === undefined) continue;
      c.bufAlloc = p.h.bufAlloc;
      c.fwdCnt = p.h.fwdCnt;
      if (p.h.op === OP_RW) {
        c.read += p.data.length;
        c.out.push(p.data);
        // What it read is out of its buffer at once: tell the device.
        this.d.send({
          op: OP_CREDIT_UPDATE,
          srcPort: c.guestPort,
          dstPort: c.hostPort,
          fwdCnt: c.read,
        });
      }
      if (p.h.op === OP_SHUTDOWN || p.h.op === OP_RST) this.conns.delete(key);
    }
    // Echo within the device's credit only.
    for (const c of this.conns.values()) {
      while (c.out.length > 0) {
        const credit = c.bufAlloc - (c.sent - c.fwdCnt);
        const first = c.out[0]!;
        const n = Math.min(first.length, credit);
        if (n <= 0) break;
        this.d.send(
          { op: OP_RW, srcPort: c.guestPort, dstPort: c.hostPort, fwdCnt: c.read },
          first.slice(0, n),
        );
        c.sent += n;
        if (n === first.length) c.out.shift();
        else c.out[0] = first.subarray(n);
      }
    }
  }
}

/** `n` random bytes (getRandomValues gives 64 KiB a call). */
export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(b.subarray(at, at + 65536));
  return b;
}

async function readLine(conn: Deno.Conn): Promise<string> {
  const b = new Uint8Array(1);
  let s = "";
  while (true) {
    const n = await conn.read(b);
    if (n === null) return s;
    if (b[0] === 0x0a) return s;
    s += String.fromCharCode(b[0]!);
  }
}

async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) break;
    got += r;
  }
  return out.subarray(0, got);
}

async function withHost(
  listen: number | null,
  fn: (spec: VsockSpec, guest: EchoGuest, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dnv-vsock-" });
  const spec: VsockSpec = { cid: GUEST_CID, uds: `${dir}/v.sock` };
  const host = await startVsockHost(spec);
  const guest = new EchoGuest(spec, listen);
  const running = guest.run();
  try {
    await fn(spec, guest, dir);
  } finally {
    guest.stop = true;
    await running;
    host.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("vsock host side: CONNECT <port> reaches the guest's listener, 256 KiB echo intact", async () => {
  await withHost(1234, async (spec) => {
    const conn = await Deno.connect({ transport: "unix", path: spec.uds });
    await conn.write(new TextEncoder().encode("CONNECT 1234\n"));
    const ok = await readLine(conn);
    assert(/^OK \d+$/.test(ok), `answer "${ok}"`);
    assert(Number(ok.slice(3)) >= 1 << 30, "the host port is Firecracker's, from 2^30");
    const data = randomBytes(256 * 1024);
    const [, echoed] = await Promise.all([
      (async () => {
        for (let at = 0; at < data.length; at += 8192) {
          await conn.write(data.subarray(at, at + 8192));
        }
      })(),
      readN(conn, data.length),
    ]);
    assertEquals(echoed.length, data.length);
    assert(echoed.every((b, i) => b === data[i]), "every byte echoed in order");
    conn.close();
  });
});

Deno.test("vsock host side: a guest connection to port P reaches the listener at <uds>_P", async () => {
  await withHost(null, async (spec, guest) => {
    const listener = Deno.listen({ transport: "unix", path: `${spec.uds}_52` });
    const served = (async () => {
      const c = await listener.accept();
      const line = await readLine(c);
      await c.write(new TextEncoder().encode(`got ${line}\n`));
      c.close();
    })();
    guest.d.send({ op: OP_REQUEST, srcPort: 7000, dstPort: 52 });
    const seen = async (pred: (p: Packet) => boolean) => {
      for (let i = 0; i < 2000 && !guest.got.some(pred); i++) {
        await new Promise((r) => setTimeout(r, 2));
      }
      return guest.got.find(pred);
    };
    assert((await seen((p) => p.h.op === OP_RESPONSE && p.h.srcPort === 52)) !== undefined);
    guest.d.send({ op: OP_RW, srcPort: 7000, dstPort: 52 }, new TextEncoder().encode("hello\n"));
    const reply = await seen((p) => p.h.op === OP_RW && p.h.srcPort === 52);
    assertEquals(new TextDecoder().decode(reply!.data), "got hello\n");
    // The listener closed its end: the guest sees the end of stream.
    assert((await seen((p) => p.h.op === OP_SHUTDOWN && p.h.srcPort === 52)) !== undefined);
    await served;
    listener.close();
    // Nothing listens at <uds>_53: a reset.
    guest.d.send({ op: OP_REQUEST, srcPort: 7001, dstPort: 53 });
    assert((await seen((p) => p.h.op === OP_RST && p.h.srcPort === 53)) !== undefined);
  });
});

Deno.test("vsock host side: CONNECT to a port nobody listens on, or garbage, is closed", async () => {
  await withHost(1234, async (spec) => {
    for (const line of ["CONNECT 99\n", "HELLO\n", "CONNECT 99999999999\n"]) {
      const conn = await Deno.connect({ transport: "unix", path: spec.uds });
      await conn.write(new TextEncoder().encode(line));
      assertEquals(await readN(conn, 1), new Uint8Array(0), `"${line.trim()}" closed`);
      conn.close();
    }
    // The host side still serves.
    const conn = await Deno.connect({ transport: "unix", path: spec.uds });
    await conn.write(new TextEncoder().encode("CONNECT 1234\n"));
    assert((await readLine(conn)).startsWith("OK "));
    conn.close();
  });
});

Deno.test("vsock host side: refuses a uds path that is taken, replaces a stale socket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dnv-vsock-" });
  try {
    const live = Deno.listen({ transport: "unix", path: `${dir}/live.sock` });
    await assertRejects(
      () => startVsockHost({ cid: 3, uds: `${dir}/live.sock` }),
      VmmError,
      "a running process listens there",
    );
    live.close();
    await Deno.writeTextFile(`${dir}/file`, "x");
    await assertRejects(
      () => startVsockHost({ cid: 3, uds: `${dir}/file` }),
      VmmError,
      "not a socket",
    );
    // live.sock is stale now (nobody listens): taken over.
    const host = await startVsockHost({ cid: 3, uds: `${dir}/live.sock` });
    host.close();
    await assertRejects(
      () => startVsockHost({ cid: 3, uds: `${dir}/no/such/dir/v.sock` }),
      VmmError,
      "cannot listen there",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
