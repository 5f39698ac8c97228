/**
 * The Firecracker-compatible API: HTTP/1.1 over a unix socket, JSON bodies, Firecracker's paths,
 * field names and semantics (its swagger file is the contract). Success is 204, or 200 with a
 * body for GETs; every error is 400 with `{"fault_message": "..."}` naming the field and the fix.
 * Unknown endpoints, methods and fields are refused, not ignored.
 *
 * denovisor extensions (documented in README "API"): `backend` ("auto", "kvm" or "interp") in
 * `machine-config` and in `snapshot/load`, `backend` (the one the VM runs on) in `GET /`, and
 * `switch_path` (a learning switch's socket instead of a TAP's `host_dev_name`) in
 * `network-interfaces`.
 */

import type { VmConfig } from "../vm.ts";
import type { MigrationStatus } from "../migration/send.ts";
import { LifecycleError, type Vmm } from "./vmm.ts";
import { type ApiLogger, type ApiMetrics, LOG_LEVELS } from "./observe.ts";
import { checkUdsPath, parseCid } from "../vsock/spec.ts";
import { startVsockHost, type VsockHost } from "../vsock/host.ts";
import { snapshotVsock } from "../vsock/restore.ts";
import { VmmError } from "../errors.ts";

/** The VM's vsock host side (`--vsock`, `PUT /vsock`), which the API's owner closes. */
export interface VsockHolder {
  host: VsockHost | null;
}
import { ApiError, bool, int, type Json, onlyFields, str } from "./fields.ts";
import { applyDrive, applyNetworkInterface, driveJson, driveUpdate, netJson } from "./devices.ts";

export { ApiError } from "./fields.ts";

const BACKENDS = ["auto", "kvm", "interp"] as const;

/** Firecracker's default instance id. */
export const DEFAULT_ID = "anonymous-instance";

function fault(message: string): Response {
  return Response.json({ fault_message: message }, { status: 400 });
}

function noContent(): Response {
  return new Response(null, { status: 204 });
}

/** Parses a JSON object body; every way it can be wrong names the fix. */
async function body(req: Request, what: string): Promise<Json> {
  const text = await req.text();
  if (text.trim() === "") {
    throw new ApiError(`${what}: the request body is empty; send a JSON object`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ApiError(`${what}: malformed JSON body (${(err as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiError(`${what}: the body must be a JSON object`);
  }
  return value as Json;
}

function backendField(obj: Json, what: string): VmConfig["backend"] | undefined {
  const v = str(obj, "backend", what, false);
  if (v === undefined) return undefined;
  if (!(BACKENDS as readonly string[]).includes(v)) {
    throw new ApiError(`${what}: field "backend" must be one of ${BACKENDS.join(", ")}`);
  }
  return v as VmConfig["backend"];
}

const BOOT_FIELDS = ["kernel_image_path", "boot_args", "initrd_path"] as const;

/** Applies a Firecracker `BootSource` to `config` (shared with --config-file). */
export function applyBootSource(config: VmConfig, obj: Json, what = "boot-source"): void {
  onlyFields(obj, BOOT_FIELDS, what);
  const kernel = str(obj, "kernel_image_path", what, true)!;
  const args = str(obj, "boot_args", what, false);
  const initrd = str(obj, "initrd_path", what, false);
  try {
    if (!Deno.statSync(kernel).isFile) throw new Error("not a file");
  } catch {
    throw new ApiError(`${what}: kernel_image_path "${kernel}" is not a readable file`);
  }
  if (initrd !== undefined) {
    try {
      if (!Deno.statSync(initrd).isFile) throw new Error("not a file");
    } catch {
      throw new ApiError(`${what}: initrd_path "${initrd}" is not a readable file`);
    }
  }
  config.kernel = kernel;
  config.cmdline = args ?? "";
  config.initrd = initrd ?? null;
  config.format = "auto";
}

const MACHINE_FIELDS = [
  "vcpu_count",
  "mem_size_mib",
  "smt",
  "track_dirty_pages",
  "huge_pages",
  "cpu_template",
  "backend",
] as const;

/**
 * Applies a Firecracker `MachineConfiguration` to `config`; `partial` (PATCH) makes every
 * field optional, as in Firecracker.
 */
export function applyMachineConfig(
  config: VmConfig,
  obj: Json,
  partial: boolean,
  what = "machine-config",
): void {
  onlyFields(obj, MACHINE_FIELDS, what);
  const vcpus = int(obj, "vcpu_count", what, !partial);
  if (vcpus !== undefined && vcpus !== 1) {
    throw new ApiError(
      `${what}: vcpu_count ${vcpus} is not supported: denovisor runs one vCPU; use 1`,
    );
  }
  const mib = int(obj, "mem_size_mib", what, !partial);
  if (mib !== undefined && (mib < 1 || mib > 65536)) {
    throw new ApiError(`${what}: mem_size_mib ${mib} is out of range; use 1 to 65536`);
  }
  if (bool(obj, "smt", what) === true) {
    throw new ApiError(`${what}: smt true is not supported with one vCPU; use false`);
  }
  bool(obj, "track_dirty_pages", what); // always tracked (the page-state map)
  const huge = str(obj, "huge_pages", what, false);
  if (huge !== undefined && huge !== "None") {
    throw new ApiError(`${what}: huge_pages "${huge}" is not supported; use "None"`);
  }
  const template = str(obj, "cpu_template", what, false);
  if (template !== undefined && template !== "None") {
    throw new ApiError(
      `${what}: cpu_template "${template}" is not supported; use "None" (the CPU model is ` +
        `the --cpu flag)`,
    );
  }
  const backend = backendField(obj, what);
  if (mib !== undefined) config.memSize = mib * 1024 * 1024;
  if (backend !== undefined) config.backend = backend;
}

/** The `MachineConfiguration` GET /machine-config answers. */
export function machineConfigOf(config: VmConfig): Json {
  return {
    vcpu_count: 1,
    mem_size_mib: Math.floor(config.memSize / (1024 * 1024)),
    smt: false,
    track_dirty_pages: false,
    huge_pages: "None",
    backend: config.backend,
  };
}

function bootSourceOf(config: VmConfig): Json | undefined {
  if (config.kernel === null) return undefined;
  const b: Json = { kernel_image_path: config.kernel, boot_args: config.cmdline };
  if (config.initrd !== null) b.initrd_path = config.initrd;
  return b;
}

/** A migration status in the API's spelling (snake_case). */
export function migrationJson(m: MigrationStatus): Json {
  return {
    role: m.role,
    state: m.state,
    url: m.url,
    passes: m.passes,
    pages: m.pages,
    zero_pages: m.zeroPages,
    bytes: m.bytes,
    dirty_rate_pages_per_s: m.dirtyRate,
    final_pages: m.finalPages,
    downtime_ms: m.downtimeMs,
    total_ms: m.totalMs,
    ...(m.message === undefined ? {} : { message: m.message }),
  };
}

/** The `Vsock` GET /vm/config reports, or undefined. */
function vsockOf(config: VmConfig): Json | undefined {
  if (config.vsock === undefined) return undefined;
  return { guest_cid: config.vsock.cid, uds_path: config.vsock.uds };
}

/** Paths with an id in them, as `routes` names them. */
const TEMPLATES: [prefix: string, template: string][] = [
  ["/drives/", "/drives/{drive_id}"],
  ["/network-interfaces/", "/network-interfaces/{iface_id}"],
];

/** The route template `path` belongs to ("/drives/vda" -> "/drives/{drive_id}"), or `path`. */
function templateOf(path: string): string {
  for (const [prefix, template] of TEMPLATES) {
    const rest = path.slice(prefix.length).replace(/\/+$/, "");
    if (path.startsWith(prefix) && rest !== "" && !rest.includes("/")) return template;
  }
  return path;
}

/** The id in a templated path (after `prefix`), URL-decoded. */
function param(req: Request, prefix: string): string {
  const path = new URL(req.url).pathname;
  const raw = path.slice(prefix.length).replace(/\/+$/, "");
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiError(`${path}: the id in the path is not valid URL encoding`);
  }
}

/** Routes and answers one API request. */
export function apiHandler(
  vmm: Vmm,
  info: { id: string; version: string },
  obs: { logger: ApiLogger; metrics: ApiMetrics; vsock?: VsockHolder },
): (req: Request) => Promise<Response> {
  const vsock = obs.vsock ?? { host: null };
  const preBoot = (what: string) => {
    if (vmm.state !== "Not started") {
      throw new ApiError(
        `${what}: the requested operation is not supported after starting the microVM`,
      );
    }
  };
  const lifecycle = async (p: Promise<void>) => {
    try {
      await p;
    } catch (err) {
      if (err instanceof LifecycleError) throw new ApiError(err.message);
      throw err;
    }
    return noContent();
  };

  const routes: Record<string, Record<string, (req: Request) => Promise<Response>>> = {
    "/": {
      GET: () =>
        Promise.resolve(Response.json({
          id: info.id,
          state: vmm.state,
          vmm_version: info.version,
          app_name: "denovisor",
          ...(vmm.backendName === null ? {} : { backend: vmm.backendName }),
        })),
    },
    "/version": {
      GET: () => Promise.resolve(Response.json({ firecracker_version: info.version })),
    },
    "/boot-source": {
      PUT: async (req) => {
        preBoot("boot-source");
        applyBootSource(vmm.config, await body(req, "boot-source"));
        return noContent();
      },
    },
    "/machine-config": {
      GET: () => Promise.resolve(Response.json(machineConfigOf(vmm.config))),
      PUT: async (req) => {
        preBoot("machine-config");
        const next = structuredClone(vmm.config);
        applyMachineConfig(next, await body(req, "machine-config"), false);
        vmm.config = next;
        return noContent();
      },
      PATCH: async (req) => {
        preBoot("machine-config");
        const next = structuredClone(vmm.config);
        applyMachineConfig(next, await body(req, "machine-config"), true);
        vmm.config = next;
        return noContent();
      },
    },
    "/logger": {
      PUT: async (req) => {
        const what = "logger";
        const b = await body(req, what);
        onlyFields(b, ["log_path", "level", "show_level", "show_log_origin", "module"], what);
        const logPath = str(b, "log_path", what, false);
        const level = str(b, "level", what, false);
        const levels = [...LOG_LEVELS, "Off"];
        const match = levels.find((l) => l.toLowerCase() === level?.toLowerCase());
        if (level !== undefined && match === undefined) {
          throw new ApiError(`${what}: level "${level}" is not one of ${levels.join(", ")}`);
        }
        const showLevel = bool(b, "show_level", what);
        const showOrigin = bool(b, "show_log_origin", what);
        if (str(b, "module", what, false) !== undefined) {
          throw new ApiError(`${what}: module filters are not supported; leave "module" out`);
        }
        try {
          obs.logger.configure({
            logPath,
            level: match as (typeof LOG_LEVELS)[number] | "Off" | undefined,
            showLevel,
            showOrigin,
          });
        } catch (err) {
          throw new ApiError((err as Error).message);
        }
        return noContent();
      },
    },
    "/metrics": {
      PUT: async (req) => {
        const what = "metrics";
        const b = await body(req, what);
        onlyFields(b, ["metrics_path"], what);
        const path = str(b, "metrics_path", what, true)!;
        try {
          obs.metrics.configure(path);
        } catch (err) {
          throw new ApiError((err as Error).message);
        }
        return noContent();
      },
    },
    "/vm/config": {
      GET: () => {
        const out: Json = { "machine-config": machineConfigOf(vmm.config) };
        const boot = bootSourceOf(vmm.config);
        if (boot !== undefined) out["boot-source"] = boot;
        const vs = vsockOf(vmm.config);
        if (vs !== undefined) out.vsock = vs;
        out.drives = (vmm.config.drives ?? []).map(driveJson);
        out["network-interfaces"] = (vmm.config.nets ?? []).map(netJson);
        return Promise.resolve(Response.json(out));
      },
    },
    "/vsock": {
      PUT: async (req) => {
        const what = "vsock";
        const b = await body(req, what);
        onlyFields(b, ["guest_cid", "uds_path", "vsock_id"], what);
        str(b, "vsock_id", what, false); // Firecracker's deprecated id: accepted, unused
        const cidField = int(b, "guest_cid", what, true);
        const uds = str(b, "uds_path", what, true)!;
        let cid: number;
        try {
          cid = parseCid(cidField, what);
          checkUdsPath(uds, what);
        } catch (err) {
          throw new ApiError((err as Error).message);
        }
        preBoot(what);
        // The listener starts now, so a taken path is refused here (and a second PUT replaces
        // the first's).
        const spec = { cid, uds };
        const old = vsock.host;
        if (old !== null && vmm.config.vsock?.uds === uds) {
          old.close();
          vsock.host = null;
        }
        let host: VsockHost;
        try {
          host = await startVsockHost(spec);
        } catch (err) {
          if (vsock.host === null && vmm.config.vsock !== undefined) {
            // The old listener on this path is gone: so is the old device.
            const { vsock: _, ...rest } = vmm.config;
            vmm.config = rest;
          }
          if (err instanceof VmmError) {
            throw new ApiError(`${what}: ${err.message.replace(/^--vsock /, "")}`);
          }
          throw err;
        }
        vsock.host?.close();
        vsock.host = host;
        vmm.config = { ...vmm.config, vsock: spec };
        return noContent();
      },
    },
    "/drives/{drive_id}": {
      PUT: async (req) => {
        const what = "drives";
        preBoot(what);
        const next = structuredClone(vmm.config);
        applyDrive(next, await body(req, what), param(req, "/drives/"), what);
        vmm.config = next;
        return noContent();
      },
      PATCH: async (req) => {
        const what = "drives";
        const b = await body(req, what);
        if (vmm.state === "Not started") {
          throw new ApiError(
            `${what}: PATCH changes a started microVM's drive; before InstanceStart, PUT ` +
              `/drives/{drive_id} again`,
          );
        }
        const { drive, path } = driveUpdate(vmm.config, b, param(req, "/drives/"), what);
        if (path === null) return noContent();
        await lifecycle(vmm.send({ kind: "drive-update", driveId: drive.id, path }));
        // What GET /vm/config (and a snapshot's restore) now names.
        drive.path = path;
        return noContent();
      },
    },
    "/network-interfaces/{iface_id}": {
      PUT: async (req) => {
        const what = "network-interfaces";
        preBoot(what);
        const next = structuredClone(vmm.config);
        applyNetworkInterface(
          next,
          await body(req, what),
          param(req, "/network-interfaces/"),
          what,
        );
        vmm.config = next;
        return noContent();
      },
    },
    "/actions": {
      PUT: async (req) => {
        const what = "actions";
        const b = await body(req, what);
        onlyFields(b, ["action_type"], what);
        const action = str(b, "action_type", what, true);
        switch (action) {
          case "InstanceStart":
            if (vmm.state !== "Not started") {
              throw new ApiError(
                `InstanceStart: the microVM is already started (state ${vmm.state})`,
              );
            }
            if (vmm.config.kernel === null) {
              throw new ApiError(
                "InstanceStart: no boot source; PUT /boot-source with kernel_image_path first",
              );
            }
            return lifecycle(vmm.start());
          case "SendCtrlAltDel":
            if (vmm.state === "Not started") {
              throw new ApiError("SendCtrlAltDel: the microVM is not started; InstanceStart first");
            }
            return lifecycle(vmm.send({ kind: "ctrl-alt-del" }));
          case "FlushMetrics":
            if (!obs.metrics.flush()) {
              throw new ApiError("FlushMetrics: no metrics file; PUT /metrics with metrics_path");
            }
            return noContent();
          default:
            throw new ApiError(
              `actions: unknown action_type "${action}"; use InstanceStart, SendCtrlAltDel or ` +
                `FlushMetrics`,
            );
        }
      },
    },
    "/vm": {
      PATCH: async (req) => {
        const what = "vm";
        const b = await body(req, what);
        onlyFields(b, ["state"], what);
        const state = str(b, "state", what, true);
        if (state === "Paused") {
          if (vmm.state !== "Running") {
            throw new ApiError(`vm: cannot pause: the microVM is ${vmm.state}, not Running`);
          }
          return lifecycle(vmm.send({ kind: "pause" }));
        }
        if (state === "Resumed") {
          if (vmm.state !== "Paused") {
            throw new ApiError(`vm: cannot resume: the microVM is ${vmm.state}, not Paused`);
          }
          return lifecycle(vmm.send({ kind: "resume" }));
        }
        throw new ApiError(`vm: field "state" must be "Paused" or "Resumed", not "${state}"`);
      },
    },
    "/migration": {
      GET: () => {
        const m = vmm.migration;
        if (m === null) return Promise.resolve(Response.json({ state: "none" }));
        return Promise.resolve(Response.json(migrationJson(m)));
      },
    },
    "/migration/send": {
      PUT: async (req) => {
        const what = "migration/send";
        const b = await body(req, what);
        onlyFields(b, ["destination_url", "downtime_ms", "max_passes"], what);
        const url = str(b, "destination_url", what, true)!;
        const downtimeMs = int(b, "downtime_ms", what, false);
        const maxPasses = int(b, "max_passes", what, false);
        if (downtimeMs !== undefined && downtimeMs < 1) {
          throw new ApiError(`${what}: downtime_ms must be at least 1`);
        }
        if (maxPasses !== undefined && maxPasses < 1) {
          throw new ApiError(`${what}: max_passes must be at least 1`);
        }
        if (vmm.state === "Not started") {
          throw new ApiError(`${what}: the microVM is not started: there is nothing to migrate`);
        }
        await lifecycle(vmm.send({
          kind: "migrate-send",
          url,
          ...(downtimeMs === undefined ? {} : { downtimeMs }),
          ...(maxPasses === undefined ? {} : { maxPasses }),
        }));
        // The worker's last progress message precedes its reply: the figures are final.
        return Response.json(vmm.migration === null ? {} : migrationJson(vmm.migration));
      },
    },
    "/migration/receive": {
      PUT: async (req) => {
        const what = "migration/receive";
        const b = await body(req, what);
        onlyFields(b, ["receiver_url"], what);
        const url = str(b, "receiver_url", what, true)!;
        preBoot(what);
        return lifecycle(
          vmm.send({ kind: "migrate-receive", url, config: structuredClone(vmm.config) }),
        );
      },
    },
    "/snapshot/create": {
      PUT: async (req) => {
        const what = "snapshot/create";
        const b = await body(req, what);
        onlyFields(b, ["snapshot_type", "snapshot_path", "mem_file_path", "version"], what);
        const type = str(b, "snapshot_type", what, false) ?? "Full";
        if (type !== "Full" && type !== "Diff") {
          throw new ApiError(`${what}: snapshot_type must be "Full" or "Diff", not "${type}"`);
        }
        const statePath = str(b, "snapshot_path", what, true)!;
        const memPath = str(b, "mem_file_path", what, true)!;
        if (vmm.state !== "Paused") {
          throw new ApiError(
            `${what}: the microVM is ${vmm.state}; pause it first (PATCH /vm {"state": "Paused"})`,
          );
        }
        return lifecycle(vmm.send({ kind: "snapshot-create", statePath, memPath, type }));
      },
    },
    "/snapshot/load": {
      PUT: async (req) => {
        const what = "snapshot/load";
        const b = await body(req, what);
        onlyFields(b, [
          "snapshot_path",
          "mem_backend",
          "mem_file_path",
          "resume_vm",
          "track_dirty_pages",
          "enable_diff_snapshots",
          "backend",
          "vsock_override",
        ], what);
        const statePath = str(b, "snapshot_path", what, true)!;
        const oldMem = str(b, "mem_file_path", what, false);
        const mb = b.mem_backend;
        let memPath: string;
        if (mb !== undefined && oldMem !== undefined) {
          throw new ApiError(`${what}: give mem_backend or mem_file_path, not both`);
        } else if (mb !== undefined) {
          if (typeof mb !== "object" || mb === null || Array.isArray(mb)) {
            throw new ApiError(
              `${what}: mem_backend must be {"backend_type": "File", "backend_path": PATH}`,
            );
          }
          const m = mb as Json;
          onlyFields(m, ["backend_type", "backend_path"], `${what} mem_backend`);
          const type = str(m, "backend_type", `${what} mem_backend`, true);
          if (type !== "File") {
            throw new ApiError(
              `${what}: mem_backend.backend_type "${type}" is not supported; use "File"`,
            );
          }
          memPath = str(m, "backend_path", `${what} mem_backend`, true)!;
        } else if (oldMem !== undefined) {
          memPath = oldMem;
        } else {
          throw new ApiError(
            `${what}: missing mem_backend ({"backend_type": "File", "backend_path": PATH})`,
          );
        }
        const resume = bool(b, "resume_vm", what) ?? false;
        bool(b, "track_dirty_pages", what);
        bool(b, "enable_diff_snapshots", what);
        const backend = backendField(b, what);
        const vo = b.vsock_override;
        let udsOverride: string | undefined;
        if (vo !== undefined) {
          if (typeof vo !== "object" || vo === null || Array.isArray(vo)) {
            throw new ApiError(`${what}: vsock_override must be {"uds_path": PATH}`);
          }
          onlyFields(vo as Json, ["uds_path"], `${what} vsock_override`);
          udsOverride = str(vo as Json, "uds_path", `${what} vsock_override`, true)!;
        }
        if (vmm.state !== "Not started") {
          throw new ApiError(`${what}: a snapshot loads only before the microVM starts`);
        }
        // A vsock in the snapshot: its host side listens again (on its old path, or the
        // override's) before the machine is rebuilt, as Firecracker's does.
        let vsockSpec: VmConfig["vsock"];
        const saved = await snapshotVsock({ statePath, memPath });
        if (saved === null && udsOverride !== undefined) {
          throw new ApiError(`${what}: vsock_override given, but the snapshot has no vsock`);
        }
        if (saved !== null) {
          const spec = { cid: saved.cid, uds: udsOverride ?? saved.uds };
          try {
            checkUdsPath(spec.uds, `${what} vsock_override`);
            vsock.host?.close();
            vsock.host = null;
            vsock.host = await startVsockHost(spec);
          } catch (err) {
            if (err instanceof VmmError) {
              throw new ApiError(
                `${what}: the snapshot's vsock: ${err.message.replace(/^--vsock /, "")}` +
                  (udsOverride === undefined
                    ? ` (vsock_override {"uds_path": PATH} moves it)`
                    : ""),
              );
            }
            throw err;
          }
          vsockSpec = spec;
        }
        return lifecycle(vmm.loadSnapshot({
          statePath,
          memPath,
          resume,
          ...(backend === undefined ? {} : { backend }),
        }, vsockSpec));
      },
    },
  };

  const answer = async (req: Request, path: string): Promise<Response> => {
    const route = routes[path] ?? routes[path.replace(/\/+$/, "")] ?? routes[templateOf(path)];
    if (route === undefined) {
      return fault(
        `Unknown endpoint ${req.method} ${path}; endpoints: ${Object.keys(routes).join(", ")}`,
      );
    }
    const handler = route[req.method];
    if (handler === undefined) {
      return fault(
        `${path} does not take ${req.method}; use ${Object.keys(route).join(" or ")}`,
      );
    }
    try {
      return await handler(req);
    } catch (err) {
      if (err instanceof ApiError) return fault(err.message);
      return fault(`internal error: ${(err as Error)?.message ?? err}`);
    }
  };
  return async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    const method = req.method[0] + req.method.slice(1).toLowerCase();
    obs.logger.log("Info", "api", `The API server received a ${method} request on "${path}".`);
    const res = await answer(req, path);
    obs.metrics.requests++;
    if (res.status === 400) {
      obs.metrics.faults++;
      const text = await res.clone().text();
      obs.logger.log("Error", "api", `Received Error. Status code: 400 Bad Request. ${text}`);
    }
    return res;
  };
}

/**
 * Serves the API on the unix socket `path`: a stale socket file (no one listening) is removed,
 * a live one or any other file there is refused.
 */
export async function serveApi(
  path: string,
  handler: (req: Request) => Promise<Response>,
): Promise<Deno.HttpServer<Deno.UnixAddr>> {
  let stat: Deno.FileInfo | null = null;
  try {
    stat = Deno.lstatSync(path);
  } catch {
    // Nothing there.
  }
  if (stat !== null) {
    if (!stat.isSocket) {
      throw new ApiError(
        `--api-sock ${path} exists and is not a socket: remove it or pick another path`,
      );
    }
    let live = false;
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      conn.close();
      live = true;
    } catch {
      // Refused: a stale socket left by a process that is gone.
    }
    if (live) {
      throw new ApiError(`--api-sock ${path} is in use by a running process: pick another path`);
    }
    Deno.removeSync(path);
  }
  try {
    return Deno.serve({
      path,
      transport: "unix",
      onListen: () => {},
      onError: (err) => fault(`internal error: ${(err as Error)?.message ?? err}`),
    }, handler);
  } catch (err) {
    throw new ApiError(`Cannot listen on --api-sock ${path}: ${(err as Error).message}`);
  }
}
