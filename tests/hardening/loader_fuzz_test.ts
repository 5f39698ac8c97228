/**
 * Hardening, item 8: a small seeded run of the loader fuzz (the large one is
 * `deno task fuzz:loaders --count 100000`): every mutated kernel and initrd of every format ends
 * within its time limit with a boot or a VmmError subclass, never a hang or another exception.
 */
import { assertEquals, assertTrue } from "../_assert.ts";
import { fuzzLoaders } from "../../tools/fuzz/loaders.ts";
import { runCase, seedImages } from "../../tools/fuzz/loader_cases.ts";
import { loadImage, resolveFormat } from "../../core/boot/load.ts";
import { GuestMemory } from "../../core/memory.ts";

Deno.test("the unmutated seed kernels of every format all load", () => {
  const seeds = seedImages();
  assertEquals(Object.keys(seeds).length, 6);
  for (const [name, image] of Object.entries(seeds)) {
    const format = resolveFormat("auto", image, name);
    const setup = loadImage(format, image, GuestMemory.allocate(64 << 20), {
      imagePath: name,
      cmdline: "console=ttyS0",
      initrd: new Uint8Array(4096),
    });
    assertTrue(setup.state !== undefined, `${name} gave no start state`);
  }
});

Deno.test("1,000 mutated kernels and initrds end in a boot or a clear error, none hangs", async () => {
  const s = await fuzzLoaders({ count: 1000, seed: 20261204, caseTimeoutMs: 5000 });
  assertEquals(s.cases, 1000);
  assertEquals(s.failures.map((f) => `case ${f.index}: ${f.error}`), []);
  assertEquals(s.hangs, []);
  assertTrue((s.outcomes["boot"] ?? 0) > 0, "no case booted");
  assertTrue((s.outcomes["ImageError"] ?? 0) > 0, "no case was refused");
  for (const [name, [n]] of Object.entries(s.bySeed)) assertTrue(n > 0, `no case of ${name}`);
});

Deno.test("a runCase is a function of (seed, index): the same case twice gives the same outcome", () => {
  for (const i of [3, 77, 1234]) assertEquals(runCase(5, i), runCase(5, i));
});

Deno.test("a case that hangs is stopped at its time limit, reported, and the run goes on", async () => {
  const s = await fuzzLoaders({ count: 40, seed: 3, caseTimeoutMs: 300, hangAt: 17 });
  assertEquals(s.hangs, [{ index: 17 }]);
  assertEquals(s.cases, 40);
  assertEquals(s.failures, []);
});
