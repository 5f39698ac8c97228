/**
 * Runs a routine from a guest image on the host CPU, as an oracle where KVM cannot run the
 * guest: the image is copied into an anonymous RWX mapping and the routine (System V ABI,
 * position-independent, user-mode instructions only) is called through FFI with a pointer to a
 * fresh, 16-byte-aligned work area and a 32-bit count. A routine that faults kills the process,
 * so only guards-checked code (no #DE, #GP or #UD on any input) belongs here.
 *
 * This is the only module of the tests that makes raw pointers.
 */

const PROT_RWX = 0x7; // PROT_READ | PROT_WRITE | PROT_EXEC
const PROT_RW = 0x3;
const MAP_PRIVATE_ANONYMOUS = 0x22; // MAP_PRIVATE (0x02) | MAP_ANONYMOUS (0x20)
const MAP_FAILED = 0xffff_ffff_ffff_ffffn; // (void *)-1
const PAGE = 4096;

/** Why the host CPU cannot be an oracle here, or null when it can. */
export function hostCpuUnavailable(): string | null {
  if (Deno.build.arch !== "x86_64") return `the host CPU is ${Deno.build.arch}, not x86-64`;
  if (Deno.build.os !== "linux") return `mmap through libc needs Linux, not ${Deno.build.os}`;
  return null;
}

/**
 * Calls the routine at `entry` (a byte offset into `image`) as `f(area, count)` on the host CPU
 * and returns the `areaSize`-byte work area afterwards (it starts zeroed).
 */
export function runOnHostCpu(
  image: Uint8Array,
  opts: { entry: number; count: number; areaSize: number },
): Uint8Array {
  const why = hostCpuUnavailable();
  if (why) throw new Error(`Cannot run guest code on the host CPU: ${why}`);
  if (!(opts.entry >= 0 && opts.entry < image.length)) {
    throw new RangeError(`Entry offset ${opts.entry} is outside the ${image.length}-byte image`);
  }
  const libc = Deno.dlopen("libc.so.6", {
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
  });
  const codeLen = Math.ceil(image.length / PAGE) * PAGE;
  const areaLen = Math.ceil(opts.areaSize / PAGE) * PAGE;
  const map = (len: number, prot: number): Deno.PointerObject => {
    const p = libc.symbols.mmap(null, BigInt(len), prot, MAP_PRIVATE_ANONYMOUS, -1, 0n);
    if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) {
      throw new Error(`mmap of ${len} bytes failed: the host refuses anonymous mappings`);
    }
    return p;
  };
  const code = map(codeLen, PROT_RWX);
  try {
    const area = map(areaLen, PROT_RW);
    try {
      // Safe: both views cover exactly the mappings just made, page-aligned (so is the area).
      new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(code, codeLen)).set(image);
      const fn = new Deno.UnsafeFnPointer(
        Deno.UnsafePointer.offset(code, opts.entry)!,
        { parameters: ["pointer", "u32"], result: "void" } as const,
      );
      fn.call(area, opts.count);
      return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(area, opts.areaSize)).slice();
    } finally {
      libc.symbols.munmap(area, BigInt(areaLen));
    }
  } finally {
    libc.symbols.munmap(code, BigInt(codeLen));
    libc.close();
  }
}
