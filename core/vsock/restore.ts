/**
 * The vsock of a snapshot, read on the main thread before a restore: its guest CID and the unix
 * socket its host side listened on (the device's recorded `cid` and `uds` options), so the
 * restoring VMM listens there again, as Firecracker does (the socket must be free then; a
 * `vsock_override` of `PUT /snapshot/load` picks another).
 *
 * @module
 */

import type { VsockSpec } from "./spec.ts";

/** The vsock device `statePath` records, or null (none, or a file the Worker will refuse). */
export async function snapshotVsock(
  files: { statePath: string; memPath: string },
): Promise<VsockSpec | null> {
  const { readSnapshot } = await import("../snapshot/mod.ts");
  let devices;
  try {
    devices = readSnapshot(files.statePath, files.memPath).machine.devices;
  } catch {
    return null; // the Worker reads it again and says what is wrong with it
  }
  for (const d of devices) {
    const src = d.source;
    if (src?.kind !== "builtin" || !src.specifier.endsWith("/virtio/vsock.ts")) continue;
    const cid = Number(src.options.cid), uds = src.options.uds;
    if (Number.isSafeInteger(cid) && typeof uds === "string" && uds !== "") return { cid, uds };
  }
  return null;
}
