/**
 * A Worker for the page-state tests: writes guest RAM through a GuestMemory view of its own over
 * the buffers it is sent, as a sandboxed device's Worker does. Posts "ready" once loaded and
 * "written" after each write.
 */
import { GuestMemory } from "../../core/memory.ts";

/** What the test sends: the RAM and page-state buffers, and what to write where. */
export interface WriteRequest {
  ram: SharedArrayBuffer;
  size: number;
  pageState: SharedArrayBuffer;
  gpa: number;
  bytes: number[];
  /** Milliseconds to wait first (the sender may be busy running the guest meanwhile). */
  delayMs: number;
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WriteRequest>) => void) | null;
  postMessage(message: unknown): void;
};

scope.onmessage = (e) => {
  const { ram, size, pageState, gpa, bytes, delayMs } = e.data;
  const memory = new GuestMemory(ram, size, pageState);
  if (delayMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, delayMs);
  memory.write(gpa, new Uint8Array(bytes));
  scope.postMessage("written");
};
scope.postMessage("ready");
