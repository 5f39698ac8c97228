/**
 * Builds and runs one VM from a plain, serialisable configuration: picks the backend, wires the
 * built-in PC devices and the `--device` plugins, loads the kernel and runs to the end. It runs on
 * the vCPU's thread (a Worker when started from the CLI; tests may call it directly).
 * `buildMachine` stops before running; `restoreMachine` builds the machine a snapshot describes
 * and loads the snapshot into it, ready to `run()`.
 */

import { type CpuChoice, type CpuModel, cpuModelFor, hostCpuVendor } from "./cpu_model.ts";
import { type BackendChoice, selectBackend } from "./select_backend.ts";
import { loadImage, resolveFormat } from "./boot/load.ts";
import { type AcpiVirtioMmio, writeAcpiTables } from "./boot/acpi.ts";
import { ResourceAllocator } from "./resources.ts";
import type { ImageFormat } from "./boot/types.ts";
import type { RunControl, TraceSink } from "./backend.ts";
import { HostError, ImageError, UsageError, VmmError } from "./errors.ts";
import { hex, MMIO_GAP_START } from "./memory.ts";
import { BZIMAGE_MIN_SIZE } from "./boot/detect.ts";
import { isBzImage, parseSetupHeader } from "./boot/linux.ts";
import { type DeviceSource, exitStatusOf, Machine, type MachineState } from "./machine.ts";
import { CR0_PE } from "./cpu_state.ts";
import { readMemoryFile, readSnapshot, SNAPSHOT_DIRTY_CONSUMER } from "./snapshot/mod.ts";
import type { ByteSink, InputRing } from "./serial_io.ts";
import { loadPlugin, resolvePluginUrl } from "../plugins/loader.ts";
import { loadSandboxedPlugin } from "../plugins/sandbox.ts";
import type { DeviceSpec } from "../plugins/options.ts";
import { DEFAULT_GUEST } from "../guests/default.ts";
import { BUILTIN_DEVICES, VIRTIO_DEVICES } from "./builtin_devices.ts";
import { netDeviceOptions, type NetSpec, netSpecOfOptions } from "./net/spec.ts";
import type { VsockSpec } from "./vsock/spec.ts";
import type { Plugin } from "../plugins/mod.ts";
import { virtioTransportPlugin } from "../devices/virtio/plugin_device.ts";
import { VIRTIO_MMIO_WINDOW } from "../devices/virtio/mmio.ts";

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
  serial: { kind: "stdio" } | { kind: "none" } | { kind: "file"; path: string; append?: boolean };
  trace: boolean;
  /** virtio-blk drives (`--drive PATH[,ro][,id=ID]`), in order: the first is the guest's vda. */
  drives?: DriveSpec[];
  /** A virtio-rng device (`--rng`). */
  rng?: boolean;
  /** virtio-9p shares of host directories (`--share HOSTDIR[,tag=T][,ro]`), in order. */
  shares?: ShareSpec[];
  /** virtio-net devices (`--net switch=PATH[,mac=MAC]`), in order: the first is eth0. */
  nets?: NetSpec[];
  /** A virtio-vsock device (`--vsock cid=N,uds=PATH`, `PUT /vsock`). */
  vsock?: VsockSpec;
  /**
   * `"virtio"` (`--console virtio`): a virtio-console device, the guest's hvc0, writing to the
   * serial target and taking the console's input over from the UART.
   */
  console?: "serial" | "virtio";
  /**
   * Restore this snapshot instead of booting `kernel` (`--restore`, `--mem-file`): `runVm` then
   * takes only `backend` ("auto": the snapshot's own), `serial` and `trace` from the config.
   */
  restore?: SnapshotFiles;
}

/** One `--drive`: a raw image for a virtio-blk device. */
export interface DriveSpec {
  path: string;
  readOnly: boolean;
  /** The device's id (GET_ID answers it; the device is named `virtio-blk-ID`). */
  id: string;
  /**
   * `PUT /drives` `cache_type`: "writeback" (absent; `--drive`'s) offers flush and syncs the
   * file on it, "unsafe" (Firecracker's default) offers no flush.
   */
  cache?: "writeback" | "unsafe";
  /**
   * `PUT /drives` `is_root_device`: the guest's root filesystem. It is placed first (vda) and
   * the boot adds `root=/dev/vda` (or `root=PARTUUID=...`) and `ro`/`rw` to the command line.
   */
  root?: boolean;
  /** With `root`: the partition's UUID, for `root=PARTUUID=...`. */
  partuuid?: string;
}

/**
 * The command line with the root drive's `root=` and `ro`/`rw` appended, as Firecracker does
 * for a drive with `is_root_device` (unchanged when no drive is the root).
 */
export function cmdlineWithRoot(config: Pick<VmConfig, "cmdline" | "drives">): string {
  const root = (config.drives ?? []).find((d) => d.root === true);
  if (root === undefined) return config.cmdline;
  const dev = root.partuuid !== undefined ? `PARTUUID=${root.partuuid}` : "/dev/vda";
  const args = `root=${dev} ${root.readOnly ? "ro" : "rw"}`;
  return config.cmdline.trim() === "" ? args : `${config.cmdline} ${args}`;
}

/** One `--share`: a host directory served by a virtio-9p device. */
export interface ShareSpec {
  /** The host directory (absolute). */
  path: string;
  /** The mount tag the guest names it by (`mount -t 9p TAG DIR`). */
  tag: string;
  /** The device refuses writes (EROFS). */
  readOnly: boolean;
}

/** How a VM ended. */
export interface VmOutcome {
  status: number;
  /** Why it stopped, when it is worth telling (faults, device failures). */
  message?: string;
  /** Register dump for faults. */
  dump?: string;
}

/** The module URL of built-in device `path` (one of BUILTIN_DEVICES). */
function builtinUrl(path: string): string {
  return new URL(path, import.meta.url).href;
}

/**
 * Loads (without running) the modules a machine build imports on demand: both backends and the
 * built-in devices. A VMM that waits for an API command calls it while idle, so a snapshot
 * restore or an InstanceStart does not pay for compiling them (measured on `bench:report
 * lifecycle`: snapshot restore 62 -> 55 ms on KVM, 78 -> 65 ms on the interpreter).
 */
export async function preloadMachineModules(): Promise<void> {
  await Promise.all([
    import("./interp/backend.ts"),
    import("./kvm/backend.ts"),
    import("./snapshot/mod.ts"),
    ...BUILTIN_DEVICES.map((p) => import(builtinUrl(p))),
    ...Object.values(VIRTIO_DEVICES).map((p) => import(builtinUrl(p))),
  ]);
}

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
  /** Puts something between the guest's console and its sink (replication's output gate). */
  wrapSerial?: (sink: ByteSink | null) => ByteSink | null;
  /**
   * A restored or arriving VM's network cards, by id, with the frame rings of the backends the
   * main thread reconnected (`savedNets` of its state, then `startNetBackends`); a card not
   * here comes back with its link down.
   */
  nets?: NetSpec[];
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

/**
 * Refuses an initrd that cannot fit before reading it (a 2 GiB file takes seconds to read):
 * it must lie in RAM below the MMIO gap (3 GiB) with room for the kernel under it.
 */
function checkInitrdSize(
  path: string,
  memSize: number,
  image: Uint8Array,
  format: ImageFormat,
): void {
  let size: number;
  try {
    size = Deno.statSync(path).size;
  } catch {
    return; // readFile says why it cannot be read
  }
  // A bzImage says how high its initrd may end (initrd_addr_max, often 2 GiB - 1).
  let ceiling = MMIO_GAP_START, ceilingWhy = "the RAM below 3 GiB";
  if (format === "linux" && isBzImage(image) && image.length >= BZIMAGE_MIN_SIZE) {
    try {
      const max = parseSetupHeader(image, "").initrdAddrMax + 1;
      if (max < ceiling) {
        [ceiling, ceilingWhy] = [max, `the kernel's initrd_addr_max (${hex(max)})`];
      }
    } catch {
      // The loader reports a bad header.
    }
  }
  const lowRam = Math.min(memSize, MMIO_GAP_START);
  if (size < Math.min(lowRam, ceiling)) return; // the loader places it, or says what --mem fits
  const mib = (n: number) => `${Math.ceil(n / 1048576)} MiB`;
  throw new ImageError(
    size >= ceiling
      ? `Initrd "${path}" (${mib(size)}) cannot be loaded at any --mem: it must end below ` +
        `${ceilingWhy}, above the kernel. Use a smaller initrd`
      : `Initrd "${path}" (${mib(size)}) is larger than the VM's RAM (${mib(lowRam)} below ` +
        `3 GiB): give --mem more than ${mib(size)}, with room for the kernel under it`,
  );
}

/** Warns of flags the image's format ignores (an initrd or command line for a flat image). */
function warnUnused(config: VmConfig, format: ImageFormat, log: (m: string) => void): void {
  if (format !== "flat") return;
  const ignored = [
    config.initrd !== null ? "--initrd" : "",
    config.cmdline !== "" ? "--cmdline" : "",
  ].filter((f) => f !== "");
  if (ignored.length === 0) return;
  log(
    `denovisor: warning: ${ignored.join(" and ")} ignored: "${
      config.kernel ?? "(default guest)"
    }" ` +
      `is a flat image, which takes neither (they go with a Linux or Multiboot kernel)`,
  );
}

function openSerial(serial: VmConfig["serial"], io: VmIo): ByteSink | null {
  const sink = openSerialSink(serial, io);
  return io.wrapSerial === undefined ? sink : io.wrapSerial(sink);
}

function openSerialSink(serial: VmConfig["serial"], io: VmIo): ByteSink | null {
  switch (serial.kind) {
    case "none":
      return null;
    case "stdio":
      return io.stdout ?? Deno.stdout;
    case "file":
      try {
        // A standby appends to the log its primary wrote (replication).
        const file = Deno.openSync(
          serial.path,
          serial.append
            ? { write: true, create: true, append: true }
            : { write: true, create: true, truncate: true },
        );
        return serialFileSink(file, serial.path);
      } catch (err) {
        throw new VmmError(
          `Cannot open --serial file "${serial.path}": ${(err as Error).message}`,
        );
      }
  }
}

/** A serial file whose failed writes (a full disk, `/dev/full`) stop the VM saying so. */
function serialFileSink(file: Deno.FsFile, path: string): ByteSink {
  return {
    writeSync(bytes: Uint8Array): number {
      try {
        return file.writeSync(bytes);
      } catch (err) {
        throw new HostError(
          `Cannot write the guest's serial output to --serial file "${path}": ` +
            `${(err as Error).message}. Free space there or give another file:PATH`,
        );
      }
    },
  };
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

/** What `assemble` needs: a machine without a kernel. */
interface AssembleSpec {
  backend: BackendChoice;
  cpuModel: CpuModel;
  memSize: number;
  serial: VmConfig["serial"];
  protectedModeEvents: boolean;
  /** Map this memory file as RAM where the backend can (a restore on KVM). */
  memoryFile?: string;
}

/**
 * A Machine with the built-in devices attached (in BUILTIN_DEVICES order, each recorded with
 * its source, so a snapshot can name it), no plugins and no kernel.
 */
async function assemble(
  spec: AssembleSpec,
  io: VmIo,
  trace: TraceSink | null,
): Promise<Machine> {
  const log = io.log ?? ((m: string) => console.error(m));
  const backend = await selectBackend(backendFor(spec.backend, spec.cpuModel, log), log, {
    protectedModeEvents: spec.protectedModeEvents,
  });
  const machine = new Machine({
    backend,
    cpuModel: spec.cpuModel,
    memSize: spec.memSize,
    ...(spec.memoryFile === undefined ? {} : { memoryFile: spec.memoryFile }),
    serialSink: openSerial(spec.serial, io),
    serialInput: io.input ?? null,
    trace,
    log,
    control: io.control,
  });
  try {
    for (const path of BUILTIN_DEVICES) {
      const specifier = builtinUrl(path);
      const plugin = await loadPlugin(specifier);
      const options: Record<string, string> = plugin.name === "vmm-info"
        ? { backend: backend.name }
        : {};
      machine.attach(plugin, options, options.name ?? plugin.name, {
        kind: "builtin",
        specifier,
        options,
      });
    }
  } catch (err) {
    machine.close();
    throw err;
  }
  return machine;
}

/** Loads a `--device` plugin: sandboxed (a Worker with no permissions) unless `trusted=true`. */
async function loadDevicePlugin(
  specifier: string,
  allOptions: Record<string, string>,
): Promise<Plugin> {
  return allOptions.trusted === "true"
    ? await loadPlugin(specifier)
    : await loadSandboxedPlugin(specifier);
}

/**
 * Attaches a loaded `--device` plugin, recorded with its resolved module URL and all its
 * options. A virtio plugin goes behind the VMM's virtio-mmio transport, at the window and line
 * its options give (`base=`, `irq=`: a restore's, or the user's) or else `allocator`'s, which
 * are then recorded too; it returns what the DSDT must describe.
 */
function attachLoadedPlugin(
  machine: Machine,
  plugin: Plugin,
  specifier: string,
  allOptions: Record<string, string>,
  allocator?: ResourceAllocator,
): AcpiVirtioMmio | null {
  let resolved = specifier;
  try {
    resolved = resolvePluginUrl(specifier).href;
  } catch {
    // The loader accepted it; keep it as given.
  }
  let recorded = { ...allOptions };
  let where: AcpiVirtioMmio | null = null;
  if (plugin.virtio !== undefined) {
    const name = allOptions.name ?? plugin.name;
    const given = allOptions.base !== undefined && allOptions.irq !== undefined;
    if (!given && allocator === undefined) {
      throw new VmmError(
        `Virtio device "${name}" was recorded without its base= and irq=, so it cannot be ` +
          `placed where the guest knows it`,
      );
    }
    if (!given) {
      const r = allocator!.allocate();
      recorded = { ...recorded, base: `0x${r.base.toString(16)}`, irq: String(r.irq) };
    }
    // A build describes it in the DSDT; a restored guest's DSDT (in its RAM) does already.
    if (allocator !== undefined) {
      where = {
        addr: Number(recorded.base),
        size: VIRTIO_MMIO_WINDOW,
        irq: Number(recorded.irq),
      };
    }
    plugin = virtioTransportPlugin(plugin);
  }
  const { trusted: _trusted, ...options } = recorded;
  const source: DeviceSource = { kind: "plugin", specifier: resolved, options: recorded };
  machine.attach(plugin, options, options.name ?? plugin.name, source);
  return where;
}

/** Loads and attaches a `--device` plugin (see attachLoadedPlugin). */
async function attachPlugin(
  machine: Machine,
  specifier: string,
  allOptions: Record<string, string>,
  allocator?: ResourceAllocator,
): Promise<AcpiVirtioMmio | null> {
  const plugin = await loadDevicePlugin(specifier, allOptions);
  return attachLoadedPlugin(machine, plugin, specifier, allOptions, allocator);
}

/**
 * Attaches the virtio devices `config` asks for, each at the window and line `allocator` gives
 * it (recorded in its options, so a restore attaches it at the same place), and returns what
 * the DSDT must describe.
 */
async function attachVirtioDevices(
  machine: Machine,
  config: VmConfig,
  allocator: ResourceAllocator,
): Promise<AcpiVirtioMmio[]> {
  const wanted: {
    module: string;
    name: string;
    options: Record<string, string>;
    /** Attach this instead of the module's default plugin (a net device with its port). */
    plugin?: Plugin;
  }[] = [];
  for (const d of config.drives ?? []) {
    wanted.push({
      module: VIRTIO_DEVICES.blk,
      name: `virtio-blk-${d.id}`,
      options: {
        path: d.path,
        ro: String(d.readOnly),
        id: d.id,
        ...(d.cache === undefined ? {} : { cache: d.cache }),
      },
    });
  }
  if (config.rng) wanted.push({ module: VIRTIO_DEVICES.rng, name: "virtio-rng", options: {} });
  for (const s of config.shares ?? []) {
    wanted.push({
      module: VIRTIO_DEVICES.p9,
      name: `virtio-9p-${s.tag}`,
      options: { path: s.path, tag: s.tag, ro: String(s.readOnly) },
    });
  }
  if (config.console === "virtio") {
    // A literal import: the module is in the static graph (a Worker with narrowed permissions
    // may not read a computed URL).
    const plugin = (await import("../devices/virtio/console.ts")).default;
    wanted.push({
      module: "../devices/virtio/console.ts",
      name: "virtio-console",
      options: {},
      plugin,
    });
  }
  if ((config.nets ?? []).length > 0) {
    const plugins = await netPlugins(machine, config.nets ?? []);
    for (const n of config.nets ?? []) {
      wanted.push({
        module: VIRTIO_DEVICES.net,
        name: `virtio-net-${n.id}`,
        options: netDeviceOptions(n),
        plugin: plugins.get(n.id)!,
      });
    }
  }
  if (config.vsock !== undefined) {
    wanted.push({
      module: VSOCK_MODULE,
      name: "virtio-vsock",
      // uds: where a restore's host side listens again (the device itself never opens it).
      options: { cid: String(config.vsock.cid), uds: config.vsock.uds },
      plugin: await vsockPluginFor(machine, config.vsock.rings),
    });
  }
  const out: AcpiVirtioMmio[] = [];
  for (const w of wanted) {
    const r = allocator.allocate();
    const specifier = builtinUrl(w.module);
    const options = { ...w.options, base: `0x${r.base.toString(16)}`, irq: String(r.irq) };
    const plugin = w.plugin ?? await loadPlugin(specifier);
    machine.attach(plugin, options, w.name, { kind: "builtin", specifier, options });
    out.push({ addr: r.base, size: r.size, irq: r.irq });
  }
  return out;
}

/**
 * The virtio-net plugins of `nets`, by id, each over its frame rings (an unconnected port, its
 * link down, for a spec without rings), with the vCPU loop's service tick delivering what
 * arrived: frames cross from the main thread in SharedArrayBuffer rings (core/net/host.ts).
 */
async function netPlugins(
  machine: Machine,
  nets: readonly NetSpec[],
): Promise<Map<string, Plugin>> {
  const net = await import("../devices/virtio/net.ts");
  const ports: { poll?(): void }[] = [];
  const out = new Map<string, Plugin>();
  for (const n of nets) {
    const port = n.rings === undefined ? net.UNCONNECTED_PORT : net.ringPort(n.rings);
    ports.push(port);
    out.set(n.id, net.netPlugin(port));
  }
  const service = machine.control.service;
  machine.control.service = () => {
    for (const p of ports) p.poll?.();
    service();
  };
  return out;
}

/** The vsock device's module (attached with its host side's port, not by URL alone). */
const VSOCK_MODULE = "../devices/virtio/vsock.ts";

/**
 * The vsock plugin over the host side's `rings` (none: guest connections are refused), its
 * service (the host side's messages, a restore's transport reset) on the vCPU loop's tick.
 */
async function vsockPluginFor(
  machine: Machine,
  rings: { tx: SharedArrayBuffer; rx: SharedArrayBuffer } | undefined,
): Promise<Plugin> {
  // A literal import: the module is in the static graph (see the console's).
  const vsock = await import("../devices/virtio/vsock.ts");
  const port = rings === undefined ? null : vsock.vsockRingPort(rings);
  const devices: { service(): void }[] = [];
  const service = machine.control.service;
  machine.control.service = () => {
    for (const d of devices) d.service();
    service();
  };
  return vsock.vsockPlugin(port, (d) => devices.push(d));
}

/** Interrupt lines `--device` plugins were given (`irq=N`), which the allocator skips. */
function pluginIrqs(config: VmConfig): number[] {
  return config.devices.flatMap((d) => {
    const v = d.options.irq;
    return v === undefined || !Number.isInteger(Number(v)) ? [] : [Number(v)];
  });
}

/**
 * Builds the VM `config` describes, up to the vCPU in the kernel's start state: backend,
 * devices, ACPI tables and the loaded image. The caller runs it (`machine.run()`, again after a
 * pause) and closes it.
 */
export async function buildMachine(config: VmConfig, io: VmIo = {}): Promise<Machine> {
  return await buildWith(config, io, config.trace ? stderrTrace().sink : null);
}

async function buildWith(config: VmConfig, io: VmIo, trace: TraceSink | null): Promise<Machine> {
  const image = config.kernel === null ? DEFAULT_GUEST : readFile(config.kernel, "kernel");
  const format = resolveFormat(config.format, image, config.kernel ?? "(default guest)");
  if (config.initrd !== null && format !== "flat") {
    checkInitrdSize(config.initrd, config.memSize, image, format);
  }
  const initrd = config.initrd === null ? undefined : readFile(config.initrd, "initrd");
  warnUnused(config, format, io.log ?? ((m: string) => console.error(m)));
  const machine = await assemble(
    {
      backend: config.backend,
      cpuModel: cpuModelFor(config.cpu ?? "host"),
      memSize: config.memSize,
      serial: config.serial,
      protectedModeEvents: format === "linux",
    },
    io,
    trace,
  );
  try {
    // Virtio plugins go after the built-in virtio devices, so those keep their windows and lines.
    const virtioPlugins: { plugin: Plugin; spec: DeviceSpec }[] = [];
    for (const spec of config.devices) {
      const plugin = await loadDevicePlugin(spec.specifier, spec.options);
      if (plugin.virtio !== undefined) virtioPlugins.push({ plugin, spec });
      else attachLoadedPlugin(machine, plugin, spec.specifier, spec.options);
    }
    const allocator = new ResourceAllocator({ reservedIrqs: pluginIrqs(config) });
    const virtioMmio = await attachVirtioDevices(machine, config, allocator);
    for (const { plugin, spec } of virtioPlugins) {
      const at = attachLoadedPlugin(machine, plugin, spec.specifier, spec.options, allocator);
      if (at !== null) virtioMmio.push(at);
    }
    const { rsdpAddr } = writeAcpiTables(machine.memory, { virtioMmio });
    const setup = loadImage(format, image, machine.memory, {
      acpiRsdpAddr: rsdpAddr,
      imagePath: config.kernel ?? "(default guest)",
      cmdline: cmdlineWithRoot(config),
      initrd,
      initrdPath: config.initrd ?? undefined,
    });
    trace?.(`loaded ${setup.description}`);
    machine.load(setup);
    io.onVcpuReady?.(machine);
  } catch (err) {
    machine.close();
    throw err;
  }
  return machine;
}

/** The two files of a snapshot. */
export interface SnapshotFiles {
  statePath: string;
  memPath: string;
}

/** How `restoreMachine` runs the restored VM. */
export interface RestoreOptions {
  /** The backend (default: the one the snapshot was taken on). */
  backend?: BackendChoice;
  /** Where the serial console goes (default stdio). */
  serial?: VmConfig["serial"];
  /** Per-instruction trace on stderr. */
  trace?: boolean;
  /** The rings of the host side started for the snapshot's vsock (none: it refuses). */
  vsockRings?: { tx: SharedArrayBuffer; rx: SharedArrayBuffer };
}

/**
 * Builds the machine a snapshot describes (its memory size, CPU model and device set: built-in
 * devices from this build, plugins by their recorded module URLs and options), reads guest RAM
 * from the memory file and loads the state, ready to `run()`. Every problem with the files
 * (corrupted, truncated, another version, memory size mismatch) or with the device set is a
 * VmmError naming the file or device.
 */
export async function restoreMachine(
  snapshot: SnapshotFiles,
  io: VmIo = {},
  opts: RestoreOptions = {},
): Promise<Machine> {
  const snap = readSnapshot(snapshot.statePath, snapshot.memPath);
  const saved = snap.machine;
  const machine = await machineForState(
    saved,
    snap.memSize,
    `Snapshot "${snapshot.statePath}"`,
    io,
    {
      ...opts,
      // Every snapshot's memory file is complete RAM here (a Diff's is read whole, below).
      memoryFile: snapshot.memPath,
    },
  );
  try {
    // On KVM the file is guest RAM already (mapped MAP_PRIVATE). Otherwise: a Full snapshot
    // lists the pages that are not zero; a (rebased) Diff's file is read whole.
    if (!machine.memoryMapped) {
      readMemoryFile(
        snapshot.memPath,
        machine.memory,
        snap.type === "Full" ? snap.pages : undefined,
      );
    }
    // The next Diff snapshot holds what changed after this restore.
    machine.backend.collectDirtyLog?.();
    machine.memory.pages.takeDirty(SNAPSHOT_DIRTY_CONSUMER);
    machine.restoreState(saved);
    io.onVcpuReady?.(machine);
  } catch (err) {
    machine.close();
    throw err;
  }
  return machine;
}

/**
 * Builds the machine `saved` describes, without loading it: its memory size, CPU model and
 * device set (built-in devices from this build, plugins by their recorded module URLs and
 * options) on `opts.backend` (default: the one it was saved on). RAM is zero unless
 * `opts.memoryFile` maps a file as RAM. `where` names the state's origin in errors (a snapshot
 * file, a migration source). A snapshot restore and a migration's destination both use it.
 */
export async function machineForState(
  saved: MachineState,
  memSize: number,
  where: string,
  io: VmIo = {},
  opts: RestoreOptions & { memoryFile?: string } = {},
): Promise<Machine> {
  const choice = opts.backend ?? saved.backend;
  const builtins = new Map(BUILTIN_DEVICES.map((p) => [p.slice(p.lastIndexOf("/") + 1), p]));
  // Virtio modules by their last two path parts (`virtio/blk.ts`).
  const lastTwo = (p: string) => p.slice(p.lastIndexOf("/", p.lastIndexOf("/") - 1) + 1);
  const virtio = new Map(Object.values(VIRTIO_DEVICES).map((p) => [lastTwo(p), p]));
  /** A built-in virtio device's module, or undefined. */
  const virtioModule = (specifier: string) => virtio.get(lastTwo(specifier));
  const isVsock = (specifier: string) => lastTwo(specifier) === lastTwo(VSOCK_MODULE);
  for (const d of saved.devices) {
    if (d.source === undefined) {
      throw new VmmError(
        `${where}: device "${d.name}" was attached without a recorded source, so it cannot be ` +
          `rebuilt`,
      );
    }
    if (d.source.kind === "builtin") {
      const file = d.source.specifier.slice(d.source.specifier.lastIndexOf("/") + 1);
      if (
        !builtins.has(file) && virtioModule(d.source.specifier) === undefined &&
        !isVsock(d.source.specifier)
      ) {
        throw new VmmError(
          `${where}: built-in device "${d.name}" (${file}) does not exist in this denovisor`,
        );
      }
    }
  }
  const trace = opts.trace ? stderrTrace().sink : null;
  const machine = await assemble(
    {
      backend: choice,
      cpuModel: saved.cpuModel,
      memSize,
      serial: opts.serial ?? { kind: "stdio" },
      protectedModeEvents: choice === "auto" && (saved.cpu.cr0 & CR0_PE) !== 0,
      ...(opts.memoryFile === undefined ? {} : { memoryFile: opts.memoryFile }),
    },
    io,
    trace,
  );
  try {
    // Network cards over the backends the main thread reconnected (io.nets, by id).
    const savedNetSpecs = saved.devices.flatMap((d) => {
      const m = d.source?.kind === "builtin" ? virtioModule(d.source.specifier) : undefined;
      const n = m === VIRTIO_DEVICES.net ? netSpecOfOptions(d.source!.options) : null;
      return n === null ? [] : [{ ...n, ...withRings(io.nets, n.id) }];
    });
    const log = io.log ?? ((m: string) => console.error(m));
    for (const n of savedNetSpecs) {
      if (n.rings !== undefined) continue;
      log(
        `denovisor: warning: virtio-net-${n.id}: its ${n.kind} ${n.path} was not reconnected; ` +
          `its link is down`,
      );
    }
    const nets = savedNetSpecs.length === 0 ? null : await netPlugins(machine, savedNetSpecs);
    for (const d of saved.devices) {
      if (d.source?.kind === "plugin") {
        await attachPlugin(machine, d.source.specifier, d.source.options);
      }
      if (d.source?.kind === "builtin" && isVsock(d.source.specifier)) {
        // With the host side the caller started for it (its uds option), at its window.
        const specifier = builtinUrl(VSOCK_MODULE);
        machine.attach(await vsockPluginFor(machine, opts.vsockRings), d.source.options, d.name, {
          kind: "builtin",
          specifier,
          options: d.source.options,
        });
        continue;
      }
      const module = d.source?.kind === "builtin" ? virtioModule(d.source.specifier) : undefined;
      if (module !== undefined) {
        // At the window and line it had: the guest's DSDT, in the restored RAM, says so.
        const specifier = builtinUrl(module);
        const id = d.source!.options.id ?? "";
        const plugin = module === VIRTIO_DEVICES.net && nets?.has(id)
          ? nets.get(id)!
          : await loadPlugin(specifier);
        machine.attach(plugin, d.source!.options, d.name, {
          kind: "builtin",
          specifier,
          options: d.source!.options,
        });
      }
    }
  } catch (err) {
    machine.close();
    throw err;
  }
  return machine;
}

/** The rings of card `id` among `nets`, as a spread-able object (none: `{}`). */
function withRings(nets: NetSpec[] | undefined, id: string): Pick<NetSpec, "rings"> {
  const rings = nets?.find((n) => n.id === id)?.rings;
  return rings === undefined ? {} : { rings };
}

/** Builds the VM `config` describes, runs it to the end and says how it ended. */
export async function runVm(config: VmConfig, io: VmIo = {}): Promise<VmOutcome> {
  if (config.restore !== undefined) {
    // The CLI reconnected the snapshot's network cards into config.nets (core/cli.ts).
    const restoreIo = config.nets === undefined ? io : { ...io, nets: config.nets };
    return await runRestored(config.restore, restoreIo, {
      ...(config.backend === "auto" ? {} : { backend: config.backend }),
      ...(config.vsock?.rings === undefined ? {} : { vsockRings: config.vsock.rings }),
      serial: config.serial,
      trace: config.trace,
    });
  }
  const trace = config.trace ? stderrTrace() : null;
  let machine: Machine | null = null;
  try {
    machine = await buildWith(config, io, trace?.sink ?? null);
    return outcomeOf(machine);
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

/** Restores a snapshot, runs it to the end and says how it ended (the CLI's `--restore`). */
export async function runRestored(
  snapshot: SnapshotFiles,
  io: VmIo = {},
  opts: RestoreOptions = {},
): Promise<VmOutcome> {
  let machine: Machine | null = null;
  try {
    machine = await restoreMachine(snapshot, io, opts);
    return outcomeOf(machine);
  } catch (err) {
    if (err instanceof VmmError) return { status: err.exitCode, message: err.message };
    throw err;
  } finally {
    try {
      machine?.close();
    } catch {
      // Closing must not hide the outcome.
    }
  }
}

function outcomeOf(machine: Machine): VmOutcome {
  const { reason, dump } = machine.run();
  const status = exitStatusOf(reason);
  if (reason.kind === "fault") return { status, message: reason.message, dump };
  return { status };
}
