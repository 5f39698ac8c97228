/**
 * The QEMU TCG baseline of the `migration` bench group (issue 10): one live migration of a
 * Linux guest (a workload from bench/migration_workloads.ts) between two QEMU processes on
 * loopback, timed by QEMU itself.
 *
 * The destination starts first with the same machine arguments and `-incoming defer`, then
 * listens on `migrate-incoming tcp:127.0.0.1:0` (the kernel picks a free port, which
 * `query-migrate`'s `socket-address` reports: no race with other processes over a guessed
 * port). The source boots the kernel, and once MIGRATION-READY is on its serial console and
 * one more second has passed, it gets `migrate tcp:127.0.0.1:PORT`; `query-migrate` is polled
 * until "completed", and its figures are returned:
 * - `downtime` (ms): QEMU's own, measured on the source from stopping the VM to the end of
 *   the stream (the last dirty pages and the device state sent);
 * - `total-time` (ms): from the `migrate` command to completion; `setup-time` (ms): its setup;
 * - `ram.transferred` (bytes): RAM bytes on the wire (zero pages cost a few bytes each).
 * The destination is then checked to be running the guest (not timed).
 */

import { MIGRATION_READY, type MigrationKind } from "./migration_workloads.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** Boot to MIGRATION-READY under TCG, and the migration itself, must end within these. */
const BOOT_TIMEOUT_MS = 5 * 60_000, MIGRATE_TIMEOUT_MS = 2 * 60_000;
/** `query-migrate` poll interval while a migration runs. */
const POLL_MS = 5;
/** How long the workload runs after MIGRATION-READY before the migration starts. */
const SETTLE_MS = 1000;
/**
 * Downtime limit (ms) for QEMU's switch-over: denovisor's default downtime target is 50 ms,
 * so QEMU gets the same one (its own default is 300 ms) for a fair comparison.
 */
export const QEMU_DOWNTIME_LIMIT_MS = 50;
/**
 * Bandwidth cap (bytes/s) for QEMU's migration: QEMU 7.2 caps it at 128 MiB/s by default, at
 * which the dirty workload's ~17 MiB working set takes ~130 ms per pass, more than the 50 ms
 * limit, so it would not converge. On loopback denovisor does not throttle, so neither does
 * QEMU: 100 GiB/s is "unlimited".
 */
export const QEMU_MAX_BANDWIDTH = 100 * 2 ** 30;

/** Options of one QEMU migration run. */
export interface QemuMigrationOptions {
  /** The workload the initramfs runs (only used in messages; the initrd decides). */
  kind: MigrationKind;
  /** Guest RAM, MiB. */
  memMiB: number;
  /** Path of the initramfs (migrationInitramfs(kind) written to a file). */
  initrd: string;
  /** Path of the kernel (a bzImage: MIGRATION_KERNEL). */
  kernel: string;
  /** Kernel command line (MIGRATION_CMDLINE). */
  cmdline: string;
}

/** QEMU's own figures for one completed migration. */
export interface QemuMigrationResult {
  /** `downtime`: VM stopped on the source until the stream ended, ms. */
  downtimeMs: number;
  /** `total-time`: from `migrate` to completion, ms. */
  totalMs: number;
  /** `setup-time`, ms, when QEMU reports it. */
  setupMs?: number;
  /** `ram.transferred`: RAM bytes sent. */
  transferredBytes: number;
  /** `ram.dirty-sync-count`: dirty-bitmap syncs, about the number of RAM passes. */
  passes?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A child QEMU whose stdout (the guest's serial console) is kept and can be waited on. */
class Proc {
  readonly child: Deno.ChildProcess;
  readonly done: Promise<void>;
  stdout = "";
  stderr = "";
  exited = false;
  #waiters: (() => void)[] = [];

  constructor(cmd: string, args: string[]) {
    const child = new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    const dec = new TextDecoder(), edec = new TextDecoder();
    const out = (async () => {
      for await (const chunk of child.stdout) {
        this.stdout = (this.stdout + dec.decode(chunk, { stream: true })).slice(-16_000);
        this.#wake();
      }
    })();
    const err = (async () => {
      for await (const chunk of child.stderr) {
        this.stderr = (this.stderr + edec.decode(chunk, { stream: true })).slice(-4000);
      }
    })();
    this.done = Promise.all([out, err, child.status]).then(() => {
      this.exited = true;
      this.#wake();
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `text` is on stdout; throws if the process ends first or after timeoutMs. */
  async waitFor(text: string, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.includes(text)) {
      if (this.exited) throw new Error(`${what}: QEMU ended first${this.#tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: not after ${timeoutMs} ms${this.#tail()}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  #tail(): string {
    return `; console: ${JSON.stringify(this.stdout.slice(-600))}; stderr: ${this.stderr}`;
  }

  async waitSocket(path: string, what: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        (await Deno.connect({ transport: "unix", path })).close();
        return;
      } catch {
        if (this.exited) throw new Error(`${what}: QEMU ended: ${this.stderr}`);
        if (Date.now() > deadline) throw new Error(`${what}: no socket ${path}: ${this.stderr}`);
        await sleep(10);
      }
    }
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.done;
  }
}

/** A QMP client on a unix socket: one command at a time, events skipped. */
class Qmp {
  readonly #conn: Deno.UnixConn;
  #buf = "";
  readonly #dec = new TextDecoder();

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  static async open(path: string): Promise<Qmp> {
    const q = new Qmp(await Deno.connect({ transport: "unix", path }));
    await q.#message(); // greeting
    await q.run("qmp_capabilities");
    return q;
  }

  async #message(): Promise<Record<string, unknown>> {
    const chunk = new Uint8Array(65536);
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (line) return JSON.parse(line);
        continue;
      }
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error("QMP: QEMU closed the socket");
      this.#buf += this.#dec.decode(chunk.subarray(0, n), { stream: true });
    }
  }

  /** Runs `execute` and returns its `return`; throws on `error`. */
  async run(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const cmd = JSON.stringify(args ? { execute, arguments: args } : { execute }) + "\n";
    await this.#conn.write(new TextEncoder().encode(cmd));
    for (;;) {
      const m = await this.#message();
      if ("event" in m) continue;
      if ("error" in m) throw new Error(`QMP ${execute}: ${JSON.stringify(m.error)}`);
      return m.return;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** What `query-migrate` answers (the fields used here). */
interface MigrateInfo {
  status?: string;
  "error-desc"?: string;
  "total-time"?: number;
  "setup-time"?: number;
  downtime?: number;
  ram?: { transferred?: number; remaining?: number; "dirty-sync-count"?: number };
  "socket-address"?: { type?: string; host?: string; port?: string | number }[];
}

/** The machine arguments both QEMUs get (the destination adds `-incoming defer`). */
function machineArgs(opts: QemuMigrationOptions, qmpSock: string): string[] {
  return [
    ...["-M", "pc", "-accel", "tcg", "-m", `${opts.memMiB}M`],
    ...["-nodefaults", "-vga", "none", "-display", "none", "-monitor", "none"],
    ...["-serial", "stdio", "-no-reboot"],
    ...["-kernel", opts.kernel, "-initrd", opts.initrd, "-append", opts.cmdline],
    ...["-qmp", `unix:${qmpSock},server=on,wait=off`],
  ];
}

/**
 * Live-migrates the guest from a source QEMU TCG to a destination QEMU TCG on loopback and
 * returns QEMU's own figures. Both QEMUs are killed at the end, whatever happens.
 */
export async function qemuMigration(opts: QemuMigrationOptions): Promise<QemuMigrationResult> {
  const dir = Deno.makeTempDirSync({ prefix: "dv-qemu-migration-" });
  const srcSock = `${dir}/qmp-src.sock`, dstSock = `${dir}/qmp-dst.sock`;
  const what = `QEMU migration (${opts.kind}, ${opts.memMiB} MiB)`;
  let src: Proc | null = null, dst: Proc | null = null;
  let srcQmp: Qmp | null = null, dstQmp: Qmp | null = null;
  try {
    dst = new Proc("qemu-system-x86_64", [...machineArgs(opts, dstSock), "-incoming", "defer"]);
    await dst.waitSocket(dstSock, `${what}: destination`);
    dstQmp = await Qmp.open(dstSock);
    await dstQmp.run("migrate-incoming", { uri: "tcp:127.0.0.1:0" });
    const listen = await dstQmp.run("query-migrate") as MigrateInfo;
    const port = listen["socket-address"]?.find((a) => a.type === "inet")?.port;
    if (port === undefined) {
      throw new Error(`${what}: destination reports no port: ${JSON.stringify(listen)}`);
    }

    src = new Proc("qemu-system-x86_64", machineArgs(opts, srcSock));
    await src.waitSocket(srcSock, `${what}: source`);
    srcQmp = await Qmp.open(srcSock);
    await srcQmp.run("migrate-set-parameters", {
      "downtime-limit": QEMU_DOWNTIME_LIMIT_MS,
      "max-bandwidth": QEMU_MAX_BANDWIDTH,
    });
    await src.waitFor(
      MIGRATION_READY,
      `${what}: ${MIGRATION_READY} on the source`,
      BOOT_TIMEOUT_MS,
    );
    await sleep(SETTLE_MS);

    await srcQmp.run("migrate", { uri: `tcp:127.0.0.1:${port}` });
    const deadline = Date.now() + MIGRATE_TIMEOUT_MS;
    let info: MigrateInfo;
    for (;;) {
      info = await srcQmp.run("query-migrate") as MigrateInfo;
      if (info.status === "completed") break;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new Error(`${what}: ${info.status}: ${info["error-desc"] ?? "(no reason given)"}`);
      }
      if (Date.now() > deadline) {
        await srcQmp.run("migrate_cancel").catch(() => undefined);
        throw new Error(
          `${what}: not completed after ${MIGRATE_TIMEOUT_MS} ms: ${JSON.stringify(info)}`,
        );
      }
      await sleep(POLL_MS);
    }

    // Not timed: the destination runs the guest (it may take a moment to leave "inmigrate").
    const runDeadline = Date.now() + 30_000;
    for (;;) {
      const st = await dstQmp.run("query-status") as { status?: string };
      if (st.status === "running") break;
      if (Date.now() > runDeadline) {
        throw new Error(`${what}: destination is ${st.status} after completion${dst.stderr}`);
      }
      await sleep(10);
    }

    if (info.downtime === undefined || info["total-time"] === undefined) {
      throw new Error(
        `${what}: query-migrate gave no downtime/total-time: ${JSON.stringify(info)}`,
      );
    }
    return {
      downtimeMs: info.downtime,
      totalMs: info["total-time"],
      setupMs: info["setup-time"],
      transferredBytes: info.ram?.transferred ?? 0,
      passes: info.ram?.["dirty-sync-count"],
    };
  } finally {
    srcQmp?.close();
    dstQmp?.close();
    await src?.stop();
    await dst?.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}
