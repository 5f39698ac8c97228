/**
 * The interpreter's own test guests (tests/core/interp/guests) through the CLI on every backend
 * available: where KVM can run a guest, both backends must print the same and exit the same.
 * On the nested kvm_pvm host some guests cannot run (it does not deliver exceptions at CPL3 or
 * in protected mode reliably, and its instruction emulator lacks BCD instructions); those are
 * listed with the reason and run on the interpreter only.
 */

import { assertEquals } from "./_assert.ts";
import { KVM_OK, runCli } from "./_run.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";

const GUESTS = [
  "real_hello",
  "modes",
  "workload",
  "pf",
  "smc",
  "branches",
  "user",
  "pm_user",
  "tlb_alias",
  "real_misc",
];
/** Guests this workplace's nested KVM cannot run, and why (checked by running them there). */
const PVM_CANNOT: Record<string, string> = {
  user: "CPL3 exceptions are not delivered back to the guest's handlers",
  pm_user: "protected-mode exception delivery ends in KVM_EXIT_INTERNAL_ERROR",
  tlb_alias: "its fault handler path triple-faults under the nested emulator",
  real_misc: "KVM's instruction emulator cannot emulate the BCD instructions (DAA/DAS/AAA...)",
};
const onPvm = hostKvmFlavor() === "kvm_pvm";

for (const g of GUESTS) {
  const kernel = `tests/core/interp/guests/${g}.bin`;
  const kvmRuns = KVM_OK && !(onPvm && g in PVM_CANNOT);
  if (KVM_OK && !kvmRuns) {
    console.warn(`note: ${g} runs on the interpreter only here: ${PVM_CANNOT[g]}`);
  }
  Deno.test(`guest ${g} gives the same output and status on ${kvmRuns ? "interp and kvm" : "interp"}`, async () => {
    const interp = await runCli(["--backend", "interp", "--kernel", kernel, "--format", "flat"]);
    // Each guest prints at least one line and ends through debug-exit with 0 (status 1).
    assertEquals(interp.status, 1, interp.stderr);
    assertEquals(interp.stderr, "");
    if (!kvmRuns) return;
    const kvm = await runCli(["--backend", "kvm", "--kernel", kernel, "--format", "flat"]);
    assertEquals(kvm.stdout, interp.stdout, kvm.stderr);
    assertEquals(kvm.status, interp.status);
  });
}
