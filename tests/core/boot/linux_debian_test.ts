/**
 * The Linux loader and XZ decoder on Debian's real kernel, fetched by `deno task guests` into
 * .cache/guests/. Every value is read from the file and checked for consistency, not hard-coded.
 */

import { e820Map } from "../../../core/boot/e820.ts";
import { EM_X86_64, loadSegments, parseElf } from "../../../core/boot/elf.ts";
import {
  BP,
  decompressBzImage,
  ENTRY_64_OFFSET,
  type LinuxBootOptions,
  loadLinux,
  parseSetupHeader,
  XLF_KERNEL_64,
} from "../../../core/boot/linux.ts";
import { findPvhEntry, START_INFO, START_INFO_ADDR } from "../../../core/boot/pvh.ts";
import { XZ_MAGIC } from "../../../core/boot/xz.ts";
import { ImageError } from "../../../core/errors.ts";
import { GuestMemory } from "../../../core/memory.ts";
import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../../_assert.ts";
import { repoPath } from "./_images.ts";

const KERNEL = repoPath(".cache/guests/bzImage");
const INITRD = repoPath(".cache/guests/test-initramfs.cpio.gz");

let image: Uint8Array | undefined;
try {
  image = Deno.readFileSync(KERNEL);
} catch {
  console.warn(
    `linux_debian_test: ${KERNEL} is missing; run "deno task guests" to fetch Debian's kernel. ` +
      `Skipping the real-kernel tests.`,
  );
}
const ignore = image === undefined;

let vmlinuxCache: Uint8Array | undefined;
/** The decompressed vmlinux, decoded once per test run. */
function vmlinux(): Uint8Array {
  if (!vmlinuxCache) {
    const t0 = performance.now();
    vmlinuxCache = decompressBzImage(image!, parseSetupHeader(image!, KERNEL), KERNEL);
    console.log(
      `  xz: ${vmlinuxCache.length} bytes decompressed in ${
        (performance.now() - t0).toFixed(0)
      } ms`,
    );
  }
  return vmlinuxCache;
}

Deno.test({
  name: "Debian's bzImage has a consistent setup header",
  ignore,
  fn: () => {
    const img = image!;
    const h = parseSetupHeader(img, KERNEL);
    assertTrue(h.version >= 0x020c, `protocol ${h.version.toString(16)} has xloadflags`);
    assertTrue((h.xloadflags & XLF_KERNEL_64) !== 0, "64-bit entry");
    assertTrue(h.kernelAlignment > 0 && (h.kernelAlignment & (h.kernelAlignment - 1)) === 0);
    assertEquals(h.prefAddress % h.kernelAlignment, 0, "pref_address is aligned");
    assertEquals(h.protectedModeOffset, (img[0x1f1]! + 1) * 512);
    assertTrue(h.protectedModeOffset + h.syssize * 16 <= img.length, "protected-mode code in file");
    const payloadAt = h.protectedModeOffset + h.payloadOffset;
    assertTrue(payloadAt + h.payloadLength <= h.protectedModeOffset + h.syssize * 16);
    assertEquals([...img.subarray(payloadAt, payloadAt + 6)], [...XZ_MAGIC], "payload is XZ");
    assertTrue(h.initSize > h.payloadLength, "init_size covers more than the compressed payload");
    assertTrue(h.relocatable);
    assertTrue(h.cmdlineSize >= 255);
    assertTrue(/^\d+\.\d+\.\d+/.test(h.kernelVersion), `kernel version "${h.kernelVersion}"`);
  },
});

Deno.test({
  name: "the XZ payload expands to an x86-64 ELF whose PT_LOADs fit init_size",
  ignore,
  fn: () => {
    const img = image!;
    const h = parseSetupHeader(img, KERNEL);
    const elfBytes = vmlinux();
    const payloadEnd = h.protectedModeOffset + h.payloadOffset + h.payloadLength;
    const sizeWord = new DataView(img.buffer, img.byteOffset + payloadEnd - 4, 4).getUint32(
      0,
      true,
    );
    assertEquals(elfBytes.length, sizeWord, "size appended to the payload");
    const elf = parseElf(elfBytes, KERNEL);
    assertEquals([elf.bits, elf.machine], [64, EM_X86_64]);
    const segs = loadSegments(elf);
    assertTrue(segs.length >= 2);
    const lo = Math.min(...segs.map((s) => Number(s.paddr)));
    const hi = Math.max(...segs.map((s) => Number(s.paddr) + s.memsz));
    assertEquals(lo, h.prefAddress, "linked at pref_address");
    assertTrue(hi - lo <= h.initSize, `PT_LOADs span ${hi - lo} bytes <= init_size ${h.initSize}`);
    const entry = findPvhEntry(elfBytes, elf, KERNEL);
    assertTrue(entry !== undefined && entry >= lo && entry < hi, "PVH entry inside the kernel");
  },
});

Deno.test({
  name: "Debian's kernel loads through the 64-bit entry with its header copied to the zero page",
  ignore,
  fn: () => {
    const img = image!;
    const h = parseSetupHeader(img, KERNEL);
    const mem = GuestMemory.allocate(256 << 20);
    const initrd = Deno.readFileSync(INITRD);
    const opts: LinuxBootOptions = {
      imagePath: KERNEL,
      cmdline: "",
      initrd,
      linuxBootPath: "bzimage",
    };
    const setup = loadLinux(img, mem, opts);
    const zp = 0x7000;
    // The image's header is copied; the loader's own fields (0x210-0x22b) are checked below.
    for (const [from, to] of [[0x1f1, 0x210], [0x22c, 0x264]] as const) {
      assertEquals(mem.read(zp + from, to - from), img.subarray(from, to), `[${from}, ${to})`);
    }
    assertEquals(mem.readU8(zp + BP.typeOfLoader), 0xff);
    assertEquals(mem.readU32(zp + BP.cmdLinePtr), 0x20000);
    assertEquals(setup.state.rip, BigInt(h.prefAddress + ENTRY_64_OFFSET));
    const rd = mem.readU32(zp + BP.ramdiskImage);
    assertTrue(rd + initrd.length - 1 <= h.initrdAddrMax);
    assertTrue(rd >= h.prefAddress + h.initSize, "initrd above the decompression area");
    assertEquals(mem.readU8(zp + BP.e820Entries), e820Map(mem).length);
    assertIncludes(setup.description, h.kernelVersion.split(" ")[0]!);
  },
});

Deno.test({
  name: "Debian's kernel loads through PVH with its segments at their physical addresses",
  ignore,
  fn: () => {
    const mem = GuestMemory.allocate(256 << 20);
    const elfBytes = vmlinux();
    // Loading the ELF directly is what the PVH path does after decompressing; both must agree.
    const setup = loadLinux(elfBytes, mem, { imagePath: "vmlinux", cmdline: "console=ttyS0" });
    const elf = parseElf(elfBytes, "vmlinux");
    for (const s of loadSegments(elf)) {
      assertEquals(mem.read(Number(s.paddr), 256), elfBytes.subarray(s.offset, s.offset + 256));
    }
    assertEquals(Number(setup.state.rip), findPvhEntry(elfBytes, elf, "vmlinux"));
    assertEquals(mem.readU32(START_INFO_ADDR + START_INFO.magic), 0x336e_c578);
  },
});

Deno.test({
  name: "Debian's kernel is refused with --mem too small for init_size",
  ignore,
  fn: () => {
    const e = assertThrows(
      () => loadLinux(image!, GuestMemory.allocate(48 << 20), { imagePath: KERNEL, cmdline: "" }),
      ImageError,
      "init_size",
    );
    assertIncludes(e.message, KERNEL);
  },
});
