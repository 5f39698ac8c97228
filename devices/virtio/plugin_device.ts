/**
 * Puts a virtio plugin ({@link defineVirtioPlugin}) behind the VMM's virtio-mmio transport: the
 * transport and the queues live here, on the VMM's side, and the plugin sees each available
 * chain as copies (`readable` in, `writable` out) through its `handle`. The same code serves a
 * trusted plugin and a sandboxed one (whose `handle` is the sandbox's proxy, so only the chain's
 * bytes cross the channel, never guest memory).
 *
 * What the plugin gets wrong becomes the guest's problem, never the VMM's: a throw, a used length
 * that is not a whole number within the writable room, a config space that is not bytes, or
 * malformed feature bits at create time mark the device DEVICE_NEEDS_RESET with a warning naming
 * what happened. A {@link PluginError} (a sandboxed device that timed out or ran out of memory,
 * and so is gone) goes on to stop the VM with its message.
 *
 * @module
 */

import { PluginError } from "../../core/errors.ts";
import { escapeControl } from "../../core/term_text.ts";
import {
  definePlugin,
  type Device,
  type DeviceHost,
  type DeviceState,
  type Plugin,
  VIRTIO_CHAIN_LIMIT,
  type VirtioDevice,
} from "../../plugins/mod.ts";
import { checkStateVersion } from "../../plugins/state.ts";
import {
  DeviceModelError,
  transportOptions,
  VIRTIO_MMIO_WINDOW,
  type VirtioDeviceModel,
  VirtioMmioTransport,
} from "./mmio.ts";
import { MAX_QUEUE_SIZE, type SplitQueue, VirtqueueError } from "./queue.ts";

/** Feature bits a plugin may offer: the device-specific ones (0-23; the rest are transport's). */
const DEVICE_FEATURE_MASK = (1n << 24n) - 1n;
/** The config space ends with the window (it starts at 0x100). */
const MAX_CONFIG = VIRTIO_MMIO_WINDOW - 0x100;
/** The most queues a device may have (the transport's pending-notify word has 32 bits). */
const MAX_QUEUES = 32;

function describe(v: unknown): string {
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return `the string ${JSON.stringify(v.slice(0, 40))}`;
  if (v === null) return "null";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/** Throws a TypeError naming the device unless `dev` is a VirtioDevice it can drive. */
export function checkVirtioDevice(dev: unknown, name: string): asserts dev is VirtioDevice {
  const d = dev as Partial<VirtioDevice> | null;
  if (typeof d !== "object" || d === null) {
    throw new TypeError(`Virtio plugin "${name}": create() must return a virtio device object`);
  }
  if (typeof d.handle !== "function") {
    throw new TypeError(`Virtio plugin "${name}": create() returned a device without handle()`);
  }
  const q = d.queues;
  if (
    !Array.isArray(q) || q.length < 1 || q.length > MAX_QUEUES ||
    q.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_QUEUE_SIZE || (n & (n - 1)) !== 0)
  ) {
    throw new TypeError(
      `Virtio plugin "${name}": queues must list 1 to ${MAX_QUEUES} queue sizes, each a power ` +
        `of 2 up to ${MAX_QUEUE_SIZE} (got ${escapeControl(JSON.stringify(q) ?? String(q))})`,
    );
  }
  const f = d.features ?? 0n;
  if (typeof f !== "bigint" || f < 0n || (f & ~DEVICE_FEATURE_MASK) !== 0n) {
    throw new TypeError(
      `Virtio plugin "${name}": features must be a bigint of device feature bits 0-23 (the ` +
        `transport offers the rest), not ${
          typeof f === "bigint" ? `0x${f.toString(16)}` : typeof f
        }`,
    );
  }
}

/**
 * The device model the transport drives: each chain's bytes copied out, `handle` called, the
 * bytes it wrote copied back into the chain's writable buffers.
 */
function pluginModel(
  dev: VirtioDevice,
  name: string,
  transport: () => VirtioMmioTransport,
): VirtioDeviceModel {
  const empty = new Uint8Array(0);
  /** What the plugin's failure in `what` means for the guest (a gone plugin stops the VM). */
  const fault = (what: string, err: unknown): DeviceModelError => {
    if (err instanceof PluginError || err instanceof VirtqueueError) throw err;
    if (err instanceof DeviceModelError) return err; // the sandbox's, already worded
    const msg = escapeControl(String((err as Error)?.message ?? err));
    return new DeviceModelError(`Device "${name}" failed in its ${what}: ${msg}`);
  };
  return {
    deviceId: 0, // replaced below
    features: dev.features ?? 0n,
    queueSizes: [...dev.queues],
    config(): Uint8Array {
      if (dev.config === undefined) return empty;
      let cfg: unknown;
      try {
        cfg = dev.config();
      } catch (err) {
        transport().fail(fault("config()", err).message);
        return empty;
      }
      if (!(cfg instanceof Uint8Array) || cfg.length > MAX_CONFIG) {
        transport().fail(
          `Device "${name}": its config() returned ${
            cfg instanceof Uint8Array ? `${cfg.length} bytes` : describe(cfg)
          }, not a Uint8Array of at most ${MAX_CONFIG} bytes`,
        );
        return empty;
      }
      return cfg;
    },
    writeConfig(offset: number, size: number, value: number): void {
      try {
        dev.writeConfig?.(offset, size, value);
      } catch (err) {
        transport().fail(fault("writeConfig()", err).message);
      }
    },
    process(index: number, queue: SplitQueue, features: bigint): void {
      for (let c = queue.pop(); c !== null; c = queue.pop()) {
        if (c.readableLength > VIRTIO_CHAIN_LIMIT) {
          throw new VirtqueueError(
            `chain ${c.head} has ${c.readableLength} readable bytes, more than the ` +
              `${VIRTIO_CHAIN_LIMIT} a plugin device takes`,
          );
        }
        const chain = {
          queue: index,
          readable: c.read(0, c.readableLength),
          writable: new Uint8Array(Math.min(c.writableLength, VIRTIO_CHAIN_LIMIT)),
          features,
        };
        let used: unknown;
        try {
          used = dev.handle(chain);
        } catch (err) {
          throw fault("chain handler", err);
        }
        if (
          typeof used !== "number" || !Number.isInteger(used) || used < 0 ||
          used > chain.writable.length
        ) {
          throw new DeviceModelError(
            `Device "${name}": its chain handler returned ${describe(used)}, not a used length ` +
              `from 0 to ${chain.writable.length} (the chain's writable bytes)`,
          );
        }
        queue.push(c.head, c.write(0, chain.writable.subarray(0, used)));
      }
    },
    reset(): void {
      // A reset the plugin fails leaves the device reset on our side; it says so.
      try {
        dev.reset?.();
      } catch (err) {
        if (err instanceof PluginError) throw err;
        transport().host.log.warn(
          `Device "${name}" failed in its reset(): ${
            escapeControl(String((err as Error)?.message ?? err))
          }`,
        );
      }
    },
  };
}

/**
 * The Plugin the machine attaches for virtio plugin `plugin`: its `create(host)` reads the
 * window and line the VMM gave (`base=`, `irq=` options), builds the plugin's device and puts
 * the transport around it. Its state holds the transport's fields and the plugin's own state
 * (field `device`, checked against the plugin's `stateVersion`).
 *
 * @example
 * ```ts ignore
 * import { virtioTransportPlugin } from "./plugin_device.ts";
 * // machine.attach(virtioTransportPlugin(plugin), { base: "0xd0000000", irq: "5" });
 * ```
 */
export function virtioTransportPlugin(plugin: Plugin): Plugin {
  const spec = plugin.virtio;
  if (spec === undefined) {
    throw new TypeError(`Plugin "${plugin.name}" is not a virtio device (defineVirtioPlugin)`);
  }
  return definePlugin({
    name: plugin.name,
    apiVersion: plugin.apiVersion,
    ...(plugin.description === undefined ? {} : { description: plugin.description }),
    stateVersion: plugin.stateVersion,
    create(host: DeviceHost): Device {
      const opts = transportOptions(host);
      const dev = spec.create(host);
      checkVirtioDevice(dev, host.name);
      let transport: VirtioMmioTransport | null = null;
      const model = { ...pluginModel(dev, host.name, () => transport!), deviceId: spec.deviceId };
      transport = new VirtioMmioTransport(host, model, opts);
      const t = transport;
      const device = t.device({
        save: () => ({ device: dev.save?.() ?? { version: 1, fields: {} } }),
        restore: (f) => {
          const state = f.device as DeviceState;
          checkStateVersion(plugin, state, host.name);
          dev.restore?.(state);
        },
      });
      return {
        ...device,
        save: () => ({ ...device.save(), version: plugin.stateVersion }),
        close: () => dev.close?.(),
      };
    },
  });
}
