/** End-to-end tests: nasm-built guests run on the interpreter and report through port I/O. */

import { assertEquals, assertIncludes, assertTrue } from "../../_assert.ts";
import { guest, runGuest } from "./_harness.ts";

Deno.test("a real-mode guest prints hello through port 0x3F8 and exits", () => {
  const r = runGuest(guest("real_hello"));
  assertEquals(r.out, "hello from real mode\n");
  assertEquals(r.stop, { kind: "exit", status: 0 });
});

Deno.test("real mode: INT and #DE through the IVT, far calls, PUSHA, ENTER, REP string ops, BCD", () => {
  const r = runGuest(guest("real_misc"));
  assertEquals(r.out, "ABCDEF\n");
  assertEquals(r.stop, { kind: "exit", status: 0 });
});

Deno.test("32-bit protected mode: ring 3 faults to ring 0 on the TSS stack and comes back", () => {
  const r = runGuest(guest("pm_user"));
  assertEquals(r.out, "GS\n");
  assertEquals(r.stop, { kind: "exit", status: 0 });
});

Deno.test("a guest switches real -> protected -> long -> compatibility -> 64-bit mode", () => {
  const r = runGuest(guest("modes"));
  assertEquals(r.out, "RM PM LM CM OK\n");
  assertEquals(r.stop, { kind: "exit", status: 0 });
});

Deno.test("page faults reach the guest's IDT with CR2 and the error code, and IRETQ restarts", () => {
  const r = runGuest(guest("pf"));
  assertEquals(r.out, "PF PF PF OK\n");
  assertEquals(r.stop, { kind: "exit", status: 0 });
});

Deno.test("CPL3 code faults to CPL0 on the TSS stacks, returns by IRETQ, and uses SYSCALL", () => {
  const r = runGuest(guest("user"));
  assertEquals(r.out, "GP UD I80 SC OK\n");
  assertEquals(r.stop, { kind: "exit", status: 0 });
});

/** The workload guest's results, computed independently. */
function expectedWorkload(): string {
  const n = 65536;
  const flags = new Uint8Array(n);
  for (let i = 2; i * i < n; i++) {
    if (!flags[i]) { for (let j = i * i; j < n; j += i) flags[j] = 1; }
  }
  let count = 0n, sum = 0n;
  for (let i = 2; i < n; i++) {
    if (!flags[i]) {
      count++;
      sum += BigInt(i);
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < n; i++) {
    crc ^= flags[i]!;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  crc = (~crc) >>> 0;
  const m = (1n << 64n) - 1n;
  let x = 0x9e3779b97f4a7c15n, acc = 0n;
  for (let k = 0; k < 10000; k++) {
    x ^= x >> 12n;
    x = (x ^ (x << 25n)) & m;
    x ^= x >> 27n;
    acc = (acc + x * 0x2545f4914f6cdd1dn) & m;
  }
  const h = (v: bigint) => v.toString(16).padStart(16, "0");
  return `P=${h(count)} S=${h(sum)} C=${h(BigInt(crc))} X=${h(acc)} Q=${h(acc / 1000003n)} ` +
    `R=${h(acc % 1000003n)}\n`;
}

Deno.test("an integer workload (sieve, CRC-32, xorshift64*, 64-bit DIV) prints the right results", () => {
  const r = runGuest(guest("workload"));
  assertEquals(r.out, expectedWorkload());
  assertEquals(r.stop, { kind: "exit", status: 0 });
});

Deno.test("a guest with no usable IDT triple-faults and the run stops with a clear fault", () => {
  const r = runGuest(guest("triple"));
  assertEquals(r.stop.kind, "fault");
  const msg = (r.stop as { message: string }).message;
  assertIncludes(msg, "triple fault (#UD -> #GP");
  // The register dump is the machine's job (formatCpuState), printed once, not in the message.
  assertEquals(msg.includes("rip="), false);
});

Deno.test("a guest jumping into garbage bytes ends in a triple fault, not a hang", () => {
  const r = runGuest(guest("garbage"));
  assertEquals(r.stop.kind, "fault");
  assertIncludes((r.stop as { message: string }).message, "triple fault (#UD");
});

Deno.test("a guest jumping to an address outside RAM stops with a fault that says so", () => {
  const r = runGuest(guest("garbage"), {
    state: () => {},
    memSize: 16 << 20,
    before: (m) => m.writeU32(0x504, 1),
  });
  assertEquals(r.stop.kind, "fault");
  const msg = (r.stop as { message: string }).message;
  assertIncludes(msg, "not RAM");
  assertTrue(msg.includes("0x3ff00000"), msg);
});

Deno.test("HLT sleeps until an interrupt, the IDT handler runs, MMIO reaches the bus, and a CLI;HLT faults", () => {
  let halts = 0;
  let pending = false;
  let mmioWrite = -1;
  const r = runGuest(guest("irq"), {
    interrupts: {
      hasInterrupt: () => {
        // Raise the line only once the CPU has been seen idle a few times.
        if (!pending && halts >= 0) halts++;
        if (halts === 3) pending = true;
        return pending;
      },
      acknowledge: () => {
        pending = false;
        halts = -1000;
        return 0x20;
      },
    },
    mmio: {
      base: 0xc000_0000,
      length: 0x1000,
      read: (offset) => offset === 0x20 ? 0xfeedf00d : 0,
      write: (offset, _size, value) => {
        if (offset === 0x10) mmioWrite = value;
      },
    },
  });
  assertEquals(r.out, "IRQ 00000000feedf00d\n");
  assertEquals(mmioWrite, 0x12345678);
  assertEquals(r.stop.kind, "fault");
  assertIncludes((r.stop as { message: string }).message, "halted with interrupts disabled");
});

Deno.test("code rewritten by the guest is re-decoded (interpreter and block compiler)", () => {
  for (const jit of [false, true]) {
    const r = runGuest(guest("smc"), { jit });
    assertEquals(r.out, "SMC OK\n", `jit=${jit}`);
  }
});

Deno.test("the block compiler ends every guest in the same state as the plain interpreter", () => {
  const names = [
    ...["workload", "mixed", "branches", "flags_defer", "user", "pf", "modes", "real_misc"],
    ...["pm_user", "stack4g"],
  ];
  for (const name of names) {
    const a = runGuest(guest(name), { jit: false });
    const b = runGuest(guest(name), { jit: true });
    assertEquals(b.out, a.out, name);
    const sa = a.vcpu.getState(), sb = b.vcpu.getState();
    assertEquals([sb.gpr, sb.rip, sb.rflags], [sa.gpr, sa.rip, sa.rflags], name);
    assertEquals(b.vcpu.cpu.icount, a.vcpu.cpu.icount, `${name}: instruction count`);
  }
});

Deno.test("code remapped by INVLPG or a CR3 reload runs from its new page (instruction TLB)", () => {
  for (const jit of [false, true]) {
    const r = runGuest(guest("itlb"), { jit });
    assertEquals(r.out, "ITLB OK\n", `jit=${jit}`);
    assertEquals(r.stop, { kind: "exit", status: 0 });
  }
});

Deno.test("PUSH, CALL, POP and RET move RSP across a 4 GiB boundary (plain and compiled)", () => {
  for (const jit of [false, true]) {
    const r = runGuest(guest("stack4g"), { jit });
    assertEquals(r.out.endsWith(" STACK4G OK\n"), true, `jit=${jit}: ${r.out}`);
    assertEquals(r.stop, { kind: "exit", status: 0 });
  }
});

Deno.test("user and kernel pages sharing a software-TLB slot stay apart", () => {
  for (const jit of [false, true]) {
    const r = runGuest(guest("tlb_alias"), { memSize: 32 << 20, jit });
    assertEquals(r.out, "TLB OK\n", `jit=${jit}`);
    assertEquals(r.stop, { kind: "exit", status: 0 });
  }
});
