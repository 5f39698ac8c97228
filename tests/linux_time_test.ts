/**
 * Timekeeping of Debian's kernel on the interpreter: Linux finds the local APIC and kvm-clock
 * on its own, and `sleep 1` in the guest takes about a second of host time (measured on the host
 * between two marker lines the guest prints around it, and on the guest's own clock).
 */

import { assertEquals, assertIncludes, assertTrue } from "./_assert.ts";
import { ROOT } from "./_run.ts";
import { busyboxInitramfs, DEFAULT_APPLETS } from "../tools/guests/initramfs.ts";

const DIR = `${ROOT}.cache/guests/`;
const KERNEL = `${DIR}bzImage`, BUSYBOX = `${DIR}busybox`;
const present = [KERNEL, BUSYBOX].every((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});
if (!present) {
  console.warn("note: Linux time tests skipped: run `deno task guests` to fetch the kernel");
}

const BOOT_TIMEOUT_MS = 15 * 60_000;
const BEFORE = "DENOVISOR-SLEEP-BEFORE", AFTER = "DENOVISOR-SLEEP-AFTER";

/** Prints what the test checks; the uptime pair is the guest's own measure of `sleep 1`. */
const TIME_INIT = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "CLOCKSOURCE=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
if dmesg | grep -q "No local APIC present"; then echo "LAPIC=absent"; else echo "LAPIC=present"; fi
read up1 idle1 < /proc/uptime
echo "${BEFORE}"
sleep 1
echo "${AFTER}"
read up2 idle2 < /proc/uptime
echo "UPTIME $up1 $up2"
dmesg | grep "tsc: Detected"
poweroff -f
`;

/** Runs the CLI, noting the host time at which each line of guest output arrives. */
async function bootWithTimestamps(
  initrd: string,
): Promise<{ status: number; stdout: string; stderr: string; at: Map<string, number> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      "mod.ts",
      "--backend",
      "interp",
      "--kernel",
      KERNEL,
      "--initrd",
      initrd,
      "--mem",
      "256M",
      "--cmdline",
      "console=ttyS0 panic=-1",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), BOOT_TIMEOUT_MS);
  const stderrText = new Response(child.stderr).text();
  const at = new Map<string, number>();
  const dec = new TextDecoder();
  let stdout = "", line = "";
  for await (const chunk of child.stdout) {
    const now = performance.now();
    const text = dec.decode(chunk, { stream: true });
    stdout += text;
    for (const ch of text) {
      if (ch !== "\n") {
        line += ch;
        continue;
      }
      const key = line.trim();
      if (!at.has(key)) at.set(key, now);
      line = "";
    }
  }
  const { code } = await child.status;
  clearTimeout(timer);
  return { status: code, stdout, stderr: await stderrText, at };
}

Deno.test({
  name: "[interp] Linux uses the local APIC and kvm-clock, and sleep 1 takes about a second",
  ignore: !present,
  async fn() {
    const busybox = await Deno.readFile(BUSYBOX);
    const image = await busyboxInitramfs(busybox, {
      init: TIME_INIT,
      applets: [...DEFAULT_APPLETS, "bin/date"],
    });
    const path = await Deno.makeTempFile({ suffix: ".cpio.gz" });
    try {
      await Deno.writeFile(path, image);
      const r = await bootWithTimestamps(path);
      const tail = r.stdout.slice(-3000);
      assertIncludes(r.stdout, "CLOCKSOURCE=kvm-clock", tail);
      assertIncludes(r.stdout, "clocksource: Switched to clocksource kvm-clock");
      assertIncludes(r.stdout, "LAPIC=present", tail);
      assertIncludes(r.stdout, "tsc: Detected 1000.000 MHz", tail);
      const before = r.at.get(BEFORE), after = r.at.get(AFTER);
      assertTrue(before !== undefined && after !== undefined, `no sleep markers:\n${tail}`);
      const hostSeconds = (after - before) / 1000;
      console.log(`sleep 1 took ${hostSeconds.toFixed(3)} s of host time`);
      assertTrue(
        hostSeconds >= 0.7 && hostSeconds <= 2.5,
        `sleep 1 took ${hostSeconds} s of host time`,
      );
      const m = r.stdout.match(/UPTIME ([\d.]+) ([\d.]+)/);
      assertTrue(m !== null, `no uptime line:\n${tail}`);
      const guestSeconds = Number(m[2]) - Number(m[1]);
      assertTrue(
        guestSeconds >= 0.9 && guestSeconds <= 2.5,
        `sleep 1 took ${guestSeconds} s of guest time`,
      );
      assertEquals(r.status, 0, r.stderr);
    } finally {
      await Deno.remove(path);
    }
  },
});
