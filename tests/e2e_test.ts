/**
 * End-to-end guest runs through the CLI on every backend available here. Expected serial output
 * and exit status of the fixture guests were recorded from QEMU TCG (tests/guests/
 * record_expected.sh), so these compare denovisor against an independent machine.
 */

import { assertEquals, assertIncludes, assertTrue } from "./_assert.ts";
import { BACKENDS, ROOT, runCli } from "./_run.ts";
import { crc32 } from "../plugins/examples/crc32_dma.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";

interface ExpectedCase {
  name: string;
  kernel: string;
  args: string[];
  status: number;
  stdout: string;
}

const cases: ExpectedCase[] = JSON.parse(
  await Deno.readTextFile(`${ROOT}tests/guests/expected.json`),
);

for (const backend of BACKENDS) {
  const b = ["--backend", backend];

  Deno.test(`[${backend}] the default guest boots with no arguments and ends by itself`, async () => {
    const r = await runCli(b);
    assertEquals(r.status, 0);
    assertIncludes(r.stdout, "denovisor: hello from the default guest");
    assertIncludes(r.stdout, `backend: ${backend}`);
  });

  for (const c of cases) {
    Deno.test(`[${backend}] ${c.name} gives QEMU's serial output and exit status`, async () => {
      let expected = await Deno.readTextFile(`${ROOT}${c.stdout}`);
      // QEMU has no info port; the default guest names the backend it runs on.
      expected = expected.replace("backend: unknown", `backend: ${backend}`);
      const r = await runCli([...b, "--kernel", c.kernel, ...c.args]);
      assertEquals(r.stdout, expected, `stderr:\n${r.stderr}`);
      assertEquals(r.status, c.status, `stderr:\n${r.stderr}`);
    });
  }

  Deno.test(`[${backend}] a triple-faulting guest stops with status 1 and a register dump`, async () => {
    const r = await runCli([...b, "--kernel", "tests/guests/triple_fault.bin", "--format", "flat"]);
    assertEquals(r.status, 1);
    if (backend === "kvm" && hostKvmFlavor() === "kvm_pvm") {
      // The nested host cannot deliver the first exception at all, and says so.
      assertIncludes(r.stderr, "kvm_pvm");
      assertIncludes(r.stderr, "--backend interp");
    } else {
      assertIncludes(r.stderr.toLowerCase(), "triple fault");
    }
    assertIncludes(r.stderr, "rip=");
    assertIncludes(r.stderr, "cr0=");
  });

  Deno.test(`[${backend}] --format multiboot on a flat image is refused with the fix`, async () => {
    const r = await runCli([
      ...b,
      "--kernel",
      "tests/guests/hello_flat.bin",
      "--format",
      "multiboot",
    ]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, "tests/guests/hello_flat.bin");
    assertIncludes(r.stderr, "--format auto");
  });

  Deno.test(`[${backend}] a truncated Multiboot ELF is refused, naming the file`, async () => {
    const full = await Deno.readFile(`${ROOT}tests/guests/hello_multiboot.elf`);
    const path = await Deno.makeTempFile({ suffix: ".elf" });
    try {
      await Deno.writeFile(path, full.subarray(0, Math.floor(full.length * 0.6)));
      const r = await runCli([...b, "--kernel", path]);
      assertEquals(r.status, 1);
      assertIncludes(r.stderr, path);
      assertIncludes(r.stderr, "truncated");
    } finally {
      await Deno.remove(path);
    }
  });

  Deno.test(`[${backend}] the hw-rng example plugin feeds its guest the seeded stream`, async () => {
    const r = await runCli([
      ...b,
      "--kernel",
      "plugins/examples/guests/rng_guest.bin",
      "--device",
      "plugins/examples/hw_rng.ts,seed=7",
    ]);
    assertEquals(r.status, 0, r.stderr);
    let s = 7;
    const want: string[] = [];
    for (let i = 0; i < 4; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      want.push((s >>> 0).toString(16).padStart(8, "0"));
    }
    assertEquals(r.stdout, `rng: ${want.join(" ")} \n`);
  });

  Deno.test(`[${backend}] the crc32-dma example plugin checksums guest memory by DMA`, async () => {
    const r = await runCli([
      ...b,
      "--kernel",
      "plugins/examples/guests/crc_guest.bin",
      "--device",
      "plugins/examples/crc32_dma.ts",
    ]);
    assertEquals(r.status, 0, r.stderr);
    const data = /^data: (.*)$/m.exec(r.stdout)?.[1];
    const crc = /^crc32: ([0-9a-f]{8})$/m.exec(r.stdout)?.[1];
    assertTrue(data && crc, r.stdout);
    assertEquals(parseInt(crc, 16), crc32(new TextEncoder().encode(data)));
    assertIncludes(r.stdout, "dma outside RAM refused");
    assertIncludes(r.stderr, "crc32-dma: warning: DMA refused");
  });
}
