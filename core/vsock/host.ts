/**
 * The host side of a `--vsock` (Firecracker's, docs/vsock.md), on the VMM's main thread: it
 * listens on the unix socket `uds`; a host client connects, writes `CONNECT <port>\n` and, once
 * the guest accepted, reads `OK <hostport>\n`, after which the stream is the guest's port
 * <port> connection. A guest connection to host port P is connected to the unix socket
 * `<uds>_P` (reset in the guest when nothing listens there). An end of stream on either side
 * is a shutdown of its sending half; a close or reset ends the connection on both.
 *
 * Design as core/net/host.ts: the vCPU's thread cannot await sockets, so the sockets live here
 * and the device's messages (core/vsock/wire.ts) cross in two FrameRings. Flow control: a
 * client's bytes are read only while fewer than {@link VSOCK_HOST_WINDOW} of them wait for the
 * guest (`credit` returns them), and each guest byte written to a socket is reported
 * (`written`), which the device turns into the guest's credit. The Worker needs no permission
 * for any of it.
 *
 * @module
 */

import { VmmError } from "../errors.ts";
import { FrameRing } from "../net/frame_ring.ts";
import {
  decodeMessage,
  HOST_ID_BASE,
  MAX_DATA,
  MessageQueue,
  type ToDevice,
  type ToHost,
  VSOCK_HOST_WINDOW,
} from "./wire.ts";
import type { VsockSpec } from "./spec.ts";

/** The longest `CONNECT <port>\n` line read (a client saying more is dropped). */
const MAX_LINE = 64;

/** A running host side. */
export interface VsockHost {
  /** Open connections (for tests). */
  connections(): number;
  /** Closes the listener, every connection and removes the socket file. */
  close(): void;
}

/** One connection's socket and its flow-control state. */
interface HostConn {
  id: number;
  conn: Deno.UnixConn | null;
  /** Bytes sent to the device that the guest has not taken yet. */
  inflight: number;
  /** Wakes the reader waiting for credit. */
  wake: (() => void) | null;
  /** The socket writes, in order (and the shutdown or close after them). */
  writes: Promise<void>;
  closed: boolean;
  /** Bytes a client sent after its CONNECT line, before the guest accepted. */
  early: Uint8Array | null;
}

/**
 * Refuses a path that is taken: a live socket (someone listens) or any other file. A stale
 * socket (nobody listens) is removed, as the API socket's is.
 */
async function claimPath(path: string): Promise<void> {
  let stat: Deno.FileInfo | null = null;
  try {
    stat = Deno.lstatSync(path);
  } catch {
    return;
  }
  if (!stat.isSocket) {
    throw new VmmError(
      `--vsock uds=${path}: the path exists and is not a socket: remove it or pick another`,
    );
  }
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch {
    Deno.removeSync(path); // stale: its process is gone
    return;
  }
  throw new VmmError(`--vsock uds=${path}: a running process listens there: pick another path`);
}

/**
 * Listens on `spec.uds` and gives `spec` its rings (so call it before the config is posted to
 * the Worker). Throws a VmmError for a path that is taken or cannot be listened on.
 */
export async function startVsockHost(spec: VsockSpec): Promise<VsockHost> {
  await claimPath(spec.uds);
  let listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>;
  try {
    listener = Deno.listen({ transport: "unix", path: spec.uds });
  } catch (err) {
    throw new VmmError(`--vsock uds=${spec.uds}: cannot listen there: ${(err as Error).message}`);
  }
  const fromDevice = new FrameRing(), toRing = new FrameRing();
  spec.rings = { tx: fromDevice.buffer, rx: toRing.buffer };
  const toDevice = new MessageQueue(toRing);
  const conns = new Map<number, HostConn>();
  let nextId = HOST_ID_BASE;
  let stopped = false;
  let retry: ReturnType<typeof setTimeout> | undefined;

  /** A message for the device; what the ring cannot take yet is retried shortly. */
  function send(m: ToDevice): void {
    if (stopped) return;
    if (!toDevice.send(m) && retry === undefined) {
      retry = setTimeout(function again() {
        retry = toDevice.flush() || stopped ? undefined : setTimeout(again, 2);
      }, 2);
    }
  }

  /** Closes `c`'s socket once its queued writes are done; tells the device unless it asked. */
  function end(c: HostConn, tellDevice: boolean): void {
    if (c.closed) return;
    c.closed = true;
    conns.delete(c.id);
    if (tellDevice) send({ kind: "close", id: c.id });
    c.wake?.();
    const conn = c.conn;
    c.writes = c.writes.then(() => {
      try {
        conn?.close();
      } catch {
        // Already closed.
      }
    });
  }

  /** Reads `c`'s socket into data messages while the guest has room for them. */
  async function pump(c: HostConn): Promise<void> {
    const buf = new Uint8Array(MAX_DATA);
    try {
      if (c.early !== null) {
        c.inflight += c.early.length;
        send({ kind: "data", id: c.id, bytes: c.early });
        c.early = null;
      }
      while (!c.closed) {
        while (c.inflight >= VSOCK_HOST_WINDOW && !c.closed) {
          await new Promise<void>((r) => c.wake = r);
          c.wake = null;
        }
        if (c.closed) return;
        const n = await c.conn!.read(
          buf.subarray(0, Math.min(MAX_DATA, VSOCK_HOST_WINDOW - c.inflight)),
        );
        if (c.closed) return;
        if (n === null) {
          send({ kind: "shutdown", id: c.id });
          return;
        }
        c.inflight += n;
        send({ kind: "data", id: c.id, bytes: buf.slice(0, n) });
      }
    } catch {
      end(c, true); // reset or closed under us
    }
  }

  /** Queues guest bytes for `c`'s socket; reports them written, or ends `c` when it fails. */
  function write(c: HostConn, bytes: Uint8Array): void {
    const conn = c.conn!;
    c.writes = c.writes.then(async () => {
      if (c.closed) return;
      try {
        let off = 0;
        while (off < bytes.length) off += await conn.write(bytes.subarray(off));
        send({ kind: "written", id: c.id, count: bytes.length });
      } catch {
        end(c, true);
      }
    });
  }

  /** A guest connection to host port `port`: connect `<uds>_<port>`. */
  async function connectOut(id: number, port: number): Promise<void> {
    const c: HostConn = {
      id,
      conn: null,
      inflight: 0,
      wake: null,
      writes: Promise.resolve(),
      closed: false,
      early: null,
    };
    conns.set(id, c);
    try {
      c.conn = await Deno.connect({ transport: "unix", path: `${spec.uds}_${port}` });
    } catch {
      end(c, true); // nothing listens: the guest sees a reset
      return;
    }
    if (c.closed || stopped) {
      c.conn.close();
      return;
    }
    send({ kind: "connected", id });
    pump(c);
  }

  function dispatch(m: ToHost): void {
    const c = conns.get(m.id);
    switch (m.kind) {
      case "connect":
        if (c === undefined) connectOut(m.id, m.port);
        return;
      case "accepted":
        if (c === undefined || c.closed) return;
        c.writes = c.writes.then(async () => {
          try {
            const line = new TextEncoder().encode(`OK ${c.id}\n`);
            let off = 0;
            while (off < line.length) off += await c.conn!.write(line.subarray(off));
          } catch {
            end(c, true);
          }
        });
        pump(c);
        return;
      case "data":
        if (c !== undefined && !c.closed && c.conn !== null) write(c, m.bytes);
        return;
      case "credit":
        if (c === undefined) return;
        c.inflight = Math.max(0, c.inflight - m.count);
        c.wake?.();
        return;
      case "shutdown":
        if (c === undefined || c.conn === null) return;
        c.writes = c.writes.then(() => c.conn!.closeWrite().catch(() => {}));
        return;
      case "close":
        if (c !== undefined) end(c, false);
        return;
    }
  }

  /** A host client: its `CONNECT <port>\n` line, then the guest's answer. */
  async function client(conn: Deno.UnixConn): Promise<void> {
    const buf = new Uint8Array(MAX_LINE);
    let got = 0, nl = -1;
    try {
      while (nl < 0 && got < MAX_LINE) {
        const n = await conn.read(buf.subarray(got));
        if (n === null) break;
        nl = buf.subarray(got, got + n).indexOf(0x0a);
        if (nl >= 0) nl += got;
        got += n;
      }
    } catch {
      // Gone before it asked.
    }
    const line = nl < 0 ? "" : new TextDecoder().decode(buf.subarray(0, nl));
    const m = /^CONNECT (\d{1,10})$/.exec(line.replace(/\r$/, ""));
    const port = m === null ? NaN : Number(m[1]);
    if (stopped || !(port <= 0xffff_ffff) || conns.size >= 1024) {
      try {
        conn.close(); // not the protocol (or too many): closed, as Firecracker does
      } catch {
        // Already closed.
      }
      return;
    }
    const id = nextId;
    nextId = nextId >= 0xffff_fffe ? HOST_ID_BASE : nextId + 1;
    const c: HostConn = {
      id,
      conn,
      inflight: 0,
      wake: null,
      writes: Promise.resolve(),
      closed: false,
      early: got > nl + 1 ? buf.slice(nl + 1, got) : null,
    };
    conns.set(id, c);
    send({ kind: "open", id, port });
  }

  (async () => {
    try {
      for await (const conn of listener) client(conn);
    } catch {
      // The listener was closed.
    }
  })();
  (async () => {
    while (!stopped) {
      await fromDevice.waitAsync(1000);
      for (let f = fromDevice.pop(); f !== null && !stopped; f = fromDevice.pop()) {
        const m = decodeMessage(f);
        if (m !== null) dispatch(m as ToHost);
      }
    }
  })();

  return {
    connections: () => conns.size,
    close() {
      if (stopped) return;
      stopped = true;
      clearTimeout(retry);
      fromDevice.wake();
      for (const c of [...conns.values()]) end(c, false);
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      try {
        Deno.removeSync(spec.uds);
      } catch {
        // Already gone.
      }
    },
  };
}
