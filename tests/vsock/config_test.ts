/**
 * How a vsock is configured: `--vsock cid=N,uds=PATH` (parsed, refused with the fix, a taken
 * path refused at start) and `PUT /vsock` before the boot (Firecracker's body, `vsock_id`
 * accepted and ignored), reported by `GET /vm/config`; the `--exec` module list; and the
 * Worker permissions, which need nothing for the vsock's sockets (the main thread owns them).
 */

import { assertEquals, assertIncludes, assertThrows, assertTrue as assert } from "../_assert.ts";
import { parseCli } from "../../core/cli.ts";
import { UsageError } from "../../core/errors.ts";
import { parseVsock } from "../../core/vsock/spec.ts";
import { execModules } from "../../core/exec/main.ts";
import { vmPermissions } from "../../core/vm_permissions.ts";
import type { VmConfig } from "../../core/vm.ts";
import { runCli } from "../_run.ts";
import { COUNTER, VmProcess } from "../api/_api.ts";

Deno.test("--vsock cid=N,uds=PATH is parsed; bad values are refused saying what to give", () => {
  assertEquals(parseVsock("cid=3,uds=/tmp/v.sock"), { cid: 3, uds: "/tmp/v.sock" });
  assertEquals(parseVsock("uds=v.sock,cid=4294967294"), { cid: 4294967294, uds: "v.sock" });
  const cases: [string, string][] = [
    ["cid=2,uds=/tmp/v", "is not allowed: give a whole number from 3"],
    ["cid=0,uds=/tmp/v", "from 3 to 4294967294"],
    ["cid=4294967295,uds=/tmp/v", "from 3 to 4294967294"],
    ["cid=-5,uds=/tmp/v", "from 3"],
    ["cid=x,uds=/tmp/v", "from 3"],
    ["uds=/tmp/v", "cid is missing"],
    ["cid=3", "uds is missing"],
    ["cid=3,uds=", "non-empty file path"],
    ["cid=3,uds=/tmp/v,mode=x", 'unknown or repeated option "mode=x"'],
    ["cid=3,cid=4,uds=/tmp/v", 'unknown or repeated option "cid=4"'],
    [`cid=3,uds=/${"x".repeat(100)}`, "too long for a unix socket"],
  ];
  for (const [spec, words] of cases) assertThrows(() => parseVsock(spec), UsageError, words);
  const c = parseCli(["--vsock", "cid=9,uds=/tmp/v.sock"]) as VmConfig;
  assertEquals(c.vsock, { cid: 9, uds: "/tmp/v.sock" });
  assertThrows(
    () => parseCli(["--vsock", "cid=9,uds=/a", "--vsock", "cid=10,uds=/b"]),
    UsageError,
    "--vsock is given more than once",
  );
  assertThrows(
    () => parseCli(["--restore", "s", "--mem-file", "m", "--vsock", "cid=9,uds=/a"]),
    UsageError,
    "--restore cannot be combined with --vsock",
  );
});

Deno.test("--exec loads vsock and its virtio transport when a vsock is configured", () => {
  const c = parseCli(["--vsock", "cid=9,uds=/tmp/v.sock"]) as VmConfig;
  const mods = execModules(c);
  assertEquals(mods.slice(-3), [
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
  ]);
  assert(!execModules(parseCli([]) as VmConfig).includes("vsock"));
});

Deno.test("the machine's Worker gets no access to the vsock's sockets (the main thread's)", async () => {
  const c = parseCli([
    "--backend",
    "interp",
    "--vsock",
    "cid=9,uds=/tmp/dnv-perm.sock",
  ]) as VmConfig;
  const p = await vmPermissions(c);
  assert(p !== "inherit");
  const perms = p as Deno.PermissionOptionsObject;
  assertEquals(perms.net, false);
  const lists = [perms.read, perms.write].flatMap((l) => Array.isArray(l) ? l : []);
  assert(!lists.some((f) => String(f).startsWith("/tmp/dnv-perm.sock")), "no socket path");
  // The device's module graph is readable (the machine imports it).
  const read = Array.isArray(perms.read) ? perms.read.map(String) : [];
  assert(read.some((f) => f.endsWith("devices/virtio/vsock.ts")), "vsock.ts readable");
  assert(read.some((f) => f.endsWith("core/vsock/wire.ts")), "its wire module readable");
});

Deno.test("--vsock on a path a running process listens on is refused before the VM starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dnv-vsock-" });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/taken.sock` });
  try {
    const r = await runCli(["--backend", "interp", "--vsock", `cid=5,uds=${dir}/taken.sock`]);
    assertEquals(r.status, 1, r.stderr);
    assertIncludes(r.stderr, `--vsock uds=${dir}/taken.sock: a running process listens there`);
    const bad = await runCli(["--vsock", "cid=1,uds=x"]);
    assertEquals(bad.status, 2);
    assertIncludes(bad.stderr, 'guest CID "1" is not allowed');
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PUT /vsock configures the vsock before the boot; GET /vm/config reports it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dnv-vsock-" });
  const vm = new VmProcess(`${dir}/api.sock`, ["--backend", "interp"]);
  const taken = Deno.listen({ transport: "unix", path: `${dir}/taken.sock` });
  try {
    await vm.ready();
    const fault = async (body: unknown, words: string) => {
      const r = await vm.call("PUT", "/vsock", body);
      assertEquals(r.status, 400, `${JSON.stringify(body)}: ${r.body}`);
      assertIncludes(String(r.json?.fault_message), words);
    };
    await fault({ uds_path: `${dir}/v.sock` }, 'missing field "guest_cid"');
    await fault({ guest_cid: 3 }, 'missing field "uds_path"');
    await fault({ guest_cid: 2, uds_path: `${dir}/v.sock` }, "guest CID 2 is not allowed");
    await fault({ guest_cid: "3", uds_path: `${dir}/v.sock` }, '"guest_cid" must be an integer');
    await fault({ guest_cid: 3, uds_path: `${dir}/v.sock`, cid: 1 }, 'unknown field "cid"');
    await fault({ guest_cid: 3, uds_path: `${dir}/taken.sock` }, "a running process listens");
    const none = await vm.call("GET", "/vm/config");
    assertEquals(none.json?.vsock, undefined);
    // Firecracker's body, with its deprecated vsock_id.
    const ok = await vm.call("PUT", "/vsock", {
      vsock_id: "vsock0",
      guest_cid: 3,
      uds_path: `${dir}/first.sock`,
    });
    assertEquals(ok.status, 204, ok.body);
    assert(Deno.lstatSync(`${dir}/first.sock`).isSocket, "listening at once");
    // A second PUT replaces it (the first socket goes away).
    const again = await vm.call("PUT", "/vsock", { guest_cid: 52, uds_path: `${dir}/v.sock` });
    assertEquals(again.status, 204, again.body);
    assertThrows(() => Deno.lstatSync(`${dir}/first.sock`), Deno.errors.NotFound);
    const cfg = await vm.call("GET", "/vm/config");
    assertEquals(cfg.json?.vsock, { guest_cid: 52, uds_path: `${dir}/v.sock` });
    // The VM boots with it and ends as the guest does; the socket is removed.
    assertEquals(
      (await vm.call("PUT", "/boot-source", { kernel_image_path: COUNTER })).status,
      204,
    );
    assertEquals((await vm.call("PUT", "/actions", { action_type: "InstanceStart" })).status, 204);
    await fault({ guest_cid: 3, uds_path: `${dir}/late.sock` }, "not supported after starting");
    assertEquals(await vm.exited, 33, vm.stderr);
    assertThrows(() => Deno.lstatSync(`${dir}/v.sock`), Deno.errors.NotFound);
  } finally {
    taken.close();
    vm.kill();
    await vm.exited;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a snapshot keeps the vsock: a restore listens on its uds again (or vsock_override's)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dnv-vsock-" });
  const vm = new VmProcess(`${dir}/api.sock`, ["--backend", "interp"]);
  const statePath = `${dir}/vm.state`, memPath = `${dir}/vm.mem`, uds = `${dir}/v.sock`;
  try {
    await vm.ready();
    assertEquals((await vm.call("PUT", "/vsock", { guest_cid: 11, uds_path: uds })).status, 204);
    assertEquals(
      (await vm.call("PUT", "/boot-source", { kernel_image_path: COUNTER })).status,
      204,
    );
    assertEquals((await vm.call("PUT", "/actions", { action_type: "InstanceStart" })).status, 204);
    assertEquals((await vm.call("PATCH", "/vm", { state: "Paused" })).status, 204);
    const snap = await vm.call("PUT", "/snapshot/create", {
      snapshot_path: statePath,
      mem_file_path: memPath,
    });
    assertEquals(snap.status, 204, snap.body);
    // The plain CLI's --restore, while the first VMM still listens there: refused, saying where.
    const busy = await runCli(["--restore", statePath, "--mem-file", memPath]);
    assertEquals(busy.status, 1, busy.stderr);
    assertIncludes(busy.stderr, `--vsock uds=${uds}: a running process listens there`);
    vm.kill();
    await vm.exited;
    // The first VMM is gone (its socket stale): the restore listens there and runs to the end.
    const ok = await runCli(["--restore", statePath, "--mem-file", memPath]);
    assertEquals(ok.status, 33, ok.stderr);
    // PUT /snapshot/load: vsock_override moves the socket; errors name the fix.
    const second = new VmProcess(`${dir}/api2.sock`, ["--backend", "interp"]);
    try {
      await second.ready();
      const taken = Deno.listen({ transport: "unix", path: uds });
      const load = (extra: Record<string, unknown>) =>
        second.call("PUT", "/snapshot/load", {
          snapshot_path: statePath,
          mem_backend: { backend_type: "File", backend_path: memPath },
          ...extra,
        });
      const refused = await load({});
      taken.close();
      assertEquals(refused.status, 400, refused.body);
      assertIncludes(String(refused.json?.fault_message), "vsock_override");
      const bad = await load({ vsock_override: { path: "x" } });
      assertIncludes(String(bad.json?.fault_message), 'unknown field "path"');
      const moved = await load({ vsock_override: { uds_path: `${dir}/moved.sock` } });
      assertEquals(moved.status, 204, moved.body);
      assert(Deno.lstatSync(`${dir}/moved.sock`).isSocket, "listening on the override");
    } finally {
      second.kill();
      await second.exited;
    }
  } finally {
    vm.kill();
    await vm.exited;
    await Deno.remove(dir, { recursive: true });
  }
});
