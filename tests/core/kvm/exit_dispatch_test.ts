/**
 * The exit dispatch functions on a hand-made kvm_run buffer: every element of string I/O
 * reaches the bus, IN and MMIO read results land where KVM reads them, and a data offset
 * outside the mapping is refused. No /dev/kvm needed.
 */

import { assert, assertEquals } from "./_assert.ts";
import { MmioBus, PortBus } from "../../../core/bus.ts";
import { dispatchIoExit, dispatchMmioExit } from "../../../core/kvm/exit_dispatch.ts";
import * as K from "../../../core/kvm/constants.ts";

const RUN_SIZE = 3 * 4096;
const DATA = 4096;

function ioRun(direction: number, size: number, port: number, count: number, offset = DATA) {
  const u8 = new Uint8Array(RUN_SIZE);
  const dv = new DataView(u8.buffer);
  dv.setUint32(K.RUN_EXIT_REASON, K.KVM_EXIT_IO, true);
  u8[K.RUN_IO_DIRECTION] = direction;
  u8[K.RUN_IO_SIZE] = size;
  dv.setUint16(K.RUN_IO_PORT, port, true);
  dv.setUint32(K.RUN_IO_COUNT, count, true);
  dv.setBigUint64(K.RUN_IO_DATA_OFFSET, BigInt(offset), true);
  return { u8, dv };
}

Deno.test("a string OUT of words sends each element to the port bus in order", () => {
  const { u8, dv } = ioRun(K.KVM_EXIT_IO_OUT, 2, 0x1f0, 3);
  dv.setUint16(DATA, 0x1111, true);
  dv.setUint16(DATA + 2, 0x2222, true);
  dv.setUint16(DATA + 4, 0x3333, true);
  const ports = new PortBus();
  const seen: number[] = [];
  ports.register(0x1f0, 8, "disk", { read: () => 0, write: (_o, _s, v) => void seen.push(v) });
  assert(dispatchIoExit(u8, dv, ports, RUN_SIZE));
  assertEquals(seen, [0x1111, 0x2222, 0x3333]);
});

Deno.test("a string IN stores each value the device returns in kvm_run's data area", () => {
  const { u8, dv } = ioRun(K.KVM_EXIT_IO_IN, 4, 0x60, 2);
  const ports = new PortBus();
  let n = 0;
  ports.register(0x60, 1, "dev", { read: () => 0xa0b0_c0d0 + n++, write: () => {} });
  assert(dispatchIoExit(u8, dv, ports, RUN_SIZE));
  assertEquals([dv.getUint32(DATA, true), dv.getUint32(DATA + 4, true)], [
    0xa0b0_c0d0,
    0xa0b0_c0d1,
  ]);
});

Deno.test("an IN from an unclaimed port reads as all ones", () => {
  const { u8, dv } = ioRun(K.KVM_EXIT_IO_IN, 1, 0x99, 1);
  assert(dispatchIoExit(u8, dv, new PortBus(), RUN_SIZE));
  assertEquals(u8[DATA], 0xff);
});

Deno.test("port I/O data reaching past the kvm_run mapping is refused", () => {
  const { u8, dv } = ioRun(K.KVM_EXIT_IO_OUT, 4, 0x80, 2, RUN_SIZE - 4);
  const ports = new PortBus();
  let calls = 0;
  ports.register(0x80, 1, "dev", { read: () => 0, write: () => void calls++ });
  assertEquals(dispatchIoExit(u8, dv, ports, RUN_SIZE), false);
  assertEquals(calls, 0);
});

function mmioRun(addr: number, len: number, isWrite: boolean) {
  const u8 = new Uint8Array(RUN_SIZE);
  const dv = new DataView(u8.buffer);
  dv.setBigUint64(K.RUN_MMIO_PHYS_ADDR, BigInt(addr), true);
  dv.setUint32(K.RUN_MMIO_LEN, len, true);
  u8[K.RUN_MMIO_IS_WRITE] = isWrite ? 1 : 0;
  return { u8, dv };
}

Deno.test("an MMIO write above 4 GiB reaches the device at its offset", () => {
  const { u8, dv } = mmioRun(0x1_0000_0010, 2, true);
  dv.setUint16(K.RUN_MMIO_DATA, 0xbeef, true);
  const mmio = new MmioBus();
  const seen: number[][] = [];
  mmio.register(0x1_0000_0000, 0x100, "hi", {
    read: () => 0,
    write: (o, s, v) => void seen.push([o, s, v]),
  });
  dispatchMmioExit(u8, dv, mmio);
  assertEquals(seen, [[0x10, 2, 0xbeef]]);
});

Deno.test("an 8-byte MMIO read is two 4-byte reads, low half first", () => {
  const { u8, dv } = mmioRun(0xd000_0000, 8, false);
  const mmio = new MmioBus();
  mmio.register(0xd000_0000, 0x1000, "regs", {
    read: (o) => (o === 0 ? 0x1122_3344 : 0x5566_7788),
    write: () => {},
  });
  dispatchMmioExit(u8, dv, mmio);
  assertEquals(dv.getBigUint64(K.RUN_MMIO_DATA, true), 0x5566_7788_1122_3344n);
});
