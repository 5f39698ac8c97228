/**
 * Picks the CPU backend for `--backend auto|kvm|interp`: KVM when /dev/kvm opens and answers as
 * KVM, otherwise the interpreter, saying once on stderr which one it picked and why.
 */

import type { Backend, BackendName } from "./backend.ts";
import { HostError, UsageError } from "./errors.ts";

// Backends load on demand: a KVM run never parses the interpreter, and the reverse.
async function kvm() {
  return await import("./kvm/backend.ts");
}
async function interp(): Promise<Backend> {
  return (await import("./interp/backend.ts")).createInterpBackend();
}

/** `--backend` values. */
export type BackendChoice = "auto" | BackendName;

/** Checks a `--backend` value. */
export function parseBackendChoice(text: string): BackendChoice {
  if (text === "auto" || text === "kvm" || text === "interp") return text;
  throw new UsageError(`Unknown --backend "${text}": use auto, kvm or interp`);
}

/** Creates the backend `choice` names; `log` receives the one-line note about auto's pick. */
export async function selectBackend(
  choice: BackendChoice,
  log: (m: string) => void,
): Promise<Backend> {
  if (choice === "interp") return await interp();
  const { createKvmBackend, kvmAvailable } = await kvm();
  if (choice === "kvm") return createKvmBackend();
  const probe = kvmAvailable();
  if (probe.ok) {
    try {
      const b = createKvmBackend();
      log("denovisor: backend kvm (/dev/kvm)");
      return b;
    } catch (err) {
      if (!(err instanceof HostError)) throw err;
      log(`denovisor: backend interp (KVM unusable: ${err.message})`);
      return await interp();
    }
  }
  log(`denovisor: backend interp (${probe.reason})`);
  return await interp();
}
