/** The difftest CLI parses its options, explains bad ones, and runs natively on request. */

import { assertEquals, assertIncludes } from "../../_assert.ts";

const MAIN = new URL("../../../tools/difftest/main.ts", import.meta.url).pathname;

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("difftest --help prints the options and exits 0", async () => {
  const r = await cli("--help");
  assertEquals(r.code, 0);
  for (const opt of ["--cases", "--seed", "--only", "--max-failures"]) assertIncludes(r.out, opt);
});

Deno.test("difftest rejects an unknown option with exit status 2 and the usage", async () => {
  const r = await cli("--frobnicate");
  assertEquals(r.code, 2);
  assertIncludes(r.err, "frobnicate");
  assertIncludes(r.err, "Usage:");
});

Deno.test("difftest names the known classes when --only has an unknown one", async () => {
  const r = await cli("--only", "alu,warp", "--native-only", "--cases", "1");
  assertEquals(r.code, 2);
  assertIncludes(r.err, '"warp"');
  assertIncludes(r.err, "sse_fp");
});

Deno.test("difftest rejects a --cases that is not a whole number", async () => {
  const r = await cli("--cases", "lots");
  assertEquals(r.code, 2);
  assertIncludes(r.err, 'Cannot parse --cases "lots"');
});

Deno.test({
  name: "difftest --native-only runs the cases on the host, prints the seed and a summary",
  ignore: Deno.build.arch !== "x86_64" || Deno.build.os !== "linux",
  async fn() {
    const r = await cli("--native-only", "--cases", "600", "--seed", "5");
    assertEquals(r.code, 0, r.err);
    assertIncludes(r.out, "--seed 5");
    assertIncludes(r.out, "difftest: seed 5, 600 cases");
    assertIncludes(r.out, "alu ");
  },
});
