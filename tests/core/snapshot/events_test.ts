/**
 * vCPU events in CpuState: an interrupt a vCPU had accepted but not yet delivered when its
 * state was taken (KVM's `kvm_vcpu_events`) is delivered by whichever backend the state is
 * restored on, and the structure round-trips through KVM's layout.
 */

import { assertEquals } from "../../_assert.ts";
import { BACKENDS } from "../../_run.ts";
import { Machine } from "../../../core/machine.ts";
import { selectBackend } from "../../../core/select_backend.ts";
import { loadPlugin } from "../../../plugins/loader.ts";
import {
  type CpuEvents,
  noCpuEvents,
  realModeSegment,
  resetCpuState,
} from "../../../core/cpu_state.ts";
import { decodeEvents, encodeEvents } from "../../../core/kvm/structs.ts";

Deno.test("kvm_vcpu_events round-trips the fields CpuEvents keeps", () => {
  const samples: CpuEvents[] = [
    noCpuEvents(),
    { ...noCpuEvents(), shadow: 1, interrupt: 0x20 },
    { ...noCpuEvents(), shadow: 2, exception: 14, exceptionErrorCode: 6, nmiMasked: true },
    { ...noCpuEvents(), interrupt: 0x80, interruptSoft: true, nmiPending: true },
  ];
  for (const e of samples) {
    const b = encodeEvents(e);
    assertEquals(b.length, 64);
    assertEquals(decodeEvents(new DataView(b.buffer)), e);
  }
});

// A flat guest that spins at 0x7C00; vector 0x40's handler (0x7C02) exits with 0x2A (status 0x55).
const GUEST = new Uint8Array([0xeb, 0xfe, 0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);

for (const backend of BACKENDS) {
  Deno.test(`${backend}: an interrupt in flight in the restored state is delivered on the next run`, async () => {
    const m = new Machine({
      backend: await selectBackend(backend, () => {}),
      memSize: 1 << 20,
      log: () => {},
    });
    try {
      m.attach(await loadPlugin(new URL("../../../devices/debug_exit.ts", import.meta.url).href));
      m.memory.write(0x7c00, GUEST);
      m.memory.write(0x40 * 4, new Uint8Array([0x02, 0x7c, 0x00, 0x00])); // IVT[0x40] = 0:7C02
      const s = resetCpuState();
      s.cs = realModeSegment(0, 0xb);
      s.rip = 0x7c00n;
      s.events = { ...noCpuEvents(), interrupt: 0x40 };
      m.vcpu.setState(s);
      assertEquals(m.vcpu.getState().events.interrupt, 0x40, "the event is part of the state");
      assertEquals(m.run().reason, { kind: "exit", status: 0x55 });
    } finally {
      m.close();
    }
  });
}
