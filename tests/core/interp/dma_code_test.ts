/**
 * Device writes over code the interpreter has decoded and compiled (core/page_state.ts): during
 * an MMIO access (over another routine, and over the instruction right after the access),
 * through the vCPU's own GuestMemory or another view of the same RAM, and from another thread
 * while the guest runs no I/O at all; with the block compiler on and off. Also the interpreter's
 * own stores in the dirty log.
 */
import { assertEquals, assertTrue } from "../../_assert.ts";
import { guest, runGuest } from "./_harness.ts";
import { MmioBus, PortBus } from "../../../core/bus.ts";
import { RunControl } from "../../../core/backend.ts";
import { GuestMemory } from "../../../core/memory.ts";
import { Cpu } from "../../../core/interp/cpu.ts";
import type { WriteRequest } from "../_memory_writer_worker.ts";

const MMIO_BASE = 0xc000_0000;
/** mov eax, 2; ret */
const RETURN_2 = new Uint8Array([0xb8, 2, 0, 0, 0, 0xc3]);

/** A Worker that writes guest RAM through its own view when asked (see the worker's file). */
async function startWriter(): Promise<Worker> {
  const worker = new Worker(new URL("../_memory_writer_worker.ts", import.meta.url), {
    type: "module",
  });
  await new Promise<void>((resolve) => {
    worker.onmessage = () => resolve();
  });
  worker.onmessage = null;
  return worker;
}

for (const jit of [true, false]) {
  for (const writer of ["the vCPU's GuestMemory", "another GuestMemory view"] as const) {
    Deno.test(`[jit ${jit ? "on" : "off"}] code written by ${writer} and by another thread runs`, async () => {
      const worker = await startWriter();
      try {
        let memory: GuestMemory | null = null;
        const r = runGuest(guest("dma_code"), {
          jit,
          maxSlices: 100_000,
          before: (m) => memory = m,
          mmio: {
            base: MMIO_BASE,
            length: 0x1000,
            read: () => 0,
            write: (offset, _size, value) => {
              const mem = memory!;
              if (offset === 0) {
                const view = writer === "the vCPU's GuestMemory"
                  ? mem
                  : new GuestMemory(mem.buffer, mem.size, mem.pages.buffer);
                view.write(value, RETURN_2);
              } else if (offset === 16 && value !== 0) {
                // The immediate of the instruction after the guest's access, in the same block.
                const view = writer === "the vCPU's GuestMemory"
                  ? mem
                  : new GuestMemory(mem.buffer, mem.size, mem.pages.buffer);
                view.writeU32(value, 2);
              } else if (offset === 8) {
                // Two bytes of the spinning block's immediate, a few ms after the guest starts.
                worker.postMessage(
                  {
                    ram: mem.buffer as SharedArrayBuffer,
                    size: mem.size,
                    pageState: mem.pages.buffer as SharedArrayBuffer,
                    gpa: value,
                    bytes: [0x33, 0x33],
                    delayMs: 5,
                  } satisfies WriteRequest,
                );
              }
            },
          },
        });
        assertEquals(r.out, "DMA OK\n", JSON.stringify(r.stop));
        assertEquals(r.stop, { kind: "exit", status: 0 });
      } finally {
        worker.terminate();
      }
    });
  }
}

Deno.test("the interpreter's own stores mark pages dirty, again after the bits are taken", () => {
  const memory = GuestMemory.allocate(1 << 20);
  const cpu = new Cpu(memory, {
    ports: new PortBus(),
    mmio: new MmioBus(),
    control: new RunControl(),
  });
  memory.pages.takeDirty();
  cpu.wr32(0x5000, 1); // real mode, paging off: linear = physical
  cpu.wr16(0x7ffe, 2);
  assertEquals(memory.pages.takeDirty().pages, [5, 7]);
  // Taking the bits bumped the generation; at its next block boundary the vCPU drops its
  // write-TLB entries, so the next store to each page marks it again.
  assertTrue(Atomics.load(cpu.pageGen, 0) !== cpu.pageGenSeen);
  cpu.pageSync();
  cpu.wr32(0x5004, 3);
  assertEquals(memory.pages.takeDirty().pages, [5]);
  assertEquals(memory.readU32(0x5000), 1);
  assertEquals(memory.readU32(0x5004), 3);
});
