/**
 * The `boot` bench group: seconds from VMM start to the init marker for Debian's kernel with
 * the test initramfs (from `deno task guests`), on the interpreter, against QEMU TCG (`-M pc`)
 * booting the same kernel and initramfs to the same marker in the same run.
 */

import type { BenchRow } from "./report.ts";
import { TEST_MARKER } from "../tools/guests/initramfs.ts";
import { qemuPresent } from "./_qemu_flat.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DIR = `${ROOT}.cache/guests/`;
const KERNEL = `${DIR}bzImage`, INITRD = `${DIR}test-initramfs.cpio.gz`;
const CMDLINE = "console=ttyS0 panic=-1";
const TIMEOUT_MS = 20 * 60_000;

/** Runs `cmd` and returns the seconds until `marker` appears on its stdout, then kills it. */
export async function secondsToMarker(
  cmd: string,
  args: string[],
  marker: string,
): Promise<number> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
  const dec = new TextDecoder();
  let seen = "";
  let at = -1;
  for await (const chunk of child.stdout) {
    seen = (seen + dec.decode(chunk, { stream: true })).slice(-4096);
    if (seen.includes(marker)) {
      at = (performance.now() - t0) / 1000;
      break;
    }
  }
  clearTimeout(timer);
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  await child.status;
  if (at < 0) throw new Error(`${cmd} never printed ${marker}; last output:\n${seen.slice(-800)}`);
  return at;
}

/** True when qemu-system-x86_64 runs here, installing qemu-system-x86 with apt-get if missing. */
export async function haveQemu(): Promise<boolean> {
  if (await qemuPresent()) return true;
  console.error("bench: installing qemu-system-x86 for the QEMU baseline (apt-get)");
  await new Deno.Command("sh", {
    args: ["-c", "apt-get update -qq && apt-get install -y -qq qemu-system-x86 >/dev/null"],
  }).output().catch(() => undefined);
  return await qemuPresent();
}

/** Runs the group: one row, `linux boot`. */
export async function runBootGroup(): Promise<BenchRow[] | string> {
  for (const p of [KERNEL, INITRD]) {
    try {
      Deno.statSync(p);
    } catch {
      return `${p} is missing: run \`deno task guests\` first`;
    }
  }
  if (!(await haveQemu())) return "qemu-system-x86_64 is not installed and could not be installed";
  const ours = await secondsToMarker(Deno.execPath(), [
    "run",
    "-A",
    "mod.ts",
    "--backend",
    "interp",
    "--kernel",
    KERNEL,
    "--initrd",
    INITRD,
    "--mem",
    "256M",
    "--cmdline",
    CMDLINE,
  ], TEST_MARKER);
  const qemu = await secondsToMarker("qemu-system-x86_64", [
    "-M",
    "pc",
    "-accel",
    "tcg",
    "-cpu",
    "qemu64",
    "-m",
    "256M",
    "-nographic",
    "-no-reboot",
    "-monitor",
    "none",
    "-kernel",
    KERNEL,
    "-initrd",
    INITRD,
    "-append",
    CMDLINE,
  ], TEST_MARKER);
  return [{
    name: "linux boot",
    unit: "s",
    value: ours,
    baseline: "QEMU TCG -M pc, same kernel and initramfs, same marker",
    baselineValue: qemu,
    ratio: ours / qemu,
  }];
}
