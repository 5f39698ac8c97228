/**
 * Debian's kernel drives the virtio devices (`--exec`, whose initramfs loads virtio_mmio,
 * virtio_blk and virtio_rng): it finds them through the DSDT's LNRO0005 nodes on edge-triggered
 * IOAPIC lines, reads a raw image whose digest equals the host's, writes a sector the host then
 * sees, gets GET_ID's serial, is refused writes on a read-only drive and reads /dev/hwrng.
 */

import { assertEquals, assertIncludes, assertTrue } from "./_assert.ts";
import { BACKENDS, ROOT, runCli } from "./_run.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux virtio tests skipped: run `deno task guests` first");
// The nested kvm_pvm host cannot run Linux.
const backends = BACKENDS.filter((b) => b !== "kvm" || hostKvmFlavor() !== "kvm_pvm");

async function md5(bytes: Uint8Array): Promise<string> {
  // WebCrypto has no MD5: ask the host's md5sum, as the guest's busybox does.
  const p = new Deno.Command("md5sum", { stdin: "piped", stdout: "piped" }).spawn();
  const w = p.stdin.getWriter();
  await w.write(bytes);
  await w.close();
  return new TextDecoder().decode((await p.output()).stdout).split(" ")[0]!;
}

for (const backend of backends) {
  Deno.test({
    name: `[${backend}] Linux reads and writes a virtio-blk drive, honours ro, reads virtio-rng`,
    ignore: !present,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        const rw = `${dir}/rw.img`, ro = `${dir}/ro.img`;
        const data = crypto.getRandomValues(new Uint8Array(1 << 16));
        const image = new Uint8Array(2 << 20);
        for (let i = 0; i < image.length; i += data.length) image.set(data, i);
        image.set(new TextEncoder().encode("DENOVISOR-DISK\n"));
        await Deno.writeFile(rw, image);
        await Deno.writeFile(ro, image.subarray(0, 1 << 20));
        const cmd = [
          "cat /sys/block/vda/serial; echo",
          "md5sum /dev/vda /dev/vdb",
          "printf DENOVISOR-WROTE | dd of=/dev/vda bs=512 seek=100 conv=notrunc,fsync 2>/dev/null",
          "echo write=$?",
          "cat /sys/block/vdb/ro",
          "if printf x | dd of=/dev/vdb bs=512 seek=1 conv=fsync 2>/dev/null; then echo ro-write=ok; else echo ro-write=refused; fi",
          "echo hwrng=$(head -c 64 /dev/hwrng | wc -c) $(cat /sys/class/misc/hw_random/rng_current)",
          "grep virtio /proc/interrupts",
        ].join("; ");
        const r = await runCli([
          "--exec",
          cmd,
          "--backend",
          backend,
          "--drive",
          `${rw},id=rootdisk`,
          "--drive",
          `${ro},ro`,
          "--rng",
        ], { timeoutMs: 10 * 60_000 });
        assertEquals(r.status, 0, r.stdout + r.stderr);
        assertIncludes(r.stdout, "rootdisk\n");
        assertIncludes(r.stdout, `${await md5(image)}  /dev/vda`);
        assertIncludes(r.stdout, `${await md5(image.subarray(0, 1 << 20))}  /dev/vdb`);
        assertIncludes(r.stdout, "write=0\n");
        assertIncludes(r.stdout, "\n1\nro-write=refused\n");
        assertIncludes(r.stdout, "hwrng=64 virtio_rng.0");
        // Three devices on edge-triggered IOAPIC lines 5, 6 and 7, as the DSDT says.
        for (const [line, dev] of [[5, 0], [6, 1], [7, 2]]) {
          assertTrue(
            new RegExp(`^\\s*${line}:\\s+\\d+\\s+IO-APIC\\s+${line}-edge\\s+virtio${dev}$`, "m")
              .test(r.stdout),
            r.stdout,
          );
        }
        const after = await Deno.readFile(rw);
        assertEquals(
          new TextDecoder().decode(after.subarray(100 * 512, 100 * 512 + 15)),
          "DENOVISOR-WROTE",
        );
        assertEquals(after.subarray(0, 100 * 512), image.subarray(0, 100 * 512));
        assertEquals(await Deno.readFile(ro), image.subarray(0, 1 << 20));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
