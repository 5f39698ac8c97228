/**
 * Least privilege for the VMM itself (issue 13): the plain CLI runs the machine in a Worker with
 * only the permissions its VmConfig needs (core/vm_permissions.ts). A trusted device running
 * there is denied a read outside that allowance (one clear line, status 1), and reads inside it
 * (its own module, a file its options name) work.
 */
import { assertEquals, assertIncludes, assertTrue } from "../_assert.ts";
import { BACKENDS, ROOT, runCli } from "../_run.ts";
import { parseCli } from "../../core/cli.ts";
import type { VmConfig } from "../../core/vm.ts";
import { needsAllAccess, vmPermissions } from "../../core/vm_permissions.ts";

const READER = "./tests/hardening/fixtures/host_reader.ts";

for (const backend of BACKENDS) {
  Deno.test(`a trusted device reading /etc/hostname at attach time is denied: status 1, one clear line (${backend})`, async () => {
    const r = await runCli(["--backend", backend, "--device", `${READER},trusted,read=outside`]);
    assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(
      r.stderr,
      'denovisor: Device "host-reader" tried to read a file ("/etc/hostname") while starting and ' +
        "was denied: the VM runs with only the permissions it needs (its kernel, initrd, drives, " +
        'serial file and device modules; see README "Permissions")\n',
    );
    assertTrue(!r.stderr.includes("    at "), `no stack trace:\n${r.stderr}`);
  });
}

Deno.test("a trusted device reads inside its allowance: its own module, a file its options name", async () => {
  const self = await runCli(["--backend", "interp", "--device", `${READER},trusted,read=self`]);
  assertTrue(self.status === 0, `status ${self.status}, stderr:\n${self.stderr}`);
  assertIncludes(self.stderr, "host-reader: read ");
  assertIncludes(self.stderr, " bytes of self\n");
  const opt = await runCli([
    "--backend",
    "interp",
    "--device",
    `${READER},trusted,read=option,file=README.md`,
  ]);
  assertTrue(opt.status === 0, `status ${opt.status}, stderr:\n${opt.stderr}`);
  assertIncludes(opt.stderr, ` bytes of option\n`);
});

function config(args: string[]): VmConfig {
  const c = parseCli(args);
  if (typeof c === "string") throw new Error(c);
  return c;
}

Deno.test("the machine's permissions: files of this VM only, ffi only for KVM, no net, run or sys", async () => {
  const p = await vmPermissions(
    config([
      "--backend",
      "interp",
      "--kernel",
      "tests/guests/hello_multiboot.elf",
      "--drive",
      "README.md,ro",
      "--drive",
      "deno.json",
      "--serial",
      "file:/tmp/denovisor-lp-serial.log",
    ]),
    ROOT.replace(/\/$/, ""),
  );
  assertTrue(p !== "inherit");
  const read = p.read as string[], write = p.write as string[];
  for (const f of ["tests/guests/hello_multiboot.elf", "README.md", "deno.json"]) {
    assertTrue(read.includes(`${ROOT}${f}`), `read ${f}: ${read}`);
  }
  assertTrue(read.includes(`${ROOT}devices/uart16550.ts`), "the built-in devices' modules");
  assertTrue(read.every((f) => !f.endsWith("/") && !f.startsWith("/etc")), `${read}`);
  assertEquals(write.sort(), [`${ROOT}deno.json`, "/tmp/denovisor-lp-serial.log"].sort());
  assertEquals(p.ffi, false);
  assertEquals(p.env, ["DENOVISOR_INTERP_JIT"]);
  assertEquals([p.net, p.run, p.sys, p.import], [false, false, false, false]);

  const kvm = await vmPermissions(config(["--backend", "kvm"]), ROOT.replace(/\/$/, ""));
  assertTrue(kvm !== "inherit");
  assertEquals([kvm.ffi, kvm.env, kvm.write], [true, false, false]);
});

Deno.test("a VM that must open a device file itself keeps the VMM's permissions", async () => {
  assertTrue(needsAllAccess("/dev/full") && needsAllAccess("/proc/cpuinfo"));
  assertTrue(!needsAllAccess("/dev/null") && !needsAllAccess("/devices/x"));
  const p = await vmPermissions(config(["--serial", "file:/dev/full"]), ROOT.replace(/\/$/, ""));
  assertEquals(p, "inherit");
});

const EXEC_KERNEL = `${ROOT}.cache/guests/vmlinux`;
const haveExecGuest = (() => {
  try {
    return Deno.statSync(EXEC_KERNEL).isFile;
  } catch {
    return false;
  }
})();
if (!haveExecGuest) console.warn("note: --exec confinement test skipped: run `deno task guests`");

Deno.test({
  name: "--exec runs its machine confined too: a trusted device reading /etc/hostname is denied",
  ignore: !haveExecGuest,
  async fn() {
    const r = await runCli([
      "--exec",
      "true",
      "--backend",
      "interp",
      "--device",
      `${READER},trusted,read=outside`,
    ]);
    assertTrue(r.status === 125, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(r.stderr, 'Device "host-reader" tried to read a file ("/etc/hostname")');
    assertIncludes(r.stderr, "was denied: the VM runs with only the permissions it needs");
    assertTrue(!r.stderr.includes("    at "), `no stack trace:\n${r.stderr}`);
  },
});
