/**
 * The API with Debian's Linux (fetched by `deno task guests`) on the interpreter (the nested
 * kvm_pvm host cannot run Linux on KVM): SendCtrlAltDel reaches the kernel through the i8042,
 * busybox init reboots and the VMM ends with 0; where the snapshot layer is there, a snapshot
 * of the shell taken while paused resumes in a second process, whose console still works.
 */

import { assertEquals, assertIncludes } from "../_assert.ts";
import { ROOT } from "../_run.ts";
import { VmProcess } from "./_api.ts";

const DIR = `${ROOT}.cache/guests/`;
const present = ["bzImage", "initramfs.cpio.gz"].every((f) => {
  try {
    return Deno.statSync(DIR + f).isFile;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: API Linux test skipped: run `deno task guests` first");

const BOOT_MS = 10 * 60_000;
const PROMPT = "Enter 'help' for a list of built-in commands.";

Deno.test({
  name: "api (interp, Linux): SendCtrlAltDel reboots; a paused shell's snapshot resumes elsewhere",
  ignore: !present,
  fn: async () => {
    const dir = Deno.makeTempDirSync({ prefix: "dv-api-linux-" });
    const first = new VmProcess(`${dir}/a.sock`, ["--linux", "--backend", "interp"], {
      timeoutMs: BOOT_MS,
    });
    let second: VmProcess | null = null;
    try {
      await first.ready();
      await first.output(PROMPT, BOOT_MS);
      await new Promise((r) => setTimeout(r, 500));
      assertEquals((await first.call("PATCH", "/vm", { state: "Paused" })).status, 204);
      const snap = { snapshot_path: `${dir}/vm.state`, mem_file_path: `${dir}/vm.mem` };
      const created = await first.call("PUT", "/snapshot/create", snap);
      const snapshotted = created.status === 204;
      if (!snapshotted) console.warn(`note: no Linux snapshot: ${created.body}`);
      assertEquals((await first.call("PATCH", "/vm", { state: "Resumed" })).status, 204);

      const cad = await first.call("PUT", "/actions", { action_type: "SendCtrlAltDel" });
      assertEquals(cad.status, 204, cad.body);
      assertEquals(await first.exited, 0, first.stderr);
      assertIncludes(first.stdout, "reboot: Restarting system");

      if (!snapshotted) return;
      second = new VmProcess(`${dir}/b.sock`, [], { timeoutMs: BOOT_MS, stdin: true });
      await second.ready();
      const loaded = await second.call("PUT", "/snapshot/load", {
        snapshot_path: snap.snapshot_path,
        mem_backend: { backend_type: "File", backend_path: snap.mem_file_path },
        resume_vm: true,
      });
      assertEquals(loaded.status, 204, loaded.body);
      await second.type("echo restored-$((6 * 7))\n");
      await second.output("restored-42", 120_000);
      assertEquals(
        (await second.call("PUT", "/actions", { action_type: "SendCtrlAltDel" })).status,
        204,
      );
      assertEquals(await second.exited, 0, second.stderr);
      assertIncludes(second.stdout, "reboot: Restarting system");
    } finally {
      first.kill();
      await first.exited;
      second?.kill();
      await second?.exited;
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
