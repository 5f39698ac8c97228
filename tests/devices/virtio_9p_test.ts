/**
 * virtio-9p through the transport and a small in-test 9P2000.L client: negotiation and the mount
 * tag, version/attach/walk/lopen/read/write/readdir/lcreate/mkdir/unlinkat/renameat/getattr/
 * setattr/symlink/readlink, `..` and symlink escapes refused, a read-only share refusing writes
 * with EROFS, and the fid table across save/restore.
 */

import { assertEquals, assertTrue as assert } from "../_assert.ts";
import { fakeHost } from "./_fake_host.ts";
import { VirtioTestDriver } from "./_virtio_driver.ts";
import { REG } from "../../devices/virtio/mmio.ts";
import p9Plugin, {
  E,
  P9_NOFID,
  QT_DIR,
  QT_SYMLINK,
  T,
  VIRTIO_9P_MOUNT_TAG,
  VIRTIO_ID_9P,
} from "../../devices/virtio/p9.ts";

const IRQ = 5, BASE = 0xd000_0000;
const enc = new TextEncoder(), dec = new TextDecoder();

/** Builds T-messages and parses R-messages. */
class Msg {
  parts: number[] = [];
  u8(v: number) {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number) {
    return this.u8(v).u8(v >> 8);
  }
  u32(v: number) {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
  u64(v: number) {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32));
  }
  str(s: string) {
    const b = enc.encode(s);
    this.u16(b.length);
    for (const x of b) this.u8(x);
    return this;
  }
  bytes(b: Uint8Array) {
    for (const x of b) this.u8(x);
    return this;
  }
  build(type: number, tag: number): Uint8Array {
    const body = Uint8Array.from(this.parts);
    const out = new Uint8Array(7 + body.length);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, out.length, true);
    out[4] = type;
    dv.setUint16(5, tag, true);
    out.set(body, 7);
    return out;
  }
}

class Rd {
  at = 7;
  dv: DataView;
  constructor(readonly b: Uint8Array) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  u8() {
    return this.b[this.at++]!;
  }
  u16() {
    const v = this.dv.getUint16(this.at, true);
    this.at += 2;
    return v;
  }
  u32() {
    const v = this.dv.getUint32(this.at, true);
    this.at += 4;
    return v;
  }
  u64() {
    const v = Number(this.dv.getBigUint64(this.at, true));
    this.at += 8;
    return v;
  }
  str() {
    const n = this.u16();
    const s = dec.decode(this.b.subarray(this.at, this.at + n));
    this.at += n;
    return s;
  }
  qid() {
    return { type: this.u8(), version: this.u32(), path: this.u64() };
  }
}

class Client {
  tag = 1;
  constructor(
    readonly drv: VirtioTestDriver,
    readonly mem: ReturnType<typeof fakeHost>["memory"],
  ) {}

  /** Sends one message; returns the reader on the answer (type checked), or the errno. */
  rpc(type: number, m: Msg, replyLen = 8192): Rd | number {
    const { addrs } = this.drv.submit([{ data: m.build(type, this.tag++) }, {
      writeLen: replyLen,
    }]);
    const used = this.drv.used();
    assertEquals(used.length, 1);
    const reply = this.mem.read(addrs[1]!, used[0]!.len);
    const rtype = reply[4]!;
    if (rtype === T.lerror + 1) return new Rd(reply).u32();
    assertEquals(rtype, type + 1);
    return new Rd(reply);
  }
  ok(type: number, m: Msg, replyLen?: number): Rd {
    const r = this.rpc(type, m, replyLen);
    if (typeof r === "number") throw new Error(`T${type} failed: errno ${r}`);
    return r;
  }
  walk(fid: number, newfid: number, names: string[]): Rd | number {
    const m = new Msg().u32(fid).u32(newfid).u16(names.length);
    for (const n of names) m.str(n);
    return this.rpc(T.walk, m);
  }
  lopen(fid: number, flags: number): Rd | number {
    return this.rpc(T.lopen, new Msg().u32(fid).u32(flags));
  }
  read(fid: number, offset: number, count: number): Uint8Array {
    const r = this.ok(T.read, new Msg().u32(fid).u64(offset).u32(count), count + 11);
    const n = r.u32();
    return r.b.slice(r.at, r.at + n);
  }
  write(fid: number, offset: number, data: Uint8Array): Rd | number {
    return this.rpc(T.write, new Msg().u32(fid).u64(offset).u32(data.length).bytes(data));
  }
  clunk(fid: number): void {
    this.ok(T.clunk, new Msg().u32(fid));
  }
  readdir(fid: number): string[] {
    const names: string[] = [];
    let offset = 0;
    for (;;) {
      const r = this.ok(T.readdir, new Msg().u32(fid).u64(offset).u32(200), 300);
      const count = r.u32();
      if (count === 0) return names;
      const end = r.at + count;
      while (r.at < end) {
        r.qid();
        offset = r.u64();
        r.u8();
        names.push(r.str());
      }
    }
  }
}

function setup(opts: { ro?: boolean } = {}) {
  const dir = Deno.makeTempDirSync({ prefix: "dnv-9p-" });
  const root = `${dir}/share`;
  Deno.mkdirSync(`${root}/sub`, { recursive: true });
  Deno.writeTextFileSync(`${root}/hello.txt`, "hello, 9p\n");
  Deno.writeTextFileSync(`${dir}/secret.txt`, "outside");
  Deno.symlinkSync("../secret.txt", `${root}/out-link`);
  Deno.symlinkSync("hello.txt", `${root}/in-link`);
  Deno.symlinkSync(dir, `${root}/sub/up-dir`);
  const host = fakeHost({
    memSize: 0x200_0000,
    options: {
      path: root,
      tag: "hostshare",
      ro: String(opts.ro === true),
      base: String(BASE),
      irq: String(IRQ),
    },
  });
  const device = p9Plugin.create(host);
  const drv = new VirtioTestDriver(device, host.memory);
  drv.init();
  const c = new Client(drv, host.memory);
  const v = c.ok(T.version, new Msg().u32(65536).str("9P2000.L"));
  assertEquals(v.u32(), 65536);
  assertEquals(v.str(), "9P2000.L");
  const a = c.ok(T.attach, new Msg().u32(0).u32(P9_NOFID).str("root").str("").u32(0));
  assertEquals(a.qid().type, QT_DIR);
  const done = () => {
    device.close?.();
    Deno.removeSync(dir, { recursive: true });
  };
  return { dir, root, host, device, drv, c, done };
}

Deno.test("virtio-9p: device id, the mount tag feature and config", () => {
  const { drv, done } = setup();
  try {
    assertEquals(drv.r(REG.DeviceID), VIRTIO_ID_9P);
    assert((drv.deviceFeatures() & (1n << BigInt(VIRTIO_9P_MOUNT_TAG))) !== 0n);
    const len = drv.r(REG.Config, 2);
    assertEquals(len, 9);
    const tag = Array.from({ length: len }, (_, i) => drv.r(REG.Config + 2 + i, 1));
    assertEquals(String.fromCharCode(...tag), "hostshare");
  } finally {
    done();
  }
});

Deno.test("virtio-9p: walk, getattr, lopen, read, readdir", () => {
  const { c, done } = setup();
  try {
    const w = c.walk(0, 1, ["hello.txt"]);
    assert(typeof w !== "number");
    assertEquals((w as Rd).u16(), 1);
    const g = c.ok(T.getattr, new Msg().u32(1).u64(0x7ff));
    g.u64();
    g.qid();
    const mode = g.u32();
    assertEquals(mode & 0o170000, 0o100000);
    g.u32(), g.u32(), g.u64(), g.u64();
    assertEquals(g.u64(), 10); // size
    assert(typeof c.lopen(1, 0) !== "number");
    assertEquals(dec.decode(c.read(1, 0, 100)), "hello, 9p\n");
    assertEquals(dec.decode(c.read(1, 7, 2)), "9p");
    c.clunk(1);
    assertEquals(c.walk(0, 2, ["nope"]), E.ENOENT);
    // A partial walk answers the qids it got and makes no fid.
    const p = c.walk(0, 2, ["sub", "nope"]) as Rd;
    assertEquals(p.u16(), 1);
    assertEquals(c.rpc(T.clunk, new Msg().u32(2)), E.EBADF);
    assert(typeof c.walk(0, 3, []) !== "number"); // clone
    assert(typeof c.lopen(3, 0) !== "number");
    const names = c.readdir(3).sort();
    assertEquals(names, [".", "..", "hello.txt", "in-link", "out-link", "sub"]);
    const l = c.walk(0, 4, ["in-link"]) as Rd;
    l.u16();
    assertEquals(l.qid().type, QT_SYMLINK);
    assertEquals(c.ok(T.readlink, new Msg().u32(4)).str(), "hello.txt");
    assertEquals(c.rpc(T.xattrwalk, new Msg().u32(0).u32(9).str("user.x")), E.EOPNOTSUPP);
    assertEquals(c.rpc(250, new Msg()), E.EOPNOTSUPP);
    c.ok(T.flush, new Msg().u16(1));
    const s = c.ok(T.statfs, new Msg().u32(0));
    assertEquals(s.u32(), 0x01021997);
  } finally {
    done();
  }
});

Deno.test("virtio-9p: lcreate, write, mkdir, rename, setattr, unlink reach the host", () => {
  const { root, c, done } = setup();
  try {
    c.ok(T.walk, new Msg().u32(0).u32(1).u16(0));
    c.ok(T.lcreate, new Msg().u32(1).str("new.txt").u32(2).u32(0o644).u32(0));
    assertEquals((c.write(1, 0, enc.encode("made it")) as Rd).u32(), 7);
    c.ok(T.fsync, new Msg().u32(1).u32(0));
    assertEquals(Deno.readTextFileSync(`${root}/new.txt`), "made it");
    c.ok(
      T.setattr,
      new Msg().u32(1).u32(8).u32(0).u32(0).u32(0).u64(4).u64(0).u64(0).u64(0).u64(0),
    );
    assertEquals(Deno.readTextFileSync(`${root}/new.txt`), "made");
    c.ok(
      T.setattr,
      new Msg().u32(1).u32(1).u32(0o600).u32(0).u32(0).u64(0).u64(0).u64(0).u64(0).u64(0),
    );
    assertEquals(Deno.statSync(`${root}/new.txt`).mode! & 0o777, 0o600);
    c.ok(T.mkdir, new Msg().u32(0).str("d").u32(0o755).u32(0));
    assert(Deno.statSync(`${root}/d`).isDirectory);
    assertEquals(c.rpc(T.renameat, new Msg().u32(0).str("new.txt").u32(0).str("d/x")), E.EINVAL);
    assertEquals(c.rpc(T.renameat, new Msg().u32(0).str("d").u32(0).str("..")), E.EINVAL);
    c.ok(T.walk, new Msg().u32(0).u32(2).u16(1).str("d"));
    c.ok(T.renameat, new Msg().u32(0).str("new.txt").u32(2).str("x")); // fid 1 follows it
    assertEquals(Deno.readTextFileSync(`${root}/d/x`), "made");
    // fid 1 is d/x now: a write through it lands there.
    c.write(1, 4, enc.encode("!"));
    assertEquals(Deno.readTextFileSync(`${root}/d/x`), "made!");
    c.clunk(1);
    assertEquals(c.rpc(T.unlinkat, new Msg().u32(0).str("d").u32(0)), E.EISDIR);
    assertEquals(c.rpc(T.unlinkat, new Msg().u32(0).str("d").u32(0x200)), E.ENOTEMPTY);
    c.ok(T.unlinkat, new Msg().u32(2).str("x").u32(0));
    c.ok(T.unlinkat, new Msg().u32(0).str("d").u32(0x200));
    assertEquals(Deno.readDirSync(root).some((e) => e.name === "d"), false);
    c.ok(T.symlink, new Msg().u32(0).str("ln").str("hello.txt").u32(0));
    assertEquals(Deno.readLinkSync(`${root}/ln`), "hello.txt");
  } finally {
    done();
  }
});

Deno.test("virtio-9p: .. and symlinks cannot leave the share", () => {
  const { dir, c, done } = setup();
  try {
    // ".." at the root stays at the root.
    const up = c.walk(0, 1, ["..", "..", "hello.txt"]) as Rd;
    assertEquals(up.u16(), 3);
    c.lopen(1, 0);
    assertEquals(dec.decode(c.read(1, 0, 5)), "hello");
    // "../secret.txt" is the root's own (missing) secret.txt: a partial walk, no fid.
    assertEquals((c.walk(0, 2, ["..", "secret.txt"]) as Rd).u16(), 1);
    assertEquals(c.rpc(T.clunk, new Msg().u32(2)), E.EBADF);
    assertEquals(c.walk(0, 2, ["a/b"]), E.ENOENT);
    // A symlink to outside: walking to it works (it is a symlink), opening it does not.
    c.ok(T.walk, new Msg().u32(0).u32(3).u16(1).str("out-link"));
    assertEquals(c.lopen(3, 0), E.EACCES);
    // Truncating through it changes nothing outside (a symlink's own size is left alone).
    c.ok(
      T.setattr,
      new Msg().u32(3).u32(8).u32(0).u32(0).u32(0).u64(0).u64(0).u64(0).u64(0).u64(0),
    );
    // A symlink to inside opens.
    c.ok(T.walk, new Msg().u32(0).u32(4).u16(1).str("in-link"));
    assert(typeof c.lopen(4, 0) !== "number");
    // Walking through a symlink to a directory outside is refused.
    assertEquals(c.walk(0, 5, ["sub", "up-dir", "secret.txt"]) instanceof Rd, true);
    assertEquals(c.rpc(T.clunk, new Msg().u32(5)), E.EBADF); // partial: no fid 5
    // Creating through a symlinked directory is refused.
    c.ok(T.walk, new Msg().u32(0).u32(6).u16(2).str("sub").str("up-dir"));
    assertEquals(c.rpc(T.lcreate, new Msg().u32(6).str("x").u32(1).u32(0o644).u32(0)), E.EACCES);
    assertEquals(c.rpc(T.mkdir, new Msg().u32(6).str("x").u32(0o755).u32(0)), E.EACCES);
    assertEquals(c.rpc(T.readdir, new Msg().u32(6).u64(0).u32(100)), E.ENOTDIR);
    // Names with "/" or ".." are refused where a name is created.
    assertEquals(c.rpc(T.mkdir, new Msg().u32(0).str("../x").u32(0o755).u32(0)), E.EINVAL);
    assertEquals(c.rpc(T.lcreate, new Msg().u32(0).str("..").u32(1).u32(0o644).u32(0)), E.EINVAL);
    assertEquals(Deno.readTextFileSync(`${dir}/secret.txt`), "outside");
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["secret.txt", "share"]);
  } finally {
    done();
  }
});

Deno.test("virtio-9p: a read-only share answers changes with EROFS", () => {
  const { root, c, done } = setup({ ro: true });
  try {
    c.ok(T.walk, new Msg().u32(0).u32(1).u16(1).str("hello.txt"));
    assertEquals(c.lopen(1, 2), E.EROFS);
    assertEquals(c.lopen(1, 0o1000), E.EROFS);
    assert(typeof c.lopen(1, 0) !== "number");
    assertEquals(c.write(1, 0, enc.encode("x")), E.EBADF);
    assertEquals(c.rpc(T.lcreate, new Msg().u32(0).str("n").u32(1).u32(0o644).u32(0)), E.EROFS);
    assertEquals(c.rpc(T.mkdir, new Msg().u32(0).str("n").u32(0o755).u32(0)), E.EROFS);
    assertEquals(c.rpc(T.unlinkat, new Msg().u32(0).str("hello.txt").u32(0)), E.EROFS);
    assertEquals(
      c.rpc(T.renameat, new Msg().u32(0).str("hello.txt").u32(0).str("x")),
      E.EROFS,
    );
    assertEquals(c.rpc(T.symlink, new Msg().u32(0).str("s").str("x").u32(0)), E.EROFS);
    assertEquals(Deno.readTextFileSync(`${root}/hello.txt`), "hello, 9p\n");
  } finally {
    done();
  }
});

Deno.test("virtio-9p: fids and open files survive save/restore", () => {
  const { c, device, host, drv, done } = setup();
  try {
    c.ok(T.walk, new Msg().u32(0).u32(1).u16(1).str("hello.txt"));
    c.lopen(1, 0);
    const state = device.save!();
    const device2 = p9Plugin.create(host);
    device2.restore!(state);
    const c2 = new Client(drv.continueOn(device2, host.memory), host.memory);
    assertEquals(dec.decode(c2.read(1, 0, 5)), "hello");
    device2.close?.();
  } finally {
    done();
  }
});
