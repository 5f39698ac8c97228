/**
 * Boots Debian's kernel (fetched by `deno task guests`) on every backend that can run it here:
 * to a busybox /init that prints a marker with `uname -r` and the CPU count, runs a pipeline
 * and powers off; and into a kernel panic, which must end the VMM with the panic text visible.
 */

import { assertEquals, assertIncludes, assertTrue } from "./_assert.ts";
import { BACKENDS, ROOT, runCli } from "./_run.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";
import { hostCpuVendor } from "../core/cpu_model.ts";
import { parseSetupHeader } from "../core/boot/linux.ts";
import { buildInitramfs, gzip } from "../core/boot/cpio.ts";
import { TEST_MARKER } from "../tools/guests/initramfs.ts";

const DIR = `${ROOT}.cache/guests/`;
const KERNEL = `${DIR}bzImage`, TEST_INITRD = `${DIR}test-initramfs.cpio.gz`;
const present = [KERNEL, TEST_INITRD].every((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});
if (!present) {
  console.warn("note: Linux boot tests skipped: run `deno task guests` to fetch the kernel");
}

// The nested kvm_pvm host cannot run Linux (backend_select_test checks that it says so).
const backends = BACKENDS.filter((b) => b !== "kvm" || hostKvmFlavor() !== "kvm_pvm");
const BOOT_TIMEOUT_MS = 15 * 60_000;

/** Boots the fetched kernel with `initrd`, 256M and `console=ttyS0 panic=-1`. */
function bootLinux(backend: string, initrd: string, cpu = "host") {
  return runCli([
    "--cpu",
    cpu,
    "--backend",
    backend,
    "--kernel",
    KERNEL,
    "--initrd",
    initrd,
    "--mem",
    "256M",
    "--cmdline",
    "console=ttyS0 panic=-1",
  ], { timeoutMs: BOOT_TIMEOUT_MS });
}

for (const backend of backends) {
  Deno.test({
    name: `[${backend}] Debian's kernel boots to init, which reports uname -r and powers off`,
    ignore: !present,
    async fn() {
      const image = await Deno.readFile(KERNEL);
      // The release uname -r prints is the first word of the image's own version string.
      const release = parseSetupHeader(image, KERNEL).kernelVersion.split(" ")[0]!;
      const r = await bootLinux(backend, TEST_INITRD);
      assertIncludes(r.stdout, `${TEST_MARKER} release=${release} cpus=1`, r.stderr);
      assertIncludes(r.stdout, "DENOVISOR-PIPELINE words=3");
      assertTrue(!r.stdout.includes("Kernel panic"), r.stdout.slice(-2000));
      assertEquals(r.status, 0, r.stderr);
    },
  });

  Deno.test({
    name: `[${backend}] a kernel panic (no init) ends the VMM with the panic text visible`,
    ignore: !present,
    async fn() {
      // An initramfs with no /init: the kernel finds nothing to run and panics.
      const empty = await gzip(buildInitramfs([{ kind: "dir", path: "tmp", mode: 0o755 }]));
      const path = await Deno.makeTempFile({ suffix: ".cpio.gz" });
      try {
        await Deno.writeFile(path, empty);
        const r = await bootLinux(backend, path);
        assertIncludes(r.stdout, "Kernel panic - not syncing");
        // panic=-1 reboots at once; a reboot ends the VMM like any guest reset.
        assertEquals(r.status, 0, r.stderr);
      } finally {
        await Deno.remove(path);
      }
    },
  });
}

// The interpreter's model of the other vendor boots Linux too (the host's own is booted above).
const otherVendor = hostCpuVendor() === "amd" ? "intel" : "amd";
Deno.test({
  name: `[interp --cpu ${otherVendor}] Debian's kernel boots to init on the ${otherVendor} model`,
  ignore: !present,
  async fn() {
    const r = await bootLinux("interp", TEST_INITRD, otherVendor);
    assertIncludes(r.stdout, `${TEST_MARKER} release=`, r.stderr);
    const vendor = otherVendor === "intel" ? "Intel" : "AMD";
    assertIncludes(r.stdout, `smpboot: CPU0: ${vendor} Denovisor x86-64 CPU`);
    assertTrue(!r.stdout.includes("Kernel panic"), r.stdout.slice(-2000));
    assertEquals(r.status, 0, r.stderr);
  },
});
