/**
 * Snapshot files, split as Firecracker splits them: a **state file** (everything but RAM) and a
 * raw **memory file** (guest RAM byte for byte, `size` = RAM size; pages of zeros are seeked
 * past, so the file is sparse and they cost no disk).
 *
 * State file layout (little-endian):
 *
 * | offset | size | field                                                            |
 * | ------ | ---- | ---------------------------------------------------------------- |
 * | 0      | 8    | magic `DNVSTATE`                                                 |
 * | 8      | 4    | format version (STATE_FORMAT_VERSION)                            |
 * | 12     | 4    | body length N                                                    |
 * | 16     | N    | body: UTF-8 JSON (core/snapshot/codec.ts), one key per section   |
 * | 16 + N | 4    | CRC-32 of bytes [0, 16 + N): header and body                     |
 *
 * Sections of the body: `snapshot` ({ type: "Full" | "Diff", createdAt, pageSize }),
 * `memory` ({ size, and for Diff `pages`: [first, count] runs of the pages it holds }),
 * `machine` (Machine.saveState(): vCPU, clock, devices with their plugin specifiers and options,
 * CPU model, backend).
 *
 * **Diff** snapshots hold only the pages written since the previous snapshot of the same
 * machine (or since it was built or restored), from the page-state map's dirty bits (consumer
 * {@link SNAPSHOT_DIRTY_CONSUMER}). The pages are written at their offsets into `memPath`
 * without truncating it, so pointing a Diff at a copy of the previous snapshot's memory file
 * updates that copy into a complete, restorable memory file (Firecracker's "rebase", done in
 * place); a Diff written to a fresh file is applied to a base with {@link applyDiff}. On KVM the
 * guest's own stores bypass the map: KVM's dirty log (KVM_GET_DIRTY_LOG, `collectDirtyLog`)
 * feeds it first; device DMA goes through `GuestMemory` and marks the map itself.
 *
 * A KVM VM restored from a memory file runs on it mapped MAP_PRIVATE, so a Full snapshot replaces
 * its memory file (a new file at the path) rather than truncating it in place: snapshotting over
 * the files a running VM was restored from must not pull its RAM from under it.
 */

import { UsageError, VmmError } from "../errors.ts";
import { MACHINE_STATE_VERSION, type MachineState } from "../machine.ts";
import type { Machine } from "../machine.ts";
import type { GuestMemory } from "../memory.ts";
import { resetCpuState } from "../cpu_state.ts";
import { decodeJson, encodeJson } from "./codec.ts";
import { crc32 } from "./crc32.ts";

/** The state file's first 8 bytes. */
export const STATE_MAGIC: Uint8Array = new TextEncoder().encode("DNVSTATE");
/** The state file format this code writes and reads. */
export const STATE_FORMAT_VERSION = 1;
/** Header bytes before the body. */
export const STATE_HEADER_SIZE = 16;
/** The page granularity of the memory file's holes. */
export const SNAPSHOT_PAGE_SIZE = 4096;
/** The page-state map's dirty-log consumer bit snapshots use (migration has its own). */
export const SNAPSHOT_DIRTY_CONSUMER = 0;

/** Full: all of RAM. Diff: only pages written since the previous snapshot. */
export type SnapshotType = "Full" | "Diff";

/** Where a snapshot goes, and what kind. */
export interface SnapshotParams {
  statePath: string;
  memPath: string;
  /** Default "Full". */
  type?: SnapshotType;
}

/** A validated snapshot, read from its two files. */
export interface Snapshot {
  statePath: string;
  memPath: string;
  type: SnapshotType;
  /** The machine's state (`Machine.restoreState` takes it). */
  machine: MachineState;
  /** RAM size in bytes (the memory file's size). */
  memSize: number;
  /**
   * The [first page, count] runs the memory file holds data for: Full, every page not listed is
   * zero; Diff, every page not listed comes from the snapshot it was taken after.
   */
  pages: [number, number][];
}

/** What `createSnapshot` wrote. */
export interface SnapshotInfo {
  type: SnapshotType;
  stateBytes: number;
  /** Bytes of RAM actually written to the memory file (non-zero pages). */
  memBytesWritten: number;
  memSize: number;
}

class SnapshotError extends VmmError {}

function fail(path: string, problem: string): never {
  throw new SnapshotError(`Snapshot file "${path}": ${problem}`);
}

/**
 * What a snapshot of a stopped machine holds, before it is written (`writeSnapshotFiles`): a
 * machine Worker takes it and the main thread, which may write where the Worker may not, writes
 * it. `bytes` views guest RAM, which must not change until the files are written.
 */
export interface SnapshotPlan {
  type: SnapshotType;
  /** The machine's state (`Machine.saveState()`). */
  state: MachineState;
  /** Guest RAM: `size` bytes of it in `bytes`. */
  memory: Pick<GuestMemory, "bytes" | "size">;
  /** Diff: the runs of pages written since the last snapshot. */
  diffRuns?: [number, number][];
}

/**
 * Takes a snapshot of `machine`, whose vCPU must not be running (call it before `run()` or
 * after `run()` returned, e.g. on `{ kind: "pause" }`). Either kind restarts the dirty log, so
 * the next Diff holds what was written after this one.
 */
export function planSnapshot(machine: Machine, type: SnapshotType = "Full"): SnapshotPlan {
  if (type !== "Full" && type !== "Diff") {
    throw new UsageError(`Unknown snapshot type ${JSON.stringify(type)}: use "Full" or "Diff"`);
  }
  const state = machine.saveState();
  // The backend's own log (KVM) first: then the map holds every page written.
  machine.backend.collectDirtyLog?.();
  // Taken while the vCPU is stopped: every store after this marks its page again.
  const { pages: dirty } = machine.memory.pages.takeDirty(SNAPSHOT_DIRTY_CONSUMER);
  const memory = { bytes: machine.memory.bytes, size: machine.memory.size };
  return type === "Full"
    ? { type, state, memory }
    : { type, state, memory, diffRuns: pageRuns(dirty) };
}

/** Writes the memory file, then the state file, of `plan`. */
export function writeSnapshotFiles(
  plan: SnapshotPlan,
  paths: { statePath: string; memPath: string },
): SnapshotInfo {
  const { type, memory: mem } = plan;
  let memBytesWritten: number;
  let memory: Record<string, unknown>;
  if (plan.diffRuns === undefined) {
    const full = writeMemoryFile(paths.memPath, mem);
    memBytesWritten = full.written;
    memory = { size: mem.size, pages: full.runs };
  } else {
    memBytesWritten = writeDiffMemoryFile(paths.memPath, mem, plan.diffRuns);
    memory = { size: mem.size, pages: plan.diffRuns };
  }
  const bytes = encodeStateFile({
    snapshot: { type, createdAt: new Date().toISOString(), pageSize: SNAPSHOT_PAGE_SIZE },
    memory,
    machine: plan.state,
  });
  writeFile(paths.statePath, bytes);
  return { type, stateBytes: bytes.length, memBytesWritten, memSize: mem.size };
}

/** Takes and writes a snapshot of `machine` (see `planSnapshot`). */
export function createSnapshot(machine: Machine, params: SnapshotParams): SnapshotInfo {
  return writeSnapshotFiles(planSnapshot(machine, params.type), params);
}

/** Sorted page numbers as [first, count] runs. */
function pageRuns(pages: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const p of pages) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] + last[1] === p) last[1]++;
    else runs.push([p, 1]);
  }
  return runs;
}

function writeAt(file: Deno.FsFile, offset: number, data: Uint8Array): void {
  // A copy: a SharedArrayBuffer view cannot be handed to writeSync.
  const chunk = data.buffer instanceof ArrayBuffer ? data : data.slice();
  file.seekSync(offset, Deno.SeekMode.Start);
  let put = 0;
  while (put < chunk.length) put += file.writeSync(chunk.subarray(put));
}

/** Writes the pages of `runs` at their offsets into `path`, which ends up `memory.size` long. */
function writeDiffMemoryFile(
  path: string,
  memory: Pick<GuestMemory, "bytes" | "size">,
  runs: [number, number][],
): number {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { write: true, create: true });
  } catch (err) {
    fail(path, `cannot open the memory file: ${(err as Error).message}`);
  }
  let written = 0;
  try {
    for (const [first, count] of runs) {
      const from = first * SNAPSHOT_PAGE_SIZE;
      const to = Math.min((first + count) * SNAPSHOT_PAGE_SIZE, memory.size);
      writeAt(file, from, memory.bytes.subarray(from, to));
      written += to - from;
    }
    file.truncateSync(memory.size);
  } catch (err) {
    fail(path, `cannot write the memory file: ${(err as Error).message}`);
  } finally {
    file.close();
  }
  return written;
}

/**
 * Copies the pages a Diff snapshot holds (`diffStatePath`, `diffMemPath`) into the memory file
 * `baseMemPath` of the snapshot it was taken after, which then pairs with the Diff's state file.
 */
export function applyDiff(baseMemPath: string, diffStatePath: string, diffMemPath: string): void {
  const diff = readSnapshot(diffStatePath, diffMemPath);
  if (diff.type !== "Diff" || diff.pages === undefined) {
    fail(diffStatePath, "is not a Diff snapshot");
  }
  let size: number;
  try {
    size = Deno.statSync(baseMemPath).size;
  } catch (err) {
    fail(baseMemPath, `cannot read the base memory file: ${(err as Error).message}`);
  }
  if (size !== diff.memSize) {
    fail(baseMemPath, `the base memory file has ${size} bytes, the Diff ${diff.memSize}`);
  }
  const src = Deno.openSync(diffMemPath, { read: true });
  let dst: Deno.FsFile;
  try {
    dst = Deno.openSync(baseMemPath, { write: true });
  } catch (err) {
    src.close();
    fail(baseMemPath, `cannot write the base memory file: ${(err as Error).message}`);
  }
  try {
    for (const [first, count] of diff.pages) {
      const from = first * SNAPSHOT_PAGE_SIZE;
      const buf = new Uint8Array(Math.min(count * SNAPSHOT_PAGE_SIZE, diff.memSize - from));
      src.seekSync(from, Deno.SeekMode.Start);
      let got = 0;
      while (got < buf.length) {
        const n = src.readSync(buf.subarray(got));
        if (n === null || n === 0) fail(diffMemPath, `ends inside page ${first} (truncated)`);
        got += n;
      }
      writeAt(dst, from, buf);
    }
  } finally {
    src.close();
    dst.close();
  }
}

function writeFile(path: string, bytes: Uint8Array): void {
  try {
    Deno.writeFileSync(path, bytes);
  } catch (err) {
    fail(path, `cannot write it: ${(err as Error).message}`);
  }
}

/** The state file's bytes for `sections`. */
export function encodeStateFile(sections: Record<string, unknown>): Uint8Array {
  const body = new TextEncoder().encode(encodeJson(sections));
  const out = new Uint8Array(STATE_HEADER_SIZE + body.length + 4);
  const dv = new DataView(out.buffer);
  out.set(STATE_MAGIC, 0);
  dv.setUint32(8, STATE_FORMAT_VERSION, true);
  dv.setUint32(12, body.length, true);
  out.set(body, STATE_HEADER_SIZE);
  dv.setUint32(
    STATE_HEADER_SIZE + body.length,
    crc32(out.subarray(0, STATE_HEADER_SIZE + body.length)),
    true,
  );
  return out;
}

/**
 * Checks a state file's framing (magic, version, length, checksum) and returns its sections.
 * Each problem is a VmmError naming `path` and what is wrong.
 */
export function decodeStateFile(path: string, bytes: Uint8Array): Record<string, unknown> {
  if (bytes.length < STATE_HEADER_SIZE) {
    fail(
      path,
      `truncated: ${bytes.length} bytes, shorter than the ${STATE_HEADER_SIZE}-byte header`,
    );
  }
  for (let i = 0; i < STATE_MAGIC.length; i++) {
    if (bytes[i] !== STATE_MAGIC[i]) {
      fail(path, 'not a denovisor snapshot state file (bad magic; expected "DNVSTATE")');
    }
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== STATE_FORMAT_VERSION) {
    fail(
      path,
      `format version ${version}, but this denovisor reads version ${STATE_FORMAT_VERSION} only` +
        (version > STATE_FORMAT_VERSION ? " (it comes from a newer release)" : ""),
    );
  }
  const n = dv.getUint32(12, true);
  const total = STATE_HEADER_SIZE + n + 4;
  if (bytes.length < total) {
    fail(path, `truncated: ${bytes.length} bytes, but its header says ${total}`);
  }
  if (bytes.length > total) {
    fail(path, `${bytes.length - total} unexpected bytes after the checksum (${total} expected)`);
  }
  const want = dv.getUint32(STATE_HEADER_SIZE + n, true);
  const got = crc32(bytes.subarray(0, STATE_HEADER_SIZE + n));
  if (want !== got) {
    fail(
      path,
      `checksum mismatch (stored CRC-32 ${want.toString(16).padStart(8, "0")}, computed ` +
        `${got.toString(16).padStart(8, "0")}): the file is corrupted`,
    );
  }
  let sections: unknown;
  try {
    sections = decodeJson(
      new TextDecoder("utf-8", { fatal: true }).decode(
        bytes.subarray(STATE_HEADER_SIZE, STATE_HEADER_SIZE + n),
      ),
    );
  } catch (err) {
    fail(path, `its body is not valid snapshot JSON: ${(err as Error).message}`);
  }
  if (typeof sections !== "object" || sections === null || Array.isArray(sections)) {
    fail(path, "its body is not an object of sections");
  }
  return sections as Record<string, unknown>;
}

/**
 * Reads and validates a snapshot: the state file's magic, version, length and checksum, its
 * sections and the machine state's shape, and the memory file's size against the state's.
 */
export function readSnapshot(statePath: string, memPath: string): Snapshot {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(statePath);
  } catch (err) {
    fail(statePath, `cannot read it: ${(err as Error).message}`);
  }
  const sections = decodeStateFile(statePath, bytes);
  const known = ["snapshot", "memory", "machine"];
  for (const k of Object.keys(sections)) {
    if (!known.includes(k)) fail(statePath, `unknown section "${k}"`);
  }
  for (const k of known) if (!(k in sections)) fail(statePath, `section "${k}" is missing`);
  const snap = sections.snapshot as { type?: unknown };
  const type = snap?.type;
  if (type !== "Full" && type !== "Diff") {
    fail(statePath, `snapshot type ${JSON.stringify(type)} is not "Full" or "Diff"`);
  }
  const memSize = (sections.memory as { size?: unknown })?.size;
  if (typeof memSize !== "number" || !Number.isSafeInteger(memSize) || memSize <= 0) {
    fail(statePath, `section "memory" has no valid size (${JSON.stringify(memSize)})`);
  }
  const machine = sections.machine as MachineState;
  checkMachineShape(statePath, machine, memSize);
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(memPath);
  } catch (err) {
    fail(memPath, `cannot read the memory file: ${(err as Error).message}`);
  }
  if (!st.isFile) fail(memPath, "the memory file is not a regular file");
  if (st.size !== memSize) {
    fail(
      memPath,
      `the memory file has ${st.size} bytes, but the state file "${statePath}" records ` +
        `${memSize} bytes of RAM` + (st.size < memSize ? " (truncated?)" : ""),
    );
  }
  const out: Snapshot = { statePath, memPath, type, machine, memSize, pages: [] };
  out.pages = pageRunsOf(statePath, type, sections.memory, memSize);
  return out;
}

function pageRunsOf(
  path: string,
  type: SnapshotType,
  memory: unknown,
  memSize: number,
): [number, number][] {
  const pages = (memory as { pages?: unknown }).pages;
  const limit = Math.ceil(memSize / SNAPSHOT_PAGE_SIZE);
  const ok = Array.isArray(pages) &&
    pages.every((r) =>
      Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) &&
      Number.isSafeInteger(r[1]) && r[0] >= 0 && r[1] > 0 && r[0] + r[1] <= limit
    );
  if (!ok) {
    fail(path, `a ${type} snapshot's "memory.pages" must be [first, count] page runs in RAM`);
  }
  return pages as [number, number][];
}

function checkMachineShape(path: string, m: MachineState, memSize: number): void {
  if (typeof m !== "object" || m === null) fail(path, `section "machine" is not an object`);
  if (m.version !== MACHINE_STATE_VERSION) {
    fail(
      path,
      `machine state version ${JSON.stringify(m.version)}; this denovisor reads version ` +
        `${MACHINE_STATE_VERSION} only`,
    );
  }
  const fields = [
    "version",
    "backend",
    "memSize",
    "cpuModel",
    "clock",
    "cpu",
    "devices",
    "kvmClock",
    "backendState",
  ];
  for (const k of Object.keys(m)) {
    if (!fields.includes(k)) fail(path, `unknown field "machine.${k}"`);
  }
  for (const k of fields) if (!(k in m)) fail(path, `field "machine.${k}" is missing`);
  if (m.memSize !== memSize) {
    fail(path, `machine.memSize ${m.memSize} differs from memory.size ${memSize}`);
  }
  if (m.backend !== "kvm" && m.backend !== "interp") {
    fail(path, `machine.backend ${JSON.stringify(m.backend)} is not "kvm" or "interp"`);
  }
  if (!Array.isArray(m.devices)) fail(path, `field "machine.devices" is not a list`);
  checkShape(path, "machine.cpu", resetCpuState(), m.cpu);
}

/** Refuses a value whose keys (recursively, for plain objects) differ from `expected`'s. */
function checkShape(path: string, where: string, expected: unknown, got: unknown): void {
  const kind = (v: unknown) =>
    v instanceof Uint8Array
      ? "bytes"
      : v instanceof Map
      ? "map"
      : Array.isArray(v)
      ? "list"
      : v === null
      ? "null"
      : typeof v;
  // A null in the template stands for bytes or null (`cpu.xsave`: KVM with XSAVE has the area).
  if (expected === null && got instanceof Uint8Array) return;
  if (kind(expected) !== kind(got)) {
    fail(path, `field "${where}" is ${kind(got)}, expected ${kind(expected)}`);
  }
  if (kind(expected) !== "object") return;
  const e = expected as Record<string, unknown>, g = got as Record<string, unknown>;
  for (const k of Object.keys(e)) if (!(k in g)) fail(path, `field "${where}.${k}" is missing`);
  for (const k of Object.keys(g)) {
    if (!(k in e)) fail(path, `unknown field "${where}.${k}"`);
    checkShape(path, `${where}.${k}`, e[k], g[k]);
  }
}

/**
 * Writes guest RAM to `path` as a raw image of `memory.size` bytes, seeking past pages of zeros
 * (the file is sparse where the filesystem allows). Returns the bytes written and the runs of
 * pages written ([first page, count]).
 */
export function writeMemoryFile(
  path: string,
  memory: Pick<GuestMemory, "bytes" | "size">,
): { written: number; runs: [number, number][] } {
  let file: Deno.FsFile;
  try {
    // A new file, not the old one truncated: a VM restored from the old one may map it.
    Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      fail(path, `cannot replace the memory file: ${(err as Error).message}`);
    }
  }
  try {
    file = Deno.openSync(path, { write: true, createNew: true });
  } catch (err) {
    fail(path, `cannot create the memory file: ${(err as Error).message}`);
  }
  const bytes = memory.bytes;
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  const PAGE_WORDS = SNAPSHOT_PAGE_SIZE >>> 2;
  const pages = Math.ceil(memory.size / SNAPSHOT_PAGE_SIZE);
  let written = 0;
  const runs: [number, number][] = [];
  const isZero = (p: number): boolean => {
    const end = Math.min((p + 1) * PAGE_WORDS, words.length);
    for (let i = p * PAGE_WORDS; i < end; i++) if (words[i] !== 0) return false;
    for (let i = end * 4; i < Math.min((p + 1) * SNAPSHOT_PAGE_SIZE, bytes.length); i++) {
      if (bytes[i] !== 0) return false;
    }
    return true;
  };
  try {
    let p = 0;
    while (p < pages) {
      if (isZero(p)) {
        p++;
        continue;
      }
      const start = p;
      while (p < pages && !isZero(p)) p++;
      const from = start * SNAPSHOT_PAGE_SIZE;
      const run = bytes.subarray(from, Math.min(p * SNAPSHOT_PAGE_SIZE, bytes.length));
      writeAt(file, from, run);
      written += run.length;
      runs.push([start, p - start]);
    }
    file.truncateSync(memory.size);
  } catch (err) {
    fail(path, `cannot write the memory file: ${(err as Error).message}`);
  } finally {
    file.close();
  }
  return { written, runs };
}

/**
 * Reads a memory file of exactly `memory.size` bytes into guest RAM, which must be freshly
 * allocated (zero). With `runs` (a Full snapshot's `pages`), only those pages are read: the rest
 * of the file is zero, and leaving fresh RAM untouched costs neither time nor host memory.
 */
export function readMemoryFile(
  path: string,
  memory: GuestMemory,
  runs: readonly (readonly [number, number])[] = [[0, Math.ceil(memory.size / SNAPSHOT_PAGE_SIZE)]],
): void {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (err) {
    fail(path, `cannot open the memory file: ${(err as Error).message}`);
  }
  const bytes = memory.bytes;
  const CHUNK = 1 << 22;
  const shared = !(bytes.buffer instanceof ArrayBuffer);
  const tmp = shared ? new Uint8Array(Math.min(CHUNK, bytes.length)) : null;
  try {
    for (const [first, count] of runs) {
      const from = first * SNAPSHOT_PAGE_SIZE;
      const to = Math.min((first + count) * SNAPSHOT_PAGE_SIZE, bytes.length);
      file.seekSync(from, Deno.SeekMode.Start);
      let got = from;
      while (got < to) {
        const want = Math.min(CHUNK, to - got);
        const dst = tmp ? tmp.subarray(0, want) : bytes.subarray(got, got + want);
        const n = file.readSync(dst);
        if (n === null || n === 0) {
          fail(
            path,
            `the memory file ends after ${got} bytes, ${bytes.length} expected (truncated)`,
          );
        }
        if (tmp) bytes.set(tmp.subarray(0, n), got);
        got += n;
      }
      // These pages changed behind the vCPU's back: mark them written, as DMA would.
      memory.pages.written(from, to - from);
    }
  } finally {
    file.close();
  }
}
