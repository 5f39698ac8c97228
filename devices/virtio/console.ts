/**
 * virtio-console (virtio 1.2, section 5.3; device ID 3) with one port, the guest's `hvc0`: no
 * `VIRTIO_CONSOLE_F_SIZE`, no `F_MULTIPORT`, so two queues, receiveq (0) and transmitq (1).
 * What the guest transmits goes to the VMM's console (`host.console.write`: the `--serial`
 * target, stdout or a file); host input (the same InputRing the UART reads, through
 * `host.console.onInput`) fills the guest's receive buffers. Attached after the UART, the
 * device takes the console's input over: with `--console virtio` what the user types goes to
 * hvc0, not ttyS0. Until the guest posts receive buffers, up to {@link CONSOLE_RX_BACKLOG}
 * bytes of input wait (more are dropped).
 *
 * Options: the transport's `base` and `irq`.
 *
 * @module
 */

import { API_VERSION, definePlugin, type DeviceHost } from "../../plugins/mod.ts";
import {
  INT_VRING,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_NEEDS_RESET,
  transportOptions,
  type VirtioDeviceModel,
  VirtioMmioTransport,
} from "./mmio.ts";
import { type SplitQueue, VirtqueueError } from "./queue.ts";

/** Virtio device ID of a console. */
export const VIRTIO_ID_CONSOLE = 3;
/** Queue indices of port 0. */
export const CONSOLE_RXQ = 0, CONSOLE_TXQ = 1;
/** Each queue's size. */
export const CONSOLE_QUEUE_SIZE = 64;
/** Input bytes kept while the guest has no receive buffer. */
export const CONSOLE_RX_BACKLOG = 4096;

/** A virtio-console device on `host`; returns its transport. */
export function createConsoleDevice(host: DeviceHost): VirtioMmioTransport {
  const pending: number[] = [];
  const live = () =>
    (transport.status & STATUS_DRIVER_OK) !== 0 &&
    (transport.status & (STATUS_NEEDS_RESET | STATUS_FAILED)) === 0 &&
    transport.queues[CONSOLE_RXQ]!.ready;

  /** Moves waiting input into receive buffers; true when one was used. */
  function fill(q: SplitQueue): boolean {
    let used = false;
    while (pending.length > 0) {
      const c = q.pop();
      if (c === null) break;
      const n = Math.min(c.writableLength, pending.length);
      q.push(c.head, c.write(0, Uint8Array.from(pending.splice(0, n))));
      used = true;
    }
    return used;
  }

  const model: VirtioDeviceModel = {
    deviceId: VIRTIO_ID_CONSOLE,
    features: 0n,
    queueSizes: [CONSOLE_QUEUE_SIZE, CONSOLE_QUEUE_SIZE],
    // cols, rows, max_nr_ports, emerg_wr: meaningful only with features not offered.
    config: () => new Uint8Array(12),
    process(index: number, queue: SplitQueue) {
      if (index === CONSOLE_RXQ) {
        fill(queue);
        return;
      }
      for (let c = queue.pop(); c !== null; c = queue.pop()) {
        if (c.readableLength > 0) host.console.write(c.read(0, c.readableLength));
        queue.push(c.head, 0);
      }
    },
    reset() {
      pending.length = 0;
    },
  };
  // Declared after the model, which only uses it once the guest runs the device.
  const transport = new VirtioMmioTransport(host, model, transportOptions(host));
  host.console.onInput((byte) => {
    if (pending.length >= CONSOLE_RX_BACKLOG) return;
    pending.push(byte);
    if (!live()) return;
    const q = transport.queues[CONSOLE_RXQ]!;
    try {
      if (fill(q) && q.needsInterrupt()) transport.interrupt(INT_VRING);
    } catch (err) {
      if (!(err instanceof VirtqueueError)) throw err;
      pending.length = 0;
      transport.fail(`queue ${CONSOLE_RXQ}: ${err.message}`);
    }
  });
  return transport;
}

export default definePlugin({
  name: "virtio-console",
  apiVersion: API_VERSION,
  description: "virtio-console: the guest's hvc0 on the VMM's console (--console virtio)",
  create: (host) => createConsoleDevice(host).device(),
});
