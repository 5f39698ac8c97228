/**
 * Test helpers for the loader tests: reading the fixture guests, and building small ELF32/ELF64
 * files (optionally with a Multiboot header and notes) for the cases no fixture covers.
 */

import { MULTIBOOT_HEADER_MAGIC } from "../../../core/boot/multiboot.ts";

const ROOT = new URL("../../../", import.meta.url);

/** Path of a file relative to the repository root (as the CLI would get it). */
export function repoPath(rel: string): string {
  return new URL(rel, ROOT).pathname;
}

/** Reads a fixture, returning its path and bytes. */
export function fixture(rel: string): { path: string; bytes: Uint8Array } {
  const path = repoPath(rel);
  return { path, bytes: Deno.readFileSync(path) };
}

/** One segment of a built ELF file. */
export interface SegmentSpec {
  paddr: number;
  vaddr?: number | bigint;
  data: Uint8Array;
  memsz?: number;
}

/** What `buildElf` makes. */
export interface ElfSpec {
  bits: 32 | 64;
  machine?: number;
  entry: number | bigint;
  segments: SegmentSpec[];
  /** Multiboot header flags; omit for no Multiboot header. */
  multibootFlags?: number;
  /** Notes for one PT_NOTE segment. */
  notes?: { name: string; type: number; desc: Uint8Array }[];
}

/** A Multiboot header (magic, flags, checksum) as bytes. */
export function multibootHeader(flags: number): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, MULTIBOOT_HEADER_MAGIC, true);
  dv.setUint32(4, flags, true);
  dv.setUint32(8, -(MULTIBOOT_HEADER_MAGIC + flags) >>> 0, true);
  return b;
}

/**
 * Builds an ELF executable: header, program headers (PT_LOAD per segment, then PT_NOTE), the
 * Multiboot header, the notes, and the segment bytes at 16-byte-aligned offsets.
 */
export function buildElf(spec: ElfSpec): Uint8Array {
  const is64 = spec.bits === 64;
  const ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32;
  const phnum = spec.segments.length + (spec.notes ? 1 : 0);
  let at = ehsize + phnum * phentsize;
  const mbAt = at;
  if (spec.multibootFlags !== undefined) at += 12;
  const noteBytes: number[] = [];
  for (const n of spec.notes ?? []) {
    const name = new TextEncoder().encode(n.name + "\0");
    const word = (v: number) =>
      noteBytes.push(v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24);
    word(name.length);
    word(n.desc.length);
    word(n.type);
    noteBytes.push(...name, ...new Array((4 - name.length % 4) % 4).fill(0));
    noteBytes.push(...n.desc, ...new Array((4 - n.desc.length % 4) % 4).fill(0));
  }
  const noteAt = at;
  at += noteBytes.length;
  const offsets = spec.segments.map((s) => {
    at = Math.ceil(at / 16) * 16;
    const o = at;
    at += s.data.length;
    return o;
  });
  const out = new Uint8Array(at);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1]);
  dv.setUint16(16, 2, true);
  dv.setUint16(18, spec.machine ?? (is64 ? 62 : 3), true);
  dv.setUint32(20, 1, true);
  if (is64) {
    dv.setBigUint64(24, BigInt(spec.entry), true);
    dv.setBigUint64(32, BigInt(ehsize), true);
    dv.setUint16(52, ehsize, true);
    dv.setUint16(54, phentsize, true);
    dv.setUint16(56, phnum, true);
  } else {
    dv.setUint32(24, Number(spec.entry), true);
    dv.setUint32(28, ehsize, true);
    dv.setUint16(40, ehsize, true);
    dv.setUint16(42, phentsize, true);
    dv.setUint16(44, phnum, true);
  }
  const phdr = (
    i: number,
    type: number,
    off: number,
    vaddr: bigint,
    paddr: bigint,
    filesz: number,
    memsz: number,
  ) => {
    const p = ehsize + i * phentsize;
    dv.setUint32(p, type, true);
    if (is64) {
      dv.setUint32(p + 4, 7, true);
      dv.setBigUint64(p + 8, BigInt(off), true);
      dv.setBigUint64(p + 16, vaddr, true);
      dv.setBigUint64(p + 24, paddr, true);
      dv.setBigUint64(p + 32, BigInt(filesz), true);
      dv.setBigUint64(p + 40, BigInt(memsz), true);
      dv.setBigUint64(p + 48, 16n, true);
    } else {
      dv.setUint32(p + 4, off, true);
      dv.setUint32(p + 8, Number(vaddr), true);
      dv.setUint32(p + 12, Number(paddr), true);
      dv.setUint32(p + 16, filesz, true);
      dv.setUint32(p + 20, memsz, true);
      dv.setUint32(p + 24, 7, true);
      dv.setUint32(p + 28, 16, true);
    }
  };
  spec.segments.forEach((s, i) => {
    const off = offsets[i]!;
    out.set(s.data, off);
    phdr(
      i,
      1,
      off,
      BigInt(s.vaddr ?? s.paddr),
      BigInt(s.paddr),
      s.data.length,
      s.memsz ?? s.data.length,
    );
  });
  if (spec.notes) phdr(spec.segments.length, 4, noteAt, 0n, 0n, noteBytes.length, 0);
  if (spec.multibootFlags !== undefined) out.set(multibootHeader(spec.multibootFlags), mbAt);
  out.set(noteBytes, noteAt);
  return out;
}
