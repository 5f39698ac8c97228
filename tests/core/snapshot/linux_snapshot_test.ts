/**
 * Debian's Linux on the interpreter, snapshotted in the middle of a shell workload in this
 * process and restored in a new one (`--restore`): the workload finishes with the right result,
 * `sleep 1` takes about a second on the guest's clock, and the guest powers off.
 */

import { assertEquals, assertIncludes, assertTrue } from "../../_assert.ts";
import { ROOT, runCli } from "../../_run.ts";
import { buildMachine } from "../../../core/vm.ts";
import type { Machine } from "../../../core/machine.ts";
import { createSnapshot } from "../../../core/snapshot/mod.ts";
import { busyboxInitramfs, DEFAULT_APPLETS } from "../../../tools/guests/initramfs.ts";

const DIR = `${ROOT}.cache/guests/`;
const KERNEL = `${DIR}bzImage`, BUSYBOX = `${DIR}busybox`;
const present = [KERNEL, BUSYBOX].every((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux snapshot test skipped: run `deno task guests` first");

const INIT = `#!/bin/sh
mount -t proc proc /proc
echo WORK-START
i=0; s=0
while [ $i -lt 3000 ]; do i=$((i+1)); s=$((s+i)); done
echo "WORK-DONE $s"
read up1 idle1 < /proc/uptime
sleep 1
read up2 idle2 < /proc/uptime
echo "UPTIME $up1 $up2"
poweroff -f
`;

Deno.test({
  name: "[interp] Linux snapshotted mid-workload finishes it in a new process; sleep works",
  ignore: !present,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "dv-linux-snap-" });
    try {
      const initrd = `${dir}/init.cpio.gz`;
      Deno.writeFileSync(
        initrd,
        await busyboxInitramfs(await Deno.readFile(BUSYBOX), {
          init: INIT,
          applets: DEFAULT_APPLETS,
        }),
      );
      let machine: Machine | null = null;
      let text = "";
      let armed = false;
      const dec = new TextDecoder();
      const sink = {
        writeSync: (b: Uint8Array) => {
          text += dec.decode(b);
          if (!armed && machine !== null && text.includes("WORK-START")) {
            armed = true;
            // Half a second of VM time into the loop.
            const m = machine;
            m.clock.timer(() => m.pause()).arm(500e6);
          }
          return b.length;
        },
      };
      machine = await buildMachine({
        backend: "interp",
        memSize: 256 << 20,
        kernel: KERNEL,
        format: "linux",
        cmdline: "console=ttyS0 panic=-1",
        initrd,
        devices: [],
        serial: { kind: "stdio" },
        trace: false,
      }, { stdout: sink, log: () => {} });
      const files = { statePath: `${dir}/vm.state`, memPath: `${dir}/vm.mem` };
      try {
        assertEquals(machine.run().reason, { kind: "pause" }, text.slice(-2000));
        assertTrue(!text.includes("WORK-DONE"), "paused inside the workload");
        createSnapshot(machine, files);
      } finally {
        machine.close();
      }
      const r = await runCli(["--restore", files.statePath, "--mem-file", files.memPath], {
        timeoutMs: 10 * 60_000,
      });
      assertEquals(r.status, 0, r.stderr + r.stdout.slice(-2000));
      assertTrue(!r.stdout.includes("Linux version"), "resumed, not rebooted");
      assertIncludes(r.stdout, "WORK-DONE 4501500");
      const m = r.stdout.match(/UPTIME ([\d.]+) ([\d.]+)/);
      assertTrue(m !== null, r.stdout.slice(-2000));
      const slept = Number(m![2]) - Number(m![1]);
      assertTrue(slept >= 0.9 && slept < 2.5, `sleep 1 took ${slept} s of guest time`);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
