/**
 * The debug registers, XCR0, the XSAVE area and the MP state in CpuState: a guest that loaded
 * DR0–DR3 and DR7 is snapshotted, restored (on the same backend and, where KVM runs, on the
 * other one) and reads them back with MOV from DRn; a halted vCPU's state says so in `mpState`.
 */

import { assertEquals, assertTrue as assert } from "../../_assert.ts";
import { BACKENDS, ROOT } from "../../_run.ts";
import { buildMachine, restoreMachine, type VmConfig } from "../../../core/vm.ts";
import type { Machine } from "../../../core/machine.ts";
import { createSnapshot } from "../../../core/snapshot/mod.ts";
import { FLAT_LOAD_ADDR } from "../../../core/boot/flat.ts";

/** tests/core/snapshot/guests/debugregs.asm; its last byte is the `go` flag. */
const GUEST = `${ROOT}tests/core/snapshot/guests/debugregs.bin`;
const GO = FLAT_LOAD_ADDR + Deno.statSync(GUEST).size - 1;
const EXPECTED = "dr0=12345678 dr1=9abcdef0 dr2=00c0ffee dr3=feedf00d dr7=00000401\n";

function config(backend: "interp" | "kvm"): VmConfig {
  return {
    backend,
    memSize: 16 << 20,
    kernel: GUEST,
    format: "flat",
    cmdline: "",
    initrd: null,
    devices: [],
    serial: { kind: "stdio" },
    trace: false,
  };
}

function collector(onWrite: (text: string) => void = () => {}) {
  const dec = new TextDecoder();
  const out = {
    text: "",
    sink: {
      writeSync: (b: Uint8Array): number => {
        out.text += dec.decode(b);
        onWrite(out.text);
        return b.length;
      },
    },
  };
  return out;
}

const quiet = { log: () => {} };

for (const from of BACKENDS) {
  for (const to of BACKENDS) {
    Deno.test(`debug registers set on ${from} read back after a restore on ${to}`, async () => {
      const dir = Deno.makeTempDirSync({ prefix: "denovisor-dr-" });
      try {
        let machine: Machine | null = null;
        const first = collector((t) => {
          if (t.includes("set\n")) machine?.pause();
        });
        machine = await buildMachine(config(from), { ...quiet, stdout: first.sink });
        const files = { statePath: `${dir}/vm.state`, memPath: `${dir}/vm.mem` };
        try {
          assertEquals(machine.run().reason, { kind: "pause" });
          const s = machine.vcpu.getState();
          assertEquals(s.debug.dr0, 0x1234_5678n);
          assertEquals(s.debug.dr3, 0xfeed_f00dn);
          assertEquals(s.debug.dr7 & 0xffffn, 0x401n);
          assertEquals(s.mpState, "runnable");
          assertEquals(s.xcr0 & 1n, 1n, "XCR0 has x87");
          if (from === "interp") {
            assertEquals(s.xcr0, 1n, "the interpreter announces no XSAVE");
            assertEquals(s.xsave, null);
          }
          createSnapshot(machine, files);
        } finally {
          machine.close();
        }
        const second = collector();
        const m = await restoreMachine(files, { ...quiet, stdout: second.sink }, { backend: to });
        try {
          m.memory.write(GO, new Uint8Array([1]));
          assertEquals(m.run().reason, { kind: "exit", status: 1 }, second.text);
          assertEquals(second.text, EXPECTED);
        } finally {
          m.close();
        }
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
}

for (const backend of BACKENDS) {
  Deno.test(`${backend}: mpState "halted" restores a halted vCPU and reads back`, async () => {
    const m = await buildMachine(config(backend), quiet);
    try {
      const s = m.vcpu.getState();
      assertEquals(s.mpState, "runnable");
      m.vcpu.setState({ ...s, halted: false, mpState: "halted" });
      const back = m.vcpu.getState();
      assertEquals(back.mpState, "halted");
      assert(back.halted, "the two views agree");
      m.vcpu.setState({ ...s, halted: false, mpState: "runnable" });
      assertEquals(m.vcpu.getState().mpState, "runnable");
      assertEquals(m.vcpu.getState().halted, false);
    } finally {
      m.close();
    }
  });
}
