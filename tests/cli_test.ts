import { assertEquals, assertIncludes, assertThrows, assertTrue } from "./_assert.ts";
import { BACKENDS, runCli } from "./_run.ts";
import { HELP, parseCli } from "../core/cli.ts";
import { UsageError } from "../core/errors.ts";

const NO_TRACE = (s: string) => !s.includes("    at ");

Deno.test("parseCli fills in the documented defaults", () => {
  const c = parseCli([]);
  assertTrue(typeof c === "object");
  assertEquals(c.memSize, 128 << 20);
  assertEquals(c.backend, "auto");
  assertEquals(c.format, "auto");
  assertEquals(c.kernel, null);
  assertEquals(c.serial, { kind: "stdio" });
  const d = parseCli([
    "--kernel",
    "k",
    "--device",
    "a.ts,x=1",
    "--device",
    "b.ts",
    "--serial",
    "file:/tmp/o",
  ]);
  assertTrue(typeof d === "object");
  assertEquals(d.devices.map((x) => x.specifier), ["a.ts", "b.ts"]);
  assertEquals(d.serial, { kind: "file", path: "/tmp/o" });
});

Deno.test("parseCli rejects bad usage with messages that name the fix", () => {
  assertThrows(() => parseCli(["--mem", "lots"]), UsageError, "expected a size such as 256M");
  assertThrows(() => parseCli(["--backend", "qemu"]), UsageError, "use auto, kvm or interp");
  assertThrows(() => parseCli(["--format", "pe"]), UsageError, "Unknown --format");
  assertThrows(() => parseCli(["--serial", "tcp:1"]), UsageError, "stdio, none or file:PATH");
  assertThrows(() => parseCli(["--frobnicate"]), UsageError, "--help");
  assertThrows(() => parseCli(["--mem", "4K"]), UsageError, "too small");
});

Deno.test("--help prints the usage and exits 0", async () => {
  const r = await runCli(["--help"]);
  assertEquals(r.status, 0);
  assertEquals(r.stdout.trim(), HELP);
});

Deno.test("--version prints the version from deno.json", async () => {
  const r = await runCli(["--version"]);
  const { version } = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assertEquals(r.stdout.trim(), `denovisor ${version}`);
});

Deno.test("bad usage exits 2 with a one-line message and no stack trace", async () => {
  const r = await runCli(["--mem", "lots"]);
  assertEquals(r.status, 2);
  assertEquals(
    r.stderr.trim(),
    'denovisor: Cannot parse --mem "lots": expected a size such as 256M or 1G',
  );
});

for (const backend of BACKENDS) {
  const b = ["--backend", backend];

  Deno.test(`[${backend}] a missing kernel file is named in the error`, async () => {
    const r = await runCli([...b, "--kernel", "/nonexistent/bzImage"]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, 'Cannot read kernel "/nonexistent/bzImage": no such file');
    assertTrue(NO_TRACE(r.stderr));
  });

  Deno.test(`[${backend}] a directory given as kernel is refused`, async () => {
    const r = await runCli([...b, "--kernel", "tests"]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, 'Cannot read kernel "tests"');
  });

  Deno.test(`[${backend}] a memory size the host cannot give is a clear error`, async () => {
    const r = await runCli([...b, "--mem", "64T"]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, "--mem");
    assertTrue(NO_TRACE(r.stderr));
  });

  Deno.test(`[${backend}] a plugin path that does not exist is named`, async () => {
    const r = await runCli([...b, "--device", "nowhere/dev.ts"]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, 'Plugin "nowhere/dev.ts" cannot be read');
  });

  Deno.test(`[${backend}] a module that exports no device is refused`, async () => {
    const r = await runCli([...b, "--device", "tests/plugins/fixtures/not_a_device.ts"]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, "does not export a device");
  });

  Deno.test(`[${backend}] two devices on one port are refused, naming both`, async () => {
    const r = await runCli([
      ...b,
      "--device",
      "plugins/examples/hw_rng.ts,port=0x3f8",
    ]);
    assertEquals(r.status, 1);
    assertIncludes(
      r.stderr,
      'Device "hw-rng" claims port 0x3f8, which device "uart16550" already uses',
    );
  });

  Deno.test(`[${backend}] a plugin whose handler throws stops the VM and is named`, async () => {
    const r = await runCli([
      ...b,
      "--kernel",
      "plugins/examples/guests/rng_guest.bin",
      "--device",
      "tests/plugins/fixtures/throwing_device.ts,port=0x5a0",
    ]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, 'Device "throwing-device" failed in its port read handler');
    assertIncludes(r.stderr, "rip=");
    assertTrue(NO_TRACE(r.stderr));
  });

  Deno.test(`[${backend}] --serial none drops guest output, file:PATH keeps it`, async () => {
    const none = await runCli([...b, "--serial", "none"]);
    assertEquals(none.status, 0);
    assertEquals(none.stdout, "");
    const path = await Deno.makeTempFile();
    try {
      const file = await runCli([...b, "--serial", `file:${path}`]);
      assertEquals(file.status, 0);
      assertEquals(file.stdout, "");
      assertIncludes(await Deno.readTextFile(path), "hello from the default guest");
    } finally {
      await Deno.remove(path);
    }
  });
}
