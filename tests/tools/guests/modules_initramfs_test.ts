/**
 * busyboxInitramfs's `modules` option: the archive carries the modules under
 * /lib/modules/<release>/ (every parent directory too: the kernel's unpacker creates none), and
 * /init insmods them in order before the given init; and a real boot of Debian's kernel on the
 * interpreter whose init prints /proc/modules with every VMM_MODULES module loaded (no virtio
 * device is needed for a driver to load).
 */

import { assertEquals, assertIncludes, assertTrue } from "../../_assert.ts";
import { ROOT, runCli } from "../../_run.ts";
import { buildInitramfs } from "../../../core/boot/cpio.ts";
import {
  type InitramfsModules,
  loadModuleSet,
  moduleName,
  readInitramfsModules,
  VMM_MODULES,
} from "../../../core/boot/modules.ts";
import { busyboxEntries, busyboxInitramfs } from "../../../tools/guests/initramfs.ts";

Deno.test("busyboxEntries with modules: parent directories, the modules, an insmod /init", () => {
  const mods: InitramfsModules = {
    release: "6.1.0-test",
    files: [
      { path: "kernel/drivers/virtio/virtio.ko", data: new Uint8Array([1]) },
      { path: "kernel/drivers/virtio/virtio_mmio.ko", data: new Uint8Array([2]) },
      { path: "modules.dep", data: new Uint8Array() },
    ],
    load: ["kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_mmio.ko"],
  };
  const entries = busyboxEntries(new Uint8Array([0x7f]), {
    init: "#!/bin/sh\necho mine\n",
    modules: mods,
  });
  const paths = entries.map((e) => e.path);
  const idx = (p: string) => paths.indexOf(p);
  for (const d of ["lib", "lib/modules", "lib/modules/6.1.0-test/kernel/drivers/virtio"]) {
    assertTrue(idx(d) >= 0 && entries[idx(d)]!.kind === "dir", d);
  }
  assertTrue(idx("lib/modules/6.1.0-test") < idx("lib/modules/6.1.0-test/kernel/drivers"));
  const init = entries.find((e) => e.path === "init")!;
  assertTrue(init.kind === "file" && typeof init.data === "string");
  const lines = (init.data as string).split("\n");
  assertEquals(
    lines[1],
    '/bin/busybox insmod /lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko || echo "init: insmod /lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko failed" >&2',
  );
  assertIncludes(lines[2]!, "virtio_mmio.ko");
  assertEquals(lines[3], 'exec /etc/init.user "$@"');
  const user = entries.find((e) => e.path === "etc/init.user")!;
  assertTrue(user.kind === "file" && user.data === "#!/bin/sh\necho mine\n");
  buildInitramfs(entries); // every path is valid
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
if (!present) console.warn("note: module boot test skipped: run `deno task guests` first");

Deno.test({
  name: "[interp] Debian's kernel boots an initramfs that insmods virtio_mmio, blk, net, rng, " +
    "console, 9p, vsock and ext4; /proc/modules lists them all",
  ignore: !present,
  async fn() {
    const release = Deno.readTextFileSync(`${DIR}kernel-package`).trim().replace(
      /^linux-image-/,
      "",
    );
    const set = await loadModuleSet(`${DIR}modules`, release);
    const mods = await readInitramfsModules(set, VMM_MODULES);
    const init = `#!/bin/sh
mount -t proc proc /proc
echo MODULES-BEGIN
cat /proc/modules
echo MODULES-END
poweroff -f
`;
    const gz = await busyboxInitramfs(await Deno.readFile(`${DIR}busybox`), {
      init,
      modules: mods,
    });
    const path = await Deno.makeTempFile({ suffix: ".cpio.gz" });
    try {
      await Deno.writeFile(path, gz);
      const t0 = performance.now();
      const r = await runCli([
        "--backend",
        "interp",
        "--kernel",
        `${DIR}vmlinux`,
        "--initrd",
        path,
        "--mem",
        "256M",
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
      ], { timeoutMs: 10 * 60_000 });
      console.log(`module boot: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const m = r.stdout.match(/MODULES-BEGIN\r?\n([^]*?)MODULES-END/);
      assertTrue(m, r.stdout.slice(-3000));
      assertTrue(!r.stdout.includes("insmod"), r.stdout.slice(-3000));
      const loaded = new Set(m[1]!.split("\n").map((l) => l.split(" ")[0]!).filter((l) => l));
      for (const p of mods.load) assertTrue(loaded.has(moduleName(p)), `${p} loaded:\n${m[1]}`);
      // In use: virtio_ring by virtio, virtio by virtio_mmio and the drivers.
      assertIncludes(m[1]!, "virtio_mmio");
      assertEquals(r.status, 0, r.stderr);
    } finally {
      await Deno.remove(path);
    }
  },
});
