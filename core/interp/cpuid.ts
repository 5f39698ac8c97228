/**
 * CPUID for the interpreter, and the model CPUID the KVM backend filters its supported CPUID to:
 * the identity of the VM's CPU model (`core/cpu_model.ts`: vendor, family, brand) with feature
 * bits for exactly what the interpreter implements. A feature bit is set here only once the
 * instructions or behaviour behind it exist. Platform features (the local APIC, a hypervisor's
 * leaves such as kvm-clock's) come from the machine through `setCpuidPlatform`.
 */

import type { VcpuPlatform } from "../backend.ts";
import { AMD_MODEL, type CpuModel, cpuSignature } from "../cpu_model.ts";

/** Leaf 1 EDX bits (AMD APM Vol. 3, CPUID Fn0000_0001_EDX). */
const L1_EDX_FPU = 1 << 0, L1_EDX_DE = 1 << 2, L1_EDX_PSE = 1 << 3, L1_EDX_TSC = 1 << 4;
const L1_EDX_MSR = 1 << 5, L1_EDX_PAE = 1 << 6, L1_EDX_CX8 = 1 << 8, L1_EDX_APIC = 1 << 9;
const L1_EDX_PGE = 1 << 13, L1_EDX_CMOV = 1 << 15, L1_EDX_PAT = 1 << 16;
const L1_EDX_CLFSH = 1 << 19, L1_EDX_FXSR = 1 << 24, L1_EDX_SSE = 1 << 25;
const L1_EDX_SSE2 = 1 << 26, L1_EDX_MTRR = 1 << 12;
/** Leaf 1 ECX bits. */
const L1_ECX_SSE3 = 1 << 0, L1_ECX_CX16 = 1 << 13, L1_ECX_HYPERVISOR = 1 << 31;
/** Extended leaf 0x80000001 EDX / ECX bits. */
const X1_EDX_SYSCALL = 1 << 11, X1_EDX_NX = 1 << 20, X1_EDX_LM = 1 << 29;
const X1_ECX_LAHF = 1 << 0;
/** Leaf 7 sub-leaf 0 EDX: IA32_ARCH_CAPABILITIES is there. */
const L7_EDX_ARCH_CAPABILITIES = 1 << 29;

/** Which optional features the CPU currently implements (set by the interpreter's modules). */
export interface CpuidFeatures {
  fpu: boolean;
  sse2: boolean;
  cx8: boolean;
  cx16: boolean;
  apic: boolean;
}

/** Features implemented today. */
export const FEATURES: CpuidFeatures = {
  fpu: true,
  sse2: true,
  cx8: true,
  cx16: true,
  apic: false,
};

/** First and last leaf of the range CPUID reserves for hypervisors (Intel SDM Vol. 2A, CPUID). */
const HYPERVISOR_LEAF_FIRST = 0x4000_0000, HYPERVISOR_LEAF_LAST = 0x4000_00ff;

/** The machine platform of the vCPU that runs now (see `setCpuidPlatform`). */
let platform: VcpuPlatform | null = null;
/** The CPU model of the vCPU that runs now. */
let model: CpuModel = AMD_MODEL;

/**
 * Makes `cpuid` answer for CPU model `m` on the platform `p` (a local APIC, hypervisor leaves)
 * until the next call; null restores the bare CPU. The interpreter calls it whenever a vCPU
 * starts running, so several machines in one thread each see their own CPU and platform.
 */
export function setCpuidPlatform(p: VcpuPlatform | null, m: CpuModel = AMD_MODEL): void {
  platform = p;
  model = m;
}

function str4(s: string, i: number): number {
  let v = 0;
  for (let k = 0; k < 4; k++) v |= (s.charCodeAt(i + k) || 0) << (8 * k);
  return v | 0;
}

/** Output registers of the last `cpuid` call. */
export const cpuidOut = new Int32Array(4); // eax, ebx, ecx, edx

/** Computes CPUID leaf `leaf` (sub-leaf `sub`) of the running vCPU into `cpuidOut`. */
export function cpuid(leaf: number, sub: number, apicId: number): void {
  modelCpuid(model, platform, leaf, sub, apicId, cpuidOut);
}

/**
 * CPUID leaf `leaf` (sub-leaf `sub`) of CPU model `m` on platform `p` into `out` (eax, ebx, ecx,
 * edx). Leaves past the maximum answer zeros (AMD's rule; the model never relies on Intel's).
 */
export function modelCpuid(
  m: CpuModel,
  p: VcpuPlatform | null,
  leaf: number,
  sub: number,
  apicId: number,
  out: Int32Array,
): void {
  let a = 0, b = 0, c = 0, d = 0;
  leaf >>>= 0;
  const intel = m.vendor === "intel";
  const vid = m.vendorId;
  switch (leaf) {
    case 0:
      a = m.maxLeaf;
      b = str4(vid, 0);
      d = str4(vid, 4);
      c = str4(vid, 8);
      break;
    case 1:
      a = cpuSignature(m.family, m.model, m.stepping);
      b = (apicId << 24) | (1 << 16) | (8 << 8); // CLFLUSH line size 8*8 = 64 bytes
      d = L1_EDX_DE | L1_EDX_PSE | L1_EDX_TSC | L1_EDX_MSR | L1_EDX_PAE | L1_EDX_PGE |
        L1_EDX_CMOV | L1_EDX_PAT | L1_EDX_MTRR; // no MCE/MCA: machine checks are not modelled
      if (FEATURES.fpu) d |= L1_EDX_FPU;
      if (FEATURES.cx8) d |= L1_EDX_CX8;
      if (FEATURES.apic || p?.localApic) d |= L1_EDX_APIC;
      if (FEATURES.sse2) d |= L1_EDX_CLFSH | L1_EDX_FXSR | L1_EDX_SSE | L1_EDX_SSE2;
      c = L1_ECX_HYPERVISOR;
      if (FEATURES.sse2) c |= L1_ECX_SSE3 & 0; // SSE3 not implemented
      if (FEATURES.cx16) c |= L1_ECX_CX16;
      break;
    case 7:
      // Structured extended features: none implemented; Intel announces ARCH_CAPABILITIES.
      if (leaf <= m.maxLeaf && sub === 0) {
        if (m.archCapabilities !== null) d = L7_EDX_ARCH_CAPABILITIES;
      }
      break;
    case 0x8000_0000:
      a = 0x8000_0008;
      // Intel answers zeros here (SDM: reserved); AMD repeats the vendor string.
      if (!intel) {
        b = str4(vid, 0);
        d = str4(vid, 4);
        c = str4(vid, 8);
      }
      break;
    case 0x8000_0001:
      d = X1_EDX_SYSCALL | X1_EDX_NX | X1_EDX_LM;
      c = X1_ECX_LAHF;
      if (intel) break; // Intel's extended leaf holds only the long-mode features
      a = cpuSignature(m.family, m.model, m.stepping);
      // AMD mirrors the legacy feature bits of leaf 1 here (APM CPUID Fn8000_0001_EDX).
      d |= L1_EDX_PSE | L1_EDX_TSC | L1_EDX_MSR | L1_EDX_PAE | L1_EDX_PGE | L1_EDX_CMOV |
        L1_EDX_PAT;
      if (FEATURES.fpu) d |= L1_EDX_FPU;
      if (FEATURES.cx8) d |= L1_EDX_CX8;
      if (FEATURES.sse2) d |= L1_EDX_FXSR;
      if (FEATURES.apic || p?.localApic) d |= L1_EDX_APIC;
      break;
    case 0x8000_0002:
    case 0x8000_0003:
    case 0x8000_0004: {
      const base = (leaf - 0x8000_0002) * 16;
      const s = m.brand.padEnd(48, "\0");
      a = str4(s, base);
      b = str4(s, base + 4);
      c = str4(s, base + 8);
      d = str4(s, base + 12);
      break;
    }
    case 0x8000_0005:
    case 0x8000_0006:
      // Cache descriptors: zeros mean "not reported".
      break;
    case 0x8000_0008:
      a = 0x3028; // 40 physical, 48 linear address bits (as qemu64)
      break;
    default:
      if (leaf >= HYPERVISOR_LEAF_FIRST && leaf <= HYPERVISOR_LEAF_LAST && p !== null) {
        const r = p.cpuid(leaf, sub);
        if (r !== null) {
          a = r.eax;
          b = r.ebx;
          c = r.ecx;
          d = r.edx;
        }
      }
      break;
  }
  out[0] = a;
  out[1] = b;
  out[2] = c;
  out[3] = d;
}
