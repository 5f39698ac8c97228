import {
  loadElfSegments,
  parseElf,
  physicalEntry,
  PT_LOAD,
  PT_NOTE,
  readElfNotes,
} from "../../../core/boot/elf.ts";
import { ImageError } from "../../../core/errors.ts";
import { GuestMemory } from "../../../core/memory.ts";
import { assertEquals, assertIncludes, assertThrows } from "../../_assert.ts";
import { buildElf, fixture } from "./_images.ts";

Deno.test("parseElf reads the fixture ELF32 header and its one PT_LOAD", () => {
  const { path, bytes } = fixture("tests/guests/hello_multiboot.elf");
  const elf = parseElf(bytes, path);
  assertEquals([elf.bits, elf.machine, elf.type], [32, 3, 2]);
  assertEquals(elf.programHeaders.length, 1);
  const ph = elf.programHeaders[0]!;
  assertEquals([ph.type, ph.offset, ph.paddr, ph.vaddr], [PT_LOAD, 0, 0x100000n, 0x100000n]);
  assertEquals(ph.filesz, bytes.length);
});

Deno.test("parseElf keeps 64-bit virtual addresses exact and reads notes", () => {
  const image = buildElf({
    bits: 64,
    entry: 0xffff_ffff_8100_0010n,
    segments: [{ paddr: 0x100_0000, vaddr: 0xffff_ffff_8100_0000n, data: new Uint8Array(32) }],
    notes: [{ name: "Xen", type: 18, desc: new Uint8Array([0x50, 0x08, 0x00, 0x01]) }],
  });
  const elf = parseElf(image, "/x/vmlinux");
  assertEquals(elf.bits, 64);
  assertEquals(elf.programHeaders.map((p) => p.type), [PT_LOAD, PT_NOTE]);
  assertEquals(elf.programHeaders[0]!.vaddr, 0xffff_ffff_8100_0000n);
  assertEquals(physicalEntry(elf), 0x100_0010n);
  const notes = readElfNotes(image, elf, "/x/vmlinux");
  assertEquals(notes.length, 1);
  assertEquals([notes[0]!.name, notes[0]!.type], ["Xen", 18]);
  assertEquals(new DataView(notes[0]!.desc.slice().buffer).getUint32(0, true), 0x0100_0850);
});

Deno.test("parseElf refuses a file cut inside its ELF header, naming it", () => {
  const { bytes } = fixture("tests/guests/hello_multiboot.elf");
  const err = assertThrows(() => parseElf(bytes.slice(0, 40), "/x/k.elf"), ImageError);
  assertIncludes(
    err.message,
    'Kernel image "/x/k.elf" is truncated: the ELF32 header ends at 0x34 but the file has 40 bytes',
  );
});

Deno.test("parseElf refuses a file that is not ELF or is big-endian", () => {
  assertThrows(() => parseElf(new Uint8Array(64), "/x/k"), ImageError, '"/x/k" is not an ELF');
  const be = buildElf({ bits: 32, entry: 0, segments: [] });
  be[5] = 2;
  assertThrows(() => parseElf(be, "/x/k"), ImageError, "big-endian");
});

Deno.test("loadElfSegments writes nothing when a later segment is out of RAM", () => {
  const image = buildElf({
    bits: 32,
    entry: 0x1000,
    segments: [
      { paddr: 0x1000, data: new Uint8Array(16).fill(0x11) },
      { paddr: 0x10_0000, data: new Uint8Array(16).fill(0x22) },
    ],
  });
  const memory = GuestMemory.allocate(0x8_0000);
  const err = assertThrows(
    () => loadElfSegments(image, parseElf(image, "/x/k"), memory, { path: "/x/k" }),
    ImageError,
  );
  assertIncludes(err.message, "segment 1 at [0x100000, 0x100010) is outside guest RAM");
  assertEquals(memory.readU8(0x1000), 0, "segment 0 not written either");
});

Deno.test("loadElfSegments reports the placed range including bss", () => {
  const image = buildElf({
    bits: 32,
    entry: 0x2000,
    segments: [
      { paddr: 0x2000, data: new Uint8Array(16).fill(1), memsz: 0x100 },
      { paddr: 0x4000, data: new Uint8Array(4).fill(2), memsz: 0x20 },
    ],
  });
  const memory = GuestMemory.allocate(0x10000);
  memory.fill(0x2000, 0x3000, 0xcc);
  const placed = loadElfSegments(image, parseElf(image, "/x/k"), memory, { path: "/x/k" });
  assertEquals(placed, { start: 0x2000, end: 0x4020 });
  assertEquals(memory.readU8(0x200f), 1);
  assertEquals(memory.readU8(0x2010), 0);
  assertEquals(memory.readU8(0x20ff), 0);
  assertEquals(memory.readU8(0x2100), 0xcc);
});
