/**
 * The KVM backend against a real /dev/kvm: real-mode guests doing port I/O, string I/O, MMIO,
 * HLT, a triple fault and interrupt injection, plus state round trips on a live vCPU. Every
 * test is ignored, with a warning saying why, where /dev/kvm cannot be opened.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import {
  addExitPort,
  bootGuest,
  guestImage,
  haltWatchdog,
  kvmOk,
  LOAD_ADDRESS,
  type TestVm,
} from "./_harness.ts";
import {
  CONTROL_REQUEST,
  CONTROL_STATUS,
  REQUEST_PAUSE,
  REQUEST_STOP,
} from "../../../core/backend.ts";
import {
  cloneCpuState,
  type CpuState,
  CR0_ET,
  CR0_PE,
  flatSegment,
  MSR,
} from "../../../core/cpu_state.ts";
import { HostError, PluginError, VmmError } from "../../../core/errors.ts";
import {
  createKvmBackend,
  enableVcpuKicks,
  kickVcpu,
  kvmAvailable,
  type VcpuKickHandle,
} from "../../../core/kvm/backend.ts";

const ignore = !kvmOk;

/** A device that records writes as [offset, size, value] and answers reads by size. */
function recorder(vm: TestVm, base: number, length: number) {
  const writes: [number, number, number][] = [];
  vm.ports.register(base, length, `rec-${base}`, {
    read: (_o, size) => (size === 1 ? 0xa5 : size === 2 ? 0xbeef : 0xdead_beef),
    write: (o, size, value) => void writes.push([o, size, value]),
  });
  return writes;
}

Deno.test({
  name: "a real-mode guest's OUT and IN reach the port bus with every width",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("pio"));
    try {
      addExitPort(vm);
      const rec = recorder(vm, 0x80, 1);
      const answers: number[] = [];
      vm.ports.register(0x81, 1, "answer", {
        read: (_o, size) => {
          const v = size === 1 ? 0xa5 : size === 2 ? 0xbeef : 0xdead_beef;
          answers.push(size);
          return v;
        },
        write: () => {},
      });
      const str: number[] = [];
      vm.ports.register(0x82, 1, "string", {
        read: () => 0,
        write: (_o, _s, v) => void str.push(v),
      });
      const stop = vm.vcpu.run();
      assertEquals(stop, { kind: "exit", status: 0 });
      assertEquals(rec, [
        [0, 1, 0x42],
        [0, 2, 0x1234],
        [0, 4, 0xdead_beef],
        [0, 1, 0xa5],
        [0, 2, 0xbeef],
        [0, 4, 0xdead_beef],
      ]);
      assertEquals(String.fromCharCode(...str), "hello");
      // rep insw: three word reads, stored at 0x2000 by the kernel from kvm_run's data area.
      assertEquals(answers, [1, 2, 4, 2, 2, 2]);
      assertEquals([...vm.memory.read(0x2000, 6)], [0xef, 0xbe, 0xef, 0xbe, 0xef, 0xbe]);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "MMIO reads and writes outside RAM reach the MMIO bus",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("mmio"));
    try {
      addExitPort(vm);
      const echoed = recorder(vm, 0x80, 1);
      const writes: [number, number, number][] = [];
      vm.mmio.register(0xa0000, 0x1000, "mmio-dev", {
        read: (o, size) => (o === 0x40 && size === 1 ? 0x77 : o === 0x42 ? 0x8765 : 0x0bad_cafe),
        write: (o, size, v) => void writes.push([o, size, v]),
      });
      assertEquals(vm.vcpu.run(), { kind: "exit", status: 0 });
      assertEquals(writes, [[0x10, 1, 0x5a], [0x20, 2, 0x1234], [0x30, 4, 0xcafe_f00d]]);
      assertEquals(echoed, [[0, 1, 0x77], [0, 2, 0x8765], [0, 4, 0x0bad_cafe]]);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "HLT with interrupts disabled stops the VM with a fault instead of hanging",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("hlt_cli"));
    try {
      const stop = vm.vcpu.run();
      assertEquals(stop.kind, "fault");
      assertMatch(
        (stop as { message: string }).message,
        /CPU halted with interrupts disabled: nothing can wake it/,
      );
      assert(vm.vcpu.getState().halted);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "a triple fault stops the VM with a fault",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("triple_fault"));
    try {
      haltWatchdog(vm);
      const stop = vm.vcpu.run();
      assertEquals(stop.kind, "fault");
      const message = (stop as { message: string }).message;
      assert(!message.includes("watchdog"), message);
      assertMatch(message, /triple-fault|internal error/);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "a halted guest with interrupts enabled pauses on a cross-thread request",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("hlt_sti"));
    try {
      let serviced = 0;
      vm.control.service = () => {
        serviced++;
        // What the supervisor does from another thread: a request in the shared array.
        if (serviced === 3) Atomics.store(vm.control.requests, CONTROL_REQUEST, REQUEST_PAUSE);
        if (serviced > 5000) vm.control.stop = { kind: "fault", message: "watchdog" };
      };
      assertEquals(vm.vcpu.run(), { kind: "pause" });
      assertEquals(serviced, 3);
      const s = vm.vcpu.getState();
      assert(s.halted, "the vCPU reports it is halted");
      assertEquals(s.rip, BigInt(LOAD_ADDRESS + 2), "RIP is past the HLT");
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "an interrupt from the controller wakes a halted real-mode guest through its IVT",
  ignore,
  fn() {
    let armed = false;
    let acked = 0;
    const vm = bootGuest(guestImage("irq"), {
      interrupts: {
        hasInterrupt: () => armed,
        acknowledge: () => {
          armed = false;
          acked++;
          return 0x20;
        },
      },
    });
    try {
      addExitPort(vm);
      haltWatchdog(vm);
      const rec = recorder(vm, 0x80, 1);
      vm.ports.register(0x83, 1, "arm", { read: () => 0, write: () => void (armed = true) });
      assertEquals(vm.vcpu.run(), { kind: "exit", status: 0x11 });
      assertEquals(acked, 1);
      assertEquals(rec, [[0, 1, 0x99]]);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "a device error thrown from the bus propagates out of run() unchanged",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("pio"));
    try {
      vm.ports.register(0x80, 1, "broken", {
        read: () => 0,
        write: () => {
          throw new Error("register 0 is read-only");
        },
      });
      const err = assertThrows(() => vm.vcpu.run(), PluginError);
      assertMatch(err.message, /Device "broken" failed in its port write handler/);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "with a trace sink each exit is described in one line",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("pio"), { trace: true });
    try {
      addExitPort(vm);
      recorder(vm, 0x80, 3);
      vm.vcpu.run();
      assertEquals(vm.trace[0], "kvm vcpu0 exit IO out port=0x0080 size=1 count=1");
      assert(vm.trace.every((l) => l.startsWith("kvm vcpu0 exit ")));
      assertEquals(vm.trace.at(-1), "kvm vcpu0 exit IO out port=0x00f4 size=1 count=1");
    } finally {
      vm.close();
    }
  },
});

/** A state with a distinctive value in every field KVM keeps for a 32-bit protected-mode CPU. */
function distinctiveState(base: CpuState): CpuState {
  const s = cloneCpuState(base);
  s.gpr = s.gpr.map((_, i) => 0x1111_0000_0000_0000n * BigInt(i % 15 + 1) + BigInt(i));
  s.rip = 0x0040_1234n;
  s.rflags = 0x0000_0acb | 0x2; // CF PF AF SF ZF? plus OF/DF; IF off
  s.cr0 = CR0_PE | CR0_ET;
  s.cs = flatSegment(0x08, true);
  s.ds = flatSegment(0x10, false);
  s.es = { ...flatSegment(0x18, false), base: 0x1234_5000n, limit: 0x000f_ffff, g: 0 };
  s.fs = { ...flatSegment(0x20, false), base: 0x7fff_1000n };
  s.gs = { ...flatSegment(0x28, false), base: 0xffff_8000_0000_0000n };
  s.ss = flatSegment(0x10, false);
  s.gdt = { base: 0x5000n, limit: 0x37 };
  s.idt = { base: 0x6000n, limit: 0x7ff };
  s.cr2 = 0xdead_b000n;
  s.cr3 = 0x0010_0000n;
  s.cr4 = 0x600; // OSFXSR | OSXMMEXCPT
  s.msrs.set(MSR.STAR, 0x0023_0010_0000_0000n);
  s.msrs.set(MSR.LSTAR, 0xffff_ffff_8100_0000n);
  s.msrs.set(MSR.KERNEL_GS_BASE, 0xffff_8880_0000_1000n);
  s.msrs.set(MSR.SYSENTER_CS, 0x10n);
  s.msrs.set(MSR.SYSENTER_EIP, 0xc010_0000n);
  s.fpu.fcw = 0x27f;
  s.fpu.mxcsr = 0x1f80 | 0x3; // IE|DE flags set
  s.fpu.xmm = s.fpu.xmm.map((_, i) => (i * 7) & 0xff);
  s.fpu.st = s.fpu.st.map((_, i) => (i % 16 < 10 ? (i * 3) & 0xff : 0));
  s.fpu.ftw = 0x81;
  return s;
}

/** A state without the MSR that keeps moving by itself (the TSC). */
function withoutTsc(s: CpuState): CpuState {
  const c = cloneCpuState(s);
  c.msrs.delete(MSR.TSC);
  return c;
}

Deno.test({
  name: "setState then getState on a live vCPU returns the same state",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("hlt_cli"));
    try {
      const want = distinctiveState(vm.vcpu.getState());
      vm.vcpu.setState(want);
      const got = vm.vcpu.getState();
      // `fpu` wins over the XSAVE area's legacy region (want.xsave still has the old one); the
      // state beyond the XSAVE header is the area's.
      assertEquals({ ...withoutTsc(got), xsave: null }, { ...withoutTsc(want), xsave: null });
      assertEquals(got.xsave === null, want.xsave === null);
      if (got.xsave !== null) assertEquals(got.xsave.slice(576), want.xsave!.slice(576));
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "getState after a run sees the registers the guest wrote",
  ignore,
  fn() {
    // mov eax, 0x12345678; mov bx, 0x4321; out 0xf4, al
    const code = new Uint8Array([0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, 0xbb, 0x21, 0x43, 0xe6, 0xf4]);
    const vm = bootGuest(code);
    try {
      addExitPort(vm);
      assertEquals(vm.vcpu.run(), { kind: "exit", status: 0x78 });
      const s = vm.vcpu.getState();
      assertEquals(s.gpr[0], 0x12345678n);
      assertEquals(s.gpr[3], 0x4321n);
      assertEquals(s.rip, BigInt(LOAD_ADDRESS + code.length));
      // A setState after a run wins over the registers synced at the exit.
      s.gpr[3] = 0x5555n;
      vm.vcpu.setState(s);
      assertEquals(vm.vcpu.getState().gpr[3], 0x5555n);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "setState rejects an MSR value KVM refuses, naming the MSR",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("hlt_cli"));
    try {
      const s = vm.vcpu.getState();
      s.msrs.set(0x1234_5678, 1n); // no CPU has this MSR
      const err = assertThrows(() => vm.vcpu.setState(s), HostError);
      assertMatch(err.message, /MSR 0x12345678/);
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "guest RAM above the MMIO gap is registered at 4 GiB",
  ignore,
  fn() {
    const kvm = createKvmBackend();
    try {
      const memory = kvm.createMemory(0xC000_0000 + 0x10_0000);
      assertEquals(memory.regions.length, 2);
      assertEquals(memory.offsetOf(0x1_0000_0000), 0xC000_0000);
      assertThrows(() => kvm.createMemory(0x1000), HostError);
    } finally {
      kvm.close();
    }
  },
});

Deno.test({
  name: "an exception in protected mode stops the VM with a fault that says what to do",
  ignore,
  fn() {
    const vm = bootGuest(new Uint8Array([0xcc, 0xeb, 0xfe])); // int3; jmp $
    try {
      const s = vm.vcpu.getState();
      s.cr0 = CR0_PE | CR0_ET;
      s.cs = flatSegment(0x08, true);
      for (const r of ["ds", "es", "fs", "gs", "ss"] as const) s[r] = flatSegment(0x10, false);
      s.idt = { base: 0n, limit: 0 }; // no gate for #BP: #GP, #DF, then shutdown
      vm.vcpu.setState(s);
      haltWatchdog(vm);
      const stop = vm.vcpu.run();
      assertEquals(stop.kind, "fault");
      const message = (stop as { message: string }).message;
      if (message.includes("internal error")) {
        // Hosts whose KVM cannot deliver the exception say so and name the way out.
        assertMatch(message, /protected mode/);
        assertMatch(message, /--backend interp/);
      } else {
        assertMatch(message, /triple-faulted/);
      }
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "a vCPU created in a Worker runs over guest RAM the main thread allocated",
  ignore,
  async fn() {
    const kvm = createKvmBackend();
    const worker = new Worker(new URL("./_worker_vcpu.ts", import.meta.url), { type: "module" });
    try {
      const memory = kvm.createMemory(0x80000);
      memory.write(LOAD_ADDRESS, guestImage("pio"));
      const done = new Promise<{ stop: unknown; writes: number[] }>((resolve, reject) => {
        worker.onmessage = (e) => resolve(e.data);
        worker.onerror = (e) => reject(e);
      });
      worker.postMessage(kvm.handles());
      const { stop, writes } = await done;
      assertEquals(stop, { kind: "exit", status: 0 });
      assertEquals(writes.slice(0, 3), [0x42, 0x1234, 0xdead_beef]);
      // The guest's rep insw wrote through the Worker's view; the main thread sees it.
      assertEquals(memory.readU16(0x2000), 0xbeef);
    } finally {
      worker.terminate();
      kvm.close();
    }
  },
});

Deno.test("a missing KVM device is a HostError naming the device, the reason and the way out", () => {
  const device = "/dev/kvm-that-does-not-exist";
  const err = assertThrows(() => createKvmBackend({ device }), HostError);
  assertEquals(
    err.message,
    `Cannot open ${device}: No such file or directory. ` +
      `Use --backend interp, or load the kvm module`,
  );
  assertEquals(kvmAvailable({ device }), { ok: false, reason: err.message });
});

Deno.test("a device that is not KVM is refused with the reason", () => {
  const err = assertThrows(() => createKvmBackend({ device: "/dev/null" }), HostError);
  assertEquals(
    err.message,
    "/dev/null is not a KVM device (KVM_GET_API_VERSION: Inappropriate ioctl for device). " +
      "Use --backend interp",
  );
});

Deno.test({
  name: "getState after a pause on an IN sees the value the device returned",
  ignore,
  fn() {
    // mov ax, 0x1111; in ax, 0x81; out 0xf4, al
    const vm = bootGuest(new Uint8Array([0xb8, 0x11, 0x11, 0xe5, 0x81, 0xe6, 0xf4]));
    try {
      addExitPort(vm);
      vm.ports.register(0x81, 1, "pausing", {
        read: () => {
          vm.control.stop = { kind: "pause" };
          return 0xabcd;
        },
        write: () => {},
      });
      assertEquals(vm.vcpu.run(), { kind: "pause" });
      const s = vm.vcpu.getState();
      assertEquals(s.gpr[0], 0xabcdn, "the IN completed into AX");
      assertEquals(s.rip, BigInt(LOAD_ADDRESS + 5), "RIP is past the IN");
      // Resuming runs on from the OUT, not the IN again.
      assertEquals(vm.vcpu.run(), { kind: "exit", status: 0xcd });
    } finally {
      vm.close();
    }
  },
});

Deno.test({
  name: "debug registers, XCR0 and the MP state set on a live vCPU read back",
  ignore,
  fn() {
    const vm = bootGuest(guestImage("hlt_cli"));
    try {
      const s = vm.vcpu.getState();
      s.debug = {
        dr0: 0x1000n,
        dr1: 0x2000n,
        dr2: 0x3000n,
        dr3: 0xffff_ffff_8000_0000n,
        dr6: 0xffff_0ff0n,
        dr7: 0x455n, // L0 G0 L1 G1 L2 G2, bit 10 reserved 1
      };
      s.mpState = "halted";
      vm.vcpu.setState(s);
      const back = vm.vcpu.getState();
      assertEquals(back.debug, s.debug);
      assertEquals(back.mpState, "halted");
      assert(back.halted, "the vCPU waits for an interrupt");
      assertEquals(back.xcr0 & 1n, 1n, "XCR0 always has x87");
      vm.vcpu.setState({ ...back, halted: false, mpState: "runnable" });
      assertEquals(vm.vcpu.getState().mpState, "runnable");
      // XCR0 bits the guest's CPUID does not allow are refused before KVM sees them.
      const err = assertThrows(() => vm.vcpu.setState({ ...back, xcr0: 1n << 62n }), VmmError);
      assertMatch(err.message, /XCR0/);
    } finally {
      vm.close();
    }
  },
});

for (const syncRegs of ["all", "regs", "none"] as const) {
  Deno.test({
    name: `getState after a run agrees with the ioctls when syncRegs is "${syncRegs}"`,
    ignore,
    fn() {
      // mov eax, 0x12345678; mov ds, ax (hidden base 0x56780); cli; hlt. The HLT exit leaves
      // no I/O to complete, so getState reads what KVM synced into kvm_run at that exit.
      const code = new Uint8Array([0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, 0x8e, 0xd8, 0xfa, 0xf4]);
      const vm = bootGuest(code, { kvm: { syncRegs } });
      try {
        assertEquals(vm.vcpu.run().kind, "fault");
        const afterRun = vm.vcpu.getState(); // from kvm_run where synced
        assertEquals(afterRun.ds.base, 0x56780n);
        vm.vcpu.setState(afterRun);
        const viaIoctl = vm.vcpu.getState(); // after setState: always from the ioctls
        assertEquals(withoutTsc(afterRun), withoutTsc(viaIoctl));
      } finally {
        vm.close();
      }
    },
  });
}

Deno.test({
  name: "a guest spinning without exits stops when the supervisor requests it and kicks",
  ignore,
  async fn() {
    const kvm = createKvmBackend();
    const disable = enableVcpuKicks();
    const worker = new Worker(new URL("./_worker_spin.ts", import.meta.url), { type: "module" });
    try {
      const memory = kvm.createMemory(0x80000);
      memory.write(LOAD_ADDRESS, new Uint8Array([0xeb, 0xfe])); // jmp $
      const requests = new Int32Array(new SharedArrayBuffer(8));
      const messages: { kick?: VcpuKickHandle; stop?: unknown }[] = [];
      let wake = () => {};
      worker.onmessage = (e) => {
        messages.push(e.data);
        wake();
      };
      const next = () => new Promise<void>((r) => (wake = r));
      worker.postMessage({ handles: kvm.handles(), requests });
      while (messages.length < 1) await next();
      const kick = messages[0]!.kick!;
      await new Promise((r) => setTimeout(r, 50)); // let it spin inside KVM_RUN
      Atomics.store(requests, CONTROL_STATUS, 3);
      Atomics.store(requests, CONTROL_REQUEST, REQUEST_STOP);
      // Repeat the kick until the vCPU takes the request, as a supervisor does.
      const timer = setInterval(() => kickVcpu(kick), 10);
      let timeout: ReturnType<typeof setTimeout> | undefined;
      kickVcpu(kick);
      try {
        await Promise.race([
          (async () => {
            while (messages.length < 2) await next();
          })(),
          new Promise((_, reject) => {
            timeout = setTimeout(() => reject(new Error("the kicked vCPU never returned")), 5000);
          }),
        ]);
      } finally {
        clearInterval(timer);
        clearTimeout(timeout);
      }
      assertEquals(messages[1]!.stop, { kind: "exit", status: 3 });
    } finally {
      worker.terminate();
      disable();
      kvm.close();
    }
  },
});
