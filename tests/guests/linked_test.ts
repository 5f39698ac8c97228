/**
 * The linker-built Multiboot fixtures (build_linked.sh) through the CLI on every backend, for
 * what the QEMU recordings in expected.json cannot cover: a kernel linked into the BIOS area
 * over the VMM's ACPI tables (QEMU cannot run it at all: its SeaBIOS lives there) boots with
 * the tables moved out of its way, and a kernel linked past --mem is refused, naming the
 * segment and the --mem that fits it (QEMU runs into nothing there and hangs).
 */

import { assertEquals, assertIncludes } from "../_assert.ts";
import { BACKENDS, runCli } from "../_run.ts";

for (const backend of BACKENDS) {
  const b = ["--backend", backend];

  Deno.test(`[${backend}] a kernel ld put over the ACPI tables boots and still finds an RSDP`, async () => {
    // Its headers page lands on the RSDP at 0xE0000; .text at 0xE1000 is reserved memory too.
    const r = await runCli([...b, "--kernel", "tests/guests/ld_multiboot_bios.elf"]);
    assertEquals(
      r.stdout,
      [
        "hello from an ld-linked Multiboot kernel",
        "magic: 0x2badb002",
        "mem_lower: 639 KiB",
        "mem_upper: ~127 MiB",
        'arguments: ""',
        "page below .text at 0x000e0000: ELF header",
        "its mmap entry: type 2",
        ".text's mmap entry: type 2",
        ".data: loaded",
        ".bss: zeroed",
        "ACPI RSDP in the BIOS area: found",
        "done",
        "",
      ].join("\n"),
      `stderr:\n${r.stderr}`,
    );
    assertEquals(r.status, 33, `stderr:\n${r.stderr}`);
  });

  Deno.test(`[${backend}] a kernel ld linked past --mem is refused with the --mem it needs`, async () => {
    const r = await runCli([
      ...b,
      "--kernel",
      "tests/guests/ld_multiboot_default.elf",
      "--mem",
      "128M",
    ]);
    assertEquals(r.status, 1);
    assertEquals(r.stdout, "");
    assertIncludes(r.stderr, "tests/guests/ld_multiboot_default.elf");
    assertIncludes(r.stderr, "segment 0 at [0x8048000, 0x80480d4) is outside guest RAM");
    assertIncludes(r.stderr, "at least --mem 129M");
  });
}
