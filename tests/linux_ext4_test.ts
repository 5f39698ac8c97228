/**
 * An ext4 round trip (issue 11): the host makes an image with `mkfs.ext4 -d DIR`; Debian's
 * kernel under `--exec --drive` (whose initramfs loads ext4 and its dependencies, jbd2,
 * mbcache, crc16 and crc32c, from modules.dep) mounts it, checks the host's files' digests,
 * writes new files and unmounts; the host's `e2fsck -fn` finds the filesystem clean and
 * `debugfs` reads back what the guest wrote, digest for digest. On the interpreter (the nested
 * kvm_pvm host cannot run Linux on KVM).
 */

import { assertEquals, assertIncludes, assertTrue } from "./_assert.ts";
import { BACKENDS, ROOT, runCli } from "./_run.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";

const DIR = `${ROOT}.cache/guests/`;
const guest = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!guest) console.warn("note: Linux ext4 test skipped: run `deno task guests` first");

/** The host's e2fsprogs, or the first tool missing. */
async function missingTool(): Promise<string | null> {
  for (const tool of ["mkfs.ext4", "e2fsck", "debugfs"]) {
    try {
      await new Deno.Command(tool, { args: ["-V"], stdout: "null", stderr: "null" }).output();
    } catch {
      return tool;
    }
  }
  return null;
}
const missing = guest ? await missingTool() : null;
if (missing !== null) {
  console.warn(`note: Linux ext4 test skipped: ${missing} is not installed (e2fsprogs)`);
}
const backends = BACKENDS.filter((b) => b !== "kvm" || hostKvmFlavor() !== "kvm_pvm");

async function md5(bytes: Uint8Array): Promise<string> {
  const p = new Deno.Command("md5sum", { stdin: "piped", stdout: "piped" }).spawn();
  const w = p.stdin.getWriter();
  await w.write(bytes);
  await w.close();
  return new TextDecoder().decode((await p.output()).stdout).split(" ")[0]!;
}

/** `debugfs -R "cat PATH" IMAGE`: a file's bytes, read without mounting. */
async function debugfsCat(image: string, path: string): Promise<Uint8Array> {
  const out = await new Deno.Command("debugfs", {
    args: ["-R", `cat ${path}`, image],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertTrue(out.success, new TextDecoder().decode(out.stderr));
  return out.stdout;
}

for (const backend of backends) {
  Deno.test({
    name:
      `[${backend}] Linux mounts a host-made ext4 image, checks and writes files; e2fsck -fn is clean`,
    ignore: !guest || missing !== null,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "dv-ext4-" });
      try {
        const src = `${dir}/src`, image = `${dir}/fs.img`;
        await Deno.mkdir(`${src}/sub`, { recursive: true });
        const a = new TextEncoder().encode("hello from the host\n");
        const b = crypto.getRandomValues(new Uint8Array(60_000));
        await Deno.writeFile(`${src}/a.txt`, a);
        await Deno.writeFile(`${src}/sub/b.bin`, b);
        const mkfs = await new Deno.Command("mkfs.ext4", {
          args: ["-q", "-F", "-d", src, image, "16M"],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertTrue(mkfs.success, new TextDecoder().decode(mkfs.stderr));
        const cmd = [
          "mkdir -p /mnt/d",
          "mount -t ext4 /dev/vda /mnt/d && echo mounted=ok",
          "md5sum /mnt/d/a.txt /mnt/d/sub/b.bin",
          "printf 'written by the guest\\n' > /mnt/d/new.txt",
          "mkdir /mnt/d/out",
          "dd if=/dev/urandom of=/mnt/d/out/c.bin bs=1024 count=200 2>/dev/null",
          "md5sum /mnt/d/out/c.bin",
          "umount /mnt/d && echo umount=ok",
        ].join("; ");
        const r = await runCli(["--exec", cmd, "--backend", backend, "--drive", image], {
          timeoutMs: 10 * 60_000,
        });
        assertEquals(r.status, 0, r.stdout + r.stderr);
        assertIncludes(r.stdout, "mounted=ok\n");
        assertIncludes(r.stdout, `${await md5(a)}  /mnt/d/a.txt`);
        assertIncludes(r.stdout, `${await md5(b)}  /mnt/d/sub/b.bin`);
        assertIncludes(r.stdout, "umount=ok\n");
        const written = /([0-9a-f]{32}) {2}\/mnt\/d\/out\/c\.bin/.exec(r.stdout);
        assertTrue(written !== null, r.stdout);

        const fsck = await new Deno.Command("e2fsck", {
          args: ["-fn", image],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const dec = new TextDecoder();
        assertEquals(fsck.code, 0, dec.decode(fsck.stdout) + dec.decode(fsck.stderr));
        assertEquals(dec.decode(await debugfsCat(image, "/new.txt")), "written by the guest\n");
        const c = await debugfsCat(image, "/out/c.bin");
        assertEquals(c.length, 200 * 1024);
        assertEquals(await md5(c), written![1]);
        assertEquals(await debugfsCat(image, "/sub/b.bin"), b);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
