/**
 * Instruction decoder and executor: `step(cpu)` fetches, decodes and executes one instruction.
 * Decode state lives in module variables (one instruction at a time, never re-entered) so the
 * hot path allocates nothing; one-byte opcodes dispatch through a switch, 0F opcodes through a
 * second one. Guest exceptions are thrown as `FAULT` (see cpu.ts) and delivered by the caller.
 */

// Module-level decoder state uses `var`: V8 checks `let` bindings for the temporal dead zone on
// every access from a function, which measured 40% slower on the interpreter's hot path.
// deno-lint-ignore-file no-var

import {
  ACC_READ,
  ACC_WRITE,
  Cpu,
  CR0_PE,
  CS,
  DS,
  EFER_LMA,
  EFER_SCE,
  ES,
  F_AC,
  F_AF,
  F_ARITH,
  F_CF,
  F_DF,
  F_ID,
  F_IF,
  F_IOPL,
  F_NT,
  F_OF,
  F_PF,
  F_RF,
  F_TF,
  F_VM,
  F_ZF,
  FS,
  GS,
  LDTR,
  NM,
  SS,
  TR,
  UnsupportedError,
} from "./cpu.ts";
import {
  alu,
  alu64,
  imul32,
  imul64,
  incdec,
  incdec64,
  mask,
  mulDivAx,
  mulFlags,
  sext,
  shift,
  shift64,
  shl64x,
  shr64x,
} from "./alu.ts";
import { cpuid, cpuidOut } from "./cpuid.ts";
import { execFpu, execSse3, fxrstor, fxsave } from "./fpu.ts";
import { execSse } from "./sse.ts";
import { H_GEN } from "../page_state.ts";
import {
  DC_STRIDE,
  decode,
  F_BASE,
  F_DISP,
  F_IMM,
  F_IMM2,
  F_INDEX,
  F_LEN,
  F_MODE,
  F_MODRM,
  F_OP,
  F_PFX,
  F_REG,
  F_RM,
  F_SCALE,
  F_SEG,
} from "./decode.ts";

const DC_MASK = 0xffff;

const TWO32 = 4294967296;

// ---- Decode state (module-level: one instruction at a time) ------------------------------------

var c: Cpu;
/** Operand size in bytes (2, 4, 8). */
var osz = 4;
/** Address size in bytes (2, 4, 8). */
var asz = 4;
/** Segment override, or -1. */
var segOv = -1;
/** 0, 0xF2 (REPNE) or 0xF3 (REP/REPE). */
var rep = 0;
/** The last mandatory-prefix candidate (0x66, 0xF2, 0xF3) for SSE decoding. */
var opPrefix = 0;
var rex = 0;
var opsize16 = false;
/** ModRM fields: reg (with REX.R), rm register (with REX.B) or -1 for memory. */
var regf = 0;
var rmReg = -1;
var modrmByte = 0;
/** Linear address of the memory operand. */
var ea = 0;
/** The effective address as exact 64-bit halves (LEA). */
var eaLo = 0;
var eaHi = 0;
/** Effective (offset) address before the segment base, for LEA. */
var eaOff = 0;

/** Immediates of the current instruction (see decode.ts for their encoding). */
var imm = 0;
var imm2 = 0;
/** Memory-operand recipe of the current instruction. */
var eBase = -1;
var eIndex = -1;
var eScale = 0;
var eDisp = 0;
var eSeg = DS;

/** Executes one instruction on `cpu`. Throws FAULT for guest exceptions. */
export function step(cpu: Cpu): void {
  c = cpu;
  stepOne();
}

/**
 * Executes up to `n` instructions on `cpu`, stopping early when an instruction sets
 * `breakLoop` (I/O stop, HLT, IF enabled, mode change). Throws FAULT for guest exceptions;
 * `cpu.startIp` then holds the faulting instruction.
 */
export function runSlice(cpu: Cpu, n: number): void {
  c = cpu;
  const gen = cpu.pageGen;
  for (let i = 0; i < n; i++) {
    // Code a device wrote (maybe from another thread) is dropped before it runs again.
    if (gen[H_GEN] !== c.pageGenSeen) c.pageSync();
    stepOne();
    if (c.breakLoop) return;
  }
}

/** Executes one instruction on the current CPU `c`. */
function stepOne(): void {
  const ip = c.ip;
  c.startIp = ip;
  let d = ip - c.fetchIpBase;
  if (!(d >= 0 && d < 4096)) {
    c.fetchRefill();
    d = ip - c.fetchIpBase;
  }
  const off = c.fetchOff + d;
  const ent = c.dc.ent;
  let s = off & DC_MASK;
  let b = s * DC_STRIDE;
  // Hot path: one tag compare, then plain loads of the decoded fields (no allocation).
  if (ent[b] !== (off | 0) || ent[b + F_MODE] !== (c.long64 ? 2 : c.code32 ? 1 : 0)) {
    // Marked before the bytes are read, so a writer on another thread cannot slip between.
    const page = Math.floor(off / 4096);
    if (c.codePages[page] === 0) c.markCodePage(page);
    s = decode(c, c.dc, ip, off, 4096 - d);
    b = s * DC_STRIDE;
  }
  const p = ent[b + F_PFX]!;
  osz = p & 15;
  asz = (p >> 4) & 15;
  segOv = ((p >> 8) & 15) - 1;
  rex = (p >> 12) & 0xff;
  opPrefix = (p >> 20) & 0xff;
  opsize16 = (p & 0x1000_0000) !== 0;
  const r = (p >>> 29) & 3;
  rep = r === 0 ? 0 : r === 1 ? 0xf2 : 0xf3;
  modrmByte = ent[b + F_MODRM]!;
  regf = ent[b + F_REG]!;
  rmReg = ent[b + F_RM]!;
  imm = ent[b + F_IMM]!;
  imm2 = ent[b + F_IMM2]!;
  c.ip = ip + ent[b + F_LEN]!;
  if (modrmByte >= 0 && rmReg < 0) {
    eBase = ent[b + F_BASE]!;
    eIndex = ent[b + F_INDEX]!;
    eScale = ent[b + F_SCALE]!;
    eDisp = ent[b + F_DISP]!;
    eSeg = ent[b + F_SEG]!;
    computeEa();
  }
  const op = ent[b + F_OP]!;
  if (op < 0x100) exec1(op);
  else if (op < 0x200) exec0f(op & 0xff);
  else if (!execSse3(c, op, opPrefix, rex)) c.ud();
  c.icount++;
}

// ---- Effective addresses ----------------------------------------------------------------------

/** Computes `ea` (linear) and `eaOff` (offset) from the decoded memory-operand recipe. */
function computeEa(): void {
  if (asz === 8) {
    let l = eDisp, h = 0;
    if (eScale & 4) {
      const next = c.ip;
      l += next >>> 0;
      h = Math.floor(next / TWO32);
    }
    if (eBase >= 0) {
      l += c.lo[eBase]! >>> 0;
      h += c.hi[eBase]!;
    }
    if (eIndex >= 0) {
      const m = 1 << (eScale & 3);
      l += (c.lo[eIndex]! >>> 0) * m;
      h += c.hi[eIndex]! * m;
    }
    if (l < 0 || l >= TWO32) {
      const carry = Math.floor(l / TWO32);
      l -= carry * TWO32;
      h += carry;
    }
    h |= 0;
    eaLo = l | 0;
    eaHi = h;
    eaOff = h * TWO32 + l; // exact for canonical addresses; LEA uses eaLo/eaHi
    if (eSeg >= FS) {
      l += c.segBase[eSeg]!;
      const carry2 = Math.floor(l / TWO32);
      h = (h + carry2) | 0;
      l -= carry2 * TWO32;
      ea = h * TWO32 + l;
    } else ea = eaOff;
    return;
  }
  let o = eDisp;
  if (eBase >= 0) o += c.lo[eBase]!;
  if (eIndex >= 0) o += c.lo[eIndex]! << (eScale & 3);
  if (asz === 4) {
    if (eScale & 4) o += c.ip;
    o >>>= 0;
  } else o &= 0xffff;
  eaOff = o;
  eaLo = o | 0;
  eaHi = 0;
  if (c.long64) ea = eSeg >= FS ? c.segBase[eSeg]! + o : o;
  else ea = (c.segBase[eSeg]! + o) >>> 0;
}

// ---- Register and operand access ----------------------------------------------------------------

function getReg(r: number, sz: number): number {
  switch (sz) {
    case 1:
      if (r < 4 || r > 7 || rex !== 0) return c.lo[r]! & 0xff;
      return (c.lo[r - 4]! >> 8) & 0xff;
    case 2:
      return c.lo[r]! & 0xffff;
    case 4:
      return c.lo[r]!;
    default:
      c.rh = c.hi[r]!;
      return c.lo[r]!;
  }
}

/** Writes register `r` with size `sz`; `vh` is the high half for 8-byte writes. */
function setReg(r: number, sz: number, v: number, vh: number): void {
  switch (sz) {
    case 1:
      if (r < 4 || r > 7 || rex !== 0) c.lo[r] = (c.lo[r]! & ~0xff) | (v & 0xff);
      else c.lo[r - 4] = (c.lo[r - 4]! & ~0xff00) | ((v & 0xff) << 8);
      return;
    case 2:
      c.lo[r] = (c.lo[r]! & ~0xffff) | (v & 0xffff);
      return;
    case 4:
      c.lo[r] = v;
      c.hi[r] = 0;
      return;
    default:
      c.lo[r] = v;
      c.hi[r] = vh;
  }
}

function readMem(lin: number, sz: number): number {
  switch (sz) {
    case 1:
      return c.rd8(lin);
    case 2:
      return c.rd16(lin);
    case 4:
      return c.rd32(lin);
    default:
      return c.rd64(lin);
  }
}

function writeMem(lin: number, sz: number, v: number, vh: number): void {
  switch (sz) {
    case 1:
      c.wr8(lin, v);
      return;
    case 2:
      c.wr16(lin, v);
      return;
    case 4:
      c.wr32(lin, v);
      return;
    default:
      c.wr64(lin, v, vh);
  }
}

/** `readMemW` for callers outside this module (the block compiler): selects `cpu` first. */
export function readMemWFor(cpu: Cpu, lin: number, sz: number): number {
  c = cpu;
  return readMemW(lin, sz);
}

/** Reads memory for a read-modify-write: faults as a write would, so the write cannot fail. */
function readMemW(lin: number, sz: number): number {
  const i = (lin >>> 12) & 4095;
  const o = lin & 0xfff;
  if (c.tlbWrite[i] === lin - o && o <= 0x1000 - sz) {
    const p = c.tlbOff[i]! + o;
    switch (sz) {
      case 1:
        return c.bytes[p]!;
      case 2:
        return c.dv.getUint16(p, true);
      case 4:
        return c.dv.getInt32(p, true);
      default:
        c.rh = c.dv.getInt32(p + 4, true);
        return c.dv.getInt32(p, true);
    }
  }
  c.probeWrite(lin, sz);
  return readMem(lin, sz);
}

function readE(sz: number): number {
  return rmReg >= 0 ? getReg(rmReg, sz) : readMem(ea, sz);
}

function readEW(sz: number): number {
  return rmReg >= 0 ? getReg(rmReg, sz) : readMemW(ea, sz);
}

function writeE(sz: number, v: number, vh: number): void {
  if (rmReg >= 0) setReg(rmReg, sz, v, vh);
  else writeMem(ea, sz, v, vh);
}

/** Applies ALU op to E (destination) and a source value; handles 64-bit. */
function aluE(op: number, sz: number, b: number, bh: number): void {
  if (sz === 8) {
    const a = op === 7 ? readE(8) : readEW(8);
    const r = alu64(c, op, a, c.rh, b, bh);
    if (op !== 7) writeE(8, r, c.rh);
    return;
  }
  const a = op === 7 ? readE(sz) : readEW(sz);
  const r = alu(c, op, a, b, sz);
  if (op !== 7) writeE(sz, r, 0);
}

// ---- Address-size registers (string ops, LOOP, JCXZ) ---------------------------------------------

function getAReg(r: number): number {
  if (asz === 2) return c.lo[r]! & 0xffff;
  if (asz === 4) return c.lo[r]! >>> 0;
  return c.hi[r]! * TWO32 + (c.lo[r]! >>> 0);
}

function addAReg(r: number, d: number): void {
  if (asz === 2) c.lo[r] = (c.lo[r]! & ~0xffff) | ((c.lo[r]! + d) & 0xffff);
  else if (asz === 4) {
    c.lo[r] = c.lo[r]! + d;
    if (c.long64) c.hi[r] = 0;
  } else {
    const l = (c.lo[r]! >>> 0) + d;
    c.lo[r] = l | 0;
    c.hi[r] = (c.hi[r]! + Math.floor(l / TWO32)) | 0;
  }
}

/** Linear address of segment `seg` plus an address-size offset. */
function linOf(seg: number, off: number): number {
  if (c.long64) {
    if (seg >= FS) return c.segBase[seg]! + (asz === 8 ? off : off);
    return off;
  }
  return (c.segBase[seg]! + off) >>> 0;
}

/** Canonical-checked 64-bit value from halves as a number (for RIP and addresses). */
function canon(l: number, h: number): number {
  if (((h << 16) >> 16) !== h) c.gp(0);
  return h * TWO32 + (l >>> 0);
}

// ---- Branches ---------------------------------------------------------------------------------

function jumpRel(rel: number): void {
  const t = c.ip + rel;
  if (osz === 2) c.ip = t & 0xffff;
  else if (!c.long64) c.ip = t >>> 0;
  else c.ip = t;
}

function pushV(v: number, vh: number, sz: number): void {
  const lin = c.stackLin(sz);
  if (sz === 8) c.wr64(lin, v, vh);
  else if (sz === 4) c.wr32(lin, v);
  else c.wr16(lin, v);
  c.adjSp(-sz);
}

/** Stack operand size for PUSH/POP/CALL/RET: 64-bit mode defaults to 8. */
function stackOsz(): number {
  return c.long64 ? (opsize16 ? 2 : 8) : osz;
}

function pushIp(sz: number): void {
  if (sz === 8) pushV(c.ip | 0, Math.floor(c.ip / TWO32) | 0, 8);
  else pushV(c.ip, 0, sz);
}

/** Sets IP from a popped or computed value of size `sz` (8: halves in v/vh). */
function setIp(v: number, vh: number, sz: number): void {
  if (sz === 8) c.ip = canon(v, vh);
  else if (sz === 4) c.ip = v >>> 0;
  else c.ip = v & 0xffff;
}

// ---- Privilege helpers ---------------------------------------------------------------------------

function iopl(): number {
  return (c.flags >> 12) & 3;
}

function requireCpl0(): void {
  if ((c.cr0 & CR0_PE) && c.cpl !== 0) c.gp(0);
}

function checkIo(): void {
  if ((c.cr0 & CR0_PE) && c.cpl > iopl()) c.gp(0);
}

function portIn(port: number, sz: number): number {
  const v = c.io.ports.read(port, sz);
  if (c.io.control.stop !== null) c.breakLoop = true;
  // The device may have written code by DMA: drop it and end the block (see page_state.ts).
  if (c.pageGen[H_GEN] !== c.pageGenSeen && c.pageSync()) c.breakLoop = true;
  return v;
}

function portOut(port: number, sz: number, v: number): void {
  c.io.ports.write(port, sz, sz === 4 ? v >>> 0 : v & (sz === 1 ? 0xff : 0xffff));
  if (c.io.control.stop !== null) c.breakLoop = true;
  if (c.pageGen[H_GEN] !== c.pageGenSeen && c.pageSync()) c.breakLoop = true;
}

// ---- One-byte opcodes ------------------------------------------------------------------------------

function exec1(b: number): void {
  if (b < 0x40 && (b & 7) < 6) {
    aluOp(b);
    return;
  }
  switch (b) {
    case 0x06:
    case 0x0e:
    case 0x16:
    case 0x1e:
      if (c.long64) c.ud();
      pushV(c.segSel[b >> 3]!, 0, osz);
      return;
    case 0x07:
    case 0x17:
    case 0x1f: {
      if (c.long64) c.ud();
      const v = c.peek(0, osz) & 0xffff;
      c.loadSeg(b >> 3, v);
      c.adjSp(osz);
      if (b === 0x17) c.shadow = true;
      return;
    }
    case 0x0f:
      c.ud(); // 0F is decoded as its own opcode range
      return;
    case 0x27:
    case 0x2f:
    case 0x37:
    case 0x3f:
      if (c.long64) c.ud();
      bcd(b);
      return;
    case 0x40:
    case 0x41:
    case 0x42:
    case 0x43:
    case 0x44:
    case 0x45:
    case 0x46:
    case 0x47:
    case 0x48:
    case 0x49:
    case 0x4a:
    case 0x4b:
    case 0x4c:
    case 0x4d:
    case 0x4e:
    case 0x4f: { // INC/DEC r (not in 64-bit mode: those are REX)
      const r = b & 7;
      setReg(r, osz, incdec(c, b >= 0x48, getReg(r, osz), osz), 0);
      return;
    }
    case 0x50:
    case 0x51:
    case 0x52:
    case 0x53:
    case 0x54:
    case 0x55:
    case 0x56:
    case 0x57: {
      const r = (b & 7) | ((rex & 1) << 3);
      const sz = stackOsz();
      const v = getReg(r, sz);
      pushV(v, c.rh, sz);
      return;
    }
    case 0x58:
    case 0x59:
    case 0x5a:
    case 0x5b:
    case 0x5c:
    case 0x5d:
    case 0x5e:
    case 0x5f: {
      const r = (b & 7) | ((rex & 1) << 3);
      const sz = stackOsz();
      const v = c.pop(sz);
      setReg(r, sz, v, c.rh);
      return;
    }
    case 0x60: { // PUSHA
      if (c.long64) c.ud();
      const sp = getReg(4, osz);
      for (let r = 0; r < 8; r++) pushV(r === 4 ? sp : getReg(r, osz), 0, osz);
      return;
    }
    case 0x61: { // POPA
      if (c.long64) c.ud();
      for (let r = 7; r >= 0; r--) {
        const v = c.pop(osz);
        if (r !== 4) setReg(r, osz, v, 0);
      }
      return;
    }
    case 0x63:
      if (c.long64) { // MOVSXD
        const v = readE(4);
        if (osz === 8) setReg(regf, 8, v, v >> 31);
        else setReg(regf, osz, v, 0);
        return;
      }
      arpl();
      return;
    case 0x68: {
      const sz = stackOsz();
      const v = imm;
      pushV(v, v >> 31, sz);
      return;
    }
    case 0x6a: {
      const sz = stackOsz();
      const v = (imm << 24) >> 24;
      pushV(v, v >> 31, sz);
      return;
    }
    case 0x69:
    case 0x6b: {
      const a = readE(osz);
      const ah = c.rh;
      const iv = b === 0x69 ? sext(imm, osz === 8 ? 4 : osz) : (imm << 24) >> 24;
      imul2(a, ah, iv, iv >> 31);
      return;
    }
    case 0x6c:
    case 0x6d:
    case 0x6e:
    case 0x6f:
      checkIo();
      stringOp(b);
      return;
    case 0x70:
    case 0x71:
    case 0x72:
    case 0x73:
    case 0x74:
    case 0x75:
    case 0x76:
    case 0x77:
    case 0x78:
    case 0x79:
    case 0x7a:
    case 0x7b:
    case 0x7c:
    case 0x7d:
    case 0x7e:
    case 0x7f: {
      if (c.cond(b & 15)) jumpRel((imm << 24) >> 24);
      return;
    }
    case 0x80:
    case 0x81:
    case 0x82:
    case 0x83: {
      if (b === 0x82 && c.long64) c.ud();
      const sz = b & 1 ? osz : 1;
      const op = (modrmByte >> 3) & 7;
      const iv = b === 0x81 ? imm : (imm << 24) >> 24;
      aluE(op, sz, iv, iv >> 31);
      return;
    }
    case 0x84:
    case 0x85: {
      const sz = b & 1 ? osz : 1;
      const a = readE(sz), ah = c.rh;
      const v = getReg(regf, sz);
      if (sz === 8) alu64(c, 4, a, ah, v, c.rh);
      else alu(c, 4, a, v, sz);
      return;
    }
    case 0x86:
    case 0x87: {
      const sz = b & 1 ? osz : 1;
      const a = readEW(sz), ah = c.rh;
      const v = getReg(regf, sz), vh = c.rh;
      writeE(sz, v, vh);
      setReg(regf, sz, a, ah);
      return;
    }
    case 0x88:
    case 0x89: {
      const sz = b & 1 ? osz : 1;
      const v = getReg(regf, sz);
      writeE(sz, v, c.rh);
      return;
    }
    case 0x8a:
    case 0x8b: {
      const sz = b & 1 ? osz : 1;
      const v = readE(sz);
      setReg(regf, sz, v, c.rh);
      return;
    }
    case 0x8c: { // MOV Ev, Sreg
      const s = regf & 7;
      if (s > 5) c.ud();
      if (rmReg >= 0) setReg(rmReg, osz === 2 ? 2 : osz, c.segSel[s]! & 0xffff, 0);
      else c.wr16(ea, c.segSel[s]!);
      return;
    }
    case 0x8d: // LEA
      if (rmReg >= 0) c.ud();
      setReg(regf, osz, eaLo, eaHi);
      return;
    case 0x8e: { // MOV Sreg, Ew
      const s = regf & 7;
      if (s === CS || s > 5) c.ud();
      c.loadSeg(s, readE(2));
      if (s === SS) c.shadow = true;
      return;
    }
    case 0x8f: { // POP Ev
      const sz = stackOsz();
      const v = c.peek(0, sz), vh = c.rh;
      c.adjSp(sz);
      try {
        if (rmReg < 0) computeEa(); // RSP-based addresses use the incremented value
        writeE(sz, v, vh);
      } catch (e) {
        c.adjSp(-sz);
        throw e;
      }
      return;
    }
    case 0x90:
      if (rex & 1) {
        xchgAx(8);
        return;
      }
      if (rep === 0xf3) c.breakLoop = true; // PAUSE: a good moment to look at the outside
      return;
    case 0x91:
    case 0x92:
    case 0x93:
    case 0x94:
    case 0x95:
    case 0x96:
    case 0x97:
      xchgAx(b & 7);
      return;
    case 0x98: // CBW/CWDE/CDQE
      if (osz === 2) setReg(0, 2, (c.lo[0]! << 24) >> 24, 0);
      else if (osz === 4) setReg(0, 4, (c.lo[0]! << 16) >> 16, 0);
      else c.hi[0] = c.lo[0]! >> 31;
      return;
    case 0x99: // CWD/CDQ/CQO
      if (osz === 2) setReg(2, 2, (c.lo[0]! << 16) >> 31, 0);
      else if (osz === 4) setReg(2, 4, c.lo[0]! >> 31, 0);
      else setReg(2, 8, c.hi[0]! >> 31, c.hi[0]! >> 31);
      return;
    case 0x9a: { // CALL far ptr16:16/32
      if (c.long64) c.ud();
      const off = imm;
      const sel = imm2;
      farCall(sel, osz === 2 ? off & 0xffff : off >>> 0, osz);
      return;
    }
    case 0x9b: // FWAIT
      if ((c.cr0 & 0xa) === 0xa) c.raise(NM);
      return;
    case 0x9c: { // PUSHF
      const sz = stackOsz();
      const f = c.getFlags() & ~(F_RF | F_VM);
      pushV(f, 0, sz);
      return;
    }
    case 0x9d: { // POPF
      const sz = stackOsz();
      const v = c.pop(sz);
      popf(v, sz);
      return;
    }
    case 0x9e: // SAHF
      c.materialize();
      c.flags = (c.flags & ~0xd5) | ((c.lo[0]! >> 8) & 0xd5);
      return;
    case 0x9f: // LAHF
      c.lo[0] = (c.lo[0]! & ~0xff00) | ((c.getFlags() & 0xd7 | 2) << 8);
      return;
    case 0xa0:
    case 0xa1:
    case 0xa2:
    case 0xa3: { // MOV moffs
      const sz = b & 1 ? osz : 1;
      let off: number;
      if (asz === 8) {
        off = canon(imm, imm2);
      } else off = asz === 4 ? imm >>> 0 : imm;
      const lin = linOf(segOv >= 0 ? segOv : DS, off);
      if (b < 0xa2) {
        const v = readMem(lin, sz);
        setReg(0, sz, v, c.rh);
      } else {
        const v = getReg(0, sz);
        writeMem(lin, sz, v, c.rh);
      }
      return;
    }
    case 0xa4:
    case 0xa5:
    case 0xa6:
    case 0xa7:
    case 0xaa:
    case 0xab:
    case 0xac:
    case 0xad:
    case 0xae:
    case 0xaf:
      stringOp(b);
      return;
    case 0xa8:
    case 0xa9: {
      const sz = b & 1 ? osz : 1;
      if (sz === 8) alu64(c, 4, c.lo[0]!, c.hi[0]!, imm, imm >> 31);
      else alu(c, 4, getReg(0, sz), imm, sz);
      return;
    }
    case 0xb0:
    case 0xb1:
    case 0xb2:
    case 0xb3:
    case 0xb4:
    case 0xb5:
    case 0xb6:
    case 0xb7:
      setReg((b & 7) | ((rex & 1) << 3), 1, imm, 0);
      return;
    case 0xb8:
    case 0xb9:
    case 0xba:
    case 0xbb:
    case 0xbc:
    case 0xbd:
    case 0xbe:
    case 0xbf: {
      const r = (b & 7) | ((rex & 1) << 3);
      if (osz === 8) {
        setReg(r, 8, imm, imm2);
      } else setReg(r, osz, imm, 0);
      return;
    }
    case 0xc0:
    case 0xc1:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
      const sz = b & 1 ? osz : 1;
      const op = (modrmByte >> 3) & 7;
      const cnt = b < 0xd0 ? imm : b < 0xd2 ? 1 : c.lo[1]! & 0xff;
      if (sz === 8) {
        const a = readEW(8);
        const r = shift64(c, op, a, c.rh, cnt & 0x3f);
        writeE(8, r, c.rh);
      } else {
        const a = readEW(sz);
        writeE(sz, shift(c, op, a, cnt & 0x1f, sz), 0);
      }
      return;
    }
    case 0xc2:
    case 0xc3: { // RET near
      const sz = stackOsz();
      const n = b === 0xc2 ? imm : 0;
      const v = c.peek(0, sz);
      setIp(v, c.rh, sz);
      c.adjSp(sz + n);
      return;
    }
    case 0xc4:
    case 0xc5: // LES/LDS (VEX in 64-bit mode: not implemented)
      if (c.long64) c.ud();
      loadFarPtr(b === 0xc4 ? ES : DS);
      return;
    case 0xc6:
    case 0xc7: {
      const sz = b & 1 ? osz : 1;
      if ((modrmByte & 0x38) !== 0) c.ud();
      writeE(sz, imm, imm >> 31);
      return;
    }
    case 0xc8:
      enter();
      return;
    case 0xc9: { // LEAVE
      const ssz = c.spSize();
      if (ssz === 8) {
        c.lo[4] = c.lo[5]!;
        c.hi[4] = c.hi[5]!;
      } else if (ssz === 4) c.lo[4] = c.lo[5]!;
      else c.lo[4] = (c.lo[4]! & ~0xffff) | (c.lo[5]! & 0xffff);
      const sz = stackOsz();
      const v = c.pop(sz);
      setReg(5, sz, v, c.rh);
      return;
    }
    case 0xca:
    case 0xcb:
      farRet(b === 0xca ? imm : 0);
      return;
    case 0xcc:
      softInt(3);
      return;
    case 0xcd:
      softInt(imm);
      return;
    case 0xce:
      if (c.long64) c.ud();
      if (c.of()) softInt(4);
      return;
    case 0xcf:
      iret();
      return;
    case 0xd4: { // AAM
      if (c.long64) c.ud();
      const base = imm;
      if (base === 0) c.raise(0);
      const al = c.lo[0]! & 0xff;
      const r = ((Math.floor(al / base) & 0xff) << 8) | (al % base);
      c.lo[0] = (c.lo[0]! & ~0xffff) | r;
      c.setArith(Cpu.szp(r & 0xff, 1));
      return;
    }
    case 0xd5: { // AAD
      if (c.long64) c.ud();
      const base = imm;
      const al = ((c.lo[0]! & 0xff) + ((c.lo[0]! >> 8) & 0xff) * base) & 0xff;
      c.lo[0] = (c.lo[0]! & ~0xffff) | al;
      c.setArith(Cpu.szp(al, 1));
      return;
    }
    case 0xd6: // SALC
      if (c.long64) c.ud();
      setReg(0, 1, c.cf() ? 0xff : 0, 0);
      return;
    case 0xd7: { // XLAT
      const off = getAReg(3) + (c.lo[0]! & 0xff);
      const o2 = asz === 2 ? off & 0xffff : asz === 4 ? off >>> 0 : off;
      setReg(0, 1, c.rd8(linOf(segOv >= 0 ? segOv : DS, o2)), 0);
      return;
    }
    case 0xd8:
    case 0xd9:
    case 0xda:
    case 0xdb:
    case 0xdc:
    case 0xdd:
    case 0xde:
    case 0xdf:
      if (c.cr0 & 0xc) c.raise(NM); // EM or TS
      execFpu(c, b, modrmByte, rmReg, ea);
      return;
    case 0xe0:
    case 0xe1:
    case 0xe2: { // LOOPNE/LOOPE/LOOP
      const rel = (imm << 24) >> 24;
      addAReg(1, -1);
      const cx = getAReg(1);
      let go = cx !== 0;
      if (b === 0xe0) go = go && !c.zf();
      else if (b === 0xe1) go = go && c.zf() !== 0;
      if (go) jumpRel(rel);
      return;
    }
    case 0xe3: {
      if (getAReg(1) === 0) jumpRel((imm << 24) >> 24);
      return;
    }
    case 0xe4:
    case 0xe5: {
      const port = imm;
      checkIo();
      const sz = b & 1 ? (osz === 2 ? 2 : 4) : 1;
      setReg(0, sz, portIn(port, sz), 0);
      return;
    }
    case 0xe6:
    case 0xe7: {
      const port = imm;
      checkIo();
      const sz = b & 1 ? (osz === 2 ? 2 : 4) : 1;
      portOut(port, sz, c.lo[0]!);
      return;
    }
    case 0xec:
    case 0xed: {
      checkIo();
      const sz = b & 1 ? (osz === 2 ? 2 : 4) : 1;
      setReg(0, sz, portIn(c.lo[2]! & 0xffff, sz), 0);
      return;
    }
    case 0xee:
    case 0xef: {
      checkIo();
      const sz = b & 1 ? (osz === 2 ? 2 : 4) : 1;
      portOut(c.lo[2]! & 0xffff, sz, c.lo[0]!);
      return;
    }
    case 0xe8: { // CALL rel
      const rel = imm;
      const sz = stackOsz();
      pushIp(sz);
      jumpRel(osz === 2 ? sext(rel, 2) : rel);
      return;
    }
    case 0xe9: {
      const rel = imm;
      jumpRel(osz === 2 ? sext(rel, 2) : rel);
      return;
    }
    case 0xea: { // JMP far ptr
      if (c.long64) c.ud();
      const off = imm;
      const sel = imm2;
      farJump(sel, osz === 2 ? off & 0xffff : off >>> 0);
      return;
    }
    case 0xeb:
      jumpRel((imm << 24) >> 24);
      return;
    case 0xf1: // INT1 (ICEBP)
      c.deliverChecked(1, -1, false, c.ip, 1);
      return;
    case 0xf4: // HLT
      requireCpl0();
      c.halted = true;
      c.breakLoop = true;
      return;
    case 0xf5:
      c.materialize();
      c.flags ^= F_CF;
      return;
    case 0xf6:
    case 0xf7:
      grp3(b & 1 ? osz : 1);
      return;
    case 0xf8:
      c.materialize();
      c.flags &= ~F_CF;
      return;
    case 0xf9:
      c.materialize();
      c.flags |= F_CF;
      return;
    case 0xfa: // CLI
      if ((c.cr0 & CR0_PE) && c.cpl > iopl()) c.gp(0);
      c.flags &= ~F_IF;
      return;
    case 0xfb: // STI
      if ((c.cr0 & CR0_PE) && c.cpl > iopl()) c.gp(0);
      if (!(c.flags & F_IF)) {
        c.flags |= F_IF;
        c.shadow = true;
        if (c.interruptWaits()) c.breakLoop = true;
      }
      return;
    case 0xfc:
      c.flags &= ~F_DF;
      return;
    case 0xfd:
      c.flags |= F_DF;
      return;
    case 0xfe: {
      const op = (modrmByte >> 3) & 7;
      if (op > 1) c.ud();
      writeE(1, incdec(c, op === 1, readEW(1), 1), 0);
      return;
    }
    case 0xff:
      grp5();
      return;
    default:
      c.ud();
  }
}

/** ALU ops 00-3F in forms Eb,Gb / Ev,Gv / Gb,Eb / Gv,Ev / AL,Ib / eAX,Iz. */
function aluOp(b: number): void {
  const op = b >> 3;
  const form = b & 7;
  const sz = form & 1 ? osz : 1;
  switch (form) {
    case 0:
    case 1: {
      const v = getReg(regf, sz);
      aluE(op, sz, v, c.rh);
      return;
    }
    case 2:
    case 3: {
      const v = readE(sz);
      const vh = c.rh;
      if (sz === 8) {
        const r = alu64(c, op, c.lo[regf]!, c.hi[regf]!, v, vh);
        if (op !== 7) setReg(regf, 8, r, c.rh);
      } else {
        const r = alu(c, op, getReg(regf, sz), v, sz);
        if (op !== 7) setReg(regf, sz, r, 0);
      }
      return;
    }
    default: {
      if (sz === 8) {
        const r = alu64(c, op, c.lo[0]!, c.hi[0]!, imm, imm >> 31);
        if (op !== 7) setReg(0, 8, r, c.rh);
      } else {
        const r = alu(c, op, getReg(0, sz), imm, sz);
        if (op !== 7) setReg(0, sz, r, 0);
      }
    }
  }
}

function xchgAx(r0: number): void {
  const r = r0 | ((rex & 1) << 3);
  const a = getReg(0, osz), ah = c.rh;
  const v = getReg(r, osz), vh = c.rh;
  setReg(0, osz, v, vh);
  setReg(r, osz, a, ah);
}

/** Two/three-operand IMUL into reg: a (E) × b, truncated; CF=OF on overflow. */
function imul2(a: number, ah: number, b: number, bh: number): void {
  if (osz === 8) {
    const l = imul64(c, a, ah, b, bh);
    setReg(regf, 8, l, c.rh);
    return;
  }
  if (osz === 4) {
    setReg(regf, 4, imul32(c, a, b), 0);
    return;
  }
  const p = sext(a, 2) * sext(b, 2);
  const r = p & 0xffff;
  const of = sext(r, 2) !== p ? 1 : 0;
  setReg(regf, 2, r, 0);
  mulFlags(c, of !== 0, Cpu.szp(r, 2));
}

function grp3(sz: number): void {
  const op = (modrmByte >> 3) & 7;
  switch (op) {
    case 0:
    case 1: { // TEST
      const a = readE(sz), ah = c.rh;
      if (sz === 8) alu64(c, 4, a, ah, imm, imm >> 31);
      else alu(c, 4, a, imm, sz);
      return;
    }
    case 2: { // NOT
      const a = readEW(sz);
      writeE(sz, ~a, ~c.rh);
      return;
    }
    case 3: { // NEG
      const a = readEW(sz);
      if (sz === 8) writeE(8, alu64(c, 5, 0, 0, a, c.rh), c.rh);
      else writeE(sz, alu(c, 5, 0, a, sz), 0);
      return;
    }
    case 4:
    case 5: { // MUL / IMUL (one operand)
      const s = op === 5;
      const v = readE(sz), vh = c.rh;
      let of: number;
      if (sz === 1) {
        const a = c.lo[0]! & 0xff;
        const p = s ? sext(a, 1) * sext(v, 1) : a * v;
        const r = p & 0xffff;
        setReg(0, 2, r, 0);
        of = s ? (sext(r & 0xff, 1) !== p ? 1 : 0) : (r >> 8 ? 1 : 0);
        mulFlags(c, of !== 0, Cpu.szp(r & 0xff, 1));
      } else if (sz === 2) {
        const a = c.lo[0]! & 0xffff;
        const p = s ? sext(a, 2) * sext(v, 2) : a * v;
        setReg(0, 2, p & 0xffff, 0);
        setReg(2, 2, (p >> 16) & 0xffff, 0);
        of = s ? (sext(p & 0xffff, 2) !== p ? 1 : 0) : ((p >>> 16) & 0xffff ? 1 : 0);
        mulFlags(c, of !== 0, Cpu.szp(p & 0xffff, 2));
      } else mulDivAx(c, op, sz as 4 | 8, v, vh);
      return;
    }
    default: { // DIV / IDIV
      const s = op === 7;
      const v = readE(sz), vh = c.rh;
      if (sz === 1) {
        const n = c.lo[0]! & 0xffff;
        if ((v & 0xff) === 0) c.raise(0);
        let q: number, r: number;
        if (s) {
          const nn = sext(n, 2), d = sext(v, 1);
          q = Math.trunc(nn / d);
          r = nn - q * d;
          if (q > 127 || q < -128) c.raise(0);
        } else {
          q = Math.floor(n / (v & 0xff));
          r = n % (v & 0xff);
          if (q > 0xff) c.raise(0);
        }
        c.lo[0] = (c.lo[0]! & ~0xffff) | (q & 0xff) | ((r & 0xff) << 8);
      } else if (sz === 2) {
        const n = ((c.lo[2]! & 0xffff) << 16 | (c.lo[0]! & 0xffff)) >>> 0;
        if ((v & 0xffff) === 0) c.raise(0);
        let q: number, r: number;
        if (s) {
          const nn = n | 0, d = sext(v, 2);
          q = Math.trunc(nn / d);
          r = nn - q * d;
          if (q > 32767 || q < -32768) c.raise(0);
        } else {
          q = Math.floor(n / (v & 0xffff));
          r = n % (v & 0xffff);
          if (q > 0xffff) c.raise(0);
        }
        setReg(0, 2, q, 0);
        setReg(2, 2, r, 0);
      } else {
        mulDivAx(c, op, sz as 4 | 8, v, vh);
        return;
      }
      // Every status flag is undefined after a division. AMD keeps CF and OF, clears SF, ZF
      // and PF and sets AF (measured); the Intel model leaves them all (unverified on silicon).
      if (!c.intel) {
        c.materialize();
        c.flags = (c.flags & ~(F_ARITH & ~(F_CF | F_OF))) | F_AF;
      }
    }
  }
}

function grp5(): void {
  const m = modrmByte;
  const op = (m >> 3) & 7;
  switch (op) {
    case 0:
    case 1: {
      if (osz === 8) {
        const a = readEW(8);
        const r = incdec64(c, op === 1, a, c.rh);
        writeE(8, r, c.rh);
      } else writeE(osz, incdec(c, op === 1, readEW(osz), osz), 0);
      return;
    }
    case 2: { // CALL near indirect
      const sz = c.long64 ? 8 : osz;
      const v = readE(sz), vh = c.rh;
      const target = sz === 8 ? canon(v, vh) : sz === 4 ? v >>> 0 : v & 0xffff;
      pushIp(sz);
      c.ip = target;
      return;
    }
    case 4: { // JMP near indirect
      const sz = c.long64 ? 8 : osz;
      const v = readE(sz);
      setIp(v, c.rh, sz);
      return;
    }
    case 3:
    case 5: { // CALL/JMP far m16:16/32/64
      if (rmReg >= 0) c.ud();
      const off = osz === 8
        ? canon(c.rd32(ea), c.rd32(ea + 4))
        : osz === 4
        ? c.rd32(ea) >>> 0
        : c.rd16(ea);
      const sel = c.rd16(c.wrapLin(ea + osz));
      if (op === 3) farCall(sel, off, osz);
      else farJump(sel, off);
      return;
    }
    case 6: { // PUSH Ev
      const sz = stackOsz();
      const v = readE(sz);
      pushV(v, c.rh, sz);
      return;
    }
    default:
      c.ud();
  }
}

function popf(v: number, sz: number): void {
  let m: number;
  if (!(c.cr0 & CR0_PE) || c.cpl === 0) {
    m = F_ARITH | F_TF | F_IF | F_DF | F_IOPL | F_NT | F_AC | F_ID;
  } else if (c.cpl <= iopl()) m = F_ARITH | F_TF | F_IF | F_DF | F_NT | F_AC | F_ID;
  else m = F_ARITH | F_TF | F_DF | F_NT | F_AC | F_ID;
  if (sz === 2) m &= 0xffff;
  c.setFlags(v, m);
}

// ---- String instructions ----------------------------------------------------------------------

function stringOp(b: number): void {
  const sz = b & 1 ? osz : 1;
  const delta = c.flags & F_DF ? -sz : sz;
  const srcSeg = segOv >= 0 ? segOv : DS;
  if (rep === 0) {
    stringOnce(b, sz, delta, srcSeg);
    return;
  }
  // REP: iterate; registers are updated every iteration so a fault restarts correctly.
  const bulk = delta > 0 && asz !== 2 && (b === 0xa4 || b === 0xa5 || b === 0xaa || b === 0xab);
  // A 32-bit-address REP with ECX = 0 runs no iteration. Intel still writes ECX, which clears
  // RCX[63:32], and for MOVS and STOS (its fast-string operations) also the index registers
  // they use, ESI and EDI; CMPS, SCAS and LODS leave theirs, AMD leaves all of them (each
  // seen by difftest against silicon).
  if (c.intel && asz === 4 && c.long64 && c.lo[1] === 0) {
    c.hi[1] = 0;
    if (b === 0xa4 || b === 0xa5) c.hi[6] = 0;
    if (b === 0xa4 || b === 0xa5 || b === 0xaa || b === 0xab) c.hi[7] = 0;
  }
  for (;;) {
    if (getAReg(1) === 0) return;
    if (bulk && repChunk(b, sz, srcSeg)) continue;
    stringOnce(b, sz, delta, srcSeg);
    addAReg(1, -1);
    if (b === 0xa6 || b === 0xa7 || b === 0xae || b === 0xaf) {
      const z = c.zf();
      if (rep === 0xf3 ? !z : z) return;
    }
    if (c.breakLoop) {
      // An I/O stop request: resume the REP later from this instruction.
      if (getAReg(1) !== 0) c.ip = c.startIp;
      return;
    }
  }
}

/**
 * REP MOVS/STOS fast path: copies or fills as many elements as fit in the current source and
 * destination pages with one `copyWithin`/`fill`, then advances the registers as the elements
 * would have. Returns false (do one element the slow way) for MMIO, page-straddling elements,
 * overlapping forward copies (whose element-wise result differs from memmove), or short runs.
 */
function repChunk(b: number, sz: number, srcSeg: number): boolean {
  const user = c.cpl === 3;
  const dLin = linOf(ES, getAReg(7));
  const dPage = dLin & 0xfff;
  if (dPage + sz > 4096) return false;
  let n = Math.min(getAReg(1), Math.floor((4096 - dPage) / sz));
  const movs = b < 0xa6;
  let sOff = 0;
  if (movs) {
    const sLin = linOf(srcSeg, getAReg(6));
    const sPage = sLin & 0xfff;
    if (sPage + sz > 4096) return false;
    n = Math.min(n, Math.floor((4096 - sPage) / sz));
    if (n < 2) return false;
    sOff = c.tlbFill(sLin, ACC_READ, user);
    if (sOff < 0) return false;
  } else if (n < 2) return false;
  const dOff = c.tlbFill(dLin, ACC_WRITE, user);
  if (dOff < 0) return false;
  const len = n * sz;
  const page = Math.floor(dOff / 4096);
  if (c.codePages[page] !== 0) c.codeWritten(page);
  if (movs) {
    if (sOff < dOff && dOff < sOff + len) return false;
    c.bytes.copyWithin(dOff, sOff, sOff + len);
    addAReg(6, len);
  } else if (sz === 1) {
    c.bytes.fill(c.lo[0]! & 0xff, dOff, dOff + len);
  } else {
    const v = c.lo[0]!, vh = c.hi[0]!;
    for (let p = dOff; p < dOff + len; p += sz) {
      if (sz === 2) c.dv.setUint16(p, v, true);
      else {
        c.dv.setInt32(p, v, true);
        if (sz === 8) c.dv.setInt32(p + 4, vh, true);
      }
    }
  }
  addAReg(7, len);
  addAReg(1, -n);
  return true;
}

function stringOnce(b: number, sz: number, delta: number, srcSeg: number): void {
  switch (b) {
    case 0xa4:
    case 0xa5: { // MOVS
      const v = readMem(linOf(srcSeg, getAReg(6)), sz);
      writeMem(linOf(ES, getAReg(7)), sz, v, c.rh);
      addAReg(6, delta);
      addAReg(7, delta);
      return;
    }
    case 0xa6:
    case 0xa7: { // CMPS
      const a = readMem(linOf(srcSeg, getAReg(6)), sz), ah = c.rh;
      const v = readMem(linOf(ES, getAReg(7)), sz);
      if (sz === 8) alu64(c, 7, a, ah, v, c.rh);
      else alu(c, 7, a, v, sz);
      addAReg(6, delta);
      addAReg(7, delta);
      return;
    }
    case 0xaa:
    case 0xab: { // STOS
      const v = getReg(0, sz);
      writeMem(linOf(ES, getAReg(7)), sz, v, c.rh);
      addAReg(7, delta);
      return;
    }
    case 0xac:
    case 0xad: { // LODS
      const v = readMem(linOf(srcSeg, getAReg(6)), sz);
      setReg(0, sz, v, c.rh);
      addAReg(6, delta);
      return;
    }
    case 0xae:
    case 0xaf: { // SCAS
      const a = getReg(0, sz), ah = c.rh;
      const v = readMem(linOf(ES, getAReg(7)), sz);
      if (sz === 8) alu64(c, 7, a, ah, v, c.rh);
      else alu(c, 7, a, v, sz);
      addAReg(7, delta);
      return;
    }
    case 0x6c:
    case 0x6d: { // INS
      const isz = sz === 8 ? 4 : sz;
      const lin = linOf(ES, getAReg(7));
      c.probeWrite(lin, isz);
      writeMem(lin, isz, portIn(c.lo[2]! & 0xffff, isz), 0);
      addAReg(7, c.flags & F_DF ? -isz : isz);
      return;
    }
    default: { // OUTS
      const isz = sz === 8 ? 4 : sz;
      const v = readMem(linOf(srcSeg, getAReg(6)), isz);
      portOut(c.lo[2]! & 0xffff, isz, v);
      addAReg(6, c.flags & F_DF ? -isz : isz);
    }
  }
}

// ---- Far transfers, interrupts, IRET -------------------------------------------------------------

function protectedMode(): boolean {
  return (c.cr0 & CR0_PE) !== 0 && !(c.flags & F_VM);
}

function checkFarTarget(sel: number): void {
  // Call gates, task gates and TSS targets are not implemented.
  if ((sel & 0xfffc) === 0) c.gp(0);
  c.readDescriptor(sel);
  if (!((c.descHi >> 12) & 1)) {
    throw new UnsupportedError(
      `far transfers through system descriptors (selector 0x${sel.toString(16)}, ` +
        `type ${(c.descHi >> 8) & 0xf}): call gates and task switches`,
    );
  }
}

function farJump(sel: number, off: number): void {
  if (!protectedMode()) {
    c.loadSeg(CS, sel);
    c.ip = off;
    return;
  }
  checkFarTarget(sel);
  c.loadCs(sel, c.cpl);
  c.ip = off;
}

function farCall(sel: number, off: number, sz: number): void {
  const oldCs = c.segSel[CS]!;
  const oldIp = c.ip;
  if (!protectedMode()) {
    pushV(oldCs, 0, sz);
    pushV(oldIp, 0, sz);
    c.loadSeg(CS, sel);
    c.ip = off;
    return;
  }
  checkFarTarget(sel);
  // Push first (faults leave CS unchanged), then load CS.
  const spLo = c.lo[4]!, spHi = c.hi[4]!;
  pushV(oldCs, 0, sz);
  if (sz === 8) pushV(oldIp | 0, Math.floor(oldIp / TWO32) | 0, 8);
  else pushV(oldIp, 0, sz);
  try {
    c.loadCs(sel, c.cpl);
  } catch (e) {
    c.lo[4] = spLo;
    c.hi[4] = spHi;
    throw e;
  }
  c.ip = off;
}

function farRet(n: number): void {
  const sz = osz;
  const ip = c.peek(0, sz), iph = c.rh;
  const sel = c.peek(sz, sz) & 0xffff;
  if (!protectedMode()) {
    c.loadSeg(CS, sel);
    setIp(ip, iph, sz);
    c.adjSp(2 * sz + n);
    return;
  }
  const rpl = sel & 3;
  if (rpl < c.cpl) c.gp(sel & 0xfffc);
  if (rpl === c.cpl) {
    checkFarTarget(sel);
    c.loadCs(sel, c.cpl);
    setIp(ip, iph, sz);
    c.adjSp(2 * sz + n);
    return;
  }
  // Return to an outer privilege level: also pop SS:rSP.
  const sp = c.peek(2 * sz + n, sz), sph = c.rh;
  const ss = c.peek(3 * sz + n, sz) & 0xffff;
  checkFarTarget(sel);
  c.loadCs(sel, rpl);
  setIp(ip, iph, sz);
  loadSsForReturn(ss, sp, sph, sz);
  c.adjSp(n);
  nullDataSegs();
}

function loadSsForReturn(ss: number, sp: number, sph: number, sz: number): void {
  if (c.long64 && (ss & 0xfffc) === 0) {
    c.segSel[SS] = ss;
    c.segBase[SS] = 0;
    c.segLimit[SS] = 0;
    c.segAttr[SS] = 0x10000 | (c.cpl << 5);
    c.updateMode();
  } else c.loadSeg(SS, ss);
  if (sz === 8) {
    c.lo[4] = sp;
    c.hi[4] = sph;
  } else if (sz === 4 || c.stack32) {
    c.lo[4] = sz === 4 ? sp : sp & 0xffff;
    if (c.long64) c.hi[4] = 0;
  } else c.lo[4] = (c.lo[4]! & ~0xffff) | (sp & 0xffff);
}

/** After a return to an outer ring, data segments the new CPL may not use become null. */
function nullDataSegs(): void {
  for (const s of [ES, DS, FS, GS]) {
    const a = c.segAttr[s]!;
    const dpl = (a >> 5) & 3;
    const conformingCode = (a & 0xc) === 0xc;
    if ((a & 0x10000) || (!conformingCode && dpl < c.cpl)) {
      if ((c.segSel[s]! & 0xfffc) !== 0 || !(a & 0x10000)) {
        c.segSel[s] = 0;
        c.segAttr[s] = 0x10000;
        if (!c.long64 || s < FS) c.segBase[s] = c.long64 ? c.segBase[s]! : 0;
      }
    }
  }
}

function softInt(vec: number): void {
  if (c.flags & F_VM) c.gp(0);
  c.deliverChecked(vec, -1, true, c.ip, 0);
}

function iret(): void {
  const sz = osz;
  if (!protectedMode()) {
    const ip = c.peek(0, sz);
    const cs = c.peek(sz, sz) & 0xffff;
    const fl = c.peek(2 * sz, sz);
    c.loadSeg(CS, cs);
    c.ip = sz === 4 ? ip >>> 0 : ip & 0xffff;
    c.adjSp(3 * sz);
    c.setFlags(
      fl,
      sz === 4 ? F_ARITH | F_TF | F_IF | F_DF | F_IOPL | F_NT | F_AC | F_ID : 0xffff & ~0x2a,
    );
    return;
  }
  if (c.flags & F_NT && !(c.efer & EFER_LMA)) {
    throw new UnsupportedError("IRET with NT set (task return)");
  }
  const ip = c.peek(0, sz), iph = c.rh;
  const cs = c.peek(sz, sz) & 0xffff;
  const fl = c.peek(2 * sz, sz);
  const rpl = cs & 3;
  if (rpl < c.cpl) c.gp(cs & 0xfffc);
  const oldCpl = c.cpl;
  const longRet = c.long64;
  let sp = 0, sph = 0, ss = 0;
  const outer = rpl > c.cpl || longRet;
  if (outer) {
    sp = c.peek(3 * sz, sz);
    sph = c.rh;
    ss = c.peek(4 * sz, sz) & 0xffff;
  }
  if (!(c.efer & EFER_LMA) && (fl & F_VM) && sz === 4 && oldCpl === 0) {
    throw new UnsupportedError("IRET to virtual-8086 mode");
  }
  checkFarTarget(cs);
  c.loadCs(cs, rpl);
  setIp(ip, iph, sz);
  // Flags: what may change depends on the privilege the IRET ran at.
  let m = F_ARITH | F_TF | F_DF | F_NT | F_RF | F_AC | F_ID;
  if (oldCpl === 0) m |= F_IF | F_IOPL;
  else if (oldCpl <= ((c.flags >> 12) & 3)) m |= F_IF;
  if (sz === 2) m &= 0xffff;
  if (outer) {
    loadSsForReturn(ss, sp, sph, sz);
    if (rpl > oldCpl) nullDataSegs();
  } else c.adjSp(3 * sz);
  c.setFlags(fl, m);
  c.flags &= ~F_RF;
  c.shadow = false;
}

// ---- Misc one-byte helpers -----------------------------------------------------------------------

function loadFarPtr(seg: number): void {
  if (rmReg >= 0) c.ud();
  const off = osz === 8 ? c.rd64(ea) : osz === 4 ? c.rd32(ea) : c.rd16(ea);
  const offH = c.rh;
  const sel = c.rd16(c.wrapLin(ea + osz));
  c.loadSeg(seg, sel);
  setReg(regf, osz, off, offH);
  if (seg === SS) c.shadow = true;
}

function enter(): void {
  const size = imm;
  const level = imm2 & 31;
  const sz = stackOsz();
  const bp = getReg(5, sz), bph = c.rh;
  pushV(bp, bph, sz);
  const frameLo = c.lo[4]!, frameHi = c.hi[4]!;
  if (level > 0) {
    let bpOff = 0;
    for (let i = 1; i < level; i++) {
      bpOff -= sz;
      const lin = c.long64
        ? (c.lo[5]! >>> 0) + c.hi[5]! * TWO32 + bpOff
        : (c.segBase[SS]! + ((c.stack32 ? c.lo[5]! : c.lo[5]! & 0xffff) + bpOff)) >>> 0;
      const v = readMem(lin, sz);
      pushV(v, c.rh, sz);
    }
    pushV(frameLo, frameHi, sz);
  }
  if (sz === 8) {
    c.lo[5] = frameLo;
    c.hi[5] = frameHi;
  } else setReg(5, sz, frameLo, 0);
  c.adjSp(-size);
}

function arpl(): void {
  if (!protectedMode()) c.ud();
  const dst = readEW(2);
  const src = getReg(regf, 2);
  c.materialize();
  if ((dst & 3) < (src & 3)) {
    writeE(2, (dst & ~3) | (src & 3), 0);
    c.flags |= F_ZF;
  } else c.flags &= ~F_ZF;
}

function bcd(b: number): void {
  c.materialize();
  let al = c.lo[0]! & 0xff;
  let cf = c.flags & F_CF;
  let af = (c.flags >> 4) & 1;
  switch (b) {
    case 0x27: { // DAA
      const oldAl = al, oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        al += 6;
        cf = oldCf | (al > 0xff ? 1 : 0);
        al &= 0xff;
        af = 1;
      } else af = 0;
      if (oldAl > 0x99 || oldCf) {
        al = (al + 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x2f: { // DAS
      const oldAl = al, oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        cf = oldCf | (al < 6 ? 1 : 0);
        al = (al - 6) & 0xff;
        af = 1;
      } else af = 0;
      if (oldAl > 0x99 || oldCf) {
        al = (al - 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x37:
    case 0x3f: { // AAA / AAS
      let ax = c.lo[0]! & 0xffff;
      if ((al & 0xf) > 9 || af) {
        ax = b === 0x37 ? ax + 0x106 : ax - 0x106;
        af = cf = 1;
      } else af = cf = 0;
      ax &= 0xff0f;
      c.lo[0] = (c.lo[0]! & ~0xffff) | (ax & 0xffff);
      c.flags = (c.flags & ~(0x1 | 0x10)) | cf | (af << 4);
      return;
    }
  }
  c.lo[0] = (c.lo[0]! & ~0xff) | al;
  c.setArith(Cpu.szp(al, 1) | cf | (af << 4));
}

// ---- Two-byte opcodes --------------------------------------------------------------------------

function exec0f(b: number): void {
  if (b >= 0x80 && b <= 0x8f) { // Jcc rel16/32
    const rel = c.long64 || osz === 4 ? imm : sext(imm, 2);
    if (c.cond(b & 15)) jumpRel(rel);
    return;
  }
  if (b >= 0x40 && b <= 0x4f) { // CMOVcc
    const v = readE(osz), vh = c.rh;
    if (c.cond(b & 15)) setReg(regf, osz, v, vh);
    else if (osz === 4) c.hi[regf] = 0;
    return;
  }
  if (b >= 0x90 && b <= 0x9f) { // SETcc
    writeE(1, c.cond(b & 15) ? 1 : 0, 0);
    return;
  }
  switch (b) {
    case 0x00:
      grp6();
      return;
    case 0x01:
      grp7();
      return;
    case 0x02:
    case 0x03:
      larLsl(b === 0x02);
      return;
    case 0x05:
      syscall();
      return;
    case 0x06: // CLTS
      requireCpl0();
      c.cr0 &= ~8;
      return;
    case 0x07:
      sysret();
      return;
    case 0x08:
    case 0x09: // INVD / WBINVD
      requireCpl0();
      return;
    case 0x0b:
      c.ud();
      return;
    case 0x77: // EMMS: the x87 tags all become empty (Linux uses it in its AMD FXSAVE-leak fix)
      if (c.cr0 & 4) c.ud();
      if (c.cr0 & 8) c.raise(NM);
      c.x87.valid = 0;
      return;
    case 0x0d: // PREFETCHW (hint)
    case 0x18:
    case 0x19:
    case 0x1a:
    case 0x1b:
    case 0x1c:
    case 0x1d:
    case 0x1e:
    case 0x1f: // NOP Ev / hints
      return;
    case 0x20:
    case 0x22: {
      requireCpl0();
      const r = rmReg >= 0 ? rmReg : (modrmByte & 7) | ((rex & 1) << 3);
      const crn = regf;
      if (b === 0x20) {
        let v: number;
        switch (crn) {
          case 0:
            v = c.cr0;
            break;
          case 2:
            v = c.cr2;
            break;
          case 3:
            v = c.cr3;
            break;
          case 4:
            v = c.cr4;
            break;
          case 8:
            v = c.cr8;
            break;
          default:
            return c.ud();
        }
        if (c.long64) setReg(r, 8, v | 0, Math.floor(v / TWO32) | 0);
        else setReg(r, 4, v | 0, 0);
      } else {
        const l = c.lo[r]!, h = c.long64 ? c.hi[r]! : 0;
        switch (crn) {
          case 0:
            if (h !== 0) c.gp(0);
            c.setCr0(l >>> 0);
            c.breakLoop = true;
            break;
          case 2:
            c.cr2 = c.long64 ? h * TWO32 + (l >>> 0) : l >>> 0;
            break;
          case 3:
            c.setCr3((h & 0xfffff) * TWO32 + (l >>> 0));
            break;
          case 4:
            if (h !== 0) c.gp(0);
            c.setCr4(l >>> 0);
            break;
          case 8:
            c.cr8 = l & 15;
            break;
          default:
            c.ud();
        }
      }
      return;
    }
    case 0x21:
    case 0x23: { // MOV DRn (stored, no debug behaviour; DR4/DR5 alias DR6/DR7 as with CR4.DE=0)
      requireCpl0();
      const r = rmReg >= 0 ? rmReg : (modrmByte & 7) | ((rex & 1) << 3);
      const n = regf & 4 ? (regf & 7) | 2 : regf & 7;
      if (b === 0x21) setReg(r, c.long64 ? 8 : 4, c.dr[n * 2]!, c.dr[n * 2 + 1]!);
      else {
        c.dr[n * 2] = c.lo[r]!;
        c.dr[n * 2 + 1] = c.long64 ? c.hi[r]! : 0;
      }
      return;
    }
    case 0x30: { // WRMSR
      requireCpl0();
      const v = (BigInt(c.lo[2]! >>> 0) << 32n) | BigInt(c.lo[0]! >>> 0);
      c.wrmsr(c.lo[1]! >>> 0, v);
      return;
    }
    case 0x31: { // RDTSC
      if ((c.cr4 & 4) && c.cpl !== 0 && (c.cr0 & CR0_PE)) c.gp(0);
      const t = c.readTsc();
      setReg(0, 4, t | 0, 0);
      setReg(2, 4, Math.floor(t / TWO32) | 0, 0);
      return;
    }
    case 0x32: { // RDMSR
      requireCpl0();
      const v = c.rdmsr(c.lo[1]! >>> 0);
      setReg(0, 4, Number(v & 0xffff_ffffn) | 0, 0);
      setReg(2, 4, Number((v >> 32n) & 0xffff_ffffn) | 0, 0);
      return;
    }
    case 0xa0:
    case 0xa8: // PUSH FS/GS
      pushV(c.segSel[b === 0xa0 ? FS : GS]!, 0, stackOsz());
      return;
    case 0xa1:
    case 0xa9: { // POP FS/GS
      const sz = stackOsz();
      const v = c.peek(0, sz) & 0xffff;
      const seg = b === 0xa1 ? FS : GS;
      const base = c.segBase[seg]!;
      c.loadSeg(seg, v);
      if (c.long64 && (v & 0xfffc) === 0) c.segBase[seg] = base;
      c.adjSp(sz);
      return;
    }
    case 0xa2: // CPUID
      cpuid(c.lo[0]!, c.lo[1]!, 0);
      setReg(0, 4, cpuidOut[0]!, 0);
      setReg(3, 4, cpuidOut[1]!, 0);
      setReg(1, 4, cpuidOut[2]!, 0);
      setReg(2, 4, cpuidOut[3]!, 0);
      return;
    case 0xa3:
    case 0xab:
    case 0xb3:
    case 0xbb:
      bitOp(b === 0xa3 ? 0 : b === 0xab ? 1 : b === 0xb3 ? 2 : 3, false);
      return;
    case 0xba: {
      const m = modrmByte;
      const op = (m >> 3) & 7;
      if (op < 4) c.ud();
      bitOp(op - 4, true);
      return;
    }
    case 0xa4:
    case 0xa5:
    case 0xac:
    case 0xad:
      shiftDouble(b);
      return;
    case 0xae:
      grp15();
      return;
    case 0xaf: {
      const v = readE(osz), vh = c.rh;
      const a = getReg(regf, osz), ah = c.rh;
      imul2(a, ah, v, vh);
      return;
    }
    case 0xb0:
    case 0xb1: { // CMPXCHG
      const sz = b & 1 ? osz : 1;
      const d = readEW(sz), dh = c.rh;
      const acc = getReg(0, sz), acch = c.rh;
      if (sz === 8) alu64(c, 7, acc, acch, d, dh);
      else alu(c, 7, acc, d, sz);
      if (c.zf()) {
        const s = getReg(regf, sz);
        writeE(sz, s, c.rh);
      } else {
        if (rmReg < 0) writeE(sz, d, dh); // the destination is always written
        setReg(0, sz, d, dh);
      }
      return;
    }
    case 0xb2:
      loadFarPtr(SS);
      return;
    case 0xb4:
      loadFarPtr(FS);
      return;
    case 0xb5:
      loadFarPtr(GS);
      return;
    case 0xb6:
    case 0xb7:
    case 0xbe:
    case 0xbf: { // MOVZX / MOVSX
      const ssz = b & 1 ? 2 : 1;
      let v = readE(ssz);
      if (b >= 0xbe) {
        v = sext(v, ssz);
        setReg(regf, osz, osz === 2 ? v & 0xffff : v, v >> 31);
      } else setReg(regf, osz, v, 0);
      return;
    }
    case 0xbc:
    case 0xbd: { // BSF / BSR (TZCNT/LZCNT are not advertised: F3 is ignored)
      const v = readE(osz), vh = osz === 8 ? c.rh : 0;
      // Undefined flags: CF, OF, SF, AF clear, PF from the index (measured on AMD; the Intel
      // model does the same, unverified on silicon).
      if ((v | vh) === 0 || (osz === 2 && (v & 0xffff) === 0)) {
        // The destination is undefined: AMD leaves it; Intel writes it back unchanged, which
        // zero-extends a 32-bit register (as Linux's bitops.h records from Intel).
        c.setArith(F_ZF | F_PF);
        if (c.intel && osz === 4) setReg(regf, 4, c.lo[regf]!, 0);
        return;
      }
      let idx: number;
      const lo = osz === 2 ? v & 0xffff : v;
      if (b === 0xbc) {
        idx = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 32 + 31 - Math.clz32(vh & -vh);
      } else {
        idx = vh !== 0 ? 63 - Math.clz32(vh) : 31 - Math.clz32(lo);
      }
      c.setArith(Cpu.szp(idx, 1) & F_PF);
      setReg(regf, osz, idx, 0);
      return;
    }
    case 0xc0:
    case 0xc1: { // XADD
      const sz = b & 1 ? osz : 1;
      const d = readEW(sz), dh = c.rh;
      const s = getReg(regf, sz), sh = c.rh;
      if (sz === 8) {
        const r = alu64(c, 0, d, dh, s, sh);
        const rh = c.rh;
        setReg(regf, 8, d, dh);
        writeE(8, r, rh);
      } else {
        const r = alu(c, 0, d, s, sz);
        setReg(regf, sz, d, 0);
        writeE(sz, r, 0);
      }
      return;
    }
    case 0xc7:
      grp9();
      return;
    case 0xc8:
    case 0xc9:
    case 0xca:
    case 0xcb:
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: { // BSWAP
      const r = (b & 7) | ((rex & 1) << 3);
      const sw = (x: number) =>
        ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
      if (osz === 8) {
        const l = c.lo[r]!, h = c.hi[r]!;
        c.lo[r] = sw(h);
        c.hi[r] = sw(l);
      } else if (osz === 4) setReg(r, 4, sw(c.lo[r]!), 0);
      else setReg(r, 2, 0, 0); // undefined for 16-bit; zero as real CPUs do
      return;
    }
    default:
      if (execSse(c, b, opPrefix, modrmByte, regf, rmReg, ea, imm, osz)) return;
      c.ud();
  }
}

function grp6(): void {
  const op = regf & 7;
  if (!protectedMode()) c.ud();
  switch (op) {
    case 0: // SLDT
      writeE(rmReg >= 0 ? osz : 2, c.segSel[LDTR]!, 0);
      return;
    case 1: // STR
      writeE(rmReg >= 0 ? osz : 2, c.segSel[TR]!, 0);
      return;
    case 2: { // LLDT
      requireCpl0();
      const sel = readE(2);
      if ((sel & 0xfffc) === 0) {
        c.segSel[LDTR] = sel;
        c.segAttr[LDTR] = 0x10000;
        return;
      }
      if (sel & 4) c.gp(sel & 0xfffc);
      c.readDescriptor(sel);
      if (((c.descHi >> 8) & 0x1f) !== 2) c.gp(sel & 0xfffc);
      if (!(c.descHi & 0x8000)) c.raise(11, sel & 0xfffc);
      c.loadFromDescriptor(LDTR, sel);
      if (c.efer & EFER_LMA) c.segBase[LDTR] = c.segBase[LDTR]! + upperBase(sel);
      return;
    }
    case 3: { // LTR
      requireCpl0();
      const sel = readE(2);
      if ((sel & 0xfffc) === 0 || (sel & 4)) c.gp(sel & 0xfffc);
      c.readDescriptor(sel);
      const type = (c.descHi >> 8) & 0x1f;
      if (type !== 9 && type !== 1) c.gp(sel & 0xfffc);
      if (!(c.descHi & 0x8000)) c.raise(11, sel & 0xfffc);
      c.loadFromDescriptor(TR, sel);
      if (c.efer & EFER_LMA) c.segBase[TR] = c.segBase[TR]! + upperBase(sel);
      // Mark busy.
      c.descHi |= 0x200;
      c.sysWr32(c.descAddr + 4, c.descHi);
      c.segAttr[TR] = c.segAttr[TR]! | 2;
      return;
    }
    case 4:
    case 5: { // VERR / VERW
      const sel = readE(2);
      c.materialize();
      let ok = false;
      if ((sel & 0xfffc) !== 0) {
        try {
          c.readDescriptor(sel);
          const hi = c.descHi;
          const type = (hi >> 8) & 0xf;
          const dpl = (hi >> 13) & 3;
          const s = (hi >> 12) & 1;
          const conf = (type & 0xc) === 0xc;
          const privOk = conf || (dpl >= c.cpl && dpl >= (sel & 3));
          ok = s === 1 && privOk &&
            (op === 4 ? !(type & 8) || (type & 2) !== 0 : !(type & 8) && (type & 2) !== 0);
        } catch (e) {
          if (e !== c.constructor && (e as { fault?: boolean }).fault !== true) throw e;
        }
      }
      c.flags = ok ? c.flags | F_ZF : c.flags & ~F_ZF;
      return;
    }
    default:
      c.ud();
  }
}

/** Bits 32..63 of a 16-byte system descriptor's base, as a number to add. */
function upperBase(sel: number): number {
  const h = c.sysRd32(c.descAddr + 8);
  void sel;
  return h * TWO32;
}

function grp7(): void {
  const m = modrmByte;
  if ((m >> 6) === 3) {
    switch (m) {
      case 0xf8: // SWAPGS
        if (!c.long64) c.ud();
        requireCpl0();
        {
          const t = c.segBase[GS]!;
          c.segBase[GS] = c.kernelGsBase;
          c.kernelGsBase = t;
        }
        return;
      case 0xca: // CLAC
      case 0xcb: // STAC
        c.ud();
        return;
      default:
        if ((m & 0xf8) === 0xe0) { // SMSW r
          setReg(
            (m & 7) | ((rex & 1) << 3),
            osz,
            c.cr0 & 0xffff | (osz > 2 ? c.cr0 & ~0xffff : 0),
            0,
          );
          return;
        }
        if ((m & 0xf8) === 0xf0) { // LMSW r
          requireCpl0();
          lmsw(c.lo[(m & 7) | ((rex & 1) << 3)]!);
          return;
        }
        c.ud();
    }
    return;
  }
  const op = regf & 7;
  const limSz = 2;
  switch (op) {
    case 0:
    case 1: { // SGDT / SIDT
      const base = op === 0 ? c.gdtBase : c.idtBase;
      const limit = op === 0 ? c.gdtLimit : c.idtLimit;
      c.wr16(ea, limit);
      if (c.long64) c.wr64(c.wrapLin(ea + limSz), base | 0, Math.floor(base / TWO32) | 0);
      else c.wr32(c.wrapLin(ea + limSz), osz === 2 ? base & 0xffffff : base);
      return;
    }
    case 2:
    case 3: { // LGDT / LIDT
      requireCpl0();
      const limit = c.rd16(ea);
      let base: number;
      if (c.long64) {
        const l = c.rd32(c.wrapLin(ea + 2)), h = c.rd32(c.wrapLin(ea + 6));
        base = canon(l, h);
      } else {
        base = c.rd32(c.wrapLin(ea + 2)) >>> 0;
        if (osz === 2) base &= 0xffffff;
      }
      if (op === 2) {
        c.gdtBase = base;
        c.gdtLimit = limit;
      } else {
        c.idtBase = base;
        c.idtLimit = limit;
      }
      return;
    }
    case 4: // SMSW m16
      c.wr16(ea, c.cr0 & 0xffff);
      return;
    case 6: // LMSW
      requireCpl0();
      lmsw(readE(2));
      return;
    case 7: // INVLPG
      requireCpl0();
      c.invlpg(ea);
      return;
    default:
      c.ud();
  }
}

function lmsw(v: number): void {
  // LMSW changes PE (set only), MP, EM, TS.
  const nv = (c.cr0 & ~0xe) | (v & 0xf) | (c.cr0 & 1);
  c.setCr0(nv >>> 0);
}

function larLsl(lar: boolean): void {
  if (!protectedMode()) c.ud();
  const sel = readE(2);
  c.materialize();
  let ok = false;
  let v = 0;
  if ((sel & 0xfffc) !== 0) {
    try {
      c.readDescriptor(sel);
      const hi = c.descHi;
      const type = (hi >> 8) & 0xf;
      const s = (hi >> 12) & 1;
      const dpl = (hi >> 13) & 3;
      const conf = s && (type & 0xc) === 0xc;
      const sysOk = s === 1 || [1, 2, 3, 9, 11].includes(type) ||
        (lar && [4, 5, 12].includes(type));
      ok = sysOk && (conf || (dpl >= c.cpl && dpl >= (sel & 3)));
      if (lar) v = hi & 0x00f0ff00;
      else {
        v = (c.descLo & 0xffff) | (hi & 0xf0000);
        if (hi & 0x800000) v = (v * 4096 + 0xfff) | 0;
      }
    } catch (e) {
      if ((e as { fault?: boolean }).fault !== true) throw e;
    }
  }
  if (ok) {
    c.flags |= F_ZF;
    setReg(regf, osz, v, 0);
  } else c.flags &= ~F_ZF;
}

function syscall(): void {
  if (!(c.efer & EFER_SCE) || !(c.efer & EFER_LMA)) c.ud();
  const rflags = c.getFlags() & ~F_RF;
  const next = c.ip;
  // RCX = next RIP, R11 = RFLAGS (AMD APM Vol. 3, SYSCALL).
  if (c.long64) setReg(1, 8, next | 0, Math.floor(next / TWO32) | 0);
  else setReg(1, 8, next | 0, 0);
  setReg(11, 8, rflags, 0);
  const sel = (c.starHi & 0xffff) & 0xfffc;
  const wasLong = c.long64;
  c.segSel[CS] = sel;
  c.segBase[CS] = 0;
  c.segLimit[CS] = 0xffffffff;
  c.segAttr[CS] = 0xa09b & 0xf0ff | 0x2000; // present, DPL0, code, L=1, G=1
  c.segAttr[CS] = 0x9b | 0x2000 | 0x8000;
  c.segSel[SS] = sel + 8;
  c.segBase[SS] = 0;
  c.segLimit[SS] = 0xffffffff;
  c.segAttr[SS] = 0x93 | 0x4000 | 0x8000;
  c.cpl = 0;
  c.setFlags(0, c.sfmask | F_RF);
  c.flags &= ~(c.sfmask | F_RF);
  c.updateMode();
  c.ip = wasLong ? c.lstar : c.cstar;
}

function sysret(): void {
  if (!(c.efer & EFER_SCE) || !(c.efer & EFER_LMA)) c.ud();
  if (c.cpl !== 0 || !(c.cr0 & CR0_PE)) c.gp(0);
  const base = (c.starHi >>> 16) & 0xffff;
  const to64 = osz === 8;
  let target: number;
  if (to64) target = canon(c.lo[1]!, c.hi[1]!);
  else target = c.lo[1]! >>> 0;
  c.segSel[CS] = ((to64 ? base + 16 : base) & 0xfffc) | 3;
  c.segBase[CS] = 0;
  c.segLimit[CS] = 0xffffffff;
  c.segAttr[CS] = to64 ? (0xfb | 0x2000 | 0x8000) : (0xfb | 0x4000 | 0x8000);
  c.segSel[SS] = ((base + 8) & 0xfffc) | 3;
  c.segAttr[SS] = 0xf3 | 0x4000 | 0x8000;
  c.segBase[SS] = 0;
  c.segLimit[SS] = 0xffffffff;
  c.cpl = 3;
  c.lop = 0;
  c.setFlags(c.lo[11]!, F_ARITH | F_TF | F_IF | F_DF | F_IOPL | F_NT | F_AC | F_ID);
  c.flags &= ~F_RF;
  c.updateMode();
  c.ip = target;
}

function bitOp(op: number, isImm: boolean): void {
  // op: 0 BT, 1 BTS, 2 BTR, 3 BTC.
  let bit: number;
  let bitH = 0;
  if (isImm) bit = imm & (osz * 8 - 1);
  else {
    bit = getReg(regf, osz);
    bitH = osz === 8 ? c.rh : 0;
    if (osz === 2) bit = sext(bit, 2);
  }
  c.materialize();
  if (rmReg >= 0 || isImm) {
    const nb = bit & (osz * 8 - 1);
    const v = op === 0 ? readE(osz) : readEW(osz);
    let vh = c.rh;
    let lo = v;
    let cf: number;
    if (nb >= 32) {
      cf = (vh >>> (nb - 32)) & 1;
      if (op === 1) vh |= 1 << (nb - 32);
      else if (op === 2) vh &= ~(1 << (nb - 32));
      else if (op === 3) vh ^= 1 << (nb - 32);
    } else {
      cf = (lo >>> nb) & 1;
      if (op === 1) lo |= 1 << nb;
      else if (op === 2) lo &= ~(1 << nb);
      else if (op === 3) lo ^= 1 << nb;
    }
    c.flags = (c.flags & ~F_CF) | cf;
    if (op !== 0) writeE(osz, mask(lo, osz === 8 ? 4 : osz), vh);
    return;
  }
  // Memory with a register bit offset: the offset selects the byte (signed).
  const byteOff = osz === 8 ? bitH * 536870912 + Math.floor((bit >>> 0) / 8) : Math.floor(bit / 8);
  const lin = c.wrapLin(ea + byteOff);
  const v = op === 0 ? c.rd8(lin) : readMemW(lin, 1);
  const nb = bit & 7;
  const cf = (v >> nb) & 1;
  c.flags = (c.flags & ~F_CF) | cf;
  if (op === 1) c.wr8(lin, v | (1 << nb));
  else if (op === 2) c.wr8(lin, v & ~(1 << nb));
  else if (op === 3) c.wr8(lin, v ^ (1 << nb));
}

function shiftDouble(b: number): void {
  const left = b < 0xa8;
  const src = getReg(regf, osz), srch = c.rh;
  const cnt = (b & 1 ? c.lo[1]! : imm) & (osz === 8 ? 63 : 31);
  const d = readEW(osz), dh = c.rh;
  if (cnt === 0) {
    writeE(osz, d, dh); // a 32-bit destination is still zero-extended
    return;
  }
  c.materialize();
  let r: number, rh = 0, cf: number;
  if (osz === 8) {
    if (left) {
      r = shl64x(c, d, dh, cnt);
      rh = c.rh;
      const s = shr64x(c, src, srch, 64 - cnt);
      r |= s;
      rh |= c.rh;
      cf = shr64x(c, d, dh, 64 - cnt) & 1;
    } else {
      r = shr64x(c, d, dh, cnt);
      rh = c.rh;
      const s = shl64x(c, src, srch, 64 - cnt);
      r |= s;
      rh |= c.rh;
      cf = shr64x(c, d, dh, cnt - 1) & 1;
    }
    const of = c.intel
      ? ((rh ^ dh) >>> 31) & 1
      : left
      ? ((rh >>> 31) ^ cf) & 1
      : ((rh >>> 31) ^ (rh >>> 30)) & 1;
    c.flags = (c.flags & ~F_ARITH) | cf | (of << 11) | ((r | rh) === 0 ? F_ZF : 0) |
      ((rh >>> 31) << 7) | (Cpu.szp(r & 0xff, 1) & 4) | (c.intel ? 0 : F_AF);
    writeE(8, r, rh);
    return;
  }
  if (osz === 4) {
    if (left) {
      r = (d << cnt) | (src >>> (32 - cnt));
      cf = (d >>> (32 - cnt)) & 1;
    } else {
      r = (d >>> cnt) | (src << (32 - cnt));
      cf = (d >>> (cnt - 1)) & 1;
    }
  } else {
    // 16-bit: shift the 32-bit concatenation (counts above 16 are undefined; we use mod 32).
    const both = left
      ? ((d & 0xffff) << 16) | (src & 0xffff)
      : ((src & 0xffff) << 16) | (d & 0xffff);
    if (left) {
      const x = cnt < 32 ? both << cnt : 0;
      r = (x >>> 16) & 0xffff;
      cf = cnt <= 16 ? ((d & 0xffff) >> (16 - cnt)) & 1 : (both >>> (32 - cnt)) & 1;
    } else {
      r = (both >>> cnt) & 0xffff;
      cf = (both >>> (cnt - 1)) & 1;
    }
  }
  r = mask(r, osz);
  // OF for counts above 1 and AF are undefined. AMD (measured): the 1-bit rule on the result,
  // MSB xor CF for SHLD and the top two bits for SHRD, and AF set. The Intel model: the sign
  // change between operand and result, AF clear (unverified on silicon).
  const top = osz * 8 - 1;
  // (AMD's 16-bit SHLD by exactly 16 gives OF = CF, as if the result's MSB were 0.)
  const of = c.intel
    ? ((r ^ d) >>> top) & 1
    : left
    ? (osz === 2 && cnt === 16 ? cf : ((r >>> top) ^ cf) & 1)
    : ((r >>> top) ^ (r >>> (top - 1))) & 1;
  c.flags = (c.flags & ~F_ARITH) | cf | (of << 11) | Cpu.szp(r, osz) | (c.intel ? 0 : F_AF);
  writeE(osz, r, 0);
}

function grp9(): void {
  const op = regf & 7;
  if (op !== 1 || rmReg >= 0) c.ud();
  c.materialize();
  if (osz === 8) { // CMPXCHG16B
    if (ea % 16 !== 0) c.gp(0);
    c.probeWrite(ea, 16);
    const m0 = c.rd64(ea), m1 = c.rh;
    const m2 = c.rd64(c.wrapLin(ea + 8)), m3 = c.rh;
    if (m0 === c.lo[0] && m1 === c.hi[0] && m2 === c.lo[2] && m3 === c.hi[2]) {
      c.wr64(ea, c.lo[3]!, c.hi[3]!);
      c.wr64(c.wrapLin(ea + 8), c.lo[1]!, c.hi[1]!);
      c.flags |= F_ZF;
    } else {
      c.wr64(ea, m0, m1);
      c.wr64(c.wrapLin(ea + 8), m2, m3);
      setReg(0, 8, m0, m1);
      setReg(2, 8, m2, m3);
      c.flags &= ~F_ZF;
    }
    return;
  }
  // CMPXCHG8B
  const m0 = readMemW(ea, 8), m1 = c.rh;
  if (m0 === c.lo[0] && m1 === c.lo[2]) {
    c.wr64(ea, c.lo[3]!, c.lo[1]!);
    c.flags |= F_ZF;
  } else {
    c.wr64(ea, m0, m1);
    setReg(0, 4, m0, 0);
    setReg(2, 4, m1, 0);
    c.flags &= ~F_ZF;
  }
}

function grp15(): void {
  const m = modrmByte;
  if ((m >> 6) === 3) {
    // LFENCE (E8), MFENCE (F0), SFENCE (F8): no reordering here, nothing to do.
    if ((m & 0xf8) === 0xe8 || (m & 0xf8) === 0xf0 || (m & 0xf8) === 0xf8) return;
    c.ud();
  }
  switch (regf & 7) {
    case 0:
      fxsave(c, ea, rex & 8 ? 8 : 4);
      return;
    case 1:
      fxrstor(c, ea, rex & 8 ? 8 : 4);
      return;
    case 2: { // LDMXCSR
      const v = c.rd32(ea);
      if (v & ~0xffff) c.gp(0);
      c.fpu.mxcsr = v;
      return;
    }
    case 3: // STMXCSR
      c.wr32(ea, c.fpu.mxcsr);
      return;
    case 7: // CLFLUSH
      c.rd8(ea);
      return;
    default:
      c.ud();
  }
}
