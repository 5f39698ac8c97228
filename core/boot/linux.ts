/**
 * Linux kernel loader (`--format linux`): a bzImage (x86 boot protocol ≥ 2.06) or an ELF
 * vmlinux. A bzImage boots one of two ways: the 64-bit boot protocol (protected-mode code at
 * its preferred address, boot_params "zero page", identity-mapped page tables, long mode at
 * load address + 0x200: the kernel decompresses itself), or PVH (the host decompresses the XZ
 * payload with core/boot/xz.ts and enters the ELF vmlinux in 32-bit mode). An ELF vmlinux
 * boots through PVH. Field names and offsets follow Documentation/arch/x86/boot.rst.
 */

import {
  type CpuState,
  CR0_ET,
  CR0_PE,
  CR0_PG,
  CR4_PAE,
  EFER_LMA,
  EFER_LME,
  resetCpuState,
  type Segment,
} from "../cpu_state.ts";
import { ImageError } from "../errors.ts";
import { type GuestMemory, hex } from "../memory.ts";
import { E820_RAM, e820Map, writeE820Table } from "./e820.ts";
import { isElf } from "./elf.ts";
import {
  BOOT_GDT_ADDR,
  BOOT_GDT_LIMIT,
  BOOT_STACK_ADDR,
  bootTss,
  CMDLINE_ADDR,
  CMDLINE_MAX,
  loadPvhElf,
  placeInitrd,
  PML4_ADDR,
  SEL_CODE64,
  SEL_DATA,
  writeBootGdt,
  writeCmdline,
  ZERO_PAGE_ADDR,
} from "./pvh.ts";
import { isXz, XzDataError, xzDecompress } from "./xz.ts";
import type { BootOptions, BootSetup, Loader } from "./types.ts";

/** How a bzImage is entered. */
export type LinuxBootPath = "pvh" | "bzimage";

/**
 * Default boot path for a bzImage. PVH skips the in-guest decompressor (QEMU TCG: 3.0 s
 * instead of 5.9 s to the marker, LINUX_FACTS.md), at the cost of ~2 s of host XZ decoding.
 */
export const DEFAULT_LINUX_BOOT_PATH: LinuxBootPath = "pvh";

/** Options of `loadLinux` beyond the common BootOptions. */
export interface LinuxBootOptions extends BootOptions {
  /** Where the ACPI RSDP is (boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr). */
  acpiRsdpAddr?: number;
  /** bzImage entry path (default DEFAULT_LINUX_BOOT_PATH). ELF images always use PVH. */
  linuxBootPath?: LinuxBootPath;
}

/** "HdrS" at 0x202: the boot protocol header signature. */
export const HDRS_MAGIC = 0x5372_6448;
/** boot_flag at 0x1fe. */
export const BOOT_FLAG_MAGIC = 0xaa55;
/** Oldest boot protocol loaded: 2.06 (cmdline_size; LOADED_HIGH bzImages). */
export const MIN_BOOT_PROTOCOL = 0x0206;
/** The 64-bit entry needs xloadflags, added in 2.12. */
export const MIN_64BIT_PROTOCOL = 0x020c;
/** payload_offset/length appeared in 2.08. */
export const MIN_PAYLOAD_PROTOCOL = 0x0208;
/** loadflags bit 0: protected-mode code loads at 0x100000 (a bzImage). */
export const LOADED_HIGH = 0x01;
/** loadflags bit 7: heap_end_ptr is valid. */
export const CAN_USE_HEAP = 0x80;
/** xloadflags bit 0: the kernel has the 64-bit entry at load address + 0x200. */
export const XLF_KERNEL_64 = 0x01;
/** Offset of the 64-bit entry from the protected-mode code's start. */
export const ENTRY_64_OFFSET = 0x200;
/** type_of_loader for a loader without an assigned ID. */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** The setup header starts here, in the image and in boot_params. */
export const SETUP_HEADER_START = 0x1f1;
/** boot_params.e820_table[] ends the setup header's room: copies stop here. */
const SETUP_HEADER_LIMIT = 0x290;
/** Minimum header that must be present to read every field we use (up to init_size). */
const SETUP_HEADER_MIN_END = 0x264;
/** Kernels before 2.03 may not use initrds above this. */
const DEFAULT_INITRD_ADDR_MAX = 0x37ff_ffff;
/** Default load address of protected-mode code (HIMEM). */
const HIGH_LOAD_ADDR = 0x10_0000;
const PAGE = 0x1000;
const PAGE_2M = 0x20_0000;

/** Field offsets in boot_params (the zero page); setup header fields at their image offsets. */
export const BP = {
  acpiRsdpAddr: 0x070,
  extRamdiskImage: 0x0c0,
  extRamdiskSize: 0x0c4,
  extCmdLinePtr: 0x0c8,
  e820Entries: 0x1e8,
  setupSects: 0x1f1,
  syssize: 0x1f4,
  vidMode: 0x1fa,
  bootFlag: 0x1fe,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  kernelVersion: 0x20e,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  code32Start: 0x214,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  relocatableKernel: 0x234,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  payloadOffset: 0x248,
  payloadLength: 0x24c,
  prefAddress: 0x258,
  initSize: 0x260,
  e820Table: 0x2d0,
} as const;
/** boot_params.e820_table has room for this many entries. */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;
/** Size of boot_params. */
export const ZERO_PAGE_SIZE = 0x1000;

/** The setup header fields the loader uses, read from a bzImage. */
export interface LinuxSetupHeader {
  /** Boot protocol version, e.g. 0x020f for 2.15. */
  version: number;
  /** Number of 512-byte setup sectors after the boot sector (0 means 4). */
  setupSects: number;
  /** Protected-mode code size in 16-byte units. */
  syssize: number;
  /** loadflags (LOADED_HIGH, CAN_USE_HEAP, ...). */
  loadflags: number;
  /** xloadflags (XLF_KERNEL_64, ...); 0 before protocol 2.12. */
  xloadflags: number;
  /** Highest address the initrd's last byte may occupy. */
  initrdAddrMax: number;
  /** Required alignment of a relocated kernel. */
  kernelAlignment: number;
  /** relocatable_kernel: the kernel may run at another aligned address than pref_address. */
  relocatable: boolean;
  /** Longest command line (without the NUL). */
  cmdlineSize: number;
  /** Offset of the compressed payload from the protected-mode code's start. */
  payloadOffset: number;
  /** Length of the compressed payload (for XZ: the .xz stream plus a 4-byte size). */
  payloadLength: number;
  /** Preferred load address of the protected-mode code. */
  prefAddress: number;
  /** Bytes of RAM the kernel needs from its load address while it decompresses and starts. */
  initSize: number;
  /** Offset of the protected-mode code in the file: (setup_sects + 1) * 512. */
  protectedModeOffset: number;
  /** Where the setup header ends in the file (0x202 + the jump's displacement). */
  headerEnd: number;
  /** Kernel version string (e.g. "6.1.0-56-amd64 (debian-kernel@...) #1 SMP ..."), or "". */
  kernelVersion: string;
}

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function protocolText(v: number): string {
  return `${v >> 8}.${(v & 0xff).toString().padStart(2, "0")}`;
}

/** True when `image` has the bzImage setup header signature ("HdrS" at 0x202). */
export function isBzImage(image: Uint8Array): boolean {
  return image.length >= BP.header + 4 && u32(image, BP.header) === HDRS_MAGIC;
}

/**
 * Reads and checks the setup header of a bzImage. Throws ImageError naming `path` for a file
 * that is not a Linux kernel, is truncated, uses a boot protocol older than 2.06, or is not a
 * bzImage (LOADED_HIGH clear).
 *
 * @example
 * ```ts ignore
 * import { parseSetupHeader } from "./linux.ts";
 * const hdr = parseSetupHeader(await Deno.readFile("bzImage"), "bzImage");
 * console.log(hdr.version.toString(16), hdr.initSize);
 * ```
 */
export function parseSetupHeader(image: Uint8Array, path: string): LinuxSetupHeader {
  if (!isBzImage(image)) {
    if (image.length < BP.header + 4) {
      throw new ImageError(
        `Kernel image "${path}" is not a Linux kernel: it has ${image.length} bytes, too few ` +
          `for a boot sector and setup header ("HdrS" at 0x202)`,
      );
    }
    throw new ImageError(
      `Kernel image "${path}" is not a Linux bzImage or ELF vmlinux: no "HdrS" signature at ` +
        `0x202. Use --format flat or multiboot for other images.`,
    );
  }
  const version = u16(image, BP.version);
  if (version < MIN_BOOT_PROTOCOL) {
    throw new ImageError(
      `Kernel image "${path}" uses Linux boot protocol ${protocolText(version)}, older than the ` +
        `${protocolText(MIN_BOOT_PROTOCOL)} this loader needs (kernels since 2.6.22 have it)`,
    );
  }
  const headerEnd = Math.min(0x202 + image[0x201]!, SETUP_HEADER_LIMIT);
  const needEnd = Math.max(headerEnd, SETUP_HEADER_MIN_END + 4);
  if (image.length < needEnd) {
    throw new ImageError(
      `Kernel image "${path}" is truncated: its setup header ends at ${hex(needEnd)} but the ` +
        `file has ${image.length} bytes`,
    );
  }
  const setupSects = image[BP.setupSects]! === 0 ? 4 : image[BP.setupSects]!;
  const protectedModeOffset = (setupSects + 1) * 512;
  const syssize = u32(image, BP.syssize);
  const pmEnd = protectedModeOffset + syssize * 16;
  if (image.length < pmEnd) {
    throw new ImageError(
      `Kernel image "${path}" is truncated: its protected-mode code should end at ${hex(pmEnd)} ` +
        `(setup_sects ${setupSects}, syssize ${hex(syssize)}) but the file has ` +
        `${image.length} bytes`,
    );
  }
  const loadflags = image[BP.loadflags]!;
  if ((loadflags & LOADED_HIGH) === 0) {
    throw new ImageError(
      `Kernel image "${path}" is a zImage (loadflags LOADED_HIGH clear): only bzImages load ` +
        `here; rebuild with "make bzImage"`,
    );
  }
  const kvOff = u16(image, BP.kernelVersion);
  let kernelVersion = "";
  if (kvOff !== 0 && kvOff + 0x200 < image.length) {
    const start = kvOff + 0x200;
    let end = start;
    while (end < image.length && end - start < 256 && image[end] !== 0) end++;
    kernelVersion = new TextDecoder().decode(image.subarray(start, end));
  }
  return {
    version,
    setupSects,
    syssize,
    loadflags,
    xloadflags: u16(image, BP.xloadflags),
    initrdAddrMax: version >= 0x0203 ? u32(image, BP.initrdAddrMax) : DEFAULT_INITRD_ADDR_MAX,
    kernelAlignment: u32(image, BP.kernelAlignment),
    relocatable: image[BP.relocatableKernel]! !== 0,
    cmdlineSize: u32(image, BP.cmdlineSize),
    payloadOffset: version >= MIN_PAYLOAD_PROTOCOL ? u32(image, BP.payloadOffset) : 0,
    payloadLength: version >= MIN_PAYLOAD_PROTOCOL ? u32(image, BP.payloadLength) : 0,
    prefAddress: Number(
      new DataView(image.buffer, image.byteOffset + BP.prefAddress, 8).getBigUint64(0, true),
    ),
    initSize: u32(image, BP.initSize),
    protectedModeOffset,
    headerEnd,
    kernelVersion,
  };
}

/** The compressed kernel inside a bzImage (a view into `image`). */
export function bzImagePayload(image: Uint8Array, hdr: LinuxSetupHeader, path: string): Uint8Array {
  if (hdr.version < MIN_PAYLOAD_PROTOCOL || hdr.payloadLength === 0) {
    throw new ImageError(
      `Kernel image "${path}" (boot protocol ${protocolText(hdr.version)}) does not say where ` +
        `its compressed kernel is (payload fields need 2.08): boot it with the bzImage path`,
    );
  }
  const start = hdr.protectedModeOffset + hdr.payloadOffset;
  const end = start + hdr.payloadLength;
  if (end > image.length) {
    throw new ImageError(
      `Kernel image "${path}" is truncated: its payload ends at ${hex(end)} but the file has ` +
        `${image.length} bytes`,
    );
  }
  return image.subarray(start, end);
}

/**
 * Decompresses a bzImage's XZ payload into the ELF vmlinux. The kernel build appends the
 * decompressed size as a little-endian u32 after the .xz stream; it is used to size the output.
 * Throws ImageError naming `path` when the payload is not XZ or is corrupt.
 */
export function decompressBzImage(
  image: Uint8Array,
  hdr: LinuxSetupHeader,
  path: string,
): Uint8Array {
  const payload = bzImagePayload(image, hdr, path);
  if (!isXz(payload)) {
    const magic = [...payload.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new ImageError(
      `Kernel image "${path}" has a payload that is not XZ (starts ${magic}): only XZ kernels ` +
        `boot through PVH from a bzImage; use the bzImage boot path or an ELF vmlinux`,
    );
  }
  const n = payload.length;
  const sizeHint = n >= 4 ? u32(payload, n - 4) : undefined;
  try {
    return xzDecompress(payload.subarray(0, n - 4), { sizeHint });
  } catch (err) {
    if (err instanceof XzDataError) {
      throw new ImageError(`Kernel image "${path}": its XZ payload is corrupt: ${err.message}`);
    }
    throw err;
  }
}

/** Writes identity-mapping page tables for the first 4 GiB (2 MiB pages) at PML4_ADDR. */
export function writeIdentityPageTables(memory: GuestMemory): void {
  const pdpt = PML4_ADDR + PAGE;
  const pd = pdpt + PAGE;
  const PRESENT_RW = 0x3n, PAGE_SIZE_BIT = 0x80n;
  memory.fill(PML4_ADDR, PAGE * 6, 0);
  memory.writeU64(PML4_ADDR, BigInt(pdpt) | PRESENT_RW);
  for (let i = 0; i < 4; i++) {
    memory.writeU64(pdpt + i * 8, BigInt(pd + i * PAGE) | PRESENT_RW);
    for (let j = 0; j < 512; j++) {
      const addr = BigInt((i * 512 + j) * PAGE_2M);
      memory.writeU64(pd + i * PAGE + j * 8, addr | PRESENT_RW | PAGE_SIZE_BIT);
    }
  }
}

function code64Segment(): Segment {
  return {
    selector: SEL_CODE64,
    base: 0n,
    limit: 0xffff_ffff,
    type: 0xb,
    s: 1,
    dpl: 0,
    present: 1,
    l: 1,
    db: 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

function data64Segment(): Segment {
  return { ...code64Segment(), selector: SEL_DATA, type: 0x3, l: 0, db: 1 };
}

/** The vCPU state of the 64-bit boot protocol: long mode, paging on, RSI = zero page. */
export function linux64CpuState(entry: number): CpuState {
  const s = resetCpuState();
  s.cs = code64Segment();
  for (const r of ["ds", "es", "ss", "fs", "gs"] as const) s[r] = data64Segment();
  s.tr = bootTss();
  s.gdt = { base: BigInt(BOOT_GDT_ADDR), limit: BOOT_GDT_LIMIT };
  s.idt = { base: 0n, limit: 0 };
  s.cr0 = (CR0_PE | CR0_ET | CR0_PG) >>> 0;
  s.cr3 = BigInt(PML4_ADDR);
  s.cr4 = CR4_PAE;
  s.efer = EFER_LME | EFER_LMA;
  s.rip = BigInt(entry);
  s.gpr[6] = BigInt(ZERO_PAGE_ADDR); // rsi
  s.gpr[4] = BigInt(BOOT_STACK_ADDR); // rsp
  s.gpr[5] = BigInt(BOOT_STACK_ADDR); // rbp
  s.rflags = 0x2;
  return s;
}

/** Where the protected-mode code goes: pref_address, else 1 MiB rounded up to the alignment. */
function chooseLoadAddress(memory: GuestMemory, hdr: LinuxSetupHeader, path: string): number {
  const lowEnd = memory.regions[0]!.size;
  const fits = (a: number) => a + hdr.initSize <= lowEnd;
  if (hdr.prefAddress >= HIGH_LOAD_ADDR && fits(hdr.prefAddress)) return hdr.prefAddress;
  const align = hdr.kernelAlignment > 0 ? hdr.kernelAlignment : PAGE_2M;
  const alt = Math.ceil(HIGH_LOAD_ADDR / align) * align;
  if (hdr.relocatable && fits(alt)) return alt;
  const at = hdr.relocatable ? alt : hdr.prefAddress;
  const needMiB = Math.ceil((at + hdr.initSize) / (1 << 20));
  throw new ImageError(
    `Kernel image "${path}" needs ${hex(hdr.initSize)} bytes (init_size) of RAM from its load ` +
      `address ${hex(at)}, up to ${needMiB} MiB, but the VM has ${
        Math.floor(lowEnd / (1 << 20))
      } ` +
      `MiB below the MMIO gap: give it more with --mem (at least ${needMiB + 16}M)`,
  );
}

function loadBzImage64(
  image: Uint8Array,
  hdr: LinuxSetupHeader,
  memory: GuestMemory,
  opts: LinuxBootOptions,
): BootSetup {
  const path = opts.imagePath;
  if (hdr.version < MIN_64BIT_PROTOCOL || (hdr.xloadflags & XLF_KERNEL_64) === 0) {
    throw new ImageError(
      `Kernel image "${path}" has no 64-bit entry point (boot protocol ` +
        `${protocolText(hdr.version)}, xloadflags ${hex(hdr.xloadflags)}): it needs protocol ` +
        `2.12+ with XLF_KERNEL_64, i.e. an x86-64 kernel`,
    );
  }
  const load = chooseLoadAddress(memory, hdr, path);
  const pm = image.subarray(hdr.protectedModeOffset, hdr.protectedModeOffset + hdr.syssize * 16);
  memory.write(load, pm);

  writeBootGdt(memory);
  writeIdentityPageTables(memory);
  const cmdline = writeCmdline(memory, opts.cmdline, hdr.cmdlineSize || 255, path);

  // The zero page: cleared, the setup header copied from the image, then our fields.
  const zp = ZERO_PAGE_ADDR;
  memory.fill(zp, ZERO_PAGE_SIZE, 0);
  memory.write(zp + SETUP_HEADER_START, image.subarray(SETUP_HEADER_START, hdr.headerEnd));
  memory.writeU8(zp + BP.typeOfLoader, LOADER_TYPE_UNDEFINED);
  memory.writeU8(zp + BP.loadflags, (hdr.loadflags | CAN_USE_HEAP) & 0xff);
  memory.writeU16(zp + BP.heapEndPtr, 0xfe00); // as the real-mode setup's heap would end
  memory.writeU32(zp + BP.code32Start, load);
  memory.writeU32(zp + BP.cmdLinePtr, CMDLINE_ADDR);
  memory.writeU64(zp + BP.acpiRsdpAddr, BigInt(opts.acpiRsdpAddr ?? 0));
  let initrdText = "";
  if (opts.initrd) {
    const addr = placeInitrd(memory, opts.initrd, {
      lowest: load + hdr.initSize,
      highest: hdr.initrdAddrMax,
      imagePath: path,
      initrdPath: opts.initrdPath,
    });
    memory.writeU32(zp + BP.ramdiskImage, addr);
    memory.writeU32(zp + BP.ramdiskSize, opts.initrd.length);
    initrdText = `, initrd ${opts.initrd.length} bytes at ${hex(addr)}`;
  }
  const map = e820Map(memory).slice(0, E820_MAX_ENTRIES_ZEROPAGE);
  memory.writeU8(zp + BP.e820Entries, map.length);
  writeE820Table(memory, zp + BP.e820Table, map);

  const entry = load + ENTRY_64_OFFSET;
  const ram = map.filter((e) => e.type === E820_RAM).reduce((n, e) => n + e.size, 0);
  return {
    format: "linux",
    state: linux64CpuState(entry),
    description: `Linux ${hdr.kernelVersion.split(" ")[0] || "bzImage"} (boot protocol ` +
      `${protocolText(hdr.version)}) via the 64-bit entry: ${pm.length} bytes at ${hex(load)}, ` +
      `entry ${hex(entry)}, zero page ${hex(zp)}${initrdText}, ${ram >> 20} MiB RAM, ` +
      `cmdline "${cmdline}"`,
  };
}

function checkInitSize(memory: GuestMemory, hdr: LinuxSetupHeader, path: string): void {
  chooseLoadAddress(memory, hdr, path);
}

/**
 * The Linux loader: a bzImage through PVH (default, when its payload is XZ and the vmlinux has
 * a PVH note) or the 64-bit boot protocol (`linuxBootPath: "bzimage"`, or as fallback), or an
 * ELF vmlinux through PVH. Throws ImageError naming `opts.imagePath` for anything it cannot boot.
 *
 * @example
 * ```ts ignore
 * import { loadLinux } from "./linux.ts";
 * import { GuestMemory } from "../memory.ts";
 * const memory = GuestMemory.allocate(256 << 20);
 * const setup = loadLinux(await Deno.readFile(".cache/guests/bzImage"), memory, {
 *   imagePath: ".cache/guests/bzImage",
 *   cmdline: "console=ttyS0",
 * });
 * console.log(setup.description);
 * ```
 */
export function loadLinux(
  image: Uint8Array,
  memory: GuestMemory,
  options: BootOptions,
): BootSetup {
  const opts = options as LinuxBootOptions;
  const path = opts.imagePath;
  if (isElf(image)) return loadPvhElf(image, memory, { ...opts, what: "ELF vmlinux" });
  const hdr = parseSetupHeader(image, path);
  checkInitSize(memory, hdr, path);
  const bootPath = opts.linuxBootPath ?? DEFAULT_LINUX_BOOT_PATH;
  if (bootPath === "bzimage") return loadBzImage64(image, hdr, memory, opts);

  // PVH: decompress on the host. Fall back to the 64-bit entry when the payload is not XZ.
  const payload = bzImagePayload(image, hdr, path);
  if (!isXz(payload) && (hdr.xloadflags & XLF_KERNEL_64) !== 0) {
    const setup = loadBzImage64(image, hdr, memory, opts);
    return { ...setup, description: setup.description + " (payload not XZ: no PVH)" };
  }
  const vmlinux = decompressBzImage(image, hdr, path);
  const version = hdr.kernelVersion.split(" ")[0] || "bzImage";
  return loadPvhElf(vmlinux, memory, {
    ...opts,
    initrdAddrMax: hdr.initrdAddrMax,
    what: `${version} (bzImage protocol ${protocolText(hdr.version)}, payload decompressed on ` +
      `the host)`,
  });
}

/** `loadLinux` typed as the common Loader. */
export const linuxLoader: Loader = loadLinux;

export { CMDLINE_ADDR, CMDLINE_MAX, ZERO_PAGE_ADDR };
