/**
 * denovisor: a virtual machine monitor in TypeScript, run by Deno. Run this module to boot a
 * guest (`deno run -A mod.ts --help`); import it to build machines from code.
 * @module
 */

export { main, parseCli, VERSION } from "./core/cli.ts";
export { runVm, type VmConfig, type VmOutcome } from "./core/vm.ts";
export { type AttachedDevice, exitStatusOf, Machine, type MachineOptions } from "./core/machine.ts";
export { GuestMemory } from "./core/memory.ts";
export { MmioBus, PortBus } from "./core/bus.ts";
export type { CpuState, Segment } from "./core/cpu_state.ts";
export type { Backend, BackendName, StopReason, Vcpu } from "./core/backend.ts";
export { selectBackend } from "./core/select_backend.ts";
export * from "./core/errors.ts";

if (import.meta.main) {
  const { main } = await import("./core/cli.ts");
  Deno.exit(await main(Deno.args));
}
