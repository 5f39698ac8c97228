/** The generator is deterministic, encodes what it claims, and its cases run on the host. */

import { assertEquals, assertTrue } from "../../_assert.ts";
import { compareStates } from "../../../tools/difftest/compare.ts";
import { CLASS_NAMES, Generator, Rng } from "../../../tools/difftest/generator.ts";
import { lastPadAddress, SLOT_COUNT } from "../../../tools/difftest/layout.ts";
import { NativeOracle } from "../../../tools/difftest/native.ts";
import type { TestCase } from "../../../tools/difftest/state.ts";

const canRun = Deno.build.arch === "x86_64" && Deno.build.os === "linux";

function fingerprint(c: TestCase): string {
  return `${c.cls}|${c.mnemonic}|${[...c.bytes]}|${c.state.gpr.join(",")}|${c.state.rflags}|` +
    `${[...c.state.data.subarray(0, 64)]}|${[...c.state.xmm.subarray(0, 32)]}|${c.state.mxcsr}`;
}

Deno.test("rng gives the same stream for the same seed and a different one for another", () => {
  const a = new Rng(7), b = new Rng(7), c = new Rng(8);
  const sa = Array.from({ length: 32 }, () => a.u32());
  const sb = Array.from({ length: 32 }, () => b.u32());
  const sc = Array.from({ length: 32 }, () => c.u32());
  assertEquals(sa, sb);
  assertTrue(sa.join() !== sc.join());
  const r = new Rng(1);
  for (let i = 0; i < 1000; i++) {
    const v = r.below(10);
    assertTrue(v >= 0 && v < 10 && Number.isInteger(v));
  }
});

Deno.test("generator produces identical cases for the same seed", () => {
  const a = new Generator(1234).batch(SLOT_COUNT).map(fingerprint);
  const b = new Generator(1234).batch(SLOT_COUNT).map(fingerprint);
  const c = new Generator(1235).batch(SLOT_COUNT).map(fingerprint);
  assertEquals(a, b);
  assertTrue(a.join() !== c.join());
});

Deno.test("generator covers every class and keeps branch targets inside the slot", () => {
  const seen = new Set<string>();
  const g = new Generator(99);
  for (let k = 0; k < 8; k++) {
    for (const c of g.batch(SLOT_COUNT)) {
      seen.add(c.cls);
      assertTrue(c.bytes.length >= 1 && c.bytes.length <= 15, c.mnemonic);
      for (const t of c.targets) {
        assertTrue(
          t >= Number(c.state.rip) + c.bytes.length && t <= lastPadAddress(c.slot, c.base),
        );
      }
    }
  }
  assertEquals([...seen].sort(), [...CLASS_NAMES].sort());
});

Deno.test("generator rejects an unknown class with the list of known ones", () => {
  let message = "";
  try {
    new Generator(1, ["nope"]);
  } catch (err) {
    message = (err as Error).message;
  }
  assertTrue(message.includes('"nope"') && message.includes("alu"), message);
});

const objdump = (() => {
  try {
    return new Deno.Command("objdump", { args: ["--version"], stdout: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();
if (!objdump) console.warn("encoding-length test skipped: objdump (binutils) is not installed");

Deno.test({
  name: "generated encodings decode (objdump) to exactly the lengths the generator claims",
  ignore: !objdump,
  async fn() {
    const g = new Generator(4242);
    const cases: TestCase[] = [];
    for (let k = 0; k < 8; k++) cases.push(...g.batch(SLOT_COUNT));
    const starts: number[] = [];
    const bytes: number[] = [];
    for (const c of cases) {
      starts.push(bytes.length);
      bytes.push(...c.bytes);
    }
    const file = await Deno.makeTempFile({ suffix: ".bin" });
    try {
      await Deno.writeFile(file, new Uint8Array(bytes));
      const out = await new Deno.Command("objdump", {
        args: ["-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel", "--insn-width=16", file],
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      const decoded = new Map<number, string>();
      for (const line of text.split("\n")) {
        const m = line.match(/^\s*([0-9a-f]+):\t[0-9a-f ]+\t(.*)$/);
        if (m) decoded.set(parseInt(m[1]!, 16), m[2]!);
      }
      const bad: string[] = [];
      for (let i = 0; i < cases.length; i++) {
        const end = i + 1 < cases.length ? starts[i + 1]! : bytes.length;
        const d = decoded.get(starts[i]!);
        let inner = 0;
        for (let o = starts[i]! + 1; o < end; o++) if (decoded.has(o)) inner++;
        if (d === undefined || inner > 0 || d.includes("(bad)")) {
          bad.push(`${cases[i]!.mnemonic} [${[...cases[i]!.bytes]}] -> ${d}`);
        }
      }
      assertEquals(bad, []);
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "generated cases of every class run on the host without faulting and end on a pad",
  ignore: !canRun,
  fn() {
    const oracle = NativeOracle.open();
    try {
      const g = new Generator(77, CLASS_NAMES, {
        gsBase: oracle.gsBaseWritable,
        base: oracle.base,
      });
      for (let k = 0; k < 12; k++) {
        const batch = g.batch(SLOT_COUNT);
        const after = oracle.run(batch);
        for (let i = 0; i < batch.length; i++) {
          const c = batch[i]!;
          const rip = Number(after[i]!.rip);
          const fall = Number(c.state.rip) + c.bytes.length;
          assertTrue(rip === fall || c.targets.includes(rip), `${c.mnemonic}: rip ${rip}`);
        }
      }
    } finally {
      oracle.close();
    }
  },
});

Deno.test({
  name: "the host gives identical results when the same generated batch runs twice",
  ignore: !canRun,
  fn() {
    const oracle = NativeOracle.open();
    try {
      const g = new Generator(555, CLASS_NAMES, {
        gsBase: oracle.gsBaseWritable,
        base: oracle.base,
      });
      for (let k = 0; k < 4; k++) {
        const batch = g.batch(SLOT_COUNT);
        const first = oracle.run(batch);
        const second = oracle.run(batch);
        for (let i = 0; i < batch.length; i++) {
          const diffs = compareStates(batch[i]!, first[i]!, { state: second[i]! }, { x87: true });
          assertEquals(diffs, [], batch[i]!.mnemonic);
        }
      }
    } finally {
      oracle.close();
    }
  },
});
