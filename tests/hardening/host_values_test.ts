/**
 * Hardening, item 5: values a plugin hands its host are checked at the API boundary, sandboxed
 * or trusted: power.exit(1e10), exit(-5), exit(1.5), irq(999), timeout_ms=-1 (see
 * plugin_memory_test.ts), and a device name that is already taken (a built-in's or another's).
 */
import { assertIncludes, assertTrue } from "../_assert.ts";
import { runCli } from "../_run.ts";

const DEVICE = "./tests/hardening/fixtures/bad_values.ts";
const GUEST = "tests/plugins/fixtures/evil_guest.bin"; // writes port 0x5e0 once, then exits 3

const CASES: [call: string, message: string][] = [
  ["exit_big", "power.exit(10000000000): an exit status is a whole number from 0 to 255"],
  ["exit_neg", "power.exit(-5): an exit status is a whole number from 0 to 255"],
  ["exit_frac", "power.exit(1.5): an exit status is a whole number from 0 to 255"],
  ["irq", "irq(999) is not an interrupt line: give 0-15 (ISA) or 16-23 (IOAPIC)"],
];

for (const trust of ["", ",trusted"]) {
  for (const [call, message] of CASES) {
    Deno.test(`${call} is refused with a clear error${trust ? " (trusted)" : ""}`, async () => {
      const r = await runCli([
        "--backend",
        "interp",
        "--kernel",
        GUEST,
        "--device",
        `${DEVICE},call=${call}${trust}`,
      ]);
      assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
      assertIncludes(
        r.stderr,
        `denovisor: Device "bad-values" failed in its port write handler: ${message}\n`,
      );
    });
  }
}

Deno.test("a plugin may not take a built-in device's name, nor another plugin's", async () => {
  for (const trust of ["", ",trusted"]) {
    const r = await runCli(["--backend", "interp", "--device", `${DEVICE},name=uart16550${trust}`]);
    assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(
      r.stderr,
      'denovisor: Device name "uart16550" is already taken by a built-in device: give this one ' +
        "another with --device PATH,name=NEW_NAME\n",
    );
  }
  const r = await runCli(["--backend", "interp", "--device", DEVICE, "--device", DEVICE]);
  assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
  assertIncludes(r.stderr, 'Device name "bad-values" is already taken by another --device');
});
