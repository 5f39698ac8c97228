/**
 * Debian's kernel drives the virtio-vsock device (`--exec --vsock cid=N,uds=PATH`, whose
 * initramfs loads vsock, vmw_vsock_virtio_transport_common and vmw_vsock_virtio_transport)
 * with Firecracker's host side on a unix socket. A tiny nasm program (tests/guests/
 * vsock_echo.asm, built here, given to the guest through a `--share`) plays the guest's end:
 *
 * - guest -> host: it connects to CID 2 port P, which reaches the test's listener at
 *   `<uds>_P`, sends a line and prints the answer;
 * - refused: a port nobody listens on at `<uds>_Q` is ECONNRESET (104) in the guest, and a
 *   host `CONNECT` to a guest port nobody listens on is closed (the VMM carries on);
 * - host -> guest: `CONNECT 1234` reaches its listener, 256 KiB of random data come back
 *   intact (far more than one credit window, so flow control is exercised both ways).
 *
 * On every backend that can boot Linux here (the nested kvm_pvm host cannot: interpreter only).
 */

import { assertEquals, assertIncludes, assertTrue as assert } from "./_assert.ts";
import { BACKENDS, ROOT, runCli } from "./_run.ts";
import { hostKvmFlavor } from "../core/select_backend.ts";

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux vsock tests skipped: run `deno task guests` first");
const nasm = (() => {
  try {
    return new Deno.Command("nasm", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();
if (!nasm) {
  console.warn("note: Linux vsock tests skipped: nasm is not installed (apt-get install nasm)");
}
const backends = BACKENDS.filter((b) => b !== "kvm" || hostKvmFlavor() !== "kvm_pvm");
if (backends.length < BACKENDS.length) {
  console.warn("note: Linux vsock test not run on KVM: this host's kvm_pvm cannot run Linux");
}

const enc = new TextEncoder(), dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(b.subarray(at, at + 65536));
  return b;
}

/** Reads up to a newline (or the end: then what came, with `eof`). */
async function readLine(conn: Deno.Conn): Promise<{ line: string; eof: boolean }> {
  const b = new Uint8Array(1);
  let line = "";
  for (;;) {
    const n = await conn.read(b).catch(() => null);
    if (n === null) return { line, eof: true };
    if (b[0] === 0x0a) return { line, eof: false };
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

/** Tries `CONNECT port` once: the connection once the guest accepted, or null if closed. */
async function connectGuest(uds: string, port: number): Promise<Deno.UnixConn | null> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: uds });
  } catch {
    return null; // the VMM is not listening yet
  }
  await conn.write(enc.encode(`CONNECT ${port}\n`));
  const { line, eof } = await readLine(conn);
  if (!eof && /^OK \d+$/.test(line)) return conn;
  conn.close();
  return null;
}

for (const backend of backends) {
  Deno.test({
    name:
      `[${backend}] Linux talks vsock with Firecracker's host side both ways, refusals included`,
    ignore: !present || !nasm,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "dnv-vsock-" });
      const share = `${dir}/share`, uds = `${dir}/v.sock`;
      await Deno.mkdir(share);
      const built = await new Deno.Command("nasm", {
        args: ["-f", "bin", "-o", `${share}/vsock_echo`, `${ROOT}tests/guests/vsock_echo.asm`],
        stderr: "piped",
      }).output();
      assert(built.success, `nasm: ${dec.decode(built.stderr)}`);
      await Deno.chmod(`${share}/vsock_echo`, 0o755);
      // Guest -> host: the guest's connection to port 5001 lands here.
      const listener = Deno.listen({ transport: "unix", path: `${uds}_5001` });
      const events: string[] = [];
      try {
        const vm = runCli([
          "--backend",
          backend,
          "--vsock",
          `cid=7,uds=${uds}`,
          "--share",
          `${share},tag=vs,ro`,
          "--exec-timeout",
          "240",
          "--exec",
          [
            "/mnt/vs/vsock_echo connect 5001 hello-host",
            "/mnt/vs/vsock_echo connect 5002 nobody-there; echo connect-status=$?",
            "/mnt/vs/vsock_echo listen 1234",
          ].join("; "),
        ], { timeoutMs: 280_000 });
        const host = (async () => {
          const c = await listener.accept();
          const { line } = await readLine(c);
          events.push(`guest said ${line}`);
          await c.write(enc.encode("hi-guest\n"));
          c.close();
          // The guest's driver is up: a guest port nobody listens on is refused (closed).
          const refused = await connectGuest(uds, 999);
          events.push(`CONNECT 999 ${refused === null ? "closed" : "accepted"}`);
          refused?.close();
          // Its listener may take a moment: retry until the guest accepts.
          let conn: Deno.UnixConn | null = null;
          for (let i = 0; i < 600 && conn === null; i++) {
            conn = await connectGuest(uds, 1234);
            if (conn === null) await sleep(100);
          }
          assert(conn !== null, "the guest never accepted CONNECT 1234");
          const data = randomBytes(256 * 1024);
          const [, echoed] = await Promise.all([
            (async () => {
              for (let at = 0; at < data.length; at += 16384) {
                await conn.write(data.subarray(at, at + 16384));
              }
            })(),
            readN(conn, data.length),
          ]);
          assertEquals(echoed.length, data.length, "all of it echoed");
          assert(echoed.every((b, i) => b === data[i]), "every byte echoed in order");
          events.push("echo intact");
          await conn.closeWrite(); // the guest's read sees the end of stream
          const rest = await readN(conn, 1);
          events.push(`then ${rest.length === 0 ? "closed" : "more data"}`);
          conn.close();
        })();
        const [r] = await Promise.all([vm, host]);
        assertEquals(r.status, 0, `${r.stdout}\n${r.stderr}`);
        assertEquals(events, [
          "guest said hello-host",
          "CONNECT 999 closed",
          "echo intact",
          "then closed",
        ]);
        assertIncludes(r.stdout, "hi-guest\n");
        assertIncludes(r.stdout, "connect: errno 104\nconnect-status=1\n");
        assertIncludes(r.stdout, `echoed ${256 * 1024}\n`);
      } finally {
        listener.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
