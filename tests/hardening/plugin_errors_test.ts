/**
 * Hardening, item 3: a denied call a plugin never awaits stops the VM like any other denial,
 * and every load-time error (a throw, a wrong apiVersion, a missing name, a rejection left
 * unhandled) ends with our message only: no Deno "Uncaught" report, no stack trace.
 */
import { assertIncludes, assertTrue } from "../_assert.ts";
import { type CliRun, runCli } from "../_run.ts";
import { PORT_LOOP, SPIN, tempImage } from "./_guests.ts";

const F = "./tests/hardening/fixtures";
const DENIED = 'tried to open a network connection ("127.0.0.1:9")';

function assertOnlyOurs(r: CliRun, status: number, message: string): void {
  assertTrue(r.status === status, `status ${r.status}, stderr:\n${r.stderr}`);
  assertIncludes(r.stderr, message);
  assertTrue(!/Uncaught|^error:|^\s+at /m.test(r.stderr), `Deno's report on stderr:\n${r.stderr}`);
  const first = r.stderr.split("\n").find((l) => !l.startsWith("denovisor: backend"));
  assertTrue(first?.startsWith("denovisor: "), `our message is not first:\n${r.stderr}`);
}

async function withKernel(bytes: Uint8Array, run: (kernel: string) => Promise<void>) {
  const kernel = await tempImage(bytes);
  try {
    await run(kernel);
  } finally {
    await Deno.remove(kernel);
  }
}

Deno.test("an unawaited denied call in a handler stops the VM with our message", async () => {
  await withKernel(PORT_LOOP, async (kernel) => {
    const r = await runCli([
      "--backend",
      "interp",
      "--kernel",
      kernel,
      "--device",
      `${F}/unawaited_denial.ts`,
    ]);
    assertOnlyOurs(
      r,
      1,
      `denovisor: Device "unawaited" ${DENIED} in a call it did not await and was denied`,
    );
  });
});

Deno.test("an unawaited denied call in create stops a VM that never calls the device", async () => {
  await withKernel(SPIN, async (kernel) => {
    const r = await runCli([
      "--backend",
      "interp",
      "--kernel",
      kernel,
      "--device",
      `${F}/unawaited_denial.ts,when=create`,
    ], { timeoutMs: 30_000 });
    assertOnlyOurs(
      r,
      1,
      `denovisor: Device "unawaited" ${DENIED} in a call it did not await and was denied`,
    );
  });
});

const LOAD_CASES: [spec: string, message: string][] = [
  [`${F}/unawaited_at_load.ts`, `${DENIED} while loading and was denied`],
  [`${F}/no_name.ts`, "failed to load: TypeError: Plugin name undefined is not valid"],
  ["./tests/plugins/fixtures/future_api.ts", "was written for API version 99, but this denovisor"],
  ["./tests/plugins/fixtures/throws_at_import.ts", "failed to load: boom"],
  [`${F}/no_name.ts,trusted`, "failed to load: Plugin name undefined is not valid"],
  ["./tests/plugins/fixtures/future_api.ts,trusted", "was written for API version 99"],
  ["./tests/plugins/fixtures/throws_at_import.ts,trusted", "failed to load: boom"],
];

for (const [spec, message] of LOAD_CASES) {
  Deno.test(`a load-time error prints our message only: ${spec}`, async () => {
    const r = await runCli(["--backend", "interp", "--device", spec]);
    const path = spec.split(",")[0];
    assertOnlyOurs(r, 1, `denovisor: Plugin "${path}" `);
    assertIncludes(r.stderr, message);
  });
}
