/**
 * Hardening: a device's bad DMA says what happened: a write outside RAM through the channel (as on
 * KVM, whose RAM a Worker cannot share) is called a write, and a NaN address is named, not
 * "cannot be converted to a BigInt".
 */
import { assertEquals, assertThrows } from "../_assert.ts";
import { loadSandboxedPlugin } from "../../plugins/sandbox.ts";
import { testDevice } from "../../plugins/testing.ts";
import { GuestMemory, hex } from "../../core/memory.ts";
import { PluginError } from "../../core/errors.ts";

const DEVICE = new URL("./fixtures/bad_dma.ts", import.meta.url).pathname;

Deno.test("a DMA write outside RAM through the channel is reported as a write", async () => {
  const memory = new GuestMemory(new ArrayBuffer(1 << 20)); // not shared, as KVM's RAM
  const t = testDevice(await loadSandboxedPlugin(DEVICE), { memory });
  try {
    assertThrows(
      () => t.out(0x5e0, 1, 1),
      PluginError,
      "Guest DMA write of 16 bytes at 0xfff00000 is outside guest RAM",
    );
  } finally {
    t.device.close?.();
  }
});

Deno.test("a DMA at NaN is named as an invalid range, shared RAM or not", async () => {
  for (const memory of [GuestMemory.allocate(1 << 20), new GuestMemory(new ArrayBuffer(1 << 20))]) {
    const t = testDevice(await loadSandboxedPlugin(DEVICE), { memory });
    try {
      assertThrows(() => t.out(0x5e0, 2, 1), PluginError, "at NaN of 4 bytes is not a valid range");
    } finally {
      t.device.close?.();
    }
  }
  assertEquals(hex(NaN), "NaN");
});
