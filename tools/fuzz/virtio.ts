/**
 * Fuzzes the virtio queue code: each case is a fresh virtio-blk or virtio-rng transport over a
 * small guest RAM, set up through its registers with random (often invalid) features, queue
 * sizes and ring addresses, with random descriptor tables, indirect tables and driver rings,
 * then notified (sometimes with register writes in between: reconfiguration while ready,
 * status changes, resets). Checked for every case: nothing throws out of the device, no error
 * is an internal one (only the guest's faults are reported), and every byte the device writes
 * is in the used ring or in a buffer some descriptor marks device-writable.
 *
 * `deno task fuzz:virtio [--count N] [--seed S]`; exits 1 on the first failure, with the seed
 * and case number that repeat it.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { GuestMemory } from "../../core/memory.ts";
import type { DeviceHost, IrqLine } from "../../plugins/mod.ts";
import {
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_VERSION_1,
  REG,
  VirtioMmioTransport,
} from "../../devices/virtio/mmio.ts";
import { blkModel, type Disk } from "../../devices/virtio/blk.ts";
import { rngModel } from "../../devices/virtio/rng.ts";
import type { QueueMemory } from "../../devices/virtio/queue.ts";

/** What a fuzz run found. */
export interface FuzzResult {
  cases: number;
  /** Host exceptions (anything thrown out of a register access): must be 0. */
  exceptions: number;
  /** Errors the device called internal: must be 0. */
  internalErrors: number;
  /** Writes outside the used ring and the device-writable buffers: must be 0. */
  strayWrites: number;
  /** Cases that ended with DEVICE_NEEDS_RESET (the guest's fault, reported). */
  needsReset: number;
  /** Chains completed. */
  completed: number;
  /** The first failure, with its case number. */
  firstFailure: string | null;
}

const RAM = 0x1_0000;

/** mulberry32: small, fast, good enough for fuzzing. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b_79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `count` cases from `seed`. */
export function fuzzVirtio(opts: { count: number; seed: number }): FuzzResult {
  const rand = prng(opts.seed);
  const int = (n: number) => Math.floor(rand() * n);
  const chance = (p: number) => rand() < p;
  const ram = GuestMemory.allocate(RAM);
  const before = new Uint8Array(RAM);
  const res: FuzzResult = {
    cases: 0,
    exceptions: 0,
    internalErrors: 0,
    strayWrites: 0,
    needsReset: 0,
    completed: 0,
    firstFailure: null,
  };
  /** The current case's rings, for checking each device write as it happens. */
  let ctx: { usedAt: number; num: number; descAt: number; case: number } | null = null;
  let beforeAllowed: [number, number][] | null = null;
  const inside = (list: [number, number][], g: number, l: number) =>
    list.some(([a, al]) => g >= a && g + l <= a + al);
  /**
   * Before each device write: it must land in the used ring or in a buffer that a descriptor
   * marks device-writable, as the tables were when the case started or are now (the device's
   * own writes may change a table a later chain reads, when a hostile guest overlaps them).
   */
  const check = (g: number, l: number): void => {
    if (ctx === null) return;
    const usedEnd = ctx.usedAt + 6 + 8 * Math.min(ctx.num, 0x1_0000);
    if (g >= ctx.usedAt && g + l <= usedEnd) return;
    beforeAllowed ??= writableBuffers(before, ctx.num, ctx.descAt);
    if (inside(beforeAllowed, g, l)) return;
    if (inside(writableBuffers(ram.bytes, ctx.num, ctx.descAt), g, l)) return;
    res.strayWrites++;
    res.firstFailure ??= `case ${ctx.case}: the device wrote ${l} bytes at 0x${
      g.toString(16)
    }, outside the used ring and every device-writable buffer`;
  };
  const mem: QueueMemory = {
    size: RAM,
    read: (g, l) => ram.read(g, l),
    readU32: (g) => ram.readU32(g),
    readU16: (g) => ram.readU16(g),
    isRam: (g, l) => ram.isRam(g, l),
    write(g, d) {
      check(g, d.length);
      ram.write(g, d);
    },
    writeU32(g, v) {
      check(g, 4);
      ram.writeU32(g, v);
    },
    writeU16(g, v) {
      check(g, 2);
      ram.writeU16(g, v);
    },
  };
  const diskBytes = new Uint8Array(32 * 512);
  const disk: Disk = {
    size: diskBytes.length,
    read: (o, b) => b.set(diskBytes.subarray(o, o + b.length)),
    write: (o, d) => diskBytes.set(d, o),
    flush() {},
  };
  const irq: IrqLine = { line: 5, raise() {}, lower() {}, pulse() {} };
  const host = {
    name: "fuzz",
    memory: mem,
    irq: () => irq,
    log: { info() {}, warn() {}, debug() {} },
  } as unknown as DeviceHost;

  /** An address: mostly in RAM, sometimes near its end, past it, or anywhere in 64 bits. */
  const addr = (align: number): number => {
    const r = rand();
    let a: number;
    if (r < 0.75) a = int(RAM);
    else if (r < 0.85) a = RAM - int(64);
    else if (r < 0.93) a = int(2 ** 32);
    else a = int(2 ** 21) * 2 ** 32 + int(2 ** 32);
    return chance(0.9) ? a - (a % align) : a;
  };
  const len = (): number => {
    const r = rand();
    if (r < 0.5) return int(64);
    if (r < 0.8) return 512 * int(4) + (chance(0.8) ? 0 : int(512));
    if (r < 0.9) return int(RAM);
    return int(2 ** 32);
  };
  const u64 = (at: number, v: number) => {
    if (ram.isRam(at, 8)) {
      ram.writeU32(at, v % 2 ** 32);
      ram.writeU32(at + 4, Math.floor(v / 2 ** 32));
    }
  };
  const desc = (table: number, i: number, size: number, indirectTables: number[], depth = 0) => {
    const at = table + 16 * i;
    if (!ram.isRam(at, 16)) return;
    let flags = int(8);
    let a = addr(1);
    let l = len();
    if ((flags & 4) && depth < 2 && chance(0.7)) {
      // A believable indirect table.
      const n = 1 + int(8);
      a = int(RAM - 16 * n);
      a -= a % 16;
      l = 16 * n;
      if (chance(0.7)) flags &= ~1;
      indirectTables.push(a);
      for (let j = 0; j < n; j++) desc(a, j, n, indirectTables, depth + 1);
    }
    u64(at, a);
    ram.writeU32(at + 8, l);
    ram.writeU16(at + 12, flags);
    ram.writeU16(at + 14, chance(0.9) ? int(size) : int(0x1_0000));
  };

  /** Buffers in the upper half of RAM (the rings live in the lower half). */
  const buffer = (l: number): number => {
    let a = RAM / 2 + int(RAM / 2 - l);
    a -= a % 16;
    return Math.max(RAM / 2, a);
  };
  /** One descriptor, rarely mutated. */
  const put = (table: number, i: number, a: number, l: number, flags: number, next: number) => {
    const at = table + 16 * i;
    if (!ram.isRam(at, 16)) return;
    if (chance(0.02)) a = addr(1);
    if (chance(0.02)) l = len();
    if (chance(0.02)) flags ^= 1 << int(3);
    if (chance(0.02)) next = int(0x1_0000);
    u64(at, a);
    ram.writeU32(at + 8, l);
    ram.writeU16(at + 12, flags);
    ram.writeU16(at + 14, next);
  };
  /** Up to 8 believable chains (blk requests, rng buffers), direct or indirect, published. */
  const wellFormed = (
    descAt: number,
    availAt: number,
    num: number,
    isBlk: boolean,
    indirectTables: number[],
  ) => {
    const chains = 1 + int(Math.min(8, num));
    let next = 0;
    const heads: number[] = [];
    for (let k = 0; k < chains; k++) {
      const segs: [number, number, number][] = [];
      if (isBlk) {
        const type = [0, 1, 4, 8, int(20)][int(5)]!;
        const hdr = buffer(16);
        ram.writeU32(hdr, type);
        ram.writeU32(hdr + 4, 0);
        ram.writeU32(hdr + 8, chance(0.9) ? int(40) : int(2 ** 32));
        ram.writeU32(hdr + 12, chance(0.95) ? 0 : int(2 ** 32));
        segs.push([hdr, 16, 0]);
        const dataSegs = int(3);
        const dataFlag = type === 1 ? 0 : 2;
        for (let j = 0; j < dataSegs; j++) {
          const l = chance(0.8) ? 512 * (1 + int(4)) : int(2048);
          segs.push([buffer(l), l, dataFlag]);
        }
        segs.push([buffer(1), 1, 2]);
      } else {
        for (let j = 1 + int(3); j > 0; j--) {
          const l = 1 + int(256);
          segs.push([buffer(l), l, 2]);
        }
      }
      const head = next % num;
      heads.push(head);
      if (chance(0.3)) {
        const table = buffer(16 * segs.length);
        indirectTables.push(table);
        segs.forEach(([a, l, f], j) =>
          put(table, j, a, l, f | (j + 1 < segs.length ? 1 : 0), j + 1)
        );
        put(descAt, head, table, 16 * segs.length, 4, 0);
        next++;
      } else {
        segs.forEach(([a, l, f], j) =>
          put(
            descAt,
            (next + j) % num,
            a,
            l,
            f | (j + 1 < segs.length ? 1 : 0),
            (next + j + 1) % num,
          )
        );
        next += segs.length;
      }
    }
    if (!ram.isRam(availAt, 4 + 2 * chains)) return;
    ram.writeU16(availAt, 0);
    ram.writeU16(availAt + 2, chance(0.95) ? chains : int(0x1_0000));
    heads.forEach((h, j) => ram.writeU16(availAt + 4 + 2 * j, h));
  };

  /**
   * Every buffer a descriptor (of the ring's table, or of an indirect table
   * one of those names) marks device-writable, in RAM image `bytes`.
   */
  const writableBuffers = (
    bytes: Uint8Array,
    num: number,
    descAt: number,
  ): [number, number][] => {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const allowed: [number, number][] = [];
    const tables: [number, number][] = [[descAt, Math.min(num, 0x1_0000)]];
    const seen = new Set<number>();
    for (let k = 0; k < tables.length; k++) {
      const [table, size] = tables[k]!;
      if (seen.has(table)) continue;
      seen.add(table);
      for (let i = 0; i < size; i++) {
        const at = table + 16 * i;
        if (at < 0 || at + 16 > RAM) break;
        const flags = dv.getUint16(at + 12, true);
        const a = dv.getUint32(at + 4, true) * 2 ** 32 + dv.getUint32(at, true);
        const l = dv.getUint32(at + 8, true);
        if (flags & 2) allowed.push([a, l]);
        // Indirect tables hang off the ring's table only (one inside another is refused).
        if (k === 0 && (flags & 4) && !seen.has(a)) {
          tables.push([a, Math.floor(Math.min(l / 16, 4096))]);
        }
      }
    }
    return allowed;
  };

  for (let c = 0; c < opts.count; c++) {
    res.cases++;
    ctx = null;
    beforeAllowed = null;
    const isBlk = chance(0.6);
    const model = isBlk
      ? blkModel(mem, disk, { readOnly: chance(0.2), id: "fuzz" })
      : rngModel((b) => b.fill(0xa5));
    const t = new VirtioMmioTransport(host, model, {
      base: 0,
      irq,
    });
    const max = model.queueSizes[0]!;
    const w = (reg: number, v: number) => t.write(reg, 4, v >>> 0);
    let num = 0, descAt = 0, availAt = 0, usedAt = 0;
    const indirectTables: number[] = [];
    try {
      w(REG.Status, 3);
      let feats = chance(0.9) ? 1n << BigInt(F_VERSION_1) : 0n;
      if (chance(0.6)) feats |= 1n << BigInt(F_INDIRECT_DESC);
      if (chance(0.5)) feats |= 1n << BigInt(F_EVENT_IDX);
      if (chance(0.1)) feats |= BigInt(int(2 ** 32));
      w(REG.DriverFeaturesSel, 1);
      w(REG.DriverFeatures, Number(feats >> 32n));
      w(REG.DriverFeaturesSel, 0);
      w(REG.DriverFeatures, Number(feats & 0xffff_ffffn));
      w(REG.Status, 11);
      num = chance(0.85) ? 2 ** int(Math.log2(max) + 1) : int(max * 2 + 2);
      descAt = chance(0.85) ? int(RAM / 2) & ~15 : addr(16);
      availAt = chance(0.85) ? int(RAM / 2) & ~1 : addr(2);
      usedAt = chance(0.85) ? int(RAM / 2) & ~3 : addr(4);
      w(REG.QueueSel, chance(0.95) ? 0 : int(4));
      w(REG.QueueNum, num);
      w(REG.QueueDescLow, descAt % 2 ** 32);
      w(REG.QueueDescHigh, Math.floor(descAt / 2 ** 32));
      w(REG.QueueDriverLow, availAt % 2 ** 32);
      w(REG.QueueDriverHigh, Math.floor(availAt / 2 ** 32));
      w(REG.QueueDeviceLow, usedAt % 2 ** 32);
      w(REG.QueueDeviceHigh, Math.floor(usedAt / 2 ** 32));
      // The tables and rings, random (num may be absurd: fill what a sane size would cover).
      const n = Math.min(num, 48);
      if (chance(0.6) && num >= 1 && num <= 0x1_0000) {
        wellFormed(descAt, availAt, num, isBlk, indirectTables);
      } else {
        for (let i = 0; i < n; i++) desc(descAt, i, num, indirectTables);
        if (ram.isRam(availAt, 4)) {
          ram.writeU16(availAt, int(4));
          ram.writeU16(availAt + 2, chance(0.8) ? 1 + int(Math.min(n, 8)) : int(0x1_0000));
        }
        for (let i = 0; i < n + 1; i++) {
          const at = availAt + 4 + 2 * i;
          if (ram.isRam(at, 2)) ram.writeU16(at, chance(0.9) ? int(num || 1) : int(0x1_0000));
        }
      }
      before.set(ram.bytes);
      ctx = { usedAt, num, descAt, case: c };
      w(REG.QueueReady, 1);
      w(REG.Status, 15);
      const rounds = 1 + int(3);
      for (let r = 0; r < rounds; r++) {
        if (chance(0.1)) w(REG.QueueNum, int(512)); // reconfiguration while ready
        if (chance(0.05)) w(REG.Status, 0); // reset mid-flight
        if (chance(0.05)) w(REG.QueueReady, int(2));
        if (chance(0.2) && ram.isRam(availAt + 2, 2)) {
          ram.writeU16(availAt + 2, (ram.readU16(availAt + 2) + int(4)) & 0xffff);
        }
        w(REG.QueueNotify, chance(0.95) ? 0 : int(0x1_0000));
        t.read(REG.InterruptStatus, 4);
        w(REG.InterruptACK, 3);
      }
    } catch (err) {
      res.exceptions++;
      res.firstFailure ??= `case ${c}: host exception: ${(err as Error)?.stack ?? err}`;
      continue;
    }
    if (t.lastError !== null) {
      res.needsReset++;
      if (t.lastError.includes("internal error")) {
        res.internalErrors++;
        res.firstFailure ??= `case ${c}: ${t.lastError}`;
      }
    }
    res.completed += t.queues[0]!.usedIdx;
  }
  return res;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { count: { type: "string", default: "1000000" }, seed: { type: "string" } },
  });
  const count = Number(values.count);
  const seed = values.seed === undefined
    ? crypto.getRandomValues(new Uint32Array(1))[0]!
    : Number(values.seed);
  if (!Number.isSafeInteger(count) || count < 1 || !Number.isInteger(seed) || seed < 0) {
    console.error("usage: deno task fuzz:virtio [--count N] [--seed S]");
    Deno.exit(2);
  }
  const t0 = performance.now();
  const r = fuzzVirtio({ count, seed });
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `fuzz:virtio seed ${seed}: ${r.cases} cases in ${s} s, ${r.completed} chains completed, ` +
      `${r.needsReset} ended in DEVICE_NEEDS_RESET; host exceptions ${r.exceptions}, internal ` +
      `errors ${r.internalErrors}, stray writes ${r.strayWrites}`,
  );
  if (r.firstFailure !== null) {
    console.error(`first failure (repeat with --seed ${seed}): ${r.firstFailure}`);
    Deno.exit(1);
  }
}
