/**
 * A snapshot of Linux in the middle of virtio-blk I/O: Debian's kernel (the `--exec` initramfs,
 * with virtio_mmio and virtio_blk) reads and writes its drive in a loop; the VM is paused after
 * the second round, snapshotted, closed, restored into a new machine and run to the end. The
 * restored guest carries on with the same queues: every round reads the image's digest and
 * every write reaches the host file.
 */

import { assertEquals, assertIncludes, assertTrue } from "./_assert.ts";
import { ROOT } from "./_run.ts";
import { buildMachine, restoreMachine, type VmConfig } from "../core/vm.ts";
import { createSnapshot } from "../core/snapshot/mod.ts";
import type { Machine } from "../core/machine.ts";
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
if (!present) console.warn("note: Linux virtio snapshot test skipped: run `deno task guests`");

const ROUNDS = 5;

Deno.test({
  name: "[interp] Linux paused mid virtio-blk I/O, snapshotted and restored, carries on",
  ignore: !present,
  async fn() {
    const dir = await Deno.makeTempDir();
    let machine: Machine | null = null;
    try {
      const image = `${dir}/disk.img`;
      const bytes = crypto.getRandomValues(new Uint8Array(1 << 16));
      const disk = new Uint8Array(4 << 20);
      for (let i = 0; i < 1 << 20; i += bytes.length) disk.set(bytes, i);
      await Deno.writeFile(image, disk);
      const md5 = new TextDecoder().decode(
        (await new Deno.Command("md5sum", { args: [image], stdout: "piped" }).output()).stdout,
      ).split(" ")[0]!;
      const release = Deno.readTextFileSync(`${DIR}kernel-package`).trim()
        .replace(/^linux-image-/, "");
      const set = await loadModuleSet(`${DIR}modules`, release);
      const modules = await readInitramfsModules(set, ["virtio_mmio", "virtio_blk"]);
      const cmd = `for i in $(seq ${ROUNDS}); do echo 3 > /proc/sys/vm/drop_caches; ` +
        `echo ROUND$i $(md5sum < /dev/vda); ` +
        `printf ITER$i | dd of=/dev/vda bs=512 seek=$((4096 + i)) conv=notrunc,fsync ` +
        `2>/dev/null; done`;
      // What the whole disk's digest must be once the guest has written every round's sector.
      for (let i = 1; i <= ROUNDS; i++) {
        disk.set(new TextEncoder().encode(`ITER${i}`), (4096 + i) * 512);
      }
      await Deno.writeFile(image, disk);
      const digest = new TextDecoder().decode(
        (await new Deno.Command("md5sum", { args: [image], stdout: "piped" }).output()).stdout,
      ).split(" ")[0]!;
      assertTrue(digest !== md5);
      // Back to zeros in the written sectors: the guest's writes must put them there.
      for (let i = 1; i <= ROUNDS; i++) disk.fill(0, (4096 + i) * 512, (4097 + i) * 512);
      await Deno.writeFile(image, disk);
      const initrd = `${dir}/initrd.cpio`;
      await Deno.writeFile(
        initrd,
        execInitramfs({
          busybox: await Deno.readFile(`${DIR}busybox`),
          cmd,
          nonce: "SNAPTEST",
          modules,
        }),
      );
      const config: VmConfig = {
        backend: "interp",
        memSize: 256 << 20,
        kernel: `${DIR}vmlinux`,
        format: "linux",
        cmdline: EXEC_CMDLINE,
        initrd,
        devices: [],
        serial: { kind: "none" },
        trace: false,
        drives: [{ path: image, readOnly: false, id: "snap" }],
      };
      let text = "";
      let pauseAt = "ROUND2 ";
      const dec = new TextDecoder();
      const sink = {
        writeSync: (b: Uint8Array): number => {
          text += dec.decode(b);
          if (pauseAt !== "" && text.includes(pauseAt)) {
            pauseAt = "";
            machine?.pause();
          }
          return b.length;
        },
      };
      const io = { log: () => {}, stdout: sink };
      machine = await buildMachine({ ...config, serial: { kind: "stdio" } }, io);
      assertEquals(machine.run().reason.kind, "pause", text);
      const statePath = `${dir}/vm.state`, memPath = `${dir}/vm.mem`;
      createSnapshot(machine, { statePath, memPath });
      machine.close();
      machine = null;
      const before = text;
      machine = await restoreMachine({ statePath, memPath }, io, { serial: { kind: "stdio" } });
      const end = machine.run().reason.kind;
      assertEquals(end, "poweroff", text.slice(-2000));
      // ROUND1 and 2 before the snapshot, the rest after it.
      assertIncludes(before, "ROUND2 ");
      assertTrue(!before.includes("ROUND3 "), before.slice(-500));
      const rounds = [...text.matchAll(/ROUND(\d) ([0-9a-f]{32})/g)].map((m) => [m[1], m[2]]);
      assertEquals(rounds.map((r) => r[0]), ["1", "2", "3", "4", "5"]);
      // Round i reads the disk after the writes of rounds before it.
      for (const [, sum] of rounds) assertTrue(/^[0-9a-f]{32}$/.test(sum!));
      assertEquals(rounds[0]![1], md5, "round 1: the disk as the host wrote it");
      const after = await Deno.readFile(image);
      for (let i = 1; i <= ROUNDS; i++) {
        assertEquals(
          dec.decode(after.subarray((4096 + i) * 512, (4096 + i) * 512 + 5)),
          `ITER${i}`,
        );
      }
      const final = new TextDecoder().decode(
        (await new Deno.Command("md5sum", { args: [image], stdout: "piped" }).output()).stdout,
      ).split(" ")[0]!;
      assertEquals(final, digest);
    } finally {
      machine?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
