/**
 * kvm-clock, the paravirtual clock Linux prefers when CPUID leaf 0x40000000 says "KVMKVMKVM"
 * and leaf 0x40000001 offers it: the guest writes a guest-physical address to an MSR and we
 * store a pvclock structure there (the TSC value and VM-clock time of one instant, and the scale
 * from TSC ticks to nanoseconds), so the guest computes time from RDTSC without calibrating
 * anything. The wall-clock MSR gets the host's UTC time at VM start.
 *
 * This is not a bus device: it has no ports or MMIO. A backend that emulates CPUID and MSRs (the
 * interpreter) routes the MSRs below to {@link KvmClock.wrmsr} / {@link KvmClock.rdmsr} and
 * answers the hypervisor CPUID leaves with {@link kvmCpuidLeaf}. KVM itself implements all of
 * this in the kernel, so the KVM backend needs none of it.
 *
 * Layouts from Linux's arch/x86/include/asm/pvclock-abi.h and Documentation/virt/kvm/x86/msr.rst.
 *
 * @module
 */

import type { Clock, DeviceState, DmaMemory } from "../plugins/mod.ts";

/** Wall-clock MSR (new numbering, feature KVM_FEATURE_CLOCKSOURCE2). */
export const MSR_KVM_WALL_CLOCK_NEW = 0x4b56_4d00;
/** System-time MSR (new numbering). */
export const MSR_KVM_SYSTEM_TIME_NEW = 0x4b56_4d01;
/** Wall-clock MSR (old numbering, feature KVM_FEATURE_CLOCKSOURCE). */
export const MSR_KVM_WALL_CLOCK = 0x11;
/** System-time MSR (old numbering). */
export const MSR_KVM_SYSTEM_TIME = 0x12;
/** CPUID leaf with the hypervisor signature. */
export const KVM_CPUID_SIGNATURE = 0x4000_0000;
/** CPUID leaf with the paravirtual feature bits. */
export const KVM_CPUID_FEATURES = 0x4000_0001;
/** KVM_FEATURE_CLOCKSOURCE2 (bit 3): the new MSR numbers work. */
export const KVM_FEATURE_CLOCKSOURCE2 = 1 << 3;
/** KVM_FEATURE_CLOCKSOURCE_STABLE_BIT (bit 24): the guest may trust PVCLOCK_TSC_STABLE_BIT. */
export const KVM_FEATURE_CLOCKSOURCE_STABLE_BIT = 1 << 24;
/** pvclock flag: the TSC is stable across (all one of) the vCPUs. */
export const PVCLOCK_TSC_STABLE_BIT = 1 << 0;
/** Size of struct pvclock_vcpu_time_info. */
export const PVCLOCK_SIZE = 32;

const SYSTEM_TIME_ENABLE = 1;
const TWO32 = 0x1_0000_0000;

/** The EAX/EBX/ECX/EDX of a CPUID leaf. */
export interface CpuidResult {
  /** EAX. */
  eax: number;
  /** EBX. */
  ebx: number;
  /** ECX. */
  ecx: number;
  /** EDX. */
  edx: number;
}

/**
 * The hypervisor CPUID leaves that announce kvm-clock, or null for other leaves. Leaf
 * 0x40000000 returns the highest hypervisor leaf and "KVMKVMKVM\0\0\0"; 0x40000001 the
 * clock-source features.
 *
 * @example
 * ```ts
 * import { kvmCpuidLeaf } from "./kvm_clock.ts";
 * console.log(kvmCpuidLeaf(0x40000001)?.eax.toString(16)); // "1000008"
 * ```
 */
export function kvmCpuidLeaf(leaf: number): CpuidResult | null {
  if (leaf === KVM_CPUID_SIGNATURE) {
    // "KVMK" "VMKV" "M\0\0\0" in EBX, ECX, EDX.
    return { eax: KVM_CPUID_FEATURES, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x0000_004d };
  }
  if (leaf === KVM_CPUID_FEATURES) {
    return {
      eax: KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT,
      ebx: 0,
      ecx: 0,
      edx: 0,
    };
  }
  return null;
}

/**
 * The scale pvclock uses: ns = ((tscDelta << shift) * mul) >> 32 (shift may be negative), for
 * a TSC of `tscHz`.
 *
 * @example
 * ```ts
 * import { pvclockScale } from "./kvm_clock.ts";
 * console.log(pvclockScale(1e9)); // { mul: 2147483648, shift: 1 }
 * ```
 */
export function pvclockScale(tscHz: number): { mul: number; shift: number } {
  let ratio = 1e9 / tscHz;
  let shift = 0;
  while (ratio >= 1) {
    ratio /= 2;
    shift++;
  }
  while (ratio < 0.5) {
    ratio *= 2;
    shift--;
  }
  return { mul: Math.floor(ratio * TWO32), shift };
}

/** How the vCPU's TSC relates to the VM clock. */
export interface KvmClockOptions {
  /** Reads the vCPU's TSC now (what RDTSC would return). */
  readTsc: () => number;
  /** The TSC rate (the interpreter's TSC counts nanoseconds: 1e9). */
  tscHz: number;
  /** Host UTC time in ms at VM-clock time 0 (default: now minus the clock's age). */
  bootWallMs?: number;
}

/**
 * kvm-clock's MSRs for one vCPU.
 *
 * @example Register the pvclock page, as Linux's kvmclock_init does
 * ```ts
 * import { GuestMemory } from "../core/memory.ts";
 * import { KvmClock, MSR_KVM_SYSTEM_TIME_NEW } from "./kvm_clock.ts";
 * const memory = GuestMemory.allocate(0x10000);
 * const clock = { now: () => 5000, timer: () => ({ arm() {}, cancel() {} }) };
 * const kvm = new KvmClock(memory, clock, { readTsc: () => 5000, tscHz: 1e9 });
 * kvm.wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0x2000 | 1);
 * console.log(memory.readU32(0x2000 + 16)); // 5000: system_time in ns
 * ```
 */
export class KvmClock {
  /** The system-time MSR value (address | enable). */
  systemTimeMsr = 0;
  /** The wall-clock MSR value (address). */
  wallClockMsr = 0;
  /** pvclock version counter (even when the structure is consistent). */
  version = 0;
  readonly #memory: DmaMemory;
  readonly #clock: Clock;
  readonly #opts: KvmClockOptions;
  readonly #bootWallMs: number;

  /** kvm-clock writing into `memory`, with time from `clock` and the TSC from `opts`. */
  constructor(memory: DmaMemory, clock: Clock, opts: KvmClockOptions) {
    this.#memory = memory;
    this.#clock = clock;
    this.#opts = opts;
    this.#bootWallMs = opts.bootWallMs ?? Date.now() - clock.now() / 1e6;
  }

  /** True for the MSRs this class owns. */
  handles(msr: number): boolean {
    return msr === MSR_KVM_SYSTEM_TIME_NEW || msr === MSR_KVM_WALL_CLOCK_NEW ||
      msr === MSR_KVM_SYSTEM_TIME || msr === MSR_KVM_WALL_CLOCK;
  }

  /** RDMSR of one of `handles()`'s MSRs. */
  rdmsr(msr: number): number {
    if (msr === MSR_KVM_SYSTEM_TIME_NEW || msr === MSR_KVM_SYSTEM_TIME) return this.systemTimeMsr;
    return this.wallClockMsr;
  }

  /**
   * WRMSR: returns false for an MSR this class does not own (the CPU raises #GP then).
   * Throws GuestMemoryError (from the DMA accessors) for an address outside RAM; a backend
   * should turn that into #GP as KVM does for a bad pvclock address.
   */
  wrmsr(msr: number, value: number): boolean {
    switch (msr) {
      case MSR_KVM_SYSTEM_TIME_NEW:
      case MSR_KVM_SYSTEM_TIME:
        this.systemTimeMsr = value;
        if (value & SYSTEM_TIME_ENABLE) this.update();
        return true;
      case MSR_KVM_WALL_CLOCK_NEW:
      case MSR_KVM_WALL_CLOCK:
        this.wallClockMsr = value;
        this.#writeWallClock(value);
        return true;
    }
    return false;
  }

  /** Rewrites the pvclock structure from the current TSC and clock (after a restore, say). */
  update(): void {
    if (!(this.systemTimeMsr & SYSTEM_TIME_ENABLE)) return;
    const gpa = this.systemTimeMsr - SYSTEM_TIME_ENABLE;
    const m = this.#memory;
    this.version = (this.version + 1) | 1; // odd: update in progress
    m.writeU32(gpa, this.version);
    const tsc = this.#opts.readTsc();
    const now = Math.floor(this.#clock.now());
    const { mul, shift } = pvclockScale(this.#opts.tscHz);
    m.writeU32(gpa + 4, 0);
    writeU64(m, gpa + 8, tsc);
    writeU64(m, gpa + 16, now);
    m.writeU32(gpa + 24, mul);
    // tsc_shift (s8), flags, pad[2] in one little-endian word.
    m.writeU32(gpa + 28, (shift & 0xff) | (PVCLOCK_TSC_STABLE_BIT << 8));
    this.version++;
    m.writeU32(gpa, this.version);
  }

  /** State for snapshots (the structure is rewritten on restore). */
  save(): DeviceState {
    return {
      version: 1,
      fields: {
        systemTimeMsr: this.systemTimeMsr,
        wallClockMsr: this.wallClockMsr,
        version: this.version,
      },
    };
  }

  /** Loads a state `save` returned and refreshes the guest's pvclock structure. */
  restore(state: DeviceState): void {
    this.systemTimeMsr = Number(state.fields.systemTimeMsr ?? 0);
    this.wallClockMsr = Number(state.fields.wallClockMsr ?? 0);
    this.version = Number(state.fields.version ?? 0) & ~1;
    this.update();
  }

  #writeWallClock(gpa: number): void {
    const m = this.#memory;
    const version = (m.readU32(gpa) + 1) | 1;
    m.writeU32(gpa, version);
    const ms = this.#bootWallMs;
    const sec = Math.floor(ms / 1000);
    m.writeU32(gpa + 4, sec >>> 0);
    m.writeU32(gpa + 8, Math.round((ms - sec * 1000) * 1e6) % 1e9);
    m.writeU32(gpa, version + 1);
  }
}

function writeU64(m: DmaMemory, gpa: number, v: number): void {
  m.writeU32(gpa, v % TWO32);
  m.writeU32(gpa + 4, Math.floor(v / TWO32));
}
