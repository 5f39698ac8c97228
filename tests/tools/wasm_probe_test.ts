/**
 * tools/wasm_probe.ts (issue 12's measurement of a WebAssembly tier): its three versions of the
 * workload's xorshift64* step must agree on the checksum (the tool throws otherwise) and it
 * prints one timing row each.
 */
import { assertEquals, assertTrue } from "../_assert.ts";
import { ROOT } from "../_run.ts";

Deno.test("wasm_probe: JS halves, BigInt and wasm i64 compute the same checksum", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}tools/wasm_probe.ts`, "3000"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  for (const name of ["js halves", "js bigint", "wasm i64"]) {
    assertTrue(new RegExp(`${name} +[0-9.]+ ns/iteration`).test(text), `${name} row in:\n${text}`);
  }
});
