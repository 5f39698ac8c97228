/**
 * The `denovisor` command line: parses flags, starts the VM on its own Worker, relays the
 * terminal to the guest's serial port, and exits with the VM's status (the debug-exit value, 0
 * on guest reset or power-off, 1 on a fault, 2 on bad usage).
 */

import { parseCpuChoice } from "./cpu_model.ts";
import { parseArgs } from "node:util";
import { CONTROL_REQUEST, CONTROL_STATUS, REQUEST_STOP } from "./backend.ts";
import { describeError, UsageError, VmmError } from "./errors.ts";
import { InputRing } from "./serial_io.ts";
import { checkHostMemory, parseSize } from "./size.ts";
import { parseBackendChoice } from "./select_backend.ts";
import type { DriveSpec, ShareSpec, VmConfig } from "./vm.ts";
import type { StartMessage, WorkerMessage } from "./vm_worker.ts";
import { probeHost, vmPermissions } from "./vm_permissions.ts";
import { enableVcpuKicks, kickVcpu, type VcpuKickHandle } from "./kvm/backend.ts";
import { parseDeviceSpec } from "../plugins/options.ts";
import { apiMain, wantsApi } from "./api/main.ts";
import { ctlMain } from "./ctl/main.ts";
import { parseNets } from "./net/spec.ts";
import { parseVsock } from "./vsock/spec.ts";
import denoJson from "../deno.json" with { type: "json" };

/** The version `--version` prints. */
export const VERSION: string = denoJson.version;

/** `--help` text. */
export const HELP = `denovisor ${VERSION}: a virtual machine monitor in TypeScript

Usage: deno run -A mod.ts [options]
With no --kernel, boots the embedded demo guest.

Options:
  --kernel PATH          guest image to boot
  --format FORMAT        auto (default), flat, multiboot or linux
  --mem SIZE             guest RAM, e.g. 64M or 1G (default 128M)
  --cmdline STR          kernel command line (Multiboot, Linux)
  --initrd PATH          initial ramdisk (Linux) or Multiboot module
  --backend NAME         auto (default: kvm when /dev/kvm works, else interp), kvm or interp
  --cpu MODEL            host (default: the host CPU's vendor), amd or intel: the CPU the
                         guest sees (CPUID) and, on the interpreter, whose behaviour it
                         follows where the manuals leave results undefined
  --device SPEC          load a device plugin: PATH_OR_URL[,key=value...] (repeatable);
                         it runs sandboxed with no host permissions unless the options
                         say \`trusted\` (in-process, faster); \`timeout_ms=N\` bounds a
                         sandboxed handler (default 1000)
  --serial TARGET        stdio (default), none or file:PATH
  --drive SPEC           a virtio-blk disk: PATH[,ro][,id=ID] (repeatable; raw image; the
                         first is the guest's /dev/vda; ro: the device refuses writes)
  --rng                  a virtio-rng device (host randomness for the guest's /dev/hwrng)
  --share SPEC           a virtio-9p share of a host directory: HOSTDIR[,tag=T][,ro]
                         (repeatable; tags default to share0, share1, ...; the guest mounts
                         it with \`mount -t 9p -o trans=virtio,version=9p2000.L T DIR\`; ro:
                         the device refuses writes); --exec mounts it at /mnt/T
  --net SPEC             a virtio-net card: switch=PATH[,mac=MAC][,id=ID] joins the
                         learning switch on unix socket PATH (start one with
                         \`deno run -A mod.ts switch PATH\`; no root needed), tap=NAME[,...]
                         the host's TAP interface NAME; repeatable; without mac= a random
                         local address
  --vsock cid=N,uds=PATH a virtio-vsock device, guest CID N (3 or more), with Firecracker's
                         host side on unix socket PATH: a client connects, writes
                         \`CONNECT <port>\\n\`, reads \`OK <hostport>\\n\`, then talks to the
                         guest's port; the guest's connections to CID 2 port P go to
                         the unix socket PATH_P
  --console KIND         serial (default) or virtio: adds a virtio-console, the guest's
                         hvc0 (give console=hvc0), on the --serial target, and the
                         terminal's input goes to it instead of the UART
  --linux                boot the Debian kernel and busybox initramfs that
                         \`deno task guests\` fetched into .cache/guests/ (defaults:
                         --mem 256M, --cmdline console=ttyS0); other flags still apply
  --trace                log exits, unclaimed I/O, POST codes and instructions to stderr
  --exec CMD             boot the \`deno task guests\` kernel, run CMD with busybox sh,
                         stream its stdout/stderr, exit with its status (125: the guest
                         never reported one, e.g. a failed boot); --backend, --mem
                         (default 256M), --cpu apply; --verbose prints the timings;
                         --exec-timeout S gives up (125) after S seconds
  --api-sock PATH        serve the Firecracker-compatible API on unix socket PATH (see
                         README "API"); with --kernel the VM boots at once, else it waits
                         for PUT /boot-source and InstanceStart
  --config-file FILE     boot from Firecracker's config-file JSON ("boot-source",
                         "machine-config") without API calls (combines with --api-sock)
  --id ID                the instance id GET / reports (default anonymous-instance)
  --name NAME            register the VM as NAME in the runtime directory (its API socket
                         there); manage it with \`deno run -A mod.ts ctl VERB\` (ctl --help)
  --restore STATE_FILE   restore a snapshot instead of booting: its state file, with
  --mem-file MEM_FILE    its memory file; the snapshot decides RAM size, CPU model and
                         devices (no --kernel, --mem, --device); --backend picks where it
                         continues (default: the backend it was taken on)
  --incoming URL         receive a live-migrated VM on URL (tcp:HOST:PORT or unix:PATH)
                         instead of booting; the source sends it with PUT /migration/send
                         or \`ctl migrate\`; --backend picks where it runs
  --replicate URL        boot as an HA primary: checkpoint the VM to the standby at URL
  --checkpoint-ms N      every N ms (default 100); console output waits for each checkpoint
  --standby URL          keep a primary's checkpoints on URL and take over, from the last
                         one, when the primary is lost (share its --serial file: log)
  --allow-path PATH      with --api-sock, --name, --incoming or --standby: a file or
                         directory the machine may also read and write (repeatable), for
                         drives PATCH /drives swaps in and devices of an arriving VM; the
                         machine gets only its own files otherwise (README "Permissions")
  -h, --help             show this help
  -V, --version          show the version

Guest serial output goes to stdout, denovisor's own messages to stderr. On a terminal,
Ctrl-A x quits the VM (Ctrl-A Ctrl-A sends a Ctrl-A to the guest).
Exit status: the guest's debug-exit value ((v << 1) | 1 for a write of v to port 0xF4),
0 on guest reset or power-off, 1 on a fault, 2 on bad usage.`;

const FORMATS = ["auto", "flat", "multiboot", "linux"] as const;

/** Turns argv into a VmConfig, or returns "help"/"version". Throws UsageError. */
export function parseCli(argv: string[]): VmConfig | "help" | "version" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      tokens: true,
      options: {
        kernel: { type: "string" },
        format: { type: "string", default: "auto" },
        mem: { type: "string" },
        cmdline: { type: "string" },
        initrd: { type: "string" },
        backend: { type: "string", default: "auto" },
        cpu: { type: "string", default: "host" },
        device: { type: "string", multiple: true, default: [] },
        serial: { type: "string", default: "stdio" },
        drive: { type: "string", multiple: true, default: [] },
        rng: { type: "boolean", default: false },
        share: { type: "string", multiple: true, default: [] },
        net: { type: "string", multiple: true, default: [] },
        vsock: { type: "string" },
        console: { type: "string", default: "serial" },
        trace: { type: "boolean", default: false },
        linux: { type: "boolean", default: false },
        restore: { type: "string" },
        "mem-file": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", short: "V", default: false },
      },
    });
  } catch (err) {
    throw dashValueError(argv, describeError(err)) ??
      new UsageError(`${describeError(err)}. Run with --help for the options`);
  }
  refuseRepeats(parsed.tokens ?? []);
  const v = parsed.values;
  if (v.help) return "help";
  if (v.version) return "version";
  const format = v.format as (typeof FORMATS)[number];
  if (!FORMATS.includes(format)) {
    throw new UsageError(`Unknown --format "${v.format}": use ${FORMATS.join(", ")}`);
  }
  if (v.linux) {
    if (v.kernel !== undefined) throw new UsageError("--linux and --kernel cannot be combined");
    const guest = linuxGuestPaths();
    v.kernel = guest.kernel;
    v.initrd ??= guest.initrd;
    v.mem ??= "256M";
    v.cmdline ??= "console=ttyS0";
  }
  const restore = parseRestore(v);
  const memSize = parseSize(v.mem ?? "128M");
  checkHostMemory(memSize, v.mem ?? "128M");
  if (memSize < 1 << 20) {
    throw new UsageError(`--mem ${v.mem} is too small: give at least 1M`);
  }
  let serial: VmConfig["serial"];
  if (v.serial === "stdio" || v.serial === "none") serial = { kind: v.serial };
  else if (v.serial!.startsWith("file:") && v.serial!.length > 5) {
    serial = { kind: "file", path: v.serial!.slice(5) };
  } else {
    throw new UsageError(`Unknown --serial "${v.serial}": use stdio, none or file:PATH`);
  }
  if (v.kernel === undefined && (v.initrd !== undefined || format !== "auto")) {
    throw new UsageError("--initrd and --format need --kernel");
  }
  return {
    backend: parseBackendChoice(v.backend!),
    cpu: parseCpuChoice(v.cpu!),
    memSize,
    kernel: v.kernel ?? null,
    format,
    cmdline: v.cmdline ?? "",
    initrd: v.initrd ?? null,
    devices: v.device!.map(parseDeviceSpec),
    drives: parseDrives(v.drive!),
    rng: v.rng!,
    ...(v.share!.length === 0 ? {} : { shares: parseShares(v.share!) }),
    ...(v.net!.length === 0 ? {} : { nets: parseNets(v.net!) }),
    ...(v.vsock === undefined ? {} : { vsock: parseVsock(v.vsock) }),
    ...(v.console === "serial" ? {} : { console: parseConsole(v.console!) }),
    serial,
    trace: v.trace!,
    ...(restore === undefined ? {} : { restore }),
  };
}

/** `--console serial|virtio`. */
function parseConsole(kind: string): "serial" | "virtio" {
  if (kind === "serial" || kind === "virtio") return kind;
  throw new UsageError(`Unknown --console "${kind}": use serial or virtio`);
}

/** Options that may be given more than once. */
const REPEATABLE = new Set(["device", "drive", "net", "share"]);

/** A flag given twice would silently keep only its last value: refuse it instead. */
function refuseRepeats(tokens: { kind: string; name?: string }[]): void {
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind !== "option" || t.name === undefined || REPEATABLE.has(t.name)) continue;
    if (seen.has(t.name)) {
      throw new UsageError(`--${t.name} is given more than once: give it once`);
    }
    seen.add(t.name);
  }
}

/**
 * parseArgs calls `--mem -5M` "ambiguous" (the value starts with "-"): say what is wrong with
 * the value instead. Null for other errors.
 */
function dashValueError(argv: string[], message: string): UsageError | null {
  const m = /Option '(--[\w-]+)' argument is ambiguous/.exec(message);
  if (!m) return null;
  const flag = m[1]!;
  const value = argv[argv.indexOf(flag) + 1] ?? "";
  if (flag === "--mem") parseSize(value); // throws: a negative size
  return new UsageError(
    `${flag} "${value}": a value cannot start with "-" (if it is one, write ${flag}=${value})`,
  );
}

/** `--drive PATH[,ro][,id=ID]` (ids default to drive0, drive1, ... and must differ). */
export function parseDrives(specs: string[]): DriveSpec[] {
  const drives = specs.map((spec, i): DriveSpec => {
    const [path, ...opts] = spec.split(",");
    if (!path) throw new UsageError(`--drive "${spec}" has no path: use PATH[,ro][,id=ID]`);
    let readOnly = false, id = `drive${i}`;
    for (const o of opts) {
      if (o === "ro") readOnly = true;
      else if (o.startsWith("id=") && /^[A-Za-z0-9_.-]{1,20}$/.test(o.slice(3))) id = o.slice(3);
      else {
        throw new UsageError(
          `--drive "${spec}": unknown option "${o}" (use ro and id=ID, ID of 1-20 letters, ` +
            `digits, "-", "_" or ".")`,
        );
      }
    }
    return { path, readOnly, id };
  });
  const ids = drives.map((d) => d.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup !== undefined) throw new UsageError(`Two --drive options have id=${dup}`);
  return drives;
}

/** A 9p mount tag: 1-31 letters, digits, "-", "_" or ".". */
export const SHARE_TAG = /^[A-Za-z0-9_.-]{1,31}$/;

/**
 * `--share HOSTDIR[,tag=T][,ro]` (tags default to share0, share1, ... and must differ; a
 * relative HOSTDIR is taken from the current directory, so a restore elsewhere finds it).
 */
export function parseShares(specs: string[]): ShareSpec[] {
  const shares = specs.map((spec, i): ShareSpec => {
    const [dir, ...opts] = spec.split(",");
    if (!dir) throw new UsageError(`--share "${spec}" has no directory: use HOSTDIR[,tag=T][,ro]`);
    let readOnly = false, tag = `share${i}`;
    for (const o of opts) {
      if (o === "ro") readOnly = true;
      else if (o.startsWith("tag=") && SHARE_TAG.test(o.slice(4))) tag = o.slice(4);
      else {
        throw new UsageError(
          `--share "${spec}": unknown option "${o}" (use ro and tag=T, T of 1-31 letters, ` +
            `digits, "-", "_" or ".")`,
        );
      }
    }
    const path = dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
    return { path, tag, readOnly };
  });
  const tags = shares.map((s) => s.tag);
  const dup = tags.find((t, i) => tags.indexOf(t) !== i);
  if (dup !== undefined) throw new UsageError(`Two --share options have tag=${dup}`);
  return shares;
}

/** `--restore` and `--mem-file`: both or neither, and nothing the snapshot decides. */
function parseRestore(v: {
  restore?: string;
  "mem-file"?: string;
  kernel?: string;
  mem?: string;
  initrd?: string;
  cmdline?: string;
  device?: string[];
  drive?: string[];
  rng?: boolean;
  net?: string[];
  vsock?: string;
  share?: string[];
  linux?: boolean;
  cpu?: string;
}): VmConfig["restore"] {
  if (v.restore === undefined && v["mem-file"] === undefined) return undefined;
  if (v.restore === undefined || v["mem-file"] === undefined) {
    throw new UsageError("--restore STATE_FILE and --mem-file MEM_FILE go together");
  }
  const clash = [
    v.linux ? "--linux" : "",
    v.kernel !== undefined ? "--kernel" : "",
    v.mem !== undefined ? "--mem" : "",
    v.initrd !== undefined ? "--initrd" : "",
    v.cmdline !== undefined ? "--cmdline" : "",
    (v.device ?? []).length > 0 ? "--device" : "",
    (v.drive ?? []).length > 0 ? "--drive" : "",
    v.rng ? "--rng" : "",
    (v.share ?? []).length > 0 ? "--share" : "",
    (v.net ?? []).length > 0 ? "--net" : "",
    v.vsock !== undefined ? "--vsock" : "",
    v.cpu !== undefined && v.cpu !== "host" ? "--cpu" : "",
  ].filter((x) => x !== "");
  if (clash.length > 0) {
    throw new UsageError(
      `--restore cannot be combined with ${clash.join(", ")}: the snapshot records the ` +
        `machine (RAM, CPU model, devices and the loaded guest)`,
    );
  }
  return { statePath: v.restore, memPath: v["mem-file"] };
}

/** Where `deno task guests` caches the Linux guest. */
export const GUEST_CACHE_DIR: string = new URL("../.cache/guests/", import.meta.url).pathname;

/** The kernel and initramfs `--linux` boots; a clear error when they were not fetched. */
export function linuxGuestPaths(dir = GUEST_CACHE_DIR): { kernel: string; initrd: string } {
  const kernel = `${dir}bzImage`, initrd = `${dir}initramfs.cpio.gz`;
  for (const path of [kernel, initrd]) {
    try {
      Deno.statSync(path);
    } catch {
      throw new UsageError(
        `--linux needs ${path}, which is not there: run \`deno task guests\` first to fetch ` +
          `Debian's kernel and build the busybox initramfs`,
      );
    }
  }
  return { kernel, initrd };
}

const CTRL_A = 0x01;

/** Relays host stdin to the guest; on a terminal, raw mode and the Ctrl-A x escape. */
export async function relayInput(input: InputRing, quit: () => void): Promise<void> {
  const tty = Deno.stdin.isTerminal();
  if (tty) Deno.stdin.setRaw(true);
  const buf = new Uint8Array(1024);
  let escape = false;
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) return;
      let bytes = buf.subarray(0, n);
      if (tty) {
        const out: number[] = [];
        for (const b of bytes) {
          if (escape) {
            escape = false;
            if (b === 0x78 /* x */) return quit();
            if (b === CTRL_A) out.push(CTRL_A);
          } else if (b === CTRL_A) escape = true;
          else out.push(b);
        }
        bytes = new Uint8Array(out);
      }
      // Back-pressure: wait for the guest to drain a full ring.
      while (bytes.length > 0) {
        const pushed = input.push(bytes);
        bytes = bytes.subarray(pushed);
        if (bytes.length > 0) await new Promise((r) => setTimeout(r, 5));
      }
    }
  } catch {
    // stdin closed or unreadable: the guest just gets no more input.
  }
}

/** Leaves the terminal as it was before raw mode. */
export function restoreTerminal(): void {
  try {
    if (Deno.stdin.isTerminal()) Deno.stdin.setRaw(false);
  } catch {
    // Nothing to restore.
  }
}

/** Runs the CLI and returns the process exit status. */
export async function main(argv: string[]): Promise<number> {
  if (argv[0] === "ctl") return await ctlMain(argv.slice(1));
  if (argv[0] === "switch") {
    const { switchMain } = await import("./net/switch.ts");
    return await switchMain(argv.slice(1));
  }
  if (argv.some((a) => a === "--exec" || a.startsWith("--exec="))) {
    const { execMain } = await import("./exec/main.ts");
    return await execMain(argv);
  }
  if (wantsApi(argv)) return await apiMain(argv);
  if (argv.some((a) => a === "--allow-path" || a.startsWith("--allow-path="))) {
    console.error(
      "denovisor: --allow-path goes with --api-sock, --name, --incoming or --standby (the " +
        "plain command line names every file the VM uses, and the VM may use just those)",
    );
    return 2;
  }
  let config: VmConfig;
  try {
    const parsed = parseCli(argv);
    if (parsed === "help") {
      console.log(HELP);
      return 0;
    }
    if (parsed === "version") {
      console.log(`denovisor ${VERSION}`);
      return 0;
    }
    config = parsed;
  } catch (err) {
    if (err instanceof VmmError) {
      console.error(`denovisor: ${err.message}`);
      return err.exitCode;
    }
    throw err;
  }

  // The switch sockets live on this thread; their frames cross in rings (core/net/host.ts).
  // A restore reconnects the cards its snapshot records.
  if (config.restore !== undefined) {
    const { snapshotNets } = await import("./net/restore.ts");
    const nets = await snapshotNets(config.restore.statePath, config.restore.memPath);
    if (nets.length > 0) config.nets = nets;
  }
  let net: { close(): void } | null = null;
  if ((config.nets ?? []).length > 0) {
    const { startNetBackends } = await import("./net/host.ts");
    try {
      net = await startNetBackends(config.nets!);
    } catch (err) {
      if (!(err instanceof VmmError)) throw err;
      console.error(`denovisor: ${err.message}`);
      return err.exitCode;
    }
  }
  // The vsock's unix sockets too (core/vsock/host.ts); a restored one listens where it did.
  if (config.restore !== undefined) {
    const { snapshotVsock } = await import("./vsock/restore.ts");
    const spec = await snapshotVsock(config.restore);
    if (spec !== null) config.vsock = spec;
  }
  let vsock: { close(): void } | null = null;
  if (config.vsock !== undefined) {
    const { startVsockHost } = await import("./vsock/host.ts");
    try {
      vsock = await startVsockHost(config.vsock);
    } catch (err) {
      net?.close();
      if (!(err instanceof VmmError)) throw err;
      console.error(`denovisor: ${err.message}`);
      return err.exitCode;
    }
  }
  const input = new InputRing();
  const control = new SharedArrayBuffer(8);
  const requests = new Int32Array(control);
  // The machine runs with only the permissions this VM needs (core/vm_permissions.ts).
  const worker = new Worker(new URL("./vm_worker.ts", import.meta.url), {
    type: "module",
    deno: { permissions: await vmPermissions(config) },
  } as WorkerOptions);
  let kick: VcpuKickHandle | null = null;
  let disableKicks: (() => void) | null = null;
  let kicker: ReturnType<typeof setInterval> | undefined;
  const done = new Promise<WorkerMessage & { kind: "done" }>((resolve) => {
    worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
      if (e.data.kind === "kick") {
        kick = e.data.handle;
        disableKicks = enableVcpuKicks();
      } else if (e.data.kind === "done") resolve(e.data);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      resolve({ kind: "done", ok: false, message: e.message });
    };
  });
  const quit = () => {
    Atomics.store(requests, CONTROL_STATUS, 0);
    Atomics.store(requests, CONTROL_REQUEST, REQUEST_STOP);
    // A KVM guest spinning without exits only sees the request once kicked; repeat until taken.
    if (kick !== null) {
      const handle = kick;
      kickVcpu(handle);
      kicker = setInterval(() => kickVcpu(handle), 10);
    }
  };
  const start: StartMessage = { config, input: input.buffer, control, host: probeHost() };
  worker.postMessage(start);
  relayInput(input, quit);
  const result = await done;
  net?.close();
  vsock?.close();
  clearInterval(kicker);
  (disableKicks as (() => void) | null)?.();
  restoreTerminal();
  worker.terminate();
  if (!result.ok) {
    console.error(`denovisor: internal error: ${result.message}`);
    if (config.trace && result.stack) console.error(result.stack);
    return 1;
  }
  const { outcome } = result;
  if (outcome.message) console.error(`denovisor: ${outcome.message}`);
  if (outcome.dump) console.error(outcome.dump);
  return outcome.status;
}
