/**
 * The destination side of a live migration: accepts one connection, builds the machine the
 * source's HELLO describes, writes the pages as they come, and on the final STATE loads it and
 * says DONE; the caller then runs the VM. Anything wrong (bad magic or version, a checksum, a
 * page outside RAM, a state this build cannot load, the source giving up or vanishing) is a
 * MigrationError, told to the source too when the connection still works.
 */

import type { Machine, MachineState } from "../machine.ts";
import {
  applyPages,
  decodePages,
  FRAME_CANCEL,
  FRAME_DONE,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_READY,
  FRAME_STATE,
  FRAME_SYNC,
  FRAME_SYNC_ACK,
  frameJson,
  frameName,
  FrameReader,
  jsonFrame,
  MigrationError,
  writeAll,
} from "./wire.ts";
import { type MigrationStatus, newStatus } from "./send.ts";
import {
  formatMigrationUrl,
  listenerUrl,
  type MigrationConn,
  type MigrationListener,
} from "./url.ts";

/** How the destination builds the machine a HELLO describes (RAM zero, state not loaded). */
export type BuildForState = (state: MachineState, memSize: number) => Promise<Machine>;

/** Options of `receiveMigration`. */
export interface ReceiveOptions {
  build: BuildForState;
  progress?: (status: MigrationStatus) => void;
}

/** What arrived: the machine, state loaded, and whether it was running at the source. */
export interface Received {
  machine: Machine;
  resume: boolean;
}

/**
 * Waits on `listener` for one source and receives its VM, ready to run; closes the listener.
 */
export async function receiveMigration(
  listener: MigrationListener,
  opts: ReceiveOptions,
): Promise<Received> {
  const status = newStatus("destination", formatMigrationUrl(listenerUrl(listener)));
  const report = () => opts.progress?.({ ...status });
  report();
  let conn: MigrationConn;
  try {
    conn = await listener.accept();
  } finally {
    listener.close();
  }
  const t0 = performance.now();
  const reader = new FrameReader(conn);
  let machine: Machine | null = null;
  let resume = true;
  const refuse = async (message: string) => {
    await writeAll(conn, jsonFrame(FRAME_ERROR, { message })).catch(() => {});
  };
  try {
    try {
      await reader.preamble();
      const hello = await expect(reader, FRAME_HELLO);
      const { memSize, state } = frameJson<{ memSize: number; state: MachineState }>(hello);
      if (!Number.isSafeInteger(memSize) || memSize <= 0 || memSize % 4096 !== 0) {
        throw new MigrationError(`HELLO gives no valid memory size (${memSize})`);
      }
      machine = await opts.build(state, memSize);
      // Loaded once now: a state this build cannot load is refused before any RAM moves, and
      // the code that loads it is warm when the final state comes (first load: ~5 ms, then
      // ~0.3 ms, all of it inside the downtime).
      machine.restoreState(state);
      // Fresh RAM is zero: a zero page not written since needs no work.
      const written = new Uint8Array(Math.ceil(memSize / 4096));
      await writeAll(conn, jsonFrame(FRAME_READY, { backend: machine.backend.name }));
      status.state = "active";
      report();
      let frames = 0;
      for (;;) {
        const frame = await reader.next();
        status.bytes = reader.bytes;
        if (frame === null) {
          throw new MigrationError("the source closed the connection before the migration ended");
        }
        if (frame.type === FRAME_PAGES) {
          const entries = decodePages(frame.payload, machine.memory.size);
          applyPages(machine.memory, entries, written);
          status.pages += entries.length;
          for (const e of entries) if (e.data === null) status.zeroPages++;
          if (++frames % 64 === 0) report();
          continue;
        }
        if (frame.type === FRAME_SYNC) {
          await writeAll(conn, jsonFrame(FRAME_SYNC_ACK, {}));
          continue;
        }
        if (frame.type === FRAME_CANCEL) {
          const { reason } = frameJson<{ reason: string }>(frame);
          throw new MigrationError(`the source gave up: ${reason}`);
        }
        if (frame.type !== FRAME_STATE) {
          throw new MigrationError(`unexpected ${frameName(frame.type)} frame from the source`);
        }
        const final = frameJson<{ machine: MachineState; resume: boolean }>(frame);
        machine.restoreState(final.machine);
        resume = final.resume !== false;
        break;
      }
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      await refuse(message);
      throw err instanceof MigrationError ? err : new MigrationError(message);
    }
    await writeAll(conn, jsonFrame(FRAME_DONE, {}));
    status.state = "completed";
    status.totalMs = Math.round(performance.now() - t0);
    report();
    const m = machine;
    machine = null;
    return { machine: m, resume };
  } catch (err) {
    status.state = "failed";
    status.message = (err as Error).message;
    report();
    throw err;
  } finally {
    machine?.close();
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

async function expect(reader: FrameReader, type: number) {
  const frame = await reader.next();
  if (frame === null) throw new MigrationError("the source closed the connection at once");
  if (frame.type !== type) {
    throw new MigrationError(`the source sent ${frameName(frame.type)} where ${frameName(type)}`);
  }
  return frame;
}
