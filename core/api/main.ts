/**
 * The CLI with `--api-sock PATH` and/or `--config-file FILE`: the VM runs on the lifecycle
 * Worker, managed through the Firecracker-compatible API on the unix socket. With `--kernel`
 * (or `--linux`, or a config file) it boots at once; with `--api-sock` alone it waits for
 * `PUT /boot-source` and `InstanceStart`. The process ends with the guest, with the same exit
 * status as the plain CLI.
 */

import { parseCli, relayInput, restoreTerminal, VERSION } from "../cli.ts";
import { UsageError, VmmError } from "../errors.ts";
import type { VmConfig } from "../vm.ts";
import {
  ApiError,
  apiHandler,
  applyBootSource,
  applyMachineConfig,
  DEFAULT_ID,
  serveApi,
  type VsockHolder,
} from "./server.ts";
import { startVsockHost } from "../vsock/host.ts";
import { snapshotVsock } from "../vsock/restore.ts";
import { LifecycleError, type VmEnd, Vmm } from "./vmm.ts";
import { applyDrive, applyNetworkInterface } from "./devices.ts";
import { parseMigrationUrl } from "../migration/url.ts";
import { ApiLogger, ApiMetrics } from "./observe.ts";
import {
  ensureRunDir,
  entryState,
  readRecord,
  removeEntry,
  validateName,
  vmPaths,
  type VmRecord,
  writeRecord,
} from "../run_dir.ts";

/** The flags this mode adds to the plain CLI's. */
export interface ApiArgs {
  apiSock: string | null;
  configFile: string | null;
  id: string;
  /** `--name NAME`: registered in the runtime directory (core/run_dir.ts), socket there. */
  name: string | null;
  /** `--incoming URL`: wait for a migrating VM there instead of booting one. */
  incoming: string | null;
  /** `--replicate URL`: boot as a primary checkpointing to the standby there. */
  replicate: string | null;
  /** `--checkpoint-ms N` with `--replicate`. */
  checkpointMs: number | null;
  /** `--standby URL`: keep a primary's checkpoints, take over when it is lost. */
  standby: string | null;
  /** `--allow-path PATH` (repeatable): more files the machine may read and write. */
  allowPaths: string[];
  /** The plain CLI's flags, for parseCli. */
  rest: string[];
}

const OWN_FLAGS = [
  "--api-sock",
  "--config-file",
  "--id",
  "--name",
  "--incoming",
  "--replicate",
  "--checkpoint-ms",
  "--standby",
  "--allow-path",
] as const;

/** The flags that ask for this mode (`--allow-path` only goes with one of them). */
const MODE_FLAGS = OWN_FLAGS.filter((f) => f !== "--allow-path");

/** True when `argv` asks for this mode. */
export function wantsApi(argv: readonly string[]): boolean {
  return argv.some((a) => MODE_FLAGS.some((f) => a === f || a.startsWith(f + "=")));
}

/** Takes `--api-sock`, `--config-file`, `--id` and `--name` out of `argv`. Throws UsageError. */
export function splitApiArgs(argv: readonly string[]): ApiArgs {
  const out: ApiArgs = {
    apiSock: null,
    configFile: null,
    id: DEFAULT_ID,
    name: null,
    incoming: null,
    replicate: null,
    checkpointMs: null,
    standby: null,
    allowPaths: [],
    rest: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const flag = OWN_FLAGS.find((f) => a === f || a.startsWith(f + "="));
    if (flag === undefined) {
      out.rest.push(a);
      continue;
    }
    let value: string | undefined;
    if (a === flag) value = argv[++i];
    else value = a.slice(flag.length + 1);
    if (value === undefined || value === "") throw new UsageError(`${flag} needs a value`);
    if (flag === "--api-sock") out.apiSock = value;
    else if (flag === "--config-file") out.configFile = value;
    else if (flag === "--name") out.name = validateName(value);
    else if (flag === "--incoming") out.incoming = value;
    else if (flag === "--replicate") out.replicate = value;
    else if (flag === "--standby") out.standby = value;
    else if (flag === "--allow-path") out.allowPaths.push(value);
    else if (flag === "--checkpoint-ms") {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 60_000) {
        throw new UsageError(`--checkpoint-ms "${value}": give whole milliseconds, 1 to 60000`);
      }
      out.checkpointMs = n;
    } else {
      if (!/^[A-Za-z0-9-]{1,64}$/.test(value)) {
        throw new UsageError(`--id "${value}": use 1 to 64 letters, digits and hyphens`);
      }
      out.id = value;
    }
  }
  return out;
}

/**
 * Applies a Firecracker config file (`boot-source`, `machine-config`, `drives`,
 * `network-interfaces`) to `config`.
 */
export function applyConfigFile(config: VmConfig, path: string): void {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    throw new UsageError(`Cannot read --config-file "${path}": ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--config-file "${path}" is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new UsageError(`--config-file "${path}" must hold a JSON object`);
  }
  const obj = json as Record<string, unknown>;
  const keys = ["boot-source", "machine-config", "drives", "network-interfaces"];
  for (const key of Object.keys(obj)) {
    if (!keys.includes(key)) {
      throw new UsageError(
        `--config-file "${path}": "${key}" is not supported; denovisor takes ` +
          keys.map((k) => `"${k}"`).join(", "),
      );
    }
  }
  const list = (key: string): Record<string, unknown>[] => {
    const v = obj[key] ?? [];
    if (
      !Array.isArray(v) || v.some((e) => typeof e !== "object" || e === null || Array.isArray(e))
    ) {
      throw new UsageError(`--config-file "${path}": "${key}" must be an array of objects`);
    }
    return v as Record<string, unknown>[];
  };
  const section = (key: string): Record<string, unknown> => {
    const v = obj[key];
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new UsageError(`--config-file "${path}": "${key}" must be a JSON object`);
    }
    return v as Record<string, unknown>;
  };
  try {
    if (obj["boot-source"] === undefined) {
      throw new ApiError(`"boot-source" is missing: it names the kernel to boot`);
    }
    applyBootSource(config, section("boot-source"));
    if (obj["machine-config"] !== undefined) {
      applyMachineConfig(config, section("machine-config"), false);
    }
    list("drives").forEach((d, i) => applyDrive(config, d, undefined, `drives[${i}]`));
    list("network-interfaces").forEach((n, i) =>
      applyNetworkInterface(config, n, undefined, `network-interfaces[${i}]`)
    );
  } catch (err) {
    if (err instanceof ApiError) throw new UsageError(`--config-file "${path}": ${err.message}`);
    throw err;
  }
}

/** Runs the API/config-file mode and returns the process exit status. */
export async function apiMain(argv: string[]): Promise<number> {
  let args: ApiArgs;
  let config: VmConfig;
  try {
    args = splitApiArgs(argv);
    const parsed = parseCli(args.rest);
    if (parsed === "help" || parsed === "version") {
      throw new UsageError(`--${parsed} does not combine with --api-sock or --config-file`);
    }
    config = parsed;
    if (args.configFile !== null) {
      if (config.kernel !== null) {
        throw new UsageError("--config-file names the kernel itself: drop --kernel/--linux");
      }
      applyConfigFile(config, args.configFile);
    }
  } catch (err) {
    if (err instanceof VmmError) {
      console.error(`denovisor: ${err.message}`);
      return err.exitCode;
    }
    throw err;
  }
  // `--restore STATE --mem-file MEM` (when this build has them): load that snapshot at once, as
  // PUT /snapshot/load with resume_vm would, on --backend when given (else the snapshot's).
  const restore = (config as { restore?: { statePath: string; memPath: string } }).restore;
  if (restore !== undefined && args.configFile !== null) {
    console.error("denovisor: --restore and --config-file cannot be combined: pick one");
    return 2;
  }
  for (
    const [flag, url] of [
      ["--incoming", args.incoming],
      ["--replicate", args.replicate],
      ["--standby", args.standby],
    ] as const
  ) {
    if (url === null) continue;
    try {
      parseMigrationUrl(url, flag);
    } catch (err) {
      console.error(`denovisor: ${(err as Error).message}`);
      return 2;
    }
  }
  if (args.checkpointMs !== null && args.replicate === null) {
    console.error("denovisor: --checkpoint-ms goes with --replicate: add --replicate URL");
    return 2;
  }
  const modes = [
    ["--incoming", args.incoming],
    ["--replicate", args.replicate],
    ["--standby", args.standby],
  ].filter(([, v]) => v !== null).map(([f]) => f);
  if (modes.length > 1) {
    console.error(`denovisor: ${modes.join(" and ")} cannot be combined: pick one`);
    return 2;
  }
  if (args.replicate !== null && (config.kernel === null || restore !== undefined)) {
    console.error(
      "denovisor: --replicate boots a VM and protects it: give --kernel (or --linux)",
    );
    return 2;
  }
  const takesVm = args.incoming ?? args.standby;
  if (takesVm !== null) {
    const flag = args.incoming !== null ? "--incoming" : "--standby";
    const other = config.kernel !== null
      ? "--kernel/--linux"
      : restore !== undefined
      ? "--restore"
      : args.configFile !== null
      ? "--config-file"
      : null;
    if (other !== null) {
      console.error(
        `denovisor: ${flag} takes the VM from another VMM: drop ${other} (that VM brings ` +
          `its kernel, memory and devices)`,
      );
      return 2;
    }
  }
  const bootNow = config.kernel !== null || restore !== undefined || takesVm !== null;
  // --net: the backends' sockets on this thread, their frames in rings that go to the
  // lifecycle Worker inside the config (core/net/host.ts).
  let net: { close(): void } | null = null;
  if ((config.nets ?? []).length > 0) {
    const { startNetBackends } = await import("../net/host.ts");
    try {
      net = await startNetBackends(config.nets!);
    } catch (err) {
      if (!(err instanceof VmmError)) throw err;
      console.error(`denovisor: ${err.message}`);
      return err.exitCode;
    }
  }
  // --vsock: the host side's unix sockets on this thread as well (core/vsock/host.ts); PUT
  // /vsock replaces it before the boot.
  const vsock: VsockHolder = { host: null };
  if (restore !== undefined) {
    const spec = await snapshotVsock(restore); // it listens where it did
    if (spec !== null) config.vsock = spec;
  }
  if (config.vsock !== undefined) {
    try {
      vsock.host = await startVsockHost(config.vsock);
    } catch (err) {
      net?.close();
      if (!(err instanceof VmmError)) throw err;
      console.error(`denovisor: ${err.message}`);
      return err.exitCode;
    }
  }
  let record: VmRecord | null = null;
  if (args.name !== null) {
    const claimed = await claimName(args, config, restore?.statePath ?? null);
    if (typeof claimed === "number") {
      net?.close();
      vsock.host?.close();
      return claimed;
    }
    record = claimed;
  }

  const vmm = new Vmm(config, { allowPaths: args.allowPaths });
  const logger = new ApiLogger(args.id);
  const metrics = new ApiMetrics({ state: () => vmm.state, backend: () => vmm.backendName });
  vmm.onLog = (m) => {
    console.error(m);
    logger.log("Info", "vmm", m);
  };
  let server: Deno.HttpServer<Deno.UnixAddr> | null = null;
  let inFlight = 0;
  const cleanup = async () => {
    if (args.name !== null && readRecord(args.name)?.pid === Deno.pid) {
      removeEntry(args.name);
    }
    if (server !== null) {
      // Answers being built when the VM ended (PUT /migration/send's) still go out.
      for (let i = 0; i < 100 && inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
      const s = server;
      server = null;
      await s.shutdown().catch(() => {});
      try {
        Deno.removeSync(args.apiSock!);
      } catch {
        // Already gone.
      }
    }
  };
  if (args.apiSock !== null) {
    try {
      const handle = apiHandler(vmm, { id: args.id, version: VERSION }, {
        logger,
        metrics,
        vsock,
      });
      server = await serveApi(args.apiSock, async (req) => {
        // Counted, so that the VMM ending (a VM migrated away) waits for the answer in flight.
        inFlight++;
        try {
          return await handle(req);
        } finally {
          inFlight--;
        }
      });
      // The record comes after the socket: a socket with no record is a VMM starting up.
      if (record !== null) writeRecord(record);
    } catch (err) {
      vmm.close();
      vsock.host?.close();
      if (err instanceof ApiError) {
        console.error(`denovisor: ${err.message}`);
        return 2;
      }
      throw err;
    }
  }
  const signals: [Deno.Signal, number][] = [["SIGINT", 130], ["SIGTERM", 143]];
  const onSignal = signals.map(([sig, status]) => {
    const f = () => vmm.stop(status);
    Deno.addSignalListener(sig, f);
    return [sig, f] as const;
  });

  relayInput(vmm.input, () => vmm.stop(0));
  let end: VmEnd;
  if (bootNow) {
    const started = args.incoming !== null
      ? vmm.send({
        kind: "migrate-receive",
        url: args.incoming,
        config: structuredClone(config),
        what: "--incoming",
      })
      : args.standby !== null
      ? vmm.send({ kind: "standby", url: args.standby, config: structuredClone(config) })
      : args.replicate !== null
      ? vmm.send({
        kind: "replicate",
        url: args.replicate,
        config: structuredClone(config),
        ...(args.checkpointMs === null ? {} : { checkpointMs: args.checkpointMs }),
      })
      : restore === undefined
      ? vmm.send({ kind: "start", config: structuredClone(config) })
      : vmm.loadSnapshot({
        statePath: restore.statePath,
        memPath: restore.memPath,
        resume: true,
        ...(config.backend === "auto" ? {} : { backend: config.backend }),
      });
    const result = await Promise.race([
      started.then(() => null, (err: unknown) => err),
      vmm.ended,
    ]);
    if (args.name !== null && vmm.backendName !== null) {
      // The record learns the backend the VM runs on and its RAM (a snapshot's own size).
      const record = readRecord(args.name);
      if (record?.pid === Deno.pid) {
        writeRecord({ ...record, backend: vmm.backendName, memory: vmm.config.memSize });
      }
    }
    if (result instanceof LifecycleError) {
      end = { ok: true, outcome: { status: 1, message: result.message } };
    } else if (result instanceof Error) throw result;
    else end = await vmm.ended;
  } else {
    end = await vmm.ended;
  }
  for (const [sig, f] of onSignal) Deno.removeSignalListener(sig, f);
  await cleanup();
  metrics.flush();
  metrics.close();
  restoreTerminal();
  vmm.close();
  net?.close();
  vsock.host?.close();
  const say = (m: string) => {
    console.error(m);
    logger.log("Error", "vmm", m);
  };
  if (!end.ok) {
    say(`denovisor: internal error: ${end.message}`);
    if (config.trace && end.stack) console.error(end.stack);
    return 1;
  }
  const { outcome } = end;
  if (outcome.message) say(`denovisor: ${outcome.message}`);
  if (outcome.dump) say(outcome.dump);
  logger.log("Info", "vmm", `The VM ended with status ${outcome.status}.`);
  logger.close();
  return outcome.status;
}

/**
 * Claims `--name` in the runtime directory: refuses a name a live VM holds, cleans a stale
 * one (dead pid or dead socket) and points the API socket there. Returns the record to write
 * once the socket serves, or the exit status of a refusal (its message printed).
 */
async function claimName(
  args: ApiArgs,
  config: VmConfig,
  restored: string | null,
): Promise<VmRecord | number> {
  const name = args.name!;
  if (args.apiSock !== null) {
    console.error(
      `denovisor: --name ${name} puts the API socket in the runtime directory: drop --api-sock`,
    );
    return 2;
  }
  let dir: string;
  try {
    dir = ensureRunDir();
  } catch (err) {
    console.error(`denovisor: cannot create the runtime directory: ${(err as Error).message}`);
    return 1;
  }
  const state = await entryState(name, dir);
  if (state.kind !== "stale") {
    const pid = state.record === null ? "" : ` (pid ${state.record.pid})`;
    console.error(
      `denovisor: a VM named "${name}" is already running${pid} in ${dir}: pick another ` +
        `--name, or stop it with \`deno run -A mod.ts ctl stop ${name}\``,
    );
    return 2;
  }
  removeEntry(name, dir);
  args.apiSock = vmPaths(name, dir).sock;
  return {
    name,
    pid: Deno.pid,
    backend: config.backend,
    memory: config.memSize,
    started: Date.now(),
    kernel: restored !== null ? `restore:${restored}` : config.kernel,
  };
}
