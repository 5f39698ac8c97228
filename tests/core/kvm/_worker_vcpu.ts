/**
 * Worker side of the "vCPU in a Worker" test: attaches to a VM opened on the main thread,
 * runs the pio guest on a vCPU created here, and posts back what the devices saw.
 */

import { NO_INTERRUPTS, RunControl } from "../../../core/backend.ts";
import { MmioBus, PortBus } from "../../../core/bus.ts";
import { resetCpuState } from "../../../core/cpu_state.ts";
import { attachKvmBackend, type KvmHandles } from "../../../core/kvm/backend.ts";

/** The Worker's global scope, as far as this script uses it. */
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent<KvmHandles>) => void;
  postMessage(message: unknown): void;
};

scope.onmessage = (e) => {
  const kvm = attachKvmBackend(e.data);
  const memory = kvm.memory!;
  const ports = new PortBus();
  const control = new RunControl();
  const writes: number[] = [];
  ports.register(0x80, 3, "rec", {
    read: () => 0xbeef,
    write: (_o, _s, v) => void writes.push(v),
  });
  ports.register(0xf4, 1, "exit", {
    read: () => 0,
    write: (_o, _s, v) => void (control.stop = { kind: "exit", status: v }),
  });
  const vcpu = kvm.createVcpu(0, {
    memory,
    ports,
    mmio: new MmioBus(),
    control,
    interrupts: NO_INTERRUPTS,
    trace: null,
  });
  const s = resetCpuState();
  s.rip = 0x1000n;
  vcpu.setState(s);
  const stop = vcpu.run();
  kvm.close();
  scope.postMessage({ stop, writes });
};
