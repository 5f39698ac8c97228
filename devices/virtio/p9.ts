/**
 * virtio-9p (virtio 1.2, section 5.19 of the draft; device ID 9): a host directory served to
 * the guest with the 9P2000.L protocol (Linux's `9p` + `9pnet_virtio`:
 * `mount -t 9p -o trans=virtio,version=9p2000.L TAG DIR`). One request queue: each chain holds
 * a T-message in its readable buffers and room for the R-message in its writable ones (Linux's
 * zero-copy requests put the payload in further pages of the same chain; the message is read and
 * written as the concatenation, so both forms are served alike). The config space is the mount
 * tag (`tag_len` u16, then the tag), announced with `VIRTIO_9P_MOUNT_TAG`.
 *
 * Messages served: Tversion, Tattach, Twalk, Tgetattr, Tsetattr (mode, size, times; uid/gid
 * changes are accepted and ignored: the host's files keep the VMM user's owner), Tlopen,
 * Tlcreate, Tread, Twrite, Treaddir, Tclunk, Tremove, Tmkdir, Tunlinkat, Trenameat, Trename,
 * Tsymlink, Treadlink, Tlink, Tstatfs (fixed numbers: Deno has no statfs), Tfsync, Tflush,
 * Tlock/Tgetlock (always granted / unlocked: one guest, no host locking), Txattrwalk and
 * Txattrcreate (EOPNOTSUPP); anything else is Rlerror EOPNOTSUPP. Host errors are answered with
 * their Linux errno. Host I/O is synchronous (`Deno.*Sync`), done while the notification is
 * handled, one request at a time (so Tflush has nothing left to cancel).
 *
 * Confinement: a fid is a path of names below the share's root (the root's realpath, taken
 * once). A walk refuses names with "/" and takes ".." no higher than the root; every operation
 * resolves the parent directory of its target with realpath and refuses a result outside the
 * root ({@link ESCAPE_ERRNO}), so a symlink the guest or the host made anywhere on the path
 * cannot lead out; a walk goes through directories only; operations that follow the last
 * name (open, truncate, chmod, utime) realpath it too. Symlinks themselves are served as
 * symlinks (the guest kernel resolves them, inside its own mount). What is left is the host
 * racing the VMM between a check and its use (another host process swapping a directory for a
 * symlink in that instant): the guest cannot, its requests are handled one after another. A
 * read-only share (`ro`) answers every change with EROFS.
 *
 * Snapshots: the state holds the negotiated msize and the fid table (paths and how each was
 * opened). A restore re-opens the open files without O_CREAT/O_TRUNC/O_EXCL; a fid whose file is
 * gone (or whose share changed) answers EBADF or the open's error from then on, and the guest
 * sees I/O errors on it rather than another file. Directory listings in progress restart.
 *
 * Options (the VMM gives them from `--share HOSTDIR[,tag=T][,ro]`): `path`, `tag`, `ro`, and the
 * transport's `base` and `irq`.
 *
 * @module
 */

import { API_VERSION, definePlugin } from "../../plugins/mod.ts";
import { bit, transportOptions, type VirtioDeviceModel, VirtioMmioTransport } from "./mmio.ts";
import { type Chain, type SplitQueue, VirtqueueError } from "./queue.ts";

/** Virtio device ID of a 9P transport. */
export const VIRTIO_ID_9P = 9;
/** Feature: the config space holds a mount tag. */
export const VIRTIO_9P_MOUNT_TAG = 0;
/** The request queue's size (Linux's 9pnet_virtio uses 128-entry scatter lists). */
export const P9_QUEUE_SIZE = 128;
/** The largest msize the device agrees to. */
export const P9_MAX_MSIZE = 1 << 20;
/** The protocol version served. */
export const P9_VERSION = "9P2000.L";
/** No fid (Tattach's afid, ...). */
export const P9_NOFID = 0xffff_ffff;

/** Message types (T; the R answer is T + 1). */
export const T = {
  lerror: 6,
  statfs: 8,
  lopen: 12,
  lcreate: 14,
  symlink: 16,
  mknod: 18,
  rename: 20,
  readlink: 22,
  getattr: 24,
  setattr: 26,
  xattrwalk: 30,
  xattrcreate: 32,
  readdir: 40,
  fsync: 50,
  lock: 52,
  getlock: 54,
  link: 70,
  mkdir: 72,
  renameat: 74,
  unlinkat: 76,
  version: 100,
  auth: 102,
  attach: 104,
  flush: 108,
  walk: 110,
  read: 116,
  write: 118,
  clunk: 120,
  remove: 122,
} as const;

/** Linux errno values answered. */
export const E = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  EPROTO: 71,
  EOPNOTSUPP: 95,
} as const;

/** What a path that would leave the share is answered with. */
export const ESCAPE_ERRNO = E.EACCES;

/** Qid types. */
export const QT_DIR = 0x80, QT_SYMLINK = 0x02, QT_FILE = 0;

/** Linux open flags (Tlopen, Tlcreate). */
const O_ACCMODE = 3, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0o100, O_EXCL = 0o200;
const O_TRUNC = 0o1000, O_APPEND = 0o2000;
/** Tunlinkat flag. */
const AT_REMOVEDIR = 0x200;
/** Tsetattr valid bits. */
const ATTR_MODE = 1, ATTR_SIZE = 8, ATTR_ATIME = 16, ATTR_MTIME = 32;
const ATTR_ATIME_SET = 128, ATTR_MTIME_SET = 256;
/** Rgetattr: the basic fields are valid. */
const GETATTR_BASIC = 0x7ffn;
/** Rstatfs f_type: V9FS_MAGIC. */
const V9FS_MAGIC = 0x0102_1997;

/** Deno error codes to Linux errno. */
const CODE_ERRNO: Record<string, number> = {
  EPERM: E.EPERM,
  ENOENT: E.ENOENT,
  EIO: E.EIO,
  EBADF: E.EBADF,
  EAGAIN: E.EAGAIN,
  ENOMEM: E.ENOMEM,
  EACCES: E.EACCES,
  EBUSY: E.EBUSY,
  EEXIST: E.EEXIST,
  EXDEV: E.EXDEV,
  ENOTDIR: E.ENOTDIR,
  EISDIR: E.EISDIR,
  EINVAL: E.EINVAL,
  EMFILE: E.EMFILE,
  EFBIG: E.EFBIG,
  ENOSPC: E.ENOSPC,
  EROFS: E.EROFS,
  EMLINK: E.EMLINK,
  ENAMETOOLONG: E.ENAMETOOLONG,
  ENOTEMPTY: E.ENOTEMPTY,
  ELOOP: E.ELOOP,
  EOPNOTSUPP: E.EOPNOTSUPP,
};

/** An error answered as Rlerror `errno`. */
export class P9Error extends Error {
  constructor(readonly errno: number, message = `errno ${errno}`) {
    super(message);
  }
}

/** The errno for a host error. */
export function errnoOf(err: unknown): number {
  if (err instanceof P9Error) return err.errno;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && code in CODE_ERRNO) return CODE_ERRNO[code]!;
  if (err instanceof Deno.errors.NotFound) return E.ENOENT;
  if (err instanceof Deno.errors.AlreadyExists) return E.EEXIST;
  if (err instanceof Deno.errors.PermissionDenied || err instanceof Deno.errors.NotCapable) {
    return E.EACCES;
  }
  if (err instanceof Deno.errors.NotADirectory) return E.ENOTDIR;
  if (err instanceof Deno.errors.IsADirectory) return E.EISDIR;
  return E.EIO;
}

/** A little-endian reader of one T-message's body. */
class Reader {
  #at = 0;
  readonly #dv: DataView;
  constructor(readonly buf: Uint8Array, at = 0) {
    this.#dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#at = at;
  }
  #need(n: number): number {
    if (this.#at + n > this.buf.length) throw new P9Error(E.EPROTO, "message too short");
    const at = this.#at;
    this.#at += n;
    return at;
  }
  u8(): number {
    return this.buf[this.#need(1)]!;
  }
  u16(): number {
    return this.#dv.getUint16(this.#need(2), true);
  }
  u32(): number {
    return this.#dv.getUint32(this.#need(4), true);
  }
  u64(): number {
    const at = this.#need(8);
    const v = this.#dv.getBigUint64(at, true);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  str(): string {
    const n = this.u16();
    return new TextDecoder().decode(this.buf.subarray(this.#need(n), this.#at));
  }
  bytes(n: number): Uint8Array {
    return this.buf.subarray(this.#need(n), this.#at);
  }
}

/** A little-endian writer of one R-message (the header filled in by `finish`). */
class Writer {
  #buf = new Uint8Array(64);
  #at = 7;
  #grow(n: number): number {
    if (this.#at + n > this.#buf.length) {
      const b = new Uint8Array(Math.max(this.#buf.length * 2, this.#at + n));
      b.set(this.#buf);
      this.#buf = b;
    }
    const at = this.#at;
    this.#at += n;
    return at;
  }
  get length(): number {
    return this.#at;
  }
  u8(v: number): this {
    const at = this.#grow(1);
    this.#buf[at] = v;
    return this;
  }
  u16(v: number): this {
    const at = this.#grow(2);
    new DataView(this.#buf.buffer).setUint16(at, v, true);
    return this;
  }
  u32(v: number): this {
    const at = this.#grow(4);
    new DataView(this.#buf.buffer).setUint32(at, v >>> 0, true);
    return this;
  }
  u64(v: number | bigint): this {
    const at = this.#grow(8);
    const big = typeof v === "bigint" ? v : BigInt(Math.trunc(v));
    new DataView(this.#buf.buffer).setBigUint64(at, BigInt.asUintN(64, big), true);
    return this;
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.u16(b.length);
    return this.bytes(b);
  }
  bytes(b: Uint8Array): this {
    const at = this.#grow(b.length);
    this.#buf.set(b, at);
    return this;
  }
  qid(q: Qid): this {
    return this.u8(q.type).u32(q.version).u64(q.path);
  }
  finish(type: number, tag: number): Uint8Array {
    const dv = new DataView(this.#buf.buffer);
    dv.setUint32(0, this.#at, true);
    dv.setUint8(4, type);
    dv.setUint16(5, tag, true);
    return this.#buf.subarray(0, this.#at);
  }
}

/** A 9P qid. */
export interface Qid {
  type: number;
  version: number;
  path: bigint;
}

/** A fid: a path below the root, and what was opened on it. */
interface Fid {
  path: string[];
  /** The Tlopen/Tlcreate flags it was opened with, or -1. */
  openFlags: number;
  file?: Deno.FsFile;
  isDir?: boolean;
  /** The directory listing a Treaddir is going through. */
  listing?: { name: string; qid: Qid; type: number }[];
  /** A restore could not re-open it: its errno. */
  broken?: number;
}

/** Options of a share. */
export interface P9ShareOptions {
  /** The host directory. */
  root: string;
  /** The mount tag. */
  tag: string;
  readOnly?: boolean;
}

/** The 9P2000.L server over one host directory, independent of the transport. */
export class P9Server {
  readonly root: string;
  readonly readOnly: boolean;
  msize = 8192;
  readonly fids = new Map<number, Fid>();

  constructor(opts: { root: string; readOnly?: boolean }) {
    let real: string;
    try {
      real = Deno.realPathSync(opts.root);
    } catch (err) {
      throw new Error(`Cannot share "${opts.root}": ${(err as Error).message}`);
    }
    if (!Deno.statSync(real).isDirectory) {
      throw new Error(`Cannot share "${opts.root}": not a directory`);
    }
    this.root = real;
    this.readOnly = opts.readOnly === true;
  }

  /** Drops every fid (a reset, a new Tversion). */
  reset(): void {
    for (const f of this.fids.values()) this.#close(f);
    this.fids.clear();
  }

  #close(f: Fid): void {
    try {
      f.file?.close();
    } catch { /* already closed */ }
    f.file = undefined;
  }

  /** True when `real` is the root or below it. */
  #inside(real: string): boolean {
    return real === this.root || real.startsWith(this.root === "/" ? "/" : this.root + "/");
  }

  /** The host path of `path` below the root, checked; `follow` resolves its last name too. */
  hostPath(path: string[], follow = false): string {
    if (path.length === 0) return this.root;
    const parent = this.#real(this.root + "/" + path.slice(0, -1).join("/"));
    const full = (parent === "/" ? "" : parent) + "/" + path[path.length - 1]!;
    return follow ? this.#real(full) : full;
  }

  #real(p: string): string {
    const real = Deno.realPathSync(p);
    if (!this.#inside(real)) throw new P9Error(ESCAPE_ERRNO, `"${p}" leads out of the share`);
    return real;
  }

  #qid(info: Deno.FileInfo): Qid {
    const type = info.isDirectory ? QT_DIR : info.isSymlink ? QT_SYMLINK : QT_FILE;
    const mtime = info.mtime?.getTime() ?? 0;
    return {
      type,
      version: info.isDirectory ? 0 : Math.floor(mtime / 1000) >>> 0,
      path: BigInt(info.ino ?? 0),
    };
  }

  #lstat(path: string[]): Deno.FileInfo {
    return Deno.lstatSync(this.hostPath(path));
  }

  #fid(n: number): Fid {
    const f = this.fids.get(n);
    if (f === undefined) throw new P9Error(E.EBADF, `no fid ${n}`);
    if (f.broken !== undefined) throw new P9Error(f.broken);
    return f;
  }

  #newFid(n: number): void {
    if (n === P9_NOFID) throw new P9Error(E.EBADF);
    if (this.fids.has(n)) throw new P9Error(E.EBADF, `fid ${n} is in use`);
  }

  #writable(): void {
    if (this.readOnly) throw new P9Error(E.EROFS);
  }

  static #name(name: string): string {
    if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
      throw new P9Error(E.EINVAL, `bad name "${name}"`);
    }
    if (new TextEncoder().encode(name).length > 255) throw new P9Error(E.ENAMETOOLONG);
    return name;
  }

  #open(f: Fid, flags: number): void {
    const path = this.hostPath(f.path, true);
    const info = Deno.statSync(path);
    const acc = flags & O_ACCMODE;
    const wantsWrite = acc === O_WRONLY || acc === O_RDWR || (flags & O_TRUNC) !== 0;
    if (info.isDirectory) {
      if (wantsWrite) throw new P9Error(E.EISDIR);
      f.isDir = true;
    } else {
      if (wantsWrite) this.#writable();
      f.file = Deno.openSync(path, {
        read: acc !== O_WRONLY,
        write: acc !== 0 || (flags & O_TRUNC) !== 0,
        truncate: (flags & O_TRUNC) !== 0,
        append: (flags & O_APPEND) !== 0,
      });
    }
    f.openFlags = flags;
  }

  /** Answers one T-message (a whole message, size field included). */
  handle(msg: Uint8Array): Uint8Array {
    let tag = 0xffff;
    try {
      const r = new Reader(msg);
      const size = r.u32();
      const type = r.u8();
      tag = r.u16();
      if (size > msg.length || size < 7) throw new P9Error(E.EPROTO, "bad message size");
      const body = new Reader(msg.subarray(0, size), 7);
      const w = new Writer();
      this.#dispatch(type, body, w);
      return w.finish(type + 1, tag);
    } catch (err) {
      return new Writer().u32(errnoOf(err)).finish(T.lerror + 1, tag);
    }
  }

  #dispatch(type: number, r: Reader, w: Writer): void {
    switch (type) {
      case T.version: {
        const msize = r.u32();
        const version = r.str();
        this.reset();
        this.msize = Math.max(4096, Math.min(msize, P9_MAX_MSIZE));
        w.u32(this.msize).str(version === P9_VERSION ? P9_VERSION : "unknown");
        return;
      }
      case T.auth:
        throw new P9Error(E.EOPNOTSUPP);
      case T.attach: {
        const fid = r.u32();
        r.u32(); // afid
        r.str(); // uname
        r.str(); // aname
        this.#newFid(fid);
        const qid = this.#qid(Deno.statSync(this.root));
        this.fids.set(fid, { path: [], openFlags: -1 });
        w.qid(qid);
        return;
      }
      case T.flush:
        r.u16();
        return;
      case T.walk: {
        const fidNum = r.u32();
        const f = this.#fid(fidNum);
        const newfid = r.u32();
        const n = r.u16();
        if (n > 16) throw new P9Error(E.EINVAL);
        const names = Array.from({ length: n }, () => r.str());
        if (newfid !== fidNum) this.#newFid(newfid);
        let path = [...f.path];
        const qids: Qid[] = [];
        for (const name of names) {
          let next: string[];
          if (name === "..") next = path.slice(0, -1);
          else if (name === ".") next = path;
          else {
            if (name === "" || name.includes("/") || name.includes("\0")) {
              if (qids.length === 0) throw new P9Error(E.ENOENT);
              break;
            }
            next = [...path, name];
          }
          let info: Deno.FileInfo;
          try {
            if (path.length > 0 && !this.#lstat(path).isDirectory) throw new P9Error(E.ENOTDIR);
            info = this.#lstat(next);
          } catch (err) {
            if (qids.length === 0) throw err;
            break;
          }
          qids.push(this.#qid(info));
          path = next;
        }
        if (qids.length === n) {
          if (newfid === fidNum) f.path = path;
          else this.fids.set(newfid, { path, openFlags: -1 });
        }
        w.u16(qids.length);
        for (const q of qids) w.qid(q);
        return;
      }
      case T.getattr: {
        const f = this.#fid(r.u32());
        r.u64(); // request mask
        const info = this.#lstat(f.path);
        w.u64(GETATTR_BASIC).qid(this.#qid(info)).u32(info.mode ?? 0).u32(info.uid ?? 0)
          .u32(info.gid ?? 0).u64(info.nlink ?? 1).u64(info.rdev ?? 0).u64(info.size)
          .u64(info.blksize ?? 4096).u64(info.blocks ?? 0);
        for (const t of [info.atime, info.mtime, info.ctime ?? info.mtime]) {
          const ms = t?.getTime() ?? 0;
          w.u64(Math.floor(ms / 1000)).u64((ms % 1000) * 1e6);
        }
        w.u64(0).u64(0).u64(0).u64(0); // btime, gen, data_version
        return;
      }
      case T.setattr: {
        const f = this.#fid(r.u32());
        const valid = r.u32();
        const mode = r.u32();
        r.u32(); // uid
        r.u32(); // gid
        const size = r.u64();
        const atime = r.u64() * 1000 + Math.floor(r.u64() / 1e6);
        const mtime = r.u64() * 1000 + Math.floor(r.u64() / 1e6);
        if ((valid & (ATTR_MODE | ATTR_SIZE | ATTR_ATIME | ATTR_MTIME)) === 0) return;
        this.#writable();
        const isLink = this.#lstat(f.path).isSymlink;
        if (isLink) return; // Linux changes no mode, size or time of a symlink itself here
        const path = this.hostPath(f.path, true);
        if (valid & ATTR_SIZE) {
          if (f.file !== undefined && (f.openFlags & O_ACCMODE) !== 0) f.file.truncateSync(size);
          else Deno.truncateSync(path, size);
        }
        if (valid & ATTR_MODE) Deno.chmodSync(path, mode & 0o7777);
        if (valid & (ATTR_ATIME | ATTR_MTIME)) {
          const info = Deno.statSync(path);
          const now = Date.now();
          const a = !(valid & ATTR_ATIME)
            ? info.atime?.getTime() ?? now
            : valid & ATTR_ATIME_SET
            ? atime
            : now;
          const m = !(valid & ATTR_MTIME)
            ? info.mtime?.getTime() ?? now
            : valid & ATTR_MTIME_SET
            ? mtime
            : now;
          Deno.utimeSync(path, new Date(a), new Date(m));
        }
        return;
      }
      case T.lopen: {
        const f = this.#fid(r.u32());
        const flags = r.u32();
        if (f.openFlags !== -1) throw new P9Error(E.EINVAL, "already open");
        this.#open(f, flags & ~(O_CREAT | O_EXCL));
        w.qid(this.#qid(this.#lstat(f.path))).u32(this.msize - 24);
        return;
      }
      case T.lcreate: {
        const f = this.#fid(r.u32());
        const name = P9Server.#name(r.str());
        const flags = r.u32();
        const mode = r.u32();
        r.u32(); // gid
        this.#writable();
        if (f.openFlags !== -1) throw new P9Error(E.EINVAL);
        const dir = this.hostPath(f.path, true);
        const acc = flags & O_ACCMODE;
        const file = Deno.openSync(`${dir === "/" ? "" : dir}/${name}`, {
          read: acc !== O_WRONLY,
          write: true,
          createNew: true,
          mode: mode & 0o7777,
          append: (flags & O_APPEND) !== 0,
        });
        f.path = [...f.path, name];
        f.file = file;
        f.openFlags = flags & ~(O_CREAT | O_EXCL | O_TRUNC);
        w.qid(this.#qid(this.#lstat(f.path))).u32(this.msize - 24);
        return;
      }
      case T.read: {
        const f = this.#fid(r.u32());
        const offset = r.u64();
        const count = Math.min(r.u32(), this.msize - 11);
        if (f.file === undefined) throw new P9Error(f.isDir ? E.EISDIR : E.EBADF);
        const buf = new Uint8Array(count);
        f.file.seekSync(offset, Deno.SeekMode.Start);
        let got = 0;
        while (got < count) {
          const n = f.file.readSync(buf.subarray(got));
          if (n === null || n === 0) break;
          got += n;
        }
        w.u32(got).bytes(buf.subarray(0, got));
        return;
      }
      case T.write: {
        const f = this.#fid(r.u32());
        const offset = r.u64();
        const count = r.u32();
        const data = r.bytes(count);
        if (f.file === undefined || (f.openFlags & O_ACCMODE) === 0) throw new P9Error(E.EBADF);
        this.#writable();
        if ((f.openFlags & O_APPEND) === 0) f.file.seekSync(offset, Deno.SeekMode.Start);
        let put = 0;
        while (put < data.length) put += f.file.writeSync(data.subarray(put));
        w.u32(put);
        return;
      }
      case T.readdir: {
        const f = this.#fid(r.u32());
        const offset = r.u64();
        const count = Math.min(r.u32(), this.msize - 11);
        if (!f.isDir) throw new P9Error(E.ENOTDIR);
        if (offset === 0 || f.listing === undefined) f.listing = this.#list(f.path);
        const entries = new Writer();
        let i = offset;
        for (; i < f.listing.length; i++) {
          const e = f.listing[i]!;
          const len = 13 + 8 + 1 + 2 + new TextEncoder().encode(e.name).length;
          if (entries.length - 7 + len > count) break;
          entries.qid(e.qid).u64(i + 1).u8(e.type).str(e.name);
        }
        const body = entries.finish(0, 0).subarray(7);
        w.u32(body.length).bytes(body);
        return;
      }
      case T.fsync: {
        const f = this.#fid(r.u32());
        if (f.file !== undefined && (f.openFlags & O_ACCMODE) !== 0) f.file.syncSync();
        return;
      }
      case T.clunk: {
        const n = r.u32();
        const f = this.fids.get(n);
        if (f === undefined) throw new P9Error(E.EBADF);
        this.#close(f);
        this.fids.delete(n);
        return;
      }
      case T.remove: {
        const n = r.u32();
        const f = this.fids.get(n);
        if (f === undefined) throw new P9Error(E.EBADF);
        this.#close(f);
        this.fids.delete(n);
        this.#writable();
        if (f.path.length === 0) throw new P9Error(E.EBUSY);
        Deno.removeSync(this.hostPath(f.path));
        return;
      }
      case T.mkdir: {
        const d = this.#fid(r.u32());
        const name = P9Server.#name(r.str());
        const mode = r.u32();
        r.u32(); // gid
        this.#writable();
        const path = [...d.path, name];
        Deno.mkdirSync(this.hostPath(path), { mode: mode & 0o7777 });
        w.qid(this.#qid(this.#lstat(path)));
        return;
      }
      case T.symlink: {
        const d = this.#fid(r.u32());
        const name = P9Server.#name(r.str());
        const target = r.str();
        r.u32(); // gid
        this.#writable();
        const path = [...d.path, name];
        Deno.symlinkSync(target, this.hostPath(path));
        w.qid(this.#qid(this.#lstat(path)));
        return;
      }
      case T.readlink: {
        const f = this.#fid(r.u32());
        w.str(Deno.readLinkSync(this.hostPath(f.path)));
        return;
      }
      case T.link: {
        const d = this.#fid(r.u32());
        const f = this.#fid(r.u32());
        const name = P9Server.#name(r.str());
        this.#writable();
        if (this.#lstat(f.path).isDirectory) throw new P9Error(E.EPERM);
        Deno.linkSync(this.hostPath(f.path), this.hostPath([...d.path, name]));
        return;
      }
      case T.unlinkat: {
        const d = this.#fid(r.u32());
        const name = P9Server.#name(r.str());
        const flags = r.u32();
        this.#writable();
        const path = this.hostPath([...d.path, name]);
        const info = Deno.lstatSync(path);
        if ((flags & AT_REMOVEDIR) !== 0 && !info.isDirectory) throw new P9Error(E.ENOTDIR);
        if ((flags & AT_REMOVEDIR) === 0 && info.isDirectory) throw new P9Error(E.EISDIR);
        Deno.removeSync(path);
        return;
      }
      case T.renameat: {
        const od = this.#fid(r.u32());
        const oldName = P9Server.#name(r.str());
        const nd = this.#fid(r.u32());
        const newName = P9Server.#name(r.str());
        this.#rename([...od.path, oldName], [...nd.path, newName]);
        return;
      }
      case T.rename: {
        const f = this.#fid(r.u32());
        const nd = this.#fid(r.u32());
        const newName = P9Server.#name(r.str());
        if (f.path.length === 0) throw new P9Error(E.EBUSY);
        this.#rename(f.path, [...nd.path, newName]);
        return;
      }
      case T.statfs: {
        this.#fid(r.u32());
        w.u32(V9FS_MAGIC).u32(4096).u64(1 << 24).u64(1 << 23).u64(1 << 23).u64(1 << 20)
          .u64(1 << 19).u64(0).u32(255);
        return;
      }
      case T.lock: {
        this.#fid(r.u32());
        w.u8(0); // P9_LOCK_SUCCESS
        return;
      }
      case T.getlock: {
        this.#fid(r.u32());
        r.u8(); // type
        const start = r.u64(), length = r.u64(), procId = r.u32(), client = r.str();
        w.u8(2).u64(start).u64(length).u32(procId).str(client); // F_UNLCK: nothing holds it
        return;
      }
      case T.xattrwalk:
      case T.xattrcreate:
        throw new P9Error(E.EOPNOTSUPP);
      default:
        throw new P9Error(E.EOPNOTSUPP, `message type ${type}`);
    }
  }

  #rename(from: string[], to: string[]): void {
    this.#writable();
    if (from.length === 0) throw new P9Error(E.EBUSY);
    Deno.renameSync(this.hostPath(from), this.hostPath(to));
    // Fids on the old path (and below it) follow the move, as QEMU's do.
    for (const f of this.fids.values()) {
      if (f.path.length >= from.length && from.every((n, i) => f.path[i] === n)) {
        f.path = [...to, ...f.path.slice(from.length)];
      }
    }
  }

  #list(path: string[]): { name: string; qid: Qid; type: number }[] {
    const dir = this.hostPath(path, true);
    const self = this.#qid(Deno.statSync(dir));
    const up = path.length === 0
      ? self
      : this.#qid(Deno.statSync(this.hostPath(path.slice(0, -1), true)));
    const out = [{ name: ".", qid: self, type: 4 }, { name: "..", qid: up, type: 4 }];
    for (const e of Deno.readDirSync(dir)) {
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(`${dir === "/" ? "" : dir}/${e.name}`);
      } catch {
        continue; // gone meanwhile
      }
      const type = info.isDirectory ? 4 : info.isSymlink ? 10 : info.isFile ? 8 : 0;
      out.push({ name: e.name, qid: this.#qid(info), type });
    }
    return out;
  }

  /** The state a snapshot keeps. */
  save(): { msize: number; fids: [number, string[], number][] } {
    return {
      msize: this.msize,
      fids: [...this.fids].map(([n, f]) => [n, [...f.path], f.openFlags]),
    };
  }

  /** Takes a saved state; files are re-opened, a fid that cannot be is answered with its errno. */
  restore(s: unknown): void {
    this.reset();
    const st = s as { msize?: unknown; fids?: unknown };
    if (typeof st?.msize === "number") this.msize = st.msize;
    if (!Array.isArray(st?.fids)) return;
    for (const e of st.fids as unknown[]) {
      if (!Array.isArray(e) || e.length !== 3) continue;
      const [n, path, flags] = e as [unknown, unknown, unknown];
      if (typeof n !== "number" || !Array.isArray(path) || typeof flags !== "number") continue;
      const f: Fid = { path: path.map(String), openFlags: -1 };
      this.fids.set(n, f);
      try {
        if (f.path.some((p) => p === "" || p === "." || p === ".." || p.includes("/"))) {
          throw new P9Error(E.EBADF);
        }
        if (flags !== -1) this.#open(f, flags & ~(O_CREAT | O_EXCL | O_TRUNC));
      } catch (err) {
        f.broken = errnoOf(err);
      }
    }
  }
}

/** The virtio-9p device model over `server`, with mount tag `tag`. */
export function p9Model(server: P9Server, tag: string): VirtioDeviceModel {
  const tagBytes = new TextEncoder().encode(tag);
  if (tagBytes.length === 0 || tagBytes.length > 0xffff) {
    throw new Error(`A 9p mount tag needs 1 to 65535 bytes, not "${tag}"`);
  }
  const config = new Uint8Array(2 + tagBytes.length);
  new DataView(config.buffer).setUint16(0, tagBytes.length, true);
  config.set(tagBytes, 2);

  function answer(c: Chain): number {
    if (c.readableLength < 7 || c.writableLength < 11) {
      throw new VirtqueueError(`9p request ${c.head} has no room for a message and its answer`);
    }
    const size = new DataView(c.read(0, 4).buffer).getUint32(0, true);
    const msg = c.read(0, Math.min(size, c.readableLength, P9_MAX_MSIZE + 4096));
    let reply = server.handle(msg);
    if (reply.length > c.writableLength) {
      // No room for the answer the client asked for: tell it so, in what room there is.
      const tag = new DataView(msg.buffer).getUint16(5, true);
      reply = new Uint8Array(11);
      const dv = new DataView(reply.buffer);
      dv.setUint32(0, 11, true);
      dv.setUint8(4, T.lerror + 1);
      dv.setUint16(5, tag, true);
      dv.setUint32(7, E.EIO, true);
    }
    return c.write(0, reply);
  }

  return {
    deviceId: VIRTIO_ID_9P,
    features: bit(VIRTIO_9P_MOUNT_TAG),
    queueSizes: [P9_QUEUE_SIZE],
    config: () => config,
    process(_index: number, queue: SplitQueue) {
      for (let c = queue.pop(); c !== null; c = queue.pop()) queue.push(c.head, answer(c));
    },
    reset: () => server.reset(),
  };
}

export default definePlugin({
  name: "virtio-9p",
  apiVersion: API_VERSION,
  description: "virtio-9p: a host directory shared with 9P2000.L (--share HOSTDIR[,tag=T][,ro])",
  create(host) {
    const path = host.options.string("path", "");
    if (path === "") throw new TypeError(`"${host.name}" needs path=HOSTDIR`);
    const tag = host.options.string("tag", "share0");
    const server = new P9Server({ root: path, readOnly: host.options.boolean("ro", false) });
    const transport = new VirtioMmioTransport(host, p9Model(server, tag), transportOptions(host));
    const device = transport.device({
      save: () => ({ p9: server.save() }),
      restore: (f) => server.restore(f.p9),
    });
    return { ...device, close: () => server.reset() };
  },
});
