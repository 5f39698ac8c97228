import { crc32, crc64 } from "../../../core/boot/_xz_check.ts";
import { isXz, XzDataError, xzDecompress } from "../../../core/boot/xz.ts";
import { assertEquals, assertThrows, assertTrue } from "../../_assert.ts";

let xzTool = false;
try {
  xzTool = (await new Deno.Command("xz", { args: ["--version"], stdout: "null" }).output()).success;
} catch {
  xzTool = false;
}
if (!xzTool) console.warn("xz_test: the xz command is not installed; skipping round-trip tests");

/** Compresses `data` with the xz command-line tool and the given options. */
async function xzCli(data: Uint8Array, args: string[]): Promise<Uint8Array> {
  const child = new Deno.Command("xz", {
    args: ["-c", ...args],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  const done = child.output();
  await w.write(data);
  await w.close();
  const out = await done;
  assertTrue(out.success, `xz ${args.join(" ")} failed`);
  return out.stdout;
}

/** Deterministic test data: text-like runs (compressible) mixed with pseudo-random bytes. */
function sampleData(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  const words = new TextEncoder().encode("the quick brown fox jumps over the lazy dog 0123456789 ");
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size;) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const run = (x & 63) + 1;
    if (x & 0x100) {
      for (let k = 0; k < run && i < size; k++) out[i++] = words[(x + k) % words.length]!;
    } else {
      for (let k = 0; k < run && i < size; k++) out[i++] = (x >>> (k & 15)) & 0xff;
    }
  }
  return out;
}

/** x86-like code: E8/E9 rel32 branches among other bytes, to exercise the BCJ filter. */
function codeLikeData(size: number): Uint8Array {
  const out = sampleData(size, 99);
  for (let i = 0; i + 5 < size; i += 7 + (i % 11)) {
    out[i] = i % 3 === 0 ? 0xe9 : 0xe8;
    const rel = ((i * 2654435761) % 65536) - 32768;
    new DataView(out.buffer).setInt32(i + 1, rel, true);
  }
  return out;
}

const SIZES = [0, 1, 100, 4096, 70_000, 300_000];

for (const check of ["none", "crc32", "crc64", "sha256"]) {
  Deno.test({
    name: `xzDecompress restores files xz made with --check=${check} at several sizes`,
    ignore: !xzTool,
    fn: async () => {
      for (const size of SIZES) {
        const data = sampleData(size, size + 1);
        const packed = await xzCli(data, [`--check=${check}`]);
        assertTrue(isXz(packed));
        assertEquals(xzDecompress(packed), data, `size ${size}, check ${check}`);
      }
    },
  });
}

Deno.test({
  name: "xzDecompress undoes the x86 BCJ and delta filters",
  ignore: !xzTool,
  fn: async () => {
    const code = codeLikeData(200_000);
    assertEquals(xzDecompress(await xzCli(code, ["--x86", "--lzma2"])), code);
    assertEquals(xzDecompress(await xzCli(code, ["--x86=start=4096", "--lzma2"])), code);
    const samples = sampleData(50_000, 7);
    assertEquals(xzDecompress(await xzCli(samples, ["--delta=dist=4", "--lzma2"])), samples);
  },
});

Deno.test({
  name: "xzDecompress handles incompressible data, several blocks and concatenated streams",
  ignore: !xzTool,
  fn: async () => {
    const noise = new Uint8Array(65536 * 3);
    for (let i = 0; i < noise.length; i += 65536) {
      crypto.getRandomValues(noise.subarray(i, i + 65536));
    }
    assertEquals(xzDecompress(await xzCli(noise, [])), noise, "stored (uncompressed) chunks");
    const big = sampleData(600_000, 3);
    const blocks = await xzCli(big, ["--block-size=100000"]);
    assertEquals(xzDecompress(blocks), big, "six blocks");
    const a = sampleData(1000, 1), b = sampleData(2000, 2);
    const joined = new Uint8Array([
      ...await xzCli(a, []),
      0,
      0,
      0,
      0, // stream padding
      ...await xzCli(b, ["--check=crc64"]),
    ]);
    assertEquals(xzDecompress(joined), new Uint8Array([...a, ...b]));
    assertEquals(xzDecompress(blocks, { sizeHint: 10 }), big, "a too-small hint grows");
  },
});

Deno.test({
  name: "xzDecompress reports corrupt, truncated and non-xz data as XzDataError",
  ignore: !xzTool,
  fn: async () => {
    const data = sampleData(50_000, 5);
    const packed = await xzCli(data, ["--check=crc32"]);
    assertThrows(() => xzDecompress(packed.subarray(0, packed.length - 20)), XzDataError);
    assertThrows(() => xzDecompress(new Uint8Array(64)), XzDataError, "magic");
    // Flip a bit in the compressed data: the decoder or the CRC32 must notice.
    for (const at of [40, 500, packed.length - 40]) {
      const bad = packed.slice();
      bad[at]! ^= 0x10;
      assertThrows(() => xzDecompress(bad), XzDataError);
    }
  },
});

Deno.test('crc32 and crc64 give the standard check values for "123456789"', () => {
  const digits = new TextEncoder().encode("123456789");
  assertEquals(crc32(digits), 0xcbf43926);
  assertEquals(crc64(digits), [0xdf1939fa, 0x995dc9bb]); // CRC-64/XZ: 0x995DC9BBDF1939FA
});
