/**
 * Hardening, item 2: a sandboxed plugin has a heap limit (`memory_mb=`, default 256 MiB). A
 * plugin that grows past it stops the VM with a message naming it and status 1, with no V8
 * abort; one call that allocates without end is stopped by the call time limit first.
 */
import { assertIncludes, assertTrue } from "../_assert.ts";
import { runCli } from "../_run.ts";
import { PORT_LOOP, tempImage } from "./_guests.ts";

const HOG = "./tests/hardening/fixtures/memory_hog.ts";

Deno.test("a plugin that grows past memory_mb stops the VM naming it, status 1", async () => {
  const kernel = await tempImage(PORT_LOOP);
  try {
    const r = await runCli([
      "--backend",
      "interp",
      "--kernel",
      kernel,
      "--device",
      `${HOG},memory_mb=64`,
    ]);
    assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(r.stderr, 'denovisor: Device "memory-hog" used ');
    assertIncludes(
      r.stderr,
      "MiB of memory in its port write handler, over its limit of 64 MiB, and was stopped " +
        "(the limit is the memory_mb= device option)",
    );
    assertTrue(!/Fatal|OOM|Uncaught|^\s+at /m.test(r.stderr), r.stderr);
  } finally {
    await Deno.remove(kernel);
  }
});

Deno.test("one call that allocates without end is stopped by its time limit, status 1", async () => {
  const kernel = await tempImage(PORT_LOOP);
  try {
    const r = await runCli([
      "--backend",
      "interp",
      "--kernel",
      kernel,
      "--device",
      `${HOG},all=true,timeout_ms=300`,
    ]);
    assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(
      r.stderr,
      'Device "memory-hog" did not return from its port write handler within 300 ms',
    );
    assertTrue(!/Fatal|OOM|Uncaught|^\s+at /m.test(r.stderr), r.stderr);
  } finally {
    await Deno.remove(kernel);
  }
});

Deno.test("memory_mb and timeout_ms out of range are refused as usage errors", async () => {
  for (const opt of ["memory_mb=0", "timeout_ms=-1", "timeout_ms=0", "memory_mb=99999999"]) {
    const r = await runCli(["--backend", "interp", "--device", `${HOG},${opt}`]);
    assertTrue(r.status === 2, `${opt}: status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(r.stderr, `Device "memory-hog": option ${opt} is out of range (give 1 to `);
  }
});
