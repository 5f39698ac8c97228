import { detectFormat, hasPvhNote, isBzImage } from "../../../core/boot/detect.ts";
import { DEFAULT_GUEST } from "../../../guests/default.ts";
import { assertEquals } from "../../_assert.ts";
import { buildElf, fixture } from "./_images.ts";

/** An ELF64 vmlinux-like image with a Xen PVH entry note. */
function pvhElf(): Uint8Array {
  const desc = new Uint8Array(4);
  new DataView(desc.buffer).setUint32(0, 0x0100_0850, true);
  return buildElf({
    bits: 64,
    entry: 0x100_0000,
    segments: [{ paddr: 0x100_0000, vaddr: 0xffff_ffff_8100_0000n, data: new Uint8Array(64) }],
    notes: [{ name: "GNU", type: 3, desc: new Uint8Array(20) }, { name: "Xen", type: 18, desc }],
  });
}

Deno.test("detectFormat finds the Multiboot header of the ELF and a.out fixtures", () => {
  assertEquals(detectFormat(fixture("tests/guests/hello_multiboot.elf").bytes), "multiboot");
  assertEquals(detectFormat(fixture("tests/guests/hello_aout.bin").bytes), "multiboot");
});

Deno.test("detectFormat takes boot-sector guests as flat images", () => {
  assertEquals(detectFormat(fixture("tests/guests/hello_flat.bin").bytes), "flat");
  assertEquals(detectFormat(fixture("tests/guests/triple_fault.bin").bytes), "flat");
  assertEquals(detectFormat(DEFAULT_GUEST), "flat");
});

Deno.test("detectFormat recognises a bzImage by HdrS at 0x202", () => {
  const image = new Uint8Array(0x400);
  image.set([0x48, 0x64, 0x72, 0x53], 0x202);
  assertEquals(isBzImage(image), true);
  assertEquals(detectFormat(image), "linux");
  assertEquals(isBzImage(image.subarray(0, 0x205)), false, "cut inside the signature");
});

Deno.test("detectFormat recognises an ELF vmlinux by its Xen PVH note", () => {
  const image = pvhElf();
  assertEquals(hasPvhNote(image), true);
  assertEquals(detectFormat(image), "linux");
});

Deno.test("an ELF without a PVH note or with a truncated note is not taken for Linux", () => {
  const plain = buildElf({
    bits: 64,
    entry: 0x100000,
    segments: [{ paddr: 0x100000, data: new Uint8Array(8) }],
  });
  assertEquals(hasPvhNote(plain), false);
  assertEquals(detectFormat(plain), "flat");
  const image = pvhElf();
  assertEquals(hasPvhNote(image.subarray(0, 200)), false);
});

Deno.test("a Multiboot magic with a bad checksum still routes to the Multiboot loader", () => {
  const image = fixture("tests/guests/hello_multiboot.elf").bytes.slice();
  image[0x54 + 8] = (image[0x54 + 8]! + 1) & 0xff;
  assertEquals(detectFormat(image), "multiboot");
});
