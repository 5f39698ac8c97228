/**
 * A test host on the learning switch: it joins as one port and answers ARP requests for its
 * IPv4 address and ICMP echo requests to it, counting the echoes, so a guest's `ping` has a
 * peer without a second VM.
 */

import { encodeFrame, readFrames, writeAll } from "../../core/net/switch.ts";

/** Internet checksum (RFC 1071) of `b`. */
export function inetChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The reply to `frame` (ARP request or ICMP echo for `ip`), or null. */
export function answer(frame: Uint8Array, mac: Uint8Array, ip: Uint8Array): Uint8Array | null {
  if (frame.length < 42) return null;
  const type = (frame[12]! << 8) | frame[13]!;
  const same = (a: Uint8Array, b: Uint8Array) => a.every((x, i) => x === b[i]);
  if (type === 0x0806) {
    const op = (frame[20]! << 8) | frame[21]!;
    if (op !== 1 || !same(frame.subarray(38, 42), ip)) return null;
    const r = frame.slice(0, 42);
    r.set(frame.subarray(6, 12), 0); // to the asker
    r.set(mac, 6);
    r[21] = 2; // reply
    r.set(mac, 22); // sender: us
    r.set(ip, 28);
    r.set(frame.subarray(22, 32), 32); // target: the asker's MAC and IP
    return r;
  }
  if (type !== 0x0800) return null;
  const ihl = (frame[14]! & 0xf) * 4;
  if (frame[23] !== 1 || !same(frame.subarray(30, 34), ip)) return null;
  const icmp = 14 + ihl;
  if (frame[icmp] !== 8) return null;
  const total = (frame[16]! << 8) | frame[17]!;
  const r = frame.slice(0, 14 + total);
  r.set(frame.subarray(6, 12), 0);
  r.set(mac, 6);
  r.set(frame.subarray(30, 34), 26); // source: us
  r.set(frame.subarray(26, 30), 30); // destination: the pinger
  r[24] = r[25] = 0;
  const ipSum = inetChecksum(r.subarray(14, 14 + ihl));
  r[24] = ipSum >> 8;
  r[25] = ipSum & 0xff;
  r[icmp] = 0; // echo reply
  r[icmp + 2] = r[icmp + 3] = 0;
  const sum = inetChecksum(r.subarray(icmp, 14 + total));
  r[icmp + 2] = sum >> 8;
  r[icmp + 3] = sum & 0xff;
  return r;
}

/** A responder on the switch at `path` with `mac` and `ip` ("10.0.0.2"). */
export class PingResponder {
  /** Echo requests answered. */
  echoes = 0;
  readonly #conn: Deno.UnixConn;
  readonly #done: Promise<void>;

  private constructor(conn: Deno.UnixConn, mac: Uint8Array, ip: Uint8Array) {
    this.#conn = conn;
    this.#done = (async () => {
      try {
        for await (const frame of readFrames(conn)) {
          const r = answer(frame, mac, ip);
          if (r === null) continue;
          if (frame[12] === 0x08 && frame[13] === 0x00) this.echoes++;
          await writeAll(conn, encodeFrame(r));
        }
      } catch {
        // Closed.
      }
    })();
  }

  /** Joins the switch serving `path`. */
  static async join(path: string, mac: string, ip: string): Promise<PingResponder> {
    const conn = await Deno.connect({ transport: "unix", path });
    return new PingResponder(
      conn,
      Uint8Array.from(mac.split(":").map((h) => parseInt(h, 16))),
      Uint8Array.from(ip.split(".").map(Number)),
    );
  }

  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    await this.#done;
  }
}
