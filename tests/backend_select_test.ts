/**
 * Backend selection when /dev/kvm cannot be used. On machines that have it, the test hides it
 * in a private mount namespace (`unshare -m` with /dev/null bound over /dev/kvm, as root), so
 * both answers — "no such device" and "a file that is not KVM" — are exercised for real.
 */

import { assertEquals, assertIncludes } from "./_assert.ts";
import { ROOT } from "./_run.ts";

const hasKvmNode = (() => {
  try {
    Deno.statSync("/dev/kvm");
    return true;
  } catch {
    return false;
  }
})();

async function canUnshare(): Promise<boolean> {
  try {
    const out = await new Deno.Command("unshare", {
      args: ["-m", "sh", "-c", "mount --bind /dev/null /dev/null"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

const unshareOk = hasKvmNode ? await canUnshare() : false;
const runnable = !hasKvmNode || unshareOk;
if (!runnable) {
  console.warn(
    "note: cannot hide /dev/kvm here (needs root and unshare): backend fallback tests skipped",
  );
}

/** Runs the CLI with /dev/kvm unusable. */
async function runWithoutKvm(args: string[]) {
  const deno = Deno.execPath();
  const quoted = ["run", "-A", "--quiet", "mod.ts", ...args].map((a) => `'${a}'`).join(" ");
  const cmd = hasKvmNode
    ? new Deno.Command("unshare", {
      args: ["-m", "sh", "-c", `mount --bind /dev/null /dev/kvm && exec '${deno}' ${quoted}`],
      cwd: ROOT,
      stdin: "null",
      env: { NO_COLOR: "1" },
    })
    : new Deno.Command(deno, {
      args: ["run", "-A", "--quiet", "mod.ts", ...args],
      cwd: ROOT,
      stdin: "null",
      env: { NO_COLOR: "1" },
    });
  const out = await cmd.output();
  const dec = new TextDecoder();
  return { status: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: "--backend kvm without a usable /dev/kvm fails with a message naming it",
  ignore: !runnable,
  async fn() {
    const r = await runWithoutKvm(["--backend", "kvm"]);
    assertEquals(r.status, 1);
    assertIncludes(r.stderr, "/dev/kvm");
    assertIncludes(r.stderr, "--backend interp");
    assertEquals(r.stdout, "");
  },
});

Deno.test({
  name: "--backend auto falls back to the interpreter and says why, once",
  ignore: !runnable,
  async fn() {
    const r = await runWithoutKvm([]);
    assertEquals(r.status, 0, r.stderr);
    assertIncludes(r.stdout, "backend: interp");
    const notes = r.stderr.split("\n").filter((l) => l.includes("backend interp"));
    assertEquals(notes.length, 1, r.stderr);
    assertIncludes(notes[0]!, "/dev/kvm");
  },
});
