/**
 * Hardening, items 6-7: bad input is refused by name, quickly, with advice that is true: a
 * bzImage cut short, an ELF that cannot be entered under --format auto, an initrd too large
 * (checked by size before it is read), --mem sizes as users type them and sizes the host cannot
 * back, a serial file that cannot be written, flags that do not apply and repeated flags.
 */
import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../_assert.ts";
import { type CliRun, runCli } from "../_run.ts";
import { buildElf } from "../core/boot/_images.ts";
import { hostMemoryBytes, parseSize } from "../../core/size.ts";
import { ImageError, UsageError } from "../../core/errors.ts";
import { resolveFormat } from "../../core/boot/load.ts";
import { tempImage } from "./_guests.ts";

function assertRefused(r: CliRun, status: number, message: string): void {
  assertTrue(r.status === status, `status ${r.status} (want ${status}), stderr:\n${r.stderr}`);
  assertIncludes(r.stderr, message);
  assertTrue(!/internal error|Uncaught|^\s+at /m.test(r.stderr), r.stderr);
}

/** The start of an EFI-stub bzImage: "MZ", a PE header at 0x40, the boot flag, "HdrS". */
function bzImageStart(): Uint8Array {
  const b = new Uint8Array(0x268);
  b.set([0x4d, 0x5a]);
  new DataView(b.buffer).setUint32(0x3c, 0x40, true);
  b.set([0x50, 0x45, 0, 0], 0x40);
  b.set([0x55, 0xaa], 0x1fe);
  b.set([0xeb, 0x6a, 0x48, 0x64, 0x72, 0x53], 0x200);
  return b;
}

for (const cut of [0x64, 0x1f1, 0x200, 0x202]) {
  Deno.test(`a bzImage cut at ${cut.toString(16)} bytes is refused as a truncated Linux kernel`, async () => {
    const kernel = await tempImage(bzImageStart().subarray(0, cut));
    try {
      const r = await runCli(["--backend", "interp", "--kernel", kernel], { timeoutMs: 20_000 });
      assertRefused(
        r,
        1,
        `denovisor: Kernel image "${kernel}" is a truncated Linux kernel (${cut} bytes): it ` +
          `starts like an EFI-stub bzImage`,
      );
    } finally {
      await Deno.remove(kernel);
    }
  });
}

Deno.test("an ELF without a PVH note or Multiboot header is refused under --format auto", async () => {
  const elf = buildElf({
    bits: 64,
    entry: 0x100000,
    segments: [{ paddr: 0x100000, data: new Uint8Array([0xf4]) }],
  });
  const kernel = await tempImage(elf, ".elf");
  try {
    const r = await runCli(["--backend", "interp", "--kernel", kernel], { timeoutMs: 20_000 });
    assertRefused(
      r,
      1,
      `Kernel image "${kernel}" is an ELF file with neither a Multiboot header nor a Xen PVH note`,
    );
  } finally {
    await Deno.remove(kernel);
  }
});

Deno.test("an initrd too large is refused by its size, before it is read, with true advice", async () => {
  const initrd = await Deno.makeTempFile({ prefix: "denovisor-hardening-", suffix: ".img" });
  try {
    const kernel = "tests/guests/c_multiboot.elf";
    await Deno.truncate(initrd, 200 << 20); // sparse: nothing to read if we did not stat first
    let r = await runCli([
      "--backend",
      "interp",
      "--kernel",
      kernel,
      "--initrd",
      initrd,
      "--mem",
      "128M",
    ]);
    assertRefused(
      r,
      1,
      `Initrd "${initrd}" (200 MiB) is larger than the VM's RAM (128 MiB below 3 GiB): give --mem ` +
        "more than 200 MiB",
    );
    await Deno.truncate(initrd, 3 * 2 ** 30);
    const t0 = performance.now();
    r = await runCli([
      "--backend",
      "interp",
      "--kernel",
      kernel,
      "--initrd",
      initrd,
      "--mem",
      "4G",
    ]);
    assertRefused(r, 1, `Initrd "${initrd}" (3072 MiB) cannot be loaded at any --mem`);
    assertTrue(performance.now() - t0 < 10_000, "a 3 GiB initrd was read before it was refused");
  } finally {
    await Deno.remove(initrd);
  }
});

Deno.test("--mem takes 0x10000000, 1.5G and 2GiB, and refuses -5M and fractions of a byte", async () => {
  assertEquals(parseSize("0x10000000"), 256 << 20);
  assertEquals(parseSize("1.5G"), 1536 << 20);
  assertEquals(parseSize("2GiB"), 2 ** 31);
  assertThrows(() => parseSize("-5M"), UsageError, '--mem "-5M" is negative');
  assertThrows(() => parseSize("1.3K"), UsageError, "is not a whole number of bytes");
  for (const mem of ["0x10000000", "1.5G"]) {
    const r = await runCli(["--backend", "interp", "--mem", mem]);
    assertTrue(r.status === 0, `--mem ${mem}: status ${r.status}, stderr:\n${r.stderr}`);
  }
  assertRefused(await runCli(["--mem", "-5M"]), 2, 'denovisor: --mem "-5M" is negative');
  assertRefused(await runCli(["--mem=-5M"]), 2, 'denovisor: --mem "-5M" is negative');
});

Deno.test("--mem larger than the host's RAM and swap is refused", async () => {
  assertEquals(hostMemoryBytes("MemTotal:  1024 kB\nSwapTotal:  1024 kB\n"), 2 << 20);
  const r = await runCli(["--mem", "64T"]);
  assertRefused(
    r,
    1,
    "denovisor: --mem 64T (65536.0 GiB) is more than this host can back: it has ",
  );
});

Deno.test("--serial file:/dev/full says the serial file cannot be written, status 1", async () => {
  const r = await runCli(["--backend", "interp", "--serial", "file:/dev/full"]);
  assertRefused(
    r,
    1,
    `denovisor: Cannot write the guest's serial output to --serial file "/dev/full": No space ` +
      "left on device",
  );
});

Deno.test("--initrd and --cmdline with a flat image are warned about", async () => {
  const r = await runCli([
    "--backend",
    "interp",
    "--kernel",
    "tests/guests/hello_flat.bin",
    "--initrd",
    "tests/guests/hello_flat.bin",
    "--cmdline",
    "quiet",
  ]);
  assertIncludes(
    r.stderr,
    'denovisor: warning: --initrd and --cmdline ignored: "tests/guests/hello_flat.bin" is a flat image',
  );
  assertIncludes(r.stdout, "hello from a flat real-mode guest");
});

Deno.test("a flag given twice is refused", async () => {
  assertRefused(
    await runCli(["--mem", "64M", "--mem", "128M"]),
    2,
    "denovisor: --mem is given more than once: give it once",
  );
  assertRefused(
    await runCli(["--trace", "--trace"]),
    2,
    "denovisor: --trace is given more than once",
  );
  assertRefused(
    await runCli(["--linux", "--kernel", "x.bin"]),
    2,
    "--linux and --kernel cannot be combined",
  );
});

Deno.test("Debian's bzImage cut at 0x64, 0x1F1, 0x200, 0x202 bytes is a truncated Linux kernel", async (t) => {
  let image: Uint8Array;
  try {
    image = await Deno.readFile(new URL("../../.cache/guests/bzImage", import.meta.url));
  } catch {
    console.warn("bad_input_test: no .cache/guests/bzImage (deno task guests); skipping");
    return;
  }
  for (const cut of [0x64, 0x1f1, 0x200, 0x202, 0x220]) {
    await t.step(`${cut} bytes`, () => {
      assertThrows(
        () => resolveFormat("auto", image.subarray(0, cut), "bzImage"),
        ImageError,
        `Kernel image "bzImage" is a truncated Linux kernel (${cut} bytes)`,
      );
    });
  }
  assertEquals(resolveFormat("auto", image, "bzImage"), "linux");
});
