/**
 * Debian's kernel drives the virtio-console (`--console virtio`, whose `--exec` initramfs loads
 * virtio_console): what the guest writes to /dev/hvc0 comes out on the VMM's console. On the
 * interpreter (this test's nested KVM host, kvm_pvm, cannot run Linux).
 */

import { assertEquals, assertIncludes } from "./_assert.ts";
import { ROOT, runCli } from "./_run.ts";

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux console test skipped: run `deno task guests` first");

Deno.test({
  name: "[interp] Linux writes to hvc0 on --console virtio and it reaches the VMM's stdout",
  ignore: !present,
  async fn() {
    const r = await runCli([
      "--backend",
      "interp",
      "--console",
      "virtio",
      "--exec",
      // The command's own stdout goes to hvc0: only the device can bring the text out.
      "echo hello-from-hvc0 > /dev/hvc0 && echo hvc0-write=$?",
    ], { timeoutMs: 120_000 });
    assertEquals(r.status, 0, r.stderr);
    assertIncludes(r.stdout, "hello-from-hvc0"); // hvc0 is a tty: "\r\n" ends the line
    assertIncludes(r.stdout, "hvc0-write=0");
  },
});
