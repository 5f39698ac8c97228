/**
 * The `lifecycle` bench group (issue 9): the API's `GET /` round trip against a minimal
 * `Deno.serve` on a unix socket answering the same JSON, and snapshot create and restore of a
 * 256 MiB guest on each backend here against QEMU TCG saving and restoring the same guest
 * through QMP (`migrate "exec:cat > FILE"`, `-incoming defer` + `migrate-incoming
 * "exec:cat FILE"`), all in the same run.
 *
 * The guest is bench/guests/lifecycle.bin: a boot sector that fills 0x10000..0x9FFFF (576 KiB of
 * non-zero pages) and then prints ".\n" once per millisecond of VM time (PIT-paced), so a
 * restored guest is seen running by its next line on stdout. denovisor loads it as a flat image,
 * QEMU's BIOS boots it from a raw IDE disk (`-M pc -nodefaults`: no VGA RAM to migrate).
 *
 * Definitions, the same on both sides:
 * - create: the VM is paused first (`PATCH /vm Paused`; QMP `stop`), not timed; then from the
 *   request (`PUT /snapshot/create` Full; QMP `migrate`) to its end (the 204; `query-migrate`
 *   polled until "completed").
 * - restore: on a fresh process that is already up and waiting (denovisor `--api-sock` alone;
 *   QEMU `-incoming defer` with QMP ready), from the request (`PUT /snapshot/load` with
 *   `resume_vm`; QMP `migrate-incoming`, `query-migrate` polled until "completed", then `cont`,
 *   since a VM saved stopped arrives stopped) to the guest's next line on the process's stdout.
 */

import type { BenchRow } from "./report.ts";
import { haveQemu } from "./boot_group.ts";
import { request as api } from "../core/ctl/http.ts";
import { kvmAvailable } from "../core/kvm/backend.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const GUEST = `${ROOT}bench/guests/lifecycle.bin`;
const MEM = "256M";
/** Snapshot creates per source VM, and restores (fresh processes) per side, interleaved. */
const CREATES = 7, RESTORES = 7;
/** GET / requests per interleaved batch, and batches per server. */
const BATCH = 200, BATCHES = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A child process whose stdout is read as it comes; `nextOutput()` waits for the next chunk. */
class Proc {
  readonly child: Deno.ChildProcess;
  readonly done: Promise<void>;
  stdoutBytes = 0;
  stderr = "";
  #waiters: ((t: number) => void)[] = [];

  constructor(cmd: string, args: string[]) {
    const child = new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    const out = (async () => {
      for await (const chunk of child.stdout) {
        const t = performance.now();
        this.stdoutBytes += chunk.length;
        const w = this.#waiters;
        this.#waiters = [];
        for (const f of w) f(t);
      }
    })();
    const err = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) {
        this.stderr = (this.stderr + dec.decode(chunk, { stream: true })).slice(-4000);
      }
    })();
    this.done = Promise.all([out, err, child.status]).then(() => {
      const w = this.#waiters;
      this.#waiters = [];
      for (const f of w) f(-1);
    });
  }

  /** The time of the next stdout chunk (-1 if the process ends first); throws after timeoutMs. */
  nextOutput(what: string, timeoutMs = 60_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${what}: no output after ${timeoutMs} ms; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      this.#waiters.push((t) => {
        clearTimeout(timer);
        if (t < 0) reject(new Error(`${what}: the process ended; stderr: ${this.stderr}`));
        else resolve(t);
      });
    });
  }

  async waitSocket(path: string, what: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        (await Deno.connect({ transport: "unix", path })).close();
        return;
      } catch {
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

  /** Polls `query-migrate` until "completed" (throws on "failed"). */
  async migrated(): Promise<void> {
    for (;;) {
      const r = await this.run("query-migrate") as { status?: string; "error-desc"?: string };
      if (r.status === "completed") return;
      if (r.status === "failed" || r.status === "cancelled") {
        throw new Error(`QEMU migration ${r.status}: ${r["error-desc"] ?? ""}`);
      }
    }
  }

  /** `cont`, retried while QEMU still finalizes a migration it reported "completed". */
  async cont(): Promise<void> {
    for (;;) {
      try {
        await this.run("cont");
        return;
      } catch (err) {
        if (!/not finalized/.test((err as Error).message)) throw err;
        await sleep(1);
      }
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

const QEMU_ARGS = [
  "-M",
  "pc",
  "-accel",
  "tcg",
  "-m",
  MEM,
  "-nodefaults",
  "-vga",
  "none",
  "-display",
  "none",
  "-serial",
  "stdio",
  "-monitor",
  "none",
];

/** One side of the snapshot comparison: a source VM to snapshot, then fresh processes to restore. */
interface Side {
  name: string;
  /** Starts the source VM and waits until the guest has filled memory and prints. */
  start(): Promise<void>;
  /** Runs the guest again (not for the first), pauses it (not timed), times one snapshot. */
  create(first: boolean): Promise<number>;
  stopSource(): Promise<void>;
  /** Starts a fresh process, waits until it is up, times one restore to the guest's next line. */
  restore(i: number): Promise<number>;
}

/** QEMU TCG on the same guest: migrate to a file, `-incoming defer` from it. */
function qemuSide(dir: string): Side {
  const disk = `${dir}/qemu-disk.bin`;
  Deno.copyFileSync(GUEST, disk);
  const drive = ["-drive", `file=${disk},format=raw,if=ide`];
  const file = `${dir}/qemu.migration`;
  const qemu = (sock: string, extra: string[] = []) =>
    new Proc("qemu-system-x86_64", [
      ...QEMU_ARGS,
      ...drive,
      "-qmp",
      `unix:${sock},server=on,wait=off`,
      ...extra,
    ]);
  let src: Proc | null = null, qmp: Qmp | null = null;
  return {
    name: "QEMU",
    async start() {
      const sock = `${dir}/qmp-src.sock`;
      src = qemu(sock);
      await src.waitSocket(sock, "QEMU");
      qmp = await Qmp.open(sock);
      while (src.stdoutBytes < 200) await src.nextOutput("QEMU guest"); // filled, printing
    },
    async create(first) {
      if (!first) { // QEMU migrates a VM once: run it again first
        await qmp!.cont();
        await src!.nextOutput("QEMU guest after cont");
      }
      await qmp!.run("stop");
      const t0 = performance.now();
      await qmp!.run("migrate", { uri: `exec:cat > ${file}` });
      await qmp!.migrated();
      return performance.now() - t0;
    },
    async stopSource() {
      qmp?.close();
      await src?.stop();
    },
    async restore(i) {
      const sock = `${dir}/qmp-dst${i}.sock`;
      const p = qemu(sock, ["-incoming", "defer"]);
      try {
        await p.waitSocket(sock, "QEMU -incoming");
        const q = await Qmp.open(sock);
        const running = p.nextOutput("QEMU restored guest");
        const t0 = performance.now();
        await q.run("migrate-incoming", { uri: `exec:cat ${file}` });
        await q.migrated();
        await q.cont(); // saved stopped, so it arrives stopped: resume_vm's counterpart
        const t = await running - t0;
        q.close();
        return t;
      } finally {
        await p.stop();
      }
    },
  };
}

function denovisor(sock: string, args: string[]): Proc {
  return new Proc(Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    "mod.ts",
    "--api-sock",
    sock,
    ...args,
  ]);
}

async function ok(sock: string, method: string, url: string, body?: unknown): Promise<void> {
  const r = await api(sock, method, url, body);
  if (r.status !== 204 && r.status !== 200) {
    throw new Error(`${method} ${url}: ${r.status} ${r.body}`);
  }
}

/** denovisor on `backend`: `PUT /snapshot/create` Full, `PUT /snapshot/load` with resume_vm. */
function denovisorSide(dir: string, backend: "interp" | "kvm", replies: number[]): Side {
  const state = `${dir}/${backend}.state`, mem = `${dir}/${backend}.mem`;
  const sock = `${dir}/${backend}-src.sock`;
  let src: Proc | null = null;
  return {
    name: backend,
    async start() {
      src = denovisor(sock, ["--backend", backend, "--mem", MEM, "--kernel", GUEST]);
      await src.waitSocket(sock, `denovisor ${backend}`);
      while (src.stdoutBytes < 200) await src.nextOutput(`denovisor ${backend} guest`);
    },
    async create(first) {
      if (!first) { // as on QEMU: run it again between snapshots
        await ok(sock, "PATCH", "/vm", { state: "Resumed" });
        await src!.nextOutput(`denovisor ${backend} guest after Resumed`);
      }
      await ok(sock, "PATCH", "/vm", { state: "Paused" });
      const t0 = performance.now();
      await ok(sock, "PUT", "/snapshot/create", {
        snapshot_type: "Full",
        snapshot_path: state,
        mem_file_path: mem,
      });
      return performance.now() - t0;
    },
    async stopSource() {
      await src?.stop();
    },
    async restore(i) {
      const dst = `${dir}/${backend}-dst${i}.sock`;
      const p = denovisor(dst, ["--backend", backend, "--mem", MEM]);
      try {
        await p.waitSocket(dst, `denovisor ${backend} (restore)`);
        await ok(dst, "GET", "/");
        const running = p.nextOutput(`denovisor ${backend} restored guest`);
        const t0 = performance.now();
        await ok(dst, "PUT", "/snapshot/load", {
          snapshot_path: state,
          mem_backend: { backend_type: "File", backend_path: mem },
          resume_vm: true,
        });
        replies.push(performance.now() - t0);
        return await running - t0;
      } finally {
        await p.stop();
      }
    },
  };
}

/** Medians of `CREATES` creates and `RESTORES` restores per side, the sides interleaved. */
async function measureSides(
  sides: Side[],
): Promise<Map<Side, { create: number; restore: number }>> {
  const creates = new Map(sides.map((s) => [s, [] as number[]]));
  const restores = new Map(sides.map((s) => [s, [] as number[]]));
  try {
    for (const s of sides) await s.start();
    for (let i = 0; i < CREATES; i++) {
      for (const s of sides) creates.get(s)!.push(await s.create(i === 0));
    }
  } finally {
    for (const s of sides) await s.stopSource();
  }
  for (let i = 0; i < RESTORES; i++) {
    for (const s of sides) restores.get(s)!.push(await s.restore(i));
  }
  return new Map(
    sides.map((s) => [s, { create: median(creates.get(s)!), restore: median(restores.get(s)!) }]),
  );
}

/** Mean `GET /` round trip on denovisor's socket and on a minimal `Deno.serve`, interleaved. */
async function apiRequest(dir: string): Promise<BenchRow> {
  const ours = `${dir}/api.sock`, base = `${dir}/base.sock`;
  const dv = denovisor(ours, []);
  let srv: Proc | null = null;
  try {
    await dv.waitSocket(ours, "denovisor --api-sock");
    const first = await api(ours, "GET", "/");
    if (first.status !== 200) throw new Error(`GET /: ${first.status} ${first.body}`);
    const code = `const body = ${JSON.stringify(first.body)};\n` +
      `Deno.serve({ path: ${JSON.stringify(base)}, onListen() {} }, () =>\n` +
      `  new Response(body, { headers: { "content-type": "application/json" } }));\n`;
    srv = new Proc(Deno.execPath(), ["eval", code]);
    await srv.waitSocket(base, "Deno.serve baseline");
    const b = await api(base, "GET", "/");
    if (b.body !== first.body) throw new Error(`baseline answered ${b.body}`);
    const time = async (sock: string) => {
      const t0 = performance.now();
      for (let i = 0; i < BATCH; i++) await api(sock, "GET", "/");
      return performance.now() - t0;
    };
    await time(ours);
    await time(base); // warm-up
    let a = 0, c = 0;
    for (let i = 0; i < BATCHES; i++) {
      a += await time(ours);
      c += await time(base);
    }
    const us = (ms: number) => ms / (BATCH * BATCHES) * 1000;
    return {
      name: "api request",
      unit: "µs",
      value: us(a),
      baseline: "minimal Deno.serve on a unix socket, same JSON, same client, interleaved",
      baselineValue: us(c),
      ratio: a / c,
    };
  } finally {
    await dv.stop();
    await srv?.stop();
  }
}

/** True when KVM opens here and runs the bench guest to its first line. */
async function kvmRuns(dir: string): Promise<string | null> {
  const k = kvmAvailable();
  if (!k.ok) return k.reason;
  const sock = `${dir}/kvm-probe.sock`;
  const p = denovisor(sock, ["--backend", "kvm", "--mem", MEM, "--kernel", GUEST]);
  try {
    await p.nextOutput("denovisor kvm guest", 30_000);
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await p.stop();
  }
}

/** Runs the group: `api request`, then `snapshot create|restore (BACKEND)` per backend. */
export async function runLifecycleGroup(): Promise<BenchRow[] | string> {
  try {
    Deno.statSync(GUEST);
  } catch {
    return `${GUEST} is missing: nasm -f bin -o bench/guests/lifecycle.bin bench/guests/lifecycle.asm`;
  }
  const dir = Deno.makeTempDirSync({ prefix: "dv-bench-lifecycle-" });
  try {
    const rows: BenchRow[] = [await apiRequest(dir)];
    if (!(await haveQemu())) {
      console.error("lifecycle: no snapshot rows: qemu-system-x86_64 is missing");
      return rows;
    }
    const backends: ("interp" | "kvm")[] = ["interp"];
    const noKvm = await kvmRuns(dir);
    if (noKvm === null) backends.push("kvm");
    else console.error(`lifecycle: no KVM rows: ${noKvm}`);
    const qemu = qemuSide(dir);
    const replies = new Map(backends.map((b) => [b, [] as number[]]));
    const ours = backends.map((b) => denovisorSide(dir, b, replies.get(b)!));
    const times = await measureSides([qemu, ...ours]);
    const q = times.get(qemu)!;
    for (const side of ours) {
      const t = times.get(side)!;
      console.error(
        `lifecycle: ${side.name}: PUT /snapshot/load answered in ${
          median(replies.get(side.name as "interp" | "kvm")!).toFixed(1)
        } ms (median), the guest's next line came at ${t.restore.toFixed(1)} ms`,
      );
      rows.push({
        name: `snapshot create (${side.name})`,
        unit: "ms",
        value: t.create,
        baseline: "QEMU TCG stop + migrate exec:cat > FILE until completed, same guest, 256 MiB",
        baselineValue: q.create,
        ratio: t.create / q.create,
      }, {
        name: `snapshot restore (${side.name})`,
        unit: "ms",
        value: t.restore,
        baseline:
          "QEMU TCG -incoming defer: migrate-incoming exec:cat FILE, cont, to the next line",
        baselineValue: q.restore,
        ratio: t.restore / q.restore,
      });
    }
    return rows;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
