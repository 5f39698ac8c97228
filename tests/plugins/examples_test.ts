import { assertEquals, assertTrue } from "../_assert.ts";
import { testDevice } from "../../plugins/testing.ts";
import rng from "../../plugins/examples/hw_rng.ts";
import crcDma, { crc32 } from "../../plugins/examples/crc32_dma.ts";

function xorshift(seed: number, n: number): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out.push(s >>> 0);
  }
  return out;
}

Deno.test("hw-rng with a seed gives the xorshift32 stream, status reads ready", () => {
  const t = testDevice(rng, { options: { seed: "42" } });
  const got = [0, 1, 2].map(() => t.in(0x5a0, 4));
  assertEquals(got, xorshift(42, 3));
  assertEquals(t.in(0x5a1), 1);
});

Deno.test("hw-rng without a seed does not repeat itself", () => {
  const t = testDevice(rng);
  const values = new Set(Array.from({ length: 32 }, () => t.in(0x5a0, 4)));
  assertTrue(values.size > 30);
});

Deno.test("crc32-dma checksums guest memory by DMA and pulses its interrupt", () => {
  const t = testDevice(crcDma);
  const data = new TextEncoder().encode("123456789");
  t.memory.write(0x4000, data);
  t.out(0x5b0, 0x4000, 4);
  t.out(0x5b4, data.length, 4);
  t.out(0x5b8, 1, 4);
  assertEquals(t.in(0x5c0, 4), 1);
  assertEquals(t.in(0x5bc, 4), 0xcbf43926); // the CRC-32 check value of "123456789"
  assertEquals(t.irqs.map((e) => e.level), [true, false]);
  assertEquals(t.irqs[0]!.line, 5);
});

Deno.test("crc32-dma refuses a range outside guest RAM without touching host memory", () => {
  const t = testDevice(crcDma, { memSize: 1 << 16 });
  t.out(0x5b0, 0xfff0, 4);
  t.out(0x5b4, 0x20, 4);
  t.out(0x5b8, 1, 4);
  assertEquals(t.in(0x5c0, 4), 2);
  assertTrue(t.logs.some((l) => l.includes("outside guest RAM")));
  assertEquals(crc32(new Uint8Array()), 0);
});
