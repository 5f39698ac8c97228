/**
 * `--exec CMD`: the console protocol's demultiplexer, the argument checks, the /init's quoting,
 * and real runs of Debian's kernel on the interpreter: a command's stdout (and nothing of the
 * kernel's) on stdout, its stderr on stderr, its exit status as the VMM's, a digest computed in
 * the guest equal to the host's; and a boot that fails (too little RAM) with status 125.
 */

import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../_assert.ts";
import { ROOT, runCli } from "../_run.ts";
import { ExecDemux, RS } from "../../core/exec/protocol.ts";
import { EXEC_FAILED, parseExecArgs } from "../../core/exec/main.ts";
import { execInitScript, shellQuote } from "../../core/exec/initramfs.ts";
import { UsageError } from "../../core/errors.ts";
import { parseCli } from "../../core/cli.ts";

const enc = new TextEncoder(), dec = new TextDecoder();

function demux(nonce = "N0NCE") {
  const got = { out: "", err: "", started: 0, status: -1 };
  const d = new ExecDemux(nonce, {
    stdout: (b) => got.out += dec.decode(b),
    stderr: (b) => got.err += dec.decode(b),
    started: () => got.started++,
    exited: (s) => got.status = s,
  });
  return { d, got };
}

Deno.test("ExecDemux: boot log, stdout as is, stderr lines, the exit status; split anywhere", () => {
  const rs = String.fromCharCode(RS);
  const stream = `[ 1.0] booting\r\n${rs}N0NCES\nhello\n${rs}N0NCEEoops\nwor` +
    `ld\x1e not a frame ${rs}N0NCX not ours either\n${rs}N0NCEX7\nafter\n`;
  const bytes = enc.encode(stream);
  for (const step of [bytes.length, 1, 3, 7]) {
    const { d, got } = demux();
    for (let i = 0; i < bytes.length; i += step) d.write(bytes.subarray(i, i + step));
    assertEquals(got.out, `hello\nworld\x1e not a frame ${rs}N0NCX not ours either\n`);
    assertEquals(got.err, "oops\n");
    assertEquals(got.status, 7);
    assertEquals(got.started, 1);
    assertTrue(d.done && d.started);
    assertEquals(d.bootLog(), "[ 1.0] booting\r\n");
  }
});

Deno.test("ExecDemux: a stderr or exit frame before the start frame is boot log", () => {
  const { d, got } = demux();
  d.write(enc.encode("\x1eN0NCEX3\n"));
  assertEquals(got.status, -1);
  assertTrue(!d.started);
  assertEquals(d.bootLog(), "\x1eN0NCEX3\n");
});

Deno.test("--exec: the command is required, once; flags the exec mode decides are refused", () => {
  assertEquals(parseExecArgs(["--exec", "true", "--backend", "interp", "--verbose"]), {
    cmd: "true",
    verbose: true,
    rest: ["--backend", "interp"],
  });
  assertEquals(parseExecArgs(["--exec=a b"]).cmd, "a b");
  assertThrows(() => parseExecArgs(["--exec"]), UsageError, "needs a command");
  assertThrows(() => parseExecArgs(["--exec", "a", "--exec", "b"]), UsageError, "twice");
  assertEquals(parseExecArgs(["--exec", "a", "--exec-timeout=1.5"]).timeoutMs, 1500);
  for (const bad of ["0", "-1", "x", ""]) {
    assertThrows(
      () => parseExecArgs(["--exec", "a", "--exec-timeout", bad]),
      UsageError,
      "--exec-timeout needs a positive number",
    );
  }
  for (const f of ["--kernel", "--linux", "--initrd", "--serial", "--cmdline", "--api-sock"]) {
    assertThrows(() => parseExecArgs(["--exec", "x", f, "v"]), UsageError, f);
  }
});

Deno.test("the exec /init quotes the command for sh (quotes, $, backslashes survive)", async () => {
  const cmd = `echo 'it''s' "$HOME" \\n; printf '%s\\n' "a'b"`;
  const out = await new Deno.Command("sh", {
    args: ["-c", `CMD=${shellQuote(cmd)}; printf '%s' "$CMD"`],
    stdout: "piped",
  }).output();
  assertEquals(dec.decode(out.stdout), cmd);
  const init = execInitScript(cmd, "NONCE");
  assertIncludes(init, `CMD=${shellQuote(cmd)}\n`);
  assertIncludes(init, `sh -c "$CMD" < /dev/null 2> /tmp/.exec-stderr`);
});

Deno.test("--exec: bad flags give 2; a kernel that cannot load and a timeout give 125", async () => {
  const r = await runCli(["--exec", "true", "--kernel", "x"]);
  assertEquals(r.status, 2, r.stderr);
  assertIncludes(r.stderr, "--exec cannot be combined with --kernel");
  const present = (() => {
    try {
      return Deno.statSync(`${ROOT}.cache/guests/modules`).isDirectory;
    } catch {
      return false;
    }
  })();
  if (!present) return;
  const small = await runCli(["--exec", "true", "--mem", "24M", "--backend", "interp"]);
  assertEquals(small.status, EXEC_FAILED, small.stderr);
  assertIncludes(small.stderr, "the guest ended before it ran the command");
  assertIncludes(small.stderr, "--mem");
  assertEquals(small.stdout, "");
  // A guest that has not reported a status by --exec-timeout is stopped.
  const t0 = performance.now();
  const slow = await runCli(["--exec", "true", "--exec-timeout", "2", "--backend", "interp"]);
  assertEquals(slow.status, EXEC_FAILED, slow.stderr);
  assertIncludes(slow.stderr, "after --exec-timeout 2 s (it was still booting)");
  assertTrue(performance.now() - t0 < 30_000, "stopped at the timeout");
});

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: --exec boot tests skipped: run `deno task guests` first");
const BOOT_TIMEOUT_MS = 10 * 60_000;

/** True once the command line has `--drive` (the virtio-blk device), which --exec passes on. */
const DRIVES = (() => {
  try {
    parseCli(["--drive", "x"]);
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "[interp] --exec 'echo hi; sha256sum /bin/busybox; echo oops >&2; exit 7': hi and the " +
    "host's digest on stdout (nothing else), oops on stderr, status 7; bytes as they are; a " +
    "--drive passed on",
  ignore: !present,
  async fn() {
    const digest = [
      ...new Uint8Array(
        await crypto.subtle.digest("SHA-256", await Deno.readFile(`${DIR}busybox`)),
      ),
    ].map((b) => b.toString(16).padStart(2, "0")).join("");
    const image = await Deno.makeTempFile({ suffix: ".img" });
    try {
      await Deno.writeTextFile(image, "hello from the drive\n");
      await Deno.truncate(image, 1 << 20);
      const drive = DRIVES ? ["--drive", image] : [];
      const t0 = performance.now();
      const r = await runCli([
        "--exec",
        // CR, TAB, SOH and an RS that is not a frame reach stdout unchanged (raw console).
        `echo hi; sha256sum /bin/busybox; printf 'a\\r\\nb\\t\\001\\036c\\n'; ` +
        (DRIVES ? "head -c 21 /dev/vda; " : "") + "echo oops >&2; exit 7",
        "--backend",
        "interp",
        "--verbose",
        ...drive,
      ], { timeoutMs: BOOT_TIMEOUT_MS });
      console.log(
        `exec run: ${((performance.now() - t0) / 1000).toFixed(1)} s; ${r.stderr.trim()}`,
      );
      assertEquals(
        r.stdout,
        `hi\n${digest}  /bin/busybox\na\r\nb\t\x01\x1ec\n` +
          (DRIVES ? "hello from the drive\n" : ""),
        r.stderr,
      );
      assertIncludes(r.stderr, "oops\n");
      assertIncludes(r.stderr, "denovisor: exec: command started");
      assertEquals(r.status, 7, r.stderr);
    } finally {
      await Deno.remove(image);
    }
  },
});

Deno.test({
  name: "[interp] --exec with --mem too small for the initramfs: the kernel panics, status 125 " +
    "and the panic on stderr",
  ignore: !present,
  async fn() {
    const r = await runCli(["--exec", "echo never", "--backend", "interp", "--mem", "80M"], {
      timeoutMs: BOOT_TIMEOUT_MS,
    });
    assertEquals(r.status, EXEC_FAILED, r.stderr);
    assertEquals(r.stdout, "");
    assertIncludes(r.stderr, "Kernel panic");
    assertIncludes(r.stderr, "the guest ended before it ran the command");
  },
});
