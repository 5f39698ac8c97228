/**
 * A VM's network card follows it without Linux: the counter guest (which ignores its card)
 * with `--net switch=PATH` is live-migrated to an `--incoming` process, which joins the same
 * switch while the VM arrives (the source's port goes, the destination's stays and the counter
 * finishes there); and a snapshot of it restored with the plain CLI's `--restore` joins the
 * switch again. A snapshot whose switch is gone refuses the load, naming the socket.
 */

import { assertEquals, assertIncludes, assertTrue } from "../_assert.ts";
import { ROOT, runCli } from "../_run.ts";
import { sleep, VmProcess } from "../api/_api.ts";
import { EthernetSwitch, listenSwitch } from "../../core/net/switch.ts";

const COUNTER = `${ROOT}tests/migration/guests/long_counter.bin`;
const OUTPUT = Array.from({ length: 80 }, (_, i) => `tick ${String(i).padStart(2, "0")}\n`)
  .join("");

Deno.test("a --net card rejoins its switch on the migration's destination and on --restore; a gone switch refuses the load", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-net-follow-" });
  const path = `${dir}/switch.sock`;
  const joined: string[] = [];
  const sw = new EthernetSwitch(await listenSwitch(path), (m) => joined.push(m));
  const serving = sw.serve();
  const procs: VmProcess[] = [];
  try {
    const net = ["--net", `switch=${path},mac=02:00:00:00:00:05,id=lan`];
    // Live migration.
    const url = `unix:${dir}/mig.sock`;
    const dst = new VmProcess(`${dir}/dst.sock`, ["--incoming", url, "--backend", "interp"]);
    procs.push(dst);
    await dst.diagnostic("migration: waiting for the VM on", 30_000);
    const src = new VmProcess(`${dir}/src.sock`, [
      "--kernel",
      COUNTER,
      "--mem",
      "64M",
      "--backend",
      "interp",
      ...net,
    ]);
    procs.push(src);
    await src.lines(3, 30_000);
    assertEquals(sw.ports.size, 1);
    const r = await src.call("PUT", "/migration/send", { destination_url: url });
    assertEquals(r.status, 200, `${r.body}; ${src.stderr}; ${dst.stderr}`);
    await src.exited;
    assertEquals(await dst.exited, 33, dst.stderr);
    assertEquals(src.stdout + dst.stdout, OUTPUT);
    // Two connections: the source, and the destination while the VM arrived.
    assertEquals(joined.filter((m) => m.endsWith(" connected")).length, 2, joined.join("; "));
    assertTrue(!dst.stderr.includes("link is down"), dst.stderr);

    // A snapshot, restored by the plain CLI.
    const vm = new VmProcess(`${dir}/snap.sock`, [
      "--kernel",
      COUNTER,
      "--mem",
      "64M",
      "--backend",
      "interp",
      ...net,
    ]);
    procs.push(vm);
    await vm.lines(3, 30_000);
    assertEquals((await vm.call("PATCH", "/vm", { state: "Paused" })).status, 204);
    const state = `${dir}/vm.state`, mem = `${dir}/vm.mem`;
    const snap = await vm.call("PUT", "/snapshot/create", {
      snapshot_path: state,
      mem_file_path: mem,
    });
    assertEquals(snap.status, 204, snap.body);
    vm.kill();
    await vm.exited;
    while (sw.ports.size > 0) await sleep(10);
    const before = joined.filter((m) => m.endsWith(" connected")).length;
    const restored = await runCli(["--restore", state, "--mem-file", mem], { timeoutMs: 60_000 });
    assertEquals(restored.status, 33, restored.stderr);
    assertTrue(OUTPUT.endsWith(restored.stdout) && restored.stdout.length > 0, restored.stdout);
    assertEquals(joined.filter((m) => m.endsWith(" connected")).length, before + 1);

    // The switch gone: the load is refused, naming its socket.
    sw.close();
    await serving.catch(() => {});
    const refused = await runCli(["--restore", state, "--mem-file", mem], { timeoutMs: 60_000 });
    assertTrue(refused.status !== 0 && refused.status !== 33, String(refused.status));
    assertIncludes(refused.stderr, `--net switch=${path}: cannot join the switch`);
  } finally {
    for (const p of procs) {
      p.kill();
      await p.exited;
    }
    sw.close();
    await serving.catch(() => {});
    Deno.removeSync(dir, { recursive: true });
  }
});
