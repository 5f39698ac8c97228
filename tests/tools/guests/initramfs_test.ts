import { S_IFCHR, S_IFLNK, S_IFREG } from "../../../core/boot/cpio.ts";
import { VMM_MODULES } from "../../../core/boot/modules.ts";
import { fetchGuests } from "../../../tools/guests/fetch.ts";
import {
  busyboxInitramfs,
  DEFAULT_APPLETS,
  INTERACTIVE_INIT,
  INTERACTIVE_INITTAB,
  TEST_INIT,
  TEST_MARKER,
  testInitramfs,
} from "../../../tools/guests/initramfs.ts";
import { assertEquals, assertIncludes, assertTrue } from "../../_assert.ts";

async function gunzip(gz: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const s = new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** name → { mode, rdev, data } from a newc archive. */
function listNewc(a: Uint8Array): Map<string, { mode: number; rdev: number[]; data: Uint8Array }> {
  const dec = new TextDecoder();
  const out = new Map<string, { mode: number; rdev: number[]; data: Uint8Array }>();
  let p = 0;
  for (;;) {
    assertEquals(dec.decode(a.subarray(p, p + 6)), "070701");
    const f = (i: number) => parseInt(dec.decode(a.subarray(p + 6 + i * 8, p + 14 + i * 8)), 16);
    const namesize = f(11), filesize = f(6);
    const name = dec.decode(a.subarray(p + 110, p + 110 + namesize - 1));
    const at = (p + 110 + namesize + 3) & ~3;
    if (name === "TRAILER!!!") return out;
    out.set(name, { mode: f(1), rdev: [f(9), f(10)], data: a.subarray(at, at + filesize) });
    p = (at + filesize + 3) & ~3;
  }
}

const FAKE_BUSYBOX = new TextEncoder().encode("\x7fELF not really busybox");

Deno.test("the test initramfs holds busybox, its applet links, /dev/console and an executable /init", async () => {
  const files = listNewc(await gunzip(await testInitramfs(FAKE_BUSYBOX)));
  const bb = files.get("bin/busybox")!;
  assertEquals(bb.mode, S_IFREG | 0o755);
  assertEquals(bb.data, FAKE_BUSYBOX);
  const init = files.get("init")!;
  assertEquals(init.mode, S_IFREG | 0o755);
  const script = new TextDecoder().decode(init.data);
  assertEquals(script, TEST_INIT);
  assertTrue(script.startsWith("#!/bin/sh\n"));
  assertIncludes(script, `${TEST_MARKER} release=$(uname -r) cpus=$(nproc)`);
  assertIncludes(script, "poweroff -f");
  const con = files.get("dev/console")!;
  assertEquals([con.mode & 0o170000, ...con.rdev], [S_IFCHR, 5, 1]);
  for (const applet of DEFAULT_APPLETS) {
    const link = files.get(applet);
    assertTrue(link, `applet ${applet} is linked`);
    assertEquals(link.mode, S_IFLNK | 0o777);
    assertEquals(new TextDecoder().decode(link.data), "/bin/busybox");
  }
  // Every command the init script runs must be an applet (or a shell builtin such as echo).
  for (const cmd of ["mount", "uname", "nproc", "wc", "poweroff"]) {
    assertTrue([...files.keys()].some((k) => k.endsWith("/" + cmd)), `${cmd} is linked`);
  }
});

Deno.test("the interactive initramfs hands PID 1 to busybox init with a console shell", async () => {
  const files = listNewc(
    await gunzip(
      await busyboxInitramfs(FAKE_BUSYBOX, {
        init: INTERACTIVE_INIT,
        applets: ["bin/sh", "/sbin/x"],
        files: [{ path: "etc/inittab", data: new TextEncoder().encode(INTERACTIVE_INITTAB) }],
      }),
    ),
  );
  assertIncludes(new TextDecoder().decode(files.get("init")!.data), "exec /sbin/init");
  assertIncludes(
    new TextDecoder().decode(files.get("etc/inittab")!.data),
    "::respawn:-/bin/cttyhack /bin/sh",
  );
  assertTrue(files.has("etc"), "the directory of an extra file is created");
  assertTrue(files.has("sbin/x"), "leading slashes are dropped");
  assertEquals(files.has("usr/bin/wc"), false, "only the applets asked for");
});

Deno.test("fetchGuests uses the cached downloads without calling apt, rebuilding the initramfs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const f of ["bzImage", "vmlinux", "initramfs.cpio.gz", "test-initramfs.cpio.gz"]) {
      await Deno.writeTextFile(`${dir}/${f}`, "cached");
    }
    await Deno.writeTextFile(`${dir}/kernel-package`, "linux-image-9.9.9-test-amd64\n");
    await Deno.writeFile(`${dir}/busybox`, FAKE_BUSYBOX);
    // The modules cache: a modules.dep naming every module the VMM needs.
    await Deno.mkdir(`${dir}/modules/9.9.9-test-amd64`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/modules/9.9.9-test-amd64/modules.dep`,
      VMM_MODULES.map((m) => `kernel/test/${m}.ko:\n`).join(""),
    );
    const files = await fetchGuests(dir);
    assertEquals(files.kernelPackage, "linux-image-9.9.9-test-amd64");
    assertEquals(await Deno.readTextFile(files.bzImage), "cached");
    // The initramfs images are derived and always rebuilt from the cached busybox.
    const rebuilt = listNewc(await gunzip(await Deno.readFile(files.initramfs)));
    assertTrue(rebuilt.has("etc/inittab") && rebuilt.has("bin/busybox"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
