import { assertEquals, assertTrue } from "../_assert.ts";
import {
  KvmClock,
  kvmCpuidLeaf,
  MSR_KVM_SYSTEM_TIME_NEW,
  MSR_KVM_WALL_CLOCK_NEW,
} from "../../devices/kvm_clock.ts";
import { fakeHost } from "./_fake_host.ts";

/** Linux's pvclock_clocksource_read, in BigInt. */
function guestTime(mem: { readU32(a: number): number }, gpa: number, tsc: number): bigint {
  const u64 = (a: number) => BigInt(mem.readU32(a)) | (BigInt(mem.readU32(a + 4)) << 32n);
  const tscStamp = u64(gpa + 8), systemTime = u64(gpa + 16);
  const mul = BigInt(mem.readU32(gpa + 24));
  const shift = (mem.readU32(gpa + 28) << 24) >> 24;
  let delta = BigInt(tsc) - tscStamp;
  delta = shift < 0 ? delta >> BigInt(-shift) : delta << BigInt(shift);
  return systemTime + ((delta * mul) >> 32n);
}

for (const tscHz of [1e9, 2.5e9, 3e8]) {
  Deno.test(`kvm-clock lets the guest compute VM time from a ${tscHz / 1e6} MHz TSC`, () => {
    const host = fakeHost();
    host.clock.advance(123_456_789);
    const tscAt = (ns: number) => Math.floor(ns * tscHz / 1e9) + 777;
    const kvm = new KvmClock(host.memory, host.clock, {
      readTsc: () => tscAt(host.clock.now()),
      tscHz,
    });
    assertTrue(kvm.wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0x3000 | 1));
    assertEquals(host.memory.readU32(0x3000) % 2, 0, "version even after the update");
    assertEquals(host.memory.readU32(0x3000 + 28) >> 8 & 1, 1, "TSC stable flag");
    for (const later of [0, 1_000, 5_000_000, 60_000_000_000]) {
      const ns = host.clock.now() + later;
      const t = guestTime(host.memory, 0x3000, tscAt(ns));
      const err = Number(t) - ns;
      assertTrue(Math.abs(err) <= 2 + ns * 1e-9, `at ${ns} ns the guest reads ${t} (error ${err})`);
    }
  });
}

Deno.test("kvm-clock wall clock is the host time at VM start", () => {
  const host = fakeHost();
  host.clock.advance(2_000_000_000);
  const kvm = new KvmClock(host.memory, host.clock, {
    readTsc: () => host.clock.now(),
    tscHz: 1e9,
    bootWallMs: Date.UTC(2024, 0, 1, 0, 0, 0) + 250,
  });
  kvm.wrmsr(MSR_KVM_WALL_CLOCK_NEW, 0x4000);
  assertEquals(host.memory.readU32(0x4000) % 2, 0);
  assertEquals(host.memory.readU32(0x4004), Date.UTC(2024, 0, 1) / 1000);
  assertEquals(host.memory.readU32(0x4008), 250_000_000);
  assertEquals(kvm.rdmsr(MSR_KVM_WALL_CLOCK_NEW), 0x4000);
});

Deno.test("kvm-clock disabled system-time MSR writes nothing and other MSRs are refused", () => {
  const host = fakeHost();
  const kvm = new KvmClock(host.memory, host.clock, { readTsc: () => 0, tscHz: 1e9 });
  kvm.wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0x3000);
  assertEquals(host.memory.readU32(0x3000), 0);
  assertEquals(kvm.wrmsr(0x10, 5), false);
});

Deno.test("kvm-clock CPUID leaves carry the KVM signature and clock-source features", () => {
  const sig = kvmCpuidLeaf(0x40000000)!;
  const text = new TextDecoder().decode(new Uint32Array([sig.ebx, sig.ecx, sig.edx]));
  assertEquals(text, "KVMKVMKVM\0\0\0");
  assertEquals(kvmCpuidLeaf(0x40000001)!.eax, (1 << 3) | (1 << 24));
  assertEquals(kvmCpuidLeaf(0x40000002), null);
});
