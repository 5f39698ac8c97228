/**
 * A sandboxed plugin whose module throws while it loads: the user sees one clear message naming
 * the plugin, not Deno's uncaught-error report with its stack trace.
 */
import { assertIncludes, assertRejects, assertTrue } from "../_assert.ts";
import { loadSandboxedPlugin } from "../../plugins/sandbox.ts";
import { PluginError } from "../../core/errors.ts";
import { runCli } from "../_run.ts";

const FIXTURES = "tests/plugins/fixtures";

/** Deno's own report of an uncaught error, or any stack frame. */
function assertNoDenoReport(stderr: string): void {
  assertTrue(!/Uncaught/.test(stderr), `Deno's uncaught-error report reached stderr:\n${stderr}`);
  assertTrue(!/^\s+at /m.test(stderr), `a stack trace reached stderr:\n${stderr}`);
  assertTrue(!/^error:/m.test(stderr), `Deno's error report reached stderr:\n${stderr}`);
}

const CASES: [fixture: string, message: string][] = [
  ["throws_at_import.ts", "failed to load: boom"],
  ["rejects_at_import.ts", "failed to load: TypeError: settings.port is not a number"],
];

for (const [fixture, message] of CASES) {
  Deno.test(`--device with a plugin that fails as it loads (${fixture}) prints only our message`, async () => {
    const path = `./${FIXTURES}/${fixture}`;
    const r = await runCli(["--backend", "interp", "--device", path]);
    assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(r.stderr, `denovisor: Plugin "${path}" ${message}\n`);
    assertNoDenoReport(r.stderr);
    assertTrue(r.stdout === "", r.stdout);
  });

  Deno.test(`loading ${fixture} sandboxed rejects with a PluginError naming it`, async () => {
    await assertRejects(
      () => loadSandboxedPlugin(`${FIXTURES}/${fixture}`),
      PluginError,
      `Plugin "${FIXTURES}/${fixture}" ${message}`,
    );
  });
}

Deno.test("a plugin denied a permission as it loads is named, with no report from Deno", async () => {
  const path = `./${FIXTURES}/evil_top_level.ts`;
  const r = await runCli(["--backend", "interp", "--device", path]);
  assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
  assertIncludes(
    r.stderr,
    `Plugin "${path}" tried to read a file ("/etc/hostname") while loading and was denied`,
  );
  assertNoDenoReport(r.stderr);
});
