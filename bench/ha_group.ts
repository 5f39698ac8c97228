/**
 * The `ha` bench group (issue 10): what continuous checkpointing (`--replicate`, core/migration/
 * replicate.ts) costs and gives, on Debian's Linux on the interpreter (256 MiB), all measured in
 * the same run:
 *
 * - `ha workload time`: a busybox loop rewriting a 16 MiB buffer 8 times, from its start marker
 *   to its end marker on the console, with `--replicate` (checkpoint every 100 ms) against the
 *   same workload without it (baseline). The ratio is the slowdown: checkpoint pauses plus the
 *   output held until each checkpoint is acknowledged.
 * - `ha bytes per checkpoint`: the primary's own average over that run, against the guest's RAM
 *   size (the ratio: the share of RAM a checkpoint carries).
 * - `ha failover time`: from SIGKILL of the primary to the standby's word that it runs the VM
 *   (detection by the closed connection plus loading the last checkpoint), against the
 *   checkpoint interval.
 */

import type { BenchRow } from "./report.ts";
import {
  MIGRATION_BUSYBOX,
  MIGRATION_CMDLINE,
  MIGRATION_KERNEL,
  migrationGuestMissing,
} from "./migration_workloads.ts";
import { busyboxInitramfs, DEFAULT_APPLETS } from "../tools/guests/initramfs.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MEM_MIB = 256;
const CHECKPOINT_MS = 100;
const START = "HA-WORK-START", DONE = "HA-WORK-DONE";

const INIT = `#!/bin/sh
mount -t proc proc /proc
yes AAAAAAAAAAAAAAA | head -c 16m > /tmp/a
cp /tmp/a /tmp/buf
echo ${START}
i=0
while [ $i -lt 8 ]; do
  dd if=/tmp/a of=/tmp/buf bs=1M count=16 conv=notrunc 2>/dev/null
  i=$((i+1))
done
echo ${DONE}
while :; do sleep 1; done
`;

/** A child VMM whose stdout and stderr are watched for text. */
class Proc {
  readonly child: Deno.ChildProcess;
  out = "";
  err = "";
  #seen = new Map<string, number>();

  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "mod.ts", ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    const dec = new TextDecoder();
    void (async () => {
      for await (const c of child.stdout) {
        this.out += dec.decode(c, { stream: true });
        this.#mark(this.out);
      }
    })();
    void (async () => {
      for await (const c of child.stderr) {
        this.err += dec.decode(c, { stream: true });
        this.#mark(this.err);
      }
    })();
  }

  #mark(text: string): void {
    for (const k of [START, DONE, "replication: the primary was lost", "standing by"]) {
      if (!this.#seen.has(k) && text.includes(k)) this.#seen.set(k, performance.now());
    }
  }

  /** When `text` was first seen (performance.now()), waiting up to `ms`. */
  async when(text: string, ms: number): Promise<number> {
    const deadline = performance.now() + ms;
    while (!this.#seen.has(text)) {
      if (performance.now() > deadline) {
        throw new Error(`no "${text}" within ${ms} ms: ${this.err.slice(-800)}`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.#seen.get(text)!;
  }

  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Gone.
    }
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Runs the `ha` group. */
export async function runHaGroup(): Promise<BenchRow[] | string> {
  const missing = migrationGuestMissing();
  if (missing !== null) return missing;
  const dir = Deno.makeTempDirSync({ prefix: "dv-bench-ha-" });
  const procs: Proc[] = [];
  try {
    const initrd = `${dir}/init.cpio.gz`;
    Deno.writeFileSync(
      initrd,
      await busyboxInitramfs(await Deno.readFile(MIGRATION_BUSYBOX), {
        init: INIT,
        applets: [...DEFAULT_APPLETS, "bin/dd", "usr/bin/yes"],
      }),
    );
    const guest = [
      "--kernel",
      MIGRATION_KERNEL,
      "--initrd",
      initrd,
      "--cmdline",
      MIGRATION_CMDLINE,
      "--mem",
      `${MEM_MIB}M`,
      "--backend",
      "interp",
    ];
    const BOOT_MS = 180_000;
    // Without replication.
    const plain = new Proc(guest);
    procs.push(plain);
    const p0 = await plain.when(START, BOOT_MS);
    const plainMs = (await plain.when(DONE, BOOT_MS)) - p0;
    plain.kill();
    // With replication; then the primary is killed and the standby takes over.
    const url = `tcp:127.0.0.1:${freePort()}`;
    const standby = new Proc(["--standby", url, "--backend", "interp"]);
    procs.push(standby);
    await standby.when("standing by", 30_000);
    const primary = new Proc([...guest, "--replicate", url, "--checkpoint-ms", `${CHECKPOINT_MS}`]);
    procs.push(primary);
    const r0 = await primary.when(START, BOOT_MS);
    const replicatedMs = (await primary.when(DONE, BOOT_MS)) - r0;
    const killedAt = performance.now();
    primary.kill();
    await primary.child.status;
    const failoverMs = (await standby.when("replication: the primary was lost", 10_000)) -
      killedAt;
    // The primary prints its own figures when it ends; killed, it did not: ask the standby's
    // view instead (bytes received over checkpoints are in its log line when it has one).
    const perCheckpoint = bytesPerCheckpoint(primary.err, standby.err);
    const rows: BenchRow[] = [
      {
        name: "ha workload time (16 MiB x8 dd, checkpoint 100 ms)",
        unit: "ms",
        value: replicatedMs,
        baseline: "same workload without --replicate",
        baselineValue: plainMs,
        ratio: replicatedMs / plainMs,
      },
      {
        name: "ha failover time (SIGKILL -> standby runs)",
        unit: "ms",
        value: failoverMs,
        baseline: "checkpoint interval",
        baselineValue: CHECKPOINT_MS,
        ratio: failoverMs / CHECKPOINT_MS,
      },
    ];
    if (perCheckpoint !== null) {
      rows.push({
        name: "ha bytes per checkpoint",
        unit: "KiB",
        value: perCheckpoint / 1024,
        baseline: "guest RAM",
        baselineValue: MEM_MIB * 1024,
        ratio: perCheckpoint / (MEM_MIB << 20),
      });
    }
    return rows;
  } finally {
    for (const p of procs) p.kill();
    await Promise.all(procs.map((p) => p.child.status.catch(() => {})));
    Deno.removeSync(dir, { recursive: true });
  }
}

/** The standby's "N checkpoints, B bytes" line, as bytes per checkpoint. */
function bytesPerCheckpoint(...logs: string[]): number | null {
  for (const log of logs) {
    const m = /replication: received (\d+) checkpoints, (\d+) bytes/.exec(log);
    if (m !== null && Number(m[1]) > 0) return Number(m[2]) / Number(m[1]);
  }
  return null;
}
