/**
 * The cases of the loader fuzz: seed kernels of every format (flat, Multiboot ELF32, Multiboot
 * a.out kludge, ELF64 with a PVH note, bzImage with an XZ payload, bzImage with a raw payload),
 * each mutated (bit flips, interesting values in the headers, truncation, appended bytes, zeroed
 * ranges), with a mutated initrd and command line, loaded by `resolveFormat` + `loadImage` as
 * the VMM does. A case is a function of (seed, index) alone, so any one can be rerun.
 *
 * Outcome of a case: "boot" (the loader gave a start state), a VmmError subclass's name (a
 * clear refusal), or a failure (anything else thrown: a bug).
 */

import { buildElf } from "../../tests/core/boot/_images.ts";
import { EM_X86_64 } from "../../core/boot/elf.ts";
import { loadImage, resolveFormat } from "../../core/boot/load.ts";
import type { FormatChoice } from "../../core/boot/load.ts";
import { GuestMemory } from "../../core/memory.ts";
import { VmmError } from "../../core/errors.ts";

/** A small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REPO = new URL("../../", import.meta.url);
const read = (rel: string) => Deno.readFileSync(new URL(rel, REPO));

/**
 * XZ (CRC32 check, x86 BCJ + LZMA2) of the tiny PVH vmlinux below, then its size as a u32 (as a
 * bzImage's payload ends), made once
 * with `xz -c --check=crc32 --x86 --lzma2` so the fuzz needs no xz command.
 */
const TINY_XZ_B64 =
  "/Td6WFoAAAFpIt42AgEEACEBFgANhjUf4AGPANJdAD+RRYRoPYmm2orMk+JO/lX6KHoHjsBz4F2T9nIrS470BhmDXYYVk0piRfgxjD0vRz3W/1TkfJUpIU7raMJhPmFTbKOIKKwZq3GOP1BIJg1aXJsAN+5RSKAFVRDCy7CEyzTWSIk93p6kxrJhuJacjYvxQPHSjxcygoS4nQVMp/qykCB+DEiCQD26gYkEiwV01iaVRX6yTzYn7pyTutFD2Zgc4EuKcGFH8N2tygK17h0MBC6aQ9Im2BJk0YqSv+AIChcxkQhkgalJUNSsyFKWAhCGAAAAAIoO0sAAAeoBkAMAAHSa7PY+MA2LAgAAAAABWVqQAQAA";

/** A tiny x86-64 vmlinux: code, bss and the Xen PVH entry note. */
function tinyVmlinux(): Uint8Array {
  const desc = new Uint8Array(8);
  new DataView(desc.buffer).setUint32(0, 0x100_0040, true);
  const code = new Uint8Array(0x80).map((_, i) => (i * 7 + 1) & 0xff);
  return buildElf({
    bits: 64,
    machine: EM_X86_64,
    entry: 0xffff_ffff_8100_0000n,
    segments: [
      { paddr: 0x100_0000, vaddr: 0xffff_ffff_8100_0000n, data: code },
      {
        paddr: 0x100_1000,
        vaddr: 0xffff_ffff_8100_1000n,
        data: new Uint8Array(16),
        memsz: 0x2000,
      },
    ],
    notes: [{ name: "Xen", type: 0x12, desc }],
  });
}

/** A minimal bzImage (boot sector, one setup sector, then a stand-in decompressor + payload). */
function bzImage(payload: Uint8Array): Uint8Array {
  const pm = new Uint8Array(0x300 + payload.length);
  pm.set(payload, 0x300);
  const img = new Uint8Array((1024 + pm.length + 15) & ~15);
  img.set(pm, 1024);
  const dv = new DataView(img.buffer);
  img[0x1f1] = 1;
  dv.setUint32(0x1f4, Math.ceil(pm.length / 16), true);
  dv.setUint16(0x1fe, 0xaa55, true);
  img[0x200] = 0xeb;
  img[0x201] = 0x6a;
  dv.setUint32(0x202, 0x5372_6448, true);
  dv.setUint16(0x206, 0x020f, true);
  img[0x211] = 0x01;
  dv.setUint32(0x22c, 0x7fff_ffff, true);
  dv.setUint32(0x230, 0x20_0000, true);
  img[0x234] = 1;
  dv.setUint16(0x236, 0x7f, true);
  dv.setUint32(0x238, 2047, true);
  dv.setUint32(0x248, 0x300, true);
  dv.setUint32(0x24c, payload.length, true);
  dv.setBigUint64(0x258, 0x100_0000n, true);
  dv.setUint32(0x260, 0x40_0000, true);
  return img;
}

/** The unmutated kernels, by name. */
export function seedImages(): Record<string, Uint8Array> {
  const xz = Uint8Array.from(atob(TINY_XZ_B64), (c) => c.charCodeAt(0)); // with its size word
  const elf = tinyVmlinux();
  const raw = new Uint8Array(elf.length + 4);
  raw.set(elf);
  new DataView(raw.buffer).setUint32(elf.length, elf.length, true);
  return {
    flat: read("tests/guests/hello_flat.bin"),
    multiboot_elf: read("tests/guests/hello_multiboot.elf"),
    multiboot_aout: read("tests/guests/hello_aout.bin"),
    pvh_elf: elf,
    bzimage_xz: bzImage(xz),
    bzimage_raw: bzImage(raw),
  };
}

const INTERESTING_U32 = [
  0,
  1,
  0x7f,
  0x80,
  0xff,
  0x100,
  0xfff,
  0x1000,
  0xffff,
  0x10000,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_fffe,
  0xffff_ffff,
  0xc000_0000,
  0x100_0000,
  0x9fc00,
  0x7c00,
];

/** One mutation of `img` (returns a new array when the length changes). */
function mutate(img: Uint8Array, r: () => number): Uint8Array {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  // Headers hold what loaders trust: most mutations land in the first KiB.
  const at = () =>
    Math.floor(r() < 0.7 ? r() * Math.min(img.length, 0x400) : r() * Math.max(1, img.length));
  switch (Math.floor(r() * 7)) {
    case 0: {
      if (img.length === 0) return img;
      const i = at() % img.length;
      img[i]! ^= 1 << Math.floor(r() * 8);
      return img;
    }
    case 1: {
      if (img.length === 0) return img;
      img[at() % img.length] = pick([0, 0xff, 0x7f, 0x80, 0x01, Math.floor(r() * 256)]);
      return img;
    }
    case 2:
    case 3: {
      const i = at() & ~(r() < 0.5 ? 3 : 0);
      if (i + 4 > img.length) return img;
      const v = r() < 0.8 ? pick(INTERESTING_U32) : Math.floor(r() * 2 ** 32);
      new DataView(img.buffer, img.byteOffset).setUint32(i, v >>> 0, true);
      return img;
    }
    case 4: // truncate, often at a header boundary
      return img.slice(
        0,
        r() < 0.5 ? pick([0, 1, 0x34, 0x40, 0x64, 0x1f1, 0x200, 0x202, 0x268, 0x400]) : at(),
      );
    case 5: { // append
      const extra = new Uint8Array(Math.floor(r() * 4096)).map(() => Math.floor(r() * 256));
      const out = new Uint8Array(img.length + extra.length);
      out.set(img);
      out.set(extra, img.length);
      return out;
    }
    default: { // zero a range
      const i = at();
      img.fill(0, i, i + Math.floor(r() * 64));
      return img;
    }
  }
}

const MEM_SIZES = [2 << 20, 16 << 20, 40 << 20];
const memories = new Map<number, GuestMemory>();
/** One memory per size, reused: a loader writes what it loads, and reads only what it wrote. */
function memoryOf(size: number): GuestMemory {
  let m = memories.get(size);
  if (!m) memories.set(size, m = GuestMemory.allocate(size));
  return m;
}

/** What one case did. */
export interface CaseResult {
  seedImage: string;
  format: FormatChoice;
  /** "boot", the VmmError subclass's name, or "FAILURE" (with `error`). */
  outcome: string;
  error?: string;
}

let seeds: Record<string, Uint8Array> | null = null;

/** Runs case `index` of the run seeded with `seed`. */
export function runCase(seed: number, index: number): CaseResult {
  seeds ??= seedImages();
  const r = rng((seed * 0x9e37_79b9 + index * 0x85eb_ca6b) >>> 0);
  const names = Object.keys(seeds);
  const seedImage = names[index % names.length]!;
  let img: Uint8Array = seeds[seedImage]!.slice();
  const n = r() < 0.05 ? 0 : 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) img = mutate(img, r);
  const format: FormatChoice = r() < 0.8
    ? "auto"
    : (["flat", "multiboot", "linux"] as const)[Math.floor(r() * 3)]!;
  const memSize = MEM_SIZES[Math.floor(r() * MEM_SIZES.length)]!;
  const ir = r();
  const initrd = ir < 0.4
    ? undefined
    : ir < 0.95
    ? new Uint8Array(Math.floor(r() * 65536)).map(() => Math.floor(r() * 256))
    : new Uint8Array(memSize + 4096);
  const cmdline = r() < 0.9
    ? "console=ttyS0".slice(0, Math.floor(r() * 14))
    : "x".repeat(Math.floor(r() * 20000));
  const imagePath = `fuzz-${seed}-${index}`;
  try {
    const resolved = resolveFormat(format, img, imagePath);
    loadImage(resolved, img, memoryOf(memSize), {
      imagePath,
      cmdline,
      initrd,
      initrdPath: initrd ? "fuzz-initrd" : undefined,
      acpiRsdpAddr: 0xe0000,
    });
    return { seedImage, format, outcome: "boot" };
  } catch (err) {
    if (err instanceof VmmError) return { seedImage, format, outcome: err.name };
    const e = err as Error;
    return {
      seedImage,
      format,
      outcome: "FAILURE",
      error: `${e?.name}: ${e?.message}\n${e?.stack ?? ""}`,
    };
  }
}
