/**
 * The kernel-module resolver (core/boot/modules.ts): load order from a modules.dep, names with
 * `-` and `_`, built-in and unknown modules, soft dependencies; on the modules.dep `deno task
 * guests` made from Debian's kernel package (skipped when the cache lacks it); and the cache
 * builder on that package, including an `.xz`-compressed module (when the host has xz).
 */

import { assertEquals, assertThrows, assertTrue } from "../../_assert.ts";
import { ROOT } from "../../_run.ts";
import {
  loadModuleSet,
  moduleName,
  parseModulesDep,
  prepareModules,
  readModinfo,
  resolveModules,
  UnknownModuleError,
  VMM_MODULES,
} from "../../../core/boot/modules.ts";

const DEP = `kernel/c.ko:
kernel/b-two.ko: kernel/c.ko
kernel/a.ko: kernel/b-two.ko kernel/c.ko
kernel/d.ko: kernel/c.ko kernel/b-two.ko
kernel/s.ko:
`;

Deno.test("resolveModules: dependencies first, each module once, '-' and '_' alike", () => {
  const dep = parseModulesDep(DEP);
  assertEquals(resolveModules(dep, ["a"]), ["kernel/c.ko", "kernel/b-two.ko", "kernel/a.ko"]);
  // d's line lists b after c: the order comes from each module's own line, not the listing.
  assertEquals(resolveModules(dep, ["d", "a", "b_two"]), [
    "kernel/c.ko",
    "kernel/b-two.ko",
    "kernel/d.ko",
    "kernel/a.ko",
  ]);
  assertEquals(moduleName("kernel/drivers/char/hw_random/virtio-rng.ko.xz"), "virtio_rng");
});

Deno.test("resolveModules: built-in names are skipped, unknown ones refused, softdeps first", () => {
  const dep = parseModulesDep(DEP);
  assertEquals(resolveModules(dep, ["ext4", "c"], { builtin: new Set(["ext4"]) }), [
    "kernel/c.ko",
  ]);
  const err = assertThrows(() => resolveModules(dep, ["nope"]), UnknownModuleError);
  assertEquals(err.module, "nope");
  assertEquals(
    resolveModules(dep, ["a"], { softdeps: new Map([["a", ["s", "not_a_module"]]]) }),
    ["kernel/s.ko", "kernel/c.ko", "kernel/b-two.ko", "kernel/a.ko"],
  );
});

const CACHE = `${ROOT}.cache/guests/`;
function release(): string | null {
  try {
    return Deno.readTextFileSync(`${CACHE}kernel-package`).trim().replace(/^linux-image-/, "");
  } catch {
    return null;
  }
}
const REL = release();
const haveDep = REL !== null && (() => {
  try {
    return Deno.statSync(`${CACHE}modules/${REL}/modules.dep`).isFile;
  } catch {
    return false;
  }
})();
if (!haveDep) {
  console.warn("note: modules.dep tests skipped: run `deno task guests` to fetch the kernel");
}

Deno.test({
  name: "resolveModules on Debian's modules.dep: virtio, 9p, vsock and ext4 in load order",
  ignore: !haveDep,
  async fn() {
    const set = await loadModuleSet(`${CACHE}modules`, REL!);
    const order = resolveModules(set.dep, VMM_MODULES, {
      builtin: set.builtin,
      softdeps: set.softdeps,
    });
    const names = order.map(moduleName);
    const before = (a: string, b: string) =>
      assertTrue(names.indexOf(a) >= 0 && names.indexOf(a) < names.indexOf(b), `${a} < ${b}`);
    before("virtio_ring", "virtio");
    before("virtio", "virtio_mmio");
    before("virtio", "virtio_blk");
    before("9pnet", "9pnet_virtio");
    before("netfs", "9p");
    before("vsock", "vmw_vsock_virtio_transport_common");
    before("vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport");
    before("jbd2", "ext4");
    before("mbcache", "ext4");
    assertEquals(new Set(names).size, names.length);
    // Each module's file is there, and its own .modinfo agrees with modules.dep.
    for (const p of order) {
      const info = readModinfo(await Deno.readFile(`${set.dir}/${p}`), p);
      const depends = info.filter(([k]) => k === "depends").flatMap(([, v]) => v.split(","))
        .filter((d) => d !== "").map((d) => d.replaceAll("-", "_")).sort();
      const direct = set.dep.get(moduleName(p))!.deps.map(moduleName);
      for (const d of depends) assertTrue(direct.includes(d), `${p}: ${d} in modules.dep`);
      assertTrue(info.some(([k, v]) => k === "vermagic" && v.startsWith(REL!)), `${p} vermagic`);
    }
  },
});

const PKG = REL === null ? null : `${CACHE}linux-image-${REL}`;
const havePkg = PKG !== null && (() => {
  try {
    return Deno.statSync(`${PKG}/lib/modules/${REL}/kernel`).isDirectory;
  } catch {
    return false;
  }
})();
const haveXz = (() => {
  try {
    return new Deno.Command("xz", { args: ["--version"], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();
if (havePkg && !haveXz) {
  console.warn("note: the .ko.xz test is skipped: no xz here (apt-get install xz-utils)");
}

Deno.test({
  name: "prepareModules: modules.dep from .modinfo, an .xz module decompressed for insmod",
  ignore: !havePkg || !haveXz,
  async fn() {
    const tmp = await Deno.makeTempDir();
    try {
      // A tree with virtio_mmio and its dependencies, virtio.ko compressed as Debian 13 ships it.
      const src = `${PKG}/lib/modules/${REL}`;
      const root = `${tmp}/pkg`, kdir = `${root}/lib/modules/${REL}/kernel/drivers/virtio`;
      await Deno.mkdir(kdir, { recursive: true });
      for (const m of ["virtio", "virtio_ring", "virtio_mmio"]) {
        await Deno.copyFile(`${src}/kernel/drivers/virtio/${m}.ko`, `${kdir}/${m}.ko`);
      }
      const xz = new Deno.Command("xz", { args: ["--check=crc32", `${kdir}/virtio.ko`] });
      assertTrue((await xz.output()).success, "xz");
      const got = await prepareModules(root, `${tmp}/out`, ["virtio_mmio"]);
      assertEquals(got.copied, [
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/virtio/virtio_mmio.ko",
      ]);
      assertEquals(
        await Deno.readFile(`${got.dir}/kernel/drivers/virtio/virtio.ko`),
        await Deno.readFile(`${src}/kernel/drivers/virtio/virtio.ko`),
      );
      const dep = await Deno.readTextFile(`${got.dir}/modules.dep`);
      assertTrue(
        dep.includes(
          "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko " +
            "kernel/drivers/virtio/virtio_ring.ko\n",
        ),
        dep,
      );
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
