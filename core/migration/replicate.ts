/**
 * High availability by continuous checkpointing, in the manner of Remus: a primary runs the VM
 * in epochs of `checkpointMs` and after each one, paused, sends a standby the pages dirtied in
 * it and the machine state (a CHECKPOINT frame), then waits for the standby's ACK before it lets
 * the epoch's console output out and runs the next epoch. The standby stages each epoch's pages
 * and applies them to its copy of RAM only when the CHECKPOINT arrives whole and verified, so
 * its copy is always the last acknowledged checkpoint. When the primary is lost (connection
 * closed, or silent for `failoverMs`), the standby loads that checkpoint and runs the VM.
 *
 * Output commit: what the guest printed during an epoch is released only after that epoch's
 * checkpoint is acknowledged, so a failover never shows output the standby's copy did not
 * produce. The checkpoint carries that output and how much was released before it, so a
 * standby sharing a `--serial file:` with the primary writes what the primary was acknowledged
 * for but died before writing: the log holds every byte exactly once.
 *
 * Unlike Remus, the primary waits for each ACK paused (no speculative execution), which costs
 * the round trip per epoch; and a primary that gets no ACK within `ackTimeoutMs` stops (fences
 * itself) rather than run on unprotected, since the standby may already have taken over.
 */

import type { Machine, MachineState, RunResult } from "../machine.ts";
import { exitStatusOf } from "../machine.ts";
import type { ByteSink } from "../serial_io.ts";
import { PAGE_SIZE } from "../page_state.ts";
import {
  applyPages,
  decodePages,
  FRAME_ACK,
  FRAME_CHECKPOINT,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_READY,
  FRAME_TAKEOVER,
  frameJson,
  frameName,
  FrameReader,
  jsonFrame,
  MigrationError,
  type PageEntry,
  PAGES_PER_FRAME,
  pagesFrame,
  preamble,
  withTimeout,
  writeAll,
} from "./wire.ts";
import { MIGRATION_DIRTY_CONSUMER } from "./send.ts";
import {
  connectMigration,
  formatMigrationUrl,
  type MigrationConn,
  type MigrationListener,
  type MigrationUrl,
} from "./url.ts";

/** Default epoch length (ms). */
export const DEFAULT_CHECKPOINT_MS = 100;
/** How long the primary waits for an ACK before it fences itself (ms). */
export const ACK_TIMEOUT_MS = 2000;
/** How long a silent primary is given before the standby takes over (ms). */
export const FAILOVER_MS = 500;

/**
 * The console sink between the guest and the user: with `hold` set, bytes wait in `pending`
 * until `release()` (an acknowledged checkpoint) or are dropped by `discard()`.
 */
export class OutputGate implements ByteSink {
  hold = false;
  /** Bytes let out so far. */
  released = 0;
  #sink: ByteSink | null;
  #pending: Uint8Array[] = [];

  constructor(sink: ByteSink | null) {
    this.#sink = sink;
  }

  writeSync(bytes: Uint8Array): number {
    if (!this.hold) {
      this.#out(bytes);
      return bytes.length;
    }
    this.#pending.push(bytes.slice());
    return bytes.length;
  }

  /** What waits for the next acknowledgement. */
  pending(): Uint8Array {
    const n = this.#pending.reduce((a, b) => a + b.length, 0);
    const out = new Uint8Array(n);
    let at = 0;
    for (const b of this.#pending) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }

  /** Lets the pending bytes out. */
  release(): void {
    const all = this.pending();
    this.#pending = [];
    if (all.length > 0) this.#out(all);
  }

  discard(): void {
    this.#pending = [];
  }

  #out(bytes: Uint8Array): void {
    let put = 0;
    while (put < bytes.length) {
      put += this.#sink === null ? bytes.length - put : this.#sink.writeSync(bytes.subarray(put));
    }
    this.released += bytes.length;
  }
}

/** A checkpoint's CHECKPOINT payload. */
interface Checkpoint {
  epoch: number;
  machine: MachineState;
  /** The epoch's console output, and the bytes released before it. */
  output: Uint8Array;
  outputBase: number;
  /** Set on the last checkpoint of a guest that ended: the standby ends with this status. */
  ended?: { status: number; message?: string };
}

/** What the primary reports as it runs. */
export interface ReplicationStats {
  checkpoints: number;
  /** Bytes on the wire, in all and for the last checkpoint. */
  bytes: number;
  lastCheckpointBytes: number;
  /** Time the guest stood paused for checkpoints, in all (ms). */
  pausedMs: number;
  runMs: number;
}

/** How a primary's run ended. */
export type PrimaryEnd =
  | { kind: "ended"; result: RunResult; stats: ReplicationStats }
  /** The standby process is gone (its end of the connection closed): the VM runs on here. */
  | { kind: "unprotected"; message: string; stats: ReplicationStats }
  | { kind: "fenced"; message: string; stats: ReplicationStats }
  | { kind: "failed"; message: string };

/** Options of `runPrimary`. */
export interface PrimaryOptions {
  url: MigrationUrl;
  checkpointMs?: number;
  ackTimeoutMs?: number;
  /** Runs the guest for about `ms` of wall time. */
  runSlice: (ms: number) => RunResult;
  /** The machine's console sink (its `hold` is set here). */
  gate: OutputGate;
  log?: (message: string) => void;
}

/** The standby's end of the connection closed without a TAKEOVER: it cannot be running the VM. */
class StandbyGone extends MigrationError {}

/**
 * Runs `machine` (built, not yet run) as a replicated primary until the guest ends or the
 * standby is lost. The machine is never run before the standby holds a first checkpoint.
 */
export async function runPrimary(machine: Machine, opts: PrimaryOptions): Promise<PrimaryEnd> {
  const where = formatMigrationUrl(opts.url);
  const checkpointMs = opts.checkpointMs ?? DEFAULT_CHECKPOINT_MS;
  const ackTimeoutMs = opts.ackTimeoutMs ?? ACK_TIMEOUT_MS;
  const stats: ReplicationStats = {
    checkpoints: 0,
    bytes: 0,
    lastCheckpointBytes: 0,
    pausedMs: 0,
    runMs: 0,
  };
  const gate = opts.gate;
  gate.hold = true;
  let conn: MigrationConn;
  try {
    conn = await connectMigration(opts.url);
  } catch (err) {
    return {
      kind: "failed",
      message: `cannot reach the standby at ${where}: ${(err as Error).message}`,
    };
  }
  const reader = new FrameReader(conn);
  const send = async (b: Uint8Array) => {
    try {
      await writeAll(conn, b);
    } catch (err) {
      if (err instanceof Deno.errors.BrokenPipe || err instanceof Deno.errors.ConnectionReset) {
        throw new StandbyGone(`the standby's end of the connection closed: ${err.message}`);
      }
      throw err;
    }
    stats.bytes += b.length;
  };
  const answer = async (want: number, what: string) => {
    let frame;
    try {
      frame = await withTimeout(reader.next(), ackTimeoutMs, `the standby did not ${what}`);
    } catch (err) {
      if (err instanceof Deno.errors.ConnectionReset) {
        throw new StandbyGone("the standby's connection was reset");
      }
      throw err;
    }
    if (frame === null) throw new StandbyGone("the standby closed the connection");
    if (frame.type === FRAME_TAKEOVER) throw new MigrationError("the standby took over");
    if (frame.type === FRAME_ERROR) {
      throw new MigrationError(
        `the standby refused: ${frameJson<{ message: string }>(frame).message}`,
      );
    }
    if (frame.type !== want) {
      throw new MigrationError(
        `the standby sent ${frameName(frame.type)} where ${frameName(want)}`,
      );
    }
    return frameJson<{ epoch?: number }>(frame);
  };
  try {
    try {
      await send(preamble());
      await send(
        jsonFrame(FRAME_HELLO, {
          memSize: machine.memory.size,
          state: machine.saveState(),
          checkpointMs,
        }),
      );
      await answer(FRAME_READY, "answer HELLO");
    } catch (err) {
      return { kind: "failed", message: `the standby at ${where}: ${(err as Error).message}` };
    }
    machine.backend.collectDirtyLog?.();
    machine.memory.pages.takeDirty(MIGRATION_DIRTY_CONSUMER);
    // The first checkpoint carries all of RAM (zero pages cost a page number each).
    let pending: number[] = Array.from(
      { length: Math.ceil(machine.memory.size / PAGE_SIZE) },
      (_, i) => i,
    );
    let ended: RunResult | null = null;
    for (let epoch = 1;; epoch++) {
      const pauseAt = performance.now();
      const before = stats.bytes;
      const cp: Checkpoint = {
        epoch,
        machine: machine.saveState(),
        output: gate.pending(),
        outputBase: gate.released,
      };
      if (ended !== null) {
        const status = exitStatusOf(ended.reason);
        cp.ended = ended.reason.kind === "fault"
          ? { status, message: ended.reason.message }
          : { status };
      }
      try {
        for (let i = 0; i < pending.length; i += PAGES_PER_FRAME) {
          await send(pagesFrame(machine.memory, pending.slice(i, i + PAGES_PER_FRAME)).frame);
        }
        await send(jsonFrame(FRAME_CHECKPOINT, cp));
        const ack = await answer(FRAME_ACK, `acknowledge checkpoint ${epoch}`);
        if (ack.epoch !== epoch) {
          throw new MigrationError(
            `the standby acknowledged checkpoint ${ack.epoch}, not ${epoch}`,
          );
        }
      } catch (err) {
        if (ended !== null) {
          // The guest has ended here: this copy is the only one; its output is let out.
          gate.release();
          return { kind: "ended", result: ended, stats };
        }
        // A standby that took over (it found this primary too slow) said so before it closed.
        if (err instanceof StandbyGone && !(await tookOver(reader))) {
          // Nobody else runs the VM: this copy goes on, its output no longer held.
          gate.hold = false;
          gate.release();
          return {
            kind: "unprotected",
            message: `replication: the standby at ${where} is gone (${err.message}); the VM ` +
              `runs on here without a standby`,
            stats,
          };
        }
        gate.discard();
        return {
          kind: "fenced",
          message: `replication: the standby at ${where} was lost (${(err as Error).message}); ` +
            `this copy stops so that only the standby runs the VM, from checkpoint ${epoch - 1}`,
          stats,
        };
      }
      gate.release();
      stats.checkpoints = epoch;
      stats.lastCheckpointBytes = stats.bytes - before;
      stats.pausedMs += performance.now() - pauseAt;
      if (ended !== null) return { kind: "ended", result: ended, stats };
      const runAt = performance.now();
      const r = opts.runSlice(checkpointMs);
      stats.runMs += performance.now() - runAt;
      machine.backend.collectDirtyLog?.();
      pending = machine.memory.pages.takeDirty(MIGRATION_DIRTY_CONSUMER).pages;
      // A guest that ended still gets a last checkpoint: its output, and the standby's status.
      if (r.reason.kind !== "pause") ended = r;
    }
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** True when a TAKEOVER frame waits in the connection (read for at most 100 ms). */
async function tookOver(reader: FrameReader): Promise<boolean> {
  try {
    for (;;) {
      const f = await withTimeout(reader.next(), 100, "no frame");
      if (f === null) return false;
      if (f.type === FRAME_TAKEOVER) return true;
    }
  } catch {
    return false;
  }
}

/** How a standby's watch ended. */
export type StandbyEnd =
  | {
    kind: "failover";
    machine: Machine;
    epoch: number;
    reason: string;
    /** The last checkpoint's output and the bytes released before it. */
    output: Uint8Array;
    outputBase: number;
    /** When the primary was found lost (performance.now()). */
    lostAt: number;
    /** Checkpoints received, and bytes of the stream after the first (which holds all RAM). */
    checkpoints: number;
    incrementalBytes: number;
  }
  | { kind: "ended"; status: number; message?: string };

/** Options of `runStandby`. */
export interface StandbyOptions {
  build: (state: MachineState, memSize: number) => Promise<Machine>;
  failoverMs?: number;
  log?: (message: string) => void;
}

/**
 * Accepts one primary on `listener` and keeps the last acknowledged checkpoint of its VM, until
 * the primary is lost (failover: the machine, that checkpoint loaded) or its guest ends.
 */
export async function runStandby(
  listener: MigrationListener,
  opts: StandbyOptions,
): Promise<StandbyEnd> {
  let conn: MigrationConn;
  try {
    conn = await listener.accept();
  } finally {
    listener.close();
  }
  const failoverMs = opts.failoverMs ?? FAILOVER_MS;
  const reader = new FrameReader(conn);
  let machine: Machine | null = null;
  let committed: Checkpoint | null = null;
  let staged: PageEntry[][] = [];
  let checkpoints = 0, firstBytes = 0;
  try {
    try {
      await reader.preamble();
      const hello = await reader.next();
      if (hello === null || hello.type !== FRAME_HELLO) {
        throw new MigrationError("the primary did not open with HELLO");
      }
      const h = frameJson<{ memSize: number; state: MachineState; checkpointMs: number }>(hello);
      machine = await opts.build(h.state, h.memSize);
      // Refused now if this build cannot load it; and warm for the failover's load.
      machine.restoreState(h.state);
      await writeAll(conn, jsonFrame(FRAME_READY, { backend: machine.backend.name }));
    } catch (err) {
      await writeAll(conn, jsonFrame(FRAME_ERROR, { message: (err as Error).message }))
        .catch(() => {});
      throw err;
    }
    let reason: string;
    for (;;) {
      let frame;
      try {
        frame = await withTimeout(reader.next(), failoverMs, "the primary sent nothing");
      } catch (err) {
        reason = (err as Error).message;
        break;
      }
      if (frame === null) {
        reason = "the primary closed the connection";
        break;
      }
      if (frame.type === FRAME_PAGES) {
        staged.push(decodePages(frame.payload, machine.memory.size));
        continue;
      }
      if (frame.type !== FRAME_CHECKPOINT) {
        reason = `the primary sent an unexpected ${frameName(frame.type)} frame`;
        break;
      }
      const cp = frameJson<Checkpoint>(frame);
      for (const pages of staged) applyPages(machine.memory, pages);
      staged = [];
      committed = cp;
      checkpoints++;
      if (checkpoints === 1) firstBytes = reader.bytes;
      await writeAll(conn, jsonFrame(FRAME_ACK, { epoch: cp.epoch })).catch(() => {});
      if (cp.ended !== undefined) {
        return {
          kind: "ended",
          status: cp.ended.status,
          ...(cp.ended.message === undefined ? {} : { message: cp.ended.message }),
        };
      }
    }
    const lostAt = performance.now();
    // A primary that is still there (slow, not dead) must stop: this copy runs the VM now.
    await writeAll(conn, jsonFrame(FRAME_TAKEOVER, {})).catch(() => {});
    if (committed === null) {
      throw new MigrationError(`the primary was lost before its first checkpoint (${reason})`);
    }
    machine.restoreState(committed.machine);
    const m = machine;
    machine = null;
    return {
      kind: "failover",
      machine: m,
      epoch: committed.epoch,
      reason,
      output: committed.output,
      outputBase: committed.outputBase,
      lostAt,
      checkpoints,
      incrementalBytes: reader.bytes - firstBytes,
    };
  } finally {
    machine?.close();
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * After a failover onto a `--serial file:` the primary also wrote: the bytes of the last
 * acknowledged checkpoint's output the file lacks (the primary died between the ACK and its
 * write), appended. Returns how many were written.
 */
export function completeSharedLog(path: string, output: Uint8Array, outputBase: number): number {
  let size: number;
  try {
    size = Deno.statSync(path).size;
  } catch {
    return 0;
  }
  const want = outputBase + output.length;
  if (size >= want || size < outputBase) return 0;
  const missing = output.subarray(size - outputBase);
  const f = Deno.openSync(path, { append: true });
  try {
    let put = 0;
    while (put < missing.length) put += f.writeSync(missing.subarray(put));
  } finally {
    f.close();
  }
  return missing.length;
}
