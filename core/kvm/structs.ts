/**
 * Pure encoders and decoders for the KVM structs the backend exchanges with the kernel
 * (`kvm_regs`, `kvm_sregs`, `kvm_fpu`, `kvm_msrs`, `kvm_cpuid2`, `kvm_userspace_memory_region`
 * and the exit fields of `kvm_run`), to and from the architectural `CpuState`. Everything here
 * works on DataViews over plain bytes, so it is tested without /dev/kvm.
 */

import type {
  CpuEvents,
  CpuState,
  DebugRegs,
  DescriptorTable,
  FpuState,
  MpState,
  Segment,
} from "../cpu_state.ts";
import { MP_STATES, MSR, noCpuEvents, resetDebugRegs } from "../cpu_state.ts";
import {
  KVM_CPUID2_HEADER_SIZE,
  KVM_CPUID_ENTRY2_SIZE,
  KVM_DEBUGREGS_SIZE,
  KVM_DTABLE_SIZE,
  KVM_FPU_SIZE,
  KVM_MAX_XCRS,
  KVM_MP_STATE_SIZE,
  KVM_MSR_ENTRY_SIZE,
  KVM_MSRS_HEADER_SIZE,
  KVM_REGS_SIZE,
  KVM_SEGMENT_SIZE,
  KVM_SREGS_SIZE,
  KVM_USERSPACE_MEMORY_REGION_SIZE,
  KVM_VCPU_EVENTS_SIZE,
  KVM_VCPUEVENT_VALID_NMI_PENDING,
  KVM_VCPUEVENT_VALID_SHADOW,
  KVM_XCRS_SIZE,
  RUN_EXIT_REASON,
  RUN_FAIL_ENTRY_CPU,
  RUN_FAIL_ENTRY_REASON,
  RUN_INTERNAL_DATA,
  RUN_INTERNAL_NDATA,
  RUN_INTERNAL_SUBERROR,
  RUN_IO_COUNT,
  RUN_IO_DATA_OFFSET,
  RUN_IO_DIRECTION,
  RUN_IO_PORT,
  RUN_IO_SIZE,
  RUN_MMIO_DATA,
  RUN_MMIO_IS_WRITE,
  RUN_MMIO_LEN,
  RUN_MMIO_PHYS_ADDR,
  XFEATURE_MASK_FPSSE,
  XSAVE_MXCSR,
  XSAVE_XSTATE_BV,
} from "./constants.ts";

// ---- kvm_regs ----

/**
 * For each u64 slot of `struct kvm_regs` (rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8..r15), the
 * index of that register in `CpuState.gpr` (encoding order rax, rcx, rdx, rbx, rsp, rbp, ...).
 */
export const KVM_REGS_GPR_ORDER: readonly number[] = [
  0,
  3,
  1,
  2,
  6,
  7,
  4,
  5,
  8,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
];
/** Offset of rip in kvm_regs. */
export const KVM_REGS_RIP = 128;
/** Offset of rflags in kvm_regs. */
export const KVM_REGS_RFLAGS = 136;

/** The parts of CpuState that `kvm_regs` holds. */
export type RegsPart = Pick<CpuState, "gpr" | "rip" | "rflags">;

/** Writes GPRs, RIP and RFLAGS as `struct kvm_regs` at `off` in `v`. */
export function encodeRegs(s: RegsPart, v: DataView, off = 0): void {
  for (let i = 0; i < 16; i++) {
    v.setBigUint64(off + i * 8, BigInt.asUintN(64, s.gpr[KVM_REGS_GPR_ORDER[i]!] ?? 0n), true);
  }
  v.setBigUint64(off + KVM_REGS_RIP, BigInt.asUintN(64, s.rip), true);
  v.setBigUint64(off + KVM_REGS_RFLAGS, BigInt(s.rflags >>> 0), true);
}

/** Reads `struct kvm_regs` at `off` in `v`. */
export function decodeRegs(v: DataView, off = 0): RegsPart {
  const gpr = new Array<bigint>(16).fill(0n);
  for (let i = 0; i < 16; i++) gpr[KVM_REGS_GPR_ORDER[i]!] = v.getBigUint64(off + i * 8, true);
  return {
    gpr,
    rip: v.getBigUint64(off + KVM_REGS_RIP, true),
    // RFLAGS' defined bits all lie below bit 22; the upper half is reserved zero.
    rflags: v.getUint32(off + KVM_REGS_RFLAGS, true),
  };
}

// ---- kvm_segment / kvm_dtable ----

/** Field offsets of `struct kvm_segment`. */
export const SEG = {
  base: 0,
  limit: 8,
  selector: 12,
  type: 14,
  present: 15,
  dpl: 16,
  db: 17,
  s: 18,
  l: 19,
  g: 20,
  avl: 21,
  unusable: 22,
} as const;

/** Writes `struct kvm_segment` at `off`. */
export function encodeSegment(g: Segment, v: DataView, off: number): void {
  v.setBigUint64(off + SEG.base, BigInt.asUintN(64, g.base), true);
  v.setUint32(off + SEG.limit, g.limit >>> 0, true);
  v.setUint16(off + SEG.selector, g.selector, true);
  v.setUint8(off + SEG.type, g.type);
  v.setUint8(off + SEG.present, g.present);
  v.setUint8(off + SEG.dpl, g.dpl);
  v.setUint8(off + SEG.db, g.db);
  v.setUint8(off + SEG.s, g.s);
  v.setUint8(off + SEG.l, g.l);
  v.setUint8(off + SEG.g, g.g);
  v.setUint8(off + SEG.avl, g.avl);
  v.setUint8(off + SEG.unusable, g.unusable);
  v.setUint8(off + 23, 0);
}

/** Reads `struct kvm_segment` at `off`. */
export function decodeSegment(v: DataView, off: number): Segment {
  return {
    selector: v.getUint16(off + SEG.selector, true),
    base: v.getBigUint64(off + SEG.base, true),
    limit: v.getUint32(off + SEG.limit, true),
    type: v.getUint8(off + SEG.type),
    s: v.getUint8(off + SEG.s),
    dpl: v.getUint8(off + SEG.dpl),
    present: v.getUint8(off + SEG.present),
    l: v.getUint8(off + SEG.l),
    db: v.getUint8(off + SEG.db),
    g: v.getUint8(off + SEG.g),
    avl: v.getUint8(off + SEG.avl),
    unusable: v.getUint8(off + SEG.unusable),
  };
}

/** Writes `struct kvm_dtable` (base u64, limit u16, padding) at `off`. */
export function encodeDtable(t: DescriptorTable, v: DataView, off: number): void {
  v.setBigUint64(off, BigInt.asUintN(64, t.base), true);
  v.setUint16(off + 8, t.limit, true);
  for (let i = 10; i < KVM_DTABLE_SIZE; i++) v.setUint8(off + i, 0);
}

/** Reads `struct kvm_dtable` at `off`. */
export function decodeDtable(v: DataView, off: number): DescriptorTable {
  return { base: v.getBigUint64(off, true), limit: v.getUint16(off + 8, true) };
}

// ---- kvm_sregs ----

/** Segment registers in `struct kvm_sregs` order. */
export const SREGS_SEGMENTS = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
/** Field offsets of `struct kvm_sregs`. */
export const SREGS = {
  gdt: 8 * KVM_SEGMENT_SIZE,
  idt: 8 * KVM_SEGMENT_SIZE + KVM_DTABLE_SIZE,
  cr0: 224,
  cr2: 232,
  cr3: 240,
  cr4: 248,
  cr8: 256,
  efer: 264,
  apicBase: 272,
  interruptBitmap: 280,
} as const;

/** The parts of CpuState that `kvm_sregs` holds (apic_base travels separately). */
export type SregsPart = Pick<
  CpuState,
  | "cs"
  | "ds"
  | "es"
  | "fs"
  | "gs"
  | "ss"
  | "tr"
  | "ldt"
  | "gdt"
  | "idt"
  | "cr0"
  | "cr2"
  | "cr3"
  | "cr4"
  | "cr8"
  | "efer"
>;

/**
 * Writes `struct kvm_sregs` at `off`. `apicBase` is the APIC base MSR value; the pending
 * interrupt bitmap is written as zero (no interrupt is injected through SET_SREGS).
 */
export function encodeSregs(s: SregsPart, apicBase: bigint, v: DataView, off = 0): void {
  SREGS_SEGMENTS.forEach((name, i) => encodeSegment(s[name], v, off + i * KVM_SEGMENT_SIZE));
  encodeDtable(s.gdt, v, off + SREGS.gdt);
  encodeDtable(s.idt, v, off + SREGS.idt);
  v.setBigUint64(off + SREGS.cr0, BigInt(s.cr0 >>> 0), true);
  v.setBigUint64(off + SREGS.cr2, BigInt.asUintN(64, s.cr2), true);
  v.setBigUint64(off + SREGS.cr3, BigInt.asUintN(64, s.cr3), true);
  v.setBigUint64(off + SREGS.cr4, BigInt(s.cr4 >>> 0), true);
  v.setBigUint64(off + SREGS.cr8, BigInt(s.cr8 >>> 0), true);
  v.setBigUint64(off + SREGS.efer, BigInt(s.efer >>> 0), true);
  v.setBigUint64(off + SREGS.apicBase, BigInt.asUintN(64, apicBase), true);
  for (let i = 0; i < 4; i++) v.setBigUint64(off + SREGS.interruptBitmap + i * 8, 0n, true);
}

/** What `decodeSregs` returns: the CpuState part plus the fields CpuState keeps elsewhere. */
export interface DecodedSregs extends SregsPart {
  /** The APIC base MSR. */
  apicBase: bigint;
  /** The 256-bit pending-interrupt bitmap as 4 × u64. */
  interruptBitmap: bigint[];
}

/** Reads `struct kvm_sregs` at `off`. */
export function decodeSregs(v: DataView, off = 0): DecodedSregs {
  const seg = (i: number) => decodeSegment(v, off + i * KVM_SEGMENT_SIZE);
  const u64 = (o: number) => v.getBigUint64(off + o, true);
  const bitmap: bigint[] = [];
  for (let i = 0; i < 4; i++) bitmap.push(u64(SREGS.interruptBitmap + i * 8));
  return {
    cs: seg(0),
    ds: seg(1),
    es: seg(2),
    fs: seg(3),
    gs: seg(4),
    ss: seg(5),
    tr: seg(6),
    ldt: seg(7),
    gdt: decodeDtable(v, off + SREGS.gdt),
    idt: decodeDtable(v, off + SREGS.idt),
    // CR0, CR4, CR8 and EFER have no defined bits above bit 31.
    cr0: v.getUint32(off + SREGS.cr0, true),
    cr2: u64(SREGS.cr2),
    cr3: u64(SREGS.cr3),
    cr4: v.getUint32(off + SREGS.cr4, true),
    cr8: v.getUint32(off + SREGS.cr8, true),
    efer: v.getUint32(off + SREGS.efer, true),
    apicBase: u64(SREGS.apicBase),
    interruptBitmap: bitmap,
  };
}

// ---- kvm_fpu ----

/** Field offsets of `struct kvm_fpu`. */
export const FPU = {
  fpr: 0,
  fcw: 128,
  fsw: 130,
  ftwx: 132,
  lastOpcode: 134,
  lastIp: 136,
  lastDp: 144,
  xmm: 152,
  mxcsr: 408,
} as const;

/** Writes `struct kvm_fpu` at `off`. */
export function encodeFpu(f: FpuState, v: DataView, off = 0): void {
  const bytes = new Uint8Array(v.buffer, v.byteOffset + off, KVM_FPU_SIZE);
  bytes.fill(0);
  bytes.set(f.st.subarray(0, 128), FPU.fpr);
  v.setUint16(off + FPU.fcw, f.fcw, true);
  v.setUint16(off + FPU.fsw, f.fsw, true);
  v.setUint8(off + FPU.ftwx, f.ftw);
  v.setUint16(off + FPU.lastOpcode, f.fop, true);
  v.setBigUint64(off + FPU.lastIp, BigInt.asUintN(64, f.fip), true);
  v.setBigUint64(off + FPU.lastDp, BigInt.asUintN(64, f.fdp), true);
  bytes.set(f.xmm.subarray(0, 256), FPU.xmm);
  v.setUint32(off + FPU.mxcsr, f.mxcsr >>> 0, true);
}

/** Reads `struct kvm_fpu` at `off`. */
export function decodeFpu(v: DataView, off = 0): FpuState {
  const bytes = new Uint8Array(v.buffer, v.byteOffset + off, KVM_FPU_SIZE);
  return {
    fcw: v.getUint16(off + FPU.fcw, true),
    fsw: v.getUint16(off + FPU.fsw, true),
    ftw: v.getUint8(off + FPU.ftwx),
    fop: v.getUint16(off + FPU.lastOpcode, true),
    fip: v.getBigUint64(off + FPU.lastIp, true),
    fdp: v.getBigUint64(off + FPU.lastDp, true),
    mxcsr: v.getUint32(off + FPU.mxcsr, true),
    st: bytes.slice(FPU.fpr, FPU.fpr + 128),
    xmm: bytes.slice(FPU.xmm, FPU.xmm + 256),
  };
}

// ---- kvm_msrs ----

/** A `struct kvm_msrs` buffer with room for `n` entries. */
export function allocMsrs(n: number): Uint8Array {
  return new Uint8Array(KVM_MSRS_HEADER_SIZE + n * KVM_MSR_ENTRY_SIZE);
}

/** Encodes `struct kvm_msrs` with the given (index, value) entries. */
export function encodeMsrs(entries: readonly (readonly [number, bigint])[]): Uint8Array {
  const buf = allocMsrs(entries.length);
  const v = new DataView(buf.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach(([index, value], i) => {
    const o = KVM_MSRS_HEADER_SIZE + i * KVM_MSR_ENTRY_SIZE;
    v.setUint32(o, index >>> 0, true);
    v.setBigUint64(o + 8, BigInt.asUintN(64, value), true);
  });
  return buf;
}

/** Decodes the first `count` entries of a `struct kvm_msrs` buffer (default: its nmsrs). */
export function decodeMsrs(buf: Uint8Array, count?: number): [number, bigint][] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = count ?? v.getUint32(0, true);
  const out: [number, bigint][] = [];
  for (let i = 0; i < n; i++) {
    const o = KVM_MSRS_HEADER_SIZE + i * KVM_MSR_ENTRY_SIZE;
    out.push([v.getUint32(o, true), v.getBigUint64(o + 8, true)]);
  }
  return out;
}

// ---- kvm_cpuid2 ----

/** One `struct kvm_cpuid_entry2`. */
export interface CpuidEntry {
  /** CPUID leaf (EAX input). */
  function: number;
  /** Subleaf (ECX input). */
  index: number;
  /** KVM_CPUID_FLAG_* bits. */
  flags: number;
  /** Output EAX. */
  eax: number;
  /** Output EBX. */
  ebx: number;
  /** Output ECX. */
  ecx: number;
  /** Output EDX. */
  edx: number;
}

/** A `struct kvm_cpuid2` buffer with room for `n` entries and nent = n. */
export function allocCpuid2(n: number): Uint8Array {
  const buf = new Uint8Array(KVM_CPUID2_HEADER_SIZE + n * KVM_CPUID_ENTRY2_SIZE);
  new DataView(buf.buffer).setUint32(0, n, true);
  return buf;
}

/** Decodes the entries of a `struct kvm_cpuid2` buffer. */
export function decodeCpuid2(buf: Uint8Array): CpuidEntry[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = v.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = KVM_CPUID2_HEADER_SIZE + i * KVM_CPUID_ENTRY2_SIZE;
    out.push({
      function: v.getUint32(o, true),
      index: v.getUint32(o + 4, true),
      flags: v.getUint32(o + 8, true),
      eax: v.getUint32(o + 12, true),
      ebx: v.getUint32(o + 16, true),
      ecx: v.getUint32(o + 20, true),
      edx: v.getUint32(o + 24, true),
    });
  }
  return out;
}

/** Encodes a `struct kvm_cpuid2` with the given entries. */
export function encodeCpuid2(entries: readonly CpuidEntry[]): Uint8Array {
  const buf = allocCpuid2(entries.length);
  const v = new DataView(buf.buffer);
  entries.forEach((e, i) => {
    const o = KVM_CPUID2_HEADER_SIZE + i * KVM_CPUID_ENTRY2_SIZE;
    v.setUint32(o, e.function >>> 0, true);
    v.setUint32(o + 4, e.index >>> 0, true);
    v.setUint32(o + 8, e.flags >>> 0, true);
    v.setUint32(o + 12, e.eax >>> 0, true);
    v.setUint32(o + 16, e.ebx >>> 0, true);
    v.setUint32(o + 20, e.ecx >>> 0, true);
    v.setUint32(o + 24, e.edx >>> 0, true);
  });
  return buf;
}

// ---- kvm_userspace_memory_region ----

/** One memory slot as `KVM_SET_USER_MEMORY_REGION` takes it. */
export interface UserMemoryRegion {
  /** Slot number (0, 1, ...). */
  slot: number;
  /** KVM_MEM_* flags. */
  flags: number;
  /** First guest-physical address. */
  guestPhysAddr: number;
  /** Size in bytes. */
  memorySize: number;
  /** Host virtual address of the first byte. */
  userspaceAddr: bigint;
}

/** Encodes `struct kvm_userspace_memory_region`. */
export function encodeMemoryRegion(r: UserMemoryRegion): Uint8Array {
  const buf = new Uint8Array(KVM_USERSPACE_MEMORY_REGION_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, r.slot, true);
  v.setUint32(4, r.flags, true);
  v.setBigUint64(8, BigInt(r.guestPhysAddr), true);
  v.setBigUint64(16, BigInt(r.memorySize), true);
  v.setBigUint64(24, r.userspaceAddr, true);
  return buf;
}

/** Decodes `struct kvm_userspace_memory_region`. */
export function decodeMemoryRegion(buf: Uint8Array): UserMemoryRegion {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    slot: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    guestPhysAddr: Number(v.getBigUint64(8, true)),
    memorySize: Number(v.getBigUint64(16, true)),
    userspaceAddr: v.getBigUint64(24, true),
  };
}

// ---- CpuState <-> kvm structs ----

/** kvmclock's MSRs (as devices/kvm_clock.ts names them). */
export const MSR_KVM_WALL_CLOCK_NEW = 0x4b56_4d00, MSR_KVM_SYSTEM_TIME_NEW = 0x4b56_4d01;

/** The MSRs the backend reads into `CpuState.msrs` (EFER, FS/GS base travel in sregs). */
export const STATE_MSRS: readonly number[] = [
  MSR.STAR,
  MSR.LSTAR,
  MSR.CSTAR,
  MSR.SFMASK,
  MSR.KERNEL_GS_BASE,
  MSR.SYSENTER_CS,
  MSR.SYSENTER_ESP,
  MSR.SYSENTER_EIP,
  MSR.PAT,
  MSR.TSC,
  // kvmclock registration (KVM's paravirtual clock; the clock itself is KVM_GET_CLOCK).
  MSR_KVM_WALL_CLOCK_NEW,
  MSR_KVM_SYSTEM_TIME_NEW,
];

/** Builds a CpuState from decoded kvm_regs, kvm_sregs, kvm_fpu and MSR entries. */
export function cpuStateFromKvm(
  regs: RegsPart,
  sregs: DecodedSregs,
  rest: {
    fpu: FpuState;
    msrs: readonly (readonly [number, bigint])[];
    halted: boolean;
    events?: CpuEvents;
    debug?: DebugRegs;
    xcr0?: bigint;
    xsave?: Uint8Array | null;
    mpState?: MpState;
  },
): CpuState {
  const msrs = new Map<number, bigint>();
  for (const [i, v] of rest.msrs) msrs.set(i, v);
  msrs.set(MSR.APIC_BASE, sregs.apicBase);
  return {
    gpr: regs.gpr,
    rip: regs.rip,
    rflags: regs.rflags,
    cs: sregs.cs,
    ds: sregs.ds,
    es: sregs.es,
    fs: sregs.fs,
    gs: sregs.gs,
    ss: sregs.ss,
    tr: sregs.tr,
    ldt: sregs.ldt,
    gdt: sregs.gdt,
    idt: sregs.idt,
    cr0: sregs.cr0,
    cr2: sregs.cr2,
    cr3: sregs.cr3,
    cr4: sregs.cr4,
    cr8: sregs.cr8,
    efer: sregs.efer,
    msrs,
    fpu: rest.fpu,
    halted: rest.halted,
    events: rest.events ?? noCpuEvents(),
    debug: rest.debug ?? resetDebugRegs(),
    xcr0: rest.xcr0 ?? 1n,
    xsave: rest.xsave ?? null,
    mpState: rest.halted ? "halted" : rest.mpState ?? "runnable",
  };
}

/**
 * Decodes `struct kvm_vcpu_events` (exception at 0: injected, nr, has_error_code, pending,
 * error_code; interrupt at 8: injected, nr, soft, shadow; nmi at 12: injected, pending, masked).
 */
export function decodeEvents(dv: DataView): CpuEvents {
  const u8 = (o: number) => dv.getUint8(o);
  return {
    shadow: u8(11),
    interrupt: u8(8) !== 0 ? u8(9) : -1,
    interruptSoft: u8(8) !== 0 && u8(10) !== 0,
    exception: u8(0) !== 0 || u8(3) !== 0 ? u8(1) : -1,
    exceptionErrorCode: (u8(0) !== 0 || u8(3) !== 0) && u8(2) !== 0 ? dv.getUint32(4, true) : -1,
    nmiInjected: u8(12) !== 0,
    nmiPending: u8(13) !== 0,
    nmiMasked: u8(14) !== 0,
  };
}

/** Encodes `e` as `struct kvm_vcpu_events` for KVM_SET_VCPU_EVENTS (NMI pending and shadow valid). */
export function encodeEvents(e: CpuEvents): Uint8Array {
  const b = new Uint8Array(KVM_VCPU_EVENTS_SIZE);
  const dv = new DataView(b.buffer);
  if (e.exception >= 0) {
    b[0] = 1;
    b[1] = e.exception & 0xff;
    if (e.exceptionErrorCode >= 0) {
      b[2] = 1;
      dv.setUint32(4, e.exceptionErrorCode >>> 0, true);
    }
  }
  if (e.interrupt >= 0) {
    b[8] = 1;
    b[9] = e.interrupt & 0xff;
    b[10] = e.interruptSoft ? 1 : 0;
  }
  b[11] = e.shadow & 3;
  b[12] = e.nmiInjected ? 1 : 0;
  b[13] = e.nmiPending ? 1 : 0;
  b[14] = e.nmiMasked ? 1 : 0;
  dv.setUint32(20, KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW, true);
  return b;
}

/**
 * The XCR0 bits a guest with this CPUID may set: 1 (x87) alone unless leaf 1 announces XSAVE
 * (ECX bit 26), else x87 plus leaf 0xD subleaf 0's EDX:EAX (what KVM itself allows in XSETBV).
 */
export function supportedXcr0(cpuid: readonly CpuidEntry[]): bigint {
  const leaf1 = cpuid.find((e) => e.function === 1);
  if (leaf1 === undefined || (leaf1.ecx & (1 << 26)) === 0) return 1n;
  const d = cpuid.find((e) => e.function === 0xd && e.index === 0);
  if (d === undefined) return 1n;
  return 1n | BigInt(d.eax >>> 0) | (BigInt(d.edx >>> 0) << 32n);
}

/** Decodes `struct kvm_debugregs`: db[4] at 0, dr6 at 32, dr7 at 40 (flags and reserved after). */
export function decodeDebugRegs(dv: DataView): DebugRegs {
  const q = (o: number) => dv.getBigUint64(o, true);
  return { dr0: q(0), dr1: q(8), dr2: q(16), dr3: q(24), dr6: q(32), dr7: q(40) };
}

/** Encodes `d` as `struct kvm_debugregs` for KVM_SET_DEBUGREGS (flags 0, as KVM requires). */
export function encodeDebugRegs(d: DebugRegs): Uint8Array {
  const b = new Uint8Array(KVM_DEBUGREGS_SIZE);
  const dv = new DataView(b.buffer);
  const vals = [d.dr0, d.dr1, d.dr2, d.dr3, d.dr6, d.dr7];
  vals.forEach((v, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, v), true));
  return b;
}

/** Decodes `struct kvm_xcrs` into [index, value] pairs (nr_xcrs of them, at most KVM_MAX_XCRS). */
export function decodeXcrs(dv: DataView): [number, bigint][] {
  const n = Math.min(dv.getUint32(0, true), KVM_MAX_XCRS);
  const out: [number, bigint][] = [];
  for (let i = 0; i < n; i++) {
    out.push([dv.getUint32(8 + i * 16, true), dv.getBigUint64(8 + i * 16 + 8, true)]);
  }
  return out;
}

/** Encodes [index, value] pairs as `struct kvm_xcrs` for KVM_SET_XCRS. */
export function encodeXcrs(xcrs: readonly (readonly [number, bigint])[]): Uint8Array {
  if (xcrs.length > KVM_MAX_XCRS) throw new RangeError(`at most ${KVM_MAX_XCRS} XCRs`);
  const b = new Uint8Array(KVM_XCRS_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, xcrs.length, true);
  xcrs.forEach(([index, value], i) => {
    dv.setUint32(8 + i * 16, index >>> 0, true);
    dv.setBigUint64(8 + i * 16 + 8, BigInt.asUintN(64, value), true);
  });
  return b;
}

/** Decodes `struct kvm_mp_state` (an unknown number is an error: the state would be lost). */
export function decodeMpState(dv: DataView): MpState {
  const n = dv.getUint32(0, true);
  const name = MP_STATES[n];
  if (name === undefined) throw new RangeError(`unknown KVM_MP_STATE ${n}`);
  return name;
}

/** Encodes `m` as `struct kvm_mp_state`. */
export function encodeMpState(m: MpState): Uint8Array {
  const b = new Uint8Array(KVM_MP_STATE_SIZE);
  new DataView(b.buffer).setUint32(0, MP_STATES.indexOf(m), true);
  return b;
}

/**
 * Writes `f` into the legacy (FXSAVE) region of an XSAVE image and marks x87 and SSE present in
 * XSTATE_BV, so KVM_SET_XSAVE restores exactly `f` and leaves the state beyond SSE as `xsave`
 * holds it.
 */
export function putFpuInXsave(f: FpuState, xsave: DataView): void {
  xsave.setUint16(0, f.fcw, true);
  xsave.setUint16(2, f.fsw, true);
  xsave.setUint8(4, f.ftw & 0xff);
  xsave.setUint8(5, 0);
  xsave.setUint16(6, f.fop, true);
  xsave.setBigUint64(8, BigInt.asUintN(64, f.fip), true);
  xsave.setBigUint64(16, BigInt.asUintN(64, f.fdp), true);
  xsave.setUint32(XSAVE_MXCSR, f.mxcsr >>> 0, true);
  const u8 = new Uint8Array(xsave.buffer, xsave.byteOffset, xsave.byteLength);
  u8.set(f.st.subarray(0, 128), 32);
  u8.set(f.xmm.subarray(0, 256), 160);
  xsave.setUint32(
    XSAVE_XSTATE_BV,
    xsave.getUint32(XSAVE_XSTATE_BV, true) | XFEATURE_MASK_FPSSE,
    true,
  );
}

/**
 * MSRs the interpreter's CpuState carries that describe the (virtual) platform rather than the
 * guest's state, which KVM refuses in KVM_SET_MSRS and answers itself: IA32_MTRRCAP (0xFE,
 * read-only), the microcode revision (0x8B), AMD SYSCFG (0xC0010010) and HWCR (0xC0010015).
 */
export const READ_ONLY_MSRS: ReadonlySet<number> = new Set([0xfe, 0x8b, 0xc001_0010, 0xc001_0015]);

/**
 * The MSR entries `KVM_SET_MSRS` gets for a CpuState (everything but APIC_BASE, EFER, the FS/GS
 * bases, which travel in the segment registers and sregs, and the read-only READ_ONLY_MSRS).
 */
export function msrEntriesOf(s: CpuState): [number, bigint][] {
  const out: [number, bigint][] = [];
  for (const [i, v] of s.msrs) {
    if (i === MSR.APIC_BASE || i === MSR.EFER || i === MSR.FS_BASE || i === MSR.GS_BASE) continue;
    if (READ_ONLY_MSRS.has(i)) continue;
    out.push([i, v]);
  }
  return out;
}

// ---- kvm_run exit fields (allocating decoders, for traces, messages and tests) ----

/** `kvm_run.io`. */
export interface IoExit {
  /** 0 = in, 1 = out. */
  direction: number;
  /** Bytes per element: 1, 2 or 4. */
  size: number;
  /** Port number. */
  port: number;
  /** Elements (more than 1 for string instructions). */
  count: number;
  /** Offset of the data from the start of kvm_run. */
  dataOffset: number;
}

/** `kvm_run.mmio`. */
export interface MmioExit {
  /** Guest-physical address. */
  physAddr: number;
  /** The 8-byte data buffer (written value, or where a read's value goes). */
  data: Uint8Array;
  /** Access size in bytes. */
  len: number;
  /** True for a write. */
  isWrite: boolean;
}

/** Reads `kvm_run.exit_reason`. */
export function decodeExitReason(run: DataView): number {
  return run.getUint32(RUN_EXIT_REASON, true);
}

/** Reads `kvm_run.io`. */
export function decodeIoExit(run: DataView): IoExit {
  return {
    direction: run.getUint8(RUN_IO_DIRECTION),
    size: run.getUint8(RUN_IO_SIZE),
    port: run.getUint16(RUN_IO_PORT, true),
    count: run.getUint32(RUN_IO_COUNT, true),
    dataOffset: Number(run.getBigUint64(RUN_IO_DATA_OFFSET, true)),
  };
}

/** Reads `kvm_run.mmio`. */
export function decodeMmioExit(run: DataView): MmioExit {
  return {
    physAddr: Number(run.getBigUint64(RUN_MMIO_PHYS_ADDR, true)),
    data: new Uint8Array(run.buffer, run.byteOffset + RUN_MMIO_DATA, 8).slice(),
    len: run.getUint32(RUN_MMIO_LEN, true),
    isWrite: run.getUint8(RUN_MMIO_IS_WRITE) !== 0,
  };
}

/** `kvm_run.internal`. */
export interface InternalErrorExit {
  /** KVM_INTERNAL_ERROR_* value. */
  suberror: number;
  /** Extra words KVM supplied (at most 16). */
  data: bigint[];
}

/** Reads `kvm_run.internal` (at most 16 data words). */
export function decodeInternalError(run: DataView): InternalErrorExit {
  const n = Math.min(run.getUint32(RUN_INTERNAL_NDATA, true), 16);
  const data: bigint[] = [];
  for (let i = 0; i < n; i++) data.push(run.getBigUint64(RUN_INTERNAL_DATA + i * 8, true));
  return { suberror: run.getUint32(RUN_INTERNAL_SUBERROR, true), data };
}

/** `kvm_run.fail_entry`. */
export interface FailEntryExit {
  /** The hardware's VM-entry failure reason. */
  hardwareEntryFailureReason: bigint;
  /** Host CPU the entry failed on. */
  cpu: number;
}

/** Reads `kvm_run.fail_entry`. */
export function decodeFailEntry(run: DataView): FailEntryExit {
  return {
    hardwareEntryFailureReason: run.getBigUint64(RUN_FAIL_ENTRY_REASON, true),
    cpu: run.getUint32(RUN_FAIL_ENTRY_CPU, true),
  };
}

/** Sizes of the encoded structs, re-exported for callers that allocate buffers. */
export const STRUCT_SIZES = {
  regs: KVM_REGS_SIZE,
  sregs: KVM_SREGS_SIZE,
  fpu: KVM_FPU_SIZE,
  debugregs: KVM_DEBUGREGS_SIZE,
  xcrs: KVM_XCRS_SIZE,
  mpState: KVM_MP_STATE_SIZE,
} as const;
