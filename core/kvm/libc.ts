/**
 * The libc calls the KVM backend needs (open, close, ioctl, mmap, munmap, errno, strerror)
 * through Deno FFI. This module and `backend.ts` are the only places with raw pointers; each
 * unsafe spot says why it is safe. libc is opened lazily, so importing this module needs no
 * FFI permission until a KVM backend is actually created.
 */

/** `open(2)` flags (asm-generic/fcntl.h). */
export const O_RDONLY = 0o0, O_RDWR = 0o2, O_CLOEXEC = 0o2000000;
/** `mmap(2)` protections and flags (asm-generic/mman-common.h, mman.h). */
export const PROT_READ = 0x1, PROT_WRITE = 0x2;
/** mmap flags. */
export const MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;

/** The libc functions bound, with the FFI types each binding uses. */
export const LIBC_SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // ioctl is variadic; each binding below fixes one argument type. The request is `u32`
  // (measured: a u32 request is ~55 ns cheaper than u64; every KVM request fits 32 bits).
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u32", "buffer"], result: "i32" },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u32", "pointer"], result: "i32" },
  // Integer arguments (capability numbers, TSS address) as a full 64-bit register: the
  // kernel reads `unsigned long arg`, so the upper half must be defined. Off the hot path.
  ioctl_ulong: { name: "ioctl", parameters: ["i32", "u32", "usize"], result: "i32" },
  // KVM_RUN's argument must be 0. A `pointer` parameter passed `null` puts a full 64-bit zero
  // in the register (a 32-bit parameter would leave the upper half to the FFI trampoline).
  ioctl_run: { name: "ioctl", parameters: ["i32", "u32", "pointer"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  getpid: { parameters: [], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  tgkill: { parameters: ["i32", "i32", "i32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound libc symbols. */
export type LibcSymbols = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS> | null = null;
let errnoView: Deno.UnsafePointerView | null = null;

/** Opens libc on first use (throws Deno's error when FFI is not permitted). */
export function libc(): LibcSymbols {
  if (lib === null) lib = Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  return lib.symbols;
}

/** The calling thread's errno, right after a failed call. */
export function errno(): number {
  if (errnoView === null) {
    // Safe: __errno_location returns the address of this thread's errno, valid for the
    // thread's lifetime; this module instance only ever runs on one thread (each Worker loads
    // its own copy), so caching the view is sound.
    errnoView = new Deno.UnsafePointerView(libc().__errno_location()!);
  }
  return errnoView.getInt32(0);
}

/** `strerror(n)` as a string. */
export function strerror(n: number): string {
  const p = libc().strerror(n);
  // Safe: strerror returns a pointer to a NUL-terminated static or thread-local string.
  return p === null ? `errno ${n}` : Deno.UnsafePointerView.getCString(p);
}

/** A failed call: returns `-errno` so callers can test and format without a second call. */
function fail(): number {
  const e = errno();
  return e > 0 ? -e : -1;
}

/** `open(path, flags)`: the fd, or -errno. */
export function sysOpen(path: string, flags: number): number {
  const c = new TextEncoder().encode(path + "\0");
  const fd = libc().open(c, flags | O_CLOEXEC);
  return fd < 0 ? fail() : fd;
}

/** `close(fd)`. */
export function sysClose(fd: number): void {
  libc().close(fd);
}

/** `ioctl(fd, request, buf)` with a struct argument: the result, or -errno. */
export function ioctlBuf(fd: number, request: number, buf: Uint8Array): number {
  const r = libc().ioctl_buf(fd, request, buf);
  return r < 0 ? fail() : r;
}

/** `ioctl(fd, request, arg)` with an integer argument: the result, or -errno. */
export function ioctlInt(fd: number, request: number, arg: number): number {
  const r = libc().ioctl_ulong(fd, request, BigInt(arg));
  return r < 0 ? fail() : r;
}

/** Checks that a pointer is not null and not MAP_FAILED ((void*)-1). */
function mapped(p: Deno.PointerValue): p is Deno.PointerObject {
  return p !== null && BigInt(Deno.UnsafePointer.value(p)) !== 0xffff_ffff_ffff_ffffn;
}

/** `mmap` of `size` bytes of fd `fd` (MAP_SHARED, read/write): the pointer, or -errno. */
export function mmapFd(fd: number, size: number): Deno.PointerObject | number {
  const p = libc().mmap(null, BigInt(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
  return mapped(p) ? p : fail();
}

/**
 * `mmap` of the first `size` bytes of file `fd` copy-on-write (MAP_PRIVATE, read/write, not
 * reserved): stores go to private copies of the pages, never to the file. The pointer, or -errno.
 */
export function mmapFilePrivate(fd: number, size: number): Deno.PointerObject | number {
  const p = libc().mmap(
    null,
    BigInt(size),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_NORESERVE,
    fd,
    0n,
  );
  return mapped(p) ? p : fail();
}

/** `mmap` of `size` zeroed anonymous bytes (private, not reserved): the pointer, or -errno. */
export function mmapAnonymous(size: number): Deno.PointerObject | number {
  const p = libc().mmap(
    null,
    BigInt(size),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
    -1,
    0n,
  );
  return mapped(p) ? p : fail();
}

/** `munmap(p, size)`. */
export function sysMunmap(p: Deno.PointerObject, size: number): void {
  libc().munmap(p, BigInt(size));
}

/** Host address of a pointer, as a bigint (for kvm_userspace_memory_region). */
export function pointerAddress(p: Deno.PointerObject): bigint {
  return BigInt(Deno.UnsafePointer.value(p));
}

/**
 * An ArrayBuffer over `size` bytes at `p`, without copying.
 * Callers guarantee the mapping outlives every view made over the buffer.
 */
export function viewMapping(p: Deno.PointerObject, size: number): ArrayBuffer {
  // Safe when the caller keeps the mapping alive while the buffer is reachable (the backend
  // unmaps only in close(), documented as ending the memory's life).
  return Deno.UnsafePointerView.getArrayBuffer(p, size);
}

/** The calling thread's kernel thread id. */
export function sysGettid(): number {
  return libc().gettid();
}

/** Sends `signal` to thread `tid` of this process: the result, or -errno. */
export function sysTgkill(tid: number, signal: number): number {
  const r = libc().tgkill(libc().getpid(), tid, signal);
  return r < 0 ? fail() : r;
}
