/**
 * Worker entry: runs one VM on this Worker's thread, so a blocking KVM_RUN (or a busy
 * interpreter) never freezes the main thread's event loop, which keeps console input, signals
 * and the API socket.
 *
 * Two protocols, told apart by the first message:
 * - `StartMessage` (the plain CLI): build, run to the end, post the outcome.
 * - `InitMessage` then `LifecycleCommand`s (`--api-sock`, `--config-file`): the worker stays
 *   alive and takes commands (start, pause, resume, Ctrl-Alt-Del, snapshots), each answered by a
 *   `reply` with the same `id`. While the vCPU runs, this thread's event loop is blocked in
 *   `run()`, so the main thread first stores REQUEST_PAUSE in the shared control word (and kicks
 *   a KVM vCPU), then posts the command: `run()` returns `pause`, the worker takes the command,
 *   and runs the guest again if it is still meant to be running.
 */

import {
  CONTROL_SLICE,
  CONTROL_SLICE_MS,
  CONTROL_SLICE_SEQ,
  RunControl,
  SLICE_ARMED,
  SLICE_OFF,
} from "./backend.ts";
import { InputRing } from "./serial_io.ts";
import type { KvmVcpu, VcpuKickHandle } from "./kvm/backend.ts";
import {
  buildMachine,
  machineForState,
  preloadMachineModules,
  restoreMachine,
  runVm,
  type VmConfig,
  type VmIo,
  type VmOutcome,
} from "./vm.ts";
import { exitStatusOf, type Machine } from "./machine.ts";
import { VmmError } from "./errors.ts";
import { isBlkDevice } from "../devices/virtio/blk.ts";
import { type NetSpec, savedNets } from "./net/spec.ts";
import { applyHostFacts, type HostFacts } from "./vm_permissions.ts";
import { planSnapshot, type SnapshotType } from "./snapshot/mod.ts";
import { handOff, type SnapshotHandoff } from "./snapshot/handoff.ts";
import { type MigrationStatus, sendMigration } from "./migration/send.ts";
import { receiveMigration } from "./migration/receive.ts";
import {
  completeSharedLog,
  DEFAULT_CHECKPOINT_MS,
  OutputGate,
  runPrimary,
  runStandby,
} from "./migration/replicate.ts";
import {
  formatMigrationUrl,
  listenerUrl,
  listenMigration,
  type MigrationListener,
  type MigrationUrl,
  parseMigrationUrl,
  setMigrationTransport,
} from "./migration/url.ts";
import { brokeredTransport, type SocketReply, type SocketRequest } from "./migration/broker.ts";

/** The message the main thread sends to start the VM (plain CLI). */
export interface StartMessage {
  kind?: undefined;
  config: VmConfig;
  input: SharedArrayBuffer;
  control: SharedArrayBuffer;
  /** What the main thread read from /proc and /sys, which this Worker may not read. */
  host?: HostFacts;
}

/** The first message of the lifecycle protocol: the shared buffers, no VM yet. */
export interface InitMessage {
  kind: "init";
  input: SharedArrayBuffer;
  control: SharedArrayBuffer;
  /** What the main thread read from /proc and /sys, which this Worker may not read. */
  host: HostFacts;
}

/** A lifecycle command; the worker answers each with a `reply` of the same id. */
export type LifecycleCommand =
  & { id: number }
  & (
    | { kind: "start"; config: VmConfig }
    | { kind: "pause" }
    | { kind: "resume" }
    | { kind: "ctrl-alt-del" }
    | { kind: "snapshot-create"; statePath: string; memPath: string; type: SnapshotType }
    | {
      kind: "snapshot-load";
      config: VmConfig;
      statePath: string;
      memPath: string;
      resume: boolean;
      backend?: "auto" | "kvm" | "interp";
      /** The snapshot's network cards, reconnected by the main thread (their rings). */
      nets?: NetSpec[];
    }
    | { kind: "migrate-send"; url: string; downtimeMs?: number; maxPasses?: number }
    /** Listens on `url` for a migrating VM; `config` gives the backend, serial and trace. */
    | { kind: "migrate-receive"; url: string; config: VmConfig; what?: string }
    /** Boots `config` as a primary replicated to the standby at `url`; answers when it ends. */
    | { kind: "replicate"; url: string; checkpointMs?: number; config: VmConfig }
    /** Keeps a primary's checkpoints from `url`; answers once it runs the VM or it ended. */
    | { kind: "standby"; url: string; config: VmConfig }
    /** Backs drive `driveId` with the image at `path` from now on (PATCH /drives). */
    | { kind: "drive-update"; driveId: string; path: string }
  );

/** The main thread's answer to a worker's `connect-nets`: the cards' rings, or why not. */
export interface NetsReadyMessage {
  kind: "nets-ready";
  request: number;
  nets?: NetSpec[];
  message?: string;
}

/** The VM's state as the API reports it. */
export type LifecycleState = "Not started" | "Running" | "Paused";

/** What the worker posts back: the kick handle of a KVM vCPU, replies, then the outcome. */
export type WorkerMessage =
  | { kind: "kick"; handle: VcpuKickHandle }
  /** A VMM message (lifecycle protocol: the main thread prints and logs it). */
  | { kind: "log"; message: string }
  /** A migration's progress (either side). */
  | { kind: "migration"; status: MigrationStatus }
  /** An arriving VM's network cards, for the main thread to connect (`nets-ready`). */
  | { kind: "connect-nets"; request: number; nets: NetSpec[] }
  /** A migration socket operation, for the main thread (core/migration/broker.ts). */
  | SocketRequest
  | {
    kind: "reply";
    id: number;
    ok: true;
    state: LifecycleState;
    /** Once a machine exists: its backend and RAM size. */
    backend?: string;
    memSize?: number;
    /** snapshot-create: the snapshot, for the main thread to write to the command's paths. */
    snapshot?: SnapshotHandoff;
  }
  | { kind: "reply"; id: number; ok: false; message: string }
  | { kind: "done"; ok: true; outcome: VmOutcome }
  | { kind: "done"; ok: false; message: string; stack?: string };

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<StartMessage | InitMessage | LifecycleCommand>) => void) | null;
  postMessage(message: WorkerMessage, transfer?: Transferable[]): void;
};

function failure(err: unknown): WorkerMessage {
  return {
    kind: "done",
    ok: false,
    message: String((err as Error)?.message ?? err),
    stack: (err as Error)?.stack,
  };
}

/** Posts KVM's kick handle, which the main thread needs to interrupt a spinning vCPU. */
function announceVcpu(machine: Machine): void {
  const vcpu = machine.vcpu as Partial<KvmVcpu>;
  if (typeof vcpu.kickHandle === "function") {
    scope.postMessage({ kind: "kick", handle: vcpu.kickHandle() });
  }
}

/** Guest time between bursts of pages during a live migration (ms). */
const MIGRATION_SLICE_MS = 5;

/** Set 1 scancodes (the i8042 translates by default): Ctrl, Alt, Del (E0 53) down, then up. */
const CTRL_ALT_DEL = [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d];

/**
 * Types Ctrl-Alt-Del on the guest's keyboard, as Firecracker's SendCtrlAltDel does: through the
 * i8042's "write keyboard output buffer" command (0xD2), so each byte arrives as keyboard data
 * with IRQ 1 and the guest handles it (Linux reboots; `reboot=k` ends in the i8042 reset).
 */
export function injectCtrlAltDel(machine: Machine): void {
  for (const code of CTRL_ALT_DEL) {
    machine.ports.write(0x64, 1, 0xd2);
    machine.ports.write(0x60, 1, code);
  }
}

/**
 * Swaps the backing file of drive `id` for `path` (the device reopens it, tells the guest the
 * new capacity) and records the new path, so a snapshot's restore opens it. Returns why it
 * could not (the drive as it was), or null.
 */
export function swapDrive(machine: Machine, id: string, path: string): string | null {
  const attached = machine.devices.find((d) => d.name === `virtio-blk-${id}`);
  if (attached === undefined || !isBlkDevice(attached.device)) {
    return `drives: the VM has no drive "${id}"`;
  }
  try {
    attached.device.swapBacking(path);
  } catch (err) {
    return `drives: ${(err as Error)?.message ?? err}; drive "${id}" is unchanged`;
  }
  if (attached.source !== undefined) attached.source.options.path = path;
  return null;
}

/** The lifecycle side: one VM, driven by commands. */
async function lifecycle(init: InitMessage): Promise<void> {
  const inbox: LifecycleCommand[] = [];
  let wake: (() => void) | null = null;
  /** Answers to `connectNets`, by request number. */
  const netWaiters = new Map<number, (m: NetsReadyMessage) => void>();
  let netRequests = 0;
  // Migration sockets are the main thread's (this Worker has no `net`): core/migration/broker.ts.
  const sockets = brokeredTransport((request, transfer) => scope.postMessage(request, transfer));
  setMigrationTransport(sockets.transport);
  scope.onmessage = (e) => {
    const m = e.data as LifecycleCommand | NetsReadyMessage | SocketReply;
    if (m.kind === "socket-reply") return sockets.deliver(m);
    if (m.kind === "nets-ready") {
      netWaiters.get(m.request)?.(m);
      netWaiters.delete(m.request);
      return;
    }
    inbox.push(m);
    wake?.();
  };
  /**
   * Asks the main thread to connect an arriving VM's network cards (it owns the sockets);
   * one that cannot be connected comes back without rings (its link down, machineForState
   * says so), rather than failing the migration.
   */
  const connectNets = async (nets: NetSpec[]): Promise<NetSpec[]> => {
    if (nets.length === 0) return nets;
    const request = ++netRequests;
    const reply = new Promise<NetsReadyMessage>((r) => netWaiters.set(request, r));
    scope.postMessage({ kind: "connect-nets", request, nets });
    const m = await reply;
    if (m.nets !== undefined) return m.nets;
    io.log?.(`denovisor: warning: ${m.message}`);
    return [];
  };
  const next = async (): Promise<LifecycleCommand> => {
    while (inbox.length === 0) await new Promise<void>((r) => wake = r);
    wake = null;
    return inbox.shift()!;
  };
  const io: VmIo = {
    input: new InputRing(init.input),
    control: new RunControl(new Int32Array(init.control)),
    log: (message) => scope.postMessage({ kind: "log", message }),
  };
  // Idle until the first command: compile what a build or a restore will import meanwhile.
  preloadMachineModules().catch(() => {
    // A module that fails to load fails the command that needs it, with its own message.
  });
  let machine: Machine | null = null;
  /** What the user asked for; the vCPU may be stopped for a command while this says Running. */
  let state = "Not started" as LifecycleState;
  const ok = (id: number, snapshot?: SnapshotHandoff) =>
    scope.postMessage({
      kind: "reply",
      id,
      ok: true,
      state,
      backend: machine?.backend.name,
      memSize: machine?.memory.size,
      ...(snapshot === undefined ? {} : { snapshot }),
    });
  const refuse = (id: number, message: string) =>
    scope.postMessage({ kind: "reply", id, ok: false, message });
  const progress = (status: MigrationStatus) => scope.postMessage({ kind: "migration", status });
  const slice = io.control!.requests;
  /** Set when a command ends the VM here (it migrated away, or ended during a migration). */
  let finished: VmOutcome | null = null;
  /** Runs `m` for about `ms` of wall time (the main thread's slice ticker ends it). */
  const runSliceOf = (m: Machine, ms: number) => {
    Atomics.store(slice, CONTROL_SLICE_MS, ms);
    Atomics.add(slice, CONTROL_SLICE_SEQ, 1);
    Atomics.store(slice, CONTROL_SLICE, SLICE_ARMED);
    return m.run();
  };
  /** Listens on `url` for another VMM, or refuses command `id` saying why and returns null. */
  const listenOn = async (
    id: number,
    url: string,
    what: string,
  ): Promise<MigrationListener | null> => {
    const parsed = parseUrl(id, url, what);
    if (parsed === null) return null;
    try {
      return await listenMigration(parsed);
    } catch (err) {
      refuse(id, `Cannot listen on ${formatMigrationUrl(parsed)}: ${(err as Error).message}`);
      return null;
    }
  };
  const parseUrl = (id: number, url: string, what: string): MigrationUrl | null => {
    try {
      return parseMigrationUrl(url, what);
    } catch (err) {
      refuse(id, (err as Error).message);
      return null;
    }
  };

  const handle = async (cmd: LifecycleCommand): Promise<void> => {
    // A command that makes the machine: the host facts for its backend first.
    if ("config" in cmd) {
      await applyHostFacts(
        init.host,
        cmd.kind === "snapshot-load" ? cmd.backend ?? cmd.config.backend : cmd.config.backend,
      );
    }
    switch (cmd.kind) {
      case "start": {
        if (state !== "Not started") return refuse(cmd.id, "The VM is already started");
        try {
          machine = await buildMachine(cmd.config, io);
        } catch (err) {
          if (err instanceof VmmError) return refuse(cmd.id, err.message);
          throw err;
        }
        announceVcpu(machine);
        state = "Running";
        return ok(cmd.id);
      }
      case "snapshot-load": {
        if (state !== "Not started") {
          return refuse(cmd.id, "snapshot/load is only possible before the VM starts");
        }
        try {
          machine = await restoreMachine(
            { statePath: cmd.statePath, memPath: cmd.memPath },
            cmd.nets === undefined ? io : { ...io, nets: cmd.nets },
            {
              serial: cmd.config.serial,
              trace: cmd.config.trace,
              ...(cmd.backend === undefined ? {} : { backend: cmd.backend }),
              // The host side the main thread started for the snapshot's vsock.
              ...(cmd.config.vsock?.rings === undefined
                ? {}
                : { vsockRings: cmd.config.vsock.rings }),
            },
          );
        } catch (err) {
          if (err instanceof VmmError) return refuse(cmd.id, err.message);
          return refuse(cmd.id, `snapshot/load failed: ${(err as Error)?.message ?? err}`);
        }
        announceVcpu(machine);
        state = cmd.resume ? "Running" : "Paused";
        return ok(cmd.id);
      }
      case "pause":
        if (state !== "Running") return refuse(cmd.id, `The VM is ${state}, not Running`);
        state = "Paused";
        return ok(cmd.id);
      case "resume":
        if (state !== "Paused") return refuse(cmd.id, `The VM is ${state}, not Paused`);
        state = "Running";
        return ok(cmd.id);
      case "drive-update": {
        if (machine === null) return refuse(cmd.id, "The VM is not started");
        const err = swapDrive(machine, cmd.driveId, cmd.path);
        if (err !== null) return refuse(cmd.id, err);
        io.log?.(`drives: ${cmd.driveId} is now backed by ${cmd.path}`);
        return ok(cmd.id);
      }
      case "ctrl-alt-del":
        if (machine === null) return refuse(cmd.id, "The VM is not started");
        injectCtrlAltDel(machine);
        return ok(cmd.id);
      case "migrate-send": {
        if (machine === null) return refuse(cmd.id, "The VM is not started: nothing to migrate");
        const url = parseUrl(cmd.id, cmd.url, "destination_url");
        if (url === null) return;
        const m: Machine = machine;
        const live = state === "Running";
        // Guest time between bursts of pages: the main thread ends each slice (SLICE_DUE).
        const runSlice = () => {
          if (!live) return { reason: { kind: "pause" as const } };
          return runSliceOf(m, MIGRATION_SLICE_MS);
        };
        let result;
        try {
          result = await sendMigration(m, {
            url,
            runSlice,
            progress,
            ...(cmd.downtimeMs === undefined ? {} : { downtimeMs: cmd.downtimeMs }),
            ...(cmd.maxPasses === undefined ? {} : { maxPasses: cmd.maxPasses }),
            resume: live,
          });
        } finally {
          Atomics.store(slice, CONTROL_SLICE, SLICE_OFF);
        }
        const to = formatMigrationUrl(url);
        if (result.kind === "failed") {
          io.log?.(`migration: to ${to} failed: ${result.message}; the VM runs on here`);
          return refuse(cmd.id, `Migration to ${to} failed: ${result.message}`);
        }
        if (result.kind === "ended") {
          const { reason, dump } = result.result;
          const status = exitStatusOf(reason);
          finished = reason.kind === "fault"
            ? { status, message: reason.message, dump }
            : { status };
          return refuse(cmd.id, `The guest ended during the migration to ${to}`);
        }
        const st = result.status;
        finished = {
          status: 0,
          message: `migration: the VM moved to ${to} (${st.passes} pass` +
            `${st.passes === 1 ? "" : "es"}, ` +
            `${(st.bytes / 1048576).toFixed(1)} MiB sent, downtime ${st.downtimeMs} ms, ` +
            `total ${st.totalMs} ms)`,
        };
        return ok(cmd.id);
      }
      case "migrate-receive": {
        if (state !== "Not started") {
          return refuse(cmd.id, "An incoming migration needs a VM that is not started");
        }
        const listener = await listenOn(cmd.id, cmd.url, cmd.what ?? "receiver_url");
        if (listener === null) return;
        io.log?.(`migration: waiting for the VM on ${formatMigrationUrl(listenerUrl(listener))}`);
        const c = cmd.config;
        try {
          const got = await receiveMigration(listener, {
            progress,
            build: async (saved, memSize) =>
              machineForState(
                saved,
                memSize,
                "The migration source's VM",
                { ...io, nets: await connectNets(savedNets(saved.devices)) },
                { backend: c.backend, serial: c.serial, trace: c.trace },
              ),
          });
          machine = got.machine;
          state = got.resume ? "Running" : "Paused";
        } catch (err) {
          return refuse(cmd.id, `Incoming migration failed: ${(err as Error)?.message ?? err}`);
        }
        io.log?.(`migration: the VM arrived; it runs on the ${machine.backend.name} backend`);
        announceVcpu(machine);
        return ok(cmd.id);
      }
      case "replicate": {
        if (state !== "Not started") return refuse(cmd.id, "The VM is already started");
        const url = parseUrl(cmd.id, cmd.url, "--replicate");
        if (url === null) return;
        let gate: OutputGate | null = null;
        let m: Machine;
        try {
          m = await buildMachine(cmd.config, {
            ...io,
            wrapSerial: (sink) => gate = new OutputGate(sink),
          });
        } catch (err) {
          if (err instanceof VmmError) return refuse(cmd.id, err.message);
          throw err;
        }
        machine = m;
        announceVcpu(m);
        state = "Running";
        const every = cmd.checkpointMs ?? DEFAULT_CHECKPOINT_MS;
        const to = formatMigrationUrl(url);
        io.log?.(`replication: checkpoints every ${every} ms to the standby at ${to}`);
        let end;
        try {
          end = await runPrimary(m, {
            url,
            checkpointMs: every,
            runSlice: (ms) => runSliceOf(m, ms),
            gate: gate!,
          });
        } finally {
          Atomics.store(slice, CONTROL_SLICE, SLICE_OFF);
        }
        if (end.kind === "failed") {
          finished = { status: 1, message: `replication: ${end.message}` };
          return refuse(cmd.id, finished.message!);
        }
        const st = end.stats;
        const n = Math.max(st.checkpoints, 1);
        io.log?.(
          `replication: ${st.checkpoints} checkpoints, ${(st.bytes / n / 1024).toFixed(1)} KiB ` +
            `each on average, the guest paused ${
              (100 * st.pausedMs / Math.max(st.pausedMs + st.runMs, 1)).toFixed(1)
            } % of the time`,
        );
        if (end.kind === "unprotected") {
          io.log?.(end.message);
          return ok(cmd.id); // the main loop runs the VM on
        }
        if (end.kind === "fenced") {
          finished = { status: 1, message: end.message };
        } else {
          const { reason, dump } = end.result;
          const status = exitStatusOf(reason);
          finished = reason.kind === "fault"
            ? { status, message: reason.message, dump }
            : { status };
        }
        return ok(cmd.id);
      }
      case "standby": {
        if (state !== "Not started") {
          return refuse(cmd.id, "A standby needs a VM that is not started");
        }
        const listener = await listenOn(cmd.id, cmd.url, "--standby");
        if (listener === null) return;
        io.log?.(`replication: standing by on ${formatMigrationUrl(listenerUrl(listener))}`);
        const c = cmd.config;
        const serial: VmConfig["serial"] = c.serial.kind === "file"
          ? { ...c.serial, append: true }
          : c.serial;
        let end;
        try {
          end = await runStandby(listener, {
            build: (saved, memSize) =>
              machineForState(saved, memSize, "The primary's VM", io, {
                backend: c.backend,
                serial,
                trace: c.trace,
              }),
          });
        } catch (err) {
          finished = { status: 1, message: `Standby failed: ${(err as Error)?.message ?? err}` };
          return refuse(cmd.id, finished.message!);
        }
        if (end.kind === "ended") {
          io.log?.(`replication: the primary's guest ended with status ${end.status}`);
          finished = end.message === undefined
            ? { status: end.status }
            : { status: end.status, message: end.message };
          return ok(cmd.id);
        }
        if (serial.kind === "file") completeSharedLog(serial.path, end.output, end.outputBase);
        machine = end.machine;
        announceVcpu(machine);
        state = "Running";
        io.log?.(
          `replication: the primary was lost (${end.reason}); resumed from checkpoint ` +
            `${end.epoch} in ${(performance.now() - end.lostAt).toFixed(1)} ms`,
        );
        io.log?.(
          `replication: received ${end.checkpoints - 1} checkpoints, ${end.incrementalBytes} ` +
            `bytes after the first (which carried all of RAM)`,
        );
        return ok(cmd.id);
      }
      case "snapshot-create": {
        if (machine === null || state !== "Paused") {
          return refuse(cmd.id, `The VM is ${state}: pause it (PATCH /vm) before a snapshot`);
        }
        // The main thread writes the files (this Worker may not write to the command's paths);
        // the vCPU stays stopped until the next command, which comes after that.
        let snapshot: SnapshotHandoff;
        try {
          snapshot = handOff(planSnapshot(machine, cmd.type));
        } catch (err) {
          return refuse(cmd.id, `snapshot/create failed: ${(err as Error)?.message ?? err}`);
        }
        return ok(cmd.id, snapshot);
      }
    }
  };

  let outcome: VmOutcome;
  try {
    for (;;) {
      if (state === "Running" && machine !== null) {
        const m: Machine = machine;
        const { reason, dump } = m.run();
        if (reason.kind !== "pause") {
          const status = exitStatusOf(reason);
          outcome = reason.kind === "fault"
            ? { status, message: reason.message, dump }
            : { status };
          break;
        }
        // Paused by the main thread for a command, which follows the request (or is queued).
      }
      await handle(await next());
      if (finished !== null) {
        outcome = finished;
        break;
      }
    }
  } catch (err) {
    scope.postMessage(failure(err));
    return;
  } finally {
    try {
      (machine as Machine | null)?.close();
    } catch {
      // Closing must not hide the outcome.
    }
  }
  scope.postMessage({ kind: "done", ok: true, outcome });
}

scope.onmessage = async (e) => {
  scope.onmessage = null;
  const first = e.data;
  if (first.kind === "init") return lifecycle(first);
  if (first.kind !== undefined) {
    scope.postMessage(failure(new Error(`unexpected first message "${first.kind}"`)));
    return;
  }
  const { config, input, control, host } = first;
  let done: WorkerMessage;
  try {
    if (host !== undefined) await applyHostFacts(host, config.backend);
    const outcome = await runVm(config, {
      input: new InputRing(input),
      control: new RunControl(new Int32Array(control)),
      onVcpuReady: announceVcpu,
    });
    done = { kind: "done", ok: true, outcome };
  } catch (err) {
    done = failure(err);
  }
  scope.postMessage(done);
};
