/** The state file's JSON codec and checksum. */

import { assertEquals } from "../../_assert.ts";
import { decodeJson, encodeJson } from "../../../core/snapshot/codec.ts";
import { crc32, crc32Table } from "../../../core/snapshot/crc32.ts";
import { resetCpuState } from "../../../core/cpu_state.ts";

Deno.test("bigints, Maps and Uint8Arrays survive the codec; plain objects stay plain", () => {
  const value = {
    big: 0xffff_ffff_ffff_ffffn,
    neg: -5n,
    map: new Map<number, bigint>([[0x10, 7n], [0xc000_0080, 0x500n]]),
    bytes: new Uint8Array([0, 1, 254, 255]),
    empty: new Uint8Array(0),
    nested: [{ a: 1, b: "x", c: null, d: true }],
    // An object that merely has one of the tag names among other keys is not decoded as a tag.
    lookalike: { $bigint: "0x1", other: 2 },
  };
  assertEquals(decodeJson(encodeJson(value)), value);
  const cpu = resetCpuState();
  cpu.gpr[0] = 0x8000_0000_0000_0000n;
  cpu.fpu.xmm[3] = 0xaa;
  assertEquals(decodeJson(encodeJson(cpu)), cpu);
});

Deno.test("CRC-32 is the IEEE/zlib one, native and table-driven alike, continued or whole", () => {
  for (const f of [crc32, crc32Table]) {
    assertEquals(f(new TextEncoder().encode("123456789")), 0xcbf4_3926);
    assertEquals(f(new Uint8Array(0)), 0);
  }
  const data = new Uint8Array(10000).map((_, i) => (i * 131) ^ (i >> 3));
  const whole = crc32Table(data);
  assertEquals(crc32(data), whole);
  assertEquals(crc32(data.subarray(3000), crc32(data.subarray(0, 3000))), whole);
  assertEquals(crc32Table(data.subarray(3000), crc32Table(data.subarray(0, 3000))), whole);
});
