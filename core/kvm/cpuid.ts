/**
 * The CPUID a KVM vCPU gets: the VM's CPU model (`core/cpu_model.ts`, the same leaves the
 * interpreter answers, from `modelCpuid`) with every feature bit also required in KVM's
 * supported CPUID, plus KVM's own hypervisor leaves (0x40000000+: kvm-clock and friends are
 * KVM's in-kernel ones here). Leaves the model does not define are dropped, so a guest sees the
 * same CPU on both backends as far as the host allows.
 */

import type { VcpuPlatform } from "../backend.ts";
import type { CpuModel } from "../cpu_model.ts";
import { HostError } from "../errors.ts";
import { modelCpuid } from "../interp/cpuid.ts";
import type { CpuidEntry } from "./structs.ts";

/** `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`: the entry applies to one sub-leaf only. */
const FLAG_SIGNIFICANT_INDEX = 1;

/** Leaves whose registers are feature bits: [leaf, which registers (eax ebx ecx edx)]. */
const FEATURE_REGS: ReadonlyMap<number, readonly boolean[]> = new Map([
  [1, [false, false, true, true]],
  [7, [false, true, true, true]],
  [0x8000_0001, [false, false, true, true]],
]);

const HYPERVISOR_FIRST = 0x4000_0000, HYPERVISOR_LAST = 0x4000_00ff;

/**
 * The CPUID table for vCPU `apicId` of a VM presenting `model`, from KVM's `supported` entries.
 * Throws a HostError when the model's vendor is not the host's: under KVM the guest's code runs
 * on the host's silicon, which behaves as its own vendor whatever CPUID says.
 */
export function kvmCpuidFor(
  supported: readonly CpuidEntry[],
  model: CpuModel,
  apicId: number,
  platform: VcpuPlatform | null,
): CpuidEntry[] {
  const host = supported.find((e) => e.function === 0);
  const hostId = host === undefined ? "" : [host.ebx, host.edx, host.ecx].map(str4).join("");
  if (hostId !== model.vendorId) {
    throw new HostError(
      `The ${model.vendor} CPU model cannot run on KVM on this host (its CPU is "${hostId}"): ` +
        `under KVM the guest's code runs on the host's own silicon. Use --cpu host, or ` +
        `--backend interp to present a ${model.vendor} CPU`,
    );
  }
  const kvmLeaf = (leaf: number) =>
    supported.find((e) => e.function === leaf && (e.index === 0 || !(e.flags & 1)));
  const maxExt = kvmLeaf(0x8000_0000)?.eax ?? 0x8000_0000;
  const out: CpuidEntry[] = [];
  const regs = new Int32Array(4);
  const leaves: number[] = [];
  const maxBasic = Math.min(model.maxLeaf, kvmLeaf(0)?.eax ?? 0);
  for (let l = 0; l <= maxBasic; l++) leaves.push(l);
  modelCpuid(model, platform, 0x8000_0000, 0, apicId, regs);
  const modelMaxExt = regs[0]! >>> 0;
  for (let l = 0x8000_0000; l <= Math.min(modelMaxExt, maxExt >>> 0); l++) leaves.push(l);
  for (const leaf of leaves) {
    modelCpuid(model, platform, leaf, 0, apicId, regs);
    const e: CpuidEntry = {
      function: leaf,
      index: 0,
      flags: leaf === 7 ? FLAG_SIGNIFICANT_INDEX : 0,
      eax: regs[0]! >>> 0,
      ebx: regs[1]! >>> 0,
      ecx: regs[2]! >>> 0,
      edx: regs[3]! >>> 0,
    };
    const feature = FEATURE_REGS.get(leaf);
    if (feature !== undefined) {
      const k = kvmLeaf(leaf);
      const have = [k?.eax ?? 0, k?.ebx ?? 0, k?.ecx ?? 0, k?.edx ?? 0];
      if (feature[0]) e.eax &= have[0]!;
      if (feature[1]) e.ebx = (e.ebx & have[1]!) >>> 0;
      if (feature[2]) {
        // The hypervisor bit is the VMM's to set: KVM's table leaves it to userspace.
        const hv = leaf === 1 ? e.ecx & 0x8000_0000 : 0;
        e.ecx = ((e.ecx & have[2]!) | hv) >>> 0;
      }
      if (feature[3]) e.edx = (e.edx & have[3]!) >>> 0;
    }
    if (leaf === 0) e.eax = maxBasic;
    if (leaf === 0x8000_0000) e.eax = Math.min(modelMaxExt, maxExt >>> 0);
    out.push(e);
  }
  for (const e of supported) {
    if (e.function >= HYPERVISOR_FIRST && e.function <= HYPERVISOR_LAST) out.push({ ...e });
  }
  return out;
}

function str4(v: number): string {
  return String.fromCharCode(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
}
