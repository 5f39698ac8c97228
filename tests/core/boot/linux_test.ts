/**
 * The Linux loader on small synthetic bzImages and ELF vmlinux files (always available; the
 * bzImage payload is made with the xz tool). linux_debian_test.ts runs the real kernel.
 */

import { E820_RAM, E820_RESERVED, e820Map } from "../../../core/boot/e820.ts";
import { EM_X86_64 } from "../../../core/boot/elf.ts";
import {
  BP,
  DEFAULT_LINUX_BOOT_PATH,
  type LinuxBootOptions,
  loadLinux,
  parseSetupHeader,
} from "../../../core/boot/linux.ts";
import {
  CMDLINE_ADDR,
  HVM_START_MAGIC,
  MEMMAP_ENTRY_SIZE,
  START_INFO,
  START_INFO_ADDR,
} from "../../../core/boot/pvh.ts";
import { CR0_ET, CR0_PE } from "../../../core/cpu_state.ts";
import { ImageError } from "../../../core/errors.ts";
import { GuestMemory, layoutRegions } from "../../../core/memory.ts";
import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../../_assert.ts";
import { buildElf } from "./_images.ts";

const KERNEL_AT = 0x100_0000;
const PVH_ENTRY = 0x100_0040;

let xzTool = false;
try {
  xzTool = (await new Deno.Command("xz", { args: ["--version"], stdout: "null" }).output()).success;
} catch {
  xzTool = false;
}
if (!xzTool) console.warn("linux_test: the xz command is not installed; skipping bzImage tests");

/** A tiny x86-64 vmlinux: two segments (code, bss) and the Xen PVH entry note. */
function tinyVmlinux(): Uint8Array {
  const desc = new Uint8Array(8);
  new DataView(desc.buffer).setUint32(0, PVH_ENTRY, true);
  const code = new Uint8Array(0x80).map((_, i) => (i * 7 + 1) & 0xff);
  return buildElf({
    bits: 64,
    machine: EM_X86_64,
    entry: 0xffff_ffff_8100_0000n,
    segments: [
      { paddr: KERNEL_AT, vaddr: 0xffff_ffff_8100_0000n, data: code },
      {
        paddr: KERNEL_AT + 0x1000,
        vaddr: 0xffff_ffff_8100_1000n,
        data: new Uint8Array(16),
        memsz: 0x2000,
      },
    ],
    notes: [{ name: "Xen", type: 0x12, desc }],
  });
}

function xzSync(data: Uint8Array, args: string[]): Uint8Array {
  const tmp = Deno.makeTempFileSync();
  try {
    Deno.writeFileSync(tmp, data);
    const out = new Deno.Command("xz", { args: ["-c", ...args, tmp], stdout: "piped" })
      .outputSync();
    assertTrue(out.success, "xz failed");
    return out.stdout;
  } finally {
    Deno.removeSync(tmp);
  }
}

interface FakeSpec {
  version?: number;
  initSize?: number;
  /** Replace the payload (default: xz of tinyVmlinux() plus the size word). */
  payload?: Uint8Array;
}

/** A minimal bzImage: boot sector + one setup sector, then protected-mode code = the payload. */
function fakeBzImage(spec: FakeSpec = {}): Uint8Array {
  let payload = spec.payload;
  if (!payload) {
    const elf = tinyVmlinux();
    const xz = xzSync(elf, ["--check=crc32", "--x86", "--lzma2"]);
    payload = new Uint8Array(xz.length + 4);
    payload.set(xz);
    new DataView(payload.buffer).setUint32(xz.length, elf.length, true);
  }
  const pmOffset = 2 * 512;
  const pm = new Uint8Array(0x300 + payload.length); // a stand-in decompressor, then payload
  pm.set(payload, 0x300);
  const img = new Uint8Array(pmOffset + pm.length + 15 & ~15);
  img.set(pm, pmOffset);
  const dv = new DataView(img.buffer);
  img[0x1f1] = 1; // setup_sects
  dv.setUint32(BP.syssize, Math.ceil(pm.length / 16), true);
  dv.setUint16(BP.bootFlag, 0xaa55, true);
  img[0x200] = 0xeb; // jmp short: the header ends at 0x202 + 0x6a = 0x26c
  img[0x201] = 0x6a;
  dv.setUint32(BP.header, 0x5372_6448, true);
  dv.setUint16(BP.version, spec.version ?? 0x020f, true);
  img[BP.loadflags] = 0x01;
  dv.setUint32(BP.initrdAddrMax, 0x7fff_ffff, true);
  dv.setUint32(BP.kernelAlignment, 0x20_0000, true);
  img[BP.relocatableKernel] = 1;
  dv.setUint16(BP.xloadflags, 0x7f, true);
  dv.setUint32(BP.cmdlineSize, 2047, true);
  dv.setUint32(BP.payloadOffset, 0x300, true);
  dv.setUint32(BP.payloadLength, payload.length, true);
  dv.setBigUint64(BP.prefAddress, BigInt(KERNEL_AT), true);
  dv.setUint32(BP.initSize, spec.initSize ?? 0x40_0000, true);
  return img;
}

function opts(extra: Partial<LinuxBootOptions> = {}): LinuxBootOptions {
  return { imagePath: "/images/fake-bzImage", cmdline: "", ...extra };
}

const RSDP = 0xe_0000;

Deno.test("e820Map reserves the EBDA-to-1-MiB hole and leaves out the MMIO gap", () => {
  assertEquals(e820Map(GuestMemory.allocate(16 << 20)), [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x9fc00, size: 0x60400, type: E820_RESERVED },
    { addr: 0x100000, size: (16 << 20) - 0x100000, type: E820_RAM },
  ]);
  const big = { regions: layoutRegions(5 * 2 ** 30) }; // 5 GiB: split around the MMIO gap
  const map = e820Map(big);
  assertEquals(map.length, 4);
  assertEquals(map[2], { addr: 0x100000, size: 0xc000_0000 - 0x100000, type: E820_RAM });
  assertEquals(map[3], { addr: 2 ** 32, size: 2 * 2 ** 30, type: E820_RAM });
});

Deno.test({
  name: "the 64-bit path writes boot_params, page tables and long-mode state",
  ignore: !xzTool,
  fn: () => {
    const img = fakeBzImage();
    const mem = GuestMemory.allocate(64 << 20);
    const initrd = new Uint8Array(12345).map((_, i) => i & 0xff);
    const setup = loadLinux(
      img,
      mem,
      opts({
        linuxBootPath: "bzimage",
        cmdline: "console=ttyS0 quiet",
        initrd,
        acpiRsdpAddr: RSDP,
      }),
    );
    const zp = 0x7000;
    assertEquals(mem.readU32(zp + BP.header), 0x5372_6448, "setup header copied");
    assertEquals(mem.readU16(zp + BP.bootFlag), 0xaa55);
    assertEquals(mem.readU8(zp + BP.typeOfLoader), 0xff);
    assertEquals(mem.readU32(zp + BP.cmdLinePtr), CMDLINE_ADDR);
    const cmd = mem.read(CMDLINE_ADDR, 20);
    assertEquals(new TextDecoder().decode(cmd.subarray(0, 19)), "console=ttyS0 quiet");
    assertEquals(cmd[19], 0);
    assertEquals(mem.readU64(zp + BP.acpiRsdpAddr), BigInt(RSDP));
    const rdAddr = mem.readU32(zp + BP.ramdiskImage);
    assertEquals(mem.readU32(zp + BP.ramdiskSize), initrd.length);
    assertEquals(rdAddr % 4096, 0);
    assertTrue(rdAddr >= KERNEL_AT + 0x40_0000, "initrd above the kernel's init_size");
    assertTrue(rdAddr + initrd.length <= 64 << 20, "initrd in RAM");
    assertEquals(mem.read(rdAddr, initrd.length), initrd);
    // e820 in the zero page decodes to the map of this memory.
    const n = mem.readU8(zp + BP.e820Entries);
    const decoded = Array.from({ length: n }, (_, i) => {
      const at = zp + BP.e820Table + i * 20;
      return {
        addr: Number(mem.readU64(at)),
        size: Number(mem.readU64(at + 8)),
        type: mem.readU32(at + 16),
      };
    });
    assertEquals(decoded, e820Map(mem));
    // Protected-mode code at pref_address; identity map covers it with 2 MiB pages.
    assertEquals(mem.read(KERNEL_AT, 64), img.subarray(1024, 1024 + 64));
    const pml4 = Number(setup.state.cr3);
    const pdpt = Number(mem.readU64(pml4) & ~0xfffn);
    const pd = Number(mem.readU64(pdpt) & ~0xfffn);
    assertEquals(mem.readU64(pd + 8 * (KERNEL_AT >> 21)), BigInt(KERNEL_AT) | 0x83n);
    assertEquals(
      mem.readU64(Number(mem.readU64(pdpt + 24) & ~0xfffn) + 511 * 8),
      0xffe0_0000n | 0x83n,
    );
    const s = setup.state;
    assertEquals(s.rip, BigInt(KERNEL_AT + 0x200));
    assertEquals(s.gpr[6], 0x7000n, "rsi = zero page");
    assertEquals([s.cs.selector, s.cs.l, s.cs.db, s.ds.selector], [0x10, 1, 0, 0x18]);
    assertEquals(s.efer & 0x500, 0x500, "EFER.LME|LMA");
    assertEquals((s.cr0 & 0x8000_0001) >>> 0, 0x8000_0001, "CR0.PG|PE");
    assertEquals(s.cr4 & 0x20, 0x20, "CR4.PAE");
    assertEquals(
      mem.readU64(Number(s.gdt.base) + 0x10),
      0x00af_9b00_0000_ffffn,
      "code64 descriptor",
    );
    assertIncludes(setup.description, "64-bit entry");
  },
});

function readStartInfo(mem: GuestMemory) {
  const s = START_INFO_ADDR;
  const memmap = Number(mem.readU64(s + START_INFO.memmapPaddr));
  const n = mem.readU32(s + START_INFO.memmapEntries);
  return {
    magic: mem.readU32(s + START_INFO.magic),
    version: mem.readU32(s + START_INFO.version),
    nrModules: mem.readU32(s + START_INFO.nrModules),
    modlist: Number(mem.readU64(s + START_INFO.modlistPaddr)),
    cmdline: Number(mem.readU64(s + START_INFO.cmdlinePaddr)),
    rsdp: Number(mem.readU64(s + START_INFO.rsdpPaddr)),
    memmap: Array.from({ length: n }, (_, i) => {
      const at = memmap + i * MEMMAP_ENTRY_SIZE;
      return {
        addr: Number(mem.readU64(at)),
        size: Number(mem.readU64(at + 8)),
        type: mem.readU32(at + 16),
      };
    }),
  };
}

Deno.test({
  name: "the PVH path decompresses the payload, loads its segments and writes hvm_start_info",
  ignore: !xzTool,
  fn: () => {
    const mem = GuestMemory.allocate(64 << 20);
    mem.fill(KERNEL_AT + 0x1000, 0x2000, 0xcc); // bss must come out zeroed
    const initrd = new Uint8Array(5000).fill(7);
    const setup = loadLinux(
      fakeBzImage(),
      mem,
      opts({ linuxBootPath: "pvh", initrd, acpiRsdpAddr: RSDP }),
    );
    const info = readStartInfo(mem);
    assertEquals([info.magic, info.version, info.nrModules, info.rsdp], [
      HVM_START_MAGIC,
      1,
      1,
      RSDP,
    ]);
    assertEquals(info.memmap, e820Map(mem));
    assertEquals(new TextDecoder().decode(mem.read(info.cmdline, 13)), "console=ttyS0", "default");
    assertEquals(mem.readU8(info.cmdline + 13), 0);
    const rd = Number(mem.readU64(info.modlist));
    assertEquals(Number(mem.readU64(info.modlist + 8)), initrd.length);
    assertEquals(rd % 4096, 0);
    assertEquals(mem.read(rd, initrd.length), initrd);
    assertEquals(mem.read(KERNEL_AT, 4), new Uint8Array([1, 8, 15, 22]), "code segment");
    assertEquals(mem.read(KERNEL_AT + 0x1000, 0x2000), new Uint8Array(0x2000), "bss zeroed");
    const s = setup.state;
    assertEquals(s.rip, BigInt(PVH_ENTRY));
    assertEquals(s.gpr[3], BigInt(START_INFO_ADDR), "ebx = start_info");
    assertEquals([s.cr0, s.cr4, s.efer], [CR0_PE | CR0_ET, 0, 0]);
    assertEquals([s.cs.db, s.cs.l, s.cs.limit, s.ss.selector], [1, 0, 0xffff_ffff, 0x18]);
    assertIncludes(setup.description, "PVH");
  },
});

Deno.test("an ELF vmlinux with a PVH note boots through PVH whatever the boot path option", () => {
  for (const linuxBootPath of ["pvh", "bzimage"] as const) {
    const mem = GuestMemory.allocate(32 << 20);
    const setup = loadLinux(tinyVmlinux(), mem, opts({ imagePath: "/k/vmlinux", linuxBootPath }));
    assertEquals(setup.state.rip, BigInt(PVH_ENTRY));
    assertEquals(readStartInfo(mem).nrModules, 0);
  }
  assertTrue(DEFAULT_LINUX_BOOT_PATH === "pvh" || DEFAULT_LINUX_BOOT_PATH === "bzimage");
});

Deno.test("an ELF without a PVH note is refused with a message naming the file", () => {
  const elf = buildElf({
    bits: 64,
    machine: EM_X86_64,
    entry: KERNEL_AT,
    segments: [{ paddr: KERNEL_AT, data: new Uint8Array(16) }],
  });
  assertThrows(
    () => loadLinux(elf, GuestMemory.allocate(32 << 20), opts({ imagePath: "/k/plain.elf" })),
    ImageError,
    '"/k/plain.elf" has no PVH entry note',
  );
});

Deno.test("random bytes are not a Linux kernel", () => {
  const noise = new Uint8Array(4096);
  crypto.getRandomValues(noise);
  noise[0x202] = 0; // make sure "HdrS" is not there by chance
  const mem = GuestMemory.allocate(32 << 20);
  assertThrows(
    () => loadLinux(noise, mem, opts()),
    ImageError,
    '"/images/fake-bzImage" is not a Linux bzImage',
  );
  assertThrows(
    () => loadLinux(noise.subarray(0, 100), mem, opts()),
    ImageError,
    "is not a Linux kernel",
  );
});

Deno.test({
  name: "truncated bzImages, old protocols and zImages give clear ImageErrors",
  ignore: !xzTool,
  fn: () => {
    const img = fakeBzImage();
    const mem = GuestMemory.allocate(64 << 20);
    assertThrows(
      () => loadLinux(img.subarray(0, 0x240), mem, opts()),
      ImageError,
      "is truncated: its setup header ends at 0x26c",
    );
    assertThrows(
      () => loadLinux(img.subarray(0, img.length - 64), mem, opts()),
      ImageError,
      "is truncated: its protected-mode code should end at",
    );
    const old = img.slice();
    new DataView(old.buffer).setUint16(BP.version, 0x0205, true);
    assertThrows(
      () => parseSetupHeader(old, "/k/old"),
      ImageError,
      '"/k/old" uses Linux boot protocol 2.05, older than the 2.06',
    );
    const z = img.slice();
    z[BP.loadflags] = 0;
    assertThrows(() => loadLinux(z, mem, opts()), ImageError, "zImage");
    const corrupt = img.slice();
    corrupt[1024 + 0x300 + 100]! ^= 0xff;
    assertThrows(
      () => loadLinux(corrupt, mem, opts({ linuxBootPath: "pvh" })),
      ImageError,
      "XZ payload is corrupt",
    );
  },
});

Deno.test({
  name: "a kernel whose init_size does not fit in RAM asks for more --mem",
  ignore: !xzTool,
  fn: () => {
    const img = fakeBzImage({ initSize: 0x300_0000 });
    const e = assertThrows(
      () => loadLinux(img, GuestMemory.allocate(32 << 20), opts()),
      ImageError,
      "init_size",
    );
    assertIncludes(e.message, "--mem");
    assertIncludes(e.message, "/images/fake-bzImage");
  },
});

Deno.test({
  name: "the initrd goes below initrd_addr_max and must fit above the kernel",
  ignore: !xzTool,
  fn: () => {
    const img = fakeBzImage();
    new DataView(img.buffer).setUint32(BP.initrdAddrMax, 0x1ff_ffff, true); // 32 MiB - 1
    for (const linuxBootPath of ["bzimage", "pvh"] as const) {
      const mem = GuestMemory.allocate(64 << 20);
      const initrd = new Uint8Array(300_000).fill(1);
      loadLinux(img, mem, opts({ linuxBootPath, initrd }));
      const addr = linuxBootPath === "bzimage"
        ? mem.readU32(0x7000 + BP.ramdiskImage)
        : Number(mem.readU64(readStartInfo(mem).modlist));
      assertTrue(addr + initrd.length <= 0x200_0000, `${linuxBootPath}: below initrd_addr_max`);
      assertTrue(
        addr + initrd.length > 0x200_0000 - 4096 - 4096,
        `${linuxBootPath}: as high as it goes`,
      );
    }
    const tooBig = new Uint8Array(40 << 20);
    assertThrows(
      () =>
        loadLinux(
          fakeBzImage(),
          GuestMemory.allocate(48 << 20),
          opts({ initrd: tooBig, initrdPath: "/i/big.cpio" }),
        ),
      ImageError,
      'Initrd "/i/big.cpio"',
    );
  },
});

Deno.test({
  name: "a command line longer than the kernel's cmdline_size is refused",
  ignore: !xzTool,
  fn: () => {
    const mem = GuestMemory.allocate(64 << 20);
    assertThrows(
      () =>
        loadLinux(
          fakeBzImage(),
          mem,
          opts({ linuxBootPath: "bzimage", cmdline: "x".repeat(3000) }),
        ),
      ImageError,
      "at most 2047",
    );
  },
});
