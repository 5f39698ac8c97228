/**
 * A snapshot of Linux writing to its virtio-console: Debian's kernel (the `--exec` initramfs
 * with virtio_mmio and virtio_console) prints numbered lines on /dev/hvc0; the VM is paused
 * after the second, snapshotted, closed, restored into a new machine (the console device
 * recreated from the snapshot and connected to the new machine's console) and run to the end:
 * the restored guest carries on printing on hvc0 where it left off. On the interpreter.
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
if (!present) console.warn("note: Linux console snapshot test skipped: run `deno task guests`");

const LINES = 6;

Deno.test({
  name: "[interp] Linux printing on hvc0 (--console virtio), snapshotted and restored, prints on",
  ignore: !present,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dv-hvc-snap-" });
    let machine: Machine | null = null;
    try {
      const release = Deno.readTextFileSync(`${DIR}kernel-package`).trim()
        .replace(/^linux-image-/, "");
      const set = await loadModuleSet(`${DIR}modules`, release);
      const modules = await readInitramfsModules(set, ["virtio_mmio", "virtio_console"]);
      // Each line a new process writing to hvc0 (the device's queues carry on across the
      // snapshot, not an open file).
      const cmd = `for i in $(seq ${LINES}); do echo HVC-LINE-$i > /dev/hvc0; sleep 0.2; done`;
      const initrd = `${dir}/initrd.cpio`;
      await Deno.writeFile(
        initrd,
        execInitramfs({
          busybox: await Deno.readFile(`${DIR}busybox`),
          cmd,
          nonce: "HVCSNAP",
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
        serial: { kind: "stdio" },
        trace: false,
        console: "virtio",
      };
      let text = "";
      // hvc0 is a tty in cooked mode: its lines end in \r\n.
      let pauseAt = "HVC-LINE-2\r\n";
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
      machine = await buildMachine(config, io);
      assertEquals(machine.run().reason.kind, "pause", text.slice(-2000));
      const statePath = `${dir}/vm.state`, memPath = `${dir}/vm.mem`;
      createSnapshot(machine, { statePath, memPath });
      machine.close();
      machine = null;
      const before = text;
      assertTrue(!before.includes("HVC-LINE-3"), before.slice(-500));
      machine = await restoreMachine({ statePath, memPath }, io, { serial: { kind: "stdio" } });
      assertTrue(machine.devices.some((d) => d.name === "virtio-console"));
      assertEquals(machine.run().reason.kind, "poweroff", text.slice(-2000));
      const after = text.slice(before.length);
      for (let i = 3; i <= LINES; i++) assertIncludes(after, `HVC-LINE-${i}\r\n`);
      const order = [...text.matchAll(/HVC-LINE-(\d)\r\n/g)].map((m) => Number(m[1]));
      assertEquals(order, Array.from({ length: LINES }, (_, i) => i + 1));
    } finally {
      machine?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
