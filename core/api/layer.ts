/**
 * How the lifecycle worker reaches the VM builder and the snapshot layer: `buildMachine` and
 * `restoreMachine` in core/vm.ts, `createSnapshot` in core/snapshot/, found at run time so the
 * lifecycle works before they exist (a snapshot request then answers "not available yet", and
 * a start uses the small builder below, which does what `runVm` does before it runs).
 */

import { selectBackend } from "../select_backend.ts";
import { loadImage } from "../boot/load.ts";
import { detectFormat } from "../boot/detect.ts";
import { writeAcpiTables } from "../boot/acpi.ts";
import { ImageError, VmmError } from "../errors.ts";
import { Machine } from "../machine.ts";
import type { VmConfig, VmIo } from "../vm.ts";
import { loadPlugin } from "../../plugins/loader.ts";
import { loadSandboxedPlugin } from "../../plugins/sandbox.ts";
import { DEFAULT_GUEST } from "../../guests/default.ts";

/** Firecracker's snapshot types. */
export type SnapshotType = "Full" | "Diff";

/** The snapshot layer's entry points, or null where they are not there (yet). */
export interface SnapshotLayer {
  createSnapshot:
    | ((
      machine: Machine,
      opts: { statePath: string; memPath: string; type: SnapshotType },
    ) => unknown)
    | null;
  restoreMachine:
    | ((
      files: { statePath: string; memPath: string },
      io: VmIo,
      opts?: { backend?: "auto" | "kvm" | "interp"; serial?: VmConfig["serial"]; trace?: boolean },
    ) => Promise<Machine>)
    | null;
}

/** Modules that may hold `createSnapshot`, first match wins. */
const SNAPSHOT_MODULES = ["../snapshot/mod.ts", "../snapshot/snapshot.ts", "../snapshot/create.ts"];

async function tryImport(path: string): Promise<Record<string, unknown> | null> {
  const url = new URL(path, import.meta.url);
  try {
    Deno.statSync(url);
  } catch {
    return null;
  }
  // A computed specifier: the type checker must not require modules that may not exist yet.
  const specifier = url.href;
  return await import(specifier) as Record<string, unknown>;
}

/** Finds `createSnapshot` (core/snapshot/) and `restoreMachine` (core/vm.ts). */
export async function findSnapshotLayer(): Promise<SnapshotLayer> {
  let createSnapshot: SnapshotLayer["createSnapshot"] = null;
  for (const path of SNAPSHOT_MODULES) {
    const mod = await tryImport(path);
    if (mod !== null && typeof mod.createSnapshot === "function") {
      createSnapshot = mod.createSnapshot as NonNullable<SnapshotLayer["createSnapshot"]>;
      break;
    }
  }
  const vm = await tryImport("../vm.ts");
  const restoreMachine = vm !== null && typeof vm.restoreMachine === "function"
    ? vm.restoreMachine as NonNullable<SnapshotLayer["restoreMachine"]>
    : null;
  return { createSnapshot, restoreMachine };
}

const BUILTIN_DEVICES = [
  "../../devices/pit8254.ts",
  "../../devices/rtc_cmos.ts",
  "../../devices/acpi_pm.ts",
  "../../devices/uart16550.ts",
  "../../devices/i8042.ts",
  "../../devices/debug_exit.ts",
  "../../devices/post_code.ts",
  "../../devices/vmm_info.ts",
];

function readFile(path: string, what: string): Uint8Array {
  try {
    return Deno.readFileSync(path);
  } catch (err) {
    const reason = err instanceof Deno.errors.NotFound
      ? "no such file"
      : err instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : (err as Error).message;
    throw new ImageError(`Cannot read ${what} "${path}": ${reason}`);
  }
}

/**
 * Builds the VM `config` describes and loads its image, ready to `run()`: `runVm` without the
 * run, for as long as core/vm.ts has no `buildMachine` (which replaces this).
 */
export async function buildMachineFallback(config: VmConfig, io: VmIo): Promise<Machine> {
  const log = io.log ?? ((m: string) => console.error(m));
  const image = config.kernel === null ? DEFAULT_GUEST : readFile(config.kernel, "kernel");
  const initrd = config.initrd === null ? undefined : readFile(config.initrd, "initrd");
  const format = config.format === "auto" ? detectFormat(image) : config.format;
  const backend = await selectBackend(config.backend, log, {
    protectedModeEvents: format === "linux",
  });
  let serialSink = null;
  if (config.serial.kind === "stdio") serialSink = io.stdout ?? Deno.stdout;
  else if (config.serial.kind === "file") {
    try {
      serialSink = Deno.openSync(config.serial.path, { write: true, create: true, truncate: true });
    } catch (err) {
      backend.close();
      throw new VmmError(
        `Cannot open --serial file "${config.serial.path}": ${(err as Error).message}`,
      );
    }
  }
  const machine = new Machine({
    backend,
    memSize: config.memSize,
    serialSink,
    serialInput: io.input ?? null,
    log,
    control: io.control,
  });
  try {
    for (const path of BUILTIN_DEVICES) {
      const plugin = await loadPlugin(new URL(path, import.meta.url).href);
      machine.attach(plugin, plugin.name === "vmm-info" ? { backend: backend.name } : {});
    }
    for (const spec of config.devices) {
      const { trusted, ...options } = spec.options;
      const plugin = trusted === "true"
        ? await loadPlugin(spec.specifier)
        : await loadSandboxedPlugin(spec.specifier);
      machine.attach(plugin, options);
    }
    const { rsdpAddr } = writeAcpiTables(machine.memory);
    machine.load(loadImage(format, image, machine.memory, {
      acpiRsdpAddr: rsdpAddr,
      imagePath: config.kernel ?? "(default guest)",
      cmdline: config.cmdline,
      initrd,
      initrdPath: config.initrd ?? undefined,
    }));
  } catch (err) {
    try {
      machine.close();
    } catch {
      // The build error is what matters.
    }
    throw err;
  }
  return machine;
}
