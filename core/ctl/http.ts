/**
 * A small HTTP/1.1 client over a unix socket for `ctl` (and the API tests and bench): one
 * request per connection (Connection: close), JSON bodies, chunked answers understood.
 */

/** An answer from the VMM. */
export interface Reply {
  status: number;
  body: string;
  json: Record<string, unknown> | null;
}

/** Thrown when the socket cannot be reached or the answer does not come in time. */
export class ConnectError extends Error {}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * Sends `method url` to the API on socket `sock`, with `body` as JSON (a string is sent as it
 * is, so tests can send malformed JSON).
 */
export async function request(
  sock: string,
  method: string,
  url: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<Reply> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: sock });
  } catch (err) {
    throw new ConnectError(`cannot connect to ${sock}: ${(err as Error).message}`);
  }
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }, timeoutMs);
  try {
    const enc = new TextEncoder();
    const payload = body === undefined
      ? new Uint8Array()
      : enc.encode(typeof body === "string" ? body : JSON.stringify(body));
    const head = enc.encode(
      `${method} ${url} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n` +
        `Connection: close\r\n\r\n`,
    );
    const req = concat([head, payload]);
    let off = 0;
    while (off < req.length) off += await conn.write(req.subarray(off));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(concat(chunks));
    const split = text.indexOf("\r\n\r\n");
    if (split < 0) throw new ConnectError(`no HTTP answer on ${sock}`);
    const headers = text.slice(0, split);
    let rest = text.slice(split + 4);
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(headers)?.[1] ?? 0);
    if (/transfer-encoding: chunked/i.test(headers)) {
      let out = "";
      for (;;) {
        const eol = rest.indexOf("\r\n");
        const size = parseInt(rest.slice(0, eol), 16);
        if (!(size > 0)) break;
        out += rest.slice(eol + 2, eol + 2 + size);
        rest = rest.slice(eol + 2 + size + 2);
      }
      rest = out;
    }
    let json: Record<string, unknown> | null = null;
    try {
      json = rest === "" ? null : JSON.parse(rest);
    } catch {
      json = null;
    }
    return { status, body: rest, json };
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    throw new ConnectError(`no answer on ${sock}: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer or the peer.
    }
  }
}
