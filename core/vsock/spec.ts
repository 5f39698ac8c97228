/**
 * The `--vsock cid=N,uds=PATH` specification (and `PUT /vsock`'s body, Firecracker's `Vsock`):
 * the guest's CID and the unix socket of its host side.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** A virtio-vsock device: the guest's CID and where its host side listens. */
export interface VsockSpec {
  /** The guest's CID (3 to 2^32 - 2). */
  cid: number;
  /**
   * The unix socket host clients connect to (`CONNECT <port>\n`); a guest connection to host
   * port P goes to `<uds>_P`.
   */
  uds: string;
  /**
   * The message rings the main thread's host side fills and drains (set by `startVsockHost`
   * before the config crosses to the vCPU's thread); absent, the guest's connections are
   * refused.
   */
  rings?: { tx: SharedArrayBuffer; rx: SharedArrayBuffer };
}

const USE = "use cid=N,uds=PATH (N from 3 to 4294967294)";

/** Checks a guest CID given as text or a JSON number; throws a UsageError saying `what`. */
export function parseCid(value: unknown, what: string): number {
  const n = typeof value === "number"
    ? value
    : typeof value === "string" && /^\d+$/.test(value)
    ? Number(value)
    : NaN;
  if (!Number.isSafeInteger(n) || n < 3 || n > 0xffff_fffe) {
    throw new UsageError(
      `${what}: guest CID ${JSON.stringify(value)} is not allowed: give a whole number from 3 ` +
        `to 4294967294 (0, 1 and 2 are the hypervisor's, loopback's and the host's)`,
    );
  }
  return n;
}

/** Checks a host socket path; throws a UsageError saying `what`. */
export function checkUdsPath(path: unknown, what: string): string {
  if (typeof path !== "string" || path === "" || path.includes("\0")) {
    throw new UsageError(`${what}: the uds path must be a non-empty file path`);
  }
  // sun_path holds 108 bytes with the NUL; `<uds>_4294967295` must fit too.
  if (new TextEncoder().encode(path).length + 11 > 107) {
    throw new UsageError(
      `${what}: uds path "${path}" is too long for a unix socket (with "_PORT" appended it ` +
        `must stay within 107 bytes): pick a shorter path`,
    );
  }
  return path;
}

/** Parses `--vsock cid=N,uds=PATH`. */
export function parseVsock(spec: string): VsockSpec {
  let cid: number | undefined, uds: string | undefined;
  const what = `--vsock "${spec}"`;
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    const k = eq < 0 ? part : part.slice(0, eq), v = eq < 0 ? "" : part.slice(eq + 1);
    if (k === "cid" && cid === undefined) cid = parseCid(v, what);
    else if (k === "uds" && uds === undefined) uds = checkUdsPath(v, what);
    else throw new UsageError(`${what}: unknown or repeated option "${part}" (${USE})`);
  }
  if (cid === undefined || uds === undefined) {
    throw new UsageError(`${what}: ${cid === undefined ? "cid" : "uds"} is missing (${USE})`);
  }
  return { cid, uds };
}
