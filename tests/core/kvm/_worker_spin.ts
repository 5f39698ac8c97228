/**
 * Worker side of the kick test: runs a guest that spins without exits (`jmp $`) on a vCPU
 * created here, with the RunControl requests array the main thread shares, and posts the
 * vCPU's kick handle before entering KVM_RUN and the StopReason when run() returns.
 */

import { NO_INTERRUPTS, RunControl } from "../../../core/backend.ts";
import { MmioBus, PortBus } from "../../../core/bus.ts";
import { resetCpuState } from "../../../core/cpu_state.ts";
import { attachKvmBackend, type KvmHandles } from "../../../core/kvm/backend.ts";

/** The Worker's global scope, as far as this script uses it. */
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent<{ handles: KvmHandles; requests: Int32Array }>) => void;
  postMessage(message: unknown): void;
};

scope.onmessage = (e) => {
  const kvm = attachKvmBackend(e.data.handles);
  const vcpu = kvm.createVcpu(0, {
    memory: kvm.memory!,
    ports: new PortBus(),
    mmio: new MmioBus(),
    control: new RunControl(e.data.requests),
    interrupts: NO_INTERRUPTS,
    trace: null,
  });
  const s = resetCpuState();
  s.rip = 0x1000n;
  vcpu.setState(s);
  scope.postMessage({ kick: vcpu.kickHandle() });
  const stop = vcpu.run();
  kvm.close();
  scope.postMessage({ stop });
};
