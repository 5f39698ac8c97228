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
import { VmmProc } from "./_vmm_proc.ts";

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

/** When `text` shows on `p`'s `stream` (performance.now()), waiting up to `ms`. */
async function seen(
  p: VmmProc,
  stream: "stdout" | "stderr",
  text: string,
  ms: number,
): Promise<number> {
  await p.until(() => p[stream].includes(text) || null, `"${text}" on ${stream}`, ms);
  return performance.now();
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
  const procs: VmmProc[] = [];
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
    const plain = new VmmProc(guest);
    procs.push(plain);
    const p0 = await seen(plain, "stdout", START, BOOT_MS);
    const plainMs = (await seen(plain, "stdout", DONE, BOOT_MS)) - p0;
    await plain.stop();
    // With replication; then the primary is killed and the standby takes over.
    const url = `tcp:127.0.0.1:${freePort()}`;
    const standby = new VmmProc(["--standby", url, "--backend", "interp"]);
    procs.push(standby);
    await seen(standby, "stderr", "standing by", 30_000);
    const primary = new VmmProc([
      ...guest,
      "--replicate",
      url,
      "--checkpoint-ms",
      `${CHECKPOINT_MS}`,
    ]);
    procs.push(primary);
    const r0 = await seen(primary, "stdout", START, BOOT_MS);
    const replicatedMs = (await seen(primary, "stdout", DONE, BOOT_MS)) - r0;
    const killedAt = performance.now();
    await primary.stop();
    const failoverMs =
      (await seen(standby, "stderr", "replication: the primary was lost", 10_000)) -
      killedAt;
    // The primary prints its own figures when it ends; killed, it did not: ask the standby's
    // view instead (bytes received over checkpoints are in its log line when it has one).
    // The standby logs that line right after it took over: wait for it, it may come later.
    await seen(standby, "stderr", "replication: received ", 10_000);
    const perCheckpoint = bytesPerCheckpoint(primary.stderr, standby.stderr);
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
    await Promise.all(procs.map((p) => p.stop()));
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
