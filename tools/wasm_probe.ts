/**
 * A measurement for issue 12's next tier, not part of the VMM: the workload guest's xorshift64*
 * step with a 64-bit store to guest RAM, written three ways, timed in the same run.
 *
 * - `js halves`: what the block compiler emits today: 64-bit values as two int32 halves, the
 *   multiply through the interpreter's `imul64` helper, the store as two DataView writes into a
 *   SharedArrayBuffer (guest RAM);
 * - `js bigint`: BigInt arithmetic, for reference;
 * - `wasm i64`: a hand-encoded WebAssembly function on i64 locals whose memory is a shared
 *   `WebAssembly.Memory`: the SharedArrayBuffer the rest of the VMM would use as guest RAM.
 *
 * All three compute the same checksum (checked). Run: `deno run -A tools/wasm_probe.ts [N]`.
 */

import { imul64 } from "../core/interp/alu.ts";
import type { Cpu } from "../core/interp/cpu.ts";

const N = Number(Deno.args[0] ?? 2_000_000);
const SEED = 0x9e3779b97f4a7c15n;
const MUL = 0x2545f4914f6cdd1dn;
const RAM_BYTES = 1 << 20; // the stores go to (i & 0xffff) * 8 in the first 512 KiB

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 64-bit value. */
function sleb64(v: bigint): number[] {
  v = BigInt.asIntN(64, v);
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/** (func (param $n i32) (result i64)) over imported shared memory "m"."mem". */
function wasmModule(): Uint8Array<ArrayBuffer> {
  const X = 1, I = 2, ACC = 3; // locals after the parameter (0)
  const get = (l: number) => [0x20, l], set = (l: number) => [0x21, l];
  // deno-fmt-ignore
  const code = [
    3, 1, 0x7e, 1, 0x7f, 1, 0x7e, // locals: x i64, i i32, acc i64
    0x42, ...sleb64(SEED), ...set(X),
    0x03, 0x40, // loop
    // x ^= x >> 12; x ^= x << 25; x ^= x >> 27
    ...get(X), ...get(X), 0x42, 12, 0x88, 0x85, ...set(X),
    ...get(X), ...get(X), 0x42, 25, 0x86, 0x85, ...set(X),
    ...get(X), ...get(X), 0x42, 27, 0x88, 0x85, ...set(X),
    // store x * MUL at (i & 0xffff) * 8, and add it to acc
    ...get(I), 0x41, ...sleb64(0xffffn), 0x71, 0x41, 3, 0x74,
    ...get(X), 0x42, ...sleb64(MUL), 0x7e,
    0x37, 3, 0, // i64.store align=8 offset=0
    ...get(ACC), ...get(X), 0x42, ...sleb64(MUL), 0x7e, 0x7c, ...set(ACC),
    // i++; loop while i < n
    ...get(I), 0x41, 1, 0x6a, 0x22, I, ...get(0), 0x49, 0x0d, 0,
    0x0b, // end loop
    ...get(ACC),
    0x0b, // end function
  ];
  // deno-fmt-ignore
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7e]), // type 0: (i32) -> i64
    // import "m" "mem": shared memory, 16 pages min and max
    ...section(2, [1, 1, 0x6d, 3, 0x6d, 0x65, 0x6d, 0x02, 0x03, 16, 16]),
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(7, [1, 3, 0x72, 0x75, 0x6e, 0x00, 0]), // export "run" = func 0
    ...section(10, [1, ...uleb(code.length), ...code]),
  ]);
}

function timeIt(name: string, f: () => bigint): { name: string; ns: number; sum: bigint } {
  f(); // warm up: V8 compiles, tiers up
  let best = Infinity, sum = 0n;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    sum = f();
    best = Math.min(best, performance.now() - t0);
  }
  return { name, ns: (best * 1e6) / N, sum };
}

// The flags imul64 sets are dropped: only the product matters here.
const fakeCpu = { rh: 0, intel: true, setArith() {} } as unknown as Cpu;
const ramJs = new DataView(new SharedArrayBuffer(RAM_BYTES));
const mulLo = Number(BigInt.asIntN(32, MUL)), mulHi = Number(BigInt.asIntN(32, MUL >> 32n));

const halves = () => {
  let lo = Number(BigInt.asIntN(32, SEED)), hi = Number(BigInt.asIntN(32, SEED >> 32n));
  let accLo = 0, accHi = 0;
  for (let i = 0; i < N; i++) {
    // x ^= x >> 12 (logical), x ^= x << 25, x ^= x >> 27, on halves as the templates do
    let nl = (lo >>> 12) | (hi << 20), nh = hi >>> 12;
    lo ^= nl;
    hi ^= nh;
    nh = (hi << 25) | (lo >>> 7);
    nl = lo << 25;
    lo ^= nl;
    hi ^= nh;
    nl = (lo >>> 27) | (hi << 5);
    nh = hi >>> 27;
    lo ^= nl;
    hi ^= nh;
    const pl = imul64(fakeCpu, lo, hi, mulLo, mulHi), ph = fakeCpu.rh;
    const at = (i & 0xffff) * 8;
    ramJs.setInt32(at, pl, true);
    ramJs.setInt32(at + 4, ph, true);
    const s = (accLo >>> 0) + (pl >>> 0);
    accLo = s | 0;
    accHi = (accHi + ph + (s > 0xffffffff ? 1 : 0)) | 0;
  }
  return (BigInt(accHi >>> 0) << 32n) | BigInt(accLo >>> 0);
};

const bigint = () => {
  let x = SEED, acc = 0n;
  const ram = new BigUint64Array(ramJs.buffer);
  for (let i = 0; i < N; i++) {
    x ^= x >> 12n;
    x = BigInt.asUintN(64, x ^ (x << 25n));
    x ^= x >> 27n;
    const p = BigInt.asUintN(64, x * MUL);
    ram[i & 0xffff] = p;
    acc = BigInt.asUintN(64, acc + p);
  }
  return acc;
};

const memory = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true });
const instance = new WebAssembly.Instance(new WebAssembly.Module(wasmModule()), {
  m: { mem: memory },
});
const run = instance.exports.run as (n: number) => bigint;
const wasm = () => BigInt.asUintN(64, run(N));

const rows = [timeIt("js halves", halves), timeIt("js bigint", bigint), timeIt("wasm i64", wasm)];
if (new Set(rows.map((r) => r.sum)).size !== 1) {
  throw new Error(`checksums differ: ${rows.map((r) => `${r.name} ${r.sum}`).join(", ")}`);
}
console.log(`xorshift64* step + 64-bit store to shared RAM, ${N} iterations, best of 5:`);
for (const r of rows) {
  console.log(
    `  ${r.name.padEnd(10)} ${r.ns.toFixed(2).padStart(7)} ns/iteration  ` +
      `(${(rows[0]!.ns / r.ns).toFixed(2)}x js halves)`,
  );
}
