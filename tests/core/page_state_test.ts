import { assertEquals, assertThrows, assertTrue } from "../_assert.ts";
import { GuestMemory } from "../../core/memory.ts";
import { CODE, H_DIRTY_ACK, H_GEN, PAGE_SIZE, PageState, STALE } from "../../core/page_state.ts";
import type { WriteRequest } from "./_memory_writer_worker.ts";

/** A second view over the same RAM and page-state map, as a sandboxed device's Worker makes. */
function secondView(mem: GuestMemory): GuestMemory {
  return new GuestMemory(mem.buffer, mem.size, mem.pages.buffer);
}

Deno.test("guest memory's page-state map is shared: another view's writes mark pages dirty", () => {
  const mem = GuestMemory.allocate(1 << 20);
  assertTrue(mem.pages.buffer instanceof SharedArrayBuffer);
  const other = secondView(mem);
  other.write(0x3ff0, new Uint8Array(0x20)); // pages 3 and 4
  other.writeU32(0x8000, 1);
  other.fill(0x10_000, 3 * PAGE_SIZE); // pages 16..18
  mem.writeU8(0xfffff, 7);
  const { pages } = mem.pages.takeDirty();
  assertEquals(pages, [3, 4, 8, 16, 17, 18, 255]);
  assertEquals(mem.pages.takeDirty().pages, [], "taking clears the bits");
  // A zero-length write marks nothing.
  other.write(0x5000, new Uint8Array(0));
  assertEquals(mem.pages.takeDirty().pages, []);
});

Deno.test("dirty bits are per consumer: each takes its own, writes set them all", () => {
  const mem = GuestMemory.allocate(64 * PAGE_SIZE);
  secondView(mem).writeU16(5 * PAGE_SIZE, 1);
  assertEquals(mem.pages.takeDirty(0).pages, [5]);
  assertTrue(mem.pages.isDirty(5, 1), "consumer 1 has not looked yet");
  assertEquals(mem.pages.takeDirty(1).pages, [5]);
  assertTrue(!mem.pages.isDirty(5, 0) && !mem.pages.isDirty(5, 1));
});

Deno.test("a write to a page holding code marks it STALE and bumps the generation", () => {
  const mem = GuestMemory.allocate(64 * PAGE_SIZE);
  const ps = mem.pages;
  ps.code[2] = CODE; // what a vCPU does when it decodes from page 2
  const gen = Atomics.load(ps.header, H_GEN);
  secondView(mem).writeU32(3 * PAGE_SIZE, 1); // not a code page: nothing for the vCPU to do
  assertEquals(Atomics.load(ps.header, H_GEN), gen);
  secondView(mem).writeU32(2 * PAGE_SIZE + 8, 0x90909090);
  assertEquals(ps.code[2], CODE | STALE);
  assertTrue(Atomics.load(ps.header, H_GEN) !== gen);
  const dropped: number[] = [];
  assertEquals(ps.takeStale((p) => dropped.push(p)), 1);
  assertEquals(dropped, [2]);
  assertEquals(ps.code[2], 0, "the vCPU re-marks the page when it decodes from it again");
});

Deno.test("a write from another thread reaches this thread's page-state map", async () => {
  const mem = GuestMemory.allocate(64 * PAGE_SIZE);
  mem.pages.code[9] = CODE;
  const worker = new Worker(new URL("./_memory_writer_worker.ts", import.meta.url), {
    type: "module",
  });
  try {
    const messages: string[] = [];
    let wake: () => void = () => {};
    worker.onmessage = (e: MessageEvent<string>) => {
      messages.push(e.data);
      wake();
    };
    const next = () => new Promise<void>((r) => messages.length ? r() : (wake = r));
    await next();
    assertEquals(messages.shift(), "ready");
    worker.postMessage(
      {
        ram: mem.buffer as SharedArrayBuffer,
        size: mem.size,
        pageState: mem.pages.buffer as SharedArrayBuffer,
        gpa: 9 * PAGE_SIZE + 0x100,
        bytes: [0xb8, 2, 0, 0, 0, 0xc3],
        delayMs: 0,
      } satisfies WriteRequest,
    );
    await next();
    assertEquals(messages.shift(), "written");
    assertEquals(mem.readU8(9 * PAGE_SIZE + 0x100), 0xb8);
    assertEquals(mem.pages.code[9], CODE | STALE);
    assertEquals(mem.pages.takeDirty().pages, [9]);
  } finally {
    worker.terminate();
  }
});

Deno.test("KVM's dirty bitmap feeds the same dirty bits; taking them asks vCPUs to re-arm", () => {
  const ps = new PageState(40);
  ps.markDirtyBitmap(new Uint8Array([0b1000_0001, 0, 0b10]), 8); // pages 8, 15 and 25
  ps.markDirty(39);
  const before = Atomics.load(ps.header, H_GEN);
  const { pages, epoch } = ps.takeDirty();
  assertEquals(pages, [8, 15, 25, 39]);
  assertTrue(Atomics.load(ps.header, H_GEN) !== before, "a vCPU must drop its write-TLB entries");
  assertTrue(!ps.dirtyAcked(epoch));
  Atomics.store(ps.header, H_DIRTY_ACK, epoch); // what the interpreter's pageSync does
  assertTrue(ps.dirtyAcked(epoch));
});

Deno.test("a page-state map handed to a view of another size is refused", () => {
  const mem = GuestMemory.allocate(64 * PAGE_SIZE);
  assertThrows(
    () => new GuestMemory(mem.buffer, 32 * PAGE_SIZE, mem.pages.buffer),
    RangeError,
    "tracks 64 pages, not 32",
  );
});
