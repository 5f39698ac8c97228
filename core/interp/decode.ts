/**
 * The decoded-instruction cache: each instruction is decoded once (prefixes, opcode, ModRM/SIB
 * recipe, displacement, immediates, length) into slots of parallel typed arrays keyed by the
 * instruction's offset in guest RAM, and reused until the page holding it is written. The
 * executor (`exec.ts`) reads these fields instead of fetching bytes.
 *
 * Self-modifying code stays correct: a page becomes a "code page" when an instruction is decoded
 * from it; the CPU never installs write-TLB entries for code pages, so every write to one takes
 * the slow path, which drops the page's decoded instructions (`invalidatePage`).
 */

// Module-level decoder state uses `var`: V8 checks `let` bindings for the temporal dead zone on
// every access from a function, which measured 40% slower on the interpreter's hot path.
// deno-lint-ignore-file no-var

import type { Cpu } from "./cpu.ts";

/** Decode cache slots (direct mapped by RAM offset). */
export const DC_SIZE = 1 << 16;
const DC_MASK = DC_SIZE - 1;
/** The slot used for instructions that cross a page (never cached). */
export const DC_SCRATCH = DC_SIZE;

/** Segment-default marker in `seg` for "DS unless overridden" and "SS unless overridden". */
const SEG_DS = 3, SEG_SS = 2;

// Opcode property tables (SDM Vol. 2, Appendix A opcode maps).
/** Bit 0: has ModRM. Bits 4..7: immediate kind (see IMM_*). */
const OP1 = new Uint8Array(256);
const OP2 = new Uint8Array(256);
const IMM_NONE = 0, IMM_B = 1, IMM_W = 2, IMM_Z = 3, IMM_V = 4, IMM_FAR = 5, IMM_MOFFS = 6;
const IMM_ENTER = 7, IMM_REL = 8, IMM_GRP3B = 9, IMM_GRP3V = 10;

function setOps(t: Uint8Array, list: number[], v: number): void {
  for (const o of list) t[o] = v;
}

function range(a: number, b: number): number[] {
  const r: number[] = [];
  for (let i = a; i <= b; i++) r.push(i);
  return r;
}

(function buildTables() {
  // One-byte map.
  for (let row = 0; row < 8; row++) {
    const base = row * 8;
    setOps(OP1, [base, base + 1, base + 2, base + 3], 1);
    OP1[base + 4] = IMM_B << 4;
    OP1[base + 5] = IMM_Z << 4;
  }
  setOps(OP1, [0x62, 0x63], 1);
  OP1[0x68] = IMM_Z << 4;
  OP1[0x69] = 1 | (IMM_Z << 4);
  OP1[0x6a] = IMM_B << 4;
  OP1[0x6b] = 1 | (IMM_B << 4);
  setOps(OP1, range(0x70, 0x7f), IMM_B << 4);
  OP1[0x80] = 1 | (IMM_B << 4);
  OP1[0x81] = 1 | (IMM_Z << 4);
  OP1[0x82] = 1 | (IMM_B << 4);
  OP1[0x83] = 1 | (IMM_B << 4);
  setOps(OP1, range(0x84, 0x8f), 1);
  OP1[0x9a] = IMM_FAR << 4;
  setOps(OP1, range(0xa0, 0xa3), IMM_MOFFS << 4);
  OP1[0xa8] = IMM_B << 4;
  OP1[0xa9] = IMM_Z << 4;
  setOps(OP1, range(0xb0, 0xb7), IMM_B << 4);
  setOps(OP1, range(0xb8, 0xbf), IMM_V << 4);
  OP1[0xc0] = 1 | (IMM_B << 4);
  OP1[0xc1] = 1 | (IMM_B << 4);
  OP1[0xc2] = IMM_W << 4;
  setOps(OP1, [0xc4, 0xc5], 1);
  OP1[0xc6] = 1 | (IMM_B << 4);
  OP1[0xc7] = 1 | (IMM_Z << 4);
  OP1[0xc8] = IMM_ENTER << 4;
  OP1[0xca] = IMM_W << 4;
  OP1[0xcd] = IMM_B << 4;
  setOps(OP1, range(0xd0, 0xd3), 1);
  OP1[0xd4] = IMM_B << 4;
  OP1[0xd5] = IMM_B << 4;
  setOps(OP1, range(0xd8, 0xdf), 1);
  setOps(OP1, range(0xe0, 0xe7), IMM_B << 4);
  OP1[0xe8] = IMM_REL << 4;
  OP1[0xe9] = IMM_REL << 4;
  OP1[0xea] = IMM_FAR << 4;
  OP1[0xeb] = IMM_B << 4;
  OP1[0xf6] = 1 | (IMM_GRP3B << 4);
  OP1[0xf7] = 1 | (IMM_GRP3V << 4);
  OP1[0xfe] = 1;
  OP1[0xff] = 1;
  // Two-byte map: ModRM unless listed.
  OP2.fill(1);
  setOps(OP2, [0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x77], 0);
  setOps(OP2, range(0x30, 0x37), 0);
  setOps(OP2, range(0x80, 0x8f), IMM_REL << 4);
  setOps(OP2, [0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa], 0);
  setOps(OP2, range(0xc8, 0xcf), 0);
  setOps(OP2, [0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6], 1 | (IMM_B << 4));
})();

/** Fields of a decoded instruction, at `slot * DC_STRIDE + F_*` in `DecodeCache.ent`. */
export const DC_STRIDE = 16;
/** RAM offset of the instruction (as int32), or -1. */
export const F_TAG = 0;
/** Mode key the slot was decoded in (0 16-bit, 1 32-bit, 2 64-bit). */
export const F_MODE = 1;
/** Instruction length. */
export const F_LEN = 2;
/** Opcode: 0x00..0xFF one-byte, 0x100 | b for 0F b, 0x200 | b for 0F 38 b, 0x300 | b for 0F 3A b. */
export const F_OP = 3;
/**
 * Packed prefixes: bits 0-3 operand size, 4-7 address size, 8-11 segment override + 1,
 * 12-19 REX, 20-27 last of 66/F2/F3, 28 operand-size prefix seen, 29-30 rep (1 F2, 2 F3).
 */
export const F_PFX = 4;
/** ModRM byte, or -1 when the instruction has none. */
export const F_MODRM = 5;
/** reg field with REX.R. */
export const F_REG = 6;
/** r/m register with REX.B, or -1 for a memory operand. */
export const F_RM = 7;
/** Memory operand: base register or -1. */
export const F_BASE = 8;
/** Memory operand: index register or -1. */
export const F_INDEX = 9;
/** Memory operand: scale shift (0..3); bit 2 set = RIP-relative. */
export const F_SCALE = 10;
/** Memory operand: effective segment (override applied). */
export const F_SEG = 11;
/** Memory operand: displacement. */
export const F_DISP = 12;
/** First immediate (raw: bytes and words unsigned, dwords as int32). */
export const F_IMM = 13;
/** Second immediate (far selector, ENTER level, high half of imm64/moffs64). */
export const F_IMM2 = 14;

/**
 * Per-CPU decoded-instruction cache: one Int32Array, DC_STRIDE ints per slot (one backing store
 * for every field keeps the hot-path loads cheap). Slot DC_SCRATCH holds uncached decodes.
 * Tags are RAM offsets as int32: guests with more than 4 GiB of RAM could alias two slots.
 */
export class DecodeCache {
  readonly ent = new Int32Array((DC_SIZE + 1) * DC_STRIDE);

  constructor() {
    this.flush();
  }

  /** Forgets every decoded instruction. */
  flush(): void {
    for (let s = 0; s <= DC_SIZE; s++) this.ent[s * DC_STRIDE] = -1;
  }

  /** Forgets the decoded instructions of the RAM page `page` (RAM offset / 4096). */
  invalidatePage(page: number): void {
    const start = page * 4096;
    for (let k = 0; k < 4096; k++) {
      const b = ((start + k) & DC_MASK) * DC_STRIDE;
      const t = this.ent[b]!;
      if (t !== -1 && (t >>> 0) >= start && (t >>> 0) < start + 4096) this.ent[b] = -1;
    }
  }
}

// Decoder cursor: bytes come from RAM at `rdOff + rdPos` while `rdPos < rdAvail` (same page),
// otherwise through the CPU's fetch translation (the instruction crosses a page).
var dc: DecodeCache;
var cpu: Cpu;
var rdOff = 0;
var rdPos = 0;
var rdAvail = 0;
var crossed = false;
var startIp = 0;

function nb(): number {
  if (rdPos < rdAvail) return cpu.bytes[rdOff + rdPos++]!;
  if (rdPos >= 15) cpu.gp(0); // longer than 15 bytes (SDM Vol. 2, 2.3.11)
  crossed = true;
  return cpu.fetchByteAt(startIp + rdPos++);
}

function nw(): number {
  return nb() | (nb() << 8);
}

function nd(): number {
  return nb() | (nb() << 8) | (nb() << 16) | (nb() << 24);
}

/**
 * Decodes the instruction at `ip` (RAM offset `off`, `avail` bytes left in its page). Returns
 * the slot holding it: its cache slot, or DC_SCRATCH when it crosses a page.
 */
export function decode(c: Cpu, cache: DecodeCache, ip: number, off: number, avail: number): number {
  cpu = c;
  dc = cache;
  rdOff = off;
  rdPos = 0;
  rdAvail = avail < 15 ? avail : 15;
  crossed = false;
  startIp = ip;
  let segOv = -1, rep = 0, rex = 0, last = 0, opsize16 = false, adsize = false;
  let b: number;
  for (;;) {
    b = nb();
    switch (b) {
      case 0x26:
      case 0x2e:
      case 0x36:
      case 0x3e:
        segOv = (b >> 3) & 3;
        rex = 0;
        continue;
      case 0x64:
      case 0x65:
        segOv = b - 0x60;
        rex = 0;
        continue;
      case 0x66:
        opsize16 = true;
        last = 0x66;
        rex = 0;
        continue;
      case 0x67:
        adsize = true;
        rex = 0;
        continue;
      case 0xf0:
        rex = 0;
        continue;
      case 0xf2:
      case 0xf3:
        rep = b === 0xf2 ? 1 : 2;
        last = b;
        rex = 0;
        continue;
    }
    if (c.long64 && (b & 0xf0) === 0x40) {
      rex = b;
      continue;
    }
    break;
  }
  let osz: number, asz: number;
  if (c.long64) {
    osz = rex & 8 ? 8 : opsize16 ? 2 : 4;
    asz = adsize ? 4 : 8;
  } else {
    osz = c.code32 !== opsize16 ? 4 : 2;
    asz = c.code32 !== adsize ? 4 : 2;
  }
  let op = b;
  let props: number;
  if (b === 0x0f) {
    const b2 = nb();
    op = 0x100 | b2;
    props = OP2[b2]!;
    if (b2 === 0x38 || b2 === 0x3a) {
      // Three-byte maps: ModRM always, imm8 for 0F 3A.
      const b3 = nb();
      op = (b2 === 0x38 ? 0x200 : 0x300) | b3;
      props = 1 | (b2 === 0x3a ? IMM_B << 4 : 0);
    }
  } else props = OP1[b]!;
  let modrm = -1, reg = 0, rm = -1, base = -1, index = -1, scale = 0, disp = 0;
  let seg = segOv;
  if (props & 1) {
    modrm = nb();
    const mod = modrm >> 6;
    reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    const r = modrm & 7;
    if (mod === 3) rm = r | ((rex & 1) << 3);
    else if (asz === 2) {
      let dseg = SEG_DS;
      switch (r) {
        case 0:
          base = 3;
          index = 6;
          break;
        case 1:
          base = 3;
          index = 7;
          break;
        case 2:
          base = 5;
          index = 6;
          dseg = SEG_SS;
          break;
        case 3:
          base = 5;
          index = 7;
          dseg = SEG_SS;
          break;
        case 4:
          base = 6;
          break;
        case 5:
          base = 7;
          break;
        case 6:
          if (mod === 0) disp = nw();
          else {
            base = 5;
            dseg = SEG_SS;
          }
          break;
        default:
          base = 3;
      }
      if (mod === 1) disp = (nb() << 24) >> 24;
      else if (mod === 2) disp = (nw() << 16) >> 16;
      if (seg < 0) seg = dseg;
    } else {
      let dseg = SEG_DS;
      if (r === 4) {
        const sib = nb();
        scale = sib >> 6;
        index = ((sib >> 3) & 7) | ((rex & 2) << 2);
        if (index === 4) index = -1;
        const bb = sib & 7;
        if (bb === 5 && mod === 0) disp = nd();
        else {
          base = bb | ((rex & 1) << 3);
          if (bb === 4 || bb === 5) dseg = SEG_SS;
        }
      } else if (r === 5 && mod === 0) {
        disp = nd();
        if (c.long64) scale = 4; // RIP-relative
      } else {
        base = r | ((rex & 1) << 3);
        if (r === 5 || r === 4) dseg = SEG_SS;
      }
      if (mod === 1) disp = (nb() << 24) >> 24;
      else if (mod === 2) disp = nd();
      if (seg < 0) seg = dseg;
    }
  }
  let imm = 0, imm2 = 0;
  switch (props >> 4) {
    case IMM_NONE:
      break;
    case IMM_B:
      imm = nb();
      break;
    case IMM_W:
      imm = nw();
      break;
    case IMM_Z:
      imm = osz === 2 ? nw() : nd();
      break;
    case IMM_V:
      if (osz === 8) {
        imm = nd();
        imm2 = nd();
      } else imm = osz === 2 ? nw() : nd();
      break;
    case IMM_FAR:
      imm = osz === 2 ? nw() : nd();
      imm2 = nw();
      break;
    case IMM_MOFFS:
      if (asz === 8) {
        imm = nd();
        imm2 = nd();
      } else imm = asz === 4 ? nd() : nw();
      break;
    case IMM_ENTER:
      imm = nw();
      imm2 = nb();
      break;
    case IMM_REL:
      imm = c.long64 || osz === 4 ? nd() : nw();
      break;
    case IMM_GRP3B:
      if (((modrm >> 3) & 7) < 2) imm = nb();
      break;
    case IMM_GRP3V:
      if (((modrm >> 3) & 7) < 2) imm = osz === 2 ? nw() : nd();
      break;
  }
  const s = crossed ? DC_SCRATCH : off & DC_MASK;
  const e = dc.ent;
  const b0 = s * DC_STRIDE;
  e[b0 + F_TAG] = crossed ? -1 : off | 0;
  e[b0 + F_MODE] = c.long64 ? 2 : c.code32 ? 1 : 0;
  e[b0 + F_LEN] = rdPos;
  e[b0 + F_OP] = op;
  e[b0 + F_PFX] = osz | (asz << 4) | ((segOv + 1) << 8) | (rex << 12) | (last << 20) |
    (opsize16 ? 1 << 28 : 0) | (rep << 29);
  e[b0 + F_MODRM] = modrm;
  e[b0 + F_REG] = reg;
  e[b0 + F_RM] = rm;
  e[b0 + F_BASE] = base;
  e[b0 + F_INDEX] = index;
  e[b0 + F_SCALE] = scale;
  e[b0 + F_SEG] = seg < 0 ? SEG_DS : seg;
  e[b0 + F_DISP] = disp;
  e[b0 + F_IMM] = imm;
  e[b0 + F_IMM2] = imm2;
  return s;
}
