/**
 * virtio-rng (virtio 1.2, section 5.4; device ID 4): one request queue whose device-writable
 * buffers the device fills with host randomness (`crypto.getRandomValues`). Linux's
 * `virtio_rng` feeds it to `/dev/hwrng`. At most 64 KiB per request (the used length says how
 * much was written); readable buffers in a chain are ignored.
 *
 * Options: the transport's `base` and `irq`.
 *
 * @module
 */

import { API_VERSION, definePlugin } from "../../plugins/mod.ts";
import { transportOptions, type VirtioDeviceModel, VirtioMmioTransport } from "./mmio.ts";
import type { SplitQueue } from "./queue.ts";

/** Virtio device ID of an entropy source. */
export const VIRTIO_ID_RNG = 4;
/** The most bytes one request gets. */
export const RNG_MAX_REQUEST = 0x1_0000;
/** The request queue's size. */
export const RNG_QUEUE_SIZE = 64;

/** The entropy device model; `fill` defaults to `crypto.getRandomValues`. */
export function rngModel(
  fill: (buf: Uint8Array) => void = (b) => crypto.getRandomValues(b),
): VirtioDeviceModel {
  return {
    deviceId: VIRTIO_ID_RNG,
    features: 0n,
    queueSizes: [RNG_QUEUE_SIZE],
    config: () => new Uint8Array(0),
    process(_index: number, queue: SplitQueue) {
      for (let c = queue.pop(); c !== null; c = queue.pop()) {
        const n = Math.min(c.writableLength, RNG_MAX_REQUEST);
        const buf = new Uint8Array(n);
        // getRandomValues gives at most 65536 bytes a call.
        for (let at = 0; at < n; at += 0x1_0000) fill(buf.subarray(at, Math.min(n, at + 0x1_0000)));
        queue.push(c.head, c.write(0, buf));
      }
    },
  };
}

export default definePlugin({
  name: "virtio-rng",
  apiVersion: API_VERSION,
  description: "virtio-rng: host randomness for the guest's /dev/hwrng",
  create(host) {
    return new VirtioMmioTransport(host, rngModel(), transportOptions(host)).device();
  },
});
