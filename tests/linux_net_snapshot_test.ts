/**
 * A snapshot of Linux on `--net switch=PATH`: Debian's kernel (the `--exec` initramfs with
 * virtio_net) pings a responder on the switch (tests/net/_responder.ts) once a second; the VM
 * is paused through the API, snapshotted and its process killed; a second process loads the
 * snapshot (PUT /snapshot/load), which reconnects the card to the switch its state records,
 * and the restored guest's pings are answered again. On the interpreter.
 */

import { assertEquals, assertTrue } from "./_assert.ts";
import { ROOT } from "./_run.ts";
import { VmProcess } from "./api/_api.ts";
import { EthernetSwitch, listenSwitch } from "../core/net/switch.ts";
import { PingResponder } from "./net/_responder.ts";
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
if (!present) console.warn("note: Linux net snapshot test skipped: run `deno task guests`");

const BOOT_MS = 10 * 60_000;

/** The number of PONG lines in `text`. */
function pongs(text: string): number {
  return [...text.matchAll(/PONG \d+\n/g)].length;
}

Deno.test({
  name: "[interp] Linux on --net switch=, snapshotted and loaded in another process, pings on",
  ignore: !present,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dv-net-snap-" });
    const path = `${dir}/switch.sock`;
    const sw = new EthernetSwitch(await listenSwitch(path));
    const serving = sw.serve();
    const peer = await PingResponder.join(path, "02:00:00:00:00:02", "10.0.0.2");
    let first: VmProcess | null = null, second: VmProcess | null = null;
    try {
      const release = Deno.readTextFileSync(`${DIR}kernel-package`).trim()
        .replace(/^linux-image-/, "");
      const set = await loadModuleSet(`${DIR}modules`, release);
      const modules = await readInitramfsModules(set, ["virtio_mmio", "virtio_net"]);
      const cmd = [
        "ip link set eth0 up",
        "ip addr add 10.0.0.1/24 dev eth0",
        "i=0",
        "while true; do i=$((i+1)); ping -c 1 -W 1 10.0.0.2 >/dev/null 2>&1 && echo PONG $i; " +
        "sleep 1; done",
      ].join("; ");
      const initrd = `${dir}/initrd.cpio`;
      await Deno.writeFile(
        initrd,
        execInitramfs({
          busybox: await Deno.readFile(`${DIR}busybox`),
          cmd,
          nonce: "NET",
          modules,
        }),
      );
      first = new VmProcess(`${dir}/a.sock`, [
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
        "--net",
        `switch=${path},mac=02:00:00:00:00:01,id=lan`,
      ], { timeoutMs: BOOT_MS });
      await first.ready();
      const deadline = Date.now() + BOOT_MS;
      while (pongs(first.stdout) < 2) {
        assertTrue(Date.now() < deadline, `no pongs: ${first.stdout.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assertEquals((await first.call("PATCH", "/vm", { state: "Paused" })).status, 204);
      const snap = { snapshot_path: `${dir}/vm.state`, mem_file_path: `${dir}/vm.mem` };
      const created = await first.call("PUT", "/snapshot/create", snap);
      assertEquals(created.status, 204, created.body);
      first.kill();
      await first.exited;
      const echoesBefore = peer.echoes;

      second = new VmProcess(`${dir}/b.sock`, ["--backend", "interp"], { timeoutMs: BOOT_MS });
      await second.ready();
      const loaded = await second.call("PUT", "/snapshot/load", {
        snapshot_path: snap.snapshot_path,
        mem_backend: { backend_type: "File", backend_path: snap.mem_file_path },
        resume_vm: true,
      });
      assertEquals(loaded.status, 204, loaded.body);
      const again = Date.now() + 120_000;
      while (pongs(second.stdout) < 2) {
        assertTrue(
          Date.now() < again,
          `no pongs after the restore: ${second.stdout.slice(-2000)} ${second.stderr}`,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
      assertTrue(peer.echoes >= echoesBefore + 2, `${peer.echoes} echoes, ${echoesBefore} before`);
    } finally {
      first?.kill();
      await first?.exited;
      second?.kill();
      await second?.exited;
      await peer.close();
      sw.close();
      await serving.catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
