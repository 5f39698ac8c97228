/**
 * `deno bench` for the KVM exit path. Without /dev/kvm: port and MMIO bus dispatch and the
 * exit decode + dispatch of a port-I/O exit on a hand-made kvm_run buffer. With /dev/kvm: one
 * real port-I/O exit per iteration through `Vcpu.run()`, against the same guest loop driven by
 * C (bench/exits_native.c) as the baseline; those benches are skipped, not failed, elsewhere.
 */

import { MmioBus, PortBus } from "../core/bus.ts";
import { kvmAvailable } from "../core/kvm/backend.ts";
import * as K from "../core/kvm/constants.ts";
import { dispatchIoExit, dispatchMmioExit } from "../core/kvm/exit_dispatch.ts";
import { type ExitLoop, openDenovisorLoop, openNativeExitLoop } from "./exits_group.ts";

// ---- bus dispatch and exit decode (no /dev/kvm) ----

const ports = new PortBus();
let sink = 0;
ports.register(0x3f8, 8, "uart", {
  read: (o) => o,
  write: (_o, _s, v) => void (sink ^= v),
});
const mmio = new MmioBus();
for (let i = 0; i < 8; i++) {
  mmio.register(0xd000_0000 + i * 0x1000, 0x1000, `virtio${i}`, {
    read: (o) => o,
    write: (_o, _s, v) => void (sink ^= v),
  });
}

Deno.bench({
  name: "PortBus.write to a claimed port",
  group: "bus",
  fn: () => ports.write(0x3f8, 1, 0x41),
});
Deno.bench({
  name: "PortBus.read of a claimed port",
  group: "bus",
  fn: () => void (sink ^= ports.read(0x3fd, 1)),
});
Deno.bench({
  name: "MmioBus.write among 8 devices",
  group: "bus",
  fn: () => mmio.write(0xd000_5050, 4, 1),
});

const RUN_SIZE = 3 * 4096;
const run8 = new Uint8Array(RUN_SIZE);
const runDv = new DataView(run8.buffer);
runDv.setUint32(K.RUN_EXIT_REASON, K.KVM_EXIT_IO, true);
run8[K.RUN_IO_DIRECTION] = K.KVM_EXIT_IO_OUT;
run8[K.RUN_IO_SIZE] = 1;
runDv.setUint16(K.RUN_IO_PORT, 0x3f8, true);
runDv.setUint32(K.RUN_IO_COUNT, 1, true);
runDv.setUint32(K.RUN_IO_DATA_OFFSET, 4096, true);
const mmioRun8 = new Uint8Array(RUN_SIZE);
const mmioDv = new DataView(mmioRun8.buffer);
mmioDv.setUint32(K.RUN_MMIO_PHYS_ADDR, 0xd000_5050, true);
mmioDv.setUint32(K.RUN_MMIO_LEN, 4, true);
mmioRun8[K.RUN_MMIO_IS_WRITE] = 1;

Deno.bench({
  name: "decode + dispatch a port-I/O exit from kvm_run",
  group: "exit decode",
  baseline: true,
  fn: () => void dispatchIoExit(run8, runDv, ports, RUN_SIZE),
});
Deno.bench({
  name: "decode + dispatch an MMIO exit from kvm_run",
  group: "exit decode",
  fn: () => dispatchMmioExit(mmioRun8, mmioDv, mmio),
});

// ---- real exits (need /dev/kvm) ----

const kvm = kvmAvailable();
if (!kvm.ok) console.warn(`Skipping the KVM exit benches: ${kvm.reason}`);
let ours: ExitLoop | null = null;
let native: ExitLoop | null = null;
if (kvm.ok) {
  ours = openDenovisorLoop("pio");
  try {
    native = await openNativeExitLoop("pio");
  } catch (err) {
    console.warn(`Skipping the native baseline: ${(err as Error).message}`);
  }
}

Deno.bench({
  name: "C: one port-I/O exit (KVM_RUN -> exit -> resume)",
  group: "kvm pio exit",
  baseline: true,
  ignore: native === null,
  fn: () => void native!.round(1),
});
Deno.bench({
  name: "denovisor: one port-I/O exit (Vcpu.run -> bus -> device -> resume)",
  group: "kvm pio exit",
  ignore: ours === null,
  fn: () => void ours!.round(1),
});
