/**
 * The CPU model a VM presents: vendor, family/model/stepping, brand and the features CPUID
 * announces. Both backends use it: the interpreter answers CPUID from it and computes what the
 * manuals leave undefined the way that vendor's silicon does; KVM filters its supported CPUID
 * to it. `--cpu host` (the default) takes the host's vendor, so KVM (where guest code runs on
 * the host's silicon) and the interpreter present the same CPU and behave the same.
 */

import { UsageError } from "./errors.ts";

/** CPU vendors the interpreter models. */
export type CpuVendor = "amd" | "intel";

/** `--cpu` values. */
export type CpuChoice = "host" | CpuVendor;

/** A CPU identity and feature set. */
export interface CpuModel {
  readonly vendor: CpuVendor;
  /** The CPUID vendor string (leaf 0 and 0x80000000). */
  readonly vendorId: string;
  /** Display family, model and stepping (before CPUID's base/extended split). */
  readonly family: number;
  readonly model: number;
  readonly stepping: number;
  /** The brand string of leaves 0x80000002..4 (at most 47 characters). */
  readonly brand: string;
  /** Highest basic CPUID leaf. */
  readonly maxLeaf: number;
  /**
   * IA32_ARCH_CAPABILITIES (MSR 0x10A), announced through CPUID.7.0:EDX[29] when set (Intel):
   * tells Linux the CPU is not subject to Meltdown, MDS and their kin, so it does not turn on
   * page-table isolation or buffer clearing that only cost time on an emulated CPU. AMD CPUs
   * have no such MSR; Linux exempts them by vendor.
   */
  readonly archCapabilities: bigint | null;
}

/** IA32_ARCH_CAPABILITIES bits (Intel SDM Vol. 4, Table 2-2). */
const ARCH_CAP_RDCL_NO = 1n << 0n,
  ARCH_CAP_SKIP_L1DFL_VMENTRY = 1n << 3n,
  ARCH_CAP_SSB_NO = 1n << 4n,
  ARCH_CAP_MDS_NO = 1n << 5n,
  ARCH_CAP_PSCHANGE_MC_NO = 1n << 6n,
  ARCH_CAP_TAA_NO = 1n << 8n,
  ARCH_CAP_SBDR_SSDP_NO = 1n << 13n,
  ARCH_CAP_FBSDP_NO = 1n << 14n,
  ARCH_CAP_PSDP_NO = 1n << 15n,
  ARCH_CAP_GDS_NO = 1n << 26n,
  ARCH_CAP_RFDS_NO = 1n << 27n,
  ARCH_CAP_ITS_NO = 1n << 62n;

const BRAND = "Denovisor x86-64 CPU";

/**
 * AMD: family 0xF, model 0x6B, stepping 1, the signature of QEMU's `qemu64` model (an AMD family
 * keeps Linux from enabling Meltdown/MDS mitigations; see LINUX_FACTS.md).
 */
export const AMD_MODEL: CpuModel = {
  vendor: "amd",
  vendorId: "AuthenticAMD",
  family: 0xf,
  model: 0x6b,
  stepping: 1,
  brand: BRAND,
  maxLeaf: 1,
  archCapabilities: null,
};

/**
 * Intel: family 0xF, model 6, stepping 1, the signature of QEMU's `kvm64` model (a generic
 * Intel CPU that no Linux quirk list names), with IA32_ARCH_CAPABILITIES saying "not affected"
 * for every speculative-execution issue it can say so for.
 */
export const INTEL_MODEL: CpuModel = {
  vendor: "intel",
  vendorId: "GenuineIntel",
  family: 0xf,
  model: 6,
  stepping: 1,
  brand: BRAND,
  maxLeaf: 7,
  archCapabilities: ARCH_CAP_RDCL_NO | ARCH_CAP_SKIP_L1DFL_VMENTRY | ARCH_CAP_SSB_NO |
    ARCH_CAP_MDS_NO | ARCH_CAP_PSCHANGE_MC_NO | ARCH_CAP_TAA_NO | ARCH_CAP_SBDR_SSDP_NO |
    ARCH_CAP_FBSDP_NO | ARCH_CAP_PSDP_NO | ARCH_CAP_GDS_NO | ARCH_CAP_RFDS_NO | ARCH_CAP_ITS_NO,
};

/** CPUID leaf 1 EAX for a display family/model/stepping (Intel SDM Vol. 2A, CPUID, Fig. 3-6). */
export function cpuSignature(family: number, model: number, stepping: number): number {
  const baseFamily = Math.min(family, 0xf), extFamily = family - baseFamily;
  const usesExtModel = family === 0x6 || family >= 0xf;
  const baseModel = usesExtModel ? model & 0xf : model;
  const extModel = usesExtModel ? model >> 4 : 0;
  return ((extFamily & 0xff) << 20) | ((extModel & 0xf) << 16) | (baseFamily << 8) |
    ((baseModel & 0xf) << 4) | (stepping & 0xf);
}

/** The vendor named by a CPUID vendor string ("AuthenticAMD", "GenuineIntel"), else null. */
export function vendorOfId(vendorId: string): CpuVendor | null {
  if (vendorId === "AuthenticAMD") return "amd";
  if (vendorId === "GenuineIntel") return "intel";
  return null;
}

let hostVendorCache: CpuVendor | null = null;

/**
 * Sets what `hostCpuVendor` answers, read by another thread: the CLI's VM Worker cannot read
 * /proc/cpuinfo (Deno grants /proc files only with --allow-all).
 */
export function setHostCpuVendor(vendor: CpuVendor): void {
  hostVendorCache = vendor;
}

/**
 * The host CPU's vendor, from /proc/cpuinfo. Throws a HostError-like UsageError naming the fix
 * when it cannot be read or names a vendor the interpreter does not model.
 */
export function hostCpuVendor(): CpuVendor {
  if (hostVendorCache !== null) return hostVendorCache;
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/cpuinfo");
  } catch (err) {
    throw new UsageError(
      `--cpu host needs the host's CPU vendor, but /proc/cpuinfo cannot be read ` +
        `(${(err as Error).message}): give --cpu amd or --cpu intel`,
    );
  }
  const m = /^vendor_id\s*:\s*(\S+)/m.exec(text);
  const vendor = m === null ? null : vendorOfId(m[1]!);
  if (vendor === null) {
    throw new UsageError(
      `--cpu host: the host CPU's vendor ${m === null ? "is not in /proc/cpuinfo" : `"${m[1]}"`} ` +
        `is not one the interpreter models: give --cpu amd or --cpu intel`,
    );
  }
  hostVendorCache = vendor;
  return vendor;
}

/** Checks a `--cpu` value. */
export function parseCpuChoice(text: string): CpuChoice {
  if (text === "host" || text === "amd" || text === "intel") return text;
  throw new UsageError(`Unknown --cpu "${text}": use host, amd or intel`);
}

/** The model for a `--cpu` choice (`host`: the host's vendor). */
export function cpuModelFor(choice: CpuChoice): CpuModel {
  const vendor = choice === "host" ? hostCpuVendor() : choice;
  return vendor === "intel" ? INTEL_MODEL : AMD_MODEL;
}
