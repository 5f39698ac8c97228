/**
 * Backend selection when /dev/kvm cannot be used. On machines that have it, the test hides it
 * in a private mount namespace (`unshare -m` with /dev/null bound over /dev/kvm, as root), so
 * both answers — "no such device" and "a file that is not KVM" — are exercised for real.
 */

import { assertEquals, assertIncludes, assertTrue } from "./_assert.ts";
import { KVM_OK, ROOT, runCli } from "./_run.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";

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

const onPvm = KVM_OK && hostKvmFlavor() === "kvm_pvm";
if (KVM_OK && !onPvm) {
  console.warn("note: not a kvm_pvm host: the nested-KVM limit test is skipped");
}

/** A file that `--format auto` takes for a Linux bzImage (the header signature, protocol 2.15). */
async function fakeBzImage(): Promise<string> {
  const image = new Uint8Array(0x1000);
  image.set(new TextEncoder().encode("HdrS"), 0x202);
  new DataView(image.buffer).setUint16(0x206, 0x020f, true);
  const path = await Deno.makeTempFile({ suffix: ".bzImage" });
  await Deno.writeFile(path, image);
  return path;
}

Deno.test({
  name: "on nested kvm_pvm, --backend kvm refuses a Linux kernel at once, naming the limit",
  ignore: !onPvm,
  async fn() {
    const path = await fakeBzImage();
    try {
      const t0 = performance.now();
      const r = await runCli(["--backend", "kvm", "--kernel", path]);
      assertEquals(r.status, 1);
      assertIncludes(r.stderr, "kvm_pvm");
      assertIncludes(r.stderr, "--backend interp");
      assertTrue(performance.now() - t0 < 20_000, "it must not wait for the guest to hang");
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test({
  name: "on nested kvm_pvm, --backend auto picks the interpreter for a Linux kernel",
  ignore: !onPvm,
  async fn() {
    const path = await fakeBzImage();
    try {
      const r = await runCli(["--kernel", path]);
      assertIncludes(r.stderr, "backend interp (this host's KVM is the nested kvm_pvm variant");
    } finally {
      await Deno.remove(path);
    }
  },
});
