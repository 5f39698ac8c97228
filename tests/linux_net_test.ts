/**
 * Two Linux VMs on one host exchange packets through the VMM's unix-socket switch, without
 * root: each boots `--exec` with `--net switch=PATH,mac=...` (its initramfs loads virtio_net),
 * gives eth0 a static address and pings the other. And one VM on `--net tap=NAME` in a network
 * namespace (root and iproute2, else skipped) pings the host's end and fetches a page from a
 * server there. On the interpreter (this test's nested KVM host, kvm_pvm, cannot run Linux;
 * elsewhere the same path runs on KVM).
 */

import { assertEquals, assertIncludes } from "./_assert.ts";
import { ROOT, runCli } from "./_run.ts";
import { EthernetSwitch, listenSwitch } from "../core/net/switch.ts";
import { netnsUnusable, sh } from "./_netns.ts";

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux net test skipped: run `deno task guests` first");

/** The guest's command: address eth0, wait for the peer, ping it 3 times, stay up a while. */
function pingCmd(me: number, peer: number): string {
  return [
    "ip link set eth0 up",
    `ip addr add 10.0.0.${me}/24 dev eth0`,
    // The peer may still be booting: wait for its first answer (at most about a minute).
    `for i in $(seq 60); do ping -c 1 -W 1 10.0.0.${peer} >/dev/null 2>&1 && break; done`,
    `ping -c 3 10.0.0.${peer}`,
    "s=$?",
    // Stay up so the peer's own pings are answered.
    "sleep 15",
    "exit $s",
  ].join("; ");
}

Deno.test({
  name: "[interp] two Linux VMs on --net switch=PATH ping each other",
  ignore: !present,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dnv-net-" });
    const path = `${dir}/switch.sock`;
    const sw = new EthernetSwitch(await listenSwitch(path));
    const serving = sw.serve();
    try {
      const vm = (me: number, peer: number) =>
        runCli([
          "--backend",
          "interp",
          "--net",
          `switch=${path},mac=02:00:00:00:00:0${me}`,
          "--exec-timeout",
          "150",
          "--exec",
          pingCmd(me, peer),
        ], { timeoutMs: 180_000 });
      const [a, b] = await Promise.all([vm(1, 2), vm(2, 1)]);
      for (const [r, peer] of [[a, 2], [b, 1]] as const) {
        assertEquals(r.status, 0, `VM pinging 10.0.0.${peer}: ${r.stdout}\n${r.stderr}`);
        assertIncludes(r.stdout, "3 packets transmitted, 3 packets received, 0% packet loss");
        assertIncludes(r.stdout, `64 bytes from 10.0.0.${peer}`);
      }
    } finally {
      sw.close();
      await serving;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const netnsWhy = await netnsUnusable();

Deno.test({
  name: "[interp] Linux on --net tap=NAME in a network namespace pings the host and fetches a page",
  ignore: !present || netnsWhy !== null,
  async fn() {
    const tag = `${Deno.pid % 100000}`;
    const ns = `dvtap${tag}`, dev = `dvtap${tag}`, net = `10.232.${Deno.pid % 250}`;
    const dir = await Deno.makeTempDir({ prefix: "dnv-tap-" });
    let httpd: Deno.ChildProcess | null = null;
    await sh("ip", "netns", "add", ns);
    try {
      // A persistent TAP made beforehand, as a user without root would be given one.
      await sh("ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tap");
      await sh("ip", "-n", ns, "addr", "add", `${net}.1/24`, "dev", dev);
      await sh("ip", "-n", ns, "link", "set", dev, "up");
      await Deno.writeTextFile(`${dir}/index.html`, "hello-from-the-host\n");
      httpd = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          `${DIR}busybox`,
          "httpd",
          "-f",
          "-p",
          `${net}.1:8080`,
          "-h",
          dir,
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const out = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          Deno.execPath(),
          "run",
          "-A",
          "--quiet",
          "mod.ts",
          "--backend",
          "interp",
          "--net",
          `tap=${dev},mac=02:00:00:00:00:11`,
          "--exec-timeout",
          "150",
          "--exec",
          `ip link set eth0 up && ip addr add ${net}.2/24 dev eth0 && ping -c 3 ${net}.1 && ` +
          `wget -q -O - http://${net}.1:8080/index.html`,
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const dec = new TextDecoder();
      const stdout = dec.decode(out.stdout);
      assertEquals(out.code, 0, `${stdout}\n${dec.decode(out.stderr)}`);
      assertIncludes(stdout, "3 packets transmitted, 3 packets received, 0% packet loss");
      assertIncludes(stdout, "hello-from-the-host");
    } finally {
      httpd?.kill();
      await httpd?.status;
      await sh("ip", "netns", "del", ns).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
