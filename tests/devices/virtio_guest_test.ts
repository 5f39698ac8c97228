/**
 * A guest's own virtio driver on every backend: `guests/virtio_blk_guest.asm` (32-bit protected
 * mode, polling, no interrupts, so it runs on the nested kvm_pvm KVM too) negotiates with the
 * `--drive` device at 0xD0000000, reads sector 0, writes sector 1 (the host file has it after)
 * and gets DEVICE_NEEDS_RESET for a descriptor loop, which the VMM reports and survives.
 */

import { assertEquals, assertIncludes } from "../_assert.ts";
import { BACKENDS, ROOT, runCli } from "../_run.ts";

const GUEST = `${ROOT}tests/devices/guests/virtio_blk_guest.bin`;

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] a polling guest driver reads and writes a virtio-blk drive`, async () => {
    const image = await Deno.makeTempFile({ suffix: ".img" });
    try {
      const disk = new Uint8Array(64 * 512);
      disk.set(new TextEncoder().encode("DENOVISOR-DISK\n"));
      await Deno.writeFile(image, disk);
      const r = await runCli([
        "--backend",
        backend,
        "--kernel",
        GUEST,
        "--format",
        "flat",
        "--mem",
        "16M",
        "--drive",
        image,
      ]);
      assertEquals(r.status, 0, r.stdout + r.stderr);
      assertEquals(
        r.stdout,
        "capacity 0x00000040\nsector 0: DENOVISOR-DISK\nsector 1 written\n" +
          "loop: DEVICE_NEEDS_RESET\nVIRTIO-GUEST-OK\n",
      );
      assertIncludes(r.stderr, "device needs reset: queue 0: descriptor chain from head 0 loops");
      const after = await Deno.readFile(image);
      assertEquals(new TextDecoder().decode(after.subarray(512, 529)), "WRITTEN-BY-GUEST\n");
    } finally {
      await Deno.remove(image);
    }
  });
}

Deno.test("--drive with a missing image ends with 1, naming it; a bad option with 2", async () => {
  const missing = await runCli(["--backend", "interp", "--drive", "/nonexistent/disk.img"]);
  assertEquals(missing.status, 1, missing.stderr);
  assertIncludes(missing.stderr, 'Cannot open drive "/nonexistent/disk.img": no such file');
  const bad = await runCli(["--backend", "interp", "--drive", "disk.img,rw"]);
  assertEquals(bad.status, 2, bad.stderr);
  assertIncludes(bad.stderr, 'unknown option "rw"');
});
