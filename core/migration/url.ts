/**
 * Migration endpoints, in the spelling of QEMU and Cloud Hypervisor: `tcp:HOST:PORT` (HOST may
 * be an IPv6 address in brackets) or `unix:PATH`.
 */

import { UsageError } from "../errors.ts";

/** A parsed migration endpoint. */
export type MigrationUrl =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "unix"; path: string };

/** Parses `url`; `what` names the flag or field in the error (e.g. "--incoming"). */
export function parseMigrationUrl(url: string, what: string): MigrationUrl {
  const usage = `use tcp:HOST:PORT (e.g. tcp:127.0.0.1:4444) or unix:PATH`;
  if (url.startsWith("unix:")) {
    const path = url.slice(5);
    if (path === "") throw new UsageError(`${what} "${url}" has no socket path: ${usage}`);
    return { transport: "unix", path };
  }
  if (url.startsWith("tcp:")) {
    const rest = url.slice(4);
    const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d{1,5})$/.exec(rest);
    if (m === null) {
      throw new UsageError(`${what} "${url}" is not HOST:PORT after "tcp:": ${usage}`);
    }
    const port = Number(m[2]);
    if (port > 65535) throw new UsageError(`${what} "${url}": port ${port} is above 65535`);
    const hostname = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!;
    return { transport: "tcp", hostname, port };
  }
  throw new UsageError(`${what} "${url}" has an unknown transport: ${usage}`);
}

/** `url` spelt back (after parsing: a normalised form for messages). */
export function formatMigrationUrl(url: MigrationUrl): string {
  if (url.transport === "unix") return `unix:${url.path}`;
  const host = url.hostname.includes(":") ? `[${url.hostname}]` : url.hostname;
  return `tcp:${host}:${url.port}`;
}

/** A migration connection: the part of Deno.Conn the migration code uses. */
export type MigrationConn = Pick<Deno.Conn, "read" | "write" | "close" | "remoteAddr">;

/** A migration listener: the part of Deno.Listener the migration code uses. */
export interface MigrationListener {
  readonly addr: Deno.Addr;
  accept(): Promise<MigrationConn>;
  close(): void;
}

/** Opens migration sockets: here (`directTransport`), or on the main thread (broker.ts). */
export interface MigrationTransport {
  connect(url: MigrationUrl): Promise<MigrationConn>;
  listen(url: MigrationUrl): Promise<MigrationListener>;
}

/** Sockets opened by this thread (which needs `net`, or read/write of a unix socket's path). */
export const directTransport: MigrationTransport = {
  async connect(url) {
    if (url.transport === "unix") return await Deno.connect({ transport: "unix", path: url.path });
    const conn = await Deno.connect({ transport: "tcp", hostname: url.hostname, port: url.port });
    conn.setNoDelay(true); // frames are written whole: do not wait to coalesce them
    return conn;
  },
  listen(url) {
    if (url.transport === "tcp") {
      return Promise.resolve(
        Deno.listen({ transport: "tcp", hostname: url.hostname, port: url.port }),
      );
    }
    try {
      if (Deno.statSync(url.path).isSocket) Deno.removeSync(url.path); // a stale socket
    } catch {
      // Nothing there.
    }
    return Promise.resolve(Deno.listen({ transport: "unix", path: url.path }));
  },
};

let transport: MigrationTransport = directTransport;

/** Routes this thread's migration sockets through `t` (a confined Worker: the broker). */
export function setMigrationTransport(t: MigrationTransport): void {
  transport = t;
}

/** Opens a connection to `url`. */
export function connectMigration(url: MigrationUrl): Promise<MigrationConn> {
  return transport.connect(url);
}

/** Listens on `url` (a stale unix socket file is replaced). */
export function listenMigration(url: MigrationUrl): Promise<MigrationListener> {
  return transport.listen(url);
}

/** Where a listener actually listens (the port the kernel picked for port 0). */
export function listenerUrl(listener: MigrationListener): MigrationUrl {
  const a = listener.addr;
  if (a.transport === "tcp") return { transport: "tcp", hostname: a.hostname, port: a.port };
  return { transport: "unix", path: (a as Deno.UnixAddr).path };
}
