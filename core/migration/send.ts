/**
 * The source side of a live migration (pre-copy). Runs on the vCPU's thread, between slices of
 * guest time: all of RAM first, then passes over the pages dirtied meanwhile, until what is left
 * fits the downtime target at the last pass's cost per page (or the pass limit is reached); then,
 * with the vCPU paused, the last dirty pages and the machine state, and the destination's word
 * that it verified and loaded them. Any failure leaves the source machine as it was, ready to run on.
 */

import type { Machine, RunResult } from "../machine.ts";
import { PAGE_SIZE } from "../page_state.ts";
import {
  FRAME_CANCEL,
  FRAME_DONE,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_READY,
  FRAME_STATE,
  FRAME_SYNC,
  FRAME_SYNC_ACK,
  frameJson,
  frameName,
  FrameReader,
  jsonFrame,
  MigrationError,
  PAGES_PER_FRAME,
  pagesFrame,
  preamble,
  withTimeout,
  writeAll,
} from "./wire.ts";
import {
  connectMigration,
  formatMigrationUrl,
  type MigrationConn,
  type MigrationUrl,
} from "./url.ts";

/** The page-state map's dirty-log consumer bit migration and replication use. */
export const MIGRATION_DIRTY_CONSUMER = 1;
/** Default downtime target (ms). */
export const DEFAULT_DOWNTIME_MS = 50;
/** Default limit of pre-copy passes before the final stop-and-copy. */
export const DEFAULT_MAX_PASSES = 30;
/** Wall time spent sending between two guest slices (ms). */
const SEND_BUDGET_MS = 5;
/** A pass "shrank" the dirty set when it left fewer than this share of the previous one. */
const SHRINK_ENOUGH = 0.8;
/** Within this share of the downtime target, the source stops at once. */
const CLOSE_ENOUGH = 0.1;
/** How long the source waits for the destination's verdict after the last frame (ms). */
const VERDICT_TIMEOUT_MS = 30_000;

/** What `GET /migration` reports, on either side. */
export interface MigrationStatus {
  role: "source" | "destination";
  state: "setup" | "active" | "completed" | "failed";
  url: string;
  /** Pre-copy passes so far (the final stop-and-copy not counted). */
  passes: number;
  /** Pages sent or received, and those of them that were zero (no data on the wire). */
  pages: number;
  zeroPages: number;
  /** Bytes on the wire (sent by the source, received by the destination). */
  bytes: number;
  /** Pages dirtied per second during the last pass. */
  dirtyRate: number;
  /** Pages sent in the final stop-and-copy. */
  finalPages: number;
  /** From the pause at the source to the destination's word that it runs the VM (ms). */
  downtimeMs: number | null;
  totalMs: number | null;
  message?: string;
}

/** A fresh status. */
export function newStatus(role: MigrationStatus["role"], url: string): MigrationStatus {
  return {
    role,
    state: "setup",
    url,
    passes: 0,
    pages: 0,
    zeroPages: 0,
    bytes: 0,
    dirtyRate: 0,
    finalPages: 0,
    downtimeMs: null,
    totalMs: null,
  };
}

/** How the source migrates. */
export interface SendOptions {
  url: MigrationUrl;
  downtimeMs?: number;
  maxPasses?: number;
  /** Runs the guest for one slice (the caller arranges for it to return `pause`). */
  runSlice: () => RunResult;
  /** Called with the status as it changes. */
  progress?: (status: MigrationStatus) => void;
  /** Whether the destination runs the VM on arrival (false: a paused VM arrives paused). */
  resume?: boolean;
}

/** How a send ended: moved, failed (the VM runs on), or the guest ended meanwhile. */
export type SendResult =
  | { kind: "moved"; status: MigrationStatus }
  | { kind: "failed"; status: MigrationStatus; message: string }
  | { kind: "ended"; status: MigrationStatus; result: RunResult };

class GuestEnded extends Error {
  constructor(readonly result: RunResult) {
    super("the guest ended during the migration");
  }
}

/** The pages written since the consumer last looked (KVM's own log first). */
function takeDirty(machine: Machine): number[] {
  machine.backend.collectDirtyLog?.();
  return machine.memory.pages.takeDirty(MIGRATION_DIRTY_CONSUMER).pages;
}

/**
 * Migrates `machine` (paused: its `run()` returned) to `opts.url`. On "moved" the destination
 * runs the VM and this machine must not run again; otherwise it is unchanged.
 */
export async function sendMigration(machine: Machine, opts: SendOptions): Promise<SendResult> {
  const where = formatMigrationUrl(opts.url);
  const status = newStatus("source", where);
  const report = () => opts.progress?.({ ...status });
  const downtimeTarget = opts.downtimeMs ?? DEFAULT_DOWNTIME_MS;
  const maxPasses = opts.maxPasses ?? DEFAULT_MAX_PASSES;
  const t0 = performance.now();
  let conn: MigrationConn;
  try {
    conn = await connectMigration(opts.url);
  } catch (err) {
    status.state = "failed";
    status.message = `cannot connect to ${where}: ${(err as Error).message}`;
    report();
    return { kind: "failed", status, message: status.message };
  }
  const reader = new FrameReader(conn);
  const send = async (bytes: Uint8Array) => {
    await writeAll(conn, bytes);
    status.bytes += bytes.length;
  };
  /** The destination's answer to HELLO or STATE: READY/DONE, or why it refused. */
  const answer = async (want: number, timeoutMs: number): Promise<unknown> => {
    const frame = await withTimeout(reader.next(), timeoutMs, "the destination did not answer");
    if (frame === null) throw new MigrationError("the destination closed the connection");
    if (frame.type === FRAME_ERROR) {
      const { message } = frameJson<{ message: string }>(frame);
      throw new MigrationError(`the destination refused: ${message}`);
    }
    if (frame.type !== want) {
      throw new MigrationError(
        `the destination sent ${frameName(frame.type)} where ${frameName(want)} was due`,
      );
    }
    return frameJson(frame);
  };

  /** Sends `pages`, running guest slices between bursts when `live`. */
  /**
   * Sends `pages`, running guest slices between bursts when `live`. Returns the time spent
   * sending (slices excluded) per page that carried data: what the last pass will cost.
   */
  const sendPages = async (pages: number[], live: boolean): Promise<number> => {
    let burst = performance.now(), sendMs = 0, data = 0;
    for (let i = 0; i < pages.length; i += PAGES_PER_FRAME) {
      const chunk = pages.slice(i, i + PAGES_PER_FRAME);
      const { frame, dataPages } = pagesFrame(machine.memory, chunk);
      await send(frame);
      data += dataPages;
      status.pages += chunk.length;
      status.zeroPages += chunk.length - dataPages;
      if (live && performance.now() - burst >= SEND_BUDGET_MS) {
        sendMs += performance.now() - burst;
        const r = opts.runSlice();
        if (r.reason.kind !== "pause") throw new GuestEnded(r);
        burst = performance.now();
      }
    }
    sendMs += performance.now() - burst;
    return sendMs / Math.max(data, 1);
  };

  /** Sends SYNC and runs guest slices until the destination's SYNC_ACK. */
  const drain = async () => {
    await send(jsonFrame(FRAME_SYNC, {}));
    let done = false, failed: unknown = null;
    answer(FRAME_SYNC_ACK, VERDICT_TIMEOUT_MS).then(() => done = true, (e) => failed = e);
    while (!done && failed === null) {
      const r = opts.runSlice();
      if (r.reason.kind !== "pause") throw new GuestEnded(r);
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    if (failed !== null) throw failed;
  };

  try {
    await send(preamble());
    await send(
      jsonFrame(FRAME_HELLO, { memSize: machine.memory.size, state: machine.saveState() }),
    );
    await answer(FRAME_READY, VERDICT_TIMEOUT_MS);
    status.state = "active";
    report();

    // Pass 1 sends all of RAM; the dirty log restarts first, so every later write is seen.
    takeDirty(machine);
    let pending: number[] = Array.from(
      { length: Math.ceil(machine.memory.size / PAGE_SIZE) },
      (_, i) => i,
    );
    let previousDirty = Infinity;
    for (;;) {
      const passStart = performance.now();
      const msPerPage = await sendPages(pending, true);
      // The destination catches up while the guest runs: what it has not applied yet would
      // otherwise be applied inside the downtime.
      await drain();
      status.passes++;
      const dirty = takeDirty(machine);
      const passMs = performance.now() - passStart;
      status.dirtyRate = passMs > 0 ? Math.round(dirty.length / (passMs / 1000)) : 0;
      // What sending the dirty pages would cost at this pass's rate (scan, checksum, write).
      const estimateMs = dirty.length * msPerPage;
      report();
      pending = dirty;
      // Within the target, another pass still pays while the dirty set keeps shrinking (a
      // guest with a small working set converges far below the target, as QEMU's does); one
      // that rewrites as fast as we send stops shrinking, and then the target decides.
      const shrinking = dirty.length < previousDirty * SHRINK_ENOUGH;
      previousDirty = dirty.length;
      if (status.passes >= maxPasses) break;
      if (
        estimateMs <= downtimeTarget && (estimateMs <= downtimeTarget * CLOSE_ENOUGH || !shrinking)
      ) {
        break;
      }
      // Not converged: the guest runs a slice before the next pass.
      const r = opts.runSlice();
      if (r.reason.kind !== "pause") throw new GuestEnded(r);
      pending = pending.concat(takeDirty(machine));
      pending = [...new Set(pending)].sort((a, b) => a - b);
    }

    // Stop-and-copy: the vCPU is paused (no slice since the last take).
    const pauseAt = performance.now();
    status.finalPages = pending.length;
    await sendPages(pending, false);
    await send(
      jsonFrame(FRAME_STATE, { machine: machine.saveState(), resume: opts.resume ?? true }),
    );
    await answer(FRAME_DONE, VERDICT_TIMEOUT_MS);
    const now = performance.now();
    status.downtimeMs = Math.round((now - pauseAt) * 100) / 100;
    status.totalMs = Math.round(now - t0);
    status.state = "completed";
    report();
    return { kind: "moved", status };
  } catch (err) {
    status.state = "failed";
    status.totalMs = Math.round(performance.now() - t0);
    const ended = err instanceof GuestEnded;
    status.message = ended
      ? "the guest ended during the migration"
      : `${(err as Error).message ?? err}`;
    if (!(err instanceof MigrationError) && !ended) {
      // A write (or read) failed: the destination may have refused and closed while pages were
      // still going out, its ERROR frame waiting unread here. Its reason beats "Broken pipe".
      const refusal = await pendingRefusal(reader);
      const closed = err instanceof Deno.errors.BrokenPipe ||
        err instanceof Deno.errors.ConnectionReset;
      status.message = refusal !== null
        ? `the destination refused: ${refusal}`
        : closed
        ? `the destination closed the connection (${status.message})`
        : `the connection failed: ${status.message}`;
    }
    // Tell the destination, when it still listens, so it stops waiting.
    await writeAll(conn, jsonFrame(FRAME_CANCEL, { reason: status.message })).catch(() => {});
    report();
    return ended
      ? { kind: "ended", status, result: (err as GuestEnded).result }
      : { kind: "failed", status, message: status.message };
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** The message of an ERROR frame the destination sent before the connection broke, or null. */
async function pendingRefusal(reader: FrameReader): Promise<string | null> {
  try {
    const frame = await withTimeout(reader.next(), 1000, "no ERROR frame");
    if (frame?.type !== FRAME_ERROR) return null;
    return frameJson<{ message: string }>(frame).message;
  } catch {
    return null;
  }
}
