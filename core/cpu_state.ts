/**
 * The one architectural register state both backends read and write: what snapshots,
 * migration between backends, lockstep tests and fatal-stop register dumps are made of.
 * 64-bit values are bigints here: this shape is for state transfer, never the hot path.
 */

import { hex } from "./memory.ts";

/** A segment register with its hidden descriptor cache, in KVM's `kvm_segment` terms. */
export interface Segment {
  selector: number;
  base: bigint;
  limit: number;
  /** Descriptor type field (4 bits, including the accessed bit). */
  type: number;
  /** 1 for code/data (S bit), 0 for system segments. */
  s: number;
  dpl: number;
  present: number;
  /** Long-mode code segment. */
  l: number;
  /** Default operand size (D/B). */
  db: number;
  /** Granularity: limit is in 4 KiB units (already expanded in `limit`). */
  g: number;
  avl: number;
  /** 1 when the register holds no usable segment. */
  unusable: number;
}

/** GDTR/IDTR. */
export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** x87/SSE state in FXSAVE terms. */
export interface FpuState {
  fcw: number;
  fsw: number;
  /** Abridged tag word as FXSAVE stores it (one bit per register, 1 = valid). */
  ftw: number;
  fop: number;
  fip: bigint;
  fdp: bigint;
  mxcsr: number;
  /** ST0..ST7 as 8 × 16 bytes (80-bit values, zero padded), FXSAVE layout. */
  st: Uint8Array;
  /** XMM0..XMM15 as 16 × 16 bytes. */
  xmm: Uint8Array;
}

/** Names of the general-purpose registers in encoding order. */
export const GPR_NAMES = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
] as const;

/** Model-specific registers that are part of the architectural state. */
export const MSR = {
  EFER: 0xC000_0080,
  STAR: 0xC000_0081,
  LSTAR: 0xC000_0082,
  CSTAR: 0xC000_0083,
  SFMASK: 0xC000_0084,
  FS_BASE: 0xC000_0100,
  GS_BASE: 0xC000_0101,
  KERNEL_GS_BASE: 0xC000_0102,
  TSC: 0x10,
  APIC_BASE: 0x1B,
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  PAT: 0x277,
} as const;

/** EFER bits. */
export const EFER_SCE = 1 << 0, EFER_LME = 1 << 8, EFER_LMA = 1 << 10, EFER_NXE = 1 << 11;
/** CR0 bits. */
export const CR0_PE = 1 << 0, CR0_MP = 1 << 1, CR0_EM = 1 << 2, CR0_TS = 1 << 3, CR0_ET = 1 << 4;
/** CR0 bits. */
export const CR0_NE = 1 << 5, CR0_WP = 1 << 16, CR0_AM = 1 << 18, CR0_NW = 1 << 29;
/** CR0 bits. */
export const CR0_CD = 1 << 30, CR0_PG = 0x8000_0000;
/** CR4 bits. */
export const CR4_PSE = 1 << 4, CR4_PAE = 1 << 5, CR4_PGE = 1 << 7, CR4_OSFXSR = 1 << 9;
/** CR4 bits. */
export const CR4_OSXMMEXCPT = 1 << 10;

/**
 * What is in flight between two instructions, in KVM's `kvm_vcpu_events` terms: an event the CPU
 * accepted but has not delivered yet (a restore must deliver it, or a PIC's in-service interrupt
 * never gets its handler) and the one-instruction interrupt shadow. -1 means none.
 */
export interface CpuEvents {
  /** Interrupt shadow: 1 after STI, 2 after MOV SS or POP SS (KVM_X86_SHADOW_INT_*), 0 none. */
  shadow: number;
  /** Vector of an accepted external (or, with `interruptSoft`, software) interrupt, or -1. */
  interrupt: number;
  interruptSoft: boolean;
  /** Vector of an exception being delivered, or -1, and its error code (-1: none). */
  exception: number;
  exceptionErrorCode: number;
  /** An NMI being delivered, one waiting, and NMIs blocked (inside an NMI handler). */
  nmiInjected: boolean;
  nmiPending: boolean;
  nmiMasked: boolean;
}

/** No event in flight. */
export function noCpuEvents(): CpuEvents {
  return {
    shadow: 0,
    interrupt: -1,
    interruptSoft: false,
    exception: -1,
    exceptionErrorCode: -1,
    nmiInjected: false,
    nmiPending: false,
    nmiMasked: false,
  };
}

/** The debug registers DR0–DR3 (breakpoint addresses), DR6 (status) and DR7 (control). */
export interface DebugRegs {
  dr0: bigint;
  dr1: bigint;
  dr2: bigint;
  dr3: bigint;
  dr6: bigint;
  dr7: bigint;
}

/** DR6 and DR7 as reset leaves them (SDM Vol. 3, 18.2), DR0–DR3 zero. */
export function resetDebugRegs(): DebugRegs {
  return { dr0: 0n, dr1: 0n, dr2: 0n, dr3: 0n, dr6: 0xffff_0ff0n, dr7: 0x400n };
}

/** KVM_MP_STATE_* in order (the index is the kernel's number); x86 uses the first five and the last two. */
export const MP_STATES = [
  "runnable",
  "uninitialized",
  "init-received",
  "halted",
  "sipi-received",
  "stopped",
  "check-stop",
  "operating",
  "load",
  "ap-reset-hold",
  "suspended",
] as const;

/** The multiprocessing state of a vCPU, in KVM's `kvm_mp_state` terms. */
export type MpState = typeof MP_STATES[number];

/** The full architectural state of one vCPU. */
export interface CpuState {
  /** RAX..R15 in encoding order (see GPR_NAMES). */
  gpr: bigint[];
  rip: bigint;
  rflags: number;
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: number;
  cr2: bigint;
  cr3: bigint;
  cr4: number;
  cr8: number;
  efer: number;
  /** Other MSRs by index (STAR, LSTAR, KERNEL_GS_BASE, ...). FS/GS base live in the segments. */
  msrs: Map<number, bigint>;
  fpu: FpuState;
  /** The vCPU is halted, waiting for an interrupt. */
  halted: boolean;
  /** Events in flight and the interrupt shadow. */
  events: CpuEvents;
  debug: DebugRegs;
  /** XCR0 (XFEATURE_ENABLED_MASK): 1 (x87 only) where the CPU model announces no XSAVE. */
  xcr0: bigint;
  /**
   * The raw `kvm_xsave` area (4096 bytes, standard format) when taken on KVM with XSAVE, or null
   * (the interpreter). Its legacy x87/SSE region is redundant with `fpu`, and `fpu` wins on
   * restore: a backend takes only the state beyond SSE (AVX and up) from here.
   */
  xsave: Uint8Array | null;
  /**
   * KVM_MP_STATE_*: "halted" whenever `halted` is true (both backends keep the two in sync; a
   * restore treats either as halted).
   */
  mpState: MpState;
}

/** A segment register loaded the way real mode (or reset) leaves it. */
export function realModeSegment(selector: number, type = 0x3): Segment {
  return {
    selector,
    base: BigInt(selector << 4),
    limit: 0xffff,
    type,
    s: 1,
    dpl: 0,
    present: 1,
    l: 0,
    db: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  };
}

/** A flat 4 GiB segment for 32-bit protected mode (code when `code` is true). */
export function flatSegment(selector: number, code: boolean): Segment {
  return {
    selector,
    base: 0n,
    limit: 0xffff_ffff,
    type: code ? 0xb : 0x3,
    s: 1,
    dpl: 0,
    present: 1,
    l: 0,
    db: 1,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/** A zeroed FPU/SSE state with the power-on control words. */
export function resetFpuState(): FpuState {
  return {
    fcw: 0x37f,
    fsw: 0,
    ftw: 0,
    fop: 0,
    fip: 0n,
    fdp: 0n,
    mxcsr: 0x1f80,
    st: new Uint8Array(128),
    xmm: new Uint8Array(256),
  };
}

/** The state of a CPU right after the loader-independent part of reset, in real mode at 0:0. */
export function resetCpuState(): CpuState {
  const ldt = realModeSegment(0, 0x2);
  ldt.s = 0;
  const tr = realModeSegment(0, 0xb);
  tr.s = 0;
  return {
    gpr: new Array<bigint>(16).fill(0n),
    rip: 0n,
    rflags: 0x2,
    cs: realModeSegment(0, 0xb),
    ds: realModeSegment(0),
    es: realModeSegment(0),
    fs: realModeSegment(0),
    gs: realModeSegment(0),
    ss: realModeSegment(0),
    tr,
    ldt,
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0x3ff },
    cr0: CR0_ET,
    cr2: 0n,
    cr3: 0n,
    cr4: 0,
    cr8: 0,
    efer: 0,
    msrs: new Map([[MSR.PAT, 0x0007_0406_0007_0406n]]),
    fpu: resetFpuState(),
    halted: false,
    events: noCpuEvents(),
    debug: resetDebugRegs(),
    xcr0: 1n,
    xsave: null,
    mpState: "runnable",
  };
}

/** A deep copy of a CpuState. */
export function cloneCpuState(s: CpuState): CpuState {
  const seg = (x: Segment): Segment => ({ ...x });
  return {
    ...s,
    gpr: [...s.gpr],
    cs: seg(s.cs),
    ds: seg(s.ds),
    es: seg(s.es),
    fs: seg(s.fs),
    gs: seg(s.gs),
    ss: seg(s.ss),
    tr: seg(s.tr),
    ldt: seg(s.ldt),
    gdt: { ...s.gdt },
    idt: { ...s.idt },
    msrs: new Map(s.msrs),
    fpu: { ...s.fpu, st: s.fpu.st.slice(), xmm: s.fpu.xmm.slice() },
    events: { ...s.events },
    debug: { ...s.debug },
    xsave: s.xsave?.slice() ?? null,
  };
}

const FLAG_NAMES: [number, string][] = [
  [0, "CF"],
  [2, "PF"],
  [4, "AF"],
  [6, "ZF"],
  [7, "SF"],
  [8, "TF"],
  [9, "IF"],
  [10, "DF"],
  [11, "OF"],
  [14, "NT"],
  [16, "RF"],
  [17, "VM"],
  [18, "AC"],
  [21, "ID"],
];

/** The names of the RFLAGS bits set in `rflags` (e.g. "CF ZF IF"), "" when none. */
export function flagNames(rflags: number): string {
  return FLAG_NAMES.filter(([b]) => rflags & (1 << b)).map(([, n]) => n).join(" ");
}

/** Formats the register dump printed when a VM stops on a fault. */
export function formatCpuState(s: CpuState): string {
  const r = (v: bigint) => hex(BigInt.asUintN(64, v), 16);
  const lines: string[] = [];
  for (let i = 0; i < 16; i += 4) {
    lines.push(
      GPR_NAMES.slice(i, i + 4).map((n, j) => `${n.padStart(3)}=${r(s.gpr[i + j] ?? 0n)}`).join(
        " ",
      ),
    );
  }
  const flags = flagNames(s.rflags);
  lines.push(`rip=${r(s.rip)} rflags=${hex(s.rflags, 8)} [${flags}]${s.halted ? " (halted)" : ""}`);
  for (const name of ["cs", "ss", "ds", "es", "fs", "gs", "tr", "ldt"] as const) {
    const g = s[name];
    lines.push(
      `${name.padEnd(3)}=${hex(g.selector, 4)} base=${r(g.base)} limit=${hex(g.limit, 8)} ` +
        `type=${g.type.toString(16)} s=${g.s} dpl=${g.dpl} p=${g.present} l=${g.l} db=${g.db}` +
        (g.unusable ? " unusable" : ""),
    );
  }
  lines.push(
    `gdt=${r(s.gdt.base)}/${hex(s.gdt.limit, 4)} idt=${r(s.idt.base)}/${hex(s.idt.limit, 4)}`,
  );
  lines.push(
    `cr0=${hex(s.cr0 >>> 0, 8)} cr2=${r(s.cr2)} cr3=${r(s.cr3)} cr4=${hex(s.cr4, 8)} ` +
      `cr8=${s.cr8} efer=${hex(s.efer, 4)}`,
  );
  return lines.join("\n");
}
