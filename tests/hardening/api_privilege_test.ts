/**
 * Least privilege in the API's lifecycle mode (issue 13): the machine's Worker starts with the
 * command that makes the machine, with only the permissions that machine needs
 * (core/vm_permissions.ts `lifecyclePermissions`), plus each `--allow-path`. What the API names
 * while the VM runs is done by the main thread: it writes snapshots (core/snapshot/handoff.ts) and
 * holds the migration sockets (core/migration/broker.ts), so the Worker has no `net` at all.
 */
import { assertEquals, assertIncludes, assertTrue } from "../_assert.ts";
import { BACKENDS, ROOT, runCli } from "../_run.ts";
import { COUNTER, VmProcess } from "../api/_api.ts";
import { parseCli } from "../../core/cli.ts";
import type { VmConfig } from "../../core/vm.ts";
import { lifecyclePermissions, permits } from "../../core/vm_permissions.ts";

const READER = "./tests/hardening/fixtures/host_reader.ts";
const CWD = ROOT.replace(/\/$/, "");

function config(args: string[]): VmConfig {
  const c = parseCli(args);
  if (typeof c === "string") throw new Error(c);
  return c;
}

for (const backend of BACKENDS) {
  Deno.test(`--api-sock: a trusted device reading /etc/hostname in the machine's Worker is denied (${backend})`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: "dv-api-lp-" });
    const vm = new VmProcess(`${dir}/api.sock`, [
      "--backend",
      backend,
      "--kernel",
      COUNTER,
      "--device",
      `${READER},trusted,read=outside`,
    ]);
    try {
      const status = await vm.exited;
      assertEquals(status, 1, vm.stderr);
      assertIncludes(
        vm.stderr,
        'Device "host-reader" tried to read a file ("/etc/hostname") while starting and was denied',
      );
      assertTrue(!vm.stderr.includes("    at "), `no stack trace:\n${vm.stderr}`);
    } finally {
      vm.kill();
      await vm.exited;
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

Deno.test("the API's machine: its own files and --allow-path, no net, run or sys; snapshot paths are not its", async () => {
  const base = config([
    "--backend",
    "interp",
    "--kernel",
    "tests/api/guests/counter.bin",
    "--serial",
    "file:/tmp/dv-api-lp.log",
  ]);
  const p = await lifecyclePermissions({ config: base }, ["/tmp/dv-allowed"], CWD);
  assertTrue(p !== "inherit");
  const read = p.read as string[], write = p.write as string[];
  assertTrue(read.includes(COUNTER), `the kernel: ${read}`);
  assertTrue(read.includes("/tmp/dv-api-lp.log"), "the serial log (a standby sizes it)");
  assertEquals(write.sort(), ["/tmp/dv-allowed", "/tmp/dv-api-lp.log"]);
  assertEquals([p.net, p.run, p.sys, p.ffi], [false, false, false, false]);
  // Granted paths cover what is under them, and nothing beside or above.
  assertTrue(permits(p, "write", "/tmp/dv-allowed/sub/disk.img"));
  assertTrue(!permits(p, "write", "/tmp/dv-allowed-not/disk.img"));
  assertTrue(!permits(p, "read", "/tmp/dv-allowed/../../etc/hostname"));
  assertTrue(!permits(p, "write", "/tmp/vm.state"), "a snapshot's path is the main thread's");
  assertTrue(permits("inherit", "write", "/anything"));

  // A snapshot load reads its two files; the backend it names decides ffi.
  const load = await lifecyclePermissions(
    {
      config: base,
      restore: { statePath: "/tmp/s/vm.state", memPath: "/tmp/s/vm.mem" },
      backend: "kvm",
    },
    [],
    CWD,
  );
  assertTrue(load !== "inherit");
  assertTrue(permits(load, "read", "/tmp/s/vm.state") && permits(load, "read", "/tmp/s/vm.mem"));
  assertTrue(!permits(load, "write", "/tmp/s/vm.mem"));
  assertEquals([load.ffi, load.net], [true, false]);
});

Deno.test("--allow-path without the API's modes is refused: the plain CLI names every file", async () => {
  const r = await runCli(["--allow-path", "/tmp", "--kernel", COUNTER]);
  assertEquals(r.status, 2, r.stderr);
  assertIncludes(
    r.stderr,
    "denovisor: --allow-path goes with --api-sock, --name, --incoming or --standby",
  );
});

Deno.test("a migrating VM's drive opens on the destination only inside --allow-path; refused, it runs on at the source", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-api-lp-mig-" });
  const disk = `${dir}/disk.img`;
  Deno.writeFileSync(disk, new Uint8Array(64 * 1024));
  const url = `unix:${dir}/mig.sock`;
  const waiting = "migration: waiting for the VM on";
  const src = new VmProcess(`${dir}/src.sock`, [
    "--backend",
    "interp",
    "--kernel",
    COUNTER,
    "--drive",
    disk,
  ], { timeoutMs: 60_000 });
  const procs = [src];
  try {
    await src.ready();
    // Without --allow-path the destination's machine may not open the drive: it refuses the VM.
    const denied = new VmProcess(`${dir}/dst1.sock`, ["--incoming", url, "--backend", "interp"]);
    procs.push(denied);
    await denied.diagnostic(waiting, 30_000);
    const r1 = await src.call("PUT", "/migration/send", { destination_url: url });
    assertEquals(r1.status, 400, r1.body);
    assertIncludes(
      String(r1.json?.fault_message),
      `Cannot open drive "${disk}": the VM may open only the files it was started with`,
    );
    assertIncludes(String(r1.json?.fault_message), `start the VMM with --allow-path ${disk}`);
    assertEquals((await src.call("GET", "/")).json?.state, "Running", "the VM runs on here");
    // With it, the VM moves.
    const allowed = new VmProcess(`${dir}/dst2.sock`, [
      "--incoming",
      url,
      "--backend",
      "interp",
      "--allow-path",
      dir,
    ], { timeoutMs: 60_000 });
    procs.push(allowed);
    await allowed.diagnostic(waiting, 30_000);
    const r2 = await src.call("PUT", "/migration/send", { destination_url: url });
    assertEquals(r2.status, 200, r2.body);
    assertEquals(await src.exited, 0, src.stderr);
    await allowed.diagnostic("migration: the VM arrived", 30_000);
  } finally {
    for (const p of procs) p.kill();
    await Promise.all(procs.map((p) => p.exited));
    Deno.removeSync(dir, { recursive: true });
  }
});
