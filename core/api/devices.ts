/**
 * The API's virtio device endpoints as configuration: Firecracker's `Drive` (PUT and PATCH
 * `/drives/{drive_id}`) and `NetworkInterface` (PUT `/network-interfaces/{iface_id}`) bodies
 * checked and turned into the `DriveSpec`s and `NetSpec`s `--drive` and `--net` make, and back
 * into the entries `GET /vm/config` lists. The same functions read a `--config-file`'s
 * `drives` and `network-interfaces`.
 *
 * @module
 */

import type { DriveSpec, VmConfig } from "../vm.ts";
import { formatMac, type NetSpec, parseMac, randomMac } from "../net/spec.ts";
import { ApiError, bool, int, type Json, onlyFields, str } from "./fields.ts";

/** A drive or interface id: what `--drive id=` and `--net id=` take (GET_ID holds 20 bytes). */
const DEVICE_ID = /^[A-Za-z0-9_.-]{1,20}$/;

const DRIVE_FIELDS = [
  "drive_id",
  "path_on_host",
  "is_root_device",
  "is_read_only",
  "partuuid",
  "cache_type",
  "io_engine",
  "rate_limiter",
  "socket",
] as const;

/** The path's id, checked against the body's (Firecracker refuses a mismatch too). */
function idOf(obj: Json, field: string, pathId: string | undefined, what: string): string {
  const id = str(obj, field, what, true)!;
  if (pathId !== undefined && id !== pathId) {
    throw new ApiError(
      `${what}: ${field} "${id}" in the body differs from "${pathId}" in the path`,
    );
  }
  if (!DEVICE_ID.test(id)) {
    throw new ApiError(
      `${what}: ${field} "${id}" must be 1 to 20 letters, digits, "-", "_" or "."`,
    );
  }
  return id;
}

/** Refuses a rate limiter (denovisor has none), accepting null or an empty object. */
function noRateLimiter(obj: Json, field: string, what: string): void {
  const v = obj[field];
  if (v === undefined || v === null) return;
  if (typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0) return;
  throw new ApiError(
    `${what}: ${field} is not supported (denovisor has no rate limiting); leave it out`,
  );
}

/**
 * Checks that the image `path` can be opened as the drive will open it (read, and write unless
 * `readOnly`), so a bad path is a 400 now rather than a failed boot.
 */
export function checkImage(path: string, readOnly: boolean, what: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new ApiError(`${what}: path_on_host "${path}" does not exist`);
  }
  if (!info.isFile && !info.isBlockDevice) {
    throw new ApiError(`${what}: path_on_host "${path}" is not a file or block device`);
  }
  try {
    Deno.openSync(path, { read: true, write: !readOnly }).close();
  } catch (err) {
    const hint = readOnly ? "" : " for writing (set is_read_only to use it read-only)";
    throw new ApiError(
      `${what}: cannot open path_on_host "${path}"${hint}: ${(err as Error).message}`,
    );
  }
}

/**
 * Applies a Firecracker `Drive` to `config.drives` (a drive of the same id is replaced): the
 * root device goes first (the guest's vda) and there is at most one.
 */
export function applyDrive(
  config: VmConfig,
  obj: Json,
  pathId?: string,
  what = "drives",
): void {
  onlyFields(obj, DRIVE_FIELDS, what);
  const id = idOf(obj, "drive_id", pathId, what);
  if (obj.socket !== undefined && obj.socket !== null) {
    throw new ApiError(
      `${what}: socket (vhost-user-blk) is not supported; give path_on_host, a raw image`,
    );
  }
  const path = str(obj, "path_on_host", what, true)!;
  const root = bool(obj, "is_root_device", what);
  if (root === undefined) {
    throw new ApiError(`${what}: missing field "is_root_device" (true or false)`);
  }
  const readOnly = bool(obj, "is_read_only", what) ?? false;
  const partuuid = str(obj, "partuuid", what, false);
  if (partuuid !== undefined) {
    if (!root) {
      throw new ApiError(`${what}: partuuid goes with is_root_device true; leave it out`);
    }
    if (!/^[0-9A-Za-z-]{1,64}$/.test(partuuid)) {
      throw new ApiError(`${what}: partuuid "${partuuid}" is not a partition UUID`);
    }
  }
  const cacheType = str(obj, "cache_type", what, false) ?? "Unsafe";
  if (cacheType !== "Unsafe" && cacheType !== "Writeback") {
    throw new ApiError(`${what}: cache_type "${cacheType}" must be "Unsafe" or "Writeback"`);
  }
  const engine = str(obj, "io_engine", what, false) ?? "Sync";
  if (engine !== "Sync") {
    throw new ApiError(
      `${what}: io_engine "${engine}" is not supported; use "Sync" (denovisor's block I/O is ` +
        `synchronous)`,
    );
  }
  noRateLimiter(obj, "rate_limiter", what);
  const others = (config.drives ?? []).filter((d) => d.id !== id);
  const otherRoot = others.find((d) => d.root === true);
  if (root && otherRoot !== undefined) {
    throw new ApiError(
      `${what}: drive "${otherRoot.id}" is already the root device; set its is_root_device ` +
        `false first`,
    );
  }
  checkImage(path, readOnly, what);
  const drive: DriveSpec = {
    path,
    readOnly,
    id,
    cache: cacheType === "Unsafe" ? "unsafe" : "writeback",
    ...(root ? { root: true } : {}),
    ...(partuuid === undefined ? {} : { partuuid }),
  };
  const list = [...(config.drives ?? [])];
  const at = list.findIndex((d) => d.id === id);
  if (at >= 0) list.splice(at, 1);
  if (root) list.unshift(drive);
  else if (at >= 0) list.splice(at, 0, drive);
  else list.push(drive);
  config.drives = list;
}

/**
 * Reads a `PartialDrive` (PATCH `/drives/{drive_id}`) for a drive of `config`: the new image
 * path, or null when the body changes nothing (only a null rate limiter).
 */
export function driveUpdate(config: VmConfig, obj: Json, pathId: string, what = "drives"): {
  drive: DriveSpec;
  path: string | null;
} {
  onlyFields(obj, ["drive_id", "path_on_host", "rate_limiter"], what);
  const id = idOf(obj, "drive_id", pathId, what);
  const drive = (config.drives ?? []).find((d) => d.id === id);
  if (drive === undefined) {
    const ids = (config.drives ?? []).map((d) => d.id);
    throw new ApiError(
      `${what}: no drive "${id}"; the VM has ${
        ids.length === 0 ? "none" : ids.map((i) => `"${i}"`).join(", ")
      }`,
    );
  }
  noRateLimiter(obj, "rate_limiter", what);
  const path = str(obj, "path_on_host", what, false) ?? null;
  if (path !== null) checkImage(path, drive.readOnly, what);
  return { drive, path };
}

/** A drive as Firecracker's `GET /vm/config` lists it. */
export function driveJson(d: DriveSpec): Json {
  return {
    drive_id: d.id,
    path_on_host: d.path,
    is_root_device: d.root === true,
    partuuid: d.partuuid ?? null,
    is_read_only: d.readOnly,
    cache_type: d.cache === "unsafe" ? "Unsafe" : "Writeback",
    io_engine: "Sync",
    rate_limiter: null,
    socket: null,
  };
}

const NET_FIELDS = [
  "iface_id",
  "host_dev_name",
  "guest_mac",
  "mtu",
  "rx_rate_limiter",
  "tx_rate_limiter",
  "switch_path",
] as const;

/** Linux's interface names: at most 15 bytes (IFNAMSIZ - 1), no "/" or blanks. */
const IFNAME = /^[^/\s]{1,15}$/;

/**
 * Applies a Firecracker `NetworkInterface` to `config.nets` (one of the same id is replaced):
 * `host_dev_name` is a TAP interface, as `--net tap=NAME`; denovisor's `switch_path` (instead
 * of `host_dev_name`) joins the learning switch on that unix socket, as `--net switch=PATH`.
 */
export function applyNetworkInterface(
  config: VmConfig,
  obj: Json,
  pathId?: string,
  what = "network-interfaces",
): void {
  onlyFields(obj, NET_FIELDS, what);
  const id = idOf(obj, "iface_id", pathId, what);
  const tap = str(obj, "host_dev_name", what, false);
  const sw = str(obj, "switch_path", what, false);
  if ((tap === undefined) === (sw === undefined)) {
    throw new ApiError(
      `${what}: give host_dev_name (a TAP interface) or switch_path (a denovisor switch's ` +
        `socket), one of them`,
    );
  }
  if (tap !== undefined) {
    if (!IFNAME.test(tap)) {
      throw new ApiError(`${what}: host_dev_name "${tap}" is not an interface name (1-15 bytes)`);
    }
    let exists = true;
    try {
      Deno.statSync(`/sys/class/net/${tap}`);
    } catch {
      exists = false;
    }
    if (!exists) {
      throw new ApiError(
        `${what}: host_dev_name "${tap}": no such interface; create it with ` +
          `\`ip tuntap add ${tap} mode tap\``,
      );
    }
  } else {
    let socket = false;
    try {
      socket = Deno.statSync(sw!).isSocket === true;
    } catch {
      // Not there.
    }
    if (!socket) {
      throw new ApiError(
        `${what}: switch_path "${sw}" is not a unix socket; start a switch with ` +
          `\`deno run -A mod.ts switch ${sw}\``,
      );
    }
  }
  const macText = str(obj, "guest_mac", what, false);
  let mac = randomMac();
  if (macText !== undefined) {
    const bytes = parseMac(macText);
    if (bytes === null) {
      throw new ApiError(
        `${what}: guest_mac "${macText}" is not a MAC address (aa:bb:cc:dd:ee:ff)`,
      );
    }
    if (bytes[0]! & 1) throw new ApiError(`${what}: guest_mac ${macText} is a multicast address`);
    mac = formatMac(bytes);
  }
  const mtu = int(obj, "mtu", what, false);
  if (mtu !== undefined && mtu !== 1500) {
    throw new ApiError(
      `${what}: mtu ${mtu} is not supported: the device has Ethernet's 1500; leave mtu out`,
    );
  }
  noRateLimiter(obj, "rx_rate_limiter", what);
  noRateLimiter(obj, "tx_rate_limiter", what);
  const net: NetSpec = tap !== undefined
    ? { kind: "tap", path: tap, mac, id }
    : { kind: "switch", path: sw!, mac, id };
  const list = [...(config.nets ?? [])];
  const at = list.findIndex((n) => n.id === id);
  if (at >= 0) list[at] = net;
  else list.push(net);
  config.nets = list;
}

/** An interface as `GET /vm/config` lists it (a switch port with our `switch_path`). */
export function netJson(n: NetSpec): Json {
  return {
    iface_id: n.id,
    ...(n.kind === "tap" ? { host_dev_name: n.path } : { switch_path: n.path }),
    guest_mac: n.mac,
    rx_rate_limiter: null,
    tx_rate_limiter: null,
  };
}
