/**
 * `--name` and `ctl`: many named VMs in one runtime directory (DENOVISOR_RUN_DIR, a temp dir
 * per test), listed, paused, resumed, snapshotted, restored under a new name and stopped, each
 * independently; stale entries of killed VMs cleaned; bad usage refused.
 */

import { assertEquals, assertIncludes, assertTrue } from "../_assert.ts";
import { ROOT } from "../_run.ts";
import { readRecord } from "../../core/run_dir.ts";

/** The idle guest: prints "up", then a dot a second, halted in between; a key resets it. */
const IDLE = `${ROOT}tests/ctl/guests/idle.bin`;

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `mod.ts ...args` with DENOVISOR_RUN_DIR=`dir`. */
async function run(dir: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "mod.ts", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENOVISOR_RUN_DIR: dir },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { status: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const ctl = (dir: string, ...args: string[]) => run(dir, ["ctl", ...args]);

/** A named VM process running the idle guest on the interpreter. */
class NamedVm {
  readonly child: Deno.ChildProcess;
  readonly exited: Promise<number>;
  constructor(dir: string, readonly name: string) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        "mod.ts",
        "--name",
        name,
        "--backend",
        "interp",
        "--mem",
        "16M",
        "--serial",
        "none",
        "--kernel",
        IDLE,
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "null",
      env: { NO_COLOR: "1", DENOVISOR_RUN_DIR: dir },
    }).spawn();
    this.exited = this.child.status.then((s) => s.code);
  }
  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Gone.
    }
  }
}

/** The list table as {name: state}. */
function table(out: string): Record<string, string> {
  const lines = out.trim().split("\n");
  assertEquals(lines[0]!.split(/\s+/), ["NAME", "STATE", "BACKEND", "MEMORY", "UPTIME"]);
  const rows: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const cols = line.split(/\s+/);
    rows[cols[0]!] = cols[1]!;
  }
  return rows;
}

async function listed(dir: string): Promise<Record<string, string>> {
  const r = await ctl(dir, "list");
  assertEquals(r.status, 0, r.stderr);
  return table(r.stdout);
}

/** Waits until `ctl list` shows `n` VMs, all Running (a VM is "Not started" for a moment). */
async function untilListed(dir: string, n: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await listed(dir);
    const states = Object.values(rows);
    if (states.length >= n && states.every((s) => s === "Running")) return;
    if (Date.now() > deadline) throw new Error(`list shows ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Kills whatever a record in `dir` still names (a failed test leaves no VM behind). */
function killAll(dir: string): void {
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (!e.name.endsWith(".json")) continue;
      const pid = readRecord(e.name.slice(0, -5), dir)?.pid;
      if (pid !== undefined && pid !== Deno.pid) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone.
        }
      }
    }
  } catch {
    // No directory.
  }
}

Deno.test("ctl: ten VMs at once: list, pause three, resume one, snapshot, restore, stop all", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-ctl-" });
  const snap = Deno.makeTempDirSync({ prefix: "dv-ctl-snap-" });
  const vms = Array.from({ length: 10 }, (_, i) => new NamedVm(dir, `vm${i}`));
  try {
    await untilListed(dir, 10);
    let rows = await listed(dir);
    assertEquals(Object.keys(rows).sort(), vms.map((v) => v.name).sort());
    for (const v of vms) assertEquals(rows[v.name], "Running", v.name);
    const full = await ctl(dir, "list");
    assertIncludes(full.stdout, "interp");
    assertIncludes(full.stdout, "16M");

    for (const name of ["vm1", "vm4", "vm7"]) {
      const r = await ctl(dir, "pause", name);
      assertEquals(r.status, 0, r.stderr);
    }
    rows = await listed(dir);
    for (const v of vms) {
      assertEquals(rows[v.name], ["vm1", "vm4", "vm7"].includes(v.name) ? "Paused" : "Running");
    }
    assertEquals((await ctl(dir, "resume", "vm4")).status, 0);
    const again = await ctl(dir, "pause", "vm1");
    assertEquals(again.status, 1, "pausing a paused VM is refused");
    assertIncludes(again.stderr, "vm1");
    rows = await listed(dir);
    assertEquals(rows.vm4, "Running");
    assertEquals(rows.vm1, "Paused");
    assertEquals(rows.vm7, "Paused");

    const status = await ctl(dir, "status", "vm3");
    assertEquals(status.status, 0, status.stderr);
    const info = JSON.parse(status.stdout);
    assertEquals(info.state, "Running");
    assertEquals(info.backend, "interp");
    assertEquals(info.record.name, "vm3");
    assertEquals(info.record.pid, vms[3]!.child.pid);

    // Snapshot a running VM (paused meanwhile, running again after) and restore it as "copy".
    const s = await ctl(dir, "snapshot", "vm3", `${snap}/vm3`);
    assertEquals(s.status, 0, s.stderr);
    assertTrue(Deno.statSync(`${snap}/vm3/state`).size > 0);
    assertTrue(Deno.statSync(`${snap}/vm3/mem`).size === 16 << 20);
    assertEquals((await listed(dir)).vm3, "Running");
    const r = await ctl(dir, "restore", `${snap}/vm3`, "--name", "copy");
    assertEquals(r.status, 0, r.stderr);
    rows = await listed(dir);
    assertEquals(rows.copy, "Running");
    assertEquals(Object.keys(rows).length, 11);
    // The restored guest goes on printing dots into its serial log.
    const deadline = Date.now() + 20_000;
    while (!Deno.readTextFileSync(`${dir}/copy.log`).includes(".")) {
      if (Date.now() > deadline) throw new Error("the restored VM printed nothing");
      await new Promise((r) => setTimeout(r, 100));
    }
    // Restoring under a name in use is refused.
    const dup = await ctl(dir, "restore", `${snap}/vm3`, "--name", "vm0");
    assertEquals(dup.status, 1);
    assertIncludes(dup.stderr, "already running");

    // Stop all: running ones through Ctrl-Alt-Del (the guest resets), paused ones hard.
    const stops = await Promise.all(
      [...vms.map((v) => v.name), "copy"].map((name) => ctl(dir, "stop", name)),
    );
    for (const st of stops) assertEquals(st.status, 0, st.stderr);
    assertIncludes(stops[0]!.stdout, "Ctrl-Alt-Del");
    assertIncludes(stops[1]!.stdout, "SIGTERM"); // vm1 was paused
    const codes = await Promise.all(vms.map((v) => v.exited));
    for (const [i, code] of codes.entries()) {
      assertEquals(code, ["vm1", "vm7"].includes(`vm${i}`) ? 143 : 0, `vm${i}`);
    }
    assertEquals(await listed(dir), {});
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), []);
  } finally {
    for (const v of vms) v.kill();
    killAll(dir);
    await Promise.all(vms.map((v) => v.exited));
    Deno.removeSync(dir, { recursive: true });
    Deno.removeSync(snap, { recursive: true });
  }
});

Deno.test("ctl: a VM killed with SIGKILL is cleaned from list; its name can be used again", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-ctl-" });
  const a = new NamedVm(dir, "victim");
  const b = new NamedVm(dir, "other");
  let c: NamedVm | null = null;
  try {
    await untilListed(dir, 2);
    // A second VMM asking for a live name is refused, naming it.
    const taken = await run(dir, ["--name", "other", "--backend", "interp", "--kernel", IDLE]);
    assertEquals(taken.status, 2);
    assertIncludes(taken.stderr, `a VM named "other" is already running`);
    a.kill();
    await a.exited;
    assertTrue(Deno.statSync(`${dir}/victim.json`).isFile, "SIGKILL leaves the entry behind");
    assertEquals(await listed(dir), { other: "Running" });
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assertEquals(left, ["other.json", "other.sock"]);
    // A verb on it now says it is gone and points at list.
    const gone = await ctl(dir, "status", "victim");
    assertEquals(gone.status, 1);
    assertIncludes(gone.stderr, `no VM named "victim"`);
    assertIncludes(gone.stderr, "ctl list");
    // Kill the other one too; a new VMM takes its stale name.
    b.kill();
    await b.exited;
    c = new NamedVm(dir, "other");
    await untilListed(dir, 1);
    assertEquals(await listed(dir), { other: "Running" });
    assertEquals(readRecord("other", dir)?.pid, c.child.pid);
    assertEquals((await ctl(dir, "stop", "other", "--timeout", "10")).status, 0);
    assertEquals(await c.exited, 0);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), []);
  } finally {
    a.kill();
    b.kill();
    c?.kill();
    await Promise.all([a.exited, b.exited, c?.exited]);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("ctl: usage: --help, unknown verbs, bad arguments (2), a VM that is not there (1)", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-ctl-" });
  try {
    const help = await ctl(dir, "--help");
    assertEquals(help.status, 0);
    for (const verb of ["list", "status", "pause", "resume", "snapshot", "restore", "stop"]) {
      assertIncludes(help.stdout, verb);
    }
    assertIncludes(help.stdout, dir);
    const stopHelp = await ctl(dir, "stop", "--help");
    assertEquals(stopHelp.status, 0);
    assertIncludes(stopHelp.stdout, "stop NAME [--timeout SECONDS]");

    const none = await ctl(dir);
    assertEquals(none.status, 2);
    assertIncludes(none.stderr, "a verb is needed");
    const unknown = await ctl(dir, "destroy", "x");
    assertEquals(unknown.status, 2);
    assertIncludes(unknown.stderr, `unknown verb "destroy"`);
    assertIncludes(unknown.stderr, "--help");
    for (
      const [args, words] of [
        [["pause"], "too few arguments; usage: deno run -A mod.ts ctl pause NAME"],
        [["status", "a", "b"], "too many arguments"],
        [["snapshot", "a"], "snapshot NAME DIR"],
        [["stop", "a", "--timeout", "soon"], `--timeout "soon"`],
        [["stop", "a", "--force"], "--force"],
        [["list", "x"], "too many arguments"],
        [["pause", "../x"], `NAME "../x"`],
        [["restore", dir, "--backend", "qemu"], `--backend "qemu"`],
      ] as const
    ) {
      const r = await ctl(dir, ...args);
      assertEquals(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assertIncludes(r.stderr, words);
    }
    for (const verb of ["status", "pause", "resume", "stop"]) {
      const r = await ctl(dir, verb, "ghost");
      assertEquals(r.status, 1, verb);
      assertIncludes(r.stderr, `no VM named "ghost"`);
      assertIncludes(r.stderr, "ctl list");
    }
    const snap = await ctl(dir, "snapshot", "ghost", `${dir}/s`);
    assertEquals(snap.status, 1);
    const restore = await ctl(dir, "restore", `${dir}/nothing`, "--name", "n");
    assertEquals(restore.status, 1);
    assertIncludes(restore.stderr, "state is missing");
    const console = await ctl(dir, "console", "ghost");
    assertEquals(console.status, 1);
    assertIncludes(console.stderr, "not available");
    assertEquals(await listed(dir), {});

    // --name validation and clashes, on the VMM side.
    const bad = await run(dir, ["--name", "a/b", "--kernel", IDLE]);
    assertEquals(bad.status, 2);
    assertIncludes(bad.stderr, `--name "a/b"`);
    const both = await run(dir, ["--name", "ok", "--api-sock", `${dir}/x.sock`, "--kernel", IDLE]);
    assertEquals(both.status, 2);
    assertIncludes(both.stderr, "drop --api-sock");
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
