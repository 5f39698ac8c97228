/**
 * The runtime directory where named VMs (`--name NAME`) register: `NAME.sock` (the API socket),
 * `NAME.json` (a small record: pid, name, backend, memory, start time, kernel) and, for VMs
 * `ctl restore` starts, `NAME.log` (their serial output). Used by the VMM (core/api/main.ts) and
 * by its client (core/ctl/). The directory is `DENOVISOR_RUN_DIR`, else
 * `$XDG_RUNTIME_DIR/denovisor`, else `/tmp/denovisor-$UID`.
 */

import { UsageError } from "./errors.ts";

/** What `NAME.json` holds. */
export interface VmRecord {
  name: string;
  pid: number;
  /** The backend asked for (auto, kvm, interp) or, once it runs, the one it runs on. */
  backend: string;
  /** Guest RAM in bytes. */
  memory: number;
  /** When the VMM started, ms since the epoch. */
  started: number;
  /** The guest image, or the snapshot it restored ("restore:STATE_FILE"), or null (demo). */
  kernel: string | null;
}

/** The runtime directory (not created). */
export function runDir(): string {
  const env = (k: string) => {
    try {
      return Deno.env.get(k) || undefined;
    } catch {
      return undefined;
    }
  };
  const explicit = env("DENOVISOR_RUN_DIR");
  if (explicit !== undefined) return explicit.replace(/\/+$/, "") || "/";
  const xdg = env("XDG_RUNTIME_DIR");
  if (xdg !== undefined) return `${xdg.replace(/\/+$/, "")}/denovisor`;
  let uid: number | null = null;
  try {
    uid = Deno.uid();
  } catch {
    // No uid on this platform.
  }
  return `/tmp/denovisor-${uid ?? "user"}`;
}

/** Creates the runtime directory (mode 0700) and returns it. */
export function ensureRunDir(): string {
  const dir = runDir();
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Throws UsageError unless `name` is a valid VM name (`what` names the flag or argument). */
export function validateName(name: string, what = "--name"): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === "." || name === "..") {
    throw new UsageError(
      `${what} "${name}": use 1 to 64 letters, digits, "-", "_" and "." (no "/", not "." or "..")`,
    );
  }
  return name;
}

/** The paths of VM `name`'s files. */
export function vmPaths(
  name: string,
  dir = runDir(),
): { sock: string; record: string; log: string; vmmLog: string } {
  const base = `${dir}/${name}`;
  return {
    sock: `${base}.sock`,
    record: `${base}.json`,
    log: `${base}.log`,
    vmmLog: `${base}.vmm.log`,
  };
}

/** True when process `pid` exists. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // A zombie (ended, not yet reaped by its parent) is dead for us.
    return !/^\d+ \(.*\) [ZX]/s.test(stat);
  } catch {
    // No /proc entry: try a signal 0 where /proc is missing.
  }
  try {
    Deno.statSync("/proc/self");
    return false; // /proc works and has no such pid
  } catch {
    try {
      Deno.kill(pid, "SIGCONT");
      return true;
    } catch {
      return false;
    }
  }
}

/** True when something accepts connections on the unix socket `path`. */
export async function socketAlive(path: string): Promise<boolean> {
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    return true;
  } catch {
    return false;
  }
}

/** Reads `NAME.json`, or null when it is missing or unreadable. */
export function readRecord(name: string, dir = runDir()): VmRecord | null {
  try {
    const r = JSON.parse(Deno.readTextFileSync(vmPaths(name, dir).record));
    if (typeof r !== "object" || r === null || typeof r.pid !== "number") return null;
    return r as VmRecord;
  } catch {
    return null;
  }
}

/** Writes `NAME.json` (through a temporary file, so readers never see half of it). */
export function writeRecord(record: VmRecord, dir = runDir()): void {
  const path = vmPaths(record.name, dir).record;
  const tmp = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(record, null, 2) + "\n");
  Deno.renameSync(tmp, path);
}

/** Removes VM `name`'s socket and record (and its logs when `logs`); missing files are fine. */
export function removeEntry(name: string, dir = runDir(), logs = false): void {
  const p = vmPaths(name, dir);
  for (const path of logs ? [p.sock, p.record, p.log, p.vmmLog] : [p.sock, p.record]) {
    try {
      Deno.removeSync(path);
    } catch {
      // Already gone.
    }
  }
}

/** How long a VMM may take from writing its record to answering on its socket. */
export const STARTUP_GRACE_MS = 30_000;

/** What an entry in the runtime directory is. */
export type EntryState =
  /** Its pid lives and its socket answers. */
  | { kind: "live"; record: VmRecord }
  /** Its pid lives but the socket does not answer yet (just started), or it is ending. */
  | { kind: "busy"; record: VmRecord | null }
  /** Its process or socket is gone: the files can go. */
  | { kind: "stale" };

/**
 * Classifies VM `name`: live (pid alive, socket answers), busy (starting or ending: pid alive
 * within the startup grace, or a live socket with no record) or stale (dead pid, dead socket).
 */
export async function entryState(name: string, dir = runDir()): Promise<EntryState> {
  const record = readRecord(name, dir);
  const sockUp = await socketAlive(vmPaths(name, dir).sock);
  if (record === null) return sockUp ? { kind: "busy", record: null } : { kind: "stale" };
  if (!pidAlive(record.pid)) return { kind: "stale" };
  if (sockUp) return { kind: "live", record };
  return Date.now() - record.started < STARTUP_GRACE_MS
    ? { kind: "busy", record }
    : { kind: "stale" };
}

/**
 * Removes VM `name`'s files (logs too when `logs`) if it is still stale, checked again at once
 * before: a VMM that took the name meanwhile (its socket answers, or its record is another) is
 * left alone. Returns true when it removed them.
 */
export async function removeStale(name: string, dir = runDir(), logs = true): Promise<boolean> {
  const before = readRecord(name, dir);
  if ((await entryState(name, dir)).kind !== "stale") return false;
  const now = readRecord(name, dir);
  if (now?.pid !== before?.pid || now?.started !== before?.started) return false;
  removeEntry(name, dir, logs);
  return true;
}

/** The names with a record or a socket in the runtime directory, sorted. */
export function entryNames(dir = runDir()): string[] {
  const names = new Set<string>();
  try {
    for (const e of Deno.readDirSync(dir)) {
      const m = /^(.+)\.(json|sock)$/.exec(e.name);
      if (m !== null) names.add(m[1]!);
    }
  } catch {
    // No directory: no VMs.
  }
  return [...names].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}
