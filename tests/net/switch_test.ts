import { assertEquals, assertTrue as assert } from "../_assert.ts";
import {
  encodeFrame,
  EthernetSwitch,
  listenSwitch,
  readFrames,
  writeAll,
} from "../../core/net/switch.ts";
import { startNetBackends } from "../../core/net/host.ts";
import { FrameRing } from "../../core/net/frame_ring.ts";
import { parseNets } from "../../core/net/spec.ts";
import { ROOT, runCli } from "../_run.ts";

const BCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const mac = (n: number) => [0x02, 0, 0, 0, 0, n];

function eth(dst: number[], src: number[], payload: string): Uint8Array {
  const p = new TextEncoder().encode(payload);
  return Uint8Array.from([...dst, ...src, 0x08, 0x00, ...p]);
}
const payloadOf = (f: Uint8Array) => new TextDecoder().decode(f.subarray(14));

/** A switch client: what it received so far. */
async function client(path: string) {
  const conn = await Deno.connect({ transport: "unix", path });
  const got: string[] = [];
  const done = (async () => {
    try {
      for await (const f of readFrames(conn)) got.push(payloadOf(f));
    } catch {
      // closed
    }
  })();
  return {
    got,
    send: (f: Uint8Array) => writeAll(conn, encodeFrame(f)),
    close: async () => {
      conn.close();
      await done;
    },
  };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert(cond(), what);
}
const settle = () => new Promise((r) => setTimeout(r, 50));

async function withSwitch(
  fn: (path: string, sw: EthernetSwitch) => Promise<void>,
  log: (m: string) => void = () => {},
) {
  const dir = await Deno.makeTempDir({ prefix: "dnv-switch-" });
  const path = `${dir}/sw.sock`;
  const sw = new EthernetSwitch(await listenSwitch(path), log);
  const serving = sw.serve();
  try {
    await fn(path, sw);
  } finally {
    sw.close();
    await serving;
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("switch: broadcasts flood, then learned unicast goes to one port only", async () => {
  await withSwitch(async (path, sw) => {
    const a = await client(path), b = await client(path), c = await client(path);
    await until(() => sw.ports.size === 3, "three ports");
    await a.send(eth(BCAST, mac(1), "hello all"));
    await until(() => b.got.length === 1 && c.got.length === 1, "the broadcast reached b and c");
    assertEquals(a.got, []);
    // b answers a (learned): only a gets it.
    await b.send(eth(mac(1), mac(2), "to a"));
    await until(() => a.got.length === 1, "a got b's answer");
    // a to b (learned from b's frame): only b.
    await a.send(eth(mac(2), mac(1), "to b"));
    await until(() => b.got.length === 2, "b got a's frame");
    // To an address nobody has shown: flooded.
    await a.send(eth(mac(9), mac(1), "unknown"));
    await until(() => b.got.length === 3 && c.got.length === 2, "unknown destination flooded");
    await settle();
    assertEquals(a.got, ["to a"]);
    assertEquals(b.got, ["hello all", "to b", "unknown"]);
    assertEquals(c.got, ["hello all", "unknown"]);
    assertEquals(sw.table.size, 2);
    // A port that leaves forgets its addresses.
    await b.close();
    await until(() => sw.ports.size === 2 && sw.table.size === 1, "b forgotten");
    await a.close();
    await c.close();
  });
});

Deno.test("switch: a VMM's net backend moves frames between its rings and the switch", async () => {
  await withSwitch(async (path, sw) => {
    const peer = await client(path);
    const [spec] = parseNets([`switch=${path},mac=02:00:00:00:00:07`]);
    const backends = await startNetBackends([spec!]);
    try {
      await until(() => sw.ports.size === 2, "the VMM joined");
      // What the device puts in the tx ring reaches the peer.
      new FrameRing(spec!.rings!.tx).push(eth(BCAST, mac(7), "from the guest"));
      await until(() => peer.got.length === 1, "the peer got the guest's frame");
      assertEquals(peer.got, ["from the guest"]);
      // What the peer sends lands in the rx ring.
      await peer.send(eth(mac(7), mac(3), "to the guest"));
      const rx = new FrameRing(spec!.rings!.rx);
      await until(() => rx.hasData(), "a frame in the rx ring");
      assertEquals(payloadOf(rx.pop()!), "to the guest");
    } finally {
      backends.close();
      await peer.close();
    }
  });
});

Deno.test("switch: joining a socket nobody serves says how to start a switch", async () => {
  const [spec] = parseNets(["switch=/nonexistent/dnv.sock"]);
  let msg = "";
  try {
    await startNetBackends([spec!]);
  } catch (err) {
    msg = (err as Error).message;
  }
  assert(msg.includes("mod.ts switch /nonexistent/dnv.sock"), msg);
});

Deno.test("switch: the CLI and the API mode join the switch with --net; a missing one is an error", async () => {
  const joined: string[] = [];
  await withSwitch(async (path) => {
    // The demo guest boots and ends; its card was on the switch meanwhile.
    const plain = await runCli(["--net", `switch=${path}`], { timeoutMs: 60_000 });
    assertEquals(plain.status, 0, plain.stderr);
    assert(joined.includes("port 0 connected"), joined.join("; "));
    // The API mode joins at start, before any boot.
    const dir = await Deno.makeTempDir({ prefix: "dnv-api-" });
    const api = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        "mod.ts",
        "--api-sock",
        `${dir}/api.sock`,
        "--net",
        `switch=${path}`,
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await until(() => joined.includes("port 1 connected"), "the API-mode VMM joined");
    } finally {
      api.kill("SIGKILL");
      await api.status;
      await Deno.remove(dir, { recursive: true });
    }
    const missing = await runCli(["--net", `switch=${path}.nothere`]);
    assertEquals(missing.status === 0, false);
    assert(missing.stderr.includes("cannot join the switch"), missing.stderr);
  }, (m) => joined.push(m));
});
