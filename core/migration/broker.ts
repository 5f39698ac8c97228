/**
 * Migration sockets for a machine Worker that has no `net` permission (core/api/vmm.ts): the main
 * thread connects, listens and accepts (`SocketBroker`), and the Worker's migration code uses
 * stand-in connections and listeners (`brokeredTransport`) whose calls cross as messages. Each
 * read or write is one request and one reply; the bytes are copied, as a socket would.
 */

import {
  directTransport,
  type MigrationConn,
  type MigrationListener,
  type MigrationTransport,
  type MigrationUrl,
} from "./url.ts";

/** A request from the Worker (its `req` numbers the reply). */
export type SocketRequest =
  & { kind: "socket"; req: number }
  & (
    | { op: "connect"; url: MigrationUrl }
    | { op: "listen"; url: MigrationUrl }
    | { op: "accept"; id: number }
    | { op: "read"; id: number; size: number }
    | { op: "write"; id: number; data: Uint8Array }
    | { op: "close"; id: number }
  );

/** The main thread's answer: the request's result, or the error it threw (its class name). */
export type SocketReply =
  & { kind: "socket-reply"; req: number }
  & (
    | { ok: true; id?: number; addr?: Deno.Addr; data?: Uint8Array | null; n?: number }
    | { ok: false; name: string; message: string }
  );

/** Largest read one request asks for. */
const READ_MAX = 1 << 20;

/** The main thread's side: real sockets, by id, for one Worker. */
export class SocketBroker {
  #next = 1;
  #conns = new Map<number, MigrationConn>();
  #listeners = new Map<number, MigrationListener>();
  #post: (reply: SocketReply, transfer?: Transferable[]) => void;
  #transport: MigrationTransport;

  constructor(
    post: (reply: SocketReply, transfer?: Transferable[]) => void,
    transport: MigrationTransport = directTransport,
  ) {
    this.#post = post;
    this.#transport = transport;
  }

  /** Carries out `r` and posts its reply (none for close). */
  async handle(r: SocketRequest): Promise<void> {
    try {
      switch (r.op) {
        case "connect": {
          const conn = await this.#transport.connect(r.url);
          return this.#opened(r, this.#conns, conn, conn.remoteAddr);
        }
        case "listen": {
          const listener = await this.#transport.listen(r.url);
          return this.#opened(r, this.#listeners, listener, listener.addr);
        }
        case "accept": {
          const conn = await this.#listener(r.id).accept();
          return this.#opened(r, this.#conns, conn, conn.remoteAddr);
        }
        case "read": {
          const buf = new Uint8Array(Math.min(Math.max(r.size, 1), READ_MAX));
          const n = await this.#conn(r.id).read(buf);
          const data = n === null ? null : buf.slice(0, n);
          return this.#post({ ...this.#reply(r), data }, data === null ? [] : [data.buffer]);
        }
        case "write": {
          const conn = this.#conn(r.id);
          let put = 0;
          while (put < r.data.length) put += await conn.write(r.data.subarray(put));
          return this.#post({ ...this.#reply(r), n: put });
        }
        case "close": {
          const c = this.#conns.get(r.id) ?? this.#listeners.get(r.id);
          this.#conns.delete(r.id);
          this.#listeners.delete(r.id);
          try {
            c?.close();
          } catch {
            // Closed already (its peer went away).
          }
          return;
        }
      }
    } catch (err) {
      const e = err as Error;
      this.#post({ kind: "socket-reply", req: r.req, ok: false, name: e.name, message: e.message });
    }
  }

  /** Closes every socket still open (the Worker ended). */
  close(): void {
    for (const c of [...this.#conns.values(), ...this.#listeners.values()]) {
      try {
        c.close();
      } catch {
        // Closed already.
      }
    }
    this.#conns.clear();
    this.#listeners.clear();
  }

  #reply(r: SocketRequest): { kind: "socket-reply"; req: number; ok: true } {
    return { kind: "socket-reply", req: r.req, ok: true };
  }

  /** Keeps the socket `r` opened under a new id and answers with the id and its address. */
  #opened<T>(r: SocketRequest, map: Map<number, T>, socket: T, addr: Deno.Addr): void {
    const id = this.#next++;
    map.set(id, socket);
    this.#post({ ...this.#reply(r), id, addr });
  }

  #conn(id: number): MigrationConn {
    const c = this.#conns.get(id);
    if (c === undefined) throw new Deno.errors.BadResource("the connection is closed");
    return c;
  }

  #listener(id: number): MigrationListener {
    const l = this.#listeners.get(id);
    if (l === undefined) throw new Deno.errors.BadResource("the listener is closed");
    return l;
  }
}

/** The error the main thread's socket threw, as the same class where Deno has one. */
function rebuild(name: string, message: string): Error {
  const Class = (Deno.errors as Record<string, unknown>)[name];
  return typeof Class === "function"
    ? new (Class as ErrorConstructor)(message)
    : new Error(message);
}

/**
 * The Worker's side: a transport whose sockets live on the main thread. `post` sends a request;
 * the Worker hands each `socket-reply` it receives to the returned `deliver`.
 */
export function brokeredTransport(
  post: (request: SocketRequest, transfer?: Transferable[]) => void,
): { transport: MigrationTransport; deliver: (reply: SocketReply) => void } {
  let next = 1;
  const waiting = new Map<number, (reply: SocketReply) => void>();
  type Op = SocketRequest extends infer R ? R extends unknown ? Omit<R, "kind" | "req"> : never
    : never;
  const call = (op: Op, transfer?: Transferable[]) => {
    const req = next++;
    return new Promise<SocketReply & { ok: true }>((resolve, reject) => {
      waiting.set(req, (r) => r.ok ? resolve(r) : reject(rebuild(r.name, r.message)));
      post({ kind: "socket", req, ...op } as SocketRequest, transfer);
    });
  };
  const conn = (id: number, remoteAddr: Deno.Addr): MigrationConn => ({
    remoteAddr,
    async read(p: Uint8Array): Promise<number | null> {
      const r = await call({ op: "read", id, size: p.length });
      if (r.data === null || r.data === undefined) return null;
      p.set(r.data);
      return r.data.length;
    },
    async write(p: Uint8Array): Promise<number> {
      const data = p.slice(); // a copy that can be transferred (p may view guest RAM)
      return (await call({ op: "write", id, data }, [data.buffer])).n!;
    },
    close: () => post({ kind: "socket", req: next++, op: "close", id }),
  });
  const transport: MigrationTransport = {
    async connect(url) {
      const r = await call({ op: "connect", url });
      return conn(r.id!, r.addr!);
    },
    async listen(url) {
      const r = await call({ op: "listen", url });
      const id = r.id!;
      return {
        addr: r.addr!,
        async accept() {
          const a = await call({ op: "accept", id });
          return conn(a.id!, a.addr!);
        },
        close: () => post({ kind: "socket", req: next++, op: "close", id }),
      };
    },
  };
  const deliver = (reply: SocketReply) => {
    const w = waiting.get(reply.req);
    waiting.delete(reply.req);
    w?.(reply);
  };
  return { transport, deliver };
}
