/** End to end: generated cases run on the interpreter and the host CPU and agree. */

import { assertEquals } from "../../_assert.ts";
import { loadInterpreterApi } from "../../../tools/difftest/interp.ts";
import { formatReproducer } from "../../../tools/difftest/compare.ts";
import { runDifftest } from "../../../tools/difftest/main.ts";

/**
 * The classes the interpreter implements today. Extend this list as it grows (sse_int and
 * sse_fp once it advertises SSE2, popcnt and lzcnt_tzcnt once it advertises them).
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

Deno.test({
  name: "interpreter and host CPU agree on every case of the implemented classes",
  ignore: !ready,
  async fn() {
    const lines: string[] = [];
    const s = await runDifftest({
      cases: 768,
      seed: 20261125,
      classes: IMPLEMENTED_CLASSES,
      maxFailures: 5,
      log: (l) => lines.push(l),
    });
    assertEquals(s.cases, 768);
    assertEquals(
      s.reports.map((r) => formatReproducer(r)),
      [],
      `divergences:\n${lines.join("\n")}`,
    );
  },
});
