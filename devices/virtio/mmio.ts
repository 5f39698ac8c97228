/**
 * The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2; non-legacy, so the driver
 * must accept `VIRTIO_F_VERSION_1`): the register block, feature negotiation, the device status
 * with reset on 0, per-queue configuration through QueueSel, notifications, the interrupt
 * status/ACK pair and the device's config space at 0x100. A device model
 * ({@link VirtioDeviceModel}) supplies the device ID, its feature bits, its queues' sizes, its
 * config space and what to do with a queue's chains.
 *
 * Interrupts: the transport pulses its line for each used-buffer or configuration-change
 * notification (an edge, as the DSDT's `Interrupt(ResourceConsumer, Edge, ActiveHigh)` tells
 * Linux to program the IOAPIC pin; Linux's `vm_interrupt` reads InterruptStatus and ACKs it).
 * A pulse per notification, not a level held until ACK, so an edge the guest lost while it had
 * the pin masked is made good by the next one.
 *
 * A guest that breaks the rules (a malformed chain, rings outside RAM, a queue size that is not
 * a power of 2 or above the maximum, a queue reconfigured while ready) gets
 * `DEVICE_NEEDS_RESET` (status bit 0x40) and a configuration-change interrupt; the device then
 * ignores its queues until the driver resets it. Nothing a guest does throws out of a handler.
 *
 * @module
 */

import type { Device, DeviceHost, DeviceState, IoRange, IrqLine } from "../../plugins/mod.ts";
import { SplitQueue, VirtqueueError } from "./queue.ts";
import { PluginError } from "../../core/errors.ts";

/** "virt", little-endian. */
export const VIRTIO_MMIO_MAGIC = 0x7472_6976;
/** The non-legacy register layout. */
export const VIRTIO_MMIO_VERSION = 2;
/** VendorID the devices report ("DNVS"). */
export const VIRTIO_VENDOR_ID = 0x5356_4e44;

/** Register offsets (4.2.2). */
export const REG = {
  MagicValue: 0x000,
  Version: 0x004,
  DeviceID: 0x008,
  VendorID: 0x00c,
  DeviceFeatures: 0x010,
  DeviceFeaturesSel: 0x014,
  DriverFeatures: 0x020,
  DriverFeaturesSel: 0x024,
  QueueSel: 0x030,
  QueueNumMax: 0x034,
  QueueNum: 0x038,
  QueueReady: 0x044,
  QueueNotify: 0x050,
  InterruptStatus: 0x060,
  InterruptACK: 0x064,
  Status: 0x070,
  QueueDescLow: 0x080,
  QueueDescHigh: 0x084,
  QueueDriverLow: 0x090,
  QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0,
  QueueDeviceHigh: 0x0a4,
  SHMSel: 0x0ac,
  SHMLenLow: 0x0b0,
  SHMLenHigh: 0x0b4,
  SHMBaseLow: 0x0b8,
  SHMBaseHigh: 0x0bc,
  QueueReset: 0x0c0,
  ConfigGeneration: 0x0fc,
  Config: 0x100,
} as const;

/** Device status bits (2.1). */
export const STATUS_ACKNOWLEDGE = 1, STATUS_DRIVER = 2, STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8, STATUS_NEEDS_RESET = 0x40, STATUS_FAILED = 0x80;
/** InterruptStatus bits. */
export const INT_VRING = 1, INT_CONFIG = 2;

/** Transport feature bits (6). */
export const F_INDIRECT_DESC = 28, F_EVENT_IDX = 29, F_VERSION_1 = 32;

/** A feature bit number as a mask. */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

/** The window a virtio-mmio device claims (registers end at 0x100 + its config space). */
export const VIRTIO_MMIO_WINDOW = 0x1000;

/**
 * A device model's own failure (a plugin's handler threw or answered nonsense): like a
 * VirtqueueError the device asks for a reset, with this message as the reason.
 */
export class DeviceModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeviceModelError";
  }
}

/** What a virtio device type implements on top of the transport. */
export interface VirtioDeviceModel {
  /** Virtio device ID (2 block, 4 entropy, ...). */
  readonly deviceId: number;
  /** Device-specific feature bits (the transport adds VERSION_1, INDIRECT_DESC, EVENT_IDX). */
  readonly features: bigint;
  /** Maximum size of each queue; the length is the number of queues. */
  readonly queueSizes: readonly number[];
  /** The config space as it is now (read at 0x100 + offset, any width). */
  config(): Uint8Array;
  /** A config-space write (most devices ignore them). */
  writeConfig?(offset: number, size: number, value: number): void;
  /**
   * Queue `index` may have chains: take them with `queue.pop()` and return each with
   * `queue.push()`. A VirtqueueError (thrown by `pop`, or by the model for a chain it cannot
   * even answer) makes the device ask for a reset.
   */
  process(index: number, queue: SplitQueue, features: bigint): void;
  /** The driver reset the device. */
  reset?(): void;
}

/** Where the transport sits and what it signals on. */
export interface VirtioMmioOptions {
  /** Guest-physical base of the window. */
  base: number;
  /** Its size (default 0x1000). */
  size?: number;
  /** Its interrupt line. */
  irq: IrqLine;
}

/** The transport's registers and queues, as a plugin Device (MMIO range, reset, save/restore). */
export class VirtioMmioTransport {
  readonly queues: SplitQueue[];
  status = 0;
  deviceFeaturesSel = 0;
  driverFeaturesSel = 0;
  driverFeatures = 0n;
  queueSel = 0;
  interruptStatus = 0;
  configGeneration = 0;
  /** Queues notified before DRIVER_OK (processed once it is set), one bit each. */
  pendingNotify = 0;
  /** Why the device last asked for a reset (for tests and messages). */
  lastError: string | null = null;
  readonly deviceFeatures: bigint;

  constructor(
    readonly host: DeviceHost,
    readonly model: VirtioDeviceModel,
    readonly opts: VirtioMmioOptions,
  ) {
    this.queues = model.queueSizes.map((n) => new SplitQueue(host.memory, n));
    this.deviceFeatures = model.features | bit(F_VERSION_1) | bit(F_INDIRECT_DESC) |
      bit(F_EVENT_IDX);
  }

  /** The Device the machine attaches. */
  device(extraState?: {
    save(): Record<string, unknown>;
    restore(f: Record<string, unknown>): void;
  }): Device {
    const range: IoRange = {
      base: this.opts.base,
      length: this.opts.size ?? VIRTIO_MMIO_WINDOW,
      read: (offset, size) => this.read(offset, size),
      write: (offset, size, value) => this.write(offset, size, value),
    };
    return {
      mmio: [range],
      reset: () => this.reset(),
      save: (): DeviceState => ({
        version: 1,
        fields: { ...this.save(), ...(extraState?.save() ?? {}) },
      }),
      restore: (state) => {
        this.restore(state.fields);
        extraState?.restore(state.fields);
      },
    };
  }

  #queue(): SplitQueue | undefined {
    return this.queues[this.queueSel];
  }

  /** A guest read of the window. */
  read(offset: number, size: number): number {
    if (offset >= REG.Config) {
      const cfg = this.model.config();
      const at = offset - REG.Config;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + (cfg[at + i] ?? 0);
      return v >>> 0;
    }
    if (size !== 4) return 0;
    const q = this.#queue();
    switch (offset) {
      case REG.MagicValue:
        return VIRTIO_MMIO_MAGIC;
      case REG.Version:
        return VIRTIO_MMIO_VERSION;
      case REG.DeviceID:
        return this.model.deviceId;
      case REG.VendorID:
        return VIRTIO_VENDOR_ID;
      case REG.DeviceFeatures: {
        if (this.deviceFeaturesSel > 1) return 0;
        return Number((this.deviceFeatures >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn);
      }
      case REG.QueueNumMax:
        return q?.maxSize ?? 0;
      case REG.QueueReady:
        return q?.ready ? 1 : 0;
      case REG.InterruptStatus:
        return this.interruptStatus;
      case REG.Status:
        return this.status;
      case REG.SHMLenLow:
      case REG.SHMLenHigh:
      case REG.SHMBaseLow:
      case REG.SHMBaseHigh:
        return 0xffff_ffff; // no shared memory regions
      case REG.ConfigGeneration:
        return this.configGeneration;
    }
    return 0;
  }

  /** A guest write to the window. */
  write(offset: number, size: number, value: number): void {
    if (offset >= REG.Config) {
      this.model.writeConfig?.(offset - REG.Config, size, value);
      return;
    }
    if (size !== 4) return;
    value >>>= 0;
    switch (offset) {
      case REG.DeviceFeaturesSel:
        this.deviceFeaturesSel = value;
        return;
      case REG.DriverFeaturesSel:
        this.driverFeaturesSel = value;
        return;
      case REG.DriverFeatures: {
        if (this.status & STATUS_FEATURES_OK || this.driverFeaturesSel > 1) return;
        const shift = BigInt(32 * this.driverFeaturesSel);
        this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) |
          (BigInt(value) << shift);
        return;
      }
      case REG.QueueSel:
        this.queueSel = value;
        return;
      case REG.QueueNotify:
        this.notify(value & 0xffff);
        return;
      case REG.InterruptACK:
        this.interruptStatus &= ~value;
        return;
      case REG.Status:
        this.#writeStatus(value & 0xff);
        return;
      case REG.QueueReady:
        this.#writeReady(value);
        return;
      case REG.QueueNum:
      case REG.QueueDescLow:
      case REG.QueueDescHigh:
      case REG.QueueDriverLow:
      case REG.QueueDriverHigh:
      case REG.QueueDeviceLow:
      case REG.QueueDeviceHigh:
        this.#writeQueueConfig(offset, value);
        return;
    }
  }

  #writeQueueConfig(offset: number, value: number): void {
    const q = this.#queue();
    if (q === undefined) return;
    if (q.ready) {
      this.fail(`queue ${this.queueSel} was reconfigured while ready`);
      return;
    }
    const lo = (old: number) => Math.floor(old / 0x1_0000_0000) * 0x1_0000_0000 + value;
    const hi = (old: number) => value * 0x1_0000_0000 + (old % 0x1_0000_0000);
    switch (offset) {
      case REG.QueueNum:
        q.num = value;
        return;
      case REG.QueueDescLow:
        q.desc = lo(q.desc);
        return;
      case REG.QueueDescHigh:
        q.desc = hi(q.desc);
        return;
      case REG.QueueDriverLow:
        q.driver = lo(q.driver);
        return;
      case REG.QueueDriverHigh:
        q.driver = hi(q.driver);
        return;
      case REG.QueueDeviceLow:
        q.device = lo(q.device);
        return;
      case REG.QueueDeviceHigh:
        q.device = hi(q.device);
        return;
    }
  }

  #writeReady(value: number): void {
    const q = this.#queue();
    if (q === undefined) return;
    if ((value & 1) === 0) {
      q.ready = false;
      return;
    }
    if (q.ready) return;
    q.eventIdx = (this.driverFeatures & bit(F_EVENT_IDX)) !== 0n;
    q.indirect = (this.driverFeatures & bit(F_INDIRECT_DESC)) !== 0n;
    try {
      q.enable();
    } catch (err) {
      if (!(err instanceof VirtqueueError)) throw err;
      this.fail(`queue ${this.queueSel}: ${err.message}`);
    }
  }

  #writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const was = this.status;
    let next = value | (was & STATUS_NEEDS_RESET);
    if ((next & STATUS_FEATURES_OK) && !(was & STATUS_FEATURES_OK)) {
      const ok = (this.driverFeatures & ~this.deviceFeatures) === 0n &&
        (this.driverFeatures & bit(F_VERSION_1)) !== 0n;
      if (!ok) next &= ~STATUS_FEATURES_OK;
    }
    this.status = next;
    if ((next & STATUS_DRIVER_OK) && !(was & STATUS_DRIVER_OK)) {
      const pending = this.pendingNotify;
      this.pendingNotify = 0;
      for (let i = 0; i < this.queues.length; i++) {
        if (pending & (1 << i)) this.notify(i);
      }
    }
  }

  /** The driver notified queue `index`: the model takes its chains, then maybe an interrupt. */
  notify(index: number): void {
    const q = this.queues[index];
    if (q === undefined || !q.ready) return;
    if (this.status & (STATUS_NEEDS_RESET | STATUS_FAILED)) return;
    if (!(this.status & STATUS_DRIVER_OK)) {
      this.pendingNotify |= 1 << index;
      return;
    }
    try {
      this.model.process(index, q, this.driverFeatures);
    } catch (err) {
      // A plugin device that is gone (a sandbox that timed out) stops the VM, saying why.
      if (err instanceof PluginError) throw err;
      if (err instanceof VirtqueueError) this.fail(`queue ${index}: ${err.message}`);
      else if (err instanceof DeviceModelError) this.fail(err.message);
      else {
        this.fail(`queue ${index}: internal error: ${(err as Error)?.message ?? err}`);
      }
    }
    let wanted = false;
    try {
      wanted = q.needsInterrupt();
    } catch (err) {
      this.fail(`queue ${index}: internal error: ${(err as Error)?.message ?? err}`);
    }
    if (wanted) this.interrupt(INT_VRING);
  }

  /** Sets `bits` in InterruptStatus and signals the line. */
  interrupt(bits: number): void {
    this.interruptStatus |= bits;
    this.opts.irq.pulse();
  }

  /** The guest broke the rules: DEVICE_NEEDS_RESET, and tell a running driver. */
  fail(reason: string): void {
    this.lastError = reason;
    if (!(this.status & STATUS_NEEDS_RESET)) {
      this.host.log.warn(`device needs reset: ${reason}`);
    }
    this.status |= STATUS_NEEDS_RESET;
    if (this.status & STATUS_DRIVER_OK) this.interrupt(INT_CONFIG);
  }

  /** The configuration space changed (a resize): new generation, config interrupt. */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if (this.status & STATUS_DRIVER_OK) this.interrupt(INT_CONFIG);
  }

  /** Device reset (Status = 0, or the machine's reset). */
  reset(): void {
    this.status = 0;
    this.deviceFeaturesSel = this.driverFeaturesSel = 0;
    this.driverFeatures = 0n;
    this.queueSel = 0;
    this.interruptStatus = 0;
    this.pendingNotify = 0;
    for (const q of this.queues) q.reset();
    this.model.reset?.();
  }

  /** Transport fields for a snapshot. */
  save(): Record<string, unknown> {
    return {
      status: this.status,
      deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel,
      driverFeatures: this.driverFeatures.toString(),
      queueSel: this.queueSel,
      interruptStatus: this.interruptStatus,
      configGeneration: this.configGeneration,
      pendingNotify: this.pendingNotify,
      // An object, not an array: the machine checks a plain object's fields by name too, before
      // it restores anything.
      queues: Object.fromEntries(this.queues.map((q, i) => [String(i), q.save()])),
    };
  }

  /** Loads transport fields `save` returned. */
  restore(f: Record<string, unknown>): void {
    this.status = Number(f.status ?? 0) & 0xff;
    this.deviceFeaturesSel = Number(f.deviceFeaturesSel ?? 0) >>> 0;
    this.driverFeaturesSel = Number(f.driverFeaturesSel ?? 0) >>> 0;
    this.driverFeatures = BigInt(String(f.driverFeatures ?? "0"));
    this.queueSel = Number(f.queueSel ?? 0) >>> 0;
    this.interruptStatus = Number(f.interruptStatus ?? 0) & 3;
    this.configGeneration = Number(f.configGeneration ?? 0) >>> 0;
    this.pendingNotify = Number(f.pendingNotify ?? 0) >>> 0;
    const saved = typeof f.queues === "object" && f.queues !== null
      ? f.queues as Record<string, Record<string, unknown>>
      : {};
    const qs = Object.keys(saved).map((k) => saved[k]!);
    if (Object.keys(saved).some((k, i) => k !== String(i))) {
      throw new Error(`state's queues are not numbered 0 to ${qs.length - 1}`);
    }
    if (qs.length !== this.queues.length) {
      throw new Error(`state has ${qs.length} queues, the device has ${this.queues.length}`);
    }
    // As strict as the machine is about a device's own fields: each queue's, by name.
    const want = Object.keys(this.queues[0]?.save() ?? {});
    qs.forEach((q, i) => {
      const got = typeof q === "object" && q !== null ? Object.keys(q) : [];
      const missing = want.find((k) => !got.includes(k));
      const unknown = got.find((k) => !want.includes(k));
      if (missing !== undefined || unknown !== undefined) {
        throw new Error(
          `queue ${i} state: ${
            missing !== undefined ? `field "${missing}" is missing` : `unknown field "${unknown}"`
          }`,
        );
      }
    });
    this.queues.forEach((q, i) => {
      q.restore(qs[i]!);
      q.eventIdx = (this.driverFeatures & bit(F_EVENT_IDX)) !== 0n;
      q.indirect = (this.driverFeatures & bit(F_INDIRECT_DESC)) !== 0n;
    });
  }
}

/** Reads the `base` and `irq` options a virtio device is attached with (the allocator's). */
export function transportOptions(host: DeviceHost): { base: number; irq: IrqLine } {
  const base = host.options.number("base", -1);
  const irq = host.options.number("irq", -1);
  if (base < 0 || irq < 0) {
    throw new TypeError(
      `virtio device "${host.name}" needs base=ADDR and irq=N (the VMM's resource allocator ` +
        `gives them)`,
    );
  }
  return { base, irq: host.irq(irq) };
}
