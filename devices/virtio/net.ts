/**
 * virtio-net (virtio 1.2, section 5.1; device ID 1): one receive queue (0) and one transmit
 * queue (1), the MAC address in config space (`VIRTIO_NET_F_MAC`) and the link status
 * (`VIRTIO_NET_F_STATUS`, always up). No offloads, no control queue, no mergeable buffers: every
 * buffer starts with the 12-byte `virtio_net_hdr` of a VERSION_1 device, which the device
 * ignores on transmit and writes as zeros (`num_buffers` = 1) on receive.
 *
 * Frames go through a {@link PacketPort}. A transmitted frame is handed to `send` while the
 * guest's notification is handled. A received frame (`onReceive`'s callback, called on the
 * vCPU's thread) goes into the next receive buffer the guest posted; while none is posted, up to
 * {@link NET_RX_BACKLOG} frames wait (later ones are dropped, as a NIC with a full ring does).
 * A frame larger than the posted buffer is dropped too (the buffer is returned empty).
 *
 * Options: `mac` (aa:bb:cc:dd:ee:ff) and the transport's `base` and `irq`. Attached as a plugin
 * without a port (`--device devices/virtio/net.ts,...`), its link is down: it drops what the guest
 * sends.
 *
 * @module
 */

import { API_VERSION, definePlugin, type Device, type DeviceHost } from "../../plugins/mod.ts";
import {
  bit,
  INT_VRING,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_NEEDS_RESET,
  transportOptions,
  type VirtioDeviceModel,
  VirtioMmioTransport,
} from "./mmio.ts";
import { type SplitQueue, VirtqueueError } from "./queue.ts";
import { FrameRing } from "../../core/net/frame_ring.ts";
import { parseMac } from "../../core/net/spec.ts";

/** Virtio device ID of a network card. */
export const VIRTIO_ID_NET = 1;
/** Feature bits (5.1.3). */
export const NET_F_MAC = 5, NET_F_STATUS = 16;
/** The config space's status bit: the link is up. */
export const NET_S_LINK_UP = 1;
/** Bytes of `virtio_net_hdr` with VERSION_1 (num_buffers included). */
export const NET_HDR_SIZE = 12;
/** Each queue's size. */
export const NET_QUEUE_SIZE = 256;
/** Frames kept while the guest has no receive buffer posted. */
export const NET_RX_BACKLOG = 64;
/** Queue indices. */
export const NET_RXQ = 0, NET_TXQ = 1;

/** Where a virtio-net device's frames go and come from (an Ethernet frame, no header). */
export interface PacketPort {
  /** The guest sent `frame`. */
  send(frame: Uint8Array): void;
  /** Frames for the guest go to `cb` (called on the vCPU's thread). */
  onReceive(cb: (frame: Uint8Array) => void): void;
  /** Delivers frames that arrived from another thread (the vCPU loop's service tick calls it). */
  poll?(): void;
}

/** A port whose link goes nowhere: transmitted frames are dropped, none arrive. */
export const UNCONNECTED_PORT: PacketPort = { send() {}, onReceive() {} };

/**
 * The vCPU thread's side of a pair of {@link FrameRing}s: frames the guest sends go into `tx`
 * (the main thread writes them to the backend); `poll` delivers what the main thread put in `rx`.
 */
export function ringPort(rings: { tx: SharedArrayBuffer; rx: SharedArrayBuffer }): PacketPort {
  const tx = new FrameRing(rings.tx), rx = new FrameRing(rings.rx);
  let receiver: ((frame: Uint8Array) => void) | null = null;
  return {
    send: (frame) => void tx.push(frame),
    onReceive: (cb) => receiver = cb,
    poll() {
      if (receiver === null || !rx.hasData()) return;
      // A bounded batch: a flood cannot keep the vCPU from running.
      for (let i = 0; i < NET_RX_BACKLOG; i++) {
        const f = rx.pop();
        if (f === null) break;
        receiver(f);
      }
    },
  };
}

/** A virtio-net device: its transport and what the machine attaches. */
export interface NetDevice {
  readonly transport: VirtioMmioTransport;
  readonly device: Device;
  /** Frames the device dropped (no buffer, too big), and frames it received and sent. */
  readonly stats: { rxDropped: number; rx: number; tx: number };
}

/** Builds a virtio-net device on `host` (its `base` and `irq` options) over `port`. */
export function createNetDevice(host: DeviceHost, port: PacketPort, mac: Uint8Array): NetDevice {
  if (mac.length !== 6) throw new TypeError("a MAC address has 6 bytes");
  const config = new Uint8Array(8);
  config.set(mac, 0);
  config[6] = NET_S_LINK_UP; // status, little-endian u16
  const stats = { rxDropped: 0, rx: 0, tx: 0 };
  const backlog: Uint8Array[] = [];

  /** Whether the driver runs the device and the receive queue is live. */
  const rxLive = () =>
    (transport.status & STATUS_DRIVER_OK) !== 0 &&
    (transport.status & (STATUS_NEEDS_RESET | STATUS_FAILED)) === 0 &&
    transport.queues[NET_RXQ]!.ready;

  /** Puts waiting frames into posted receive buffers. */
  function fill(q: SplitQueue): boolean {
    let used = false;
    while (backlog.length > 0) {
      const c = q.pop();
      if (c === null) break;
      const frame = backlog.shift()!;
      used = true;
      if (c.writableLength < NET_HDR_SIZE + frame.length) {
        stats.rxDropped++;
        q.push(c.head, 0);
        continue;
      }
      const buf = new Uint8Array(NET_HDR_SIZE + frame.length);
      buf[10] = 1; // num_buffers
      buf.set(frame, NET_HDR_SIZE);
      q.push(c.head, c.write(0, buf));
      stats.rx++;
    }
    return used;
  }

  /** A frame from the backend. */
  function receive(frame: Uint8Array): void {
    if (!rxLive()) return; // no driver: the frame is lost
    if (backlog.length >= NET_RX_BACKLOG) {
      stats.rxDropped++;
      return;
    }
    backlog.push(frame);
    const q = transport.queues[NET_RXQ]!;
    try {
      if (fill(q) && q.needsInterrupt()) transport.interrupt(INT_VRING);
    } catch (err) {
      if (!(err instanceof VirtqueueError)) throw err;
      backlog.length = 0;
      transport.fail(`queue ${NET_RXQ}: ${err.message}`);
    }
  }

  const model: VirtioDeviceModel = {
    deviceId: VIRTIO_ID_NET,
    features: bit(NET_F_MAC) | bit(NET_F_STATUS),
    queueSizes: [NET_QUEUE_SIZE, NET_QUEUE_SIZE],
    config: () => config,
    process(index: number, queue: SplitQueue) {
      if (index === NET_RXQ) {
        fill(queue); // the transport interrupts if the guest wants it
        return;
      }
      for (let c = queue.pop(); c !== null; c = queue.pop()) {
        if (c.readableLength > NET_HDR_SIZE) {
          port.send(c.read(NET_HDR_SIZE, c.readableLength - NET_HDR_SIZE));
          stats.tx++;
        }
        queue.push(c.head, 0);
      }
    },
    reset() {
      backlog.length = 0;
    },
  };
  // Declared after the model, which only uses it once the guest runs the device.
  const transport = new VirtioMmioTransport(host, model, transportOptions(host));
  port.onReceive(receive);
  return { transport, device: transport.device(), stats };
}

/** The `mac` option, or a fixed default (the VMM always gives one). */
function macOption(host: DeviceHost): Uint8Array {
  const text = host.options.string("mac", "52:54:00:12:34:56");
  const mac = parseMac(text);
  if (mac === null) throw new TypeError(`"${host.name}": mac "${text}" is not a MAC address`);
  return mac;
}

/** The plugin over `port` (the VMM attaches it with the port its `--net` backend gives). */
export function netPlugin(port: PacketPort) {
  return definePlugin({
    name: "virtio-net",
    apiVersion: API_VERSION,
    description: "virtio-net (--net switch=PATH[,mac=MAC])",
    create: (host) => createNetDevice(host, port, macOption(host)).device,
  });
}

export default netPlugin(UNCONNECTED_PORT);
