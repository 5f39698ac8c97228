/**
 * The VM-to-VM network without root: a learning Ethernet switch on a unix stream socket
 * (`deno run -A mod.ts switch PATH`), which VMs join with `--net switch=PATH`. Each connection
 * is one switch port; frames cross it as a 4-byte big-endian length and the frame's bytes
 * (the framing of QEMU's `-netdev stream`, so a QEMU guest can join too). The switch learns
 * which port each source MAC address is behind, sends a unicast frame to the port that has its
 * destination and floods broadcast, multicast and unknown destinations to every other port. A
 * port that goes away forgets its addresses; a port whose peer reads too slowly loses frames
 * (at most {@link PORT_BACKLOG} wait for one), as a real switch drops them.
 *
 * @module
 */

import { MAX_FRAME } from "./frame_ring.ts";

/** Frames waiting for one slow port before more are dropped. */
export const PORT_BACKLOG = 256;

/** The stream framing: a 4-byte big-endian length, then the frame. */
export function encodeFrame(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length);
  out.set(frame, 4);
  return out;
}

/** Writes all of `bytes` to `w`. */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}

/**
 * The frames of a framed stream, until it ends; throws on a length above MAX_FRAME (a peer that
 * does not speak the framing).
 */
export async function* readFrames(
  r: { read(p: Uint8Array): Promise<number | null> },
): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(65536 + 4);
  for (;;) {
    while (buf.length >= 4) {
      const len = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0);
      if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes (the most is ${MAX_FRAME})`);
      if (buf.length < 4 + len) break;
      yield buf.slice(4, 4 + len);
      buf = buf.subarray(4 + len);
    }
    const n = await r.read(chunk);
    if (n === null) return;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
  }
}

/** A MAC address (6 bytes at `at` of `frame`) as text. */
function macAt(frame: Uint8Array, at: number): string {
  let s = "";
  for (let i = 0; i < 6; i++) {
    s += (i ? ":" : "") + (frame[at + i] ?? 0).toString(16).padStart(2, "0");
  }
  return s;
}

/** One connected VM. */
class Port {
  #writing: Promise<void> = Promise.resolve();
  #pending = 0;
  dropped = 0;
  constructor(readonly id: number, readonly conn: Deno.Conn) {}

  /** Queues `frame` for this port (dropped when too many wait). */
  send(frame: Uint8Array): void {
    if (this.#pending >= PORT_BACKLOG) {
      this.dropped++;
      return;
    }
    this.#pending++;
    const bytes = encodeFrame(frame);
    this.#writing = this.#writing.then(() => writeAll(this.conn, bytes)).catch(() => {
      // The port is going away: its reader ends it.
    }).finally(() => this.#pending--);
  }
}

/** A learning switch serving `listener`. */
export class EthernetSwitch {
  readonly ports = new Set<Port>();
  /** MAC address -> the port it was last seen behind. */
  readonly table = new Map<string, Port>();
  #nextId = 0;
  #closed = false;

  constructor(readonly listener: Deno.Listener, readonly log: (m: string) => void = () => {}) {}

  /** Accepts ports until `close()`. */
  async serve(): Promise<void> {
    try {
      for await (const conn of this.listener) this.#run(new Port(this.#nextId++, conn));
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  async #run(port: Port): Promise<void> {
    this.ports.add(port);
    this.log(`port ${port.id} connected`);
    try {
      for await (const frame of readFrames(port.conn)) this.forward(port, frame);
    } catch (err) {
      this.log(`port ${port.id}: ${(err as Error).message}`);
    } finally {
      this.ports.delete(port);
      for (const [mac, p] of this.table) if (p === port) this.table.delete(mac);
      try {
        port.conn.close();
      } catch {
        // already closed
      }
      this.log(`port ${port.id} disconnected`);
    }
  }

  /** Learns `frame`'s source behind `from` and sends it on. */
  forward(from: Port, frame: Uint8Array): void {
    if (frame.length < 14) return; // not Ethernet
    if ((frame[6]! & 1) === 0) this.table.set(macAt(frame, 6), from);
    const to = (frame[0]! & 1) === 0 ? this.table.get(macAt(frame, 0)) : undefined;
    if (to !== undefined) {
      if (to !== from) to.send(frame);
      return;
    }
    for (const p of this.ports) if (p !== from) p.send(frame);
  }

  close(): void {
    this.#closed = true;
    try {
      this.listener.close();
    } catch {
      // already closed
    }
    for (const p of this.ports) {
      try {
        p.conn.close();
      } catch {
        // already closed
      }
    }
  }
}

/** Listens on unix socket `path` (replacing a stale socket file nobody serves). */
export async function listenSwitch(path: string): Promise<Deno.Listener> {
  try {
    const st = Deno.lstatSync(path);
    if (!st.isSocket) throw new Error(`${path} exists and is not a socket`);
    try {
      const c = await Deno.connect({ transport: "unix", path });
      c.close();
      throw new Error(`a switch already serves ${path}`);
    } catch (err) {
      if (!(err instanceof Deno.errors.ConnectionRefused)) throw err;
      Deno.removeSync(path);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return Deno.listen({ transport: "unix", path });
}

/** `denovisor switch PATH`: serves the switch until SIGINT or SIGTERM. */
export async function switchMain(argv: string[]): Promise<number> {
  const [path, ...extra] = argv;
  if (path === undefined || path === "--help" || path === "-h" || extra.length > 0) {
    console.error(
      "Usage: deno run -A mod.ts switch PATH\n" +
        "Serves a learning Ethernet switch on unix socket PATH; VMs join with --net switch=PATH",
    );
    return path === "--help" || path === "-h" ? 0 : 2;
  }
  let listener: Deno.Listener;
  try {
    listener = await listenSwitch(path);
  } catch (err) {
    console.error(`denovisor: switch: cannot listen on ${path}: ${(err as Error).message}`);
    return 1;
  }
  const sw = new EthernetSwitch(listener, (m) => console.error(`switch: ${m}`));
  const stop = () => sw.close();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  console.error(`switch: serving ${path}`);
  await sw.serve();
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  try {
    Deno.removeSync(path);
  } catch {
    // gone already
  }
  return 0;
}
