/**
 * The PVH boot path for Linux (the Xen/x86 "HVM direct boot" ABI that KVM VMMs reuse): load an
 * ELF vmlinux by its PT_LOAD segments, find its XEN_ELFNOTE_PHYS32_ENTRY note, write
 * `hvm_start_info` (command line, initrd as module 0, e820-style memory map, RSDP) and enter the
 * kernel in flat 32-bit protected mode with EBX pointing at that structure. Also holds the
 * low-memory layout, GDT, command-line and initrd placement the bzImage path shares.
 */

import {
  type CpuState,
  CR0_ET,
  CR0_PE,
  flatSegment,
  resetCpuState,
  type Segment,
} from "../cpu_state.ts";
import { ImageError } from "../errors.ts";
import { type GuestMemory, hex, MMIO_GAP_START } from "../memory.ts";
import { type E820Entry, e820Map } from "./e820.ts";
import { type ElfFile, EM_X86_64, loadElfSegments, parseElf, readElfNotes } from "./elf.ts";
import type { BootOptions, BootSetup } from "./types.ts";

// Low-memory layout (below the EBDA at 0x9fc00), shared by both Linux boot paths.
/** GDT: null, 0x08 flat code32, 0x10 code64, 0x18 flat data, 0x20 TSS (16 bytes in long mode). */
export const BOOT_GDT_ADDR = 0x500;
/** hvm_start_info (PVH). */
export const START_INFO_ADDR = 0x6000;
/** hvm_modlist_entry array (PVH; one entry for the initrd). */
export const MODLIST_ADDR = 0x6040;
/** hvm_memmap_table_entry array (PVH). */
export const MEMMAP_ADDR = 0x6100;
/** boot_params, the "zero page" (bzImage path). */
export const ZERO_PAGE_ADDR = 0x7000;
/** Initial stack pointer of the 64-bit path (as Firecracker sets it). */
export const BOOT_STACK_ADDR = 0x8ff0;
/** Page tables of the 64-bit path: PML4, PDPT, then four page directories (4 GiB of 2 MiB pages). */
export const PML4_ADDR = 0x9000;
/** The kernel command line. */
export const CMDLINE_ADDR = 0x2_0000;
/** Room reserved for the command line at CMDLINE_ADDR. */
export const CMDLINE_MAX = 0x1_0000;

/** GDT selectors. Linux's 64-bit boot protocol wants __BOOT_CS = 0x10 and __BOOT_DS = 0x18. */
export const SEL_CODE32 = 0x08, SEL_CODE64 = 0x10, SEL_DATA = 0x18, SEL_TSS = 0x20;
const GDT_ENTRIES: readonly bigint[] = [
  0n,
  0x00cf_9b00_0000_ffffn, // code32: base 0, limit 4 GiB, G, D, P, DPL0, execute/read
  0x00af_9b00_0000_ffffn, // code64: G, L, P, DPL0, execute/read
  0x00cf_9300_0000_ffffn, // data: base 0, limit 4 GiB, G, B, P, DPL0, read/write
  0x0000_8b00_0000_0067n, // TSS: base 0, limit 0x67, busy
  0n, // upper half of the 16-byte long-mode TSS descriptor
];
/** GDTR limit of the boot GDT. */
export const BOOT_GDT_LIMIT = GDT_ENTRIES.length * 8 - 1;

/** hvm_start_info magic ("xEn3" with the 0x80 bit of the E set; Xen public start_info.h). */
export const HVM_START_MAGIC = 0x336e_c578;
/** hvm_start_info version that has the memmap fields. */
export const HVM_START_INFO_VERSION = 1;
/** Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point (Xen public elfnote.h). */
export const XEN_ELFNOTE_PHYS32_ENTRY = 0x12;
/** hvm_start_info field offsets. */
export const START_INFO = {
  magic: 0x00,
  version: 0x04,
  flags: 0x08,
  nrModules: 0x0c,
  modlistPaddr: 0x10,
  cmdlinePaddr: 0x18,
  rsdpPaddr: 0x20,
  memmapPaddr: 0x28,
  memmapEntries: 0x30,
  reserved: 0x34,
} as const;
/** Size of hvm_start_info version 1. */
export const START_INFO_SIZE = 0x38;
/** Size of hvm_modlist_entry (paddr, size, cmdline_paddr, reserved: u64 each). */
export const MODLIST_ENTRY_SIZE = 32;
/** Size of hvm_memmap_table_entry (addr u64, size u64, type u32, reserved u32). */
export const MEMMAP_ENTRY_SIZE = 24;
const MEMMAP_MAX_ENTRIES = Math.floor((ZERO_PAGE_ADDR - MEMMAP_ADDR) / MEMMAP_ENTRY_SIZE);

/** The Linux command line used when the caller gives none. */
export const DEFAULT_LINUX_CMDLINE = "console=ttyS0";

const PAGE = 0x1000;

/** Writes the boot GDT at BOOT_GDT_ADDR. */
export function writeBootGdt(memory: GuestMemory): void {
  GDT_ENTRIES.forEach((e, i) => memory.writeU64(BOOT_GDT_ADDR + i * 8, e));
}

/** The TSS segment both paths leave in TR (busy 32/64-bit TSS at base 0). */
export function bootTss(): Segment {
  return {
    selector: SEL_TSS,
    base: 0n,
    limit: 0x67,
    type: 0xb,
    s: 0,
    dpl: 0,
    present: 1,
    l: 0,
    db: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  };
}

/**
 * Writes `cmdline` (or DEFAULT_LINUX_CMDLINE when empty) NUL-terminated at CMDLINE_ADDR and
 * returns it. Throws ImageError when it is longer than `maxLen` bytes (the kernel's limit).
 */
export function writeCmdline(
  memory: GuestMemory,
  cmdline: string,
  maxLen: number,
  path: string,
): string {
  const text = cmdline.trim() === "" ? DEFAULT_LINUX_CMDLINE : cmdline;
  const bytes = new TextEncoder().encode(text);
  const limit = Math.min(maxLen, CMDLINE_MAX - 1);
  if (bytes.length > limit) {
    throw new ImageError(
      `Kernel command line for "${path}" is ${bytes.length} bytes, but the kernel accepts at ` +
        `most ${limit}: shorten --cmdline`,
    );
  }
  memory.fill(CMDLINE_ADDR, bytes.length + 1, 0);
  memory.write(CMDLINE_ADDR, bytes);
  return text;
}

/** Where `placeInitrd` may put the initrd. */
export interface InitrdPlacement {
  /** The initrd must start at or above this address (end of the kernel). */
  lowest: number;
  /** Highest address the initrd's last byte may occupy (initrd_addr_max). */
  highest: number;
  /** Kernel path, for messages. */
  imagePath: string;
  /** Initrd path, for messages. */
  initrdPath?: string;
}

/**
 * Copies `initrd` page-aligned as high as possible in the RAM below the MMIO gap (below 4 GiB)
 * and at most `highest`; returns its address. Throws ImageError when it does not fit above
 * `lowest`.
 */
export function placeInitrd(memory: GuestMemory, initrd: Uint8Array, p: InitrdPlacement): number {
  const low = memory.regions[0]!;
  const top = Math.min(low.gpa + low.size, p.highest + 1);
  const addr = Math.floor((top - initrd.length) / PAGE) * PAGE;
  const name = p.initrdPath ? `Initrd "${p.initrdPath}"` : "The initrd";
  if (addr < p.lowest || !memory.isRam(addr, initrd.length)) {
    const need = Math.ceil((p.lowest + initrd.length + PAGE) / (1 << 20));
    if (p.highest + 1 <= low.gpa + low.size || p.lowest + initrd.length + PAGE > MMIO_GAP_START) {
      // The kernel's own ceiling or the MMIO gap is in the way: more RAM would not help.
      throw new ImageError(
        `${name} (${initrd.length} bytes) does not fit between the kernel "${p.imagePath}" ` +
          `(ends at ${hex(p.lowest)}) and ${hex(top)}, the highest an initrd may end ` +
          `(${top === p.highest + 1 ? "the kernel's initrd_addr_max" : "below the MMIO gap"}), ` +
          `at any --mem: use a smaller initrd`,
      );
    }
    throw new ImageError(
      `${name} (${initrd.length} bytes) does not fit between the kernel "${p.imagePath}" ` +
        `(ends at ${hex(p.lowest)}) and the top of usable low memory ${hex(top)}: ` +
        `give the VM at least ${need} MiB with --mem`,
    );
  }
  memory.write(addr, initrd);
  return addr;
}

/** What `writeStartInfo` describes. */
export interface StartInfoOptions {
  /** Address of the NUL-terminated command line. */
  cmdlineAddr: number;
  /** The initrd (module 0), if any. */
  initrd?: { addr: number; size: number };
  /** ACPI RSDP address, or 0 when there is none (the kernel then scans the BIOS area). */
  rsdpAddr?: number;
  /** Memory map. */
  e820: readonly E820Entry[];
}

/** Writes hvm_start_info (version 1) at START_INFO_ADDR, its module list and memory map. */
export function writeStartInfo(memory: GuestMemory, o: StartInfoOptions): void {
  if (o.e820.length > MEMMAP_MAX_ENTRIES) {
    throw new RangeError(`Memory map has ${o.e820.length} entries; at most ${MEMMAP_MAX_ENTRIES}`);
  }
  const s = START_INFO_ADDR;
  memory.fill(s, START_INFO_SIZE, 0);
  memory.writeU32(s + START_INFO.magic, HVM_START_MAGIC);
  memory.writeU32(s + START_INFO.version, HVM_START_INFO_VERSION);
  memory.writeU64(s + START_INFO.cmdlinePaddr, BigInt(o.cmdlineAddr));
  memory.writeU64(s + START_INFO.rsdpPaddr, BigInt(o.rsdpAddr ?? 0));
  if (o.initrd) {
    memory.fill(MODLIST_ADDR, MODLIST_ENTRY_SIZE, 0);
    memory.writeU64(MODLIST_ADDR, BigInt(o.initrd.addr));
    memory.writeU64(MODLIST_ADDR + 8, BigInt(o.initrd.size));
    memory.writeU32(s + START_INFO.nrModules, 1);
    memory.writeU64(s + START_INFO.modlistPaddr, BigInt(MODLIST_ADDR));
  }
  o.e820.forEach((e, i) => {
    const at = MEMMAP_ADDR + i * MEMMAP_ENTRY_SIZE;
    memory.writeU64(at, BigInt(e.addr));
    memory.writeU64(at + 8, BigInt(e.size));
    memory.writeU32(at + 16, e.type);
    memory.writeU32(at + 20, 0);
  });
  memory.writeU64(s + START_INFO.memmapPaddr, BigInt(MEMMAP_ADDR));
  memory.writeU32(s + START_INFO.memmapEntries, o.e820.length);
}

/** The PVH entry point from an ELF's XEN_ELFNOTE_PHYS32_ENTRY note, or undefined without one. */
export function findPvhEntry(image: Uint8Array, elf: ElfFile, path: string): number | undefined {
  for (const n of readElfNotes(image, elf, path)) {
    if (n.name !== "Xen" || n.type !== XEN_ELFNOTE_PHYS32_ENTRY) continue;
    if (n.desc.length < 4) {
      throw new ImageError(`Kernel image "${path}" has a PVH entry note shorter than 4 bytes`);
    }
    const dv = new DataView(n.desc.buffer, n.desc.byteOffset, n.desc.byteLength);
    // Linux emits the note as a pointer-sized value (8 bytes on x86-64): the entry is 32-bit.
    if (n.desc.length >= 8 && dv.getUint32(4, true) !== 0) {
      throw new ImageError(`Kernel image "${path}" has a PVH entry above 4 GiB`);
    }
    return dv.getUint32(0, true);
  }
  return undefined;
}

/** The vCPU state PVH prescribes: flat 32-bit protected mode, paging off, EBX = start_info. */
export function pvhCpuState(entry: number, startInfo = START_INFO_ADDR): CpuState {
  const s = resetCpuState();
  s.cs = flatSegment(SEL_CODE32, true);
  s.ds = flatSegment(SEL_DATA, false);
  s.es = flatSegment(SEL_DATA, false);
  s.ss = flatSegment(SEL_DATA, false);
  s.fs = flatSegment(SEL_DATA, false);
  s.gs = flatSegment(SEL_DATA, false);
  s.tr = bootTss();
  s.gdt = { base: BigInt(BOOT_GDT_ADDR), limit: BOOT_GDT_LIMIT };
  s.idt = { base: 0n, limit: 0 };
  s.cr0 = CR0_PE | CR0_ET;
  s.cr4 = 0;
  s.efer = 0;
  s.rip = BigInt(entry);
  s.gpr[3] = BigInt(startInfo); // rbx
  s.rflags = 0x2;
  return s;
}

/** Extra inputs of `loadPvhElf`. */
export interface PvhLoadOptions extends BootOptions {
  /** ACPI RSDP address for hvm_start_info.rsdp_paddr (0 or absent: none). */
  acpiRsdpAddr?: number;
  /** Highest address the initrd may end at (a bzImage's initrd_addr_max); default 4 GiB - 1. */
  initrdAddrMax?: number;
  /** What to call the image in the description (e.g. "bzImage payload"). */
  what?: string;
}

/**
 * Loads an ELF vmlinux with a PVH note (`vmlinux` bytes, e.g. a bzImage's decompressed payload)
 * into `memory` and returns the PVH start state. Throws ImageError naming `opts.imagePath`
 * when it is not an x86-64 ELF with a PVH entry note, or does not fit in RAM.
 */
export function loadPvhElf(
  vmlinux: Uint8Array,
  memory: GuestMemory,
  opts: PvhLoadOptions,
): BootSetup {
  const path = opts.imagePath;
  const elf = parseElf(vmlinux, path);
  if (elf.bits !== 64 || elf.machine !== EM_X86_64) {
    throw new ImageError(
      `Kernel image "${path}" is an ELF${elf.bits} file for machine ${elf.machine}, not an ` +
        `x86-64 Linux vmlinux`,
    );
  }
  const entry = findPvhEntry(vmlinux, elf, path);
  if (entry === undefined) {
    throw new ImageError(
      `Kernel image "${path}" has no PVH entry note (Xen ELF note ${XEN_ELFNOTE_PHYS32_ENTRY}): ` +
        `build the kernel with CONFIG_PVH=y, or boot its bzImage instead`,
    );
  }
  const placed = loadElfSegments(vmlinux, elf, memory, {
    path,
    checkRange: (ph, start, end) => {
      if (start < CMDLINE_ADDR + CMDLINE_MAX) {
        throw new ImageError(
          `Kernel image "${path}": segment ${ph.index} at [${hex(start)}, ${hex(end)}) overlaps ` +
            `the loader's boot data below ${hex(CMDLINE_ADDR + CMDLINE_MAX)}`,
        );
      }
    },
  });
  if (!memory.isRam(entry)) {
    throw new ImageError(`Kernel image "${path}": PVH entry ${hex(entry)} is outside guest RAM`);
  }
  writeBootGdt(memory);
  const cmdline = writeCmdline(memory, opts.cmdline, CMDLINE_MAX - 1, path);
  let initrd: { addr: number; size: number } | undefined;
  if (opts.initrd) {
    const addr = placeInitrd(memory, opts.initrd, {
      lowest: Math.ceil(placed.end / PAGE) * PAGE,
      highest: opts.initrdAddrMax ?? 0xffff_ffff,
      imagePath: path,
      initrdPath: opts.initrdPath,
    });
    initrd = { addr, size: opts.initrd.length };
  }
  writeStartInfo(memory, {
    cmdlineAddr: CMDLINE_ADDR,
    initrd,
    rsdpAddr: opts.acpiRsdpAddr,
    e820: e820Map(memory),
  });
  const initrdText = initrd ? `, initrd ${initrd.size} bytes at ${hex(initrd.addr)}` : "";
  return {
    format: "linux",
    state: pvhCpuState(entry),
    description: `Linux ${opts.what ?? "ELF vmlinux"} via PVH: [${hex(placed.start)}, ` +
      `${hex(placed.end)}), entry ${hex(entry)}${initrdText}, cmdline "${cmdline}"`,
  };
}
