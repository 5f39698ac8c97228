/**
 * Hardening, item 4: a plugin's log, console and error text reach the terminal with control
 * characters escaped and every line marked as the device's, so it cannot clear the screen, set
 * the window title or forge a `denovisor:` line; the built-in UART's guest output stays raw.
 */
import { assertEquals, assertIncludes, assertTrue } from "../_assert.ts";
import { type CliRun, runCli } from "../_run.ts";
import { escapeConsoleBytes, escapeControl, prefixLines } from "../../core/term_text.ts";

const DEVICE = "./tests/hardening/fixtures/term_inject.ts";
const GUEST = "tests/plugins/fixtures/evil_guest.bin"; // writes port 0x5e0 once, then exits 3

/** No raw controls on stderr, nor on stdout unless the device is trusted (it runs in-process). */
function assertNoRawControls(r: CliRun, trusted = false): void {
  const streams = trusted ? [["stderr", r.stderr]] : [["stderr", r.stderr], ["stdout", r.stdout]];
  for (const [name, text] of streams) {
    // deno-lint-ignore no-control-regex
    assertTrue(!/[\x1b\x07\u202e]/.test(text!), `raw control characters on ${name}:\n${text}`);
  }
  const forged = r.stderr.split("\n").filter((l) => l.startsWith("denovisor: guest exited"));
  assertEquals(forged, [], `a forged line:\n${r.stderr}`);
}

for (const trust of ["", ",trusted"]) {
  Deno.test(`a plugin's log and console text is escaped${trust ? " (trusted)" : ""}`, async () => {
    const r = await runCli(["--backend", "interp", "--kernel", GUEST, "--device", DEVICE + trust]);
    assertTrue(r.status === 3, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(r.stderr, "inject: \\x1b[2J\\x1b]0;pwned\\x07\\u202eevil\n");
    assertIncludes(r.stderr, "\ninject: denovisor: guest exited with status 0\n");
    assertIncludes(r.stderr, "\ninject: warning: denovisor: guest exited");
    assertNoRawControls(r, trust !== "");
    if (!trust) assertIncludes(r.stdout, "[\\x1b[2J\\x1b]0;pwned\\x07\\u202eevil\ndenovisor: ");
  });

  Deno.test(`a plugin's error message is one escaped line${trust ? " (trusted)" : ""}`, async () => {
    const r = await runCli([
      "--backend",
      "interp",
      "--kernel",
      GUEST,
      "--device",
      `${DEVICE},throw=true${trust}`,
    ]);
    assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(
      r.stderr,
      'denovisor: Device "inject" failed in its port write handler: \\x1b[2J\\x1b]0;pwned\\x07' +
        "\\u202eevil\\x0adenovisor: guest exited with status 0\n",
    );
    assertNoRawControls(r);
  });
}

Deno.test("escaping keeps text and what it is told to keep", () => {
  assertEquals(escapeControl("a\tb\x1b[0m\x9b\u2028", "\t"), "a\tb\\x1b[0m\\x9b\\u2028");
  assertEquals(prefixLines("d: ", "one\ntwo\x07"), "d: one\nd: two\\x07");
  const clean = new TextEncoder().encode("plain\r\n");
  assertTrue(escapeConsoleBytes(clean) === clean, "clean bytes are passed through uncopied");
  assertEquals(
    new TextDecoder().decode(escapeConsoleBytes(new Uint8Array([0x41, 0x1b, 0x0a]))),
    "A\\x1b\n",
  );
  assertEquals(
    new TextDecoder().decode(escapeConsoleBytes(new TextEncoder().encode("\u202eé"))),
    "\\u202eé",
  );
});
