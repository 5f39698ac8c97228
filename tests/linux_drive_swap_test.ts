/**
 * PATCH /drives with Linux: Debian's kernel (the `--exec` initramfs with virtio_mmio and
 * virtio_blk, booted through the API process on the interpreter) reads vdb's size and digest;
 * the host swaps vdb's image for one of another size and content; the guest sees the new
 * capacity (the config-change interrupt makes virtio_blk re-read it) and, its page cache
 * dropped, the new content.
 */

import { assertEquals, assertTrue } from "./_assert.ts";
import { ROOT } from "./_run.ts";
import { VmProcess } from "./api/_api.ts";
import { loadModuleSet, readInitramfsModules } from "../core/boot/modules.ts";
import { execInitramfs } from "../core/exec/initramfs.ts";
import { EXEC_CMDLINE } from "../core/exec/main.ts";

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux drive swap test skipped: run `deno task guests`");

const BOOT_MS = 10 * 60_000;

async function md5(path: string): Promise<string> {
  const out = await new Deno.Command("md5sum", { args: [path], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).split(" ")[0]!;
}

Deno.test({
  name: "[interp] Linux sees PATCH /drives swap vdb's image: new capacity, new content",
  ignore: !present,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dv-swap-" });
    const vda = `${dir}/vda.img`, old = `${dir}/old.img`, fresh = `${dir}/new.img`;
    await Deno.writeFile(vda, new Uint8Array(1 << 20));
    await Deno.writeFile(old, crypto.getRandomValues(new Uint8Array(1 << 16)).map((b) => b));
    const next = new Uint8Array(3 << 16);
    crypto.getRandomValues(next.subarray(0, 1 << 16));
    next.set(next.subarray(0, 1 << 16), 1 << 16);
    next.set(next.subarray(0, 1 << 16), 2 << 16);
    await Deno.writeFile(fresh, next);
    const release = Deno.readTextFileSync(`${DIR}kernel-package`).trim()
      .replace(/^linux-image-/, "");
    const set = await loadModuleSet(`${DIR}modules`, release);
    const modules = await readInitramfsModules(set, ["virtio_mmio", "virtio_blk"]);
    const cmd = [
      "s=$(cat /sys/block/vdb/size)",
      "echo SIZE1 $s $(md5sum < /dev/vdb)",
      'while [ "$(cat /sys/block/vdb/size)" = "$s" ]; do sleep 1; done',
      "echo 3 > /proc/sys/vm/drop_caches",
      "echo SIZE2 $(cat /sys/block/vdb/size) $(md5sum < /dev/vdb)",
    ].join("; ");
    const initrd = `${dir}/initrd.cpio`;
    await Deno.writeFile(
      initrd,
      execInitramfs({ busybox: await Deno.readFile(`${DIR}busybox`), cmd, nonce: "SWAP", modules }),
    );
    const vm = new VmProcess(`${dir}/api.sock`, [
      "--backend",
      "interp",
      "--mem",
      "256M",
      "--kernel",
      `${DIR}vmlinux`,
      "--format",
      "linux",
      "--initrd",
      initrd,
      "--cmdline",
      EXEC_CMDLINE,
      "--drive",
      `${vda},id=root`,
      "--drive",
      `${old},id=data`,
      // The image PATCH swaps in: the machine's Worker may open it.
      "--allow-path",
      fresh,
    ], { timeoutMs: BOOT_MS });
    try {
      await vm.ready();
      await vm.output("SIZE1 ", BOOT_MS);
      await vm.output("\n", 30_000, vm.stdout.indexOf("SIZE1 "));
      const first = /SIZE1 (\d+) ([0-9a-f]{32})/.exec(vm.stdout);
      assertTrue(first !== null, vm.stdout.slice(-2000));
      assertEquals(first![1], String((1 << 16) / 512));
      assertEquals(first![2], await md5(old));
      // A path that does not open: refused, the guest still sees the old drive.
      const bad = await vm.call("PATCH", "/drives/data", {
        drive_id: "data",
        path_on_host: `${dir}/missing.img`,
      });
      assertEquals(bad.status, 400, bad.body);
      const swapped = await vm.call("PATCH", "/drives/data", {
        drive_id: "data",
        path_on_host: fresh,
      });
      assertEquals(swapped.status, 204, swapped.body);
      await vm.output("SIZE2 ", 120_000);
      assertEquals(await vm.exited, 0, vm.stderr);
      const second = /SIZE2 (\d+) ([0-9a-f]{32})/.exec(vm.stdout);
      assertTrue(second !== null, vm.stdout.slice(-2000));
      assertEquals(second![1], String((3 << 16) / 512));
      assertEquals(second![2], await md5(fresh));
    } finally {
      vm.kill();
      await vm.exited;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
