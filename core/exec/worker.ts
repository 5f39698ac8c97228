/**
 * Worker entry of `--exec`: runs the VM on this thread with its console going through
 * `ExecDemux`, which writes the command's stdout and stderr to the process's and, at the exit
 * frame, stops the VM with the command's status (as a device does: the run control's `stop`).
 */

import { RunControl } from "../backend.ts";
import { runVm, type VmConfig, type VmOutcome } from "../vm.ts";
import { ExecDemux } from "./protocol.ts";
import { applyHostFacts, type HostFacts } from "../vm_permissions.ts";

/** What the main thread sends. */
export interface ExecStartMessage {
  config: VmConfig;
  nonce: string;
  /** What the main thread read of /proc and /sys (this Worker may not). */
  host: HostFacts;
}

/** What the worker answers once the VM ended. */
export type ExecWorkerMessage =
  | { kind: "started"; at: number }
  | { kind: "first-output"; at: number }
  | {
    kind: "done";
    ok: true;
    outcome: VmOutcome;
    /** The command's exit status, when the exit frame arrived. */
    commandStatus?: number;
    /** Whether the command started, and the boot log when it did not. */
    started: boolean;
    bootLog: string;
  }
  | { kind: "done"; ok: false; message: string; stack?: string };

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<ExecStartMessage>) => void) | null;
  postMessage(message: ExecWorkerMessage): void;
  close(): void;
};

/** Streams whose reader went away (`--exec ... | head -1`): their output is dropped. */
const closed = new Set<unknown>();

function writeAll(file: { writeSync(b: Uint8Array): number }, bytes: Uint8Array): void {
  if (closed.has(file)) return;
  let off = 0;
  try {
    while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
  } catch (err) {
    if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
    closed.add(file); // the command runs on; its status still ends the VMM
  }
}

scope.onmessage = async (e) => {
  scope.onmessage = null;
  const { config, nonce, host } = e.data;
  const control = new RunControl();
  let commandStatus: number | undefined;
  let output = false;
  const firstOutput = () => {
    if (output) return;
    output = true;
    scope.postMessage({ kind: "first-output", at: Date.now() });
  };
  const demux = new ExecDemux(nonce, {
    stdout(bytes) {
      firstOutput();
      writeAll(Deno.stdout, bytes);
    },
    stderr(bytes) {
      firstOutput();
      writeAll(Deno.stderr, bytes);
    },
    started() {
      scope.postMessage({ kind: "started", at: Date.now() });
    },
    exited(status) {
      commandStatus = status;
      control.stop ??= { kind: "exit", status };
    },
  });
  try {
    await applyHostFacts(host, config.backend);
    const outcome = await runVm(config, { control, stdout: demux });
    scope.postMessage({
      kind: "done",
      ok: true,
      outcome,
      ...(commandStatus === undefined ? {} : { commandStatus }),
      started: demux.started,
      bootLog: demux.started ? "" : demux.bootLog(),
    });
  } catch (err) {
    scope.postMessage({
      kind: "done",
      ok: false,
      message: String((err as Error)?.message ?? err),
      stack: (err as Error)?.stack,
    });
  }
};
