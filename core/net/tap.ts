/**
 * A Linux TAP interface (`--net tap=NAME`): `/dev/net/tun` opened through libc (FFI, as the KVM
 * backend opens `/dev/kvm`), attached to interface NAME with `TUNSETIFF` (`IFF_TAP |
 * IFF_NO_PI`: whole Ethernet frames, no packet-information prefix). The interface is created
 * if it does not exist (that needs CAP_NET_ADMIN) or, made persistent beforehand (`ip tuntap
 * add dev NAME mode tap user $USER`), attached by its owner without root. The descriptor is
 * non-blocking: `wait` polls it on Deno's FFI thread pool (so the main thread's event loop
 * stays free) and `read` takes the frames that are there.
 *
 * @module
 */

import { VmmError } from "../errors.ts";

const O_RDWR = 2, O_NONBLOCK = 0x800, O_CLOEXEC = 0x8_0000;
const TUNSETIFF = 0x4004_54ca;
const IFF_TAP = 0x0002, IFF_NO_PI = 0x1000;
const IFNAMSIZ = 16;
const POLLIN = 1;
const EAGAIN = 11, EINTR = 4;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u32", "buffer"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  poll: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Lib | null = null;
function libc(): Lib {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return lib;
}

function errno(l: Lib): number {
  const p = l.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

function describe(l: Lib, e: number): string {
  const p = l.strerror(e);
  return p === null ? `errno ${e}` : Deno.UnsafePointerView.getCString(p);
}

/** An open TAP interface. */
export interface Tap {
  readonly name: string;
  /** Resolves true once a frame can be read (false after `timeoutMs`). */
  wait(timeoutMs: number): Promise<boolean>;
  /** The next frame, or null when none waits. */
  read(): Uint8Array | null;
  /** Sends `frame` to the host's side (dropped when the interface is down or busy). */
  write(frame: Uint8Array): void;
  close(): void;
}

/** Opens `/dev/net/tun` and attaches it to TAP interface `name`; a VmmError says why not. */
export function openTap(name: string): Tap {
  const enc = new TextEncoder().encode(name);
  if (enc.length === 0 || enc.length >= IFNAMSIZ || enc.includes(0)) {
    throw new VmmError(`--net tap=${name}: an interface name has 1 to 15 bytes`);
  }
  const l = libc();
  const fd = l.open(new TextEncoder().encode("/dev/net/tun\0"), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    throw new VmmError(`--net tap=${name}: cannot open /dev/net/tun: ${describe(l, errno(l))}`);
  }
  const ifr = new Uint8Array(40); // struct ifreq: name[16], flags (short)
  ifr.set(enc);
  new DataView(ifr.buffer).setUint16(IFNAMSIZ, IFF_TAP | IFF_NO_PI, true);
  if (l.ioctl(fd, TUNSETIFF, ifr) < 0) {
    const e = errno(l);
    l.close(fd);
    throw new VmmError(
      `--net tap=${name}: TUNSETIFF failed: ${describe(l, e)} (creating an interface needs ` +
        `CAP_NET_ADMIN; without it make one first: ip tuntap add dev ${name} mode tap user ` +
        `$USER)`,
    );
  }
  const buf = new Uint8Array(0x1_0000 + 64);
  const pollfd = new Uint8Array(8);
  const pv = new DataView(pollfd.buffer);
  let open = true;
  /** A poll in flight on the FFI thread: the descriptor is closed only after it returns. */
  let polling: Promise<unknown> | null = null;
  return {
    name,
    async wait(timeoutMs) {
      if (!open) return false;
      pv.setInt32(0, fd, true);
      pv.setInt16(4, POLLIN, true);
      pv.setInt16(6, 0, true);
      const p = l.poll(pollfd, 1n, Math.max(0, Math.floor(timeoutMs)));
      polling = p;
      const n = await p;
      polling = null;
      return open && n > 0 && (pv.getInt16(6, true) & POLLIN) !== 0;
    },
    read() {
      if (!open) return null;
      for (;;) {
        const n = Number(l.read(fd, buf, BigInt(buf.length)));
        if (n >= 0) return buf.slice(0, n);
        const e = errno(l);
        if (e === EINTR) continue;
        if (e === EAGAIN) return null;
        throw new Error(`read from tap ${name}: ${describe(l, e)}`);
      }
    },
    write(frame) {
      if (open) l.write(fd, frame, BigInt(frame.length)); // a failed write is a dropped frame
    },
    close() {
      if (!open) return;
      open = false;
      if (polling === null) l.close(fd);
      else polling.then(() => l.close(fd));
    },
  };
}
