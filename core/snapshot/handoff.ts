/**
 * A snapshot crossing from the machine Worker to the main thread, which writes its files: the
 * Worker (core/api/vmm.ts's) may write only where its VM's configuration says, and a snapshot's
 * paths arrive later, by the API. Guest RAM crosses by reference, not copied: the interpreter's
 * SharedArrayBuffer, or KVM's mmap'd address (both threads are one process).
 */

import type { SnapshotPlan } from "./mod.ts";

/** A SnapshotPlan as a message. */
export interface SnapshotHandoff {
  type: SnapshotPlan["type"];
  state: SnapshotPlan["state"];
  diffRuns?: [number, number][];
  size: number;
  ram: { buffer: SharedArrayBuffer; offset: number; length: number } | {
    address: number | bigint;
    length: number;
  };
}

/** On the Worker: `plan` as a message (its RAM by reference). */
export function handOff(plan: SnapshotPlan): SnapshotHandoff {
  const bytes = plan.memory.bytes;
  const ram = bytes.buffer instanceof SharedArrayBuffer
    ? { buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.length }
    : {
      address: Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes as Uint8Array<ArrayBuffer>)),
      length: bytes.length,
    };
  return {
    type: plan.type,
    state: plan.state,
    ...(plan.diffRuns === undefined ? {} : { diffRuns: plan.diffRuns }),
    size: plan.memory.size,
    ram,
  };
}

/** On the main thread: the plan again, viewing the same RAM. */
export function takeOver(h: SnapshotHandoff): SnapshotPlan {
  const bytes = "buffer" in h.ram
    ? new Uint8Array(h.ram.buffer, h.ram.offset, h.ram.length)
    : new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(
        Deno.UnsafePointer.create(BigInt(h.ram.address))!,
        h.ram.length,
      ),
    );
  return {
    type: h.type,
    state: h.state,
    memory: { bytes, size: h.size },
    ...(h.diffRuns === undefined ? {} : { diffRuns: h.diffRuns }),
  };
}
