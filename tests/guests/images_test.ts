/**
 * The checked-in guest images are what their sources build to: each fixture in tests/guests and
 * the embedded default guest (guests/default.bin and the bytes in guests/default.ts) against a
 * fresh `nasm -f bin` build. Skipped with a note where nasm is not installed. The linker-built
 * fixtures (tests/guests/build_linked.sh) are rebuilt and compared where the host has nasm and
 * the ld and gcc that built them (tests/guests/toolchain.txt), skipped with a note otherwise.
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

/** The first line of `tool --version`, or null when the tool is not installed. */
function versionOf(tool: string): string | null {
  try {
    const r = new Deno.Command(tool, { args: ["--version"], stdout: "piped", stderr: "null" })
      .outputSync();
    return r.success ? new TextDecoder().decode(r.stdout).split("\n")[0]! : null;
  } catch {
    return null;
  }
}

const LINKED = [
  "ld_multiboot.elf",
  "ld_multiboot_default.elf",
  "ld_multiboot_bios.elf",
  "c_multiboot.elf",
];
const builtWith = Deno.readTextFileSync(`${ROOT}tests/guests/toolchain.txt`).trimEnd();
const hostToolchain = [versionOf("ld"), versionOf("gcc")];
const linkedSkip = !nasmOk
  ? "nasm is not installed"
  : hostToolchain.includes(null)
  ? "ld or gcc is not installed"
  : hostToolchain.join("\n") !== builtWith
  ? `they were built with ${builtWith.replace("\n", " and ")}, this host has ` +
    hostToolchain.join(" and ")
  : null;
if (linkedSkip) {
  console.warn(`note: linker-built fixture rebuild tests are skipped: ${linkedSkip}`);
}

Deno.test({
  name: `${LINKED.join(", ")} are a fresh build_linked.sh build`,
  ignore: linkedSkip !== null,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const r = await new Deno.Command("bash", {
        args: [`${ROOT}tests/guests/build_linked.sh`, dir],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertTrue(r.success, `build_linked.sh failed: ${new TextDecoder().decode(r.stderr)}`);
      for (const image of LINKED) {
        assertEquals(
          await Deno.readFile(`${dir}/${image}`),
          await Deno.readFile(`${ROOT}tests/guests/${image}`),
          image,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the linker-built fixtures have ld's headers-only first segment below .text", async () => {
  // What makes them worth having: the page that holds only the ELF and program headers.
  for (
    const [image, headers] of [
      ["ld_multiboot.elf", 0xff000],
      ["ld_multiboot_default.elf", 0x8048000],
      ["ld_multiboot_bios.elf", 0xe0000],
      ["c_multiboot.elf", 0xff000],
    ] as const
  ) {
    const bytes = await Deno.readFile(`${ROOT}tests/guests/${image}`);
    const dv = new DataView(bytes.buffer);
    const phoff = dv.getUint32(28, true);
    assertEquals(dv.getUint32(phoff, true), 1, `${image}: PT_LOAD first`);
    assertEquals(dv.getUint32(phoff + 4, true), 0, `${image}: from file offset 0`);
    assertEquals(dv.getUint32(phoff + 12, true), headers, `${image}: p_paddr`);
    assertTrue(dv.getUint32(phoff + 16, true) < 0x1000, `${image}: headers only`);
  }
});
