import { acpiChecksum, readAcpiTables, writeAcpiTables } from "../../../core/boot/acpi.ts";
import {
  loadMultiboot,
  MB_GDT_ADDR,
  MB_INFO_ADDR,
  MB_MOVED_INFO_OFFSET,
  MB_STACK_TOP,
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
/** GNU ld's default layout: a headers-only PT_LOAD at 0xFF000, then .text at 1 MiB. */
const LD_ELF = "tests/guests/ld_multiboot.elf";
const C_ELF = "tests/guests/c_multiboot.elf";

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

/** The PT_LOAD program headers of an ELF32 file as [offset, paddr, filesz, memsz]. */
function loads32(elf: Uint8Array): [number, number, number, number][] {
  const dv = new DataView(elf.buffer, elf.byteOffset);
  const phoff = dv.getUint32(28, true), phnum = dv.getUint16(44, true);
  const out: [number, number, number, number][] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * 32;
    if (dv.getUint32(p, true) !== 1) continue;
    out.push([4, 12, 16, 20].map((o) => dv.getUint32(p + o, true)) as [
      number,
      number,
      number,
      number,
    ]);
  }
  return out;
}

/** Guest memory set up as the VM does before loading: ACPI tables written at 0xE0000. */
function vmMemory(size: number): { memory: GuestMemory; rsdpAddr: number } {
  const memory = GuestMemory.allocate(size);
  return { memory, rsdpAddr: writeAcpiTables(memory).rsdpAddr };
}

/** Every range the loader put its own data in: GDT, stack page, multiboot_info and its data. */
function bootRanges(memory: GuestMemory, state: { gpr: bigint[]; gdt: { base: bigint } }) {
  const info = Number(state.gpr[3]!), esp = Number(state.gpr[4]!), gdt = Number(state.gdt.base);
  const mmap = memory.readU32(info + MBI.mmapAddr);
  const cmdline = memory.readU32(info + MBI.cmdline);
  const name = memory.readU32(info + MBI.bootLoaderName);
  return [
    { what: "GDT", start: gdt, end: gdt + 24 },
    { what: "stack", start: esp - 0x400, end: esp },
    { what: "multiboot_info", start: info, end: info + 116 },
    { what: "mmap", start: mmap, end: mmap + memory.readU32(info + MBI.mmapLength) },
    { what: "cmdline", start: cmdline, end: cmdline + cString(memory, cmdline).length + 1 },
    { what: "loader name", start: name, end: name + cString(memory, name).length + 1 },
  ];
}

function assertApart(
  a: readonly { what: string; start: number; end: number }[],
  b: readonly { what: string; start: number; end: number }[],
): void {
  for (const x of a) {
    for (const y of b) {
      assertTrue(
        x.end <= y.start || y.end <= x.start,
        `${x.what} [${x.start.toString(16)}, ${x.end.toString(16)}) overlaps ${y.what} ` +
          `[${y.start.toString(16)}, ${y.end.toString(16)})`,
      );
    }
  }
}

Deno.test("GNU ld's headers-only segment at 0xFF000 is loaded, as QEMU loads it", () => {
  for (const image of [LD_ELF, C_ELF]) {
    const { path, bytes } = fixture(image);
    const { memory, rsdpAddr } = vmMemory(128 * MiB);
    const acpiBefore = memory.read(0xe0000, 0x1000);
    const setup = loadMultiboot(bytes, memory, opts(path, { acpiRsdpAddr: rsdpAddr }));
    const segments = loads32(bytes);
    assertEquals(segments[0]!.slice(0, 2), [0, 0xff000], `${image}: ld's first PT_LOAD`);
    for (const [offset, paddr, filesz, memsz] of segments) {
      assertEquals(memory.read(paddr, filesz), bytes.subarray(offset, offset + filesz));
      assertEquals(memory.read(paddr + filesz, memsz - filesz), new Uint8Array(memsz - filesz));
    }
    assertEquals(memory.read(0xff000, 4), new Uint8Array([0x7f, 0x45, 0x4c, 0x46]));
    assertIncludes(setup.description, "at [0xff000, ");
    // Nothing of the VMM's had to move: the usual boot area, the ACPI tables untouched.
    assertEquals(setup.state.gpr[3], BigInt(MB_INFO_ADDR));
    assertEquals(setup.state.gpr[4], BigInt(MB_STACK_TOP));
    assertEquals(setup.state.gdt.base, BigInt(MB_GDT_ADDR));
    assertEquals(memory.read(0xe0000, 0x1000), acpiBefore);
    // The memory map stays the PC's: the headers page is in the reserved area, as on QEMU.
    assertEquals(readMmap(memory, MB_INFO_ADDR).slice(0, 3), [
      [0, 0x9fc00, 1],
      [0x9fc00, 0x100000 - 0x9fc00, 2],
      [0x100000, 127 * MiB, 1],
    ]);
  }
});

Deno.test("a headers-only segment below 1 MiB loads through ELF32, ELF64 and the a.out kludge", () => {
  const headers = new Uint8Array(0x94).fill(0x48);
  const code = new Uint8Array([0xf4, 0xeb, 0xfd]); // hlt; jmp $-1
  for (const bits of [32, 64] as const) {
    const image = buildElf({
      bits,
      entry: 0x100000,
      segments: [{ paddr: 0xff000, data: headers }, { paddr: 0x100000, data: code }],
      multibootFlags: 0x3,
    });
    const memory = GuestMemory.allocate(16 * MiB);
    const setup = loadMultiboot(image, memory, opts(`/x/k${bits}.elf`));
    assertEquals(memory.read(0xff000, headers.length), headers, `ELF${bits}`);
    assertEquals(memory.read(0x100000, 3), code, `ELF${bits}`);
    assertEquals(setup.state.rip, 0x100000n);
  }
  // A flat image whose a.out-kludge fields load it at 0xFF000: its first page lies in the hole.
  const aout = new Uint8Array(0x1010);
  aout.set(multibootHeader(0x10003));
  const dv = new DataView(aout.buffer);
  for (const [off, v] of [[12, 0xff000], [16, 0xff000], [20, 0], [24, 0x102000], [28, 0x100000]]) {
    dv.setUint32(off!, v!, true);
  }
  aout.set(code, 0x1000);
  const memory = GuestMemory.allocate(16 * MiB);
  memory.fill(0x100010, 0x100, 0xaa);
  const setup = loadMultiboot(aout, memory, opts("/x/k.bin"));
  assertEquals(memory.read(0xff000, aout.length), aout);
  assertEquals(memory.read(0x100010, 0x100), new Uint8Array(0x100), "bss zeroed");
  assertEquals(setup.state.rip, 0x100000n);
  assertIncludes(setup.description, 'a.out-kludge kernel "/x/k.bin" at [0xff000, 0x102000)');
});

Deno.test("segments that cannot be placed are refused, naming them, the collision and the fix", () => {
  const seg = (paddr: number, size = 0x100) => ({ paddr, data: new Uint8Array(size) });
  const elf = (bits: 32 | 64, ...segments: { paddr: number; data: Uint8Array }[]) =>
    buildElf({ bits, entry: 0x100000, segments, multibootFlags: 0x2 });
  const memory = () => GuestMemory.allocate(128 * MiB);
  // In the MMIO gap: no --mem helps.
  imageError(
    () => loadMultiboot(elf(32, seg(0x100000), seg(0xfec0_0000)), memory(), opts("/x/gap.elf")),
    '"/x/gap.elf": segment 1 at [0xfec00000, 0xfec00100)',
    "MMIO gap [0xc0000000, 0x100000000)",
    "below 0xc0000000",
  );
  // Past the end of RAM: the --mem that covers the whole kernel.
  imageError(
    () =>
      loadMultiboot(
        elf(32, seg(0x100000), seg(0x8048000, 0x94), seg(0x8100000, 0x1000)),
        memory(),
        opts("/x/big.elf"),
      ),
    '"/x/big.elf": segment 1 at [0x8048000, 0x8048094)',
    "outside guest RAM ([0x0, 0x8000000))",
    "at least --mem 130M",
  );
  // Above 4 GiB (ELF64): a 32-bit kernel cannot reach it.
  imageError(
    () => loadMultiboot(elf(64, seg(0x100000), seg(0x1_0000_0000)), memory(), opts("/x/hi.elf")),
    '"/x/hi.elf": segment 1 at [0x100000000, 0x100000100) is above 4 GiB',
  );
  // Overlapping segments: both cannot be there.
  imageError(
    () => loadMultiboot(elf(32, seg(0x100000), seg(0x1000f0)), memory(), opts("/x/ov.elf")),
    '"/x/ov.elf": segment 1 at [0x1000f0, 0x1001f0) overlaps segment 0 at [0x100000, 0x100100)',
  );
  // A refused kernel leaves guest memory as it was.
  const m = memory();
  assertThrows(
    () => loadMultiboot(elf(32, seg(0x100000), seg(0xfec0_0000)), m, opts("/x/k")),
    ImageError,
  );
  assertEquals(m.read(0, 0x200000), new Uint8Array(0x200000));
});

Deno.test("a kernel over the usual boot area moves GDT, stack and multiboot_info off it", () => {
  const data = new Uint8Array(0x2000).map((_, i) => (i * 7) & 0xff);
  const image = buildElf({
    bits: 32,
    entry: 0x8000,
    segments: [{ paddr: 0x8000, data }],
    multibootFlags: 0x2,
  });
  const memory = GuestMemory.allocate(4 * MiB);
  const setup = loadMultiboot(image, memory, opts("/x/low.elf", { cmdline: "low kernel" }));
  assertEquals(memory.read(0x8000, data.length), data, "the kernel is intact");
  const info = Number(setup.state.gpr[3]);
  assertEquals(info, 0x1000 + MB_MOVED_INFO_OFFSET, "the first free page");
  assertEquals(Number(setup.state.gpr[4]), info, "ESP just below multiboot_info");
  assertEquals(setup.state.gdt.base, 0x1000n);
  assertEquals(memory.readU64(0x1000 + 8), 0x00cf_9b00_0000_ffffn, "GDT code descriptor");
  assertApart(bootRanges(memory, setup.state), [{ what: "kernel", start: 0x8000, end: 0xa000 }]);
  assertEquals(cString(memory, memory.readU32(info + MBI.cmdline)), "/x/low.elf low kernel");
  assertEquals(readMmap(memory, info), pcMemoryMap(memory).map((e) => [e.base, e.length, e.type]));
  assertIncludes(setup.description, `multiboot_info at 0x${info.toString(16)}`);
});

Deno.test("a kernel filling low memory gets its boot data and module above it, apart", () => {
  const image = buildElf({
    bits: 32,
    entry: 0x100000,
    segments: [
      { paddr: 0, data: new Uint8Array(0x10).fill(1), memsz: 0x9fc00 },
      { paddr: 0xf0000, data: new Uint8Array(0x10).fill(2), memsz: 0x10000 },
      { paddr: 0x100000, data: new Uint8Array([0xf4]), memsz: 0x1800 },
    ],
    multibootFlags: 0x3,
  });
  const { memory, rsdpAddr } = vmMemory(8 * MiB);
  const initrd = new Uint8Array(5000).fill(0x5a);
  const setup = loadMultiboot(
    image,
    memory,
    opts("/x/full.elf", { initrd, initrdPath: "/x/m", acpiRsdpAddr: rsdpAddr }),
  );
  const info = Number(setup.state.gpr[3]);
  assertEquals(info, 0x102000 + MB_MOVED_INFO_OFFSET, "the first free page after the kernel");
  const mod = memory.readU32(info + MBI.modsAddr);
  const module = { what: "module", start: memory.readU32(mod), end: memory.readU32(mod + 4) };
  assertEquals(module.start % 4096, 0);
  assertEquals(memory.read(module.start, initrd.length), initrd);
  const kernel = [
    { what: "segment 0", start: 0, end: 0x9fc00 },
    { what: "segment 1", start: 0xf0000, end: 0x100000 },
    { what: "segment 2", start: 0x100000, end: 0x101800 },
  ];
  const boot = bootRanges(memory, setup.state);
  assertApart(boot, [...kernel, module]);
  assertApart([module], kernel);
  assertEquals(memory.readU8(0), 1);
  assertEquals(memory.readU8(0xf0000), 2);
  // The ACPI tables at 0xE0000 were not in the kernel's way: still there, still valid.
  assertEquals(readAcpiTables(memory, rsdpAddr)?.rsdpAddr, 0xe0000);
});

Deno.test("a kernel over the ACPI tables moves them within the BIOS area, leaving no stale RSDP", () => {
  const { memory, rsdpAddr } = vmMemory(16 * MiB);
  const before = readAcpiTables(memory, rsdpAddr)!;
  const image = buildElf({
    bits: 32,
    entry: 0x100000,
    segments: [
      { paddr: 0xe0000, data: new Uint8Array(0x94).fill(0x11) },
      { paddr: 0x100000, data: new Uint8Array([0xf4]) },
    ],
    multibootFlags: 0x2,
  });
  const setup = loadMultiboot(image, memory, opts("/x/k.elf", { acpiRsdpAddr: rsdpAddr }));
  assertEquals(memory.read(0xe0000, 0x94), new Uint8Array(0x94).fill(0x11), "the kernel's bytes");
  // A guest scans the BIOS area for the first valid RSDP: it must be the moved one.
  let found = -1;
  for (let at = 0xe0000; at < 0x100000 && found < 0; at += 16) {
    const sig = new TextDecoder().decode(memory.read(at, 8));
    if (sig === "RSD PTR " && acpiChecksum(memory.read(at, 20)) === 0) found = at;
  }
  assertTrue(found >= 0xe0094, `RSDP at 0x${found.toString(16)}`);
  assertEquals(found % 64, rsdpAddr % 64);
  assertIncludes(setup.description, `ACPI tables moved out of its way to 0x${found.toString(16)}`);
  const after = readAcpiTables(memory, found)!;
  assertEquals(
    after.tables.map((t) => [t.signature, t.length]),
    before.tables.map((t) => [
      t.signature,
      t.length,
    ]),
  );
  for (const t of after.tables) {
    assertTrue(t.addr >= 0xe0094 && t.addr + t.length <= 0x100000, t.signature);
    if (t.signature === "FACS") assertEquals(t.addr % 64, 0, "FACS 64-byte aligned");
    else if (t.signature === "RSD PTR ") assertEquals(acpiChecksum(memory.read(t.addr, 36)), 0);
    else assertEquals(acpiChecksum(memory.read(t.addr, t.length)), 0, t.signature);
  }
  const fadt = after.tables.find((t) => t.signature === "FACP")!;
  const dsdt = after.tables.find((t) => t.signature === "DSDT")!;
  assertEquals(memory.readU32(fadt.addr + 40), dsdt.addr, "FADT.DSDT follows the move");
  assertEquals(memory.readU64(fadt.addr + 140), BigInt(dsdt.addr), "FADT.X_DSDT too");
});

Deno.test("a kernel over the whole BIOS area is refused: the ACPI tables have nowhere to go", () => {
  const { memory, rsdpAddr } = vmMemory(16 * MiB);
  const image = buildElf({
    bits: 32,
    entry: 0xe0000,
    segments: [{ paddr: 0xe0000, data: new Uint8Array([0xf4]), memsz: 0x20000 }],
    multibootFlags: 0x2,
  });
  imageError(
    () => loadMultiboot(image, memory, opts("/x/bios.elf", { acpiRsdpAddr: rsdpAddr })),
    '"/x/bios.elf": segment 0 at [0xe0000, 0x100000) overlaps the ACPI tables at [0xe0000,',
    "BIOS area [0xe0000, 0x100000)",
    "Link the kernel at 1 MiB (0x100000) or above",
  );
  assertEquals(readAcpiTables(memory, rsdpAddr)?.rsdpAddr, 0xe0000, "nothing was written");
});

Deno.test("a command line too long for low memory goes above the kernel; one too long for RAM is refused", () => {
  const { path, bytes } = fixture(ELF);
  const memory = GuestMemory.allocate(4 * MiB);
  const cmdline = "x".repeat(700_000);
  const setup = loadMultiboot(bytes, memory, opts(path, { cmdline }));
  const info = Number(setup.state.gpr[3]);
  const kernelEnd = 0x100000 + memsz(bytes);
  assertTrue(info >= kernelEnd, `multiboot_info at 0x${info.toString(16)} is above the kernel`);
  assertEquals(cString(memory, memory.readU32(info + MBI.cmdline)), `${path} ${cmdline}`);
  imageError(
    () =>
      loadMultiboot(
        bytes,
        GuestMemory.allocate(4 * MiB),
        opts(path, { cmdline: "x".repeat(4 * MiB) }),
      ),
    `command line of ${4 * MiB} bytes`,
    "shorter --cmdline or more --mem",
  );
});
