/**
 * The checked-in guest images are what their sources build to: each fixture in tests/guests and
 * the embedded default guest (guests/default.bin and the bytes in guests/default.ts) against a
 * fresh `nasm -f bin` build. Skipped with a note where nasm is not installed.
 */

import { DEFAULT_GUEST } from "../../guests/default.ts";
import { assertEquals, assertTrue } from "../_assert.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

function nasmAvailable(): boolean {
  try {
    return new Deno.Command("nasm", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

const nasmOk = nasmAvailable();
if (!nasmOk) {
  console.warn(
    "note: guest image rebuild tests are skipped: nasm is not installed (apt-get install nasm)",
  );
}

/** Assembles `src` (relative to the repository root) and returns the bytes. */
async function assemble(src: string): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/out.bin`;
    const srcPath = `${ROOT}${src}`;
    const include = srcPath.slice(0, srcPath.lastIndexOf("/") + 1);
    const r = await new Deno.Command("nasm", {
      args: ["-f", "bin", "-i", include, "-o", out, srcPath],
    }).output();
    assertTrue(r.success, `nasm failed on ${src}: ${new TextDecoder().decode(r.stderr)}`);
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const IMAGES: [source: string, image: string][] = [
  ["guests/default.asm", "guests/default.bin"],
  ["tests/guests/hello_flat.asm", "tests/guests/hello_flat.bin"],
  ["tests/guests/hello_multiboot.asm", "tests/guests/hello_multiboot.elf"],
  ["tests/guests/hello_aout.asm", "tests/guests/hello_aout.bin"],
  ["tests/guests/triple_fault.asm", "tests/guests/triple_fault.bin"],
];

for (const [source, image] of IMAGES) {
  Deno.test({
    name: `${image} is a fresh nasm build of ${source}`,
    ignore: !nasmOk,
    async fn() {
      assertEquals(await Deno.readFile(`${ROOT}${image}`), await assemble(source));
    },
  });
}

Deno.test({
  name: "guests/default.ts holds the bytes nasm builds from guests/default.asm",
  ignore: !nasmOk,
  async fn() {
    assertEquals(DEFAULT_GUEST, await assemble("guests/default.asm"));
  },
});

Deno.test("the default guest and the flat fixtures fit in a boot sector (QEMU reference)", async () => {
  for (const image of ["guests/default.bin", "tests/guests/hello_flat.bin"]) {
    const bytes = await Deno.readFile(`${ROOT}${image}`);
    assertTrue(bytes.length <= 510, `${image} is ${bytes.length} bytes`);
  }
  assertEquals(DEFAULT_GUEST, await Deno.readFile(`${ROOT}guests/default.bin`));
});

Deno.test("every case in expected.json names files that exist", async () => {
  const cases: { name: string; kernel: string; stdout: string; status: number }[] = JSON.parse(
    await Deno.readTextFile(`${ROOT}tests/guests/expected.json`),
  );
  assertTrue(cases.length >= 5);
  for (const c of cases) {
    await Deno.stat(`${ROOT}${c.kernel}`);
    assertTrue((await Deno.readTextFile(`${ROOT}${c.stdout}`)).length > 0, c.name);
    assertTrue(c.status === 0 || (c.status & 1) === 1, `${c.name}: status ${c.status}`);
  }
});
