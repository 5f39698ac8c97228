/**
 * `deno run -A mod.ts --exec "CMD"`: boots Debian's kernel (`deno task guests` fetched it) with a
 * generated initramfs whose /init runs CMD with busybox sh, streams CMD's stdout to stdout and
 * its stderr to stderr, and ends with CMD's exit status. A boot that never reaches CMD (or a VM
 * that ends before CMD reports its status) ends with EXEC_FAILED and a message, the kernel's
 * console output on stderr.
 *
 * The other flags pass through to the ordinary command line (`parseCli`): `--backend`, `--mem`
 * (default 256M), `--cpu`, `--device`, `--trace`, and whatever it gains later (`--drive` once
 * the virtio devices land; `execModules` then loads their drivers). `--verbose` prints the
 * timings (start to boot, to CMD's first output, to the end) on stderr; `--exec-timeout S` stops
 * a guest that has not reported CMD's status after S seconds (EXEC_FAILED).
 *
 * The host's current directory is shared read-write (virtio-9p, tag `denovisor-cwd`) and mounted
 * at the same path in the guest, where CMD runs; each `--share HOSTDIR[,tag=T][,ro]` is mounted
 * at /mnt/T. A current directory the initramfs needs itself (`/`, `/bin`, `/usr`, `/tmp`,
 * `/mnt`, ... or one below /proc, /sys, /dev) is mounted at /hostcwd instead.
 */

import { probeHost, vmPermissions } from "../vm_permissions.ts";
import { parseCli } from "../cli.ts";
import { describeError, UsageError, VmmError } from "../errors.ts";
import type { VmConfig } from "../vm.ts";
import {
  loadModuleSet,
  type ModuleSet,
  readInitramfsModules,
  virtioDrivers,
} from "../boot/modules.ts";
import { execInitramfs, type ExecMount } from "./initramfs.ts";
import type { ExecStartMessage, ExecWorkerMessage } from "./worker.ts";

/** The exit status of an exec run whose command never reported one (a failed boot). */
export const EXEC_FAILED = 125;

/** Where `deno task guests` caches the Linux guest. */
const GUEST_DIR = new URL("../../.cache/guests/", import.meta.url).pathname;

/** Flags that decide what `--exec` itself decides (the kernel, initramfs, console). */
const REFUSED = [
  "--linux",
  "--kernel",
  "--initrd",
  "--cmdline",
  "--format",
  "--serial",
  "--restore",
  "--mem-file",
  "--api-sock",
  "--config-file",
  "--name",
  "--id",
  "--incoming",
  "--replicate",
  "--standby",
  "--checkpoint-ms",
];

/**
 * The kernel command line of an exec guest: serial console, boot messages below warnings off,
 * no read-only kernel mappings (their W+X page-table walk takes 4 s on the interpreter) and no
 * crypto self-tests (Debian's kernel runs them all in one late initcall: 22 s there).
 */
export const EXEC_CMDLINE = "console=ttyS0 quiet panic=-1 rodata=off cryptomgr.notests";

/** The mount tag of the exec mode's share of the host's current directory. */
export const EXEC_CWD_TAG = "denovisor-cwd";

/** Where the current directory is mounted when its own path is one the initramfs needs. */
export const EXEC_CWD_FALLBACK = "/hostcwd";

/** Directories of the exec initramfs that the current directory's share must not cover. */
const OWN_DIRS = [
  "/bin",
  "/sbin",
  "/usr/bin",
  "/usr/sbin",
  "/dev",
  "/proc",
  "/sys",
  "/tmp",
  "/root",
  "/lib/modules",
  "/mnt",
  EXEC_CWD_FALLBACK,
];

/**
 * Adds the exec mode's share of `cwd` (read-write, first) to `config.shares` and returns what
 * /init mounts: `cwd` at its own path (unless that would cover a directory the initramfs needs:
 * then at EXEC_CWD_FALLBACK), each `--share` at /mnt/TAG; and where CMD runs.
 */
export function execShares(
  config: VmConfig,
  cwd: string,
): { mounts: ExecMount[]; workdir: string } {
  const user = config.shares ?? [];
  if (user.some((s) => s.tag === EXEC_CWD_TAG)) {
    throw new UsageError(
      `--share tag=${EXEC_CWD_TAG} is taken: --exec shares the current directory with it`,
    );
  }
  const under = (dir: string) => cwd === dir || cwd.startsWith(dir + "/");
  const clash = cwd === "/" || OWN_DIRS.some((d) => d.startsWith(cwd + "/")) ||
    OWN_DIRS.some((d) => cwd === d) || ["/proc", "/sys", "/dev"].some(under) ||
    user.some((s) => under(`/mnt/${s.tag}`));
  const workdir = clash ? EXEC_CWD_FALLBACK : cwd;
  config.shares = [{ path: cwd, tag: EXEC_CWD_TAG, readOnly: false }, ...user];
  const mounts: ExecMount[] = [
    { tag: EXEC_CWD_TAG, dir: workdir },
    ...user.map((s) => ({ tag: s.tag, dir: `/mnt/${s.tag}`, readOnly: s.readOnly })),
  ];
  return { mounts, workdir };
}

/** True when argv asks for the exec mode. */
export function wantsExec(argv: readonly string[]): boolean {
  return argv.some((a) => a === "--exec" || a.startsWith("--exec="));
}

/** `--exec` parsed: the command, `--verbose`, and the flags left for `parseCli`. */
export interface ExecArgs {
  cmd: string;
  verbose: boolean;
  /** `--exec-timeout S`: give up (EXEC_FAILED) when CMD has not ended after S seconds. */
  timeoutMs?: number;
  rest: string[];
}

/** Takes `--exec CMD` and `--verbose` out of argv; refuses flags the exec mode decides. */
export function parseExecArgs(argv: readonly string[]): ExecArgs {
  let cmd: string | undefined, verbose = false, timeoutMs: number | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--exec" || a.startsWith("--exec=")) {
      const value = a === "--exec" ? argv[++i] : a.slice("--exec=".length);
      if (value === undefined) throw new UsageError("--exec needs a command: --exec 'CMD'");
      if (cmd !== undefined) throw new UsageError("--exec is given twice: give one command");
      cmd = value;
    } else if (a === "--verbose") {
      verbose = true;
    } else if (a === "--exec-timeout" || a.startsWith("--exec-timeout=")) {
      const value = a === "--exec-timeout" ? argv[++i] : a.slice("--exec-timeout=".length);
      const secs = Number(value);
      if (value === undefined || value.trim() === "" || !(secs > 0) || !Number.isFinite(secs)) {
        throw new UsageError(`--exec-timeout needs a positive number of seconds, not "${value}"`);
      }
      timeoutMs = secs * 1000;
    } else {
      const flag = a.split("=")[0]!;
      if (REFUSED.includes(flag)) {
        throw new UsageError(
          `--exec cannot be combined with ${flag}: it boots Debian's kernel from ` +
            `.cache/guests/ with its own initramfs and console`,
        );
      }
      rest.push(a);
    }
  }
  if (cmd === undefined) throw new UsageError("--exec needs a command: --exec 'CMD'");
  return { cmd, verbose, ...(timeoutMs === undefined ? {} : { timeoutMs }), rest };
}

/**
 * The kernel modules an exec guest loads for `config`: the virtio-mmio transport always (the
 * devices are announced in the DSDT), and each attached device kind's driver: `drives`
 * (`--drive`: virtio_blk, ext4), `rng` (`--rng`), `shares` (the current directory and
 * `--share`: 9p and 9pnet_virtio, with netfs and 9pnet from modules.dep), `--net` and
 * `--vsock` (vsock and its virtio transport). The drivers of virtio `--device` plugins follow
 * their device IDs (`pluginDrivers`).
 */
export function execModules(config: VmConfig): string[] {
  const mods = ["virtio_mmio"];
  const c = config as VmConfig & {
    drives?: unknown[];
    rng?: boolean;
    nets?: unknown[];
    shares?: unknown[];
  };
  if ((c.drives?.length ?? 0) > 0) mods.push("virtio_blk", "ext4", "crc32c_generic");
  if (c.rng === true) mods.push("virtio_rng");
  if ((c.nets?.length ?? 0) > 0) mods.push("virtio_net");
  if (config.console === "virtio") mods.push("virtio_console");
  if ((c.shares?.length ?? 0) > 0) mods.push("9p", "9pnet_virtio");
  if (config.vsock !== undefined) {
    mods.push("vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport");
  }
  return mods;
}

/**
 * The guest drivers of the `--device` plugins that are virtio devices: each plugin's device ID
 * (read by loading it in a permission-less Worker, trusted or not) looked up in the modules'
 * virtio aliases (`virtio:d000000XXv*`). A plugin that fails to load here is left to the VM,
 * which reports it; an ID no cached module drives is said on stderr.
 */
async function pluginDrivers(config: VmConfig, set: ModuleSet): Promise<string[]> {
  if (config.devices.length === 0) return [];
  const { probePlugin } = await import("../../plugins/sandbox.ts");
  let drivers: Map<number, string> | null = null;
  const out: string[] = [];
  for (const d of config.devices) {
    let virtio: { deviceId: number } | undefined, name = d.specifier;
    try {
      ({ virtio, name } = await probePlugin(d.specifier));
    } catch {
      continue;
    }
    if (virtio === undefined) continue;
    drivers ??= await virtioDrivers(set);
    const driver = drivers.get(virtio.deviceId);
    if (driver === undefined) {
      console.error(
        `denovisor: --exec: warning: no kernel module in the guest's cache drives virtio device ` +
          `ID ${virtio.deviceId} (device "${name}"): the guest will not use it`,
      );
    } else if (!out.includes(driver)) out.push(driver);
  }
  return out;
}

function need(path: string): void {
  try {
    Deno.statSync(path);
  } catch {
    throw new UsageError(
      `--exec needs ${path}, which is not there: run \`deno task guests\` first to fetch ` +
        `Debian's kernel, its modules and busybox`,
    );
  }
}

/** Busybox's applet paths (`busybox --list-full` on the host), or undefined if it cannot run. */
async function busyboxApplets(path: string): Promise<string[] | undefined> {
  try {
    const out = await new Deno.Command(path, { args: ["--list-full"], stdout: "piped" }).output();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim()).filter((l) =>
      l !== ""
    );
  } catch {
    return undefined;
  }
}

/** A random nonce for the console frames of one run. */
function makeNonce(): string {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return "dnv" + [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * The kernel `--exec` boots from `guestDir`: the decompressed `vmlinux` through PVH (no in-guest
 * XZ decompression) when it is there, else `bzImage`.
 */
export function execKernel(guestDir = GUEST_DIR): string {
  try {
    Deno.statSync(`${guestDir}vmlinux`);
    return `${guestDir}vmlinux`;
  } catch {
    return `${guestDir}bzImage`;
  }
}

/**
 * The initramfs `--exec CMD` boots for `config` with `cwd` as the current directory, and the
 * nonce of its console frames: adds the share of `cwd` to `config` (`execShares`), reads the
 * modules `execModules` and the `--device` plugins need from `guestDir`'s cache, and packs them
 * with busybox, its applet links and the /init of `initramfs.ts`. `bench/io_group.ts` boots the
 * same archive on QEMU.
 */
export async function buildExecInitramfs(
  config: VmConfig,
  cmd: string,
  cwd: string,
  guestDir = GUEST_DIR,
): Promise<{ initramfs: Uint8Array; nonce: string }> {
  const { mounts, workdir } = execShares(config, cwd);
  const release = Deno.readTextFileSync(`${guestDir}kernel-package`).trim()
    .replace(/^linux-image-/, "");
  let set;
  try {
    set = await loadModuleSet(`${guestDir}modules`, release);
  } catch (err) {
    throw new UsageError(
      `--exec needs the kernel's modules in ${guestDir}modules/${release}/ (` +
        `${describeError(err)}): run \`deno task guests\``,
    );
  }
  const drivers = await pluginDrivers(config, set);
  const modules = await readInitramfsModules(set, [...execModules(config), ...drivers]);
  const nonce = makeNonce();
  const busybox = await Deno.readFile(`${guestDir}busybox`);
  const applets = await busyboxApplets(`${guestDir}busybox`);
  const initramfs = execInitramfs({ busybox, cmd, nonce, modules, applets, mounts, workdir });
  return { initramfs, nonce };
}

/** Runs `--exec` and returns the process exit status. */
export async function execMain(argv: string[], guestDir = GUEST_DIR): Promise<number> {
  const t0 = performance.timeOrigin;
  let tmp: string | null = null;
  try {
    const args = parseExecArgs(argv);
    const kernel = execKernel(guestDir);
    need(kernel);
    need(`${guestDir}busybox`);
    need(`${guestDir}modules`);
    const mem = args.rest.some((a) => a === "--mem" || a.startsWith("--mem=")) ? [] : [
      "--mem",
      "256M",
    ];
    tmp = await Deno.makeTempFile({ prefix: "denovisor-exec-", suffix: ".cpio" });
    const parsed = parseCli([
      ...args.rest,
      ...mem,
      "--kernel",
      kernel,
      "--format",
      "linux",
      "--initrd",
      tmp,
      "--cmdline",
      EXEC_CMDLINE,
    ]);
    if (parsed === "help" || parsed === "version") {
      throw new UsageError("--exec does not combine with --help or --version");
    }
    const config = parsed;
    const { initramfs, nonce } = await buildExecInitramfs(config, args.cmd, Deno.cwd(), guestDir);
    await Deno.writeFile(tmp, initramfs);
    return await runExec(config, nonce, args, t0);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`denovisor: ${err.message}`);
      return err.exitCode;
    }
    if (err instanceof VmmError) {
      console.error(`denovisor: --exec: ${err.message}`);
      return EXEC_FAILED;
    }
    throw err;
  } finally {
    if (tmp !== null) await Deno.remove(tmp).catch(() => {});
  }
}

/** The last 40 lines of a boot log, after its first panic line if that comes earlier. */
export function consoleTail(log: string, n = 40): string {
  const lines = log.split("\n");
  const tail = lines.slice(-n);
  const panic = lines.findIndex((l) => /Kernel panic|BUG:|Oops:|Out of memory/.test(l));
  if (panic < 0 || panic >= lines.length - n) return tail.join("\n");
  return [lines[panic]!, "[...]", ...tail].join("\n");
}

async function runExec(
  config: VmConfig,
  nonce: string,
  args: ExecArgs,
  t0: number,
): Promise<number> {
  const verbose = args.verbose;
  // --net: the sockets on this thread, the frames in rings to the worker (core/net/host.ts).
  const net = (config.nets ?? []).length > 0
    ? await (await import("../net/host.ts")).startNetBackends(config.nets!)
    : null;
  // --vsock: its unix sockets on this thread too (core/vsock/host.ts).
  let vsock: { close(): void } | null = null;
  if (config.vsock !== undefined) {
    try {
      vsock = await (await import("../vsock/host.ts")).startVsockHost(config.vsock);
    } catch (err) {
      net?.close();
      throw err;
    }
  }
  // The machine runs with only the permissions this VM needs (core/vm_permissions.ts).
  const worker = new Worker(new URL("./worker.ts", import.meta.url), {
    type: "module",
    deno: { permissions: await vmPermissions(config) },
  } as WorkerOptions);
  let started: number | undefined, firstOutput: number | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined, timedOut = false;
  const result = await new Promise<ExecWorkerMessage & { kind: "done" }>((resolve) => {
    worker.onmessage = (e: MessageEvent<ExecWorkerMessage>) => {
      const m = e.data;
      if (m.kind === "started") started = m.at;
      else if (m.kind === "first-output") firstOutput = m.at;
      else resolve(m);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      resolve({ kind: "done", ok: false, message: e.message });
    };
    const start: ExecStartMessage = { config, nonce, host: probeHost() };
    worker.postMessage(start);
    if (args.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        resolve({ kind: "done", ok: false, message: "" });
      }, args.timeoutMs);
    }
  });
  clearTimeout(timer);
  worker.terminate();
  net?.close();
  vsock?.close();
  const end = Date.now();
  const s = (t: number | undefined) => t === undefined ? "-" : `${((t - t0) / 1000).toFixed(2)} s`;
  if (verbose) {
    console.error(
      `denovisor: exec: command started ${s(started)} after start, first output ${
        s(firstOutput)
      }, VM ended ${s(end)}`,
    );
  }
  if (timedOut) {
    console.error(
      `denovisor: --exec: no exit status from the guest after --exec-timeout ` +
        `${args.timeoutMs! / 1000} s (${
          started === undefined ? "it was still booting" : "the command was still running"
        }); the VM was stopped. Status ${EXEC_FAILED}`,
    );
    return EXEC_FAILED;
  }
  if (!result.ok) {
    console.error(`denovisor: --exec: internal error: ${result.message}`);
    if (config.trace && result.stack) console.error(result.stack);
    return EXEC_FAILED;
  }
  if (result.commandStatus !== undefined) return result.commandStatus;
  const { outcome } = result;
  const why = outcome.message
    ? `: ${outcome.message.replace(/\.$/, "")}`
    : ` (the VM's own status: ${outcome.status})`;
  if (!result.started) {
    const log = result.bootLog.trimEnd();
    if (log !== "") console.error(consoleTail(log));
    console.error(
      `denovisor: --exec: the guest ended before it ran the command${why}` +
        (log === "" ? "" : ` (the end of its console is above; too little --mem?)`) +
        `. Status ${EXEC_FAILED}`,
    );
  } else {
    console.error(
      `denovisor: --exec: the guest ended while the command ran, without its exit status${why}. ` +
        `Status ${EXEC_FAILED}`,
    );
  }
  if (outcome.dump) console.error(outcome.dump);
  return EXEC_FAILED;
}
