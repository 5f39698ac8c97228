import { assertEquals, assertThrows } from "../_assert.ts";
import { GuestMemory, HIGH_RAM_START, layoutRegions, MMIO_GAP_START } from "../../core/memory.ts";
import { GuestMemoryError } from "../../core/errors.ts";
import { parseSize } from "../../core/size.ts";
import { UsageError } from "../../core/errors.ts";

Deno.test("guest memory reads back what was written, little-endian", () => {
  const mem = GuestMemory.allocate(1 << 20);
  mem.write(0x1000, new Uint8Array([1, 2, 3, 4]));
  assertEquals(mem.readU32(0x1000), 0x04030201);
  mem.writeU64(0x2000, 0x1122_3344_5566_7788n);
  assertEquals(mem.readU64(0x2000), 0x1122_3344_5566_7788n);
  assertEquals(mem.readU16(0x2000), 0x7788);
  assertEquals([...mem.read(0x1000, 4)], [1, 2, 3, 4]);
  mem.fill(0x1000, 2, 0xaa);
  assertEquals(mem.readU32(0x1000), 0x0403aaaa);
});

Deno.test("guest memory refuses any access that leaves RAM, even by one byte", () => {
  const mem = GuestMemory.allocate(1 << 20);
  assertThrows(() => mem.read(0xfffff, 2), GuestMemoryError, "outside guest RAM");
  assertThrows(() => mem.write(-1, new Uint8Array(1)), GuestMemoryError);
  assertThrows(() => mem.readU32(0x10_0000), GuestMemoryError);
  assertThrows(() => mem.read(1.5, 1), GuestMemoryError);
  assertThrows(() => mem.read(0, -1), GuestMemoryError);
  // The last byte is fine.
  assertEquals(mem.readU8(0xfffff), 0);
  // read() returns a copy, not a view that could outlive a bounds check.
  const copy = mem.read(0, 4);
  copy[0] = 9;
  assertEquals(mem.readU8(0), 0);
});

Deno.test("RAM above the MMIO gap is split into a second region at 4 GiB", () => {
  assertEquals(layoutRegions(256 << 20), [{ gpa: 0, size: 256 << 20, offset: 0 }]);
  const big = 4 * 2 ** 30;
  const r = layoutRegions(big);
  assertEquals(r.length, 2);
  assertEquals(r[0], { gpa: 0, size: MMIO_GAP_START, offset: 0 });
  assertEquals(r[1], { gpa: HIGH_RAM_START, size: big - MMIO_GAP_START, offset: MMIO_GAP_START });
});

Deno.test("--mem sizes parse with K/M/G suffixes and bad ones name the fix", () => {
  assertEquals(parseSize("64M"), 64 << 20);
  assertEquals(parseSize("1G"), 1 << 30);
  assertEquals(parseSize("512k"), 512 << 10);
  assertEquals(parseSize("4096"), 4096);
  assertEquals(parseSize("2GiB"), 2 * 2 ** 30);
  assertThrows(() => parseSize("lots"), UsageError, 'Cannot parse --mem "lots"');
  assertThrows(() => parseSize("-5M"), UsageError);
});
