/**
 * The interpreter's CPU model: register file, lazy flags, segmentation, paging with a software
 * TLB, exception and interrupt delivery, control registers and MSRs. Instruction decoding and
 * execution live in `exec.ts`; this file is the machine those instructions act on.
 *
 * Hot-path representation (no BigInt, no allocation): each 64-bit register is two int32 halves
 * (`lo`, `hi`); linear addresses are JS numbers (canonical 64-bit addresses as signed values,
 * which always fit in 48 bits); arithmetic flags are computed lazily from the last ALU operation.
 * Guest exceptions are thrown as the preallocated `FAULT` sentinel (no Error, no stack capture).
 */

import type { MmioBus, PortBus } from "../bus.ts";
import type { InterruptController, RunControl, VcpuPlatform } from "../backend.ts";
import {
  type CpuState,
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_PAE,
  CR4_PSE,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  EFER_SCE,
  noCpuEvents,
  resetFpuState,
  type Segment,
} from "../cpu_state.ts";
import type { GuestMemory } from "../memory.ts";
import { CODE, DIRTY_ALL, H_DIRTY_ACK, H_DIRTY_EPOCH, H_GEN } from "../page_state.ts";
import { AMD_MODEL, type CpuModel } from "../cpu_model.ts";
import { VmmError } from "../errors.ts";
import { DecodeCache } from "./decode.ts";
import { X87, x87FromFpuState, x87ToFpuState } from "./x87.ts";

// ---- Constants ---------------------------------------------------------------------------------

/** Segment register indices in encoding order (Intel SDM Vol. 2, "Sreg" field). */
export const ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5, LDTR = 6, TR = 7;

/** EFLAGS bits (Intel SDM Vol. 1, 3.4.3). */
export const F_CF = 0x1, F_PF = 0x4, F_AF = 0x10, F_ZF = 0x40, F_SF = 0x80, F_TF = 0x100;
/** EFLAGS bits. */
export const F_IF = 0x200, F_DF = 0x400, F_OF = 0x800, F_IOPL = 0x3000, F_NT = 0x4000;
/** EFLAGS bits. */
export const F_RF = 0x10000, F_VM = 0x20000, F_AC = 0x40000, F_ID = 0x200000;
/** The six arithmetic flags. */
export const F_ARITH = F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF;
/** Flags software can change with POPF at CPL 0 (VM/VIF/VIP excluded: no virtual-8086 mode). */
export const F_WRITABLE = F_ARITH | F_TF | F_IF | F_DF | F_IOPL | F_NT | F_RF | F_AC | F_ID;

/** Exception vectors (Intel SDM Vol. 3, Table 6-1). */
export const DE = 0, DB = 1, NMI = 2, BP = 3, OF = 4, BR = 5, UD = 6, NM = 7, DF = 8;
/** Exception vectors. */
export const TS = 10, NP = 11, SS_FAULT = 12, GP = 13, PF = 14, MF = 16, AC = 17, XM = 19;

/** Lazy-flag operation kinds: what produced the current flags. */
export const LF_NONE = 0, LF_ADD = 1, LF_ADC = 2, LF_SUB = 3, LF_SBB = 4, LF_LOGIC = 5;
/** Lazy-flag operation kinds. */
export const LF_INC = 6, LF_DEC = 7;

/** Software TLB entries (direct mapped by linear page number). */
const TLB_SIZE = 4096;
const TLB_MASK = TLB_SIZE - 1;
/** A tag no page-aligned linear address can equal. */
const TLB_INVALID = -1;

/** Page-table entry bits (Intel SDM Vol. 3, 4.5). */
const PTE_P = 1, PTE_W = 2, PTE_U = 4, PTE_A = 0x20, PTE_D = 0x40, PTE_PS = 0x80;

/** Access kinds for translation. */
export const ACC_READ = 0, ACC_WRITE = 1, ACC_FETCH = 2;

const TWO32 = 4294967296;

/** Thrown (never allocated per fault) when the guest raises an exception; details are on the Cpu. */
export const FAULT = { fault: true } as const;
/** Thrown when exception delivery itself fails past a double fault. */
export const TRIPLE = { triple: true } as const;

/** The I/O the CPU reaches directly from IN/OUT and MMIO accesses. */
export interface CpuIo {
  ports: PortBus;
  mmio: MmioBus;
  control: RunControl;
  /** The machine's MSRs (APIC base, kvm-clock); absent on a bare CPU. */
  readonly platform?: VcpuPlatform;
  /** The INTR pin; absent on a bare CPU (then enabling IF always ends the slice). */
  readonly interrupts?: InterruptController;
}

/** PF (0x4) for each low byte of a result: the lazy flags and the compiled shifts read it. */
export const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let p = 1;
  for (let b = i; b; b >>= 1) p ^= b & 1;
  PARITY[i] = p ? F_PF : 0;
}

/** MSRs this CPU knows besides the ones with dedicated fields, with their reset values. */
function defaultMsrs(intel = false): Map<number, bigint> {
  const m = new Map<number, bigint>();
  // Intel's MISC_ENABLE (Linux's verify_cpu reads it unchecked on Intel): fast strings on, no
  // branch-trace store or PEBS (KVM's reset value plus fast strings).
  if (intel) m.set(0x1a0, (1n << 0n) | (1n << 11n) | (1n << 12n));
  m.set(0x1b, 0xfee0_0900n); // APIC_BASE: enabled, BSP, default base (SDM Vol. 3, 10.4.4)
  m.set(0x174, 0n); // SYSENTER_CS
  m.set(0x175, 0n); // SYSENTER_ESP
  m.set(0x176, 0n); // SYSENTER_EIP
  m.set(0x277, 0x0007_0406_0007_0406n); // PAT power-on value
  m.set(0xfe, 0x508n); // MTRRcap: 8 variable ranges, fixed ranges, WC
  m.set(0x2ff, 0xc06n); // MTRRdefType: enabled, fixed enabled, default WB
  for (let i = 0x200; i < 0x210; i++) m.set(i, 0n); // variable MTRR base/mask pairs
  for (const i of [0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f]) {
    m.set(i, 0x0606_0606_0606_0606n); // fixed MTRRs: write-back
  }
  m.set(0xc000_0103, 0n); // TSC_AUX
  m.set(0xc001_0015, 0n); // AMD HWCR
  m.set(0xc001_0010, 0n); // AMD SYSCFG: no MTRR DRAM extensions (Linux reads it unchecked)
  m.set(0x8b, 0n); // microcode revision
  return m;
}

// ---- The CPU -------------------------------------------------------------------------------------

/** One interpreted x86-64 CPU. Fields are public so `exec.ts` can reach them without calls. */
export class Cpu {
  readonly mem: GuestMemory;
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  io: CpuIo;
  /** The CPU this vCPU presents (CPUID identity, vendor behaviour); set with `setModel`. */
  model: CpuModel = AMD_MODEL;
  /**
   * The model is Intel: where the manuals leave a result or flag undefined, compute it as Intel
   * silicon does (false: as AMD's). Read on hot paths, so a plain boolean.
   */
  intel = false;

  // General-purpose registers, low and high 32 bits.
  readonly lo = new Int32Array(16);
  readonly hi = new Int32Array(16);
  /** RIP: u32 outside 64-bit mode, a signed canonical value in 64-bit mode. */
  ip = 0;
  /** IP of the instruction being executed (faults restart here). */
  startIp = 0;

  // Flags: `flags` holds every bit except the arithmetic ones while `lop !== LF_NONE`.
  flags = 2;
  lop = LF_NONE;
  /** Operand size in bytes of the lazy operation (1, 2, 4, 8). */
  lsz = 4;
  lres = 0;
  lresH = 0;
  la = 0;
  laH = 0;
  lb = 0;
  lbH = 0;
  /** Carry-in of ADC/SBB, or the preserved CF of INC/DEC. */
  lcf = 0;

  // Segments: selector, base, expanded limit, attributes (VMX AR layout, bit 16 = unusable).
  readonly segSel = new Int32Array(8);
  readonly segBase = new Float64Array(8);
  readonly segLimit = new Float64Array(8);
  readonly segAttr = new Int32Array(8);
  gdtBase = 0;
  gdtLimit = 0xffff;
  idtBase = 0;
  idtLimit = 0x3ff;

  cr0 = 0x10;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  cr8 = 0;
  efer = 0;
  /** Current privilege level. */
  cpl = 0;
  /** 64-bit mode (EFER.LMA and CS.L). */
  long64 = false;
  /** CS.D: default operand and address size 32. */
  code32 = false;
  /** SS.B: 32-bit stack pointer (outside 64-bit mode). */
  stack32 = false;

  // MSRs with dedicated fields.
  starLo = 0;
  starHi = 0;
  lstar = 0;
  cstar = 0;
  sfmask = 0;
  kernelGsBase = 0;
  tscOffset = 0;
  lastTsc = 0;
  msrs = defaultMsrs();
  fpu = resetFpuState();
  /** The x87 register stack (the FXSAVE image in `fpu` is synced on save/restore). */
  readonly x87 = new X87();

  halted = false;
  /**
   * DR0..DR7 as low/high 32-bit halves (DR4/DR5 unused: MOV aliases them to DR6/DR7). Stored and
   * read back only: no breakpoint fires.
   */
  readonly dr: Int32Array = Cpu.resetDr();
  /** Interrupts are inhibited for one instruction (after STI, MOV SS, POP SS). */
  shadow = false;
  /** Set by instructions that must end the current run slice (I/O stop, HLT, IF set). */
  breakLoop = false;

  // Pending exception details (valid when FAULT was thrown).
  excVec = 0;
  excCode = 0;
  excHasCode = false;

  // Instruction fetch window: IP range [fetchIpBase, fetchIpBase+4096) maps to bytes at fetchOff.
  fetchIpBase = NaN;
  fetchOff = 0;

  // Software TLB: page-aligned linear tag per entry and kind; page offset into `bytes`.
  readonly tlbReadS = new Float64Array(TLB_SIZE).fill(TLB_INVALID);
  readonly tlbWriteS = new Float64Array(TLB_SIZE).fill(TLB_INVALID);
  readonly tlbReadU = new Float64Array(TLB_SIZE).fill(TLB_INVALID);
  readonly tlbWriteU = new Float64Array(TLB_SIZE).fill(TLB_INVALID);
  /** RAM offset of each entry's page, one array per privilege set (they fill independently). */
  readonly tlbOffS = new Float64Array(TLB_SIZE);
  readonly tlbOffU = new Float64Array(TLB_SIZE);
  /**
   * Instruction TLB, per privilege set: page-aligned linear tag and RAM offset of the page.
   * Entering a new code page (every call or return across pages) then skips the page walk.
   */
  readonly itlbTagS = new Float64Array(TLB_SIZE).fill(TLB_INVALID);
  readonly itlbTagU = new Float64Array(TLB_SIZE).fill(TLB_INVALID);
  readonly itlbOffS = new Float64Array(TLB_SIZE);
  readonly itlbOffU = new Float64Array(TLB_SIZE);
  /** The offset array for the current CPL (pairs with tlbRead/tlbWrite). */
  tlbOff: Float64Array;
  /** The tag arrays for the current CPL. */
  tlbRead: Float64Array;
  tlbWrite: Float64Array;
  /** Physical address of the last translation (for MMIO). */
  lastPhys = 0;

  /** Scratch: high half of the last 64-bit value read. */
  rh = 0;
  /** Decoded instructions (see decode.ts). */
  readonly dc = new DecodeCache();
  /**
   * One byte per 4 KiB page of RAM, nonzero while decoded instructions or compiled blocks from it
   * are cached: the code plane of the memory's shared page-state map (`core/page_state.ts`),
   * where other writers mark such pages STALE.
   */
  readonly codePages: Uint8Array;
  /** The page-state map's dirty plane (the CPU marks a page when it installs a write entry). */
  readonly dirtyPages: Uint8Array;
  /**
   * The page-state map's header: `pageGen[H_GEN]` moves when another writer left work for this
   * CPU (stale code, dirty bits taken). Compared with `pageGenSeen` at every block boundary and
   * after every port and MMIO access; `pageSync` does the work.
   */
  readonly pageGen: Int32Array;
  /** The `pageGen[H_GEN]` value `pageSync` last acted on. */
  pageGenSeen = 0;
  /** The dirty epoch this CPU last dropped its write-TLB entries for. */
  #dirtyEpochSeen = 0;
  /** Difftest mode: linear = physical even with paging on (see difftest_api.ts). */
  identityPaging = false;
  /** The exceptions of the last delivery attempt ("#UD -> #GP -> #DF -> #GP"), for messages. */
  faultChain = "";
  /** Instructions retired (for the bench and the TSC fallback). */
  icount = 0;

  constructor(mem: GuestMemory, io: CpuIo) {
    this.mem = mem;
    this.bytes = mem.bytes;
    this.dv = mem.view;
    this.io = io;
    this.codePages = mem.pages.code;
    this.dirtyPages = mem.pages.dirty;
    this.pageGen = mem.pages.header;
    this.pageGenSeen = Atomics.load(this.pageGen, H_GEN);
    this.#dirtyEpochSeen = Atomics.load(this.pageGen, H_DIRTY_EPOCH);
    this.tlbRead = this.tlbReadS;
    this.tlbWrite = this.tlbWriteS;
    this.tlbOff = this.tlbOffS;
    this.resetSegments();
  }

  /** Presents CPU model `m`: its CPUID identity and its vendor's undefined-result behaviour. */
  setModel(m: CpuModel): void {
    this.model = m;
    this.intel = m.vendor === "intel";
    this.msrs = defaultMsrs(this.intel);
  }

  resetSegments(): void {
    for (let i = 0; i < 8; i++) {
      this.segSel[i] = 0;
      this.segBase[i] = 0;
      this.segLimit[i] = 0xffff;
      this.segAttr[i] = 0x93;
    }
    this.segAttr[CS] = 0x9b;
    this.segAttr[LDTR] = 0x82;
    this.segAttr[TR] = 0x8b;
  }

  // ---- Flags -----------------------------------------------------------------------------------

  /** Records an ALU result for lazy flag evaluation (operand size `sz` ≤ 4). */
  setLazy(op: number, sz: number, res: number, a: number, b: number): void {
    this.lop = op;
    this.lsz = sz;
    this.lres = res;
    this.la = a;
    this.lb = b;
  }

  cf(): number {
    switch (this.lop) {
      case LF_NONE:
        return this.flags & 1;
      case LF_ADD:
        if (this.lsz === 8) return ult64(this.lresH, this.lres, this.laH, this.la);
        return (this.lres >>> 0) < (this.la >>> 0) ? 1 : 0;
      case LF_ADC:
        if (this.lsz === 8) {
          return this.lcf
            ? (ult64(this.lresH, this.lres, this.laH, this.la) |
              (this.lresH === this.laH && this.lres === this.la ? 1 : 0))
            : ult64(this.lresH, this.lres, this.laH, this.la);
        }
        return this.lcf
          ? ((this.lres >>> 0) <= (this.la >>> 0) ? 1 : 0)
          : ((this.lres >>> 0) < (this.la >>> 0) ? 1 : 0);
      case LF_SUB:
        if (this.lsz === 8) return ult64(this.laH, this.la, this.lbH, this.lb);
        return (this.la >>> 0) < (this.lb >>> 0) ? 1 : 0;
      case LF_SBB:
        if (this.lsz === 8) {
          return this.lcf
            ? (ult64(this.laH, this.la, this.lbH, this.lb) |
              (this.laH === this.lbH && this.la === this.lb ? 1 : 0))
            : ult64(this.laH, this.la, this.lbH, this.lb);
        }
        return this.lcf
          ? ((this.la >>> 0) <= (this.lb >>> 0) ? 1 : 0)
          : ((this.la >>> 0) < (this.lb >>> 0) ? 1 : 0);
      case LF_LOGIC:
        return 0;
      default: // INC, DEC
        return this.lcf;
    }
  }

  zf(): number {
    if (this.lop === LF_NONE) return (this.flags >> 6) & 1;
    if (this.lsz === 8) return (this.lres | this.lresH) === 0 ? 1 : 0;
    return this.lres === 0 ? 1 : 0;
  }

  sf(): number {
    if (this.lop === LF_NONE) return (this.flags >> 7) & 1;
    switch (this.lsz) {
      case 1:
        return (this.lres >> 7) & 1;
      case 2:
        return (this.lres >> 15) & 1;
      case 4:
        return this.lres >>> 31;
      default:
        return this.lresH >>> 31;
    }
  }

  of(): number {
    let x: number;
    switch (this.lop) {
      case LF_NONE:
        return (this.flags >> 11) & 1;
      case LF_ADD:
      case LF_ADC:
      case LF_INC:
        x = this.lsz === 8
          ? (this.laH ^ this.lresH) & (this.lbH ^ this.lresH)
          : (this.la ^ this.lres) & (this.lb ^ this.lres);
        break;
      case LF_SUB:
      case LF_SBB:
      case LF_DEC:
        x = this.lsz === 8
          ? (this.laH ^ this.lbH) & (this.laH ^ this.lresH)
          : (this.la ^ this.lb) & (this.la ^ this.lres);
        break;
      default:
        return 0;
    }
    switch (this.lsz) {
      case 1:
        return (x >> 7) & 1;
      case 2:
        return (x >> 15) & 1;
      default:
        return x >>> 31;
    }
  }

  pf(): number {
    if (this.lop === LF_NONE) return (this.flags >> 2) & 1;
    return PARITY[this.lres & 0xff]! >> 2;
  }

  af(): number {
    if (this.lop === LF_NONE) return (this.flags >> 4) & 1;
    if (this.lop === LF_LOGIC) return 0;
    return ((this.la ^ this.lb ^ this.lres) >> 4) & 1;
  }

  /** Full EFLAGS with the arithmetic flags evaluated. */
  getFlags(): number {
    if (this.lop === LF_NONE) return this.flags;
    return (this.flags & ~F_ARITH) | this.cf() | (this.pf() << 2) | (this.af() << 4) |
      (this.zf() << 6) | (this.sf() << 7) | (this.of() << 11) | 2;
  }

  /** Evaluates the lazy flags into `flags` so single bits can be changed. */
  materialize(): void {
    if (this.lop !== LF_NONE) {
      this.flags = this.getFlags();
      this.lop = LF_NONE;
    }
  }

  /** Sets the arithmetic flags eagerly. */
  setArith(bits: number): void {
    this.flags = (this.flags & ~F_ARITH) | (bits & F_ARITH);
    this.lop = LF_NONE;
  }

  /** ZF/SF/PF of a result of size `sz` (1/2/4 bytes), as flag bits. */
  static szp(res: number, sz: number): number {
    let f = PARITY[res & 0xff]!;
    if (sz === 1) res &= 0xff;
    else if (sz === 2) res &= 0xffff;
    if (res === 0) f |= F_ZF;
    if ((res >>> (sz * 8 - 1)) & 1) f |= F_SF;
    return f;
  }

  /** Writes EFLAGS under `mask` (bit 1 always set). */
  setFlags(v: number, mask: number): void {
    this.materialize();
    const old = this.flags;
    this.flags = ((old & ~mask) | (v & mask) | 2) & ~(0x8 | 0x20 | 0x8000);
    if ((this.flags & F_IF) && !(old & F_IF) && this.interruptWaits()) this.breakLoop = true;
  }

  /**
   * True when enabling IF must end the slice: an interrupt waits (or there is no controller to
   * ask). With none waiting, the next slice boundary is soon enough for one that comes later,
   * as when IF was already set; ending the slice at every STI and POPF of a spin_unlock cost
   * Linux a slice per lock.
   */
  interruptWaits(): boolean {
    const ic = this.io.interrupts;
    return ic === undefined || ic.hasInterrupt();
  }

  /** Jcc/SETcc/CMOVcc condition `cc` (0..15). */
  cond(cc: number): boolean {
    // Fast paths: 32-bit CMP/SUB and TEST/AND/OR/XOR results, the common producers of Jcc.
    if (this.lsz === 4) {
      if (this.lop === LF_SUB) {
        const a = this.la, b = this.lb;
        switch (cc) {
          case 2:
            return (a >>> 0) < (b >>> 0);
          case 3:
            return (a >>> 0) >= (b >>> 0);
          case 4:
            return a === b;
          case 5:
            return a !== b;
          case 6:
            return (a >>> 0) <= (b >>> 0);
          case 7:
            return (a >>> 0) > (b >>> 0);
          case 12:
            return a < b;
          case 13:
            return a >= b;
          case 14:
            return a <= b;
          case 15:
            return a > b;
        }
      } else if (this.lop === LF_LOGIC) {
        const r = this.lres;
        switch (cc) {
          case 4:
            return r === 0;
          case 5:
            return r !== 0;
          case 8:
          case 12:
            return r < 0;
          case 9:
          case 13:
            return r >= 0;
        }
      }
    }
    let r: number;
    switch (cc >> 1) {
      case 0:
        r = this.of();
        break;
      case 1:
        r = this.cf();
        break;
      case 2:
        r = this.zf();
        break;
      case 3:
        r = this.cf() | this.zf();
        break;
      case 4:
        r = this.sf();
        break;
      case 5:
        r = this.pf();
        break;
      case 6:
        r = this.sf() ^ this.of();
        break;
      default:
        r = this.zf() | (this.sf() ^ this.of());
        break;
    }
    return (r !== 0) !== ((cc & 1) === 1);
  }

  // ---- Exceptions ------------------------------------------------------------------------------

  /** Raises exception `vec` (with an error code when `code >= 0`). Never returns. */
  raise(vec: number, code = -1): never {
    this.excVec = vec;
    this.excHasCode = code >= 0;
    this.excCode = code >= 0 ? code : 0;
    throw FAULT;
  }

  gp(code = 0): never {
    return this.raise(GP, code);
  }

  ud(): never {
    return this.raise(UD);
  }

  // ---- Modes -----------------------------------------------------------------------------------

  /** Recomputes the cached mode bits after CS, SS, CR0 or EFER change. */
  updateMode(): void {
    const csA = this.segAttr[CS]!;
    this.long64 = (this.efer & EFER_LMA) !== 0 && (csA & 0x2000) !== 0;
    this.code32 = this.long64 ? true : (csA & 0x4000) !== 0;
    this.stack32 = (this.segAttr[SS]! & 0x4000) !== 0;
    if (!(this.cr0 & CR0_PE)) this.cpl = 0;
    const user = this.cpl === 3;
    this.tlbRead = user ? this.tlbReadU : this.tlbReadS;
    this.tlbWrite = user ? this.tlbWriteU : this.tlbWriteS;
    this.tlbOff = user ? this.tlbOffU : this.tlbOffS;
    this.fetchIpBase = NaN;
  }

  flushTlb(): void {
    this.tlbReadS.fill(TLB_INVALID);
    this.tlbWriteS.fill(TLB_INVALID);
    this.tlbReadU.fill(TLB_INVALID);
    this.tlbWriteU.fill(TLB_INVALID);
    this.itlbTagS.fill(TLB_INVALID);
    this.itlbTagU.fill(TLB_INVALID);
    this.fetchIpBase = NaN;
  }

  invlpg(lin: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    this.tlbReadS[i] = TLB_INVALID;
    this.tlbWriteS[i] = TLB_INVALID;
    this.tlbReadU[i] = TLB_INVALID;
    this.tlbWriteU[i] = TLB_INVALID;
    this.itlbTagS[i] = TLB_INVALID;
    this.itlbTagU[i] = TLB_INVALID;
    this.fetchIpBase = NaN;
  }

  setCr0(v: number): void {
    v = (v | 0x10) >>> 0; // ET is hardwired to 1
    if ((v & CR0_PG) && !(v & CR0_PE)) this.gp(0);
    const old = this.cr0;
    if ((v & CR0_PG) && !(old & CR0_PG) && (this.efer & EFER_LME)) {
      if (!(this.cr4 & CR4_PAE)) this.gp(0);
      this.efer |= EFER_LMA;
    } else if (!(v & CR0_PG) && (old & CR0_PG) && (this.efer & EFER_LMA)) {
      if (this.long64) this.gp(0);
      this.efer &= ~EFER_LMA;
    }
    this.cr0 = v;
    this.flushTlb();
    this.updateMode();
  }

  setCr4(v: number): void {
    if ((this.efer & EFER_LMA) && !(v & CR4_PAE)) this.gp(0);
    // Bits we implement: VME..PCE, OSFXSR, OSXMMEXCPT (0x7ff minus VME/PVI/TSD/DE semantics).
    if (v & ~0x6ff) this.gp(0);
    this.cr4 = v;
    this.flushTlb();
  }

  setCr3(v: number): void {
    this.cr3 = v;
    this.flushTlb();
  }

  setEfer(v: number): void {
    const allowed = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    if (v & ~allowed) this.gp(0);
    if ((this.cr0 & CR0_PG) && ((v ^ this.efer) & EFER_LME)) this.gp(0);
    this.efer = (v & ~EFER_LMA) | (this.efer & EFER_LMA);
    this.flushTlb();
    this.updateMode();
  }

  // ---- Paging ----------------------------------------------------------------------------------

  /** Reads a 32-bit physical word for the page walker (outside RAM reads as 0: not present). */
  physRd32(pa: number): number {
    const off = this.mem.offsetOf(pa, 4);
    return off < 0 ? 0 : this.dv.getInt32(off, true);
  }

  physWr32(pa: number, v: number): void {
    const off = this.mem.offsetOf(pa, 4);
    if (off < 0) return;
    this.dv.setInt32(off, v, true);
    const page = Math.floor(off / 4096);
    this.dirtyPages[page] = DIRTY_ALL;
    if (this.codePages[page] !== 0) this.codeWritten(page);
  }

  pageFault(lin: number, kind: number, user: boolean, present: boolean, rsvd = false): never {
    this.cr2 = lin;
    let code = present ? 1 : 0;
    if (kind === ACC_WRITE) code |= 2;
    if (user) code |= 4;
    if (rsvd) code |= 8;
    if (kind === ACC_FETCH && (this.efer & EFER_NXE)) code |= 16;
    return this.raise(PF, code);
  }

  /**
   * Translates linear `lin` to a guest-physical address, checking permissions for an access of
   * `kind` at user privilege `user`. Sets A/D bits. Throws #PF.
   */
  translate(lin: number, kind: number, user: boolean): number {
    if (!(this.cr0 & CR0_PG) || this.identityPaging) return this.long64 ? lin : lin >>> 0;
    const write = kind === ACC_WRITE;
    const wp = (this.cr0 & CR0_WP) !== 0;
    if (this.efer & EFER_LMA) {
      // 4-level paging (SDM Vol. 3, 4.5).
      const hi = Math.floor(lin / TWO32) | 0;
      if (((hi << 16) >> 16) !== hi) this.gp(0);
      const lo = lin >>> 0;
      const idx4 = (hi >>> 7) & 0x1ff;
      const idx3 = ((hi & 0x7f) << 2) | (lo >>> 30);
      const idx2 = (lo >>> 21) & 0x1ff;
      const idx1 = (lo >>> 12) & 0x1ff;
      let table = this.cr3 - (this.cr3 % 4096);
      let allowW = true, allowU = true, nx = false;
      for (let level = 0; level < 4; level++) {
        // (No index array: this walk runs on every TLB miss and must not allocate.)
        const idx = level === 0 ? idx4 : level === 1 ? idx3 : level === 2 ? idx2 : idx1;
        const ea = table + idx * 8;
        let e = this.physRd32(ea);
        const eh = this.physRd32(ea + 4);
        if (!(e & PTE_P)) return this.pageFault(lin, kind, user, false);
        if (!(e & PTE_W)) allowW = false;
        if (!(e & PTE_U)) allowU = false;
        if (eh < 0 && (this.efer & EFER_NXE)) nx = true;
        const leaf = level === 3 || (level > 0 && (e & PTE_PS) !== 0);
        if (leaf) {
          this.checkPerm(lin, kind, user, allowW, allowU, nx, wp);
          const upd = e | PTE_A | (write ? PTE_D : 0);
          if (upd !== e) {
            e = upd;
            this.physWr32(ea, e);
          }
          const physHi = (eh & 0xfffff) * TWO32;
          if (level === 3) return physHi + ((e & 0xfffff000) >>> 0) + (lo & 0xfff);
          if (level === 2) return physHi + ((e & 0xffe00000) >>> 0) + (lo & 0x1fffff);
          return physHi + ((e & 0xc0000000) >>> 0) + (lo & 0x3fffffff);
        }
        if (!(e & PTE_A)) this.physWr32(ea, e | PTE_A);
        table = (eh & 0xfffff) * TWO32 + ((e & 0xfffff000) >>> 0);
      }
      throw new Error("unreachable");
    }
    lin = lin >>> 0;
    if (this.cr4 & CR4_PAE) {
      // PAE paging: 4 PDPTEs, then 2 levels of 8-byte entries.
      const pdpte = (this.cr3 & 0xffffffe0) + (lin >>> 30) * 8;
      const p = this.physRd32(pdpte);
      if (!(p & PTE_P)) return this.pageFault(lin, kind, user, false);
      let table = (p & 0xfffff000) >>> 0;
      let allowW = true, allowU = true, nx = false;
      for (let level = 2; level >= 1; level--) {
        const idx = level === 2 ? (lin >>> 21) & 0x1ff : (lin >>> 12) & 0x1ff;
        const ea = table + idx * 8;
        let e = this.physRd32(ea);
        const eh = this.physRd32(ea + 4);
        if (!(e & PTE_P)) return this.pageFault(lin, kind, user, false);
        if (!(e & PTE_W)) allowW = false;
        if (!(e & PTE_U)) allowU = false;
        if (eh < 0 && (this.efer & EFER_NXE)) nx = true;
        if (level === 1 || (e & PTE_PS)) {
          this.checkPerm(lin, kind, user, allowW, allowU, nx, wp);
          const upd = e | PTE_A | (write ? PTE_D : 0);
          if (upd !== e) {
            e = upd;
            this.physWr32(ea, e);
          }
          const physHi = (eh & 0xfffff) * TWO32;
          if (level === 1) return physHi + ((e & 0xfffff000) >>> 0) + (lin & 0xfff);
          return physHi + ((e & 0xffe00000) >>> 0) + (lin & 0x1fffff);
        }
        if (!(e & PTE_A)) this.physWr32(ea, e | PTE_A);
        table = (eh & 0xfffff) * TWO32 + ((e & 0xfffff000) >>> 0);
      }
      throw new Error("unreachable");
    }
    // Legacy 32-bit paging (SDM Vol. 3, 4.3).
    const pdeA = ((this.cr3 & 0xfffff000) >>> 0) + (lin >>> 22) * 4;
    let pde = this.physRd32(pdeA);
    if (!(pde & PTE_P)) return this.pageFault(lin, kind, user, false);
    if ((pde & PTE_PS) && (this.cr4 & CR4_PSE)) {
      this.checkPerm(lin, kind, user, (pde & PTE_W) !== 0, (pde & PTE_U) !== 0, false, wp);
      const upd = pde | PTE_A | (write ? PTE_D : 0);
      if (upd !== pde) this.physWr32(pdeA, upd);
      return ((pde & 0xffc00000) >>> 0) + (lin & 0x3fffff);
    }
    if (!(pde & PTE_A)) {
      pde |= PTE_A;
      this.physWr32(pdeA, pde);
    }
    const pteA = ((pde & 0xfffff000) >>> 0) + ((lin >>> 12) & 0x3ff) * 4;
    const pte = this.physRd32(pteA);
    if (!(pte & PTE_P)) return this.pageFault(lin, kind, user, false);
    this.checkPerm(
      lin,
      kind,
      user,
      (pde & pte & PTE_W) !== 0,
      (pde & pte & PTE_U) !== 0,
      false,
      wp,
    );
    const upd = pte | PTE_A | (write ? PTE_D : 0);
    if (upd !== pte) this.physWr32(pteA, upd);
    return ((pte & 0xfffff000) >>> 0) + (lin & 0xfff);
  }

  checkPerm(
    lin: number,
    kind: number,
    user: boolean,
    allowW: boolean,
    allowU: boolean,
    nx: boolean,
    wp: boolean,
  ): void {
    if (user && !allowU) this.pageFault(lin, kind, user, true);
    if (kind === ACC_WRITE && !allowW && (user || wp)) this.pageFault(lin, kind, user, true);
    if (kind === ACC_FETCH && nx) this.pageFault(lin, kind, user, true);
  }

  /**
   * Translates for a data access and fills the TLB. Returns the offset in `bytes`, or -1 for a
   * physical address outside RAM (then `lastPhys` holds it).
   */
  tlbFill(lin: number, kind: number, user: boolean): number {
    const pa = this.translate(lin, kind, user);
    this.lastPhys = pa;
    const pageOff = this.mem.offsetOf(pa - (pa % 4096), 4096);
    if (pageOff < 0) return -1;
    const i = (lin >>> 12) & TLB_MASK;
    const tag = lin - (lin & 0xfff);
    // Writes to pages holding decoded code must take the slow path (see decode.ts). A write
    // entry marks its page dirty: stores through it are not seen one by one.
    let wtag = TLB_INVALID;
    if (kind === ACC_WRITE) {
      this.dirtyPages[pageOff / 4096] = DIRTY_ALL;
      if (this.codePages[pageOff / 4096] === 0) wtag = tag;
    }
    if (user) {
      this.tlbOffU[i] = pageOff;
      this.tlbReadU[i] = tag;
      this.tlbWriteU[i] = wtag;
    } else {
      this.tlbOffS[i] = pageOff;
      this.tlbReadS[i] = tag;
      this.tlbWriteS[i] = wtag;
    }
    return pageOff + (lin & 0xfff);
  }

  // ---- Linear memory access (CPL-checked) -----------------------------------------------------

  rd8(lin: number): number {
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbRead[i] === lin - (lin & 0xfff)) {
      return this.bytes[this.tlbOff[i]! + (lin & 0xfff)]!;
    }
    return this.rdSlow(lin, 1, this.cpl === 3);
  }

  rd16(lin: number): number {
    const i = (lin >>> 12) & TLB_MASK;
    const o = lin & 0xfff;
    if (this.tlbRead[i] === lin - o && o <= 0xffe) {
      return this.dv.getUint16(this.tlbOff[i]! + o, true);
    }
    return this.rdSlow(lin, 2, this.cpl === 3);
  }

  rd32(lin: number): number {
    const i = (lin >>> 12) & TLB_MASK;
    const o = lin & 0xfff;
    if (this.tlbRead[i] === lin - o && o <= 0xffc) {
      return this.dv.getInt32(this.tlbOff[i]! + o, true);
    }
    return this.rdSlow(lin, 4, this.cpl === 3);
  }

  /** Reads 64 bits: returns the low half, the high half goes to `rh`. */
  rd64(lin: number): number {
    const i = (lin >>> 12) & TLB_MASK;
    const o = lin & 0xfff;
    if (this.tlbRead[i] === lin - o && o <= 0xff8) {
      const p = this.tlbOff[i]! + o;
      this.rh = this.dv.getInt32(p + 4, true);
      return this.dv.getInt32(p, true);
    }
    const l = this.rd32(lin);
    this.rh = this.rd32(lin + 4);
    return l;
  }

  wr8(lin: number, v: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbWrite[i] === lin - (lin & 0xfff)) {
      this.bytes[this.tlbOff[i]! + (lin & 0xfff)] = v;
      return;
    }
    this.wrSlow(lin, 1, v, this.cpl === 3);
  }

  wr16(lin: number, v: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    const o = lin & 0xfff;
    if (this.tlbWrite[i] === lin - o && o <= 0xffe) {
      this.dv.setUint16(this.tlbOff[i]! + o, v, true);
      return;
    }
    this.wrSlow(lin, 2, v, this.cpl === 3);
  }

  wr32(lin: number, v: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    const o = lin & 0xfff;
    if (this.tlbWrite[i] === lin - o && o <= 0xffc) {
      this.dv.setInt32(this.tlbOff[i]! + o, v, true);
      return;
    }
    this.wrSlow(lin, 4, v, this.cpl === 3);
  }

  wr64(lin: number, l: number, h: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    const o = lin & 0xfff;
    if (this.tlbWrite[i] === lin - o && o <= 0xff8) {
      const p = this.tlbOff[i]! + o;
      this.dv.setInt32(p, l, true);
      this.dv.setInt32(p + 4, h, true);
      return;
    }
    // Probe both halves for faults before writing either.
    this.probeWrite(lin, 8);
    this.wr32(lin, l);
    this.wr32(lin + 4, h);
  }

  /** Makes sure `[lin, lin+len)` is writable (raising #PF now), without writing. */
  probeWrite(lin: number, len: number): void {
    const user = this.cpl === 3;
    this.translate(lin, ACC_WRITE, user);
    const last = lin + len - 1;
    if ((last - (last & 0xfff)) !== (lin - (lin & 0xfff))) this.translate(last, ACC_WRITE, user);
  }

  /** Wraps a linear address to the current address width. */
  wrapLin(lin: number): number {
    return this.long64 ? lin : lin >>> 0;
  }

  rdSlow(lin: number, size: number, user: boolean): number {
    const o = lin & 0xfff;
    if (o + size > 0x1000) {
      // Crosses a page: assemble bytes (each byte translated on its own).
      let v = 0;
      for (let k = 0; k < size; k++) {
        v |= this.rdByteAny(this.wrapLin(lin + k), user) << (8 * k);
      }
      return size === 4 ? v : v >>> 0;
    }
    const off = this.tlbFill(lin, ACC_READ, user);
    if (off < 0) return this.mmioRead(this.lastPhys, size);
    switch (size) {
      case 1:
        return this.bytes[off]!;
      case 2:
        return this.dv.getUint16(off, true);
      default:
        return this.dv.getInt32(off, true);
    }
  }

  rdByteAny(lin: number, user: boolean): number {
    const off = this.tlbFill(lin, ACC_READ, user);
    if (off < 0) return this.mmioRead(this.lastPhys, 1);
    return this.bytes[off]!;
  }

  wrSlow(lin: number, size: number, v: number, user: boolean): void {
    const o = lin & 0xfff;
    if (o + size > 0x1000) {
      this.probeWrite(lin, size);
      for (let k = 0; k < size; k++) {
        const l2 = this.wrapLin(lin + k);
        const off = this.tlbFill(l2, ACC_WRITE, user);
        const b = (v >>> (8 * k)) & 0xff;
        if (off < 0) this.mmioWrite(this.lastPhys, 1, b);
        else {
          if (this.codePages[Math.floor(off / 4096)] !== 0) {
            this.codeWritten(Math.floor(off / 4096));
          }
          this.bytes[off] = b;
        }
      }
      return;
    }
    const off = this.tlbFill(lin, ACC_WRITE, user);
    if (off < 0) {
      this.mmioWrite(this.lastPhys, size, v);
      return;
    }
    if (this.codePages[Math.floor(off / 4096)] !== 0) this.codeWritten(Math.floor(off / 4096));
    switch (size) {
      case 1:
        this.bytes[off] = v;
        break;
      case 2:
        this.dv.setUint16(off, v, true);
        break;
      default:
        this.dv.setInt32(off, v, true);
    }
  }

  mmioRead(pa: number, size: number): number {
    const v = this.io.mmio.read(pa, size);
    if (this.io.control.stop !== null) this.breakLoop = true;
    // The device may have written code by DMA: drop it before the next instruction.
    if (this.pageGen[H_GEN] !== this.pageGenSeen && this.pageSync()) {
      this.breakLoop = true;
    }
    return size === 4 ? v | 0 : v;
  }

  mmioWrite(pa: number, size: number, v: number): void {
    const mask = size === 4 ? 0xffffffff : (1 << (size * 8)) - 1;
    this.io.mmio.write(pa, size, (v & mask) >>> 0);
    if (this.io.control.stop !== null) this.breakLoop = true;
    if (this.pageGen[H_GEN] !== this.pageGenSeen && this.pageSync()) {
      this.breakLoop = true;
    }
  }

  // Supervisor (implicit) accesses: descriptor tables, TSS, IDT — always at privilege 0.
  sysRd32(lin: number): number {
    return this.rdSlowAny(lin, 4, false);
  }

  sysRd16(lin: number): number {
    return this.rdSlowAny(lin, 2, false);
  }

  sysWr32(lin: number, v: number): void {
    this.wrSlow(this.wrapLin(lin), 4, v, false);
  }

  rdSlowAny(lin: number, size: number, user: boolean): number {
    return this.rdSlow(this.wrapLin(lin), size, user);
  }

  /** A write hit a page with decoded instructions: forget them (self-modifying code). */
  codeWritten(page: number): void {
    Atomics.store(this.codePages, page, 0);
    this.dc.invalidatePage(page);
    if (this.onCodeWrite !== null) this.onCodeWrite(page);
  }

  /**
   * Acts on what other writers left in the page-state map since `pageGenSeen`: forgets the
   * decoded instructions and compiled blocks of every page written while it held code (DMA from
   * a device, on this thread or another), and after dirty bits were taken drops the write-TLB
   * entries so the next store to each page marks it again. Callers check
   * `pageGen[H_GEN] !== pageGenSeen` first (the hot-path test: a plain load, since an
   * `Atomics.load` there cost 20-30 % of the block compiler's speed). Returns true when
   * code was dropped: a caller in the middle of a block must end it (set `breakLoop`).
   */
  pageSync(): boolean {
    const hdr = this.pageGen;
    this.pageGenSeen = Atomics.load(hdr, H_GEN);
    const epoch = Atomics.load(hdr, H_DIRTY_EPOCH);
    if (epoch !== this.#dirtyEpochSeen) {
      this.tlbWriteS.fill(TLB_INVALID);
      this.tlbWriteU.fill(TLB_INVALID);
      this.#dirtyEpochSeen = epoch;
      Atomics.store(hdr, H_DIRTY_ACK, epoch);
    }
    return this.mem.pages.takeStale(this.#dropStale) > 0;
  }

  readonly #dropStale = (page: number): void => this.codeWritten(page);

  /** Called when a code page is written (the block compiler drops its blocks there). */
  onCodeWrite: ((page: number) => void) | null = null;
  /** Called when all decoded code is forgotten. */
  onFlushDecoded: (() => void) | null = null;

  /** Marks RAM page `page` as holding decoded code: drops write-TLB entries that map it. */
  markCodePage(page: number): void {
    // Before the bytes are decoded, and a full fence: a writer on another thread that stores
    // after this sees CODE and marks the page STALE (see page_state.ts).
    Atomics.store(this.codePages, page, CODE);
    const off = page * 4096;
    for (let i = 0; i < TLB_SIZE; i++) {
      if (this.tlbOffS[i] === off) this.tlbWriteS[i] = TLB_INVALID;
      if (this.tlbOffU[i] === off) this.tlbWriteU[i] = TLB_INVALID;
    }
  }

  /** Forgets all decoded instructions (after memory was changed behind the CPU's back). */
  flushDecoded(): void {
    this.dc.flush();
    this.codePages.fill(0);
    if (this.onFlushDecoded !== null) this.onFlushDecoded();
  }

  /** Fetches the byte at `ip` through the code segment and paging (slow path, page crossings). */
  fetchByteAt(ip: number): number {
    const lin = this.ipLin(ip);
    const pa = this.translate(lin, ACC_FETCH, this.cpl === 3);
    const off = this.mem.offsetOf(pa, 1);
    if (off < 0) throw new ExecOutsideRamError(pa, lin);
    return this.bytes[off]!;
  }

  // ---- Instruction fetch ------------------------------------------------------------------------

  /** Linear address of `ip` in the current code segment. */
  ipLin(ip: number): number {
    return this.long64 ? ip : (this.segBase[CS]! + ip) >>> 0;
  }

  /** Points the fetch window at the page holding `ip`. */
  fetchRefill(): void {
    const lin = this.ipLin(this.ip);
    const user = this.cpl === 3;
    const pageOffset = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK, tag = lin - pageOffset;
    const tags = user ? this.itlbTagU : this.itlbTagS, offs = user ? this.itlbOffU : this.itlbOffS;
    let off: number;
    if (tags[i] === tag) off = offs[i]!;
    else {
      const pa = this.translate(lin, ACC_FETCH, user);
      off = this.mem.offsetOf(pa - (pa % 4096), 4096);
      if (off < 0) {
        throw new ExecOutsideRamError(pa, lin);
      }
      tags[i] = tag;
      offs[i] = off;
    }
    this.fetchIpBase = this.ip - pageOffset;
    this.fetchOff = off;
  }

  fetch8(): number {
    let d = this.ip - this.fetchIpBase;
    if (!(d >= 0 && d < 4096)) {
      this.fetchRefill();
      d = this.ip - this.fetchIpBase;
    }
    this.ip++;
    return this.bytes[this.fetchOff + d]!;
  }

  fetch16(): number {
    const d = this.ip - this.fetchIpBase;
    if (d >= 0 && d < 4095) {
      this.ip += 2;
      return this.dv.getUint16(this.fetchOff + d, true);
    }
    return this.fetch8() | (this.fetch8() << 8);
  }

  fetch32(): number {
    const d = this.ip - this.fetchIpBase;
    if (d >= 0 && d < 4093) {
      this.ip += 4;
      return this.dv.getInt32(this.fetchOff + d, true);
    }
    return this.fetch8() | (this.fetch8() << 8) | (this.fetch8() << 16) | (this.fetch8() << 24);
  }

  // ---- Segmentation ----------------------------------------------------------------------------

  /** Reads descriptor `sel` from the GDT/LDT into `descLo`/`descHi`; #GP(sel) past the limit. */
  descLo = 0;
  descHi = 0;
  descAddr = 0;

  readDescriptor(sel: number, vec = GP): void {
    const ti = sel & 4;
    const index = sel & 0xfff8;
    let base: number, limit: number;
    if (ti) {
      if (this.segAttr[LDTR]! & 0x10000 || this.segSel[LDTR] === 0) this.raise(vec, sel & 0xfffc);
      base = this.segBase[LDTR]!;
      limit = this.segLimit[LDTR]!;
    } else {
      base = this.gdtBase;
      limit = this.gdtLimit;
    }
    if (index + 7 > limit) this.raise(vec, sel & 0xfffc);
    this.descAddr = base + index;
    this.descLo = this.sysRd32(base + index);
    this.descHi = this.sysRd32(base + index + 4);
  }

  /** Loads segment register `seg` from the current descriptor (descLo/descHi). */
  loadFromDescriptor(seg: number, sel: number): void {
    const lo = this.descLo, hi = this.descHi;
    let limit = (lo & 0xffff) | (hi & 0xf0000);
    if (hi & 0x800000) limit = limit * 4096 + 0xfff;
    this.segSel[seg] = sel;
    this.segBase[seg] = ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0;
    this.segLimit[seg] = limit;
    this.segAttr[seg] = (hi >> 8) & 0xf0ff;
  }

  /** Sets the accessed bit of the current descriptor if clear. */
  markAccessed(): void {
    if (!(this.descHi & 0x100)) {
      this.descHi |= 0x100;
      this.sysWr32(this.descAddr + 4, this.descHi);
    }
  }

  /** MOV/POP to a data segment register or SS, with protected-mode checks. */
  loadSeg(seg: number, sel: number): void {
    sel &= 0xffff;
    if (!(this.cr0 & CR0_PE) || (this.flags & F_VM)) {
      this.segSel[seg] = sel;
      this.segBase[seg] = sel << 4;
      if (seg === CS) {
        this.segAttr[CS] = (this.segAttr[CS]! & ~0x6000) | 0x80;
        this.updateMode();
      }
      return;
    }
    if ((sel & 0xfffc) === 0) {
      if (seg === SS && !(this.long64 && this.cpl < 3)) this.gp(0);
      this.segSel[seg] = sel;
      this.segBase[seg] = 0;
      this.segLimit[seg] = 0;
      this.segAttr[seg] = 0x10000 | (seg === SS ? (this.cpl << 5) : 0);
      if (seg === SS) this.updateMode();
      return;
    }
    this.readDescriptor(sel);
    const hi = this.descHi;
    const type = (hi >> 8) & 0xf;
    const s = (hi >> 12) & 1;
    const dpl = (hi >> 13) & 3;
    const rpl = sel & 3;
    if (seg === SS) {
      if (!s || (type & 8) || !(type & 2) || rpl !== this.cpl || dpl !== this.cpl) {
        this.gp(sel & 0xfffc);
      }
      if (!(hi & 0x8000)) this.raise(SS_FAULT, sel & 0xfffc);
    } else {
      if (!s || ((type & 8) && !(type & 2))) this.gp(sel & 0xfffc);
      // Data or non-conforming code: DPL must be >= max(CPL, RPL).
      if ((!(type & 8) || !(type & 4)) && dpl < Math.max(this.cpl, rpl)) this.gp(sel & 0xfffc);
      if (!(hi & 0x8000)) this.raise(NP, sel & 0xfffc);
    }
    this.markAccessed();
    this.loadFromDescriptor(seg, sel);
    if (seg === SS) this.updateMode();
  }

  /**
   * Loads CS for a far JMP/CALL/RET/IRET to `sel` at privilege `newCpl` (protected mode).
   * Checks the descriptor is a present code segment; no call gates or task switches.
   */
  loadCs(sel: number, newCpl: number): void {
    sel &= 0xffff;
    if ((sel & 0xfffc) === 0) this.gp(0);
    this.readDescriptor(sel);
    const hi = this.descHi;
    const type = (hi >> 8) & 0xf;
    if (!((hi >> 12) & 1) || !(type & 8)) this.gp(sel & 0xfffc);
    const dpl = (hi >> 13) & 3;
    if (type & 4) {
      if (dpl > newCpl) this.gp(sel & 0xfffc);
    } else if (dpl !== newCpl) this.gp(sel & 0xfffc);
    if (!(hi & 0x8000)) this.raise(NP, sel & 0xfffc);
    if ((this.efer & EFER_LMA) && (hi & 0x200000) && (hi & 0x400000)) this.gp(sel & 0xfffc);
    this.markAccessed();
    this.loadFromDescriptor(CS, (sel & 0xfffc) | newCpl);
    this.cpl = newCpl;
    this.updateMode();
  }

  /** Segment base to add to an effective address for segment `seg`. */
  segBaseFor(seg: number): number {
    if (this.long64 && seg < FS) return 0;
    return this.segBase[seg]!;
  }

  // ---- Stack -----------------------------------------------------------------------------------

  /** Stack pointer width in bytes. */
  spSize(): number {
    return this.long64 ? 8 : this.stack32 ? 4 : 2;
  }

  /** Linear address of SS:(rSP - delta) with the stack width applied. */
  stackLin(delta: number): number {
    if (this.long64) {
      return (this.lo[4]! >>> 0) + this.hi[4]! * TWO32 - delta;
    }
    if (this.stack32) return (this.segBase[SS]! + ((this.lo[4]! - delta) >>> 0)) >>> 0;
    return (this.segBase[SS]! + ((this.lo[4]! - delta) & 0xffff)) >>> 0;
  }

  /** Adds `delta` to rSP with the stack width applied. */
  adjSp(delta: number): void {
    if (this.long64) {
      const l = (this.lo[4]! >>> 0) + delta;
      this.lo[4] = l;
      this.hi[4] = (this.hi[4]! + Math.floor(l / TWO32)) | 0;
    } else if (this.stack32) this.lo[4] = this.lo[4]! + delta;
    else this.lo[4] = (this.lo[4]! & ~0xffff) | ((this.lo[4]! + delta) & 0xffff);
  }

  /** Pushes a 64-bit value given as halves. */
  push64(l: number, h: number): void {
    this.wr64(this.stackLin(8), l, h);
    this.adjSp(-8);
  }

  /** Pushes a number as a 64-bit value (for addresses held as signed numbers). */
  pushNum64(v: number): void {
    this.push64(v | 0, Math.floor(v / TWO32) | 0);
  }

  pushSized(v: number, size: number): void {
    if (size === 8) this.pushNum64(v);
    else if (size === 4) {
      this.wr32(this.stackLin(4), v);
      this.adjSp(-4);
    } else {
      this.wr16(this.stackLin(2), v);
      this.adjSp(-2);
    }
  }

  /** Pops `size` bytes; for 8 the high half goes to `rh`. */
  pop(size: number): number {
    const lin = this.stackLin(0);
    let v: number;
    if (size === 8) v = this.rd64(lin);
    else if (size === 4) v = this.rd32(lin);
    else v = this.rd16(lin);
    this.adjSp(size);
    return v;
  }

  /** Reads the stack at offset `off` from rSP without popping. */
  peek(off: number, size: number): number {
    const lin = this.stackLin(-off);
    if (size === 8) return this.rd64(lin);
    if (size === 4) return this.rd32(lin);
    return this.rd16(lin);
  }

  // ---- Interrupt and exception delivery --------------------------------------------------------

  /**
   * Delivers vector `vec` through the IVT/IDT. `code < 0` means no error code; `soft` marks
   * INT n/INT3/INTO (gate DPL checked); `retIp` is the IP pushed as the return address.
   */
  deliver(vec: number, code: number, soft: boolean, retIp: number, ext: number): void {
    this.halted = false;
    this.materialize();
    if (!(this.cr0 & CR0_PE)) {
      // Real mode: IVT entry is offset:segment at idtBase + 4*vec (SDM Vol. 3, 20.1.4).
      if (vec * 4 + 3 > this.idtLimit) this.gp(0);
      const entry = this.rdSlow(this.idtBase + vec * 4, 4, false);
      this.pushSized(this.flags & 0xffff, 2);
      this.pushSized(this.segSel[CS]!, 2);
      this.pushSized(retIp & 0xffff, 2);
      this.flags &= ~(F_IF | F_TF | F_AC | F_RF);
      this.loadSeg(CS, entry >>> 16);
      this.ip = entry & 0xffff;
      this.fetchIpBase = NaN;
      return;
    }
    const long = (this.efer & EFER_LMA) !== 0;
    const gateSize = long ? 16 : 8;
    const idtErr = vec * 8 + 2 + ext;
    if (vec * gateSize + gateSize - 1 > this.idtLimit) this.gp(idtErr);
    const ga = this.idtBase + vec * gateSize;
    const g0 = this.sysRd32(ga);
    const g1 = this.sysRd32(ga + 4);
    const type = (g1 >> 8) & 0x1f;
    const gdpl = (g1 >> 13) & 3;
    if (long ? (type !== 0xe && type !== 0xf) : (type & 7) < 6 || (type & 0x10)) {
      if (type === 5) throw new UnsupportedError("task gates in the IDT");
      this.gp(idtErr);
    }
    if (soft && gdpl < this.cpl) this.gp(idtErr);
    if (!(g1 & 0x8000)) this.raise(NP, idtErr);
    const trap = (type & 1) !== 0;
    const gate32 = (type & 8) !== 0;
    const sel = g0 >>> 16;
    let offset = (g0 & 0xffff) | (g1 & 0xffff0000);
    if (long) {
      const g2 = this.sysRd32(ga + 8);
      if (((g2 << 16) >> 16) !== g2) this.gp(idtErr);
      offset = g2 * TWO32 + (offset >>> 0);
    } else {
      offset = gate32 ? offset >>> 0 : offset & 0xffff;
    }
    // Target code segment.
    if ((sel & 0xfffc) === 0) this.gp(ext);
    this.readDescriptor(sel);
    const cHi = this.descHi;
    const cType = (cHi >> 8) & 0xf;
    if (!((cHi >> 12) & 1) || !(cType & 8)) this.gp((sel & 0xfffc) | ext);
    let dpl = (cHi >> 13) & 3;
    if (dpl > this.cpl) this.gp((sel & 0xfffc) | ext);
    if (!(cHi & 0x8000)) this.raise(NP, (sel & 0xfffc) | ext);
    if (cType & 4) dpl = this.cpl; // conforming: no privilege change
    const oldCpl = this.cpl;
    const oldFlags = this.getFlags();
    const oldCs = this.segSel[CS]!;
    const oldSs = this.segSel[SS]!;
    const oldSpLo = this.lo[4]!, oldSpHi = this.hi[4]!;
    const savedDescLo = this.descLo, savedDescHi = this.descHi, savedDescAddr = this.descAddr;
    if (long) {
      const ist = g1 & 7;
      let newSp: number;
      if (ist !== 0) newSp = this.tssRd64(0x24 + (ist - 1) * 8);
      else if (dpl < oldCpl) newSp = this.tssRd64(4 + dpl * 8);
      else newSp = oldSpHi * TWO32 + (oldSpLo >>> 0);
      newSp -= newSp & 15; // align to 16 (SDM Vol. 3, 6.14.2)
      // Build the frame on the new stack (supervisor writes).
      let sp = newSp;
      const w64 = (l: number, h: number) => {
        sp -= 8;
        this.sysWr32(sp, l);
        this.sysWr32(sp + 4, h);
      };
      w64(oldSs, 0);
      w64(oldSpLo, oldSpHi);
      w64(oldFlags, 0);
      w64(oldCs, 0);
      w64(retIp | 0, Math.floor(retIp / TWO32) | 0);
      if (code >= 0) w64(code, 0);
      this.descLo = savedDescLo;
      this.descHi = savedDescHi;
      this.descAddr = savedDescAddr;
      this.markAccessed();
      this.loadFromDescriptor(CS, (sel & 0xfffc) | dpl);
      this.cpl = dpl;
      if (dpl < oldCpl) {
        this.segSel[SS] = dpl;
        this.segBase[SS] = 0;
        this.segLimit[SS] = 0;
        this.segAttr[SS] = 0x10000 | (dpl << 5);
      }
      this.lo[4] = sp | 0;
      this.hi[4] = Math.floor(sp / TWO32) | 0;
      this.updateMode();
      this.ip = offset;
    } else {
      const size = gate32 ? 4 : 2;
      let newSsSel = oldSs;
      let sp: number;
      let ssBase: number;
      let ss32: boolean;
      if (dpl < oldCpl) {
        // Stack switch from the 32-bit TSS (SDM Vol. 3, 7.2.1): ESPn at 4+8n, SSn at 8+8n.
        const espN = this.tssRd32(4 + dpl * 8);
        newSsSel = this.tssRd32(8 + dpl * 8) & 0xffff;
        if ((newSsSel & 0xfffc) === 0) this.raise(TS, ext);
        this.readDescriptor(newSsSel, TS);
        const sHi = this.descHi;
        if (
          (newSsSel & 3) !== dpl || ((sHi >> 13) & 3) !== dpl || !((sHi >> 12) & 1) ||
          (sHi & 0x800) || !(sHi & 0x200)
        ) this.raise(TS, (newSsSel & 0xfffc) | ext);
        if (!(sHi & 0x8000)) this.raise(SS_FAULT, (newSsSel & 0xfffc) | ext);
        ssBase = ((this.descLo >>> 16) | ((sHi & 0xff) << 16) | (sHi & 0xff000000)) >>> 0;
        ss32 = (sHi & 0x400000) !== 0;
        sp = espN >>> 0;
        const ssLo = this.descLo, ssHi = sHi;
        const wr = (v: number) => {
          sp = ss32 ? (sp - size) >>> 0 : (sp - size) & 0xffff;
          if (size === 4) this.sysWr32(ssBase + sp, v);
          else this.wrSlow((ssBase + sp) >>> 0, 2, v, false);
        };
        wr(oldSs);
        wr(oldSpLo);
        wr(oldFlags);
        wr(oldCs);
        wr(retIp);
        if (code >= 0) wr(code);
        this.descLo = ssLo;
        this.descHi = ssHi;
        this.loadFromDescriptor(SS, newSsSel);
        this.lo[4] = ss32 ? sp : (this.lo[4]! & ~0xffff) | sp;
      } else {
        ss32 = this.stack32;
        ssBase = this.segBase[SS]!;
        sp = ss32 ? this.lo[4]! >>> 0 : this.lo[4]! & 0xffff;
        const wr = (v: number) => {
          sp = ss32 ? (sp - size) >>> 0 : (sp - size) & 0xffff;
          if (size === 4) this.sysWr32(ssBase + sp, v);
          else this.wrSlow((ssBase + sp) >>> 0, 2, v, false);
        };
        wr(oldFlags);
        wr(oldCs);
        wr(retIp);
        if (code >= 0) wr(code);
        this.lo[4] = ss32 ? sp : (this.lo[4]! & ~0xffff) | sp;
      }
      this.descLo = savedDescLo;
      this.descHi = savedDescHi;
      this.descAddr = savedDescAddr;
      this.markAccessed();
      this.loadFromDescriptor(CS, (sel & 0xfffc) | dpl);
      this.cpl = dpl;
      this.updateMode();
      this.ip = offset;
    }
    this.flags &= ~(F_TF | F_NT | F_RF | F_VM);
    if (!trap) this.flags &= ~F_IF;
    this.fetchIpBase = NaN;
  }

  tssRd32(off: number): number {
    if (off + 3 > this.segLimit[TR]!) this.raise(TS, this.segSel[TR]! & 0xfffc);
    return this.sysRd32(this.segBase[TR]! + off);
  }

  tssRd64(off: number): number {
    const l = this.tssRd32(off);
    const h = this.tssRd32(off + 4);
    if (((h << 16) >> 16) !== h) this.gp(0);
    return h * TWO32 + (l >>> 0);
  }

  /**
   * Delivers an exception or interrupt, escalating to #DF and triple fault by the rules of
   * SDM Vol. 3, Table 6-5. Throws TRIPLE on a triple fault.
   */
  deliverChecked(vec: number, code: number, soft: boolean, retIp: number, ext: number): void {
    let first = -1;
    const savedIp = this.ip;
    this.faultChain = excName(vec);
    for (;;) {
      try {
        this.deliver(vec, code, soft, retIp, ext);
        return;
      } catch (e) {
        if (e !== FAULT) throw e;
        this.ip = savedIp;
        const second = this.excVec;
        this.faultChain += " -> " + excName(second);
        if (vec === DF) throw TRIPLE;
        const contributory = (v: number) => v === 0 || (v >= 10 && v <= 13);
        const cur = first < 0 ? vec : vec;
        if (
          (contributory(cur) && contributory(second)) ||
          (cur === PF && (second === PF || contributory(second)))
        ) {
          vec = DF;
          code = 0;
          this.faultChain += " => #DF";
        } else {
          vec = second;
          code = this.excHasCode ? this.excCode : -1;
        }
        first = vec;
        soft = false;
        ext = 1;
        if (!(this.cr0 & CR0_PE) && vec === DF) throw TRIPLE;
      }
    }
  }

  // ---- Model-specific registers, CPUID, TSC ----------------------------------------------------

  /**
   * The virtual TSC: nanoseconds of VM-clock time (1 GHz; the machine's clock stops while the VM
   * is paused and carries over a restore), never going backwards.
   */
  readTsc(): number {
    let t = Math.floor(this.io.control.now()) + this.tscOffset;
    if (t <= this.lastTsc) t = this.lastTsc + 1;
    this.lastTsc = t;
    return t;
  }

  /** RDMSR: returns a bigint (cold path). #GP for an MSR we do not know. */
  rdmsr(idx: number): bigint {
    switch (idx) {
      case 0xc000_0080:
        return BigInt(this.efer);
      case 0xc000_0081:
        return (BigInt(this.starHi >>> 0) << 32n) | BigInt(this.starLo >>> 0);
      case 0xc000_0082:
        return BigInt.asUintN(64, BigInt(this.lstar));
      case 0xc000_0083:
        return BigInt.asUintN(64, BigInt(this.cstar));
      case 0xc000_0084:
        return BigInt(this.sfmask >>> 0);
      case 0xc000_0100:
        return BigInt.asUintN(64, BigInt(this.segBase[FS]!));
      case 0xc000_0101:
        return BigInt.asUintN(64, BigInt(this.segBase[GS]!));
      case 0xc000_0102:
        return BigInt.asUintN(64, BigInt(this.kernelGsBase));
      case 0x10:
        return BigInt(this.readTsc());
      case 0x10a: // IA32_ARCH_CAPABILITIES, where the model announces it
        if (this.model.archCapabilities !== null) return this.model.archCapabilities;
        break;
    }
    const p = this.io.platform;
    if (p !== undefined) {
      const pv = p.rdmsr(idx);
      if (pv !== undefined) return BigInt(pv);
    }
    const v = this.msrs.get(idx);
    if (v === undefined) this.gp(0);
    return v;
  }

  /** WRMSR. #GP for an unknown MSR or a non-canonical base. */
  wrmsr(idx: number, v: bigint): void {
    const canon = (x: bigint): number => {
      const s = BigInt.asIntN(64, x);
      if (s < -(1n << 47n) || s >= (1n << 47n)) this.gp(0);
      return Number(s);
    };
    switch (idx) {
      case 0xc000_0080:
        this.setEfer(Number(v & 0xffffn));
        return;
      case 0xc000_0081:
        this.starLo = Number(v & 0xffff_ffffn) | 0;
        this.starHi = Number((v >> 32n) & 0xffff_ffffn) | 0;
        return;
      case 0xc000_0082:
        this.lstar = canon(v);
        return;
      case 0xc000_0083:
        this.cstar = canon(v);
        return;
      case 0xc000_0084:
        this.sfmask = Number(v & 0xffff_ffffn) | 0;
        return;
      case 0xc000_0100:
        this.segBase[FS] = canon(v);
        return;
      case 0xc000_0101:
        this.segBase[GS] = canon(v);
        return;
      case 0xc000_0102:
        this.kernelGsBase = canon(v);
        return;
      case 0x10:
        this.tscOffset += Number(v) - this.readTsc();
        return;
    }
    const p = this.io.platform;
    if (p !== undefined) {
      let owned: boolean;
      try {
        owned = p.wrmsr(idx, Number(v));
      } catch (e) {
        if (e instanceof VmmError) this.gp(0); // a value the platform refuses (bad address)
        throw e;
      }
      if (owned) return;
    }
    if (!this.msrs.has(idx)) this.gp(0);
    if (idx === 0xfe) this.gp(0); // MTRRcap is read-only
    this.msrs.set(idx, BigInt.asUintN(64, v));
  }

  // ---- State transfer --------------------------------------------------------------------------

  getSegment(i: number): Segment {
    const a = this.segAttr[i]!;
    return {
      selector: this.segSel[i]! & 0xffff,
      base: BigInt.asUintN(64, BigInt(this.segBase[i]!)),
      limit: this.segLimit[i]! >>> 0,
      type: a & 0xf,
      s: (a >> 4) & 1,
      dpl: (a >> 5) & 3,
      present: (a >> 7) & 1,
      avl: (a >> 12) & 1,
      l: (a >> 13) & 1,
      db: (a >> 14) & 1,
      g: (a >> 15) & 1,
      unusable: (a >> 16) & 1,
    };
  }

  setSegment(i: number, s: Segment): void {
    this.segSel[i] = s.selector & 0xffff;
    const b = BigInt.asIntN(64, s.base);
    this.segBase[i] = b >= -(1n << 52n) && b < (1n << 52n) ? Number(b) : 0;
    this.segLimit[i] = s.limit >>> 0;
    this.segAttr[i] = (s.type & 0xf) | ((s.s & 1) << 4) | ((s.dpl & 3) << 5) |
      ((s.present & 1) << 7) | ((s.avl & 1) << 12) | ((s.l & 1) << 13) | ((s.db & 1) << 14) |
      ((s.g & 1) << 15) | ((s.unusable & 1) << 16);
  }

  getState(): CpuState {
    const gpr: bigint[] = [];
    for (let i = 0; i < 16; i++) {
      gpr.push((BigInt(this.hi[i]! >>> 0) << 32n) | BigInt(this.lo[i]! >>> 0));
    }
    const msrs = new Map(this.msrs);
    msrs.set(0xc000_0081, this.rdmsr(0xc000_0081));
    msrs.set(0xc000_0082, this.rdmsr(0xc000_0082));
    msrs.set(0xc000_0083, this.rdmsr(0xc000_0083));
    msrs.set(0xc000_0084, this.rdmsr(0xc000_0084));
    msrs.set(0xc000_0102, this.rdmsr(0xc000_0102));
    msrs.set(0x10, BigInt(this.readTsc()));
    return {
      gpr,
      rip: BigInt.asUintN(64, BigInt(this.ip)),
      rflags: this.getFlags() >>> 0,
      cs: this.getSegment(CS),
      ds: this.getSegment(DS),
      es: this.getSegment(ES),
      fs: this.getSegment(FS),
      gs: this.getSegment(GS),
      ss: this.getSegment(SS),
      tr: this.getSegment(TR),
      ldt: this.getSegment(LDTR),
      gdt: { base: BigInt.asUintN(64, BigInt(this.gdtBase)), limit: this.gdtLimit },
      idt: { base: BigInt.asUintN(64, BigInt(this.idtBase)), limit: this.idtLimit },
      cr0: this.cr0 >>> 0,
      cr2: BigInt.asUintN(64, BigInt(this.cr2)),
      cr3: BigInt(this.cr3),
      cr4: this.cr4,
      cr8: this.cr8,
      efer: this.efer,
      msrs,
      fpu: {
        ...(x87ToFpuState(this), this.fpu),
        st: this.fpu.st.slice(),
        xmm: this.fpu.xmm.slice(),
      },
      halted: this.halted,
      // Interrupts and exceptions are delivered whole, so only the shadow is ever in flight.
      events: { ...noCpuEvents(), shadow: this.shadow ? 1 : 0 },
      debug: {
        dr0: this.#drValue(0),
        dr1: this.#drValue(1),
        dr2: this.#drValue(2),
        dr3: this.#drValue(3),
        dr6: this.#drValue(6),
        dr7: this.#drValue(7),
      },
      // No XSAVE in this CPU's CPUID: XCR0 is x87 only and there is no XSAVE area.
      xcr0: 1n,
      xsave: null,
      mpState: this.halted ? "halted" : "runnable",
    };
  }

  /** DR0..DR7 at reset: DR6 0xFFFF0FF0, DR7 0x400 (SDM Vol. 3, 18.2), the others 0. */
  static resetDr(): Int32Array {
    const dr = new Int32Array(16);
    dr[12] = 0xffff_0ff0 | 0;
    dr[14] = 0x400;
    return dr;
  }

  #drValue(n: number): bigint {
    return (BigInt(this.dr[n * 2 + 1]! >>> 0) << 32n) | BigInt(this.dr[n * 2]! >>> 0);
  }

  setState(s: CpuState): void {
    for (let i = 0; i < 16; i++) {
      const v = s.gpr[i] ?? 0n;
      this.lo[i] = Number(v & 0xffff_ffffn) | 0;
      this.hi[i] = Number((v >> 32n) & 0xffff_ffffn) | 0;
    }
    this.setSegment(CS, s.cs);
    this.setSegment(DS, s.ds);
    this.setSegment(ES, s.es);
    this.setSegment(FS, s.fs);
    this.setSegment(GS, s.gs);
    this.setSegment(SS, s.ss);
    this.setSegment(TR, s.tr);
    this.setSegment(LDTR, s.ldt);
    const toNum = (v: bigint) => {
      const x = BigInt.asIntN(64, v);
      return x >= -(1n << 52n) && x < (1n << 52n) ? Number(x) : 0;
    };
    this.gdtBase = toNum(s.gdt.base);
    this.gdtLimit = s.gdt.limit & 0xffff;
    this.idtBase = toNum(s.idt.base);
    this.idtLimit = s.idt.limit & 0xffff;
    this.cr0 = s.cr0 >>> 0;
    this.cr2 = toNum(s.cr2);
    this.cr3 = Number(BigInt.asUintN(52, s.cr3));
    this.cr4 = s.cr4;
    this.cr8 = s.cr8;
    this.efer = s.efer;
    this.lop = LF_NONE;
    this.flags = (s.rflags | 2) >>> 0;
    this.cpl = (this.cr0 & CR0_PE) ? s.cs.dpl : 0;
    if ((this.cr0 & CR0_PE) && s.ss.dpl !== s.cs.dpl && !(s.cs.type & 4)) this.cpl = s.cs.dpl;
    this.msrs = defaultMsrs(this.intel);
    for (const [k, v] of s.msrs) {
      switch (k) {
        case 0xc000_0080:
        case 0xc000_0100:
        case 0xc000_0101:
          break; // EFER and FS/GS bases come from their own fields
        case 0xc000_0081:
          this.starLo = Number(v & 0xffff_ffffn) | 0;
          this.starHi = Number((v >> 32n) & 0xffff_ffffn) | 0;
          break;
        case 0xc000_0082:
          this.lstar = toNum(v);
          break;
        case 0xc000_0083:
          this.cstar = toNum(v);
          break;
        case 0xc000_0084:
          this.sfmask = Number(v & 0xffff_ffffn) | 0;
          break;
        case 0xc000_0102:
          this.kernelGsBase = toNum(v);
          break;
        case 0x10:
          this.tscOffset = 0;
          this.lastTsc = 0;
          this.tscOffset = Number(v) - Math.floor(this.io.control.now());
          break;
        default:
          this.msrs.set(k, v);
      }
    }
    this.fpu = { ...s.fpu, st: s.fpu.st.slice(), xmm: s.fpu.xmm.slice() };
    x87FromFpuState(this);
    // A KVM state's xsave area adds only AVX and up, which this CPU lacks: `fpu` is all it uses.
    this.halted = s.halted || s.mpState === "halted";
    const d = s.debug;
    [d.dr0, d.dr1, d.dr2, d.dr3, d.dr6, d.dr6, d.dr6, d.dr7].forEach((v, n) => {
      this.dr[n * 2] = Number(v & 0xffff_ffffn) | 0;
      this.dr[n * 2 + 1] = Number((v >> 32n) & 0xffff_ffffn) | 0;
    });
    this.shadow = s.events.shadow !== 0;
    this.updateMode();
    this.ip = this.long64 ? toNum(s.rip) : Number(s.rip & 0xffff_ffffn);
    this.flushTlb();
    this.flushDecoded();
  }
}

const EXC_NAMES = [
  "DE",
  "DB",
  "NMI",
  "BP",
  "OF",
  "BR",
  "UD",
  "NM",
  "DF",
  "CSO",
  "TS",
  "NP",
  "SS",
  "GP",
  "PF",
  "15",
  "MF",
  "AC",
  "MC",
  "XM",
];

/** "#GP" for 13, "vector 0x20" for interrupts. */
export function excName(vec: number): string {
  return vec < EXC_NAMES.length ? "#" + EXC_NAMES[vec]! : `vector 0x${vec.toString(16)}`;
}

/** Unsigned 64-bit a < b for halves (returns 0/1). */
export function ult64(ah: number, al: number, bh: number, bl: number): number {
  if (ah !== bh) return (ah >>> 0) < (bh >>> 0) ? 1 : 0;
  return (al >>> 0) < (bl >>> 0) ? 1 : 0;
}

/** Code was fetched from a physical address that is not RAM. */
export class ExecOutsideRamError extends Error {
  constructor(readonly phys: number, readonly lin: number) {
    super(
      `CPU tried to execute code at linear 0x${lin.toString(16)} (physical 0x${
        phys.toString(16)
      }), which is not RAM`,
    );
  }
}

/** The guest used a CPU feature this interpreter does not implement. */
export class UnsupportedError extends Error {
  constructor(what: string) {
    super(`The interpreter does not implement ${what}`);
  }
}

export { CR0_PE, CR0_PG, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE };
