/**
 * The migration socket broker (core/migration/broker.ts): a Worker's stand-in sockets whose
 * operations the main thread carries out. Here both sides run in one thread, joined by
 * structuredClone (what postMessage does), so the test sees every byte and error cross.
 */
import { assertEquals, assertTrue } from "../_assert.ts";
import { brokeredTransport, SocketBroker, type SocketReply } from "../../core/migration/broker.ts";
import type { MigrationConn } from "../../core/migration/url.ts";

function pair() {
  const broker = new SocketBroker((reply: SocketReply) =>
    queueMicrotask(() => worker.deliver(structuredClone(reply)))
  );
  const worker = brokeredTransport((request) => {
    // Delivered later, as a message would be.
    queueMicrotask(() => broker.handle(structuredClone(request)));
  });
  return { transport: worker.transport, broker };
}

async function readExactly(conn: MigrationConn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const k = await conn.read(out.subarray(got));
    if (k === null) throw new Error(`closed after ${got} of ${n} bytes`);
    got += k;
  }
  return out;
}

Deno.test("broker: listen, accept and connect on the main thread; 3 MiB cross both ways intact", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-broker-" });
  const { transport, broker } = pair();
  try {
    const url = { transport: "unix" as const, path: `${dir}/m.sock` };
    const listener = await transport.listen(url);
    assertEquals((listener.addr as Deno.UnixAddr).path, url.path);
    const accepted = listener.accept();
    const client = await transport.connect(url);
    const server = await accepted;
    listener.close();
    const data = new Uint8Array(3 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + (i >>> 11)) & 0xff;
    const [, echoed] = await Promise.all([
      (async () => {
        let put = 0;
        while (put < data.length) put += await client.write(data.subarray(put, put + 100_000));
      })(),
      readExactly(server, data.length),
    ]);
    assertTrue(echoed.every((b, i) => b === data[i]), "the bytes arrive unchanged");
    await server.write(new Uint8Array([7, 8, 9]));
    assertEquals([...await readExactly(client, 3)], [7, 8, 9]);
    // A close reaches the peer as the end of the stream.
    client.close();
    assertEquals(await server.read(new Uint8Array(16)), null);
    server.close();
  } finally {
    broker.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("broker: the main thread's errors arrive as the same Deno error classes", async () => {
  const { transport, broker } = pair();
  try {
    let caught: unknown = null;
    await transport.connect({ transport: "unix", path: "/nonexistent/dv-broker.sock" }).catch(
      (e) => caught = e,
    );
    assertTrue(caught instanceof Deno.errors.NotFound, `NotFound, got ${caught}`);
    const port = (() => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const p = (l.addr as Deno.NetAddr).port;
      l.close();
      return p;
    })();
    caught = null;
    await transport.connect({ transport: "tcp", hostname: "127.0.0.1", port }).catch((e) =>
      caught = e
    );
    assertTrue(caught instanceof Deno.errors.ConnectionRefused, `ConnectionRefused, got ${caught}`);
  } finally {
    broker.close();
  }
});
