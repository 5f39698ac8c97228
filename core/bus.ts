/**
 * Port-I/O and MMIO buses: address ranges mapped to device handlers. Registration rejects
 * overlaps with a message naming both devices. Dispatch is the hot path of every exit:
 * ports use a flat 65,536-entry table (one array load, no search), MMIO a sorted list with
 * binary search; neither allocates. Addresses no device claims read as all ones and ignore
 * writes, as on a PC.
 */

import { escapeControl } from "./term_text.ts";
import { BusConflictError, PluginError } from "./errors.ts";
import { hex } from "./memory.ts";
import { deviceDenial } from "./denial.ts";

/** What a bus calls for an access inside a registered range. `offset` is relative to the base. */
export interface IoHandler {
  read(offset: number, size: number): number;
  write(offset: number, size: number, value: number): void;
}

/** A registered range, as reported by `ranges()`. */
export interface BusRange {
  readonly base: number;
  readonly length: number;
  readonly owner: string;
}

/** Called for accesses that reach no device (only installed when tracing). */
export type UnclaimedHook = (
  kind: "read" | "write",
  addr: number,
  size: number,
  value: number,
) => void;

/** All-ones for an access of `size` bytes (what an unclaimed read returns). */
export function allOnes(size: number): number {
  return size >= 4 ? 0xffff_ffff : (1 << (size * 8)) - 1;
}

function deviceFailure(owner: string, what: string, err: unknown): PluginError {
  if (err instanceof PluginError) return err;
  const denied = deviceDenial(owner, `in its ${what} handler`, err);
  if (denied !== null) return denied;
  const msg = escapeControl(err instanceof Error ? err.message : String(err));
  return new PluginError(`Device "${owner}" failed in its ${what} handler: ${msg}`, { cause: err });
}

/** The port-I/O bus (addresses 0..0xffff). */
export class PortBus {
  // Index 0 means "no device"; handlers[i] / owners[i] describe entry i.
  readonly #slot = new Uint16Array(0x10000);
  readonly #offset = new Uint16Array(0x10000);
  readonly #handlers: (IoHandler | null)[] = [null];
  readonly #owners: string[] = [""];
  readonly #ranges: BusRange[] = [];
  /** Set to observe unclaimed accesses (`--trace`). */
  onUnclaimed: UnclaimedHook | null = null;

  /** Claims ports `[base, base+length)` for `owner`. Throws BusConflictError on overlap. */
  register(base: number, length: number, owner: string, handler: IoHandler): void {
    if (!Number.isInteger(base) || !Number.isInteger(length) || length < 1 || base < 0) {
      throw new BusConflictError(
        `Device "${owner}" claims an invalid port range (base ${base}, length ${length})`,
      );
    }
    if (base + length > 0x10000) {
      throw new BusConflictError(
        `Device "${owner}" claims ports ${hex(base)}..${
          hex(base + length - 1)
        }, past the last port 0xffff`,
      );
    }
    for (let p = base; p < base + length; p++) {
      const s = this.#slot[p]!;
      if (s !== 0) {
        throw new BusConflictError(
          `Device "${owner}" claims port ${hex(p)}, which device "${this.#owners[s]}" already ` +
            `uses: give one of them another address`,
        );
      }
    }
    const index = this.#handlers.length;
    this.#handlers.push(handler);
    this.#owners.push(owner);
    for (let p = base; p < base + length; p++) {
      this.#slot[p] = index;
      this.#offset[p] = p - base;
    }
    this.#ranges.push({ base, length, owner });
    this.#ranges.sort((a, b) => a.base - b.base);
  }

  /** The device name at `port`, or undefined. */
  ownerOf(port: number): string | undefined {
    const s = this.#slot[port & 0xffff]!;
    return s === 0 ? undefined : this.#owners[s];
  }

  /** Registered ranges, sorted by base. */
  ranges(): readonly BusRange[] {
    return this.#ranges;
  }

  /** Reads `size` (1, 2 or 4) bytes from `port`. Hot path: no allocation. */
  read(port: number, size: number): number {
    const s = this.#slot[port]!;
    if (s === 0) {
      const v = allOnes(size);
      if (this.onUnclaimed !== null) this.onUnclaimed("read", port, size, v);
      return v;
    }
    try {
      return (this.#handlers[s]!.read(this.#offset[port]!, size) & allOnes(size)) >>> 0;
    } catch (err) {
      throw deviceFailure(this.#owners[s]!, "port read", err);
    }
  }

  /** Writes `size` (1, 2 or 4) bytes to `port`. Hot path: no allocation. */
  write(port: number, size: number, value: number): void {
    const s = this.#slot[port]!;
    if (s === 0) {
      if (this.onUnclaimed !== null) this.onUnclaimed("write", port, size, value);
      return;
    }
    try {
      this.#handlers[s]!.write(this.#offset[port]!, size, value);
    } catch (err) {
      throw deviceFailure(this.#owners[s]!, "port write", err);
    }
  }
}

/** The MMIO bus: few, large ranges anywhere in the physical address space. */
export class MmioBus {
  #bases: number[] = [];
  #ends: number[] = [];
  #handlers: IoHandler[] = [];
  #owners: string[] = [];
  /** Set to observe unclaimed accesses (`--trace`). */
  onUnclaimed: UnclaimedHook | null = null;

  /** Claims `[base, base+length)` for `owner`. Throws BusConflictError on overlap. */
  register(base: number, length: number, owner: string, handler: IoHandler): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || length < 1 || base < 0) {
      throw new BusConflictError(
        `Device "${owner}" claims an invalid MMIO range (base ${base}, length ${length})`,
      );
    }
    const end = base + length;
    for (let i = 0; i < this.#bases.length; i++) {
      if (base < this.#ends[i]! && this.#bases[i]! < end) {
        throw new BusConflictError(
          `Device "${owner}" claims MMIO ${hex(base)}..${hex(end - 1)}, which overlaps device ` +
            `"${this.#owners[i]}" at ${hex(this.#bases[i]!)}..${
              hex(this.#ends[i]! - 1)
            }: give one ` +
            `of them another address`,
        );
      }
    }
    let i = 0;
    while (i < this.#bases.length && this.#bases[i]! < base) i++;
    this.#bases.splice(i, 0, base);
    this.#ends.splice(i, 0, end);
    this.#handlers.splice(i, 0, handler);
    this.#owners.splice(i, 0, owner);
  }

  /** Registered ranges, sorted by base. */
  ranges(): readonly BusRange[] {
    return this.#bases.map((base, i) => ({
      base,
      length: this.#ends[i]! - base,
      owner: this.#owners[i]!,
    }));
  }

  /** Index of the range holding `addr`, or -1 (binary search, no allocation). */
  find(addr: number): number {
    let lo = 0, hi = this.#bases.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (addr < this.#bases[mid]!) hi = mid - 1;
      else if (addr >= this.#ends[mid]!) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** Reads `size` (1, 2, 4) bytes at `addr`. */
  read(addr: number, size: number): number {
    const i = this.find(addr);
    if (i < 0) {
      const v = allOnes(size);
      if (this.onUnclaimed !== null) this.onUnclaimed("read", addr, size, v);
      return v;
    }
    try {
      return (this.#handlers[i]!.read(addr - this.#bases[i]!, size) & allOnes(size)) >>> 0;
    } catch (err) {
      throw deviceFailure(this.#owners[i]!, "MMIO read", err);
    }
  }

  /** Writes `size` (1, 2, 4) bytes at `addr`. */
  write(addr: number, size: number, value: number): void {
    const i = this.find(addr);
    if (i < 0) {
      if (this.onUnclaimed !== null) this.onUnclaimed("write", addr, size, value);
      return;
    }
    try {
      this.#handlers[i]!.write(addr - this.#bases[i]!, size, value);
    } catch (err) {
      throw deviceFailure(this.#owners[i]!, "MMIO write", err);
    }
  }
}
