/**
 * Reconnecting a snapshot's network cards: the main thread reads which backends (a TAP by name,
 * a switch by socket) the saved cards used, so it can connect them before the restore, as
 * Firecracker reopens the TAP its snapshot names.
 *
 * @module
 */

import { type NetSpec, savedNets } from "./spec.ts";

/**
 * The network cards a snapshot's state records (none when it cannot be read here: the worker
 * reads it again and says what is wrong with it).
 */
export async function snapshotNets(statePath: string, memPath: string): Promise<NetSpec[]> {
  try {
    // Loaded only for a restore: it brings the machine's state code to the main thread.
    const { readSnapshot } = await import("../snapshot/mod.ts");
    return savedNets(readSnapshot(statePath, memPath).machine.devices);
  } catch {
    return [];
  }
}
