/**
 * The `io` bench group: guest I/O through the virtio devices and the `--exec` start-to-exit time,
 * denovisor on the interpreter (`--backend interp`) against QEMU TCG in the same run, both
 * booting the same kernel file with the same initramfs and the same guest commands.
 *
 * - **The guest.** denovisor runs `mod.ts --exec SCRIPT` (its cwd a temp directory, which the exec
 *   mode shares over virtio-9p). QEMU boots the archive `--exec` builds for the same command line
 *   (`buildExecInitramfs`, `core/exec/main.ts`): the same busybox, modules (virtio_mmio,
 *   virtio_blk, 9p, ...) and /init, which mounts the same share at the same path with the same
 *   options (`trans=virtio,version=9p2000.L,msize=262144`), and the same kernel command line.
 *   The kernel is the file `--exec` boots (`execKernel`: `vmlinux` through PVH, the decompressed
 *   bzImage); QEMU `-M microvm` loads it through PVH too. microvm rather than `-M pc`: its
 *   virtio-mmio devices (`virtio-blk-device`, `virtio-9p-device`) are announced in its ACPI
 *   tables as LNRO0005 nodes, as denovisor's are, so the guest runs the same transport driver
 *   (virtio_mmio) on both sides; `-M pc` would need virtio_pci, which the module cache lacks. With
 *   QEMU 7.2 here, microvm does not boot the bzImage (no output in 2 min) and boots the vmlinux.
 * - **The timing** is the guest's: the script reads the kernel's monotonic clock in ns (the
 *   `now at` line of /proc/timer_list; see `ioScript` for why not /proc/uptime or `date`) just
 *   before and after each `dd`, so the boot is excluded, and prints
 *   `IOBENCH NAME start=NS end=NS status=RC records=N+M` lines, which both sides' outputs are
 *   parsed for alike (`parseIoLines`). The VM clock is host monotonic time on the interpreter
 *   (`core/clock.ts`). Each `dd` starts after `sync` and dropping the page cache.
 * - **The rows.** virtio-blk sequential read (`dd if=/dev/vda of=/dev/null bs=1M count=64` of a
 *   64 MiB raw image of random data) and write (`dd if=/dev/zero of=/dev/vda bs=1M count=64
 *   conv=fsync`: both devices offer FLUSH, each flush an fdatasync on the host: QEMU's default
 *   cache=writeback, denovisor's `--drive` default), then a 9p read of a 16 MiB host file
 *   (`dd bs=1M`), all three in one boot per side; MiB/s = MiB / guest seconds. After the boot the
 *   image must hold 64 MiB of zeros (the writes reached the file). Then `--exec true` from spawn
 *   to exit (Deno's start and the initramfs build included) against QEMU booting the archive of
 *   `--exec true` from spawn to exit (its /init ends with `poweroff -f`; denovisor stops the VM
 *   at the command's exit frame). One run per side (a denovisor boot takes most of a minute);
 *   a QEMU boot that hangs before /init is retried (see `qemu`), and each run's figures go to
 *   stderr.
 */

import type { BenchRow } from "./report.ts";
import { haveQemu } from "./boot_group.ts";
import { parseCli } from "../core/cli.ts";
import type { VmConfig } from "../core/vm.ts";
import { buildExecInitramfs, EXEC_CMDLINE, execKernel } from "../core/exec/main.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const GUESTS = `${ROOT}.cache/guests/`;
const MIB = 1 << 20;
const BLK_MIB = 64, P9_MIB = 16;
const P9_FILE = "iobench-16m.bin";
const MEM = "256M";
/** A denovisor boot with the I/O script takes minutes on the interpreter; QEMU's seconds. */
const VMM_TIMEOUT_MS = 20 * 60_000, QEMU_TIMEOUT_MS = 5 * 60_000;
/** QEMU reaches the command in ~1.5 s here; a boot that has not after this hung (see `qemu`). */
const QEMU_START_MS = 30_000, QEMU_ATTEMPTS = 5;

/** The marker of the guest's result lines. */
export const IO_MARKER = "IOBENCH";

/** The transfers the guest script times, with the bytes each must move. */
export const IO_TRANSFERS = {
  "blk-read": { args: `if=/dev/vda of=/dev/null bs=1M count=${BLK_MIB}`, bytes: BLK_MIB * MIB },
  "blk-write": {
    args: `if=/dev/zero of=/dev/vda bs=1M count=${BLK_MIB} conv=fsync`,
    bytes: BLK_MIB * MIB,
  },
  "9p-read": { args: `if=${P9_FILE} of=/dev/null bs=1M`, bytes: P9_MIB * MIB },
} as const;
export type IoTransfer = keyof typeof IO_TRANSFERS;

/**
 * The guest script (busybox sh, run in the shared directory): each transfer after `sync` and a
 * dropped page cache, timed by the kernel's monotonic clock around the `dd`, reported on one
 * marker line with dd's status and its "N+M records out" summary line (Debian's busybox prints
 * no byte count). The clock is the `now at NS nsecs` line of /proc/timer_list (ns; read with the
 * shell's `read`, no fork): /proc/uptime has 10 ms steps, too coarse for QEMU's 9p read (~20 ms),
 * and busybox's `date +%N` prints a literal `%N`. The shell reads a file a byte at a time, so a
 * reading takes ~1.7 ms on QEMU; a first line gives two back-to-back readings' difference, which
 * is what a reading adds to an interval (the end of the first `read` after its sample and the
 * start of the second before it), and `parseIoLines` subtracts it.
 */
export function ioScript(): string {
  const io = `now() { { read -r _; read -r _; read -r _ _ ns _; } < /proc/timer_list; }
now; a=$ns; now; echo "${IO_MARKER}-CLOCK $((ns - a))"
io() {
  name=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches
  now; t0=$ns
  dd "$@" 2> /tmp/iobench.err
  rc=$?
  now; t1=$ns
  recs=-; { read -r _; read -r recs _; } < /tmp/iobench.err
  echo "${IO_MARKER} $name start=$t0 end=$t1 status=$rc records=$recs"
  [ "$rc" = 0 ] || cat /tmp/iobench.err >&2
}
`;
  return io + Object.entries(IO_TRANSFERS).map(([n, t]) => `io ${n} ${t.args}\n`).join("");
}

/** One transfer as the guest reported it. */
export interface IoTiming {
  /** Guest seconds of the `dd`, less a clock reading's cost. */
  seconds: number;
  bytes: number;
  /** What a clock reading cost (ns), taken off `seconds`. */
  readingNs: number;
}

/**
 * The transfers of `output` (a console or an exec's stdout): every marker line, each checked to
 * have ended with status 0, moved the whole MiB blocks IO_TRANSFERS says (`N+0` records of
 * bs=1M) and taken a positive time once the clock line's cost of a reading is taken off. Throws
 * naming the first line missing or wrong.
 */
export function parseIoLines(output: string): Map<IoTransfer, IoTiming> {
  const clock = new RegExp(`^${IO_MARKER}-CLOCK (\\d+)\\r?$`, "m").exec(output);
  if (clock === null) throw new Error(`no "${IO_MARKER}-CLOCK" line in the guest's output`);
  const readingNs = Number(clock[1]);
  const got = new Map<string, { start: number; end: number; status: number; records: string }>();
  const re = new RegExp(
    `^${IO_MARKER} (\\S+) start=(\\d+) end=(\\d+) status=(\\d+) records=(\\S+)\\r?$`,
    "gm",
  );
  for (const m of output.matchAll(re)) {
    got.set(m[1]!, {
      start: Number(m[2]),
      end: Number(m[3]),
      status: Number(m[4]),
      records: m[5]!,
    });
  }
  const out = new Map<IoTransfer, IoTiming>();
  for (const [name, t] of Object.entries(IO_TRANSFERS) as [IoTransfer, { bytes: number }][]) {
    const r = got.get(name);
    if (r === undefined) throw new Error(`no "${IO_MARKER} ${name}" line in the guest's output`);
    if (r.status !== 0) throw new Error(`${name}: dd ended with status ${r.status}`);
    if (r.records !== `${t.bytes / MIB}+0`) {
      throw new Error(`${name}: dd wrote ${r.records} records of 1 MiB, not ${t.bytes / MIB}+0`);
    }
    const seconds = (r.end - r.start - readingNs) / 1e9;
    if (!(seconds > 0)) {
      throw new Error(`${name}: ${seconds} s between the clock readings, less a reading's cost`);
    }
    out.set(name, { seconds, bytes: t.bytes, readingNs });
  }
  return out;
}

/** What `runToExit` saw. */
interface Run {
  seconds: number;
  code: number;
  stdout: string;
  stderr: string;
  /** `started.text` was not on stdout after `started.ms`: the process was killed. */
  stalled: boolean;
}

/**
 * Runs `cmd` to its exit, keeping its stdout and stderr; `seconds` is spawn to exit. Killed
 * after `timeoutMs` (then it throws with the end of its output), or when `started.text` is not on
 * its stdout after `started.ms` (then `stalled`).
 */
async function runToExit(
  cmd: string,
  args: string[],
  opts: { cwd: string; timeoutMs: number; what: string; started?: { text: string; ms: number } },
): Promise<Run> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const run: Run = { seconds: 0, code: -1, stdout: "", stderr: "", stalled: false };
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, opts.timeoutMs);
  const started = opts.started;
  const check = started && setTimeout(() => {
    if (!run.stdout.includes(started.text)) {
      run.stalled = true;
      kill();
    }
  }, started.ms);
  const pump = async (s: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
    const dec = new TextDecoder();
    for await (const chunk of s) run[into] += dec.decode(chunk, { stream: true });
  };
  const [, , status] = await Promise.all([
    pump(child.stdout, "stdout"),
    pump(child.stderr, "stderr"),
    child.status,
  ]);
  run.seconds = (performance.now() - t0) / 1000;
  run.code = status.code;
  clearTimeout(timer);
  clearTimeout(check);
  if (timedOut) {
    throw new Error(`${opts.what}: no exit after ${opts.timeoutMs / 1000} s (killed)${tail(run)}`);
  }
  return run;
}

/** The end of a run's output, for an error message. */
function tail(run: Run): string {
  const t = (s: string) => JSON.stringify(s.slice(-1200));
  return `\nstdout (end): ${t(run.stdout)}\nstderr (end): ${t(run.stderr)}`;
}

/** `deno run -A mod.ts --backend interp --exec CMD [flags]` with `cwd` shared (its cwd). */
function denovisor(cwd: string, cmd: string, flags: string[], what: string): Promise<Run> {
  return runToExit(Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    "--config",
    `${ROOT}deno.json`,
    `${ROOT}mod.ts`,
    "--backend",
    "interp",
    "--mem",
    MEM,
    ...flags,
    "--exec",
    cmd,
  ], { cwd, timeoutMs: VMM_TIMEOUT_MS, what });
}

/**
 * QEMU TCG `-M microvm` booting `--exec`'s kernel with the archive `--exec CMD [flags]` would
 * boot in `cwd`, its drives and 9p shares as virtio-mmio devices; checks the command's exit frame
 * (status 0) on the console.
 */
async function qemu(
  tmp: string,
  cwd: string,
  cmd: string,
  flags: string[],
  what: string,
): Promise<Run> {
  const config = parseCli([...flags, "--kernel", execKernel(GUESTS), "--initrd", "/dev/null"]);
  if (typeof config === "string") throw new Error(`unexpected ${config}`);
  const { initramfs, nonce } = await buildExecInitramfs(config, cmd, cwd, GUESTS);
  const initrd = `${tmp}/qemu-initramfs.cpio`;
  await Deno.writeFile(initrd, initramfs);
  const devices: string[] = [];
  const c = config as VmConfig & {
    drives?: { path: string }[];
    shares?: { path: string; tag: string; readOnly?: boolean }[];
  };
  (c.drives ?? []).forEach((d, i) => {
    devices.push("-drive", `id=d${i},file=${d.path},format=raw,if=none`);
    devices.push("-device", `virtio-blk-device,drive=d${i}`);
  });
  (c.shares ?? []).forEach((s, i) => {
    const ro = s.readOnly ? ",readonly=on" : "";
    devices.push("-fsdev", `local,id=f${i},path=${s.path},security_model=none${ro}`);
    devices.push("-device", `virtio-9p-device,fsdev=f${i},mount_tag=${s.tag}`);
  });
  const qemuArgs = [
    "-M",
    "microvm",
    "-accel",
    "tcg",
    "-cpu",
    "qemu64",
    "-m",
    MEM,
    "-nographic",
    "-no-reboot",
    "-monitor",
    "none",
    "-kernel",
    execKernel(GUESTS),
    "-initrd",
    initrd,
    "-append",
    EXEC_CMDLINE,
    ...devices,
  ];
  // Under host load, TCG's PIT reads can be too uneven for the kernel's TSC calibration, and
  // microvm has no HPET or PM timer to fall back on: the boot then hangs silently after "tsc:
  // Marking TSC unstable" (5 of 12 boots in a row here at load average 2-3; seen without
  // `quiet`).
  // A boot that has not reached the command's start frame in QEMU_START_MS is killed and retried
  // (the kernel command line stays the one denovisor's exec guest gets).
  let run: Run | undefined;
  for (let attempt = 1; attempt <= QEMU_ATTEMPTS; attempt++) {
    run = await runToExit("qemu-system-x86_64", qemuArgs, {
      cwd: tmp,
      timeoutMs: QEMU_TIMEOUT_MS,
      what,
      started: { text: `\x1e${nonce}S\n`, ms: QEMU_START_MS },
    });
    if (!run.stalled) break;
    console.error(
      `io: ${what}: no start frame after ${QEMU_START_MS / 1000} s (attempt ${attempt} of ` +
        `${QEMU_ATTEMPTS}: a boot hung in TSC calibration?); killed`,
    );
  }
  if (run!.stalled) {
    throw new Error(`${what}: ${QEMU_ATTEMPTS} boots never reached the command${tail(run!)}`);
  }
  if (!run!.stdout.includes(`\x1e${nonce}X0\n`)) {
    throw new Error(`${what}: no exit frame with status 0 on the console${tail(run!)}`);
  }
  return run!;
}

/** A 64 MiB raw image of random data (a 1 MiB random block repeated, each copy numbered). */
async function makeImage(path: string): Promise<void> {
  const block = new Uint8Array(MIB);
  for (let o = 0; o < MIB; o += 65536) crypto.getRandomValues(block.subarray(o, o + 65536));
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let i = 0; i < BLK_MIB; i++) {
    new DataView(block.buffer).setUint32(0, i, true);
    for (let o = 0; o < MIB;) o += await f.write(block.subarray(o));
  }
}

/** Throws unless the image's first 64 MiB are zero (the guest's write reached the file). */
async function checkZeroed(path: string, who: string): Promise<void> {
  const data = await Deno.readFile(path);
  const words = new Uint32Array(data.buffer, 0, (BLK_MIB * MIB) / 4);
  if (data.length < BLK_MIB * MIB || words.some((w) => w !== 0)) {
    throw new Error(`${who}: the guest's dd to /dev/vda did not leave 64 MiB of zeros in ${path}`);
  }
}

/** The MiB/s of one transfer. */
const rate = (t: IoTiming) => t.bytes / MIB / t.seconds;

/** Runs the group: four rows, see the module comment. */
export async function runIoGroup(): Promise<BenchRow[] | string> {
  const kernel = execKernel(GUESTS);
  for (const p of [kernel, `${GUESTS}busybox`, `${GUESTS}modules`, `${GUESTS}kernel-package`]) {
    try {
      Deno.statSync(p);
    } catch {
      return `${p} is missing: run \`deno task guests\` first`;
    }
  }
  if (!(await haveQemu())) return "qemu-system-x86_64 is not installed and could not be installed";
  const tmp = await Deno.makeTempDir({ prefix: "denovisor-iobench-" });
  try {
    // The shared directory (the exec cwd) holds only the 9p file; the images lie beside it.
    const share = `${tmp}/share`;
    await Deno.mkdir(share);
    const file = new Uint8Array(P9_MIB * MIB);
    for (let o = 0; o < file.length; o += 65536) {
      crypto.getRandomValues(file.subarray(o, o + 65536));
    }
    await Deno.writeFile(`${share}/${P9_FILE}`, file);
    const script = ioScript();
    const io: Record<"ours" | "qemu", Map<IoTransfer, IoTiming>> = {} as never;
    for (const side of ["qemu", "ours"] as const) {
      const img = `${tmp}/${side}.img`;
      await makeImage(img);
      const what = side === "ours" ? "denovisor --exec (I/O)" : "QEMU (I/O)";
      const flags = ["--drive", img];
      const run = side === "ours"
        ? await denovisor(share, script, flags, what)
        : await qemu(tmp, share, script, flags, what);
      if (side === "ours" && run.code !== 0) {
        throw new Error(`${what}: exit status ${run.code}${tail(run)}`);
      }
      try {
        io[side] = parseIoLines(run.stdout);
      } catch (err) {
        throw new Error(`${what}: ${(err as Error).message}${tail(run)}`);
      }
      await checkZeroed(img, what);
      await Deno.remove(img);
      const t = [...io[side]];
      console.error(
        `io: ${side}: ` + t.map(([n, t]) => `${n} ${t.seconds.toFixed(3)} s`).join(", ") +
          ` (a clock reading ${(t[0]![1].readingNs / 1e6).toFixed(2)} ms, taken off; ` +
          `boot to exit ${run.seconds.toFixed(1)} s)`,
      );
    }
    const q = await qemu(tmp, share, "true", [], "QEMU (--exec true)");
    const o = await denovisor(share, "true", [], "denovisor --exec true");
    if (o.code !== 0) throw new Error(`denovisor --exec true: exit status ${o.code}${tail(o)}`);
    const same = "same kernel, initramfs and guest dd";
    const row = (name: string, t: IoTransfer, baseline: string): BenchRow => {
      const value = rate(io.ours.get(t)!), baselineValue = rate(io.qemu.get(t)!);
      return { name, unit: "MiB/s", value, baseline, baselineValue, ratio: value / baselineValue };
    };
    return [
      row(
        "virtio-blk seq read (interp)",
        "blk-read",
        `QEMU TCG -M microvm virtio-blk-device, ${same} (64 MiB, bs=1M)`,
      ),
      row(
        "virtio-blk seq write (interp)",
        "blk-write",
        `QEMU TCG -M microvm virtio-blk-device, ${same} (64 MiB, bs=1M, conv=fsync)`,
      ),
      row(
        "9p read (interp)",
        "9p-read",
        `QEMU TCG -M microvm virtio-9p-device, ${same}, same mount (16 MiB file)`,
      ),
      {
        name: "--exec true (interp)",
        unit: "s",
        value: o.seconds,
        baseline: "QEMU TCG -M microvm, same kernel and --exec initramfs running true, to exit",
        baselineValue: q.seconds,
        ratio: o.seconds / q.seconds,
      },
    ];
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
