/**
 * The `migration` bench group (issue 10): live migration of Debian's Linux (256 MiB, the
 * kernel and busybox initramfs of bench/migration_workloads.ts) between two processes on
 * loopback, denovisor on the interpreter against QEMU TCG migrating the same guest
 * (bench/qemu_migration.ts), in the same run. Two workloads: `idle` and `dirty` (a busybox loop
 * rewriting a 16 MiB buffer). Each side migrates `RUNS` times per workload, the sides
 * interleaved; the rows give medians, with QEMU's figure as the baseline.
 *
 * One denovisor run: the destination starts first, `--incoming tcp:127.0.0.1:0 --backend
 * interp` (the kernel picks a free port, which the destination names in its
 * `migration: waiting for the VM on tcp:127.0.0.1:PORT` line: no race over a guessed port);
 * the source boots the guest (`--backend interp --mem 256M`) and once MIGRATION-READY is on its
 * console and one more second has passed, gets `PUT /migration/send` with that URL and a
 * 50 ms downtime target (QEMU gets the same `downtime-limit`). The figures are the source's
 * final status, which that request answers with (200, `GET /migration`'s fields); the source
 * must then exit 0 saying where the VM went, and the destination is checked to be running the
 * VM (its `GET /migration` says "completed", the process lives on).
 *
 * The definitions differ from QEMU's in one respect, and not in our favour:
 * - denovisor's **downtime** runs from the source's final pause to the destination's DONE,
 *   which it sends once it has verified and loaded the state and is about to run the VM: it
 *   includes the destination loading the state and the round trip back. QEMU's `downtime` is
 *   measured on the source alone, from stopping the VM to the end of the stream.
 * - **total**: denovisor's from connecting to the destination to DONE; QEMU's `total-time`
 *   from the `migrate` command to completion. Both include all pre-copy passes.
 *
 * KVM rows are added where KVM can boot this kernel; on the nested kvm_pvm host it cannot
 * (no exceptions or interrupts in protected or long mode), so the group says so and gives
 * interpreter rows only.
 */

import type { BenchRow } from "./report.ts";
import { haveQemu } from "./boot_group.ts";
import {
  MIGRATION_CMDLINE,
  MIGRATION_KERNEL,
  MIGRATION_READY,
  migrationGuestMissing,
  migrationInitramfs,
  type MigrationKind,
} from "./migration_workloads.ts";
import { QEMU_DOWNTIME_LIMIT_MS, qemuMigration } from "./qemu_migration.ts";
import { request as api } from "../core/ctl/http.ts";
import { kvmAvailable } from "../core/kvm/backend.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";
import { VmmProc as Proc } from "./_vmm_proc.ts";

const MEM_MIB = 256;
/** Migrations per side and workload, interleaved; the rows give medians (env override). */
const RUNS = Number(Deno.env.get("DV_BENCH_MIGRATION_RUNS") ?? 3) || 3;
/** Boot to MIGRATION-READY on the interpreter, and one migration, must end within these. */
const BOOT_TIMEOUT_MS = 5 * 60_000, MIGRATE_TIMEOUT_MS = 3 * 60_000;
/** How long the workload runs after MIGRATION-READY before the migration starts. */
const SETTLE_MS = 1000;
/** denovisor's downtime target: its default, and QEMU's `downtime-limit` here. */
const DOWNTIME_MS = QEMU_DOWNTIME_LIMIT_MS;
const KINDS: MigrationKind[] = ["idle", "dirty"];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One migration's figures, either VMM. */
interface Figures {
  downtimeMs: number;
  totalMs: number;
  passes: number;
  mib: number;
  /** Pages sent in the final stop-and-copy (denovisor's `final_pages`). */
  finalPages?: number;
}

/** One denovisor migration of the `kind` guest on `backend`, source to destination. */
async function denovisorMigration(
  dir: string,
  kind: MigrationKind,
  initrd: string,
  backend: "interp" | "kvm",
  i: number,
): Promise<Figures> {
  const what = `denovisor ${backend} migration (${kind}, run ${i + 1})`;
  const srcSock = `${dir}/src-${kind}-${i}.sock`, dstSock = `${dir}/dst-${kind}-${i}.sock`;
  let src: Proc | null = null, dst: Proc | null = null;
  try {
    dst = new Proc(["--incoming", "tcp:127.0.0.1:0", "--backend", backend, "--api-sock", dstSock]);
    const url = await dst.until(
      () => /migration: waiting for the VM on (tcp:\S+)/.exec(dst!.stderr)?.[1] ?? null,
      `${what}: the destination listening`,
      60_000,
    );
    src = new Proc([
      ...["--api-sock", srcSock, "--backend", backend, "--mem", `${MEM_MIB}M`],
      ...["--kernel", MIGRATION_KERNEL, "--initrd", initrd, "--cmdline", MIGRATION_CMDLINE],
    ]);
    await src.until(
      () => src!.stdout.includes(MIGRATION_READY) || null,
      `${what}: ${MIGRATION_READY} on the source`,
      BOOT_TIMEOUT_MS,
    );
    await sleep(SETTLE_MS);
    const r = await api(
      srcSock,
      "PUT",
      "/migration/send",
      { destination_url: url, downtime_ms: DOWNTIME_MS },
      MIGRATE_TIMEOUT_MS,
    );
    // 200 and the source's final figures (`GET /migration`'s fields).
    const j = r.json;
    if (r.status !== 200 || j?.state !== "completed") {
      throw new Error(`${what}: PUT /migration/send: ${r.status} ${r.body}${src.tail()}`);
    }
    const st = await src.done;
    if (st.code !== 0) throw new Error(`${what}: the source exited ${st.code}${src.tail()}`);
    if (!src.stderr.includes(`the VM moved to ${url} (`)) {
      throw new Error(`${what}: the source does not say where the VM went${src.tail()}`);
    }
    // Not timed: the destination runs the VM.
    const d = await api(dstSock, "GET", "/migration");
    if (d.json?.state !== "completed" || d.json?.role !== "destination") {
      throw new Error(`${what}: the destination reports ${d.status} ${d.body}`);
    }
    await sleep(200);
    if (dst.exited) throw new Error(`${what}: the destination ended${dst.tail()}`);
    return {
      passes: Number(j.passes),
      mib: Number(j.bytes) / 2 ** 20,
      downtimeMs: Number(j.downtime_ms),
      totalMs: Number(j.total_ms),
      finalPages: Number(j.final_pages),
    };
  } finally {
    await src?.stop();
    await dst?.stop();
  }
}

/** Null when KVM can boot the Linux guest here, else why not. */
function kvmCannot(): string | null {
  const k = kvmAvailable();
  if (!k.ok) return k.reason;
  if (hostKvmFlavor() === "kvm_pvm") {
    return "this host's KVM is the nested kvm_pvm variant, which cannot deliver exceptions " +
      "or interrupts to a guest in protected or long mode, so it cannot boot Linux";
  }
  return null;
}

const fmt = (f: Figures) =>
  `downtime ${f.downtimeMs} ms, total ${f.totalMs} ms, ${f.passes} passes, ` +
  `${f.mib.toFixed(1)} MiB` + (f.finalPages === undefined ? "" : `, ${f.finalPages} final pages`);

/** Runs the group: `migration downtime|total (KIND)` per backend, against QEMU TCG. */
export async function runMigrationGroup(): Promise<BenchRow[] | string> {
  const missing = migrationGuestMissing();
  if (missing !== null) return missing;
  if (!(await haveQemu())) return "qemu-system-x86_64 is not installed and could not be installed";
  const backends: ("interp" | "kvm")[] = ["interp"];
  const noKvm = kvmCannot();
  if (noKvm === null) backends.push("kvm");
  else console.error(`migration: no KVM rows: ${noKvm}`);
  const dir = Deno.makeTempDirSync({ prefix: "dv-bench-migration-" });
  try {
    const rows: BenchRow[] = [];
    for (const kind of KINDS) {
      const initrd = `${dir}/${kind}.cpio.gz`;
      Deno.writeFileSync(initrd, await migrationInitramfs(kind));
      const qemu: Figures[] = [];
      const ours = new Map(backends.map((b) => [b, [] as Figures[]]));
      for (let i = 0; i < RUNS; i++) {
        const q = await qemuMigration({
          kind,
          memMiB: MEM_MIB,
          initrd,
          kernel: MIGRATION_KERNEL,
          cmdline: MIGRATION_CMDLINE,
        });
        const qf = {
          downtimeMs: q.downtimeMs,
          totalMs: q.totalMs,
          passes: q.passes ?? 0,
          mib: q.transferredBytes / 2 ** 20,
        };
        qemu.push(qf);
        console.error(`migration: ${kind} run ${i + 1}: QEMU TCG: ${fmt(qf)}`);
        for (const b of backends) {
          const f = await denovisorMigration(dir, kind, initrd, b, i);
          ours.get(b)!.push(f);
          console.error(`migration: ${kind} run ${i + 1}: denovisor ${b}: ${fmt(f)}`);
        }
      }
      const qDown = median(qemu.map((f) => f.downtimeMs));
      const qTotal = median(qemu.map((f) => f.totalMs));
      for (const b of backends) {
        const fs = ours.get(b)!;
        const down = median(fs.map((f) => f.downtimeMs)), total = median(fs.map((f) => f.totalMs));
        const label = backends.length > 1 ? `${kind}, ${b}` : kind;
        const same = `same kernel, initramfs and cmdline, ${MEM_MIB} MiB, loopback TCP, ` +
          `${DOWNTIME_MS} ms downtime limit, median of ${RUNS}`;
        rows.push({
          name: `migration downtime (${label})`,
          unit: "ms",
          value: down,
          baseline: `QEMU TCG query-migrate downtime (source side), ${same}`,
          baselineValue: qDown,
          ratio: down / qDown,
        }, {
          name: `migration total (${label})`,
          unit: "ms",
          value: total,
          baseline: `QEMU TCG query-migrate total-time, ${same}`,
          baselineValue: qTotal,
          ratio: total / qTotal,
        });
      }
    }
    return rows;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
