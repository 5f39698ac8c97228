import { FLAT_MAX_SIZE, loadFlat } from "../../../core/boot/flat.ts";
import { ImageError } from "../../../core/errors.ts";
import { GuestMemory } from "../../../core/memory.ts";
import { DEFAULT_GUEST } from "../../../guests/default.ts";
import { assertEquals, assertIncludes, assertThrows } from "../../_assert.ts";
import { fixture } from "./_images.ts";

const MEM = 2 << 20;

Deno.test("flat loader puts the image at 0x7C00 and starts real mode at 0000:7C00", () => {
  const { path, bytes } = fixture("tests/guests/hello_flat.bin");
  const memory = GuestMemory.allocate(MEM);
  const setup = loadFlat(bytes, memory, { imagePath: path, cmdline: "" });
  assertEquals(setup.format, "flat");
  assertEquals(memory.read(0x7c00, bytes.length), bytes);
  assertEquals(memory.readU8(0x7bff), 0);
  assertEquals(memory.readU8(0x7c00 + bytes.length), 0);
  const s = setup.state;
  assertEquals(s.rip, 0x7c00n);
  assertEquals([s.cs.selector, s.cs.base, s.cs.limit], [0, 0n, 0xffff]);
  for (const seg of [s.ds, s.es, s.fs, s.gs, s.ss]) assertEquals([seg.selector, seg.base], [0, 0n]);
  assertEquals(s.gpr[4], 0x7c00n, "SP");
  assertEquals(s.gpr[2], 0x80n, "DL = boot drive");
  assertEquals(s.gpr[0], 0n);
  assertEquals(s.cr0 & 1, 0, "real mode");
  assertEquals(s.rflags, 0x2);
  assertIncludes(setup.description, path);
});

Deno.test("flat loader loads the embedded default guest", () => {
  const memory = GuestMemory.allocate(MEM);
  loadFlat(DEFAULT_GUEST, memory, { imagePath: "(default guest)", cmdline: "" });
  assertEquals(memory.read(0x7c00, DEFAULT_GUEST.length), DEFAULT_GUEST);
});

Deno.test("flat loader refuses an empty image, naming the file", () => {
  const err = assertThrows(
    () =>
      loadFlat(new Uint8Array(0), GuestMemory.allocate(MEM), {
        imagePath: "/x/e.bin",
        cmdline: "",
      }),
    ImageError,
  );
  assertIncludes(err.message, '"/x/e.bin"');
  assertIncludes(err.message, "empty");
});

Deno.test("flat loader takes an image ending just below 0x9FC00 and refuses one byte more", () => {
  const memory = GuestMemory.allocate(MEM);
  const big = new Uint8Array(FLAT_MAX_SIZE).fill(0x90);
  loadFlat(big, memory, { imagePath: "big.bin", cmdline: "" });
  assertEquals(memory.readU8(0x9fbff), 0x90);
  assertEquals(memory.readU8(0x9fc00), 0);
  const err = assertThrows(
    () =>
      loadFlat(new Uint8Array(FLAT_MAX_SIZE + 1), memory, {
        imagePath: "/x/huge.bin",
        cmdline: "",
      }),
    ImageError,
  );
  assertIncludes(err.message, '"/x/huge.bin"');
  assertIncludes(err.message, `${FLAT_MAX_SIZE + 1} bytes`);
  assertIncludes(err.message, `at most ${FLAT_MAX_SIZE} bytes`);
});

Deno.test("flat loader says to raise --mem when guest RAM ends below the image", () => {
  const err = assertThrows(
    () =>
      loadFlat(new Uint8Array(0x1000), GuestMemory.allocate(0x8000), {
        imagePath: "/x/f.bin",
        cmdline: "",
      }),
    ImageError,
  );
  assertIncludes(err.message, '"/x/f.bin"');
  assertIncludes(err.message, "--mem");
});
