/**
 * The KVM vCPU's CPUID is the VM's CPU model filtered to KVM's supported table, computed from
 * made-up tables so it runs on any host: same leaves as the interpreter, features ANDed, KVM's
 * hypervisor leaves kept, other leaves dropped, and a model of another vendor refused.
 */

import { assertEquals, assertThrows } from "../../_assert.ts";
import { AMD_MODEL, type CpuModel, INTEL_MODEL } from "../../../core/cpu_model.ts";
import { modelCpuid } from "../../../core/interp/cpuid.ts";
import { kvmCpuidFor } from "../../../core/kvm/cpuid.ts";
import type { CpuidEntry } from "../../../core/kvm/structs.ts";

function regs(s: string): [number, number, number] {
  const w = (i: number) =>
    s.charCodeAt(i) | (s.charCodeAt(i + 1) << 8) | (s.charCodeAt(i + 2) << 16) |
    (s.charCodeAt(i + 3) << 24);
  return [w(0) >>> 0, w(4) >>> 0, w(8) >>> 0]; // ebx, edx, ecx
}

/** A KVM supported table of a host with vendor `id` that supports every feature bit. */
function supported(id: string): CpuidEntry[] {
  const [ebx, edx, ecx] = regs(id);
  const all = 0xffff_ffff;
  const e = (fn: number, a = 0, b = 0, c = 0, d = 0, index = 0, flags = 0): CpuidEntry => ({
    function: fn,
    index,
    flags,
    eax: a,
    ebx: b,
    ecx: c,
    edx: d,
  });
  return [
    e(0, 0x10, ebx, ecx, edx),
    e(1, 0xa0f11, 0, all & ~(1 << 13), all), // no CX16 on this host
    e(7, 0, all, all, all, 0, 1),
    e(0xd, 7, 0x240, 0x340, 0, 0, 1), // XSAVE state: the model announces no XSAVE
    e(0x4000_0000, 0x4000_0001, 0x4b4d564b, 0x564b4d56, 0x4d),
    e(0x4000_0001, 0x01000089),
    e(0x8000_0000, 0x8000_0021, ebx, ecx, edx),
    e(0x8000_0001, 0, 0, all, all),
    e(0x8000_0008, 0x3030),
  ];
}

function model(m: CpuModel, leaf: number): number[] {
  const out = new Int32Array(4);
  modelCpuid(m, null, leaf, 0, 0, out);
  return [...out].map((v) => v >>> 0);
}

for (const [m, id] of [[AMD_MODEL, "AuthenticAMD"], [INTEL_MODEL, "GenuineIntel"]] as const) {
  Deno.test(`KVM CPUID presents the ${m.vendor} model, filtered to what KVM supports`, () => {
    const got = kvmCpuidFor(supported(id), m, 0, null);
    const leaf = (fn: number) => got.find((e) => e.function === fn);
    // Identity from the model: vendor, max leaf, signature, brand.
    assertEquals(
      [leaf(0)!.eax, leaf(0)!.ebx, leaf(0)!.edx, leaf(0)!.ecx],
      [m.maxLeaf, ...regs(id)],
    );
    assertEquals(leaf(1)!.eax, model(m, 1)[0]);
    assertEquals(leaf(0x8000_0002)!.eax, model(m, 0x8000_0002)[0]);
    // Features: the model's bits that KVM supports (CX16 is not, here).
    assertEquals(leaf(1)!.edx, model(m, 1)[3]);
    assertEquals(leaf(1)!.ecx, (model(m, 1)[2]! & ~(1 << 13)) >>> 0);
    assertEquals(leaf(0x8000_0001)!.edx, model(m, 0x8000_0001)[3]);
    // KVM's own hypervisor leaves stay; leaves the model does not define are dropped.
    assertEquals(leaf(0x4000_0000)!.ebx, 0x4b4d564b);
    assertEquals(leaf(0xd), undefined);
    assertEquals(leaf(0x8000_0000)!.eax, 0x8000_0008);
    // Every leaf the table has matches the interpreter's answer where KVM supports it all.
    for (const e of got) {
      if (e.function >= 0x4000_0000 && e.function < 0x8000_0000) continue;
      if (e.function === 1) continue; // CX16 filtered above
      assertEquals([e.eax, e.ebx, e.ecx, e.edx], model(m, e.function), `leaf ${e.function}`);
    }
  });
}

Deno.test("KVM refuses a CPU model whose vendor is not the host's, naming the fix", () => {
  assertThrows(
    () => kvmCpuidFor(supported("AuthenticAMD"), INTEL_MODEL, 0, null),
    Error,
    "--backend interp",
  );
  assertThrows(
    () => kvmCpuidFor(supported("GenuineIntel"), AMD_MODEL, 0, null),
    Error,
    "GenuineIntel",
  );
});
