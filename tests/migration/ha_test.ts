/**
 * High availability by continuous checkpointing: a primary (`--replicate`) and its standby
 * (`--standby`) share one `--serial file:` log. The primary is killed with SIGKILL at a random
 * moment; the standby finishes the guest's work, and the log holds every line exactly once.
 * Also: a primary whose guest ends takes its standby down with the same status; a standby
 * killed leaves the primary running unprotected; a primary that cannot reach its standby
 * refuses to run unprotected from the start.
 */

import { assertEquals, assertIncludes } from "../_assert.ts";
import { BACKENDS, ROOT } from "../_run.ts";
import { COUNTER, COUNTER_OUTPUT, COUNTER_STATUS, sleep } from "../api/_api.ts";

/** A denovisor process (no API socket), its stderr collected. */
class Vmm {
  stderr = "";
  readonly child: Deno.ChildProcess;
  readonly exited: Promise<number>;

  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "mod.ts", ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    const dec = new TextDecoder();
    const read = (async () => {
      for await (const c of child.stderr) this.stderr += dec.decode(c, { stream: true });
    })();
    const timer = setTimeout(() => this.kill(), 60_000);
    this.exited = child.status.then(async (s) => {
      clearTimeout(timer);
      await read;
      return s.code;
    });
  }

  async said(text: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stderr.includes(text)) {
      if (Date.now() > deadline) throw new Error(`no "${text}" on stderr: ${this.stderr}`);
      await sleep(10);
    }
  }

  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** A free TCP port on loopback. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A standby and a primary of the counter guest on `backend`, sharing the log `log`. */
async function pair(backend: string, log: string, primaryArgs: string[] = []) {
  const url = `tcp:127.0.0.1:${freePort()}`;
  const standby = new Vmm(["--standby", url, "--backend", backend, "--serial", `file:${log}`]);
  await standby.said("replication: standing by");
  const primary = new Vmm([
    "--kernel",
    COUNTER,
    "--mem",
    "16M",
    "--backend",
    backend,
    "--serial",
    `file:${log}`,
    "--replicate",
    url,
    ...primaryArgs,
  ]);
  return { standby, primary };
}

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] HA: the primary killed at random moments, the standby finishes; the log is exactly-once`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: "dv-ha-" });
    try {
      for (let round = 0; round < 3; round++) {
        const log = `${dir}/console-${round}.log`;
        const { standby, primary } = await pair(backend, log);
        await primary.said("replication: checkpoints every 100 ms");
        // The counter guest prints for ~1.5 s of VM time: kill somewhere inside it.
        await sleep(150 + Math.floor(Math.random() * 1000));
        primary.kill();
        assertEquals(await primary.exited, 137);
        const status = await standby.exited;
        assertIncludes(standby.stderr, "replication: the primary was lost");
        assertEquals(
          Deno.readTextFileSync(log),
          COUNTER_OUTPUT,
          `round ${round}: ${standby.stderr}`,
        );
        assertEquals(status, COUNTER_STATUS, standby.stderr);
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

Deno.test("[interp] HA: a guest that ends on the primary ends its standby with the same status", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-ha-" });
  try {
    const log = `${dir}/console.log`;
    const { standby, primary } = await pair("interp", log, ["--checkpoint-ms", "50"]);
    assertEquals(await primary.exited, COUNTER_STATUS, primary.stderr);
    assertEquals(await standby.exited, COUNTER_STATUS, standby.stderr);
    assertIncludes(standby.stderr, `the primary's guest ended with status ${COUNTER_STATUS}`);
    assertIncludes(primary.stderr, "checkpoints,");
    assertEquals(Deno.readTextFileSync(log), COUNTER_OUTPUT);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("[interp] HA: with its standby killed, the primary runs on unprotected and finishes", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-ha-" });
  try {
    const log = `${dir}/console.log`;
    const { standby, primary } = await pair("interp", log);
    await primary.said("replication: checkpoints every");
    await sleep(400);
    standby.kill();
    assertEquals(await standby.exited, 137);
    assertEquals(await primary.exited, COUNTER_STATUS, primary.stderr);
    assertIncludes(primary.stderr, "runs on here without a standby");
    assertEquals(Deno.readTextFileSync(log), COUNTER_OUTPUT);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("[interp] HA: a primary with no standby to reach does not run the guest", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dv-ha-" });
  try {
    const log = `${dir}/console.log`;
    const primary = new Vmm([
      "--kernel",
      COUNTER,
      "--backend",
      "interp",
      "--serial",
      `file:${log}`,
      "--replicate",
      `tcp:127.0.0.1:${freePort()}`,
    ]);
    assertEquals(await primary.exited, 1);
    assertIncludes(primary.stderr, "replication: cannot reach the standby at tcp:127.0.0.1:");
    assertEquals(Deno.readTextFileSync(log), "");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
