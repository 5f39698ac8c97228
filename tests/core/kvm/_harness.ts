/**
 * Shared setup for the KVM backend tests: whether /dev/kvm can be used here, and a small
 * machine (RAM, buses, run control) that loads a guest from guests/ at 0x1000 in real mode.
 */

import {
  createKvmBackend,
  kvmAvailable,
  type KvmBackend,
  type KvmOptions,
} from "../../../core/kvm/backend.ts";
import {
  type InterruptController,
  NO_INTERRUPTS,
  RunControl,
  type Vcpu,
} from "../../../core/backend.ts";
import { MmioBus, PortBus } from "../../../core/bus.ts";
import { resetCpuState } from "../../../core/cpu_state.ts";
import type { GuestMemory } from "../../../core/memory.ts";

const availability = kvmAvailable();
/** True when /dev/kvm can be opened; KVM tests are ignored otherwise. */
export const kvmOk: boolean = availability.ok;
if (!availability.ok) {
  console.warn(`Skipping the tests that need /dev/kvm: ${availability.reason}`);
}

/** Where guest code is loaded and starts (CS=0, IP=LOAD_ADDRESS). */
export const LOAD_ADDRESS = 0x1000;

/** A running test machine. */
export interface TestVm {
  kvm: KvmBackend;
  memory: GuestMemory;
  ports: PortBus;
  mmio: MmioBus;
  control: RunControl;
  vcpu: Vcpu;
  trace: string[];
  close(): void;
}

/** Reads an assembled guest from tests/core/kvm/guests/. */
export function guestImage(name: string): Uint8Array {
  return Deno.readFileSync(new URL(`./guests/${name}.bin`, import.meta.url));
}

/** Builds a machine with `memSize` bytes of RAM running `code` from 0x1000 in real mode. */
export function bootGuest(
  code: Uint8Array,
  options: {
    memSize?: number;
    interrupts?: InterruptController;
    trace?: boolean;
    kvm?: KvmOptions;
  } = {},
): TestVm {
  const kvm = createKvmBackend(options.kvm);
  const memory = kvm.createMemory(options.memSize ?? 0x80000);
  memory.write(LOAD_ADDRESS, code);
  const ports = new PortBus();
  const mmio = new MmioBus();
  const control = new RunControl();
  const trace: string[] = [];
  const vcpu = kvm.createVcpu(0, {
    memory,
    ports,
    mmio,
    control,
    interrupts: options.interrupts ?? NO_INTERRUPTS,
    trace: options.trace ? (line) => trace.push(line) : null,
  });
  const state = resetCpuState();
  state.rip = BigInt(LOAD_ADDRESS);
  state.gpr[4] = 0x8000n; // a stack for interrupts
  vcpu.setState(state);
  return {
    kvm,
    memory,
    ports,
    mmio,
    control,
    vcpu,
    trace,
    close() {
      vcpu.close();
      kvm.close();
    },
  };
}

/** Registers a device on port 0xf4 whose write ends the run with that exit status. */
export function addExitPort(vm: TestVm): void {
  vm.ports.register(0xf4, 1, "test-exit", {
    read: () => 0,
    write: (_o, _s, value) => {
      vm.control.stop = { kind: "exit", status: value };
    },
  });
}

/** Stops a halted guest after about `ms` of halt polling, so a broken test fails, never hangs. */
export function haltWatchdog(vm: TestVm, ms = 3000): void {
  const start = performance.now();
  vm.control.service = () => {
    if (performance.now() - start > ms) {
      vm.control.stop = { kind: "fault", message: "test watchdog: the guest never woke" };
    }
  };
}
