/**
 * Multiboot (version 1, specification 0.6.96) kernel loader: finds the Multiboot header, loads
 * an ELF32 (or below-4-GiB ELF64) kernel by its program headers or a binary by the header's
 * a.out-kludge address fields, places one module for --initrd, writes the multiboot_info
 * structure, a GDT and a memory map into low memory, and starts the vCPU in flat 32-bit
 * protected mode with EAX = 0x2BADB002 and EBX = the multiboot_info address.
 *
 * Like QEMU's loader, it copies every piece of the kernel into guest RAM wherever it is linked,
 * the PC's reserved area below 1 MiB included (GNU ld's default layout puts a page holding only
 * the ELF and program headers just below `.text`: 0xFF000 for `-Ttext 0x100000`). What the VMM
 * puts in low memory itself moves out of the kernel's way: the GDT, stack and multiboot_info go
 * to the first free RAM, the ACPI tables to another free spot of the BIOS area. The memory map
 * stays the PC's: kernel bytes in the reserved area stay "reserved", as QEMU reports them. Only
 * what cannot be placed is refused: pieces outside RAM (past --mem, in the MMIO gap, above
 * 4 GiB), pieces that overlap each other, and ACPI tables left no room in the BIOS area.
 */

import { CR0_ET, CR0_PE, flatSegment, resetCpuState } from "../cpu_state.ts";
import { ImageError } from "../errors.ts";
import { type GuestMemory, hex, type MemoryRegion, MMIO_GAP_START } from "../memory.ts";
import {
  elfSegmentPlacements,
  EM_386,
  EM_X86_64,
  isElf,
  notRamReason,
  parseElf,
  physicalEntry,
  type SegmentPlacement,
  writeSegments,
} from "./elf.ts";
import {
  ACPI_MOVE_ALIGN,
  ACPI_SCAN_START,
  acpiExtent,
  moveAcpiTables,
  readAcpiTables,
} from "./acpi.ts";
import type { BootOptions, BootSetup } from "./types.ts";
import { E820_RAM, E820_RESERVED, e820Map, EBDA_START, HIMEM_START } from "./e820.ts";

/** The Multiboot header's magic (specification 3.1.2). */
export const MULTIBOOT_HEADER_MAGIC = 0x1bad_b002;
/** What the loader leaves in EAX (specification 3.2). */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2bad_b002;
/** The header must lie, 4-byte aligned, within this many bytes of the file's start. */
export const MULTIBOOT_SEARCH = 8192;
/** Header flag bit 0: modules must be page-aligned (we always align them). */
export const MB_FLAG_PAGE_ALIGN = 1 << 0;
/** Header flag bit 1: the kernel wants mem_* and mmap_* (we always provide them). */
export const MB_FLAG_MEMORY_INFO = 1 << 1;
/** Header flag bit 2: the kernel wants video mode information (we have no display). */
export const MB_FLAG_VIDEO_MODE = 1 << 2;
/** Header flag bit 16: header_addr..entry_addr are valid (the "a.out kludge"). */
export const MB_FLAG_AOUT_KLUDGE = 1 << 16;
/** Flags bits 0–15 are requirements: a loader must refuse a kernel that sets one it lacks. */
const MB_REQUIRED_MASK = 0xffff;
const MB_SUPPORTED_REQUIRED = MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMORY_INFO | MB_FLAG_VIDEO_MODE;

/** multiboot_info.flags bits (specification 3.3). */
export const MBI_FLAG_MEMORY = 1 << 0,
  MBI_FLAG_CMDLINE = 1 << 2,
  MBI_FLAG_MODS = 1 << 3,
  MBI_FLAG_MMAP = 1 << 6,
  MBI_FLAG_LOADER_NAME = 1 << 9;
/** multiboot_info field offsets (specification 3.3). */
export const MBI = {
  flags: 0,
  memLower: 4,
  memUpper: 8,
  bootDevice: 12,
  cmdline: 16,
  modsCount: 20,
  modsAddr: 24,
  mmapLength: 44,
  mmapAddr: 48,
  bootLoaderName: 64,
} as const;
/** Size of multiboot_info up to and including the framebuffer fields. */
export const MBI_SIZE = 116;
/** One mmap entry: size (u32, not counting itself), base_addr (u64), length (u64), type (u32). */
export const MMAP_ENTRY_SIZE = 24;
/** One module entry: mod_start, mod_end, string, reserved. */
export const MODULE_ENTRY_SIZE = 16;
/** The boot loader name we report. */
export const BOOT_LOADER_NAME = "denovisor";

/**
 * Where the GDT goes (just above the real-mode IVT and BIOS data area, as Firecracker does),
 * unless the kernel is loaded there: then GDT, stack and multiboot_info move together.
 */
export const MB_GDT_ADDR = 0x500;
/** Initial ESP (the specification leaves ESP undefined; a small stack just below the info). */
export const MB_STACK_TOP = 0x9000;
/** Where multiboot_info goes; its mmap, module list and strings follow it. */
export const MB_INFO_ADDR = 0x9000;
/**
 * When the kernel covers the default boot area, the GDT, stack and multiboot_info move into
 * one block at the first free page: GDT at its start, ESP at start + this, multiboot_info there.
 */
export const MB_MOVED_INFO_OFFSET = 0x1000;
/** Selectors of the flat code and data segments in our GDT. */
export const MB_CODE_SELECTOR = 0x08, MB_DATA_SELECTOR = 0x10;
/** Flat 4 GiB code (0x9B: present, ring 0, code, readable, accessed) and data (0x93) descriptors. */
const GDT_ENTRIES = [0n, 0x00cf_9b00_0000_ffffn, 0x00cf_9300_0000_ffffn];

/** Start of the PC's reserved hole below 1 MiB (EBDA, VGA, option ROMs, BIOS). */
export const PC_HOLE_START = EBDA_START;
/** End of that hole: extended memory starts at 1 MiB. */
export const PC_HOLE_END = HIMEM_START;
/** E820 / Multiboot mmap types. */
export const MEMORY_TYPE_RAM = E820_RAM, MEMORY_TYPE_RESERVED = E820_RESERVED;
const PAGE = 4096;
const FOUR_GIB = 0x1_0000_0000;

/** One entry of the machine's physical memory map (E820 / Multiboot mmap). */
export interface MemoryMapEntry {
  /** First address. */
  base: number;
  /** Length in bytes. */
  length: number;
  /** MEMORY_TYPE_RAM or MEMORY_TYPE_RESERVED. */
  type: number;
}

/**
 * The PC memory map of `memory` as firmware reports it: RAM below 0x9FC00, the reserved hole
 * [0x9FC00, 1 MiB), RAM from 1 MiB to the end of the first region (which stops at the MMIO gap)
 * and the RAM above 4 GiB, sorted by address.
 *
 * @example
 * ```ts
 * import { pcMemoryMap } from "./multiboot.ts";
 * import { GuestMemory } from "../memory.ts";
 * pcMemoryMap(GuestMemory.allocate(16 << 20)); // RAM, reserved, RAM
 * ```
 */
export function pcMemoryMap(
  memory: { readonly regions: readonly MemoryRegion[] },
): MemoryMapEntry[] {
  // The same map Linux gets as e820; Multiboot's type numbers are e820's (1 RAM, 2 reserved).
  return e820Map(memory).map((e) => ({ base: e.addr, length: e.size, type: e.type }));
}

/**
 * multiboot_info's mem_lower and mem_upper in KiB: RAM from 0 to the PC hole at 0x9FC00, and
 * RAM from 1 MiB up to the first hole (the end of the first region, which stops at the MMIO gap).
 *
 * @example
 * ```ts
 * import { multibootMemorySizes } from "./multiboot.ts";
 * import { layoutRegions } from "../memory.ts";
 * multibootMemorySizes(layoutRegions(128 << 20)); // { memLower: 639, memUpper: 130048 }
 * ```
 */
export function multibootMemorySizes(
  regions: readonly MemoryRegion[],
): { memLower: number; memUpper: number } {
  const first = regions[0];
  const end = first && first.gpa === 0 ? first.size : 0;
  return {
    memLower: Math.floor(Math.min(end, PC_HOLE_START) / 1024),
    memUpper: Math.floor(Math.max(end - PC_HOLE_END, 0) / 1024),
  };
}

/** A Multiboot header found in an image. */
export interface MultibootHeader {
  /** File offset of the magic. */
  offset: number;
  /** The header's flags. */
  flags: number;
  /** True when magic + flags + checksum is 0 (mod 2^32). */
  checksumOk: boolean;
  /** The checksum field as stored. */
  checksum: number;
}

/**
 * Finds the Multiboot header: the first 4-byte-aligned magic in the first 8 KiB with a valid
 * checksum, else the first magic with a bad one (so a loader can say what is wrong), else null.
 *
 * @example
 * ```ts
 * import { findMultibootHeader } from "./multiboot.ts";
 * findMultibootHeader(new Uint8Array(512)); // null
 * ```
 */
export function findMultibootHeader(image: Uint8Array): MultibootHeader | null {
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const last = Math.min(MULTIBOOT_SEARCH, image.length) - 12;
  let bad: MultibootHeader | null = null;
  for (let off = 0; off <= last; off += 4) {
    if (dv.getUint32(off, true) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = dv.getUint32(off + 4, true);
    const checksum = dv.getUint32(off + 8, true);
    const checksumOk = ((MULTIBOOT_HEADER_MAGIC + flags + checksum) >>> 0) === 0;
    const header = { offset: off, flags, checksum, checksumOk };
    if (checksumOk) return header;
    bad ??= header;
  }
  return bad;
}

/**
 * Loads a Multiboot v1 kernel (the `Loader` for format "multiboot").
 *
 * Machine state on entry, per the specification: EAX = 0x2BADB002, EBX = multiboot_info
 * (at 0x9000), CS = 0x08 flat 32-bit code, DS/ES/FS/GS/SS = 0x10 flat data, from a real GDT at
 * 0x500 (limit 23) so the kernel may reload them; CR0 = PE|ET (paging off), EFLAGS = 0x2
 * (interrupts off), IDTR limit 0, ESP = 0x9000 (the spec leaves ESP undefined). When the kernel
 * is loaded over [0x500, end of multiboot_info), GDT, stack and multiboot_info move together to
 * the first free page of RAM (see `MB_MOVED_INFO_OFFSET`); when it is loaded over the ACPI
 * tables (`opts.acpiRsdpAddr`), they move within the BIOS area. The command line is the image
 * path, a space and `opts.cmdline`, as GRUB and QEMU pass it. An initrd becomes module 0,
 * page-aligned in the first free RAM after the kernel, named by its path.
 *
 * @example
 * ```ts
 * import { loadMultiboot } from "./multiboot.ts";
 * import { GuestMemory } from "../memory.ts";
 * const path = "tests/guests/hello_multiboot.elf";
 * const setup = loadMultiboot(await Deno.readFile(path), GuestMemory.allocate(16 << 20), {
 *   imagePath: path,
 *   cmdline: "console=ttyS0",
 * });
 * console.log(setup.description);
 * ```
 */
export function loadMultiboot(
  image: Uint8Array,
  memory: GuestMemory,
  opts: BootOptions,
): BootSetup {
  const path = opts.imagePath;
  const header = findMultibootHeader(image);
  if (!header) {
    throw new ImageError(
      `Kernel image "${path}" has no Multiboot header (magic 0x1BADB002, 4-byte aligned, in ` +
        `the first ${MULTIBOOT_SEARCH} bytes). If it is another kind of kernel, use --format auto.`,
    );
  }
  if (!header.checksumOk) {
    const want = -(MULTIBOOT_HEADER_MAGIC + header.flags) >>> 0;
    throw new ImageError(
      `Kernel image "${path}" has a Multiboot header at offset ${hex(header.offset)} with a bad ` +
        `checksum ${hex(header.checksum, 8)}: magic + flags + checksum must be 0, so with flags ` +
        `${hex(header.flags, 8)} the checksum must be ${hex(want, 8)}. Fix the kernel's header.`,
    );
  }
  const unsupported = header.flags & MB_REQUIRED_MASK & ~MB_SUPPORTED_REQUIRED;
  if (unsupported) {
    throw new ImageError(
      `Kernel image "${path}" requires Multiboot features denovisor does not provide (header ` +
        `flag bits ${hex(unsupported, 4)}; bits 0, 1 and 2 are supported). Clear those bits or ` +
        `use another boot format.`,
    );
  }

  // Where each piece of the kernel goes, and its entry point.
  let pieces: SegmentPlacement[], entry: number, kind: string;
  if (header.flags & MB_FLAG_AOUT_KLUDGE) {
    const p = aoutPlacement(image, header, path);
    pieces = [p.place];
    entry = p.entry;
    kind = "a.out-kludge";
  } else if (isElf(image)) {
    const elf = parseElf(image, path);
    if (elf.machine !== EM_386 && elf.machine !== EM_X86_64) {
      throw new ImageError(
        `Kernel image "${path}" is an ELF file for machine ${elf.machine}, not x86 (EM_386 = 3 ` +
          `or EM_X86_64 = 62)`,
      );
    }
    pieces = elfSegmentPlacements(image, elf, path);
    const physical = physicalEntry(elf);
    if (physical >= BigInt(FOUR_GIB)) {
      throw new ImageError(
        `Kernel image "${path}" has its entry point at ${hex(physical)}, above 4 GiB: a ` +
          `Multiboot kernel is entered in 32-bit mode. Give it a 32-bit entry point.`,
      );
    }
    entry = Number(physical);
    kind = `ELF${elf.bits}`;
  } else {
    throw new ImageError(
      `Kernel image "${path}" has a Multiboot header but is not an ELF file and does not set ` +
        `flag bit 16 (load addresses in the header), so denovisor cannot tell where to load ` +
        `it. Link it as ELF or fill in the header's address fields.`,
    );
  }
  checkPieces(memory, pieces, path);
  const kernel = {
    start: Math.min(...pieces.map((p) => p.start)),
    end: Math.max(...pieces.map((p) => p.end)),
  };
  if (!memory.isRam(entry) || entry < kernel.start || entry >= kernel.end) {
    throw new ImageError(
      `Kernel image "${path}" has its entry point at ${hex(entry)}, outside the loaded ` +
        `kernel [${hex(kernel.start)}, ${hex(kernel.end)}). Check the kernel's entry address.`,
    );
  }

  // What the VMM keeps in memory itself goes where the kernel is not.
  const acpiMove = planAcpiMove(memory, opts.acpiRsdpAddr, pieces, path);
  const boot = placeBootArea(memory, opts, pieces);
  const initrd = opts.initrd;
  let module: { start: number; end: number } | undefined;
  if (initrd) {
    const len = initrd.length;
    const used = [...pieces, PC_HOLE, boot];
    const start = findFree(memory, Math.max(len, 1), PAGE, alignUp(kernel.end, PAGE), used);
    if (start === null) {
      throw new ImageError(
        `Initrd "${opts.initrdPath ?? "(initrd)"}" (${len} bytes) does not fit in guest RAM ` +
          `after the kernel "${path}" (which ends at ${hex(kernel.end)}; RAM is ` +
          `${memory.describe()}). Give the VM more memory with --mem.`,
      );
    }
    module = { start, end: start + len };
  }

  // Everything has a place: write it.
  const acpi = acpiMove ? moveAcpiTables(memory, acpiMove.from, acpiMove.to) : null;
  writeSegments(image, pieces, memory);
  if (initrd && module) memory.write(module.start, initrd);
  writeInfo(memory, boot.info, module);
  writeGdt(memory, boot.gdt);

  const state = resetCpuState();
  state.gpr[0] = BigInt(MULTIBOOT_BOOTLOADER_MAGIC); // EAX
  state.gpr[3] = BigInt(boot.info.infoAddr); // EBX
  state.gpr[4] = BigInt(boot.stackTop); // ESP
  state.rip = BigInt(entry);
  state.rflags = 0x2;
  state.cs = flatSegment(MB_CODE_SELECTOR, true);
  for (const seg of ["ds", "es", "fs", "gs", "ss"] as const) {
    state[seg] = flatSegment(MB_DATA_SELECTOR, false);
  }
  state.gdt = { base: BigInt(boot.gdt), limit: GDT_ENTRIES.length * 8 - 1 };
  state.idt = { base: 0n, limit: 0 };
  state.cr0 = CR0_PE | CR0_ET;

  const video = header.flags & MB_FLAG_VIDEO_MODE
    ? " (video mode requested: none, no display)"
    : "";
  return {
    format: "multiboot",
    state,
    description: `multiboot ${kind} kernel "${path}" at [${hex(kernel.start)}, ` +
      `${hex(kernel.end)}) entry ${hex(entry)}, multiboot_info at ${hex(boot.info.infoAddr)}` +
      (module
        ? `, module "${opts.initrdPath ?? ""}" at [${hex(module.start)}, ${hex(module.end)})`
        : "") +
      (acpi ? `, ACPI tables moved out of its way to ${hex(acpi.rsdpAddr)}` : "") +
      video,
  };
}

/** Where the a.out-kludge fields say the file goes, validated against the file. */
function aoutPlacement(
  image: Uint8Array,
  header: MultibootHeader,
  path: string,
): { place: SegmentPlacement; entry: number } {
  const fieldsEnd = header.offset + 32;
  if (fieldsEnd > image.length) {
    throw new ImageError(
      `Kernel image "${path}" is truncated: its Multiboot header's address fields end at ` +
        `${hex(fieldsEnd)} but the file has ${image.length} bytes`,
    );
  }
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const headerAddr = dv.getUint32(header.offset + 12, true);
  const loadAddr = dv.getUint32(header.offset + 16, true);
  const loadEndAddr = dv.getUint32(header.offset + 20, true);
  const bssEndAddr = dv.getUint32(header.offset + 24, true);
  const entryAddr = dv.getUint32(header.offset + 28, true);
  const bad = (what: string) =>
    new ImageError(
      `Kernel image "${path}" has inconsistent Multiboot address fields: ${what}. Fix the ` +
        `kernel's Multiboot header.`,
    );
  if (loadAddr > headerAddr) {
    throw bad(`load_addr ${hex(loadAddr)} is above header_addr ${hex(headerAddr)}`);
  }
  const fileOffset = header.offset - (headerAddr - loadAddr);
  if (fileOffset < 0) {
    throw bad(
      `header_addr - load_addr = ${hex(headerAddr - loadAddr)} is more than the header's file ` +
        `offset ${hex(header.offset)}`,
    );
  }
  let filesz: number;
  if (loadEndAddr === 0) {
    filesz = image.length - fileOffset;
  } else {
    if (loadEndAddr < loadAddr) {
      throw bad(`load_end_addr ${hex(loadEndAddr)} is below load_addr ${hex(loadAddr)}`);
    }
    filesz = loadEndAddr - loadAddr;
    if (fileOffset + filesz > image.length) {
      throw new ImageError(
        `Kernel image "${path}" is truncated: its Multiboot header says the kernel's bytes ` +
          `run to file offset ${hex(fileOffset + filesz)} (load_end_addr ${hex(loadEndAddr)}) ` +
          `but the file has ${image.length} bytes`,
      );
    }
  }
  let memsz = filesz;
  if (bssEndAddr !== 0) {
    if (bssEndAddr < loadAddr + filesz) {
      throw bad(`bss_end_addr ${hex(bssEndAddr)} is below the end of the loaded data`);
    }
    memsz = bssEndAddr - loadAddr;
  }
  return {
    place: { what: "the kernel", start: loadAddr, end: loadAddr + memsz, fileOffset, filesz },
    entry: entryAddr,
  };
}

/** The PC's reserved area below 1 MiB, kept free of what the VMM places itself. */
const PC_HOLE = { start: PC_HOLE_START, end: PC_HOLE_END };

/**
 * Refuses pieces that cannot be loaded: above 4 GiB (a 32-bit kernel cannot reach them),
 * outside RAM (past --mem or in the MMIO gap), or overlapping another piece.
 */
function checkPieces(memory: GuestMemory, pieces: readonly SegmentPlacement[], path: string) {
  const range = (p: SegmentPlacement) => `${p.what} at [${hex(p.start)}, ${hex(p.end)})`;
  for (const p of pieces) {
    if (p.end > FOUR_GIB) {
      throw new ImageError(
        `Kernel image "${path}": ${range(p)} is above 4 GiB, which a 32-bit Multiboot kernel ` +
          `cannot reach. Link it at physical addresses below 4 GiB.`,
      );
    }
  }
  // Pieces in the MMIO gap first: no --mem can help those. The --mem the others need is what
  // covers the whole kernel.
  const kernelEnd = Math.max(...pieces.map((p) => p.end));
  const gapFirst = [...pieces].sort((a, b) =>
    +(b.end > MMIO_GAP_START) - +(a.end > MMIO_GAP_START)
  );
  for (const p of gapFirst) {
    const why = notRamReason(memory, p.start, p.end, kernelEnd);
    if (why !== null) throw new ImageError(`Kernel image "${path}": ${range(p)} ${why}`);
  }
  const sorted = [...pieces].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!, b = sorted[i]!;
    if (b.start < a.end) {
      throw new ImageError(
        `Kernel image "${path}": ${range(b)} overlaps ${range(a)}: both cannot be loaded. Fix ` +
          `the kernel's program headers (p_paddr, p_memsz) or its linker script.`,
      );
    }
  }
}

/** A used range, for `findFree`. */
interface Span {
  start: number;
  end: number;
}

/**
 * The lowest `align`-aligned address from `from` up where `size` bytes of RAM below 4 GiB
 * (the first region, which stops at the MMIO gap) overlap none of `used`, or null.
 */
function findFree(
  memory: GuestMemory,
  size: number,
  align: number,
  from: number,
  used: readonly Span[],
  limit = Math.min(memory.regions[0]?.gpa === 0 ? memory.regions[0].size : 0, FOUR_GIB),
): number | null {
  let at = alignUp(from, align);
  while (at + size <= limit) {
    const hit = used.find((u) => at < u.end && at + size > u.start);
    if (!hit) return at;
    at = alignUp(hit.end, align);
  }
  return null;
}

/**
 * Where the ACPI tables go when a piece of the kernel lands on them: the first free spot of the
 * BIOS area [0xE0000, 1 MiB) (where guests scan for the RSDP), keeping their 64-byte alignment.
 * Null when there are no tables at `rsdpAddr` or the kernel leaves them alone.
 */
function planAcpiMove(
  memory: GuestMemory,
  rsdpAddr: number | undefined,
  pieces: readonly SegmentPlacement[],
  path: string,
): { from: number; to: number } | null {
  if (rsdpAddr === undefined) return null;
  const tables = readAcpiTables(memory, rsdpAddr);
  if (!tables) return null;
  const { start, end } = acpiExtent(tables);
  const hit = pieces.find((p) => p.start < end && p.end > start);
  if (!hit) return null;
  // The tables move as one block by a multiple of 64 bytes (the FACS must stay 64-aligned):
  // search in coordinates shifted by the block's offset within 64 bytes.
  const skew = start % ACPI_MOVE_ALIGN;
  const at = findFree(
    memory,
    end - start,
    ACPI_MOVE_ALIGN,
    ACPI_SCAN_START,
    pieces.map((p) => ({ start: p.start - skew, end: p.end - skew })),
    PC_HOLE_END - skew,
  );
  if (at === null) {
    throw new ImageError(
      `Kernel image "${path}": ${hit.what} at [${hex(hit.start)}, ${hex(hit.end)}) overlaps ` +
        `the ACPI tables at [${hex(start)}, ${hex(end)}), and the kernel leaves no other ` +
        `${end - start} free bytes for them in the BIOS area [${hex(ACPI_SCAN_START)}, ` +
        `${hex(PC_HOLE_END)}), the only place guests look for the RSDP. Link the kernel at ` +
        `1 MiB (0x100000) or above.`,
    );
  }
  return { from: rsdpAddr, to: rsdpAddr + (at + skew - start) };
}

/** Where the GDT, the initial stack and multiboot_info (with its data) go. */
interface BootArea extends Span {
  gdt: number;
  stackTop: number;
  info: InfoLayout;
}

/**
 * The default boot area (GDT at 0x500, ESP and multiboot_info at 0x9000) when the kernel leaves
 * it free and it fits below the PC hole; otherwise one block at the first free page of RAM.
 */
function placeBootArea(
  memory: GuestMemory,
  opts: BootOptions,
  pieces: readonly SegmentPlacement[],
): BootArea {
  const info = layoutInfo(memory, opts, MB_INFO_ADDR);
  const usual = { start: MB_GDT_ADDR, end: info.end };
  const clash = (a: Span) => pieces.some((p) => p.start < a.end && p.end > a.start);
  if (info.end <= PC_HOLE_START && memory.isRam(usual.start, usual.end - usual.start)) {
    if (!clash(usual)) return { ...usual, gdt: MB_GDT_ADDR, stackTop: MB_STACK_TOP, info };
  }
  const size = MB_MOVED_INFO_OFFSET + (info.end - MB_INFO_ADDR);
  const at = findFree(memory, size, PAGE, PAGE, [...pieces, PC_HOLE]);
  if (at === null) {
    throw new ImageError(
      `Kernel image "${opts.imagePath}": the boot information (multiboot_info, memory map, ` +
        `command line of ${opts.cmdline.length} bytes: ${size} bytes with the GDT and stack) ` +
        `does not fit in guest RAM beside the kernel (RAM is ${memory.describe()}). Use a ` +
        `shorter --cmdline or more --mem.`,
    );
  }
  const moved = layoutInfo(memory, opts, at + MB_MOVED_INFO_OFFSET);
  return { start: at, end: moved.end, gdt: at, stackTop: at + MB_MOVED_INFO_OFFSET, info: moved };
}

/** Addresses of the pieces of multiboot_info. */
interface InfoLayout {
  infoAddr: number;
  mmap: MemoryMapEntry[];
  mmapAddr: number;
  modsAddr: number;
  loaderNameAddr: number;
  cmdline: Uint8Array;
  cmdlineAddr: number;
  moduleName: Uint8Array;
  moduleNameAddr: number;
  end: number;
}

function layoutInfo(memory: GuestMemory, opts: BootOptions, infoAddr: number): InfoLayout {
  const enc = new TextEncoder();
  const mmap = pcMemoryMap(memory);
  const cmdline = enc.encode(`${opts.imagePath} ${opts.cmdline}\0`);
  const moduleName = enc.encode(`${opts.initrdPath ?? ""}\0`);
  const mmapAddr = infoAddr + alignUp(MBI_SIZE, 16);
  const modsAddr = mmapAddr + mmap.length * MMAP_ENTRY_SIZE;
  const loaderNameAddr = modsAddr + (opts.initrd ? MODULE_ENTRY_SIZE : 0);
  const moduleNameAddr = loaderNameAddr + BOOT_LOADER_NAME.length + 1;
  const cmdlineAddr = moduleNameAddr + (opts.initrd ? moduleName.length : 0);
  const end = cmdlineAddr + cmdline.length;
  return {
    infoAddr,
    mmap,
    mmapAddr,
    modsAddr,
    loaderNameAddr,
    cmdline,
    cmdlineAddr,
    moduleName,
    moduleNameAddr,
    end,
  };
}

function writeInfo(
  memory: GuestMemory,
  info: InfoLayout,
  module: { start: number; end: number } | undefined,
): void {
  memory.fill(info.infoAddr, info.end - info.infoAddr, 0);
  const { memLower, memUpper } = multibootMemorySizes(memory.regions);
  let flags = MBI_FLAG_MEMORY | MBI_FLAG_CMDLINE | MBI_FLAG_MMAP | MBI_FLAG_LOADER_NAME;
  memory.writeU32(info.infoAddr + MBI.memLower, memLower);
  memory.writeU32(info.infoAddr + MBI.memUpper, memUpper);
  memory.writeU32(info.infoAddr + MBI.cmdline, info.cmdlineAddr);
  memory.write(info.cmdlineAddr, info.cmdline);

  memory.writeU32(info.infoAddr + MBI.mmapLength, info.mmap.length * MMAP_ENTRY_SIZE);
  memory.writeU32(info.infoAddr + MBI.mmapAddr, info.mmapAddr);
  info.mmap.forEach((e, i) => {
    const at = info.mmapAddr + i * MMAP_ENTRY_SIZE;
    memory.writeU32(at, MMAP_ENTRY_SIZE - 4);
    memory.writeU64(at + 4, BigInt(e.base));
    memory.writeU64(at + 12, BigInt(e.length));
    memory.writeU32(at + 20, e.type);
  });

  memory.writeU32(info.infoAddr + MBI.bootLoaderName, info.loaderNameAddr);
  memory.write(info.loaderNameAddr, new TextEncoder().encode(BOOT_LOADER_NAME + "\0"));

  if (module) {
    flags |= MBI_FLAG_MODS;
    memory.writeU32(info.infoAddr + MBI.modsCount, 1);
    memory.writeU32(info.infoAddr + MBI.modsAddr, info.modsAddr);
    memory.writeU32(info.modsAddr, module.start);
    memory.writeU32(info.modsAddr + 4, module.end);
    memory.writeU32(info.modsAddr + 8, info.moduleNameAddr);
    memory.writeU32(info.modsAddr + 12, 0);
    memory.write(info.moduleNameAddr, info.moduleName);
  }
  memory.writeU32(info.infoAddr + MBI.flags, flags);
}

function writeGdt(memory: GuestMemory, at: number): void {
  GDT_ENTRIES.forEach((d, i) => memory.writeU64(at + i * 8, d));
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
