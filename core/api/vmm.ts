/**
 * The main thread's side of the VM lifecycle: the configuration the API builds up, the VM
 * Worker (`core/vm_worker.ts`, lifecycle protocol) and one command at a time to it. A command
 * for a running vCPU first stores REQUEST_PAUSE in the shared control word and kicks a KVM vCPU
 * (repeatedly, until the worker answers), then posts the command: the worker only reads
 * messages once `run()` has returned.
 */

import {
  CONTROL_CELLS,
  CONTROL_REQUEST,
  CONTROL_SLICE,
  CONTROL_SLICE_MS,
  CONTROL_SLICE_SEQ,
  CONTROL_STATUS,
  REQUEST_PAUSE,
  REQUEST_STOP,
  SLICE_ARMED,
  SLICE_DUE,
} from "../backend.ts";
import { InputRing } from "../serial_io.ts";
import type { VmConfig, VmOutcome } from "../vm.ts";
import type { InitMessage, LifecycleCommand, LifecycleState, WorkerMessage } from "../vm_worker.ts";
import { enableVcpuKicks, kickVcpu, type VcpuKickHandle } from "../kvm/backend.ts";
import type { MigrationStatus } from "../migration/send.ts";
import type { NetSpec } from "../net/spec.ts";
import { snapshotNets } from "../net/restore.ts";
import { SocketBroker } from "../migration/broker.ts";
import { takeOver } from "../snapshot/handoff.ts";
import { lifecyclePermissions, type MachineSource, permits, probeHost } from "../vm_permissions.ts";

/** How often the slice ticker looks at the vCPU's slice (ms). */
const SLICE_TICK_MS = 1;

/** A command without its id (the Vmm numbers them). */
type Command = LifecycleCommand extends infer C ? C extends unknown ? Omit<C, "id"> : never
  : never;

/** How the VM process ends: the outcome, or an internal error. */
export type VmEnd = { ok: true; outcome: VmOutcome } | {
  ok: false;
  message: string;
  stack?: string;
};

/** Thrown for a command the VM refuses (an API 400). */
export class LifecycleError extends Error {}

/** One VM and its lifecycle, driven from the main thread. */
export class Vmm {
  /** Shared with the worker: console input ring and the control word. */
  readonly input: InputRing = new InputRing();
  readonly requests: Int32Array = new Int32Array(new SharedArrayBuffer(4 * CONTROL_CELLS));
  /** The configuration PUT /boot-source and /machine-config build (kernel null: not set). */
  config: VmConfig;
  state: LifecycleState = "Not started";
  /** The backend the VM runs on, once started. */
  backendName: string | null = null;
  /** Where the VM's own messages go (default stderr). */
  onLog: (message: string) => void = (m) => console.error(m);
  /** The last (or current) migration's status, for GET /migration. */
  migration: MigrationStatus | null = null;
  /** Resolves when the guest ends (or the worker fails). */
  readonly ended: Promise<VmEnd>;

  #worker: Worker | null = null;
  #allowPaths: readonly string[];
  /** The Worker's permissions, once it started. */
  #permissions: Deno.PermissionOptionsObject | "inherit" | null = null;
  #broker: SocketBroker | null = null;
  #nextId = 1;
  #pending = new Map<number, (m: WorkerMessage & { kind: "reply" }) => void>();
  #queue: Promise<unknown> = Promise.resolve();
  #kick: VcpuKickHandle | null = null;
  #disableKicks: (() => void) | null = null;
  #kicker: ReturnType<typeof setInterval> | undefined;
  #slicer: ReturnType<typeof setInterval> | undefined;
  #done = false;
  #inFlight = 0;
  #stopStatus: number | null = null;
  #end: (end: VmEnd) => void;
  /** Network backends `start` connected (closed with the VMM). */
  #nets: { close(): void }[] = [];

  /**
   * `allowPaths`: files and directories the machine may also read and write (`--allow-path`).
   * The Worker starts with the first command that makes the machine, with the permissions that
   * machine needs (core/vm_permissions.ts `lifecyclePermissions`).
   */
  constructor(config: VmConfig, opts: { allowPaths?: readonly string[] } = {}) {
    this.config = config;
    this.#allowPaths = opts.allowPaths ?? [];
    let finish!: (end: VmEnd) => void;
    this.ended = new Promise<VmEnd>((r) => finish = r);
    this.#end = (e: VmEnd) => {
      if (this.#done) return;
      this.#done = true;
      this.#stopKicking();
      for (const resolve of this.#pending.values()) {
        resolve({ kind: "reply", id: 0, ok: false, message: "The VM has ended" });
      }
      this.#pending.clear();
      finish(e);
    };
  }

  /** Starts the machine's Worker with `permissions`. */
  #spawn(permissions: Deno.PermissionOptionsObject | "inherit"): Worker {
    const worker = new Worker(new URL("../vm_worker.ts", import.meta.url), {
      type: "module",
      deno: { permissions },
    } as WorkerOptions);
    const broker = this.#broker = new SocketBroker((r, t) => worker.postMessage(r, t ?? []));
    worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
      const m = e.data;
      if (m.kind === "socket") {
        broker.handle(m);
      } else if (m.kind === "kick") {
        this.#kick = m.handle;
        this.#disableKicks ??= enableVcpuKicks();
      } else if (m.kind === "migration") {
        this.migration = m.status;
      } else if (m.kind === "connect-nets") {
        this.#connect(m.nets).then(
          (nets) => worker.postMessage({ kind: "nets-ready", request: m.request, nets }),
          (err) =>
            worker.postMessage({
              kind: "nets-ready",
              request: m.request,
              message: (err as Error).message,
            }),
        );
      } else if (m.kind === "log") {
        this.onLog(m.message);
      } else if (m.kind === "reply") {
        const resolve = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        resolve?.(m);
      } else if (m.ok) this.#end({ ok: true, outcome: m.outcome });
      else this.#end({ ok: false, message: m.message, stack: m.stack });
    };
    worker.onerror = (e) => {
      e.preventDefault();
      this.#end({ ok: false, message: e.message });
    };
    const init: InitMessage = {
      kind: "init",
      input: this.input.buffer,
      control: this.requests.buffer as SharedArrayBuffer,
      host: probeHost(),
    };
    worker.postMessage(init);
    return worker;
  }

  /** The Worker for `cmd`: started by the command that makes the machine, with its permissions. */
  async #workerFor(cmd: Command): Promise<Worker> {
    if (this.#worker !== null) return this.#worker;
    if (!("config" in cmd)) throw new LifecycleError("The microVM is not started");
    const source: MachineSource = cmd.kind === "snapshot-load"
      ? {
        config: cmd.config,
        restore: { statePath: cmd.statePath, memPath: cmd.memPath },
        ...(cmd.backend === undefined ? {} : { backend: cmd.backend }),
      }
      : { config: cmd.config };
    this.#permissions = await lifecyclePermissions(source, this.#allowPaths);
    return this.#worker = this.#spawn(this.#permissions);
  }

  /** Ends a Worker that has no machine. */
  #retire(): void {
    this.#worker?.terminate();
    this.#broker?.close();
    this.#worker = this.#broker = this.#permissions = null;
  }

  /** Refuses a drive swap to a file the machine's Worker may not open (it would be denied). */
  #checkDrive(cmd: Command & { kind: "drive-update" }): void {
    const perms = this.#permissions ?? "inherit";
    const drive = (this.config.drives ?? []).find((d) => d.id === cmd.driveId);
    const write = drive !== undefined && !drive.readOnly;
    if (permits(perms, "read", cmd.path) && (!write || permits(perms, "write", cmd.path))) return;
    throw new LifecycleError(
      `drives: the VM may not open "${cmd.path}"${write ? " for writing" : ""}: its Worker's ` +
        `permissions are set when it starts (README "Permissions"); start the VMM with ` +
        `--allow-path naming that file or a directory above it`,
    );
  }

  /** True once the guest has ended. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * Sends `cmd` to the worker (after any command still in flight) and waits for its answer;
   * a refusal throws LifecycleError with the worker's message.
   */
  send(cmd: Command): Promise<void> {
    const run = this.#queue.then(() => this.#send(cmd));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #send(cmd: Command): Promise<void> {
    if (this.#done) throw new LifecycleError("The VM has ended");
    if (this.#stopStatus !== null) throw new LifecycleError("The VM is stopping");
    this.#inFlight++;
    try {
      await this.#exchange(cmd);
    } finally {
      this.#inFlight--;
      // A stop that came while this command held the vCPU: end now if nothing will run it.
      if (this.#stopStatus !== null && this.state !== "Running") this.stop(this.#stopStatus);
    }
  }

  async #exchange(cmd: Command): Promise<void> {
    const worker = await this.#workerFor(cmd);
    if (cmd.kind === "drive-update") this.#checkDrive(cmd);
    const id = this.#nextId++;
    const reply = new Promise<WorkerMessage & { kind: "reply" }>((r) => this.#pending.set(id, r));
    // The vCPU is in run(): make it return, so the worker sees the message.
    const interrupt = this.state === "Running";
    if (interrupt) {
      Atomics.store(this.requests, CONTROL_STATUS, 0);
      Atomics.store(this.requests, CONTROL_REQUEST, REQUEST_PAUSE);
      this.#startKicking();
    }
    // A live migration runs the guest in slices: end each one, so the worker can send pages.
    if (cmd.kind === "migrate-send" || cmd.kind === "replicate") this.#startSlicing();
    worker.postMessage({ ...cmd, id } as LifecycleCommand);
    const m = await reply;
    if (interrupt) this.#stopKicking();
    this.#stopSlicing();
    if (!m.ok) {
      // A refused start, load or receive leaves no machine: the next such command gets a Worker
      // with its own permissions. (A refused --replicate or --standby ends the VMM.)
      if (
        (cmd.kind === "start" || cmd.kind === "snapshot-load" || cmd.kind === "migrate-receive") &&
        this.state === "Not started"
      ) this.#retire();
      throw new LifecycleError(m.message);
    }
    if (cmd.kind === "snapshot-create" && m.snapshot !== undefined) {
      // Written here, where the API's paths may be written; the vCPU stays stopped meanwhile.
      const { writeSnapshotFiles } = await import("../snapshot/mod.ts");
      try {
        writeSnapshotFiles(takeOver(m.snapshot), cmd);
      } catch (err) {
        throw new LifecycleError(`snapshot/create failed: ${(err as Error).message}`);
      }
    }
    this.state = m.state;
    if (m.backend !== undefined) this.backendName = m.backend;
    if (m.memSize !== undefined) this.config.memSize = m.memSize; // a loaded snapshot's size
  }

  /** Ends the VM at once with `status` (Ctrl-A x, signals). */
  stop(status: number): void {
    this.#stopStatus = status;
    if (this.state !== "Running" && this.#inFlight === 0) {
      // No vCPU is running: nothing to interrupt.
      this.#end({ ok: true, outcome: { status } });
      return;
    }
    Atomics.store(this.requests, CONTROL_STATUS, status);
    Atomics.store(this.requests, CONTROL_REQUEST, REQUEST_STOP);
    this.#startKicking();
  }

  #startKicking(): void {
    if (this.#kick === null || this.#kicker !== undefined) return;
    const handle = this.#kick;
    kickVcpu(handle);
    this.#kicker = setInterval(() => kickVcpu(handle), 10);
  }

  #startSlicing(): void {
    const requests = this.requests;
    let seq = -1, armedAt = 0;
    this.#slicer = setInterval(() => {
      // Each slice is timed from when the worker armed it (a new sequence number); only an
      // armed slice ends, so a tick after the migration changes nothing.
      const now = performance.now();
      const s = Atomics.load(requests, CONTROL_SLICE_SEQ);
      if (s !== seq) {
        seq = s;
        armedAt = now;
      }
      if (now - armedAt < Atomics.load(requests, CONTROL_SLICE_MS)) return;
      if (
        Atomics.compareExchange(requests, CONTROL_SLICE, SLICE_ARMED, SLICE_DUE) === SLICE_ARMED &&
        this.#kick !== null
      ) kickVcpu(this.#kick);
    }, SLICE_TICK_MS);
  }

  #stopSlicing(): void {
    clearInterval(this.#slicer);
    this.#slicer = undefined;
  }

  #stopKicking(): void {
    clearInterval(this.#kicker);
    this.#kicker = undefined;
  }

  /**
   * Starts the VM `config` describes (InstanceStart): first connects the network interfaces
   * the API added (`PUT /network-interfaces`; the CLI's `--net` ones are connected already) on
   * this thread, whose frame rings then cross to the worker in the config. A backend that
   * cannot be reached refuses the start (LifecycleError naming it).
   */
  async start(): Promise<void> {
    await this.#connect((this.config.nets ?? []).filter((n) => n.rings === undefined));
    await this.send({ kind: "start", config: structuredClone(this.config) });
  }

  /**
   * Loads a snapshot (PUT /snapshot/load, `--restore`): first reconnects the network cards its
   * state records (a TAP by name, a switch by socket, as Firecracker reopens the TAP it
   * stored), so the restored cards' frame rings cross to the worker with the command. A
   * backend that cannot be reached refuses the load, naming it.
   */
  async loadSnapshot(
    load: { statePath: string; memPath: string; resume: boolean; backend?: VmConfig["backend"] },
    vsock?: VmConfig["vsock"],
  ): Promise<void> {
    const nets = await this.#connect(await snapshotNets(load.statePath, load.memPath));
    // The snapshot's vsock host side (started by the caller, its rings set), or none.
    const config = structuredClone(this.config);
    delete config.vsock;
    if (vsock !== undefined) config.vsock = vsock;
    await this.send({
      kind: "snapshot-load",
      config,
      ...load,
      ...(nets.length === 0 ? {} : { nets }),
    });
  }

  /** Connects `nets` to their backends (their rings set); a failure is a LifecycleError. */
  async #connect(nets: NetSpec[]): Promise<NetSpec[]> {
    if (nets.length === 0) return nets;
    const { startNetBackends } = await import("../net/host.ts");
    try {
      this.#nets.push(await startNetBackends(nets));
    } catch (err) {
      throw new LifecycleError((err as Error).message);
    }
    return nets;
  }

  /** Releases the worker and the kick handler. */
  close(): void {
    for (const n of this.#nets.splice(0)) n.close();
    this.#stopKicking();
    this.#stopSlicing();
    this.#disableKicks?.();
    this.#disableKicks = null;
    this.#worker?.terminate();
    this.#broker?.close();
  }
}
