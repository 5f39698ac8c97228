/**
 * What Linux looks for in the interpreter's platform: CPUID announcing the local APIC and
 * kvm-clock, IA32_APIC_BASE and the kvm-clock MSRs reaching the machine's devices, and device
 * DMA over code that already ran dropping the instructions decoded from it. Each guest is a few
 * real-mode instructions (the nasm source is next to the bytes) run on a whole Machine.
 */

import { assertEquals, assertTrue } from "../../_assert.ts";
import { Machine } from "../../../core/machine.ts";
import { createInterpBackend, type InterpVcpu } from "../../../core/interp/backend.ts";
import { cpuid, cpuidOut, setCpuidPlatform } from "../../../core/interp/cpuid.ts";
import { resetCpuState } from "../../../core/cpu_state.ts";
import { API_VERSION, definePlugin, type DeviceHost } from "../../../plugins/mod.ts";
import { pvclockScale } from "../../../devices/kvm_clock.ts";

const LOAD = 0x7c00;

/** Machine code written as hex byte pairs separated by spaces. */
function bytes(hex: string): Uint8Array {
  return new Uint8Array(hex.trim().split(/\s+/).map((h) => parseInt(h, 16)));
}
const EXIT_PORT = 0xf4;
const DMA_PORT = 0xf0;
/** Interpreter slices (≈ 4096 instructions each) a test guest may run. */
const MAX_SLICES = 10_000;

/**
 * A Machine on the interpreter running `code` at 0000:7C00. A write to port 0xF4 ends the run
 * with that status; a write to 0xF0 calls `onDma` with the device's host (for DMA).
 */
function runOnMachine(
  code: Uint8Array,
  opts: { onDma?: (host: DeviceHost) => void; jit?: boolean; before?: (m: Machine) => void } = {},
): { machine: Machine; status: number | null } {
  const machine = new Machine({
    backend: createInterpBackend(),
    memSize: 16 << 20,
    localApic: true,
  });
  machine.attach(definePlugin({
    name: "test-ports",
    apiVersion: API_VERSION,
    create: (host) => ({
      ports: [
        { base: EXIT_PORT, length: 1, read: () => 0, write: (_o, _s, v) => host.power.exit(v) },
        { base: DMA_PORT, length: 1, read: () => 0, write: () => opts.onDma?.(host) },
      ],
      reset() {},
      save: () => ({ version: 1, fields: {} }),
      restore() {},
    }),
  }));
  (machine.vcpu as InterpVcpu).jit = opts.jit ?? true;
  // A budget, so a guest that goes astray fails the test instead of hanging it.
  const service = machine.control.service;
  let slices = 0;
  machine.control.service = () => {
    service();
    if (++slices > MAX_SLICES) machine.control.stop ??= { kind: "fault", message: "budget" };
  };
  machine.memory.write(LOAD, code);
  opts.before?.(machine);
  const state = resetCpuState();
  state.rip = BigInt(LOAD);
  machine.vcpu.setState(state);
  const { reason } = machine.run();
  machine.close();
  return { machine, status: reason.kind === "exit" ? reason.status : null };
}

// xor ax,ax; mov ds,ax
// mov eax,1; cpuid; mov [0x500],edx; mov [0x504],ecx
// mov eax,0x40000000; cpuid; mov [0x508],eax; mov [0x50c],ebx; mov [0x510],ecx; mov [0x514],edx
// mov eax,0x40000001; cpuid; mov [0x518],eax
// mov ecx,0x1b; rdmsr; mov [0x51c],eax; and eax,~0x800; wrmsr; rdmsr; mov [0x520],eax
// mov ecx,0x4b564d01; mov eax,0x2001; xor edx,edx; wrmsr; rdmsr; mov [0x524],eax
// rdtsc; mov [0x528],eax; mov [0x52c],edx; mov al,0; out 0xf4,al
const PLATFORM_PROBE = bytes(
  "31 c0 8e d8 66 b8 01 00 00 00 0f a2 66 89 16 00 05 66 89 0e 04 05 66 b8 00 00 00 40 0f a2 " +
    "66 a3 08 05 66 89 1e 0c 05 66 89 0e 10 05 66 89 16 14 05 66 b8 01 00 00 40 0f a2 66 a3 18 " +
    "05 66 b9 1b 00 00 00 0f 32 66 a3 1c 05 66 25 ff f7 ff ff 0f 30 0f 32 66 a3 20 05 66 b9 01 " +
    "4d 56 4b 66 b8 01 20 00 00 66 31 d2 0f 30 0f 32 66 a3 24 05 0f 31 66 a3 28 05 66 89 16 2c " +
    "05 b0 00 e6 f4",
);

function probe(): Machine {
  const { machine, status } = runOnMachine(PLATFORM_PROBE);
  assertEquals(status, 0, "the probe guest must reach its exit port");
  return machine;
}

function text(...words: number[]): string {
  let s = "";
  for (const w of words) {
    for (let k = 0; k < 4; k++) s += String.fromCharCode((w >>> (8 * k)) & 255);
  }
  return s;
}

Deno.test("CPUID leaf 1 announces the local APIC and a hypervisor on the interpreter's PC", () => {
  const m = probe();
  const edx = m.memory.readU32(0x500), ecx = m.memory.readU32(0x504);
  assertTrue((edx & (1 << 9)) !== 0, `CPUID.1:EDX.APIC clear (edx=0x${edx.toString(16)})`);
  assertTrue((ecx >>> 31) === 1, `CPUID.1:ECX.hypervisor clear (ecx=0x${ecx.toString(16)})`);
});

Deno.test("CPUID leaf 0x40000000 says KVMKVMKVM and 0x40000001 offers kvm-clock", () => {
  const m = probe();
  const mem = m.memory;
  assertEquals(mem.readU32(0x508), 0x4000_0001, "highest hypervisor leaf");
  assertEquals(
    text(mem.readU32(0x50c), mem.readU32(0x510), mem.readU32(0x514)),
    "KVMKVMKVM\0\0\0",
  );
  const features = mem.readU32(0x518);
  assertTrue((features & (1 << 3)) !== 0, "KVM_FEATURE_CLOCKSOURCE2 missing");
  assertTrue((features & (1 << 24)) !== 0, "KVM_FEATURE_CLOCKSOURCE_STABLE_BIT missing");
});

Deno.test("IA32_APIC_BASE reads 0xFEE00900 and clearing its enable bit disables the LAPIC", () => {
  const m = probe();
  assertEquals(m.memory.readU32(0x51c), 0xfee0_0900);
  assertEquals(m.memory.readU32(0x520), 0xfee0_0100);
  assertEquals(m.platform.lapic.hardwareEnabled, false);
});

Deno.test("IA32_APIC_BASE refuses to move the APIC page or enter x2APIC mode", () => {
  const m = new Machine({ backend: createInterpBackend(), memSize: 1 << 20 });
  let refused = 0;
  for (const v of [0xfed0_0900, 0xfee0_0d00]) {
    try {
      m.platform.writeApicBaseMsr(v);
    } catch {
      refused++;
    }
  }
  assertEquals(refused, 2);
  assertEquals(m.platform.apicBaseMsr, 0xfee0_0900);
  m.close();
});

Deno.test("the kvm-clock system-time MSR makes the machine write a pvclock page", () => {
  const m = probe();
  const mem = m.memory;
  assertEquals(mem.readU32(0x524), 0x2001, "RDMSR returns what the guest wrote");
  const version = mem.readU32(0x2000);
  assertTrue(version !== 0 && version % 2 === 0, `pvclock version ${version} is not even`);
  const tscAtUpdate = mem.readU32(0x2008) + mem.readU32(0x200c) * 2 ** 32;
  const guestTsc = mem.readU32(0x528) + mem.readU32(0x52c) * 2 ** 32;
  assertTrue(guestTsc >= tscAtUpdate, "the TSC went backwards after the pvclock update");
  // The interpreter's TSC counts nanoseconds, so the scale is exactly 1 ns per tick.
  const { mul, shift } = pvclockScale(1e9);
  assertEquals(mem.readU32(0x2018), mul);
  assertEquals(mem.readU8(0x201c), shift & 0xff);
  assertEquals(mem.readU8(0x201d) & 1, 1, "PVCLOCK_TSC_STABLE_BIT");
});

Deno.test("a bare interpreter CPU (no machine platform) announces no APIC and no hypervisor leaves", () => {
  setCpuidPlatform(null);
  cpuid(1, 0, 0);
  assertEquals(cpuidOut[3]! & (1 << 9), 0);
  cpuid(0x4000_0000, 0, 0);
  assertEquals([...cpuidOut], [0, 0, 0, 0]);
});

// xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7000
// mov cx,200; a: call 0x3000; loop a        (run the routine until it is hot)
// mov bl,al; out 0xf0,al                    (the device DMAs new code over 0x3000)
// mov cx,200; b: call 0x3000; loop b
// shl bl,4; or al,bl; out 0xf4,al           (status = old result << 4 | new result)
const DMA_OVER_CODE = bytes(
  "31 c0 8e d8 8e d0 bc 00 70 b9 c8 00 e8 f1 b3 e2 fb 88 c3 e6 f0 b9 c8 00 e8 e5 b3 e2 fb c0 " +
    "e3 04 08 d8 e6 f4",
);
const ROUTINE = 0x3000;
const MOV_AL_RET = (v: number) => new Uint8Array([0xb0, v, 0xc3]); // mov al,v; ret

for (const jit of [true, false]) {
  Deno.test(`device DMA over code that already ran replaces it (jit ${jit ? "on" : "off"})`, () => {
    const { status } = runOnMachine(DMA_OVER_CODE, {
      jit,
      before: (m) => m.memory.write(ROUTINE, MOV_AL_RET(1)),
      onDma: (host) => host.memory.write(ROUTINE, MOV_AL_RET(2)),
    });
    assertEquals(status, 0x12, "the routine must return 1 before the DMA and 2 after it");
  });
}
