/**
 * Two "hosts" on this machine for tests of what crosses a network: two network namespaces
 * joined by a veth pair, 10.231.N.1 in the first and 10.231.N.2 in the second. Needs root and
 * iproute2; `netnsUnusable()` says why not, for an explicit skip.
 */

/** Runs `cmd args...`; throws with its stderr when it fails. */
export async function sh(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Why `ip netns` cannot be used here, or null. */
export async function netnsUnusable(): Promise<string | null> {
  if (Deno.uid() !== 0) return "not root";
  const probe = `dvprobe${Deno.pid}`;
  try {
    await sh("ip", "netns", "add", probe);
  } catch (err) {
    return `ip netns add failed (${(err as Error).message})`;
  }
  await sh("ip", "netns", "del", probe).catch(() => {});
  return null;
}

/** Two namespaces and the veth pair between them. */
export interface TwoHosts {
  /** Namespace names, and the address of each end. */
  a: string;
  b: string;
  addrA: string;
  addrB: string;
  /** The veth ends (in a and in b). */
  va: string;
  vb: string;
  /** `ip netns exec NS` prefixes for a command in each. */
  inA: string[];
  inB: string[];
  /** Takes the link down (a cable cut) from a's side. */
  cut(): Promise<void>;
  /** Deletes both namespaces (and so the pair). */
  remove(): Promise<void>;
}

/** Creates two hosts; on failure, removes what it made and throws. */
export async function twoHosts(): Promise<TwoHosts> {
  const tag = `${Deno.pid % 100000}${Math.floor(Math.random() * 100)}`;
  const [a, b] = [`dvnsA${tag}`, `dvnsB${tag}`];
  const [va, vb] = [`dvA${tag}`, `dvB${tag}`]; // interface names: at most 15 characters
  const net = `10.231.${Math.floor(Math.random() * 250)}`;
  const made: string[] = [];
  const remove = async () => {
    for (const ns of made) await sh("ip", "netns", "del", ns).catch(() => {});
    await sh("ip", "link", "del", va).catch(() => {}); // only if it never moved
  };
  try {
    for (const ns of [a, b]) {
      await sh("ip", "netns", "add", ns);
      made.push(ns);
    }
    await sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb);
    await sh("ip", "link", "set", va, "netns", a);
    await sh("ip", "link", "set", vb, "netns", b);
    await sh("ip", "-n", a, "addr", "add", `${net}.1/24`, "dev", va);
    await sh("ip", "-n", b, "addr", "add", `${net}.2/24`, "dev", vb);
    for (const [ns, dev] of [[a, va], [b, vb]] as const) {
      await sh("ip", "-n", ns, "link", "set", "lo", "up");
      await sh("ip", "-n", ns, "link", "set", dev, "up");
    }
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    a,
    b,
    addrA: `${net}.1`,
    addrB: `${net}.2`,
    va,
    vb,
    inA: ["ip", "netns", "exec", a],
    inB: ["ip", "netns", "exec", b],
    cut: () => sh("ip", "-n", a, "link", "set", va, "down"),
    remove,
  };
}
