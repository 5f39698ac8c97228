/** End to end: generated cases run on the interpreter and the host CPU and agree. */

import { assertEquals } from "../../_assert.ts";
import { loadInterpreterApi } from "../../../tools/difftest/interp.ts";
import { formatReproducer } from "../../../tools/difftest/compare.ts";
import { runDifftest } from "../../../tools/difftest/main.ts";

/**
 * The classes the interpreter implements today (popcnt and lzcnt_tzcnt join once its CPUID
 * advertises them).
 */
const IMPLEMENTED_CLASSES = [
  "far",
  "alu",
  "test",
  "unary",
  "muldiv",
  "shift",
  "bit",
  "mov",
  "flagop",
  "stack",
  "branch",
  "string",
  "sse_int",
  "sse_fp",
  "x87",
];

const api = await loadInterpreterApi();
const ready = typeof api !== "string" && Deno.build.arch === "x86_64" && Deno.build.os === "linux";
if (!ready) {
  console.warn(
    `difftest end-to-end test skipped: ${
      typeof api === "string" ? api : "the host oracle needs x86-64 Linux"
    }`,
  );
}

/** Runs `cases` cases and asserts there is no divergence. */
async function agree(cases: number, seed: number, jit: boolean): Promise<void> {
  const lines: string[] = [];
  const s = await runDifftest({
    cases,
    seed,
    classes: IMPLEMENTED_CLASSES,
    maxFailures: 5,
    jit,
    log: (l) => lines.push(l),
  });
  assertEquals(s.cases, cases);
  assertEquals(
    s.reports.map((r) => formatReproducer(r)),
    [],
    `divergences:\n${lines.join("\n")}`,
  );
}

// A fixed seed keeps CI repeatable; DIFFTEST_SEED explores others (`deno task difftest` too).
const SEED = Number(Deno.env.get("DIFFTEST_SEED") ?? 20261125);

Deno.test({
  name: `interpreter and host CPU agree on 20,000 cases of every implemented class (seed ${SEED})`,
  ignore: !ready,
  fn: () => agree(20_000, SEED, false),
});

Deno.test({
  name: `the block compiler's templates agree with the host CPU too (5,000 cases, seed ${SEED})`,
  ignore: !ready,
  fn: () => agree(5_000, SEED, true),
});
