/**
 * The host CPU as the differential tester's oracle: a low mapping (at the first free base of
 * `candidateBases()`, below 2 GiB) holds a small harness that, for each case of a batch, loads
 * GPRs, RFLAGS, GS base and the FXSAVE image (x87, MXCSR, XMM) from the case's state block, runs
 * the instruction, and stores everything back. One FFI call runs a whole batch. Generated cases
 * must never fault: a fault here kills the process.
 *
 * This module is the only one in tools/difftest that touches raw pointers.
 */

import { HostError } from "../../core/errors.ts";
import {
  candidateBases,
  checkBase,
  CODE_STRIDE,
  codeSlotAddress,
  DATA_SIZE,
  dataAddress,
  END_SLOT_OFFSET,
  HARNESS_OFFSET,
  HARNESS_STACK_TOP_OFFSET,
  HOST_FX_OFFSET,
  HOST_GS_OFFSET,
  HOST_RSP_OFFSET,
  INSN_OFFSET,
  insnAddress,
  NEXT_SLOT_OFFSET,
  PAD_SIZE,
  REGION_SIZE,
  SLOT_COUNT,
  ST_IN_FX,
  ST_IN_GPR,
  ST_IN_GSBASE,
  ST_IN_RFLAGS,
  ST_OUT_FX,
  ST_OUT_GPR,
  ST_OUT_RFLAGS,
  ST_OUT_RIP,
  stateAddress,
  STORE_OFFSET,
} from "./layout.ts";
import type { TestCase, UserState } from "./state.ts";

const PROT_RWX = 0x7; // PROT_READ | PROT_WRITE | PROT_EXEC
const MAP_PRIVATE_ANONYMOUS = 0x22; // MAP_PRIVATE (0x02) | MAP_ANONYMOUS (0x20)
const MAP_FIXED_NOREPLACE = 0x10_0000; // linux/mman.h, Linux >= 4.17
const MAP_FAILED = 0xffff_ffff_ffff_ffffn; // (void *)-1
const EEXIST = 17; // asm-generic/errno-base.h: MAP_FIXED_NOREPLACE found the range in use
const AT_HWCAP2 = 26; // elf.h
const HWCAP2_FSGSBASE = 1 << 1; // asm/hwcap2.h: user space may use RDGSBASE/WRGSBASE

/** FXSAVE image offsets (Intel SDM Vol. 1, Table 10-2). */
const FX_FCW = 0, FX_FSW = 2, FX_FTW = 4, FX_MXCSR = 24, FX_ST = 32, FX_XMM = 160;

const NOP = 0x90;

/** A tiny assembler for the harness: only the few encodings the harness needs. */
class Asm {
  readonly bytes: number[] = [];
  constructor(readonly origin: number) {}
  get here(): number {
    return this.origin + this.bytes.length;
  }
  emit(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  u32(v: number): this {
    return this.emit(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  /** ModRM + SIB for an absolute [disp32] operand (mod=00, rm=100, SIB base=101 index=100). */
  abs(reg: number, addr: number): this {
    return this.emit(((reg & 7) << 3) | 4, 0x25).u32(low31(addr));
  }
  /** mov r64, [abs] */
  loadGpr(r: number, addr: number): this {
    return this.emit(0x48 | (r >= 8 ? 4 : 0), 0x8b).abs(r, addr);
  }
  /** mov [abs], r64 */
  storeGpr(r: number, addr: number): this {
    return this.emit(0x48 | (r >= 8 ? 4 : 0), 0x89).abs(r, addr);
  }
  /** mov rsp, imm32 (sign-extended) */
  movRspImm(v: number): this {
    return this.emit(0x48, 0xc7, 0xc4).u32(low31(v));
  }
  fxsave64(addr: number): this {
    return this.emit(0x48, 0x0f, 0xae).abs(0, addr);
  }
  fxrstor64(addr: number): this {
    return this.emit(0x48, 0x0f, 0xae).abs(1, addr);
  }
  /** jmp rel32 to an absolute target. */
  jmp(target: number): this {
    this.emit(0xe9);
    return this.u32(target - (this.here + 4));
  }
  /** A landing pad: mov dword [rip_out], <own address>; jmp store. */
  pad(ripOut: number, store: number): this {
    const self = this.here;
    this.emit(0xc7).abs(0, ripOut).u32(low31(self));
    return this.jmp(store);
  }
}

/**
 * An address the harness encodes as a sign-extended imm32/disp32 (or stores as a dword): it must
 * be below 2 GiB, which REGION_LIMIT guarantees for the whole region.
 */
function low31(addr: number): number {
  if (!Number.isInteger(addr) || addr < 0 || addr >= 0x8000_0000) {
    throw new RangeError(`difftest harness address 0x${addr.toString(16)} is not below 2 GiB`);
  }
  return addr;
}

/** Result of running a batch natively: the state after each case, in order. */
export type NativeResults = UserState[];

/** Options for `NativeOracle.open`. */
export interface NativeOracleOptions {
  /** Path of the C library to take mmap from (default "libc.so.6"). */
  libc?: string;
  /** Region bases to try, in order (default `candidateBases()`); the first free one is used. */
  bases?: readonly number[];
}

/**
 * Runs test cases on the host CPU. `open()` maps a region at the first free candidate base (so
 * any number of oracles can be open in one process, on any thread) and keeps it until
 * `close()`. Cases must be generated for its `base` (`new Generator(seed, classes, { base })`).
 *
 * @example
 * ```ts ignore
 * const oracle = NativeOracle.open();
 * const gen = new Generator(1, CLASS_NAMES, { base: oracle.base });
 * const after = oracle.run(gen.batch(16));
 * oracle.close();
 * ```
 */
export class NativeOracle {
  readonly #lib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS>;
  readonly #mem: Uint8Array;
  readonly #view: DataView;
  readonly #entry: Deno.UnsafeFnPointer<{ parameters: []; result: "void" }>;
  /** Where the region is mapped (a multiple of REGION_ALIGN below REGION_LIMIT). */
  readonly base: number;
  /** True when the host lets user code set GS base (cases may use GS-relative operands). */
  readonly gsBaseWritable: boolean;

  private constructor(
    lib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS>,
    mem: Uint8Array,
    base: number,
    gs: boolean,
  ) {
    this.#lib = lib;
    this.#mem = mem;
    this.#view = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    this.base = base;
    this.gsBaseWritable = gs;
    this.#buildHarness();
    this.#entry = new Deno.UnsafeFnPointer(
      Deno.UnsafePointer.create(BigInt(base + HARNESS_OFFSET))!,
      { parameters: [], result: "void" } as const,
    );
  }

  /**
   * Maps the region at the first free base of `options.bases` and writes the harness. Throws
   * HostError where that cannot work.
   */
  static open(options: NativeOracleOptions = {}): NativeOracle {
    if (Deno.build.arch !== "x86_64" || Deno.build.os !== "linux") {
      throw new HostError(
        `The native oracle runs x86-64 code on the host CPU and needs x86-64 Linux; ` +
          `this host is ${Deno.build.os}/${Deno.build.arch}`,
      );
    }
    const lib = Deno.dlopen(options.libc ?? "libc.so.6", LIBC_SYMBOLS);
    const gs = (Number(lib.symbols.getauxval(BigInt(AT_HWCAP2))) & HWCAP2_FSGSBASE) !== 0;
    const bases = options.bases ?? candidateBases();
    for (const base of bases) {
      try {
        checkBase(base);
      } catch (err) {
        lib.close();
        throw err;
      }
      const p = lib.symbols.mmap(
        Deno.UnsafePointer.create(BigInt(base)),
        BigInt(REGION_SIZE),
        PROT_RWX,
        MAP_PRIVATE_ANONYMOUS | MAP_FIXED_NOREPLACE,
        -1,
        0n,
      );
      const got = BigInt.asUintN(64, BigInt(Deno.UnsafePointer.value(p)));
      if (got === BigInt(base)) {
        // Safe: the pointer is the REGION_SIZE mapping we just created and own until close().
        const buf = Deno.UnsafePointerView.getArrayBuffer(p!, REGION_SIZE);
        return new NativeOracle(lib, new Uint8Array(buf), base, gs);
      }
      if (got !== MAP_FAILED) {
        // A kernel without MAP_FIXED_NOREPLACE (before 4.17) took the address as a mere hint
        // and mapped elsewhere: the base is in use. Give that mapping back and try the next.
        if (p !== null) lib.symbols.munmap(p, BigInt(REGION_SIZE));
        continue;
      }
      const errno = new Deno.UnsafePointerView(lib.symbols.__errno_location()!).getInt32();
      if (errno === EEXIST) continue; // another mapping (another oracle?) holds this base
      lib.close();
      throw new HostError(
        `Cannot map the difftest region at 0x${base.toString(16)} (${REGION_SIZE} bytes, RWX): ` +
          `mmap failed with errno ${errno}. The kernel may forbid executable anonymous memory ` +
          `(W^X policy) or limit this process's address space.`,
      );
    }
    lib.close();
    const range = bases.length
      ? ` from 0x${bases[0]!.toString(16)} to 0x${bases[bases.length - 1]!.toString(16)}`
      : "";
    throw new HostError(
      `Cannot map the difftest region (${REGION_SIZE} bytes, RWX): all ${bases.length} ` +
        `candidate bases${range} are in use by other mappings`,
    );
  }

  /** Unmaps the region; the oracle cannot be used afterwards. */
  close(): void {
    this.#lib.symbols.munmap(Deno.UnsafePointer.create(BigInt(this.base)), BigInt(REGION_SIZE));
    this.#lib.close();
  }

  /** The whole mapping, as guest memory at `base` should mirror it (read-only use). */
  get region(): Uint8Array {
    return this.#mem;
  }

  #write(addr: number, bytes: ArrayLike<number>): void {
    this.#mem.set(bytes, addr - this.base);
  }

  #buildHarness(): void {
    const base = this.base;
    const code = base + HARNESS_OFFSET;
    const hostFx = base + HOST_FX_OFFSET, hostRsp = base + HOST_RSP_OFFSET;
    const hostGs = base + HOST_GS_OFFSET;
    const nextSlot = base + NEXT_SLOT_OFFSET, endSlot = base + END_SLOT_OFFSET;
    const stackTop = base + HARNESS_STACK_TOP_OFFSET;
    const h = new Asm(code);
    // entry: save callee-saved registers, host RSP, FPU/SSE state and GS base.
    h.emit(0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57);
    h.storeGpr(4, hostRsp);
    h.fxsave64(hostFx);
    if (this.gsBaseWritable) {
      h.emit(0xf3, 0x48, 0x0f, 0xae, 0xc0); // rdgsbase rax
      h.storeGpr(0, hostGs);
    }
    const dispatch = h.here;
    h.loadGpr(0, nextSlot);
    h.emit(0x48, 0x3b).abs(0, endSlot); // cmp rax, [END_SLOT]
    const jae = h.bytes.length;
    h.emit(0x0f, 0x83).u32(0); // jae exit (patched)
    h.emit(0x48, 0x81).abs(0, nextSlot).u32(CODE_STRIDE); // add qword [NEXT_SLOT], CODE_STRIDE
    h.emit(0xff, 0xe0); // jmp rax
    const exit = h.here;
    const rel = exit - (code + jae + 6);
    h.bytes.splice(jae + 2, 4, rel & 0xff, (rel >>> 8) & 0xff, (rel >>> 16) & 0xff, rel >>> 24);
    h.loadGpr(4, hostRsp);
    h.fxrstor64(hostFx);
    if (this.gsBaseWritable) {
      h.loadGpr(0, hostGs);
      h.emit(0xf3, 0x48, 0x0f, 0xae, 0xd8); // wrgsbase rax
    }
    h.emit(0xfc); // cld: the ABI wants DF clear on return
    h.emit(0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3);
    this.#write(code, h.bytes);

    for (let i = 0; i < SLOT_COUNT; i++) {
      const slot = codeSlotAddress(i, base);
      const st = stateAddress(i, base);
      const load = new Asm(slot);
      load.movRspImm(stackTop);
      load.fxrstor64(st + ST_IN_FX);
      if (this.gsBaseWritable) {
        load.loadGpr(0, st + ST_IN_GSBASE);
        load.emit(0xf3, 0x48, 0x0f, 0xae, 0xd8); // wrgsbase rax
      }
      load.emit(0xff).abs(6, st + ST_IN_RFLAGS); // push qword [in.rflags]
      load.emit(0x9d); // popfq
      for (let r = 0; r < 16; r++) load.loadGpr(r, st + ST_IN_GPR + 8 * r);
      if (load.bytes.length > INSN_OFFSET) throw new Error("difftest harness load code too long");
      while (load.bytes.length < INSN_OFFSET) load.emit(NOP);
      this.#write(slot, load.bytes);

      const store = new Asm(slot + STORE_OFFSET);
      for (let r = 0; r < 16; r++) store.storeGpr(r, st + ST_OUT_GPR + 8 * r);
      store.movRspImm(stackTop);
      store.emit(0x9c); // pushfq
      store.emit(0x8f).abs(0, st + ST_OUT_RFLAGS); // pop qword [out.rflags]
      store.fxsave64(st + ST_OUT_FX);
      store.jmp(dispatch);
      if (STORE_OFFSET + store.bytes.length > CODE_STRIDE) {
        throw new Error("difftest harness store code too long");
      }
      this.#write(slot + STORE_OFFSET, store.bytes);
    }
  }

  /** Writes the instruction and its landing pads into slot `i`'s code. */
  #placeCode(i: number, c: TestCase): void {
    const slot = codeSlotAddress(i, this.base);
    const ripOut = stateAddress(i, this.base) + ST_OUT_RIP;
    const store = slot + STORE_OFFSET;
    const off = slot - this.base;
    this.#mem.fill(NOP, off + INSN_OFFSET, off + STORE_OFFSET);
    this.#mem.set(c.bytes, off + INSN_OFFSET);
    const pads = [slot + INSN_OFFSET + c.bytes.length, ...c.targets, store - PAD_SIZE];
    for (const addr of pads) {
      if (addr < slot + INSN_OFFSET + c.bytes.length || addr > store - PAD_SIZE) {
        throw new RangeError(
          `Case "${c.mnemonic}" wants a landing pad at 0x${
            addr.toString(16)
          }, outside slot ${i}'s ` +
            `code window; the generator must keep branch targets inside lastPadAddress()`,
        );
      }
      this.#write(addr, new Asm(addr).pad(ripOut, store).bytes);
    }
  }

  #placeState(i: number, s: UserState): void {
    const v = this.#view;
    const st = stateAddress(i, this.base) - this.base;
    for (let r = 0; r < 16; r++) v.setBigUint64(st + ST_IN_GPR + 8 * r, s.gpr[r] ?? 0n, true);
    v.setBigUint64(st + ST_IN_RFLAGS, BigInt(s.rflags), true);
    v.setBigUint64(st + ST_IN_GSBASE, s.gsBase, true);
    const fx = st + ST_IN_FX;
    this.#mem.fill(0, fx, fx + 512);
    v.setUint16(fx + FX_FCW, s.x87.fcw, true);
    v.setUint16(fx + FX_FSW, s.x87.fsw, true);
    v.setUint8(fx + FX_FTW, s.x87.ftw);
    v.setUint32(fx + FX_MXCSR, s.mxcsr, true);
    this.#mem.set(s.x87.st, fx + FX_ST);
    this.#mem.set(s.xmm, fx + FX_XMM);
    v.setBigUint64(st + ST_OUT_RIP, 0n, true);
    this.#mem.set(s.data, dataAddress(i, this.base) - this.base);
  }

  #readState(i: number, c: TestCase): UserState {
    const v = this.#view;
    const m = this.#mem;
    const st = stateAddress(i, this.base) - this.base;
    const gpr: bigint[] = [];
    for (let r = 0; r < 16; r++) gpr.push(v.getBigUint64(st + ST_OUT_GPR + 8 * r, true));
    const fx = st + ST_OUT_FX;
    const d = dataAddress(i, this.base) - this.base;
    return {
      gpr,
      rflags: Number(v.getBigUint64(st + ST_OUT_RFLAGS, true) & 0xffff_ffffn),
      rip: v.getBigUint64(st + ST_OUT_RIP, true),
      gsBase: c.state.gsBase,
      xmm: m.slice(fx + FX_XMM, fx + FX_XMM + 256),
      mxcsr: v.getUint32(fx + FX_MXCSR, true),
      x87: {
        fcw: v.getUint16(fx + FX_FCW, true),
        fsw: v.getUint16(fx + FX_FSW, true),
        ftw: v.getUint8(fx + FX_FTW),
        st: m.slice(fx + FX_ST, fx + FX_ST + 128),
      },
      data: m.slice(d, d + DATA_SIZE),
    };
  }

  /** Refuses a case not laid out for slot `i` of this oracle's region. */
  #checkCase(i: number, c: TestCase): void {
    if (c.base !== this.base) {
      throw new RangeError(
        `Case "${c.mnemonic}" was generated for the region at 0x${c.base.toString(16)}, but ` +
          `this oracle's region is at 0x${this.base.toString(16)}; generate cases with ` +
          `{ base: oracle.base }`,
      );
    }
    const rip = insnAddress(i, this.base);
    if (c.state.rip !== BigInt(rip)) {
      throw new RangeError(
        `Case "${c.mnemonic}" starts at RIP 0x${c.state.rip.toString(16)}, but slot ${i}'s ` +
          `instruction runs at 0x${rip.toString(16)}`,
      );
    }
  }

  /**
   * Copies the cases into their slots (code, state, data) without running them: after this,
   * `region` is what guest memory at `base` must mirror for the interpreter to see the same
   * bytes.
   */
  prepare(cases: readonly TestCase[]): void {
    if (cases.length > SLOT_COUNT) {
      throw new RangeError(`A native batch holds at most ${SLOT_COUNT} cases, got ${cases.length}`);
    }
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i]!;
      if (c.slot !== i) {
        throw new RangeError(
          `Case "${c.mnemonic}" was generated for slot ${c.slot} but is at batch index ${i}; ` +
            `generate each batch with slots 0, 1, 2, ...`,
        );
      }
      this.#checkCase(i, c);
      if (c.state.data.length !== DATA_SIZE) {
        throw new RangeError(`Case data must be ${DATA_SIZE} bytes, got ${c.state.data.length}`);
      }
      if (c.state.gsBase !== 0n && !this.gsBaseWritable) {
        throw new RangeError(`Case "${c.mnemonic}" sets GS base, but this host forbids WRGSBASE`);
      }
      this.#placeCode(i, c);
      this.#placeState(i, c.state);
    }
  }

  /** Runs cases prepared with `prepare` on the host CPU and returns their states after. */
  execute(cases: readonly TestCase[]): NativeResults {
    const v = this.#view;
    v.setBigUint64(NEXT_SLOT_OFFSET, BigInt(codeSlotAddress(0, this.base)), true);
    v.setBigUint64(END_SLOT_OFFSET, BigInt(codeSlotAddress(cases.length, this.base)), true);
    this.#entry.call();
    const out: UserState[] = [];
    for (let i = 0; i < cases.length; i++) out.push(this.#readState(i, cases[i]!));
    return out;
  }

  /**
   * Runs one case alone in its own slot (`c.slot`), leaving other slots untouched: used to
   * confirm a divergence, since a signal delivered while a case runs could in principle disturb
   * the host's result.
   */
  runOne(c: TestCase): UserState {
    if (c.slot < 0 || c.slot >= SLOT_COUNT) {
      throw new RangeError(`Case slot ${c.slot} is outside 0..${SLOT_COUNT - 1}`);
    }
    this.#checkCase(c.slot, c);
    this.#placeCode(c.slot, c);
    this.#placeState(c.slot, c.state);
    const v = this.#view;
    const start = codeSlotAddress(c.slot, this.base);
    v.setBigUint64(NEXT_SLOT_OFFSET, BigInt(start), true);
    v.setBigUint64(END_SLOT_OFFSET, BigInt(start + CODE_STRIDE), true);
    this.#entry.call();
    return this.#readState(c.slot, c);
  }

  /** `prepare` then `execute`: the states after each case, on the host CPU. */
  run(cases: readonly TestCase[]): NativeResults {
    this.prepare(cases);
    return this.execute(cases);
  }
}

const LIBC_SYMBOLS = {
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  getauxval: { parameters: ["u64"], result: "u64" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;
