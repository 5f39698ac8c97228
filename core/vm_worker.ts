/**
 * Worker entry: runs one VM on this Worker's thread, so a blocking KVM_RUN (or a busy
 * interpreter) never freezes the main thread's event loop, which keeps console input and
 * signals. Receives the config and the shared buffers, posts back the outcome.
 */

import { RunControl } from "./backend.ts";
import { InputRing } from "./serial_io.ts";
import type { KvmVcpu, VcpuKickHandle } from "./kvm/backend.ts";
import { runVm, type VmConfig, type VmOutcome } from "./vm.ts";

/** The message the main thread sends to start the VM. */
export interface StartMessage {
  config: VmConfig;
  input: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

/** What the worker posts back: the kick handle of a KVM vCPU, then the outcome. */
export type WorkerMessage =
  | { kind: "kick"; handle: VcpuKickHandle }
  | { kind: "done"; ok: true; outcome: VmOutcome }
  | { kind: "done"; ok: false; message: string; stack?: string };

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<StartMessage>) => void) | null;
  postMessage(message: WorkerMessage): void;
};

scope.onmessage = async (e) => {
  scope.onmessage = null;
  const { config, input, control } = e.data;
  let done: WorkerMessage;
  try {
    const outcome = await runVm(config, {
      input: new InputRing(input),
      control: new RunControl(new Int32Array(control)),
      onVcpuReady(machine) {
        // A KVM vCPU spinning in guest code makes no exits: the supervisor must kick it.
        const vcpu = machine.vcpu as Partial<KvmVcpu>;
        if (typeof vcpu.kickHandle === "function") {
          scope.postMessage({ kind: "kick", handle: vcpu.kickHandle() });
        }
      },
    });
    done = { kind: "done", ok: true, outcome };
  } catch (err) {
    done = {
      kind: "done",
      ok: false,
      message: String((err as Error)?.message ?? err),
      stack: (err as Error)?.stack,
    };
  }
  scope.postMessage(done);
};
