import { loadImage } from "../../../core/boot/load.ts";
import { ImageError } from "../../../core/errors.ts";
import { GuestMemory } from "../../../core/memory.ts";
import { assertEquals, assertIncludes, assertThrows } from "../../_assert.ts";
import { buildElf, fixture } from "./_images.ts";

const MiB = 1 << 20;

Deno.test("loadImage auto boots each fixture with the loader its format needs", () => {
  for (
    const [rel, format] of [
      ["tests/guests/hello_flat.bin", "flat"],
      ["tests/guests/hello_multiboot.elf", "multiboot"],
      ["tests/guests/hello_aout.bin", "multiboot"],
    ] as const
  ) {
    const { path, bytes } = fixture(rel);
    const setup = loadImage("auto", bytes, GuestMemory.allocate(8 * MiB), {
      imagePath: path,
      cmdline: "",
    });
    assertEquals(setup.format, format, rel);
  }
});

Deno.test("loadImage --format flat runs any bytes as a flat image", () => {
  const { path, bytes } = fixture("tests/guests/hello_aout.bin");
  const memory = GuestMemory.allocate(MiB);
  const setup = loadImage("flat", bytes, memory, { imagePath: path, cmdline: "" });
  assertEquals(setup.format, "flat");
  assertEquals(memory.read(0x7c00, bytes.length), bytes);
});

Deno.test("--format multiboot on an image without a header suggests --format auto", () => {
  const { bytes } = fixture("tests/guests/hello_flat.bin");
  const err = assertThrows(
    () =>
      loadImage("multiboot", bytes, GuestMemory.allocate(MiB), {
        imagePath: "/x/hello_flat.bin",
        cmdline: "",
      }),
    ImageError,
  );
  assertIncludes(err.message, '"/x/hello_flat.bin" is not a Multiboot kernel');
  assertIncludes(err.message, "looks like a flat image");
  assertIncludes(err.message, "--format auto");
});

Deno.test("--format auto refuses an ELF with neither a Multiboot header nor a PVH note", () => {
  const image = buildElf({
    bits: 32,
    entry: 0x100000,
    segments: [{ paddr: 0x100000, data: new Uint8Array(8) }],
  });
  const err = assertThrows(
    () =>
      loadImage("auto", image, GuestMemory.allocate(4 * MiB), {
        imagePath: "/x/a.out",
        cmdline: "",
      }),
    ImageError,
  );
  assertIncludes(err.message, '"/x/a.out" is an ELF file with neither');
  assertIncludes(err.message, "--format flat");
});

Deno.test("auto detects a bzImage and hands it to the Linux loader, which checks it", () => {
  const image = new Uint8Array(0x400);
  image.set([0x48, 0x64, 0x72, 0x53], 0x202);
  const err = assertThrows(
    () =>
      loadImage("auto", image, GuestMemory.allocate(4 * MiB), {
        imagePath: "/x/bzImage",
        cmdline: "",
      }),
    ImageError,
  );
  // A bare header with protocol 0.00: the Linux loader, not the flat one, refuses it.
  assertIncludes(err.message, '"/x/bzImage"');
  assertIncludes(err.message, "older than the 2.06");
});
