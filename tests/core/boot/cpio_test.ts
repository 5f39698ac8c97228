import {
  buildInitramfs,
  type CpioEntry,
  gzip,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFREG,
} from "../../../core/boot/cpio.ts";
import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../../_assert.ts";

interface ParsedEntry {
  name: string;
  mode: number;
  nlink: number;
  rdevmajor: number;
  rdevminor: number;
  data: Uint8Array;
}

/** An independent newc reader: checks magic, hex fields and 4-byte alignment as it goes. */
function readNewc(archive: Uint8Array): ParsedEntry[] {
  const dec = new TextDecoder();
  const out: ParsedEntry[] = [];
  let p = 0;
  for (;;) {
    assertEquals(p % 4, 0, "every header starts 4-byte aligned");
    assertEquals(dec.decode(archive.subarray(p, p + 6)), "070701");
    const field = (i: number) =>
      parseInt(dec.decode(archive.subarray(p + 6 + i * 8, p + 14 + i * 8)), 16);
    const mode = field(1), nlink = field(4), filesize = field(6);
    const rdevmajor = field(9), rdevminor = field(10), namesize = field(11);
    const name = dec.decode(archive.subarray(p + 110, p + 110 + namesize - 1));
    assertEquals(archive[p + 110 + namesize - 1], 0, "names are NUL-terminated");
    let q = (p + 110 + namesize + 3) & ~3;
    const data = archive.subarray(q, q + filesize);
    q = (q + filesize + 3) & ~3;
    if (name === "TRAILER!!!") {
      assertEquals(q, archive.length, "the archive ends after the padded trailer");
      return out;
    }
    out.push({ name, mode, nlink, rdevmajor, rdevminor, data });
    p = q;
  }
}

const ENTRIES: CpioEntry[] = [
  { kind: "dir", path: "/dev" },
  { kind: "chardev", path: "/dev/console", major: 5, minor: 1 },
  { kind: "file", path: "/init", data: "#!/bin/sh\necho hello\n", mode: 0o755 },
  { kind: "file", path: "bin/odd", data: new Uint8Array([1, 2, 3]) },
  { kind: "symlink", path: "/bin/sh", target: "/bin/busybox" },
];

Deno.test("buildInitramfs writes a newc archive that reads back entry for entry", () => {
  const parsed = readNewc(buildInitramfs(ENTRIES));
  assertEquals(parsed.map((e) => e.name), ["dev", "dev/console", "init", "bin/odd", "bin/sh"]);
  const [dev, con, init, odd, sh] = parsed;
  assertEquals(dev!.mode, S_IFDIR | 0o755);
  assertEquals(dev!.nlink, 2);
  assertEquals([con!.mode, con!.rdevmajor, con!.rdevminor], [S_IFCHR | 0o600, 5, 1]);
  assertEquals(init!.mode, S_IFREG | 0o755);
  assertEquals(new TextDecoder().decode(init!.data), "#!/bin/sh\necho hello\n");
  assertEquals(odd!.mode, S_IFREG | 0o644);
  assertEquals([...odd!.data], [1, 2, 3]);
  assertEquals(sh!.mode, S_IFLNK | 0o777);
  assertEquals(new TextDecoder().decode(sh!.data), "/bin/busybox");
});

Deno.test("buildInitramfs refuses paths that are empty or climb out of the root", () => {
  assertThrows(() => buildInitramfs([{ kind: "dir", path: "/" }]), TypeError, "empty");
  assertThrows(
    () => buildInitramfs([{ kind: "file", path: "a/../../etc", data: "" }]),
    TypeError,
    "leaves the archive root",
  );
});

Deno.test("gzip output decompresses back to the archive", async () => {
  const archive = buildInitramfs(ENTRIES);
  const gz = await gzip(archive);
  assertEquals([gz[0], gz[1]], [0x1f, 0x8b]);
  const back = new Uint8Array(
    await new Response(new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip")))
      .arrayBuffer(),
  );
  assertEquals(back, archive);
});

let cpioTool = false;
try {
  cpioTool = (await new Deno.Command("cpio", { args: ["--version"], stdout: "null" }).output())
    .success;
} catch {
  cpioTool = false;
}
if (!cpioTool) {
  console.warn("cpio_test: the cpio tool is not installed; skipping the cpio -t check");
}

Deno.test({
  name: "GNU cpio lists the archive with the same names, types and device numbers",
  ignore: !cpioTool,
  fn: async () => {
    const child = new Deno.Command("cpio", {
      args: ["-tv", "--quiet"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(buildInitramfs(ENTRIES));
    await w.close();
    const out = await child.output();
    assertTrue(out.success, new TextDecoder().decode(out.stderr));
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    assertEquals(lines.length, 5);
    assertTrue(lines[0]!.startsWith("drwxr-xr-x"), lines[0]);
    assertTrue(lines[1]!.startsWith("crw-------"), lines[1]);
    assertIncludes(lines[1]!, "5,   1");
    assertTrue(lines[2]!.startsWith("-rwxr-xr-x"), lines[2]);
    assertIncludes(lines[4]!, "bin/sh -> /bin/busybox");
  },
});
