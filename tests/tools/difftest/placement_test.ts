/**
 * The native oracle maps its region at whichever candidate base is free: several oracles live in
 * one process at once, a base another mapping holds is skipped, and cases generated for an
 * oracle's base agree with the interpreter mirroring that base.
 */

import { assertEquals, assertThrows, assertTrue } from "../../_assert.ts";
import { HostError } from "../../../core/errors.ts";
import { compareStates } from "../../../tools/difftest/compare.ts";
import {
  CLASS_FEATURES,
  CLASS_NAMES,
  Generator,
  makeCase,
} from "../../../tools/difftest/generator.ts";
import { InterpSide, loadInterpreterApi } from "../../../tools/difftest/interp.ts";
import {
  candidateBases,
  PREFERRED_BASE,
  REGION_ALIGN,
  REGION_LIMIT,
  REGION_SIZE,
  SLOT_COUNT,
} from "../../../tools/difftest/layout.ts";
import { NativeOracle } from "../../../tools/difftest/native.ts";
import type { TestCase } from "../../../tools/difftest/state.ts";

const canRun = Deno.build.arch === "x86_64" && Deno.build.os === "linux";
const api = canRun ? await loadInterpreterApi() : "the host oracle needs x86-64 Linux";
const ready = typeof api !== "string";
if (!ready) console.warn(`difftest placement tests skipped: ${api}`);

const GIB = 0x4000_0000;

/** A fresh interpreter side and the classes whose CPUID features it advertises. */
function interpSide(): { interp: InterpSide; classes: string[] } {
  if (typeof api === "string") throw new Error(api);
  const interp = new InterpSide(api);
  const classes = CLASS_NAMES.filter((c) =>
    (CLASS_FEATURES[c] ?? []).every((f) => interp.hasFeature(f))
  );
  return { interp, classes };
}

/**
 * Mirrors the oracle's prepared batch into the interpreter, runs it on both and asserts they
 * agree; returns how many cases were compared. Cases with results the manuals leave undefined
 * are left to e2e_test.ts: how those compare depends on the host vendor's model.
 */
function agree(oracle: NativeOracle, interp: InterpSide, batch: TestCase[]): number {
  interp.mirror(oracle.region, oracle.base);
  const after = oracle.execute(batch);
  let compared = 0;
  for (let i = 0; i < batch.length; i++) {
    const c = batch[i]!;
    if (c.undefinedFlags || c.undefinedGprs || c.undefinedFsw) continue;
    const diffs = compareStates(c, after[i]!, interp.run(c));
    assertEquals(diffs, [], `${c.mnemonic} at base 0x${oracle.base.toString(16)}`);
    compared++;
  }
  return compared;
}

function assertUsableBase(base: number): void {
  assertTrue(base % REGION_ALIGN === 0 && base >= PREFERRED_BASE, `base 0x${base.toString(16)}`);
  assertTrue(base + REGION_SIZE <= REGION_LIMIT, `base 0x${base.toString(16)}`);
}

Deno.test({
  name:
    "several native oracles open at once each get their own base and agree with the interpreter",
  ignore: !ready,
  fn() {
    const oracles: NativeOracle[] = [];
    try {
      oracles.push(NativeOracle.open(), NativeOracle.open());
      // Highest free base first: a region ending at 2 GiB, mapped through the guest's second PD.
      oracles.push(NativeOracle.open({ bases: candidateBases().reverse() }));
      const bases = oracles.map((o) => o.base);
      assertEquals(new Set(bases).size, bases.length, `bases ${bases.map((b) => b.toString(16))}`);
      bases.forEach(assertUsableBase);
      assertTrue(bases[2]! >= GIB, `base 0x${bases[2]!.toString(16)}`);
      const { interp, classes } = interpSide();
      const gens = oracles.map((o, i) =>
        new Generator(31 + i, classes, { gsBase: o.gsBaseWritable, base: o.base })
      );
      let compared = 0;
      for (let round = 0; round < 3; round++) {
        // Every oracle holds a prepared batch while the others run theirs.
        const batches = gens.map((g) => g.batch(SLOT_COUNT));
        oracles.forEach((o, i) => o.prepare(batches[i]!));
        // One interpreter side follows each oracle in turn (its page tables move with the base).
        oracles.forEach((o, i) => compared += agree(o, interp, batches[i]!));
      }
      assertTrue(compared > oracles.length * SLOT_COUNT, `only ${compared} cases compared`);
    } finally {
      for (const o of oracles) o.close();
    }
  },
});

const LIBC = {
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
} as const;
const PROT_RW = 0x3, MAP_PRIVATE_ANONYMOUS = 0x22, MAP_FIXED_NOREPLACE = 0x10_0000;

Deno.test({
  name: "a native oracle skips a base another mapping holds and still agrees with the interpreter",
  ignore: !ready,
  fn() {
    const libc = Deno.dlopen("libc.so.6", LIBC);
    // Occupy the preferred base with a plain data mapping (the first candidate that is free:
    // another test's oracle may hold the preferred one already).
    const bases = candidateBases();
    let from = 0;
    let blocker: Deno.PointerValue = null;
    for (; blocker === null; from++) {
      assertTrue(from < bases.length, "no free candidate base to occupy");
      const want = BigInt(bases[from]!);
      const p = libc.symbols.mmap(
        Deno.UnsafePointer.create(want),
        BigInt(REGION_SIZE),
        PROT_RW,
        MAP_PRIVATE_ANONYMOUS | MAP_FIXED_NOREPLACE,
        -1,
        0n,
      );
      if (BigInt(Deno.UnsafePointer.value(p)) === want) blocker = p;
    }
    const held = bases[from - 1]!;
    const rest = bases.slice(from);
    let oracle: NativeOracle | null = null;
    try {
      // With the preferred base held, the default candidate list is what skips it.
      oracle = held === PREFERRED_BASE ? NativeOracle.open() : NativeOracle.open({ bases: rest });
      const o = oracle;
      assertUsableBase(o.base);
      assertTrue(o.base > held, `oracle at 0x${o.base.toString(16)}`);
      const { interp, classes } = interpSide();
      const gen = new Generator(4711, classes, { gsBase: o.gsBaseWritable, base: o.base });
      let compared = 0;
      for (let round = 0; round < 2; round++) {
        const batch = gen.batch(SLOT_COUNT);
        o.prepare(batch);
        compared += agree(o, interp, batch);
      }
      assertTrue(compared > SLOT_COUNT, `only ${compared} cases compared`);
      // A case laid out for another base is refused on both sides instead of diverging.
      const elsewhere = makeCase(0, [0x90], "nop", undefined, { base: held });
      assertThrows(() => o.prepare([elsewhere]), RangeError, "generate cases with");
      assertThrows(() => interp.run(elsewhere), RangeError, "mirrored region is at");
      // With only the held base to choose from, opening fails and says why.
      assertThrows(() => NativeOracle.open({ bases: [held] }), HostError, "in use");
    } finally {
      oracle?.close();
      libc.symbols.munmap(blocker, BigInt(REGION_SIZE));
      libc.close();
    }
  },
});
