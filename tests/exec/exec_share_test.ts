/**
 * `--exec` shares the host's current directory over virtio-9p at the same path: run in a temp
 * directory, the guest's `sha256sum FILE` prints the host's digest of FILE, a file the guest
 * writes there is on the host afterwards, and the VMM ends with CMD's status (7). A `--share
 * DIR,tag=T,ro` is mounted at /mnt/T and refuses writes. One boot per backend.
 */

import { assertEquals, assertIncludes, assertThrows } from "../_assert.ts";
import { BACKENDS, ROOT } from "../_run.ts";
import { hostKvmFlavor } from "../../core/select_backend.ts";
import { parseCli, parseShares } from "../../core/cli.ts";
import { EXEC_CWD_FALLBACK, EXEC_CWD_TAG, execShares } from "../../core/exec/main.ts";
import { execInitScript } from "../../core/exec/initramfs.ts";
import { UsageError } from "../../core/errors.ts";
import type { VmConfig } from "../../core/vm.ts";

Deno.test("--share: HOSTDIR[,tag=T][,ro], default tags, duplicates and bad options refused", () => {
  assertEquals(parseShares(["/a", "/b,ro,tag=data"]), [
    { path: "/a", tag: "share0", readOnly: false },
    { path: "/b", tag: "data", readOnly: true },
  ]);
  assertEquals(parseShares(["rel"])[0]!.path, `${Deno.cwd()}/rel`);
  assertThrows(() => parseShares(["/a,tag=x", "/b,tag=x"]), UsageError, "tag=x");
  assertThrows(() => parseShares(["/a,tag=a b"]), UsageError, "unknown option");
  assertThrows(() => parseShares([",ro"]), UsageError, "no directory");
  const c = parseCli(["--share", "/a", "--share", "/b"]) as VmConfig;
  assertEquals(c.shares!.map((s) => s.tag), ["share0", "share1"]);
});

Deno.test("--exec: the current directory is shared first, --shares at /mnt/TAG", () => {
  const config = { shares: parseShares(["/data,tag=data,ro"]) } as VmConfig;
  const { mounts, workdir } = execShares(config, "/home/me/src");
  assertEquals(workdir, "/home/me/src");
  assertEquals(config.shares!.map((s) => [s.tag, s.path]), [
    [EXEC_CWD_TAG, "/home/me/src"],
    ["data", "/data"],
  ]);
  assertEquals(mounts, [
    { tag: EXEC_CWD_TAG, dir: "/home/me/src" },
    { tag: "data", dir: "/mnt/data", readOnly: true },
  ]);
  for (const cwd of ["/", "/usr", "/tmp", "/proc/1", "/mnt", "/mnt/data/x"]) {
    const c = { shares: parseShares(["/data,tag=data"]) } as VmConfig;
    assertEquals(execShares(c, cwd).workdir, EXEC_CWD_FALLBACK, cwd);
  }
  assertEquals(execShares({} as VmConfig, "/tmp/x").workdir, "/tmp/x");
  assertThrows(
    () => execShares({ shares: parseShares([`/a,tag=${EXEC_CWD_TAG}`]) } as VmConfig, "/x"),
    UsageError,
    "taken",
  );
  const init = execInitScript("true", "N", undefined, { mounts, workdir: "/home/me/src" });
  assertIncludes(
    init,
    `mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 '${EXEC_CWD_TAG}' '/home/me/src'`,
  );
  assertIncludes(init, `version=9p2000.L,msize=262144,ro 'data' '/mnt/data'`);
  assertIncludes(init, `cd '/home/me/src'\n`);
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
if (!present) console.warn("note: exec share tests skipped: run `deno task guests` first");
// The nested kvm_pvm host cannot run Linux.
const backends = BACKENDS.filter((b) => b !== "kvm" || hostKvmFlavor() !== "kvm_pvm");

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

for (const backend of backends) {
  Deno.test({
    name: `[${backend}] --exec runs in the shared current directory: sha256sum, a write, exit 7`,
    ignore: !present,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "dnv-exec-share-" });
      const extra = await Deno.makeTempDir({ prefix: "dnv-exec-ro-" });
      try {
        const data = crypto.getRandomValues(new Uint8Array(1 << 16));
        const file = new Uint8Array(300_000);
        for (let i = 0; i < file.length; i += data.length) {
          file.set(data.subarray(0, 300_000 - i), i);
        }
        await Deno.writeFile(`${dir}/data.bin`, file);
        await Deno.writeTextFile(`${extra}/ro.txt`, "read-only share\n");
        const cmd = [
          "sha256sum data.bin && echo made > out.txt && echo pwd=$(pwd)",
          "cat /mnt/extra/ro.txt",
          "if echo x > /mnt/extra/new 2>/dev/null; then echo ro=written; else echo ro=refused; fi",
          "exit 7",
        ].join("; ");
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--quiet",
            `${ROOT}mod.ts`,
            "--exec",
            cmd,
            "--backend",
            backend,
            "--share",
            `${extra},tag=extra,ro`,
          ],
          cwd: dir,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
          env: { NO_COLOR: "1" },
        }).spawn();
        const timer = setTimeout(() => child.kill("SIGKILL"), 10 * 60_000);
        const out = await child.output();
        clearTimeout(timer);
        const stdout = new TextDecoder().decode(out.stdout);
        const stderr = new TextDecoder().decode(out.stderr);
        assertEquals(out.code, 7, stdout + stderr);
        assertIncludes(stdout, `${await sha256(file)}  data.bin\n`);
        assertIncludes(stdout, `pwd=${await Deno.realPath(dir)}\n`);
        assertIncludes(stdout, "read-only share\nro=refused\n");
        assertEquals(await Deno.readTextFile(`${dir}/out.txt`), "made\n");
        assertEquals([...Deno.readDirSync(extra)].map((e) => e.name), ["ro.txt"]);
      } finally {
        await Deno.remove(dir, { recursive: true });
        await Deno.remove(extra, { recursive: true });
      }
    },
  });
}
