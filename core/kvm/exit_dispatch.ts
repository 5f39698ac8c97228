/**
 * The hot part of the KVM exit path: turning a port-I/O or MMIO exit, read straight from the
 * vCPU's `kvm_run` mapping, into bus calls. Kept apart from the run loop so `deno bench` can
 * measure it on a plain buffer without /dev/kvm. Nothing here allocates, uses BigInt or
 * builds strings: each exit is a few typed-array loads and one bus call per element.
 */

import type { MmioBus, PortBus } from "../bus.ts";
import {
  KVM_EXIT_IO_OUT,
  RUN_IO_COUNT,
  RUN_IO_DATA_OFFSET,
  RUN_IO_DIRECTION,
  RUN_IO_PORT,
  RUN_IO_SIZE,
  RUN_MMIO_DATA,
  RUN_MMIO_IS_WRITE,
  RUN_MMIO_LEN,
  RUN_MMIO_PHYS_ADDR,
} from "./constants.ts";

/**
 * Handles a KVM_EXIT_IO described in `run` (bytes `u8`, same memory as `dv`): every element of
 * a string instruction goes to `ports`; IN results are stored where KVM expects them. Returns
 * false, touching nothing, when KVM's data area would lie outside the `runSize`-byte mapping.
 */
export function dispatchIoExit(
  u8: Uint8Array,
  dv: DataView,
  ports: PortBus,
  runSize: number,
): boolean {
  const size = u8[RUN_IO_SIZE]!;
  const port = dv.getUint16(RUN_IO_PORT, true);
  const count = dv.getUint32(RUN_IO_COUNT, true);
  // data_offset is a u64; its high half is zero for any offset inside the mapping.
  let off = dv.getUint32(RUN_IO_DATA_OFFSET, true);
  if (
    dv.getUint32(RUN_IO_DATA_OFFSET + 4, true) !== 0 || off + count * size > runSize ||
    (size !== 1 && size !== 2 && size !== 4)
  ) {
    return false;
  }
  if (u8[RUN_IO_DIRECTION] === KVM_EXIT_IO_OUT) {
    for (let i = 0; i < count; i++, off += size) {
      const v = size === 1
        ? u8[off]!
        : size === 2
        ? dv.getUint16(off, true)
        : dv.getUint32(off, true);
      ports.write(port, size, v);
    }
  } else {
    for (let i = 0; i < count; i++, off += size) {
      const v = ports.read(port, size);
      if (size === 1) u8[off] = v;
      else if (size === 2) dv.setUint16(off, v, true);
      else dv.setUint32(off, v, true);
    }
  }
  return true;
}

/**
 * Handles a KVM_EXIT_MMIO described in `run`: a write goes to `mmio`, a read's value is stored
 * in `kvm_run.mmio.data` for KVM to complete the instruction. The bus takes 1, 2 or 4 bytes;
 * an 8-byte access becomes two 4-byte halves, low half first.
 */
export function dispatchMmioExit(u8: Uint8Array, dv: DataView, mmio: MmioBus): void {
  const addr = dv.getUint32(RUN_MMIO_PHYS_ADDR, true) +
    dv.getUint32(RUN_MMIO_PHYS_ADDR + 4, true) * 0x1_0000_0000;
  const len = dv.getUint32(RUN_MMIO_LEN, true);
  const write = u8[RUN_MMIO_IS_WRITE] !== 0;
  if (len === 8) {
    if (write) {
      mmio.write(addr, 4, dv.getUint32(RUN_MMIO_DATA, true));
      mmio.write(addr + 4, 4, dv.getUint32(RUN_MMIO_DATA + 4, true));
    } else {
      dv.setUint32(RUN_MMIO_DATA, mmio.read(addr, 4), true);
      dv.setUint32(RUN_MMIO_DATA + 4, mmio.read(addr + 4, 4), true);
    }
  } else if (write) {
    const v = len === 1
      ? u8[RUN_MMIO_DATA]!
      : len === 2
      ? dv.getUint16(RUN_MMIO_DATA, true)
      : dv.getUint32(RUN_MMIO_DATA, true);
    mmio.write(addr, len, v);
  } else {
    const v = mmio.read(addr, len);
    if (len === 1) u8[RUN_MMIO_DATA] = v;
    else if (len === 2) dv.setUint16(RUN_MMIO_DATA, v, true);
    else dv.setUint32(RUN_MMIO_DATA, v, true);
  }
}
