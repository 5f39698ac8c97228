/**
 * `deno run -A mod.ts ctl VERB ...`: a virsh-like client of the API that named VMs
 * (`--name NAME`) serve in the runtime directory (core/run_dir.ts). Exit status 0 on success,
 * 1 when the VM is missing or refuses, 2 on bad usage.
 */

import { parseArgs } from "node:util";
import {
  ensureRunDir,
  entryNames,
  entryState,
  pidAlive,
  removeEntry,
  removeStale,
  runDir,
  socketAlive,
  validateName,
  vmPaths,
  type VmRecord,
} from "../run_dir.ts";
import { describeError, UsageError } from "../errors.ts";
import { ConnectError, type Reply, request } from "./http.ts";

const PROG = "deno run -A mod.ts ctl";

/** Usage per verb: the synopsis line and what it does. */
const VERBS: Record<string, { usage: string; does: string }> = {
  list: { usage: "list", does: "a table of the named VMs: name, state, backend, memory, uptime" },
  status: { usage: "status NAME", does: "GET / of VM NAME and its record, as JSON" },
  pause: { usage: "pause NAME", does: "pause VM NAME (PATCH /vm Paused)" },
  resume: { usage: "resume NAME", does: "resume VM NAME (PATCH /vm Resumed)" },
  snapshot: {
    usage: "snapshot NAME DIR",
    does: "save VM NAME to DIR/state and DIR/mem (pausing it meanwhile if it runs)",
  },
  restore: {
    usage: "restore DIR [--name NEW] [--backend kvm|interp]",
    does: "start a new VMM restoring DIR's snapshot, serial output to RUN_DIR/NEW.log " +
      "(default NEW: the name it was taken from; default backend: the one it was taken on)",
  },
  migrate: {
    usage: "migrate NAME URL [--downtime-ms N] [--max-passes N]",
    does: "live-migrate VM NAME to a VMM started with --incoming URL (tcp:HOST:PORT or " +
      "unix:PATH); its VMM here then ends (defaults: downtime 50 ms, 30 passes)",
  },
  stop: {
    usage: "stop NAME [--timeout SECONDS]",
    does: "send Ctrl-Alt-Del; after the timeout (default 5) SIGTERM, then SIGKILL",
  },
  console: { usage: "console NAME", does: "not available yet (see README)" },
};

/** `ctl --help`. */
export function ctlHelp(): string {
  const width = Math.max(...Object.values(VERBS).map((v) => v.usage.length));
  return `Usage: ${PROG} VERB [ARGS]
Manages the VMs started with --name NAME in the runtime directory
(now ${runDir()}: DENOVISOR_RUN_DIR, else $XDG_RUNTIME_DIR/denovisor, else /tmp/denovisor-$UID).

Verbs:
${Object.values(VERBS).map((v) => `  ${v.usage.padEnd(width)}  ${v.does}`).join("\n")}

${PROG} VERB --help shows one verb's usage.`;
}

function verbHelp(verb: string): string {
  const v = VERBS[verb]!;
  return `Usage: ${PROG} ${v.usage}\n${v.does[0]!.toUpperCase()}${v.does.slice(1)}.`;
}

/** A VM that is not there (exit 1). */
class MissingVm extends Error {}
/** A VM that refused or failed (exit 1). */
class VerbFailed extends Error {}

/** Runs `ctl argv...` and returns the exit status. */
export async function ctlMain(argv: string[]): Promise<number> {
  const verb = argv[0];
  if (verb === undefined || verb === "--help" || verb === "-h" || verb === "help") {
    if (verb === undefined) {
      console.error(`denovisor ctl: a verb is needed\n\n${ctlHelp()}`);
      return 2;
    }
    console.log(ctlHelp());
    return 0;
  }
  if (!Object.hasOwn(VERBS, verb)) {
    console.error(
      `denovisor ctl: unknown verb "${verb}": use ${Object.keys(VERBS).join(", ")} ` +
        `(${PROG} --help)`,
    );
    return 2;
  }
  const rest = argv.slice(1);
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(verbHelp(verb));
    return 0;
  }
  try {
    switch (verb) {
      case "list":
        await list(args(verb, rest, 0, {}).positionals);
        return 0;
      case "status":
        await status(args(verb, rest, 1, {}).positionals[0]!);
        return 0;
      case "pause":
      case "resume":
        await pauseResume(verb, args(verb, rest, 1, {}).positionals[0]!);
        return 0;
      case "snapshot": {
        const p = args(verb, rest, 2, {}).positionals;
        await snapshot(p[0]!, p[1]!);
        return 0;
      }
      case "restore": {
        const a = args(verb, rest, 1, { name: { type: "string" }, backend: { type: "string" } });
        const backend = a.values.backend as string | undefined;
        if (backend !== undefined && backend !== "kvm" && backend !== "interp") {
          throw new UsageError(`restore: --backend "${backend}": use kvm or interp`);
        }
        await restore(a.positionals[0]!, a.values.name as string | undefined, backend);
        return 0;
      }
      case "migrate": {
        const a = args(verb, rest, 2, {
          "downtime-ms": { type: "string" },
          "max-passes": { type: "string" },
        });
        const downtimeMs = positiveInt(
          a.values["downtime-ms"] as string | undefined,
          "downtime-ms",
        );
        const maxPasses = positiveInt(a.values["max-passes"] as string | undefined, "max-passes");
        await migrate(a.positionals[0]!, a.positionals[1]!, downtimeMs, maxPasses);
        return 0;
      }
      case "stop": {
        const a = args(verb, rest, 1, { timeout: { type: "string" } });
        const t = a.values.timeout as string | undefined;
        const timeout = t === undefined ? 5 : Number(t);
        if (!Number.isFinite(timeout) || timeout < 0 || t === "") {
          throw new UsageError(`stop: --timeout "${t}": give a number of seconds, e.g. 5`);
        }
        await stop(a.positionals[0]!, timeout * 1000);
        return 0;
      }
      case "console":
        args(verb, rest, 1, {});
        throw new VerbFailed(
          `console is not available yet: the API has no console endpoint. A VM that ` +
            `\`ctl restore\` started writes its serial output to ${runDir()}/NAME.log; ` +
            `run a VM in the foreground (without ctl) for an interactive console`,
        );
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`denovisor ctl: ${err.message}`);
      return 2;
    }
    if (err instanceof MissingVm || err instanceof VerbFailed || err instanceof ConnectError) {
      console.error(`denovisor ctl ${verb}: ${err.message}`);
      return 1;
    }
    throw err;
  }
  return 2;
}

type Options = Record<string, { type: "string" | "boolean" }>;

/** Parses a verb's arguments: exactly `positionals` positionals and `options`. */
function args(verb: string, argv: string[], positionals: number, options: Options) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(`${verb}: ${describeError(err)}; usage: ${PROG} ${VERBS[verb]!.usage}`);
  }
  if (parsed.positionals.length !== positionals) {
    const what = parsed.positionals.length < positionals ? "too few" : "too many";
    throw new UsageError(`${verb}: ${what} arguments; usage: ${PROG} ${VERBS[verb]!.usage}`);
  }
  return parsed;
}

/** `--FLAG N` of `migrate`: undefined when absent, else an integer of at least 1. */
function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`migrate: --${flag} "${value}": give a whole number of at least 1`);
  }
  return n;
}

/** The live VM `name` (its record and socket); a stale entry is cleaned and reported missing. */
async function find(name: string): Promise<{ record: VmRecord; sock: string }> {
  validateName(name, "NAME");
  const dir = runDir();
  const state = await entryState(name, dir);
  if (state.kind === "live") return { record: state.record, sock: vmPaths(name, dir).sock };
  if (state.kind === "busy") {
    throw new MissingVm(`VM "${name}" is starting or ending: try again in a moment`);
  }
  const had = entryNames(dir).includes(name) && await removeStale(name, dir);
  throw new MissingVm(
    `no VM named "${name}" in ${dir}${had ? " (it had ended: its stale entry was removed)" : ""}` +
      `; \`${PROG} list\` shows the VMs there`,
  );
}

async function call(sock: string, method: string, url: string, body?: unknown): Promise<Reply> {
  return await request(sock, method, url, body);
}

/** Throws VerbFailed with the VMM's fault_message unless `reply` is a success. */
function expectOk(reply: Reply, what: string): Reply {
  if (reply.status >= 200 && reply.status < 300) return reply;
  const fault = reply.json?.fault_message;
  throw new VerbFailed(`${what}: ${typeof fault === "string" ? fault : reply.body}`);
}

function formatUptime(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

function formatMemory(bytes: number): string {
  const mib = bytes / (1 << 20);
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024}G` : `${Math.round(mib)}M`;
}

/** One live VM's row facts. */
async function describe(name: string, record: VmRecord, sock: string) {
  const root = await call(sock, "GET", "/");
  let memory = record.memory;
  try {
    const mc = await call(sock, "GET", "/machine-config");
    const mib = mc.json?.mem_size_mib;
    if (typeof mib === "number") memory = mib * (1 << 20);
  } catch {
    // The record's size will do.
  }
  return {
    name,
    state: String(root.json?.state ?? "?"),
    backend: String(root.json?.backend ?? record.backend),
    memory,
    uptime: Date.now() - record.started,
    root,
  };
}

async function list(_: string[]): Promise<void> {
  const dir = runDir();
  const rows: string[][] = [];
  for (const name of entryNames(dir)) {
    const state = await entryState(name, dir);
    if (state.kind === "stale") {
      await removeStale(name, dir);
      continue;
    }
    if (state.kind === "busy") continue;
    try {
      const d = await describe(name, state.record, vmPaths(name, dir).sock);
      rows.push([d.name, d.state, d.backend, formatMemory(d.memory), formatUptime(d.uptime)]);
    } catch {
      // It ended while we asked: not listed.
    }
  }
  const head = ["NAME", "STATE", "BACKEND", "MEMORY", "UPTIME"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  console.log([line(head), ...rows.map(line)].join("\n"));
}

async function status(name: string): Promise<void> {
  const { record, sock } = await find(name);
  const d = await describe(name, record, sock);
  expectOk(d.root, "GET /");
  console.log(JSON.stringify(
    { ...d.root.json, memory: d.memory, uptime_ms: d.uptime, socket: sock, record },
    null,
    2,
  ));
}

async function pauseResume(verb: "pause" | "resume", name: string): Promise<void> {
  const { sock } = await find(name);
  const state = verb === "pause" ? "Paused" : "Resumed";
  expectOk(await call(sock, "PATCH", "/vm", { state }), `${verb} ${name}`);
  console.log(`${name}: ${verb === "pause" ? "Paused" : "Running"}`);
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

async function snapshot(name: string, dirArg: string): Promise<void> {
  const { record, sock } = await find(name);
  const dir = absolute(dirArg).replace(/\/+$/, "");
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new VerbFailed(`cannot create ${dir}: ${(err as Error).message}`);
  }
  const root = expectOk(await call(sock, "GET", "/"), "GET /");
  const wasRunning = root.json?.state === "Running";
  if (wasRunning) {
    expectOk(await call(sock, "PATCH", "/vm", { state: "Paused" }), `pause ${name}`);
  }
  let created: Reply;
  try {
    created = await call(sock, "PUT", "/snapshot/create", {
      snapshot_type: "Full",
      snapshot_path: `${dir}/state`,
      mem_file_path: `${dir}/mem`,
    });
  } finally {
    if (wasRunning) {
      expectOk(await call(sock, "PATCH", "/vm", { state: "Resumed" }), `resume ${name}`);
    }
  }
  expectOk(created, `snapshot ${name}`);
  Deno.writeTextFileSync(
    `${dir}/vm.json`,
    JSON.stringify(
      { name, backend: root.json?.backend ?? record.backend, taken: Date.now() },
      null,
      2,
    ) + "\n",
  );
  console.log(`${name}: snapshot in ${dir} (state, mem)${wasRunning ? "; running again" : ""}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function restore(dirArg: string, newName?: string, backend?: string): Promise<void> {
  const dir = absolute(dirArg).replace(/\/+$/, "");
  for (const f of ["state", "mem"]) {
    try {
      Deno.statSync(`${dir}/${f}`);
    } catch {
      throw new VerbFailed(
        `${dir}/${f} is missing: give a directory \`${PROG} snapshot NAME DIR\` wrote`,
      );
    }
  }
  let name = newName;
  if (name === undefined) {
    try {
      name = String(JSON.parse(Deno.readTextFileSync(`${dir}/vm.json`)).name);
    } catch {
      throw new UsageError(`restore: ${dir} does not say which VM it was: give --name NEW`);
    }
  }
  validateName(name, "--name");
  const runDirPath = ensureRunDir();
  const state = await entryState(name, runDirPath);
  if (state.kind !== "stale") {
    throw new VerbFailed(`a VM named "${name}" is already running: give --name NEW`);
  }
  removeEntry(name, runDirPath, true);
  const paths = vmPaths(name, runDirPath);
  const vmmLog = paths.vmmLog;
  const mod = new URL("../../mod.ts", import.meta.url).pathname;
  const vmmArgs = [
    "run",
    "-A",
    "--quiet",
    mod,
    "--restore",
    `${dir}/state`,
    "--mem-file",
    `${dir}/mem`,
    "--name",
    name,
    "--serial",
    `file:${paths.log}`,
    ...(backend === undefined ? [] : ["--backend", backend]),
  ];
  // Detached (its own session), stdin closed, the VMM's own messages to NAME.vmm.log.
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'log="$1"; shift; exec "$@" </dev/null >>"$log" 2>&1',
      "sh",
      vmmLog,
      Deno.execPath(),
      ...vmmArgs,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  const failed = (why: string) => {
    let log = "";
    try {
      log = Deno.readTextFileSync(vmmLog).trim();
    } catch {
      // Nothing written.
    }
    return new VerbFailed(`${why}${log === "" ? "" : `; its messages:\n${log}`}`);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!pidAlive(child.pid)) {
      removeEntry(name, runDirPath);
      throw failed(`the VMM restoring ${dir} ended`);
    }
    if (await socketAlive(paths.sock)) {
      try {
        const r = await call(paths.sock, "GET", "/");
        if (r.json?.state === "Running" || r.json?.state === "Paused") {
          console.log(
            `${name}: restored from ${dir} (${r.json.state}, ${r.json.backend ?? "?"}, ` +
              `pid ${child.pid}); serial output in ${paths.log}`,
          );
          return;
        }
      } catch {
        // Not ready yet.
      }
    }
    if (Date.now() > deadline) {
      throw failed(`the VMM restoring ${dir} (pid ${child.pid}) did not answer within 60 s`);
    }
    await sleep(50);
  }
}

async function migrate(
  name: string,
  url: string,
  downtimeMs: number | undefined,
  maxPasses: number | undefined,
): Promise<void> {
  const { record, sock } = await find(name);
  const reply = expectOk(
    await call(sock, "PUT", "/migration/send", {
      destination_url: url,
      ...(downtimeMs === undefined ? {} : { downtime_ms: downtimeMs }),
      ...(maxPasses === undefined ? {} : { max_passes: maxPasses }),
    }),
    `migrate ${name}`,
  );
  // The answer carries the migration's final figures; the VMM here ends right after.
  const st = reply.json as Record<string, unknown> | null;
  const gone = await waitGone(record.pid, 5000);
  let figures = "";
  if (st?.role === "source" && st.state === "completed") {
    const passes = Number(st.passes);
    figures = ` (${passes} pass${passes === 1 ? "" : "es"}, ` +
      `${(Number(st.bytes) / 1048576).toFixed(1)} MiB sent, downtime ${st.downtime_ms} ms, ` +
      `total ${st.total_ms} ms)`;
  }
  console.log(
    `${name}: moved to ${url}${figures}; ` +
      (gone ? "its VMM here ended" : `its VMM here (pid ${record.pid}) is still ending`),
  );
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (pidAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

async function stop(name: string, timeoutMs: number): Promise<void> {
  const { record, sock } = await find(name);
  const dir = runDir();
  let how = "";
  let root: Reply | null = null;
  try {
    root = await call(sock, "GET", "/");
  } catch {
    // Going already.
  }
  if (root?.json?.state === "Running") {
    try {
      const r = await call(sock, "PUT", "/actions", { action_type: "SendCtrlAltDel" });
      if (r.status === 204 && await waitGone(record.pid, timeoutMs)) how = "Ctrl-Alt-Del";
    } catch {
      // It may have ended while answering.
      if (await waitGone(record.pid, timeoutMs)) how = "Ctrl-Alt-Del";
    }
  }
  if (how === "") {
    try {
      Deno.kill(record.pid, "SIGTERM");
    } catch {
      // Gone meanwhile.
    }
    if (await waitGone(record.pid, 5000)) how = "SIGTERM";
    else {
      try {
        Deno.kill(record.pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
      if (!await waitGone(record.pid, 5000)) {
        throw new VerbFailed(`pid ${record.pid} of VM "${name}" survived SIGKILL`);
      }
      how = "SIGKILL";
    }
  }
  removeEntry(name, dir, true);
  console.log(`${name}: stopped (${how})`);
}
