/**
 * `--net` specifications: which backend a virtio-net device uses and its MAC address.
 *
 * - `switch=PATH[,mac=MAC][,id=ID]`: a port on the learning switch serving unix socket PATH
 *   (`deno run -A mod.ts switch PATH`), for VM-to-VM networks without root.
 * - `tap=NAME[,mac=MAC][,id=ID]`: the host's TAP interface NAME (`/dev/net/tun`; see tap.ts).
 *
 * A MAC address given is 6 hex bytes with ":" (or "-"); without one, each device gets a random
 * locally administered unicast address (02:xx:xx:xx:xx:xx), so two VMs never clash.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** One `--net`: a virtio-net device and the backend its frames go through. */
export interface NetSpec {
  kind: "switch" | "tap";
  /** The switch's unix socket, or the TAP interface's name. */
  path: string;
  /** The device's MAC address, "52:54:00:12:34:56". */
  mac: string;
  /** The device's id (named `virtio-net-ID`). */
  id: string;
  /**
   * The frame rings the main thread fills and drains (set by `startNetBackends` before the
   * config crosses to the vCPU's thread); absent, the device's link is down and it drops
   * what the guest sends.
   */
  rings?: { tx: SharedArrayBuffer; rx: SharedArrayBuffer };
}

/** Parses "52:54:00:12:34:56" into 6 bytes, or null. */
export function parseMac(text: string): Uint8Array | null {
  const m =
    /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i
      .exec(text);
  if (!m) return null;
  return Uint8Array.from(m.slice(1).map((h) => parseInt(h, 16)));
}

/** A MAC address as "aa:bb:cc:dd:ee:ff". */
export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/** A random locally administered unicast MAC address. */
export function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0]! & 0xfc) | 0x02;
  return formatMac(b);
}

const USE = "use switch=PATH or tap=NAME, then [,mac=MAC][,id=ID]";

/** `--net` values, in order (ids default to net0, net1, ... and must differ). */
export function parseNets(specs: string[]): NetSpec[] {
  const nets = specs.map((spec, i): NetSpec => {
    const [first, ...opts] = spec.split(",");
    const eq = first!.indexOf("=");
    const kind = eq < 0 ? first! : first!.slice(0, eq);
    const value = eq < 0 ? "" : first!.slice(eq + 1);
    if ((kind !== "switch" && kind !== "tap") || value === "") {
      throw new UsageError(`--net "${spec}": ${USE}`);
    }
    let mac: string | undefined, id = `net${i}`;
    for (const o of opts) {
      if (o.startsWith("mac=")) {
        const bytes = parseMac(o.slice(4));
        if (bytes === null) {
          throw new UsageError(
            `--net "${spec}": "${o.slice(4)}" is not a MAC address (aa:bb:cc:dd:ee:ff)`,
          );
        }
        if (bytes[0]! & 1) {
          throw new UsageError(`--net "${spec}": ${o.slice(4)} is a multicast address`);
        }
        mac = formatMac(bytes);
      } else if (o.startsWith("id=") && /^[A-Za-z0-9_.-]{1,20}$/.test(o.slice(3))) id = o.slice(3);
      else throw new UsageError(`--net "${spec}": unknown option "${o}" (${USE})`);
    }
    return { kind, path: value, mac: mac ?? randomMac(), id };
  });
  const ids = nets.map((n) => n.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup !== undefined) throw new UsageError(`Two --net options have id=${dup}`);
  return nets;
}

/**
 * The options a `--net` device is attached with beyond its MAC: its id and its backend, so a
 * snapshot records them (as Firecracker stores the TAP name) and a restore reconnects it.
 */
export function netDeviceOptions(n: NetSpec): Record<string, string> {
  return { mac: n.mac, id: n.id, backend: n.kind, endpoint: n.path };
}

/**
 * The `NetSpec` a net device's recorded options describe (no rings yet), or null for a device
 * attached without a backend (a `--device devices/virtio/net.ts` plugin, an older snapshot).
 */
export function netSpecOfOptions(options: Record<string, string>): NetSpec | null {
  const { backend, endpoint, id, mac } = options;
  if ((backend !== "switch" && backend !== "tap") || !endpoint || !id || !mac) return null;
  return { kind: backend, path: endpoint, id, mac };
}

/** The network cards of a saved machine's device list, to reconnect before its restore. */
export function savedNets(
  devices: readonly {
    source?: { kind: string; specifier: string; options: Record<string, string> };
  }[],
): NetSpec[] {
  return devices.flatMap((d) => {
    const src = d.source;
    if (src?.kind !== "builtin" || !src.specifier.endsWith("/virtio/net.ts")) return [];
    const n = netSpecOfOptions(src.options);
    return n === null ? [] : [n];
  });
}
