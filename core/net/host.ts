/**
 * The main thread's side of the VM's network backends.
 *
 * Design: the vCPU runs on a Worker whose event loop is blocked while the guest runs, so it
 * cannot await a socket. The VMM's main thread (free: it only relays the terminal) owns each
 * backend's socket and talks to the device through two {@link FrameRing}s per device, in
 * SharedArrayBuffers that cross to the Worker inside the VmConfig (`NetSpec.rings`):
 *
 * - rx (main -> vCPU): the main thread pushes each frame the switch sends; the vCPU loop's
 *   service tick (`control.service`, called between instruction slices and while the guest is
 *   halted, as the serial InputRing is polled) pops them into the guest's receive buffers. A
 *   full ring drops the frame, as a NIC with no buffers does.
 * - tx (vCPU -> main): the device pushes each frame the guest transmits and `Atomics.notify`s;
 *   the main thread waits with `Atomics.waitAsync` and writes what it pops to the socket.
 *
 * A TAP backend (`--net tap=NAME`) works the same way, its descriptor polled on Deno's FFI
 * thread pool instead of a socket read.
 *
 * No lock: each ring has one producer and one consumer. The Worker needs no network permission.
 *
 * @module
 */

import { VmmError } from "../errors.ts";
import { FrameRing } from "./frame_ring.ts";
import type { NetSpec } from "./spec.ts";
import { encodeFrame, readFrames, writeAll } from "./switch.ts";
import { openTap } from "./tap.ts";

/** The running backends of a VM's `--net` devices. */
export interface NetBackends {
  /** Stops the pumps and closes the sockets. */
  close(): void;
}

/**
 * Connects each of `nets` to its backend and gives it `rings` (so call it before the config
 * is posted to the Worker). Throws a VmmError naming a switch that cannot be reached.
 */
export async function startNetBackends(nets: NetSpec[]): Promise<NetBackends> {
  const closers: (() => void)[] = [];
  const close = () => closers.forEach((c) => c());
  try {
    for (const n of nets) {
      closers.push(n.kind === "tap" ? startTapPort(n) : await startSwitchPort(n));
    }
  } catch (err) {
    close();
    throw err;
  }
  return { close };
}

async function startSwitchPort(n: NetSpec): Promise<() => void> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: n.path });
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? "no such socket"
      : err instanceof Deno.errors.ConnectionRefused
      ? "nothing serves it"
      : (err as Error).message;
    throw new VmmError(
      `--net switch=${n.path}: cannot join the switch (${why}); start one with ` +
        `\`deno run -A mod.ts switch ${n.path}\``,
    );
  }
  const tx = new FrameRing(), rx = new FrameRing();
  n.rings = { tx: tx.buffer, rx: rx.buffer };
  let closed = false;
  (async () => {
    try {
      for await (const frame of readFrames(conn)) {
        if (closed) return;
        rx.push(frame); // full: dropped
      }
    } catch {
      // The switch went away or spoke nonsense: the link is down from here.
    }
  })();
  (async () => {
    try {
      while (!closed) {
        await tx.waitAsync(1000);
        for (let f = tx.pop(); f !== null && !closed; f = tx.pop()) {
          await writeAll(conn, encodeFrame(f));
        }
      }
    } catch {
      // The switch went away: the guest's frames are dropped (they stay in the ring).
    }
  })();
  return () => {
    closed = true;
    tx.wake();
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
}

function startTapPort(n: NetSpec): () => void {
  const tap = openTap(n.path);
  const tx = new FrameRing(), rx = new FrameRing();
  n.rings = { tx: tx.buffer, rx: rx.buffer };
  let closed = false;
  (async () => {
    try {
      while (!closed) {
        if (!(await tap.wait(250))) continue;
        for (let f = tap.read(); f !== null && !closed; f = tap.read()) rx.push(f);
      }
    } catch {
      // The interface went away: the link is down from here.
    }
  })();
  (async () => {
    while (!closed) {
      await tx.waitAsync(1000);
      for (let f = tx.pop(); f !== null && !closed; f = tx.pop()) tap.write(f);
    }
  })();
  return () => {
    closed = true;
    tx.wake();
    tap.close();
  };
}
