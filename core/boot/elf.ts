/**
 * ELF32/ELF64 parsing for the loaders: the file header, program headers and notes, each checked
 * against the file's length so that a truncated or malformed image becomes an ImageError that
 * names the file, never an out-of-range read. Loading copies PT_LOAD segments by physical address
 * and zeroes their bss tails. Used by the Multiboot loader and the Linux/PVH loader.
 */

import { ImageError } from "../errors.ts";
import { type GuestMemory, hex, HIGH_RAM_START, MMIO_GAP_START } from "../memory.ts";

/** `\x7FELF` at offset 0 (System V ABI, "e_ident"). */
export const ELF_MAGIC = 0x464c_457f;
/** e_ident[EI_CLASS] values. */
export const ELFCLASS32 = 1, ELFCLASS64 = 2;
/** e_ident[EI_DATA]: little-endian. */
export const ELFDATA2LSB = 1;
/** e_machine values we load. */
export const EM_386 = 3, EM_X86_64 = 62;
/** p_type values. */
export const PT_LOAD = 1, PT_NOTE = 4;

const EI_CLASS = 4;
const EI_DATA = 5;
const ELF32_EHDR_SIZE = 52;
const ELF64_EHDR_SIZE = 64;
const ELF32_PHDR_SIZE = 32;
const ELF64_PHDR_SIZE = 56;

/** One program header, with 64-bit addresses as bigints (ELF64 kernels link at 0xffff…). */
export interface ElfProgramHeader {
  /** Position in the program header table, for error messages. */
  index: number;
  /** p_type (PT_LOAD, PT_NOTE, ...). */
  type: number;
  /** p_flags (PF_X = 1, PF_W = 2, PF_R = 4). */
  flags: number;
  /** p_offset: where the segment's bytes start in the file. */
  offset: number;
  /** p_vaddr. */
  vaddr: bigint;
  /** p_paddr: where loaders put the segment in guest-physical memory. */
  paddr: bigint;
  /** p_filesz: bytes taken from the file. */
  filesz: number;
  /** p_memsz: bytes in memory; the tail past `filesz` is zeroed (bss). */
  memsz: number;
  /** p_align. */
  align: bigint;
}

/** A parsed ELF file header and its program headers. */
export interface ElfFile {
  /** 32 or 64. */
  bits: 32 | 64;
  /** e_machine (EM_386, EM_X86_64, ...). */
  machine: number;
  /** e_type (2 = executable). */
  type: number;
  /** e_entry. */
  entry: bigint;
  /** Every program header, in table order. */
  programHeaders: ElfProgramHeader[];
}

/** An ELF note (from a PT_NOTE segment). */
export interface ElfNote {
  /** Owner name without its terminating NUL ("Xen", "GNU", ...). */
  name: string;
  /** Note type. */
  type: number;
  /** The descriptor bytes (a view into the image). */
  desc: Uint8Array;
}

/**
 * True when `image` starts with the ELF magic.
 *
 * @example
 * ```ts
 * import { isElf } from "./elf.ts";
 * isElf(new Uint8Array([0x7f, 0x45, 0x4c, 0x46])); // true
 * ```
 */
export function isElf(image: Uint8Array): boolean {
  return image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c &&
    image[3] === 0x46;
}

function view(image: Uint8Array): DataView {
  return new DataView(image.buffer, image.byteOffset, image.byteLength);
}

function u64(dv: DataView, off: number): bigint {
  return dv.getBigUint64(off, true);
}

/** A bigint file offset or size as a number, or an ImageError when it cannot be one. */
function fileNumber(v: bigint, what: string, path: string, fileSize: number): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImageError(
      `Kernel image "${path}" is corrupt: ${what} is ${hex(v)}, far beyond the file's ` +
        `${fileSize} bytes. Rebuild the kernel or check that the file is a complete ELF image.`,
    );
  }
  return Number(v);
}

/**
 * Parses the ELF header and program headers of `image`. Throws ImageError naming `path` when the
 * file is not a little-endian ELF32/ELF64 file or when a header lies past the end of the file.
 * Segment data is checked by `checkSegmentData` / `loadElfSegments`, notes by `readElfNotes`.
 *
 * @example
 * ```ts
 * import { parseElf } from "./elf.ts";
 * const bytes = await Deno.readFile("tests/guests/hello_multiboot.elf");
 * const elf = parseElf(bytes, "tests/guests/hello_multiboot.elf");
 * console.log(elf.bits, elf.entry.toString(16));
 * ```
 */
export function parseElf(image: Uint8Array, path: string): ElfFile {
  if (!isElf(image)) {
    throw new ImageError(`Kernel image "${path}" is not an ELF file (no \\x7FELF magic)`);
  }
  const cls = image[EI_CLASS];
  if (cls !== ELFCLASS32 && cls !== ELFCLASS64) {
    throw new ImageError(
      `Kernel image "${path}" has an unknown ELF class ${cls ?? "(missing)"}: expected 1 ` +
        `(ELF32) or 2 (ELF64)`,
    );
  }
  if (image[EI_DATA] !== ELFDATA2LSB) {
    throw new ImageError(
      `Kernel image "${path}" is a big-endian ELF file: x86 kernels are little-endian. ` +
        `Build the kernel for x86.`,
    );
  }
  const bits = cls === ELFCLASS32 ? 32 : 64;
  const ehdrSize = bits === 32 ? ELF32_EHDR_SIZE : ELF64_EHDR_SIZE;
  if (image.length < ehdrSize) {
    throw new ImageError(
      `Kernel image "${path}" is truncated: the ELF${bits} header ends at ${hex(ehdrSize)} ` +
        `but the file has ${image.length} bytes`,
    );
  }
  const dv = view(image);
  const type = dv.getUint16(16, true);
  const machine = dv.getUint16(18, true);
  let entry: bigint, phoff: number, phentsize: number, phnum: number;
  if (bits === 32) {
    entry = BigInt(dv.getUint32(24, true));
    phoff = dv.getUint32(28, true);
    phentsize = dv.getUint16(42, true);
    phnum = dv.getUint16(44, true);
  } else {
    entry = u64(dv, 24);
    phoff = fileNumber(u64(dv, 32), "the program header offset", path, image.length);
    phentsize = dv.getUint16(54, true);
    phnum = dv.getUint16(56, true);
  }
  const minPhent = bits === 32 ? ELF32_PHDR_SIZE : ELF64_PHDR_SIZE;
  if (phnum > 0 && phentsize < minPhent) {
    throw new ImageError(
      `Kernel image "${path}" is corrupt: its program headers are ${phentsize} bytes each, ` +
        `but ELF${bits} program headers need ${minPhent}`,
    );
  }
  const programHeaders: ElfProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + minPhent > image.length) {
      throw new ImageError(
        `Kernel image "${path}" is truncated: program header ${i} ends at ` +
          `${hex(at + minPhent)} but the file has ${image.length} bytes`,
      );
    }
    if (bits === 32) {
      programHeaders.push({
        index: i,
        type: dv.getUint32(at, true),
        offset: dv.getUint32(at + 4, true),
        vaddr: BigInt(dv.getUint32(at + 8, true)),
        paddr: BigInt(dv.getUint32(at + 12, true)),
        filesz: dv.getUint32(at + 16, true),
        memsz: dv.getUint32(at + 20, true),
        flags: dv.getUint32(at + 24, true),
        align: BigInt(dv.getUint32(at + 28, true)),
      });
    } else {
      const what = (f: string) => `program header ${i}'s ${f}`;
      programHeaders.push({
        index: i,
        type: dv.getUint32(at, true),
        flags: dv.getUint32(at + 4, true),
        offset: fileNumber(u64(dv, at + 8), what("p_offset"), path, image.length),
        vaddr: u64(dv, at + 16),
        paddr: u64(dv, at + 24),
        filesz: fileNumber(u64(dv, at + 32), what("p_filesz"), path, image.length),
        memsz: fileNumber(u64(dv, at + 40), what("p_memsz"), path, image.length),
        align: u64(dv, at + 48),
      });
    }
  }
  return { bits, machine, type, entry, programHeaders };
}

/** The PT_LOAD program headers with a non-zero memory size, in table order. */
export function loadSegments(elf: ElfFile): ElfProgramHeader[] {
  return elf.programHeaders.filter((ph) => ph.type === PT_LOAD && ph.memsz > 0);
}

/**
 * Throws ImageError naming `path` when a segment's file bytes lie past the end of the file or
 * its file size exceeds its memory size.
 */
export function checkSegmentData(image: Uint8Array, ph: ElfProgramHeader, path: string): void {
  if (ph.offset + ph.filesz > image.length) {
    throw new ImageError(
      `Kernel image "${path}" is truncated: segment ${ph.index} (program header ${ph.index}) ` +
        `ends at file offset ${hex(ph.offset + ph.filesz)} but the file has ` +
        `${image.length} bytes`,
    );
  }
  if (ph.filesz > ph.memsz) {
    throw new ImageError(
      `Kernel image "${path}" is corrupt: program header ${ph.index} has p_filesz ` +
        `${hex(ph.filesz)} larger than p_memsz ${hex(ph.memsz)}`,
    );
  }
}

/**
 * Where `elf.entry` is in guest-physical memory: the entry translated from the virtual to the
 * physical address of the PT_LOAD segment that contains it (as GRUB does), or the entry as is
 * when no segment's virtual range contains it.
 */
export function physicalEntry(elf: ElfFile): bigint {
  for (const ph of loadSegments(elf)) {
    if (elf.entry >= ph.vaddr && elf.entry < ph.vaddr + BigInt(ph.memsz)) {
      return elf.entry - ph.vaddr + ph.paddr;
    }
  }
  return elf.entry;
}

/** Where one piece of a kernel goes: `filesz` bytes from the file, then zeroes up to `end`. */
export interface SegmentPlacement {
  /** What to call it in messages ("segment 0", "the kernel"). */
  what: string;
  /** First guest-physical address. */
  start: number;
  /** One past the last guest-physical address (bss included). */
  end: number;
  /** Where its bytes start in the file. */
  fileOffset: number;
  /** How many bytes come from the file; the rest up to `end` is zeroed. */
  filesz: number;
}

/**
 * Where every PT_LOAD segment of `elf` goes (`p_paddr`, `p_memsz`), checked against the file
 * (`checkSegmentData`) and against addresses a number can hold, but not yet against guest RAM.
 * Throws ImageError naming `path` and the segment.
 */
export function elfSegmentPlacements(
  image: Uint8Array,
  elf: ElfFile,
  path: string,
): SegmentPlacement[] {
  const segments = loadSegments(elf);
  if (segments.length === 0) {
    throw new ImageError(
      `Kernel image "${path}" has no loadable (PT_LOAD) segment: nothing to boot`,
    );
  }
  return segments.map((ph) => {
    checkSegmentData(image, ph, path);
    const end = ph.paddr + BigInt(ph.memsz);
    if (end > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ImageError(
        `Kernel image "${path}": segment ${ph.index} is at physical ${hex(ph.paddr)}, far ` +
          `beyond any guest RAM. The kernel is linked for a machine with a different memory ` +
          `layout.`,
      );
    }
    return {
      what: `segment ${ph.index}`,
      start: Number(ph.paddr),
      end: Number(end),
      fileOffset: ph.offset,
      filesz: ph.filesz,
    };
  });
}

/**
 * Why `[start, end)` cannot be loaded into `memory`, as the end of an error message that names
 * what collides and the fix, or null when the range is RAM. `loadEnd` is the end of everything
 * being loaded with it (the whole kernel), for the --mem the fix names.
 */
export function notRamReason(
  memory: GuestMemory,
  start: number,
  end: number,
  loadEnd: number = end,
): string | null {
  if (memory.isRam(start, Math.max(end - start, 1))) return null;
  const ram = memory.describe();
  if (start < HIGH_RAM_START && end > MMIO_GAP_START) {
    return `is outside guest RAM (${ram}): it overlaps the MMIO gap [${hex(MMIO_GAP_START)}, ` +
      `${hex(HIGH_RAM_START)}), where device registers (IOAPIC, local APIC) live and no RAM ` +
      `can be. Link it at physical addresses below ${hex(MMIO_GAP_START)}.`;
  }
  // Below the gap or above 4 GiB: more RAM would cover it (and the rest of the load, unless
  // that is in the gap, which its own message names).
  const top = loadEnd > MMIO_GAP_START && loadEnd <= HIGH_RAM_START ? end : Math.max(end, loadEnd);
  const ramNeeded = top <= MMIO_GAP_START ? top : MMIO_GAP_START + (top - HIGH_RAM_START);
  const mib = Math.ceil(ramNeeded / (1 << 20));
  return `is outside guest RAM (${ram}): it ends past the end of RAM. Give the VM more ` +
    `memory with --mem (at least --mem ${mib}M).`;
}

/** Copies each placement's file bytes into `memory` and zeroes the rest of it. */
export function writeSegments(
  image: Uint8Array,
  placements: readonly SegmentPlacement[],
  memory: GuestMemory,
): void {
  for (const p of placements) {
    memory.write(p.start, image.subarray(p.fileOffset, p.fileOffset + p.filesz));
    memory.fill(p.start + p.filesz, p.end - p.start - p.filesz, 0);
  }
}

/** Options of `loadElfSegments`. */
export interface LoadElfOptions {
  /** Image path for error messages. */
  path: string;
  /**
   * Called with each segment's physical range before anything is written; throw an ImageError
   * to refuse it (for example when it overlaps memory the loader uses itself).
   */
  checkRange?: (ph: ElfProgramHeader, start: number, end: number) => void;
}

/** What `loadElfSegments` placed. */
export interface LoadedElf {
  /** Lowest guest-physical address written. */
  start: number;
  /** One past the highest guest-physical address written (bss included). */
  end: number;
}

/**
 * Copies every PT_LOAD segment to its physical address (`p_paddr`) in `memory` and zeroes the
 * rest of its `p_memsz`. Everything is validated before the first byte is written: file bounds,
 * RAM bounds (ImageError naming `opts.path` and the segment) and `opts.checkRange`.
 *
 * @example
 * ```ts
 * import { loadElfSegments, parseElf } from "./elf.ts";
 * import { GuestMemory } from "../memory.ts";
 * const path = "tests/guests/hello_multiboot.elf";
 * const bytes = await Deno.readFile(path);
 * const placed = loadElfSegments(bytes, parseElf(bytes, path), GuestMemory.allocate(4 << 20), {
 *   path,
 * });
 * console.log(placed.start.toString(16), placed.end.toString(16));
 * ```
 */
export function loadElfSegments(
  image: Uint8Array,
  elf: ElfFile,
  memory: GuestMemory,
  opts: LoadElfOptions,
): LoadedElf {
  const placements = elfSegmentPlacements(image, elf, opts.path);
  const segments = loadSegments(elf);
  const lo = Math.min(...placements.map((p) => p.start));
  const hi = Math.max(...placements.map((p) => p.end));
  placements.forEach((p, i) => {
    opts.checkRange?.(segments[i]!, p.start, p.end);
    const why = notRamReason(memory, p.start, p.end, hi);
    if (why !== null) {
      throw new ImageError(
        `Kernel image "${opts.path}": ${p.what} at [${hex(p.start)}, ${hex(p.end)}) ${why}`,
      );
    }
  });
  writeSegments(image, placements, memory);
  return { start: lo, end: hi };
}

/**
 * Reads the notes of every PT_NOTE segment. Throws ImageError naming `path` when a note segment
 * lies past the end of the file or a note runs past its segment.
 */
export function readElfNotes(image: Uint8Array, elf: ElfFile, path: string): ElfNote[] {
  const notes: ElfNote[] = [];
  const dv = view(image);
  for (const ph of elf.programHeaders) {
    if (ph.type !== PT_NOTE) continue;
    checkSegmentData(image, { ...ph, memsz: Math.max(ph.memsz, ph.filesz) }, path);
    const end = ph.offset + ph.filesz;
    let at = ph.offset;
    // Each note: namesz, descsz, type (4 bytes each), then name and desc, each padded to 4.
    while (at + 12 <= end) {
      const namesz = dv.getUint32(at, true);
      const descsz = dv.getUint32(at + 4, true);
      const type = dv.getUint32(at + 8, true);
      const nameAt = at + 12;
      const descAt = nameAt + align4(namesz);
      const next = descAt + align4(descsz);
      if (descAt + descsz > end) {
        throw new ImageError(
          `Kernel image "${path}" is corrupt: a note at file offset ${hex(at)} runs past the ` +
            `end of its PT_NOTE segment (program header ${ph.index})`,
        );
      }
      let nameLen = namesz;
      while (nameLen > 0 && image[nameAt + nameLen - 1] === 0) nameLen--;
      notes.push({
        name: new TextDecoder().decode(image.subarray(nameAt, nameAt + nameLen)),
        type,
        desc: image.subarray(descAt, descAt + descsz),
      });
      at = next;
    }
  }
  return notes;
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}
