/**
 * Builds and runs one VM from a plain, serialisable configuration: picks the backend, wires the
 * built-in PC devices and the `--device` plugins, loads the kernel and runs to the end. It runs on
 * the vCPU's thread (a Worker when started from the CLI; tests may call it directly).
 */

import { type CpuChoice, type CpuModel, cpuModelFor, hostCpuVendor } from "./cpu_model.ts";
import { type BackendChoice, selectBackend } from "./select_backend.ts";
import { loadImage } from "./boot/load.ts";
import { detectFormat } from "./boot/detect.ts";
import { writeAcpiTables } from "./boot/acpi.ts";
import type { ImageFormat } from "./boot/types.ts";
import type { RunControl, TraceSink } from "./backend.ts";
import { ImageError, UsageError, VmmError } from "./errors.ts";
import { exitStatusOf, Machine } from "./machine.ts";
import type { ByteSink, InputRing } from "./serial_io.ts";
import { loadPlugin } from "../plugins/loader.ts";
import { loadSandboxedPlugin } from "../plugins/sandbox.ts";
import type { DeviceSpec } from "../plugins/options.ts";
import { DEFAULT_GUEST } from "../guests/default.ts";

/** Everything `--flags` decide, as data that can cross to a Worker. */
export interface VmConfig {
  backend: BackendChoice;
  /** The CPU model (`--cpu`; absent: `host`). */
  cpu?: CpuChoice;
  memSize: number;
  /** Kernel path, or null for the embedded default guest. */
  kernel: string | null;
  format: "auto" | ImageFormat;
  cmdline: string;
  initrd: string | null;
  devices: DeviceSpec[];
  serial: { kind: "stdio" } | { kind: "none" } | { kind: "file"; path: string };
  trace: boolean;
}

/** How a VM ended. */
export interface VmOutcome {
  status: number;
  /** Why it stopped, when it is worth telling (faults, device failures). */
  message?: string;
  /** Register dump for faults. */
  dump?: string;
}

/** The built-in PC devices, loaded through the same path as third-party plugins. */
const BUILTIN_DEVICES = [
  "../devices/pit8254.ts",
  "../devices/rtc_cmos.ts",
  "../devices/acpi_pm.ts",
  "../devices/uart16550.ts",
  "../devices/i8042.ts",
  "../devices/debug_exit.ts",
  "../devices/post_code.ts",
  "../devices/vmm_info.ts",
];

/** Host-side resources the VM uses; the CLI passes shared buffers from the main thread. */
export interface VmIo {
  control?: RunControl;
  input?: InputRing | null;
  /** Where `--serial stdio` writes (defaults to Deno.stdout). */
  stdout?: ByteSink;
  /** VMM messages (defaults to stderr). */
  log?: (message: string) => void;
  /** Called once the vCPU exists, before it first runs (the CLI takes KVM's kick handle). */
  onVcpuReady?: (machine: Machine) => void;
}

function readFile(path: string, what: string): Uint8Array {
  try {
    return Deno.readFileSync(path);
  } catch (err) {
    const reason = err instanceof Deno.errors.NotFound
      ? "no such file"
      : err instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : err instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : (err as Error).message;
    throw new ImageError(`Cannot read ${what} "${path}": ${reason}`);
  }
}

function openSerial(config: VmConfig, io: VmIo): ByteSink | null {
  switch (config.serial.kind) {
    case "none":
      return null;
    case "stdio":
      return io.stdout ?? Deno.stdout;
    case "file":
      try {
        return Deno.openSync(config.serial.path, { write: true, create: true, truncate: true });
      } catch (err) {
        throw new VmmError(
          `Cannot open --serial file "${config.serial.path}": ${(err as Error).message}`,
        );
      }
  }
}

function stderrTrace(): { sink: TraceSink; flush: () => void } {
  const enc = new TextEncoder();
  let buf = "";
  const flush = () => {
    if (buf) Deno.stderr.writeSync(enc.encode(buf));
    buf = "";
  };
  return {
    sink: (line) => {
      buf += "trace: " + line + "\n";
      if (buf.length > 1 << 16) flush();
    },
    flush,
  };
}

/**
 * The backend choice for CPU model `model`: under KVM the guest's code runs on the host's own
 * silicon, so a model of another vendor needs the interpreter (auto picks it, saying why; an
 * explicit `--backend kvm` is refused with the fix).
 */
function backendFor(
  choice: BackendChoice,
  model: CpuModel,
  log: (m: string) => void,
): BackendChoice {
  if (choice === "interp") return choice;
  const host = hostCpuVendor();
  if (model.vendor === host) return choice;
  if (choice === "kvm") {
    throw new UsageError(
      `--cpu ${model.vendor} cannot run on KVM on this ${host} host: under KVM the guest's ` +
        `code runs on the host's own CPU. Use --backend interp, or --cpu host`,
    );
  }
  log(
    `backend: interp (--cpu ${model.vendor} differs from this ${host} host's CPU, which KVM ` +
      `would run the guest on)`,
  );
  return "interp";
}

/** Builds the VM `config` describes, runs it to the end and says how it ended. */
export async function runVm(config: VmConfig, io: VmIo = {}): Promise<VmOutcome> {
  const log = io.log ?? ((m: string) => console.error(m));
  const trace = config.trace ? stderrTrace() : null;
  let machine: Machine | null = null;
  try {
    const image = config.kernel === null ? DEFAULT_GUEST : readFile(config.kernel, "kernel");
    const initrd = config.initrd === null ? undefined : readFile(config.initrd, "initrd");
    const format = config.format === "auto" ? detectFormat(image) : config.format;
    const cpuModel = cpuModelFor(config.cpu ?? "host");
    const backend = await selectBackend(backendFor(config.backend, cpuModel, log), log, {
      protectedModeEvents: format === "linux",
    });
    machine = new Machine({
      backend,
      cpuModel,
      memSize: config.memSize,
      serialSink: openSerial(config, io),
      serialInput: io.input ?? null,
      trace: trace?.sink ?? null,
      log,
      control: io.control,
    });
    for (const path of BUILTIN_DEVICES) {
      const plugin = await loadPlugin(new URL(path, import.meta.url).href);
      machine.attach(plugin, plugin.name === "vmm-info" ? { backend: backend.name } : {});
    }
    // Plugins run sandboxed (a Worker with no permissions) unless the user says `trusted`.
    for (const spec of config.devices) {
      const { trusted, ...options } = spec.options;
      const plugin = trusted === "true"
        ? await loadPlugin(spec.specifier)
        : await loadSandboxedPlugin(spec.specifier);
      machine.attach(plugin, options);
    }
    const { rsdpAddr } = writeAcpiTables(machine.memory);
    const setup = loadImage(format, image, machine.memory, {
      acpiRsdpAddr: rsdpAddr,
      imagePath: config.kernel ?? "(default guest)",
      cmdline: config.cmdline,
      initrd,
      initrdPath: config.initrd ?? undefined,
    });
    trace?.sink(`loaded ${setup.description}`);
    machine.load(setup);
    io.onVcpuReady?.(machine);
    const { reason, dump } = machine.run();
    const status = exitStatusOf(reason);
    if (reason.kind === "fault") return { status, message: reason.message, dump };
    return { status };
  } catch (err) {
    if (err instanceof VmmError) return { status: err.exitCode, message: err.message };
    throw err;
  } finally {
    trace?.flush();
    try {
      machine?.close();
    } catch {
      // Closing must not hide the outcome.
    }
  }
}
