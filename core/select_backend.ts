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

/** What the guest needs from the host KVM. */
export interface GuestNeeds {
  /**
   * The guest takes exceptions and interrupts in protected or long mode (any real operating
   * system does; Linux always).
   */
  protectedModeEvents: boolean;
}

/** The host's KVM module. */
export type KvmFlavor = "kvm_intel" | "kvm_amd" | "kvm_pvm" | "unknown";

let kvmFlavorCache: KvmFlavor | null = null;

/**
 * Sets what `hostKvmFlavor` answers, read by another thread: the CLI's VM Worker cannot look at
 * /sys/module (Deno grants /sys files only with --allow-all).
 */
export function setHostKvmFlavor(flavor: KvmFlavor): void {
  kvmFlavorCache = flavor;
}

/**
 * The KVM module this host runs, read from /sys/module: "kvm_pvm" is the nested variant that
 * cannot deliver exceptions or interrupts to protected/long-mode guests.
 */
export function hostKvmFlavor(): KvmFlavor {
  if (kvmFlavorCache !== null) return kvmFlavorCache;
  for (const m of ["kvm_pvm", "kvm_intel", "kvm_amd"] as const) {
    try {
      Deno.statSync(`/sys/module/${m}`);
      return m;
    } catch {
      // not loaded
    }
  }
  return "unknown";
}

const PVM_LIMIT = "this host's KVM is the nested kvm_pvm variant, which cannot deliver " +
  "exceptions or interrupts to a guest in protected or long mode, so it cannot boot this kernel";

/** Checks a `--backend` value. */
export function parseBackendChoice(text: string): BackendChoice {
  if (text === "auto" || text === "kvm" || text === "interp") return text;
  throw new UsageError(`Unknown --backend "${text}": use auto, kvm or interp`);
}

/** Creates the backend `choice` names; `log` receives the one-line note about auto's pick. */
export async function selectBackend(
  choice: BackendChoice,
  log: (m: string) => void,
  needs: GuestNeeds = { protectedModeEvents: false },
): Promise<Backend> {
  if (choice === "interp") return await interp();
  const { createKvmBackend, kvmAvailable } = await kvm();
  const pvmBlocks = needs.protectedModeEvents && hostKvmFlavor() === "kvm_pvm";
  if (choice === "kvm") {
    const b = createKvmBackend();
    if (pvmBlocks) {
      b.close();
      throw new HostError(
        `Cannot run this guest with --backend kvm: ${PVM_LIMIT}. Use --backend interp`,
      );
    }
    return b;
  }
  const probe = kvmAvailable();
  if (probe.ok && pvmBlocks) {
    log(`denovisor: backend interp (${PVM_LIMIT})`);
    return await interp();
  }
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
