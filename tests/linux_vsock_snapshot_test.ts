/**
 * A snapshot of Linux with an open vsock connection, as Firecracker does it: the VM (API mode,
 * `--vsock`) echoes through a host `CONNECT 1234`; it is paused, snapshotted and its VMM ends,
 * which closes the host side. A second VMM loads the snapshot (`PUT /snapshot/load`), listens on
 * the snapshot's uds path again, and the device sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: the
 * guest's old connection ends (its echo loop reports what it echoed and listens again), and a
 * new `CONNECT 1234` echoes. Without the reset the guest would keep waiting on the dead
 * connection and never listen again. Interpreter only where KVM cannot run Linux.
 */

import { assertEquals, assertTrue as assert } from "./_assert.ts";
import { BACKENDS, ROOT } from "./_run.ts";
import { VmProcess } from "./api/_api.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";
import { loadModuleSet, readInitramfsModules } from "../core/boot/modules.ts";
import { execInitramfs } from "../core/exec/initramfs.ts";
import { EXEC_CMDLINE } from "../core/exec/main.ts";

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux vsock snapshot test skipped: run `deno task guests`");
const nasm = (() => {
  try {
    return new Deno.Command("nasm", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();
if (!nasm) console.warn("note: Linux vsock snapshot test skipped: nasm is not installed");
const backend = BACKENDS.includes("kvm") && hostKvmFlavor() !== "kvm_pvm" ? "kvm" : "interp";

const enc = new TextEncoder(), dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readLine(conn: Deno.Conn): Promise<string | null> {
  const b = new Uint8Array(1);
  let line = "";
  for (;;) {
    const n = await conn.read(b).catch(() => null);
    if (n === null) return null;
    if (b[0] === 0x0a) return line;
    line += String.fromCharCode(b[0]!);
  }
}

async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) break;
    got += r;
  }
  return out.subarray(0, got);
}

/** `CONNECT 1234` until the guest accepts (its listener may not be up yet). */
async function connectGuest(uds: string, tries: number): Promise<Deno.UnixConn> {
  for (let i = 0; i < tries; i++) {
    try {
      const conn = await Deno.connect({ transport: "unix", path: uds });
      await conn.write(enc.encode("CONNECT 1234\n"));
      const line = await readLine(conn);
      if (line !== null && /^OK \d+$/.test(line)) return conn;
      conn.close();
    } catch {
      // The VMM is not listening yet.
    }
    await sleep(200);
  }
  throw new Error(`the guest never accepted CONNECT 1234 on ${uds}`);
}

async function echo(conn: Deno.Conn, n: number, seed: number): Promise<void> {
  const data = new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
  const [, back] = await Promise.all([conn.write(data), readN(conn, n)]);
  assertEquals(back, data);
}

Deno.test({
  name: `[${backend}] Linux's vsock connections are reset by a snapshot restore, new ones work`,
  ignore: !present || !nasm,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dnv-vsnap-" });
    const share = `${dir}/share`, uds = `${dir}/v.sock`;
    let first: VmProcess | null = null, second: VmProcess | null = null;
    try {
      await Deno.mkdir(share);
      const built = await new Deno.Command("nasm", {
        args: ["-f", "bin", "-o", `${share}/vsock_echo`, `${ROOT}tests/guests/vsock_echo.asm`],
        stderr: "piped",
      }).output();
      assert(built.success, `nasm: ${dec.decode(built.stderr)}`);
      await Deno.chmod(`${share}/vsock_echo`, 0o755);
      const release = Deno.readTextFileSync(`${DIR}kernel-package`).trim()
        .replace(/^linux-image-/, "");
      const set = await loadModuleSet(`${DIR}modules`, release);
      const modules = await readInitramfsModules(set, [
        "virtio_mmio",
        "9p",
        "9pnet_virtio",
        "vsock",
        "vmw_vsock_virtio_transport_common",
        "vmw_vsock_virtio_transport",
      ]);
      const initrd = `${dir}/initrd.cpio`;
      await Deno.writeFile(
        initrd,
        execInitramfs({
          busybox: await Deno.readFile(`${DIR}busybox`),
          cmd: "while true; do /mnt/vs/vsock_echo listen 1234; done",
          nonce: "VSNAP",
          modules,
          mounts: [{ tag: "vs", dir: "/mnt/vs", readOnly: true }],
        }),
      );
      first = new VmProcess(`${dir}/api1.sock`, [
        "--backend",
        backend,
        "--kernel",
        `${DIR}vmlinux`,
        "--format",
        "linux",
        "--initrd",
        initrd,
        "--cmdline",
        EXEC_CMDLINE,
        "--mem",
        "256M",
        "--vsock",
        `cid=7,uds=${uds}`,
        "--share",
        `${share},tag=vs,ro`,
      ], { timeoutMs: 300_000 });
      await first.ready();
      const old = await connectGuest(uds, 1000);
      await echo(old, 1000, 1);
      // Paused with the connection open, snapshotted, and the first VMM ends.
      assertEquals((await first.call("PATCH", "/vm", { state: "Paused" })).status, 204);
      const statePath = `${dir}/vm.state`, memPath = `${dir}/vm.mem`;
      const snap = await first.call("PUT", "/snapshot/create", {
        snapshot_path: statePath,
        mem_file_path: memPath,
      });
      assertEquals(snap.status, 204, snap.body);
      first.child.kill("SIGTERM");
      assertEquals(await first.exited, 143, first.stderr);
      assertEquals(await readN(old, 1), new Uint8Array(0), "the host side closed with its VMM");
      old.close();

      second = new VmProcess(`${dir}/api2.sock`, ["--backend", backend], { timeoutMs: 300_000 });
      await second.ready();
      const load = await second.call("PUT", "/snapshot/load", {
        snapshot_path: statePath,
        mem_backend: { backend_type: "File", backend_path: memPath },
        resume_vm: true,
      });
      assertEquals(load.status, 204, load.body);
      // The guest's old connection was reset: its loop reports the 1000 bytes it echoed and
      // listens again (the old listener, which goes away with it, must not take the new one).
      await second.output("echoed 1000\n", 60_000);
      await second.output("listening\n", 60_000, second.stdout.indexOf("echoed 1000\n"));
      const fresh = await connectGuest(uds, 300);
      await echo(fresh, 5000, 2);
      fresh.close();
    } finally {
      first?.kill();
      second?.kill();
      await first?.exited;
      await second?.exited;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
