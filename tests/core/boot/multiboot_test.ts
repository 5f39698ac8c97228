import {
  loadMultiboot,
  MB_GDT_ADDR,
  MB_INFO_ADDR,
  MBI,
  MBI_FLAG_CMDLINE,
  MBI_FLAG_LOADER_NAME,
  MBI_FLAG_MEMORY,
  MBI_FLAG_MMAP,
  MBI_FLAG_MODS,
  multibootMemorySizes,
  pcMemoryMap,
} from "../../../core/boot/multiboot.ts";
import type { BootOptions } from "../../../core/boot/types.ts";
import { ImageError } from "../../../core/errors.ts";
import { GuestMemory, layoutRegions } from "../../../core/memory.ts";
import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../../_assert.ts";
import { buildElf, fixture, multibootHeader } from "./_images.ts";

const MiB = 1 << 20;
const ELF = "tests/guests/hello_multiboot.elf";
const AOUT = "tests/guests/hello_aout.bin";

function opts(path: string, extra: Partial<BootOptions> = {}): BootOptions {
  return { imagePath: path, cmdline: "", ...extra };
}

/** A NUL-terminated string from guest memory. */
function cString(memory: GuestMemory, gpa: number): string {
  let end = gpa;
  while (memory.readU8(end) !== 0) end++;
  return new TextDecoder().decode(memory.read(gpa, end - gpa));
}

/** The multiboot_info mmap as [base, length, type] triples. */
function readMmap(memory: GuestMemory, info: number): [number, number, number][] {
  const addr = memory.readU32(info + MBI.mmapAddr);
  const end = addr + memory.readU32(info + MBI.mmapLength);
  const out: [number, number, number][] = [];
  for (let at = addr; at < end;) {
    const size = memory.readU32(at);
    out.push([
      Number(memory.readU64(at + 4)),
      Number(memory.readU64(at + 12)),
      memory.readU32(at + 20),
    ]);
    at += size + 4;
  }
  return out;
}

/** Writes `v` as a little-endian u32 into a copy of `bytes` at `off`. */
function patched(bytes: Uint8Array, off: number, v: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(off, v >>> 0, true);
  return copy;
}

/** p_memsz of the fixture ELF's only program header. */
function memsz(elf: Uint8Array): number {
  return new DataView(elf.buffer, elf.byteOffset).getUint32(52 + 20, true);
}

function imageError(fn: () => unknown, ...parts: string[]): void {
  const err = assertThrows(fn, ImageError);
  for (const p of parts) assertIncludes(err.message, p);
}

Deno.test("multiboot loader places an ELF32 kernel by its program header and zeroes its bss", () => {
  const { path, bytes } = fixture(ELF);
  const memory = GuestMemory.allocate(128 * MiB);
  memory.fill(0x100000, 0x2000, 0xaa); // so the bss check sees the loader's zeroes
  const setup = loadMultiboot(bytes, memory, opts(path));
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  const filesz = dv.getUint32(52 + 16, true), memsz = dv.getUint32(52 + 20, true);
  assertEquals(filesz, bytes.length);
  assertEquals(memory.read(0x100000, filesz), bytes);
  assertEquals(memory.read(0x100000 + filesz, memsz - filesz), new Uint8Array(memsz - filesz));
  assertEquals(memory.readU8(0x100000 + memsz), 0xaa, "nothing written past p_memsz");
  assertEquals(setup.format, "multiboot");
  assertEquals(setup.state.rip, BigInt(dv.getUint32(24, true)), "EIP = e_entry");
});

Deno.test("multiboot loader starts the kernel in flat 32-bit protected mode as the spec says", () => {
  const { path, bytes } = fixture(ELF);
  const memory = GuestMemory.allocate(32 * MiB);
  const s = loadMultiboot(bytes, memory, opts(path)).state;
  assertEquals(s.gpr[0], 0x2badb002n, "EAX");
  assertEquals(s.gpr[3], BigInt(MB_INFO_ADDR), "EBX");
  assertEquals(s.cr0 & 1, 1, "CR0.PE");
  assertEquals(s.cr0 & 0x8000_0000, 0, "paging off");
  assertEquals(s.rflags, 0x2, "IF clear");
  assertEquals([s.cs.selector, s.cs.base, s.cs.limit, s.cs.db, s.cs.l, s.cs.type], [
    0x08,
    0n,
    0xffff_ffff,
    1,
    0,
    0xb,
  ]);
  for (const seg of [s.ds, s.es, s.fs, s.gs, s.ss]) {
    assertEquals([seg.selector, seg.base, seg.limit, seg.db, seg.type], [
      0x10,
      0n,
      0xffff_ffff,
      1,
      3,
    ]);
  }
  // The GDT in guest memory matches the loaded segments, so the kernel may reload them.
  assertEquals(s.gdt, { base: BigInt(MB_GDT_ADDR), limit: 23 });
  assertEquals(memory.readU64(MB_GDT_ADDR), 0n);
  assertEquals(memory.readU64(MB_GDT_ADDR + 8), 0x00cf_9b00_0000_ffffn);
  assertEquals(memory.readU64(MB_GDT_ADDR + 16), 0x00cf_9300_0000_ffffn);
});

Deno.test("multiboot_info carries memory sizes, mmap, command line and loader name", () => {
  const { path, bytes } = fixture(ELF);
  const memory = GuestMemory.allocate(128 * MiB);
  loadMultiboot(bytes, memory, opts(path, { cmdline: "console=ttyS0 loglevel=3" }));
  const info = MB_INFO_ADDR;
  const flags = memory.readU32(info + MBI.flags);
  const want = MBI_FLAG_MEMORY | MBI_FLAG_CMDLINE | MBI_FLAG_MMAP | MBI_FLAG_LOADER_NAME;
  assertEquals(flags, want, "no modules without --initrd");
  assertEquals(memory.readU32(info + MBI.memLower), 639);
  assertEquals(memory.readU32(info + MBI.memUpper), 127 * 1024);
  assertEquals(
    cString(memory, memory.readU32(info + MBI.cmdline)),
    `${path} console=ttyS0 loglevel=3`,
  );
  assertEquals(cString(memory, memory.readU32(info + MBI.bootLoaderName)), "denovisor");
  assertEquals(readMmap(memory, info), [
    [0, 0x9fc00, 1],
    [0x9fc00, 0x100000 - 0x9fc00, 2],
    [0x100000, 127 * MiB, 1],
  ]);
  assertEquals(
    readMmap(memory, info),
    pcMemoryMap(memory).map((e) => [e.base, e.length, e.type]),
  );
});

Deno.test("mem_upper stops at the MMIO gap and the mmap lists RAM above 4 GiB", () => {
  const regions = layoutRegions(4 * 1024 * MiB);
  assertEquals(multibootMemorySizes(regions), { memLower: 639, memUpper: (3072 - 1) * 1024 });
  assertEquals(pcMemoryMap({ regions }), [
    { base: 0, length: 0x9fc00, type: 1 },
    { base: 0x9fc00, length: 0x60400, type: 2 },
    { base: 0x100000, length: 0xc000_0000 - 0x100000, type: 1 },
    { base: 0x1_0000_0000, length: 1024 * MiB, type: 1 },
  ]);
});

Deno.test("an initrd becomes one page-aligned module after the kernel, named by its path", () => {
  const { path, bytes } = fixture(ELF);
  const memory = GuestMemory.allocate(32 * MiB);
  const initrd = new Uint8Array(3000).map((_, i) => i & 0xff);
  const setup = loadMultiboot(
    bytes,
    memory,
    opts(path, { initrd, initrdPath: "/x/initrd.img" }),
  );
  const info = MB_INFO_ADDR;
  assertTrue(memory.readU32(info + MBI.flags) & MBI_FLAG_MODS, "flags bit 3");
  assertEquals(memory.readU32(info + MBI.modsCount), 1);
  const mod = memory.readU32(info + MBI.modsAddr);
  const start = memory.readU32(mod), end = memory.readU32(mod + 4);
  assertEquals(start % 4096, 0, "page-aligned");
  const kernelEnd = 0x100000 + memsz(bytes);
  assertEquals(start, Math.ceil(kernelEnd / 4096) * 4096, "the first page after the bss");
  assertEquals(end - start, initrd.length);
  assertEquals(memory.read(start, initrd.length), initrd);
  assertEquals(cString(memory, memory.readU32(mod + 8)), "/x/initrd.img");
  assertIncludes(setup.description, "/x/initrd.img");
});

Deno.test("multiboot loader loads an a.out-kludge kernel where its header says", () => {
  const { path, bytes } = fixture(AOUT);
  const memory = GuestMemory.allocate(32 * MiB);
  memory.fill(0x200000, 0x3000, 0xaa);
  const setup = loadMultiboot(bytes, memory, opts(path));
  // The header follows a 2-byte jmp, aligned to 4; its address fields give the layout.
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  const hdr = 4;
  assertEquals(dv.getUint32(hdr, true), 0x1badb002);
  const [headerAddr, loadAddr, loadEnd, bssEnd, entry] = [12, 16, 20, 24, 28].map((o) =>
    dv.getUint32(hdr + o, true)
  ) as [number, number, number, number, number];
  assertEquals([headerAddr, loadAddr], [0x200004, 0x200000]);
  assertEquals(loadEnd - loadAddr, bytes.length);
  assertEquals(memory.read(0x200000, bytes.length), bytes);
  assertEquals(memory.read(loadEnd, bssEnd - loadEnd), new Uint8Array(bssEnd - loadEnd));
  assertEquals(memory.readU8(bssEnd), 0xaa);
  assertEquals(setup.state.rip, BigInt(entry));
  assertEquals(setup.state.gpr[0], 0x2badb002n);
});

Deno.test("multiboot loader enters an ELF64 kernel below 4 GiB at its entry in 32-bit mode", () => {
  const code = new Uint8Array([0xf4, 0xeb, 0xfd]); // hlt; jmp $-1
  const image = buildElf({
    bits: 64,
    entry: 0x0020_0000,
    segments: [{ paddr: 0x200000, data: code, memsz: 0x1000 }],
    multibootFlags: 0x3,
  });
  const memory = GuestMemory.allocate(8 * MiB);
  const setup = loadMultiboot(image, memory, opts("/x/k64.elf"));
  assertEquals(memory.read(0x200000, 3), code);
  assertEquals(setup.state.rip, 0x200000n);
  assertEquals([setup.state.cs.l, setup.state.cs.db], [0, 1]);
  assertEquals(setup.state.efer, 0);
  assertIncludes(setup.description, "ELF64");
});

Deno.test("multiboot loader translates a virtual ELF entry through its segment's p_paddr", () => {
  const image = buildElf({
    bits: 32,
    entry: 0xc010_0010,
    segments: [{ paddr: 0x100000, vaddr: 0xc010_0000, data: new Uint8Array(0x20).fill(0x90) }],
    multibootFlags: 0x2,
  });
  const setup = loadMultiboot(image, GuestMemory.allocate(4 * MiB), opts("/x/hh.elf"));
  assertEquals(setup.state.rip, 0x100010n);
});

Deno.test("a bad Multiboot checksum is refused with the checksum it should have", () => {
  const { bytes } = fixture(ELF);
  const off = 0x54; // the header follows the ELF and program headers, 4-aligned
  assertEquals(new DataView(bytes.buffer).getUint32(off, true), 0x1badb002);
  const bad = patched(bytes, off + 8, 0x1234);
  imageError(
    () => loadMultiboot(bad, GuestMemory.allocate(8 * MiB), opts("/x/k.elf")),
    '"/x/k.elf"',
    "bad checksum 0x00001234",
    "must be 0xe4524ffb",
  );
});

Deno.test("a kernel asking for unsupported Multiboot features is refused", () => {
  const image = buildElf({
    bits: 32,
    entry: 0x100000,
    segments: [{ paddr: 0x100000, data: new Uint8Array(16) }],
    multibootFlags: 0x8 | 0x2,
  });
  imageError(
    () => loadMultiboot(image, GuestMemory.allocate(4 * MiB), opts("/x/k.elf")),
    '"/x/k.elf"',
    "flag bits 0x0008",
  );
});

Deno.test("an image without a Multiboot header is refused with a pointer to --format auto", () => {
  const { bytes } = fixture("tests/guests/hello_flat.bin");
  imageError(
    () => loadMultiboot(bytes, GuestMemory.allocate(4 * MiB), opts("/x/flat.bin")),
    '"/x/flat.bin"',
    "no Multiboot header",
    "--format auto",
  );
});

Deno.test("an ELF whose program headers run past the end of the file is refused", () => {
  const { bytes } = fixture(ELF);
  const bad = bytes.slice();
  new DataView(bad.buffer).setUint16(44, 40, true); // e_phnum = 40
  imageError(
    () => loadMultiboot(bad, GuestMemory.allocate(8 * MiB), opts("/x/k.elf")),
    'Kernel image "/x/k.elf" is truncated: program header 24 ends at 0x354 but the file has ' +
      `${bytes.length} bytes`,
  );
});

Deno.test("an ELF whose segment data runs past the end of the file is refused", () => {
  const { bytes } = fixture(ELF);
  imageError(
    () => loadMultiboot(bytes.slice(0, 512), GuestMemory.allocate(8 * MiB), opts("/x/k.elf")),
    '"/x/k.elf" is truncated',
    `segment 0`,
    `ends at file offset 0x${bytes.length.toString(16)} but the file has 512 bytes`,
  );
});

Deno.test("an ELF64 kernel cut inside its ELF header is refused", () => {
  // A Multiboot header inside the first 52 bytes, then the file ends before the 64-byte header.
  const image = new Uint8Array(52);
  image.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  image.set(multibootHeader(0x2), 40);
  imageError(
    () => loadMultiboot(image, GuestMemory.allocate(4 * MiB), opts("/x/k64.elf")),
    '"/x/k64.elf" is truncated: the ELF64 header ends at 0x40 but the file has 52 bytes',
  );
});

Deno.test("a kernel that does not fit in --mem is refused with the fix", () => {
  const { bytes } = fixture(ELF);
  const end = 0x100000 + memsz(bytes);
  const memory = GuestMemory.allocate(MiB + 0x1000); // the bss ends past this
  imageError(
    () => loadMultiboot(bytes, memory, opts("/x/k.elf")),
    '"/x/k.elf"',
    `segment 0 at [0x100000, 0x${end.toString(16)})`,
    "outside guest RAM",
    "--mem",
  );
});

Deno.test("a segment over the loader's low memory or the PC hole is refused", () => {
  const low = buildElf({
    bits: 32,
    entry: 0x8000,
    segments: [{ paddr: 0x8000, data: new Uint8Array(0x2000) }],
    multibootFlags: 0x2,
  });
  imageError(
    () => loadMultiboot(low, GuestMemory.allocate(4 * MiB), opts("/x/low.elf")),
    '"/x/low.elf"',
    "segment 0 at [0x8000, 0xa000) overlaps [0x500,",
    "1 MiB",
  );
  const vga = buildElf({
    bits: 32,
    entry: 0xa0000,
    segments: [{ paddr: 0xa0000, data: new Uint8Array(0x100) }],
    multibootFlags: 0x2,
  });
  imageError(
    () => loadMultiboot(vga, GuestMemory.allocate(4 * MiB), opts("/x/vga.elf")),
    '"/x/vga.elf"',
    "reserved area [0x9fc00, 0x100000)",
  );
});

Deno.test("an entry point outside the loaded kernel is refused", () => {
  const image = buildElf({
    bits: 32,
    entry: 0x300000,
    segments: [{ paddr: 0x100000, data: new Uint8Array(0x100) }],
    multibootFlags: 0x2,
  });
  imageError(
    () => loadMultiboot(image, GuestMemory.allocate(4 * MiB), opts("/x/k.elf")),
    '"/x/k.elf"',
    "entry point at 0x300000",
  );
});

Deno.test("an a.out-kludge kernel whose load_end_addr is past the file is refused", () => {
  const { bytes } = fixture(AOUT);
  const loadEnd = new DataView(bytes.buffer).getUint32(4 + 20, true);
  const bad = patched(bytes, 4 + 20, loadEnd + 0x100);
  imageError(
    () => loadMultiboot(bad, GuestMemory.allocate(8 * MiB), opts("/x/k.bin")),
    '"/x/k.bin" is truncated',
    `the file has ${bytes.length} bytes`,
  );
  const inverted = patched(bytes, 4 + 16, 0x200008); // load_addr above header_addr
  imageError(
    () => loadMultiboot(inverted, GuestMemory.allocate(8 * MiB), opts("/x/k.bin")),
    '"/x/k.bin"',
    "load_addr 0x200008 is above header_addr 0x200004",
  );
});

Deno.test("an initrd that does not fit after the kernel is refused, naming it and --mem", () => {
  const { path, bytes } = fixture(ELF);
  imageError(
    () =>
      loadMultiboot(
        bytes,
        GuestMemory.allocate(2 * MiB),
        opts(path, { initrd: new Uint8Array(MiB), initrdPath: "/x/big.cpio" }),
      ),
    'Initrd "/x/big.cpio" (1048576 bytes) does not fit',
    "--mem",
  );
});

Deno.test("a command line too long for low memory is refused", () => {
  const { path, bytes } = fixture(ELF);
  imageError(
    () =>
      loadMultiboot(
        bytes,
        GuestMemory.allocate(4 * MiB),
        opts(path, { cmdline: "x".repeat(700_000) }),
      ),
    "700000 bytes",
    "shorter --cmdline",
  );
});
