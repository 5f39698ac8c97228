/**
 * Basic-block compiler for the interpreter (the last rung of ARCHITECTURE.md's ladder): a hot
 * straight-line run of instructions is translated once into JavaScript source and compiled with
 * `new Function`, so V8 optimizes it like ordinary code: no per-instruction decode, dispatch or
 * operand-size switches. Common integer instructions get templates; every other instruction is
 * executed through the interpreter (`step`) from inside the block, and the block exits as soon
 * as such an instruction leaves the straight line (branch, fault delivery, I/O stop, mode switch).
 *
 * Blocks are keyed by the RAM offset of their first instruction plus the linear RIP and mode;
 * they never cross a page, and writes to a page holding compiled code drop its blocks (the same
 * code-page tracking as the decode cache). A device's DMA over code marks the page STALE in the
 * shared page-state map; the dispatcher and every loop back to a block's start check its
 * generation counter and end or drop the stale code (`Cpu.pageSync`). Guest exceptions
 * propagate as `FAULT` with `c.startIp` at the faulting instruction, exactly as in the
 * interpreter.
 */

import { type Cpu, FS, PARITY } from "./cpu.ts";
import { alu, alu64, imul32, imul64, incdec, mulDivAx, shift, shift64 } from "./alu.ts";
import {
  DC_SCRATCH,
  DC_STRIDE,
  decode,
  F_BASE,
  F_DISP,
  F_IMM,
  F_IMM2,
  F_INDEX,
  F_LEN,
  F_MODRM,
  F_OP,
  F_PFX,
  F_REG,
  F_RM,
  F_SCALE,
  F_SEG,
} from "./decode.ts";
import { readMemWFor, step } from "./exec.ts";
import { execKnownSse, isSse, xmmDwords } from "./sse.ts";
import { H_GEN } from "../page_state.ts";

/** Block table slots (direct mapped by RAM offset). */
const BT_SIZE = 1 << 16;
const BT_MASK = BT_SIZE - 1;
/**
 * Executions of a block start before it is compiled. Compiling (source generation plus V8's
 * parse and first runs in its own interpreter) only pays off for blocks that run many times: on
 * a Linux boot 400 measured about 15% less CPU than 40 (150 and 1000 were in between).
 */
const HOT_THRESHOLD = 400;
/** Longest block, in instructions. */
const MAX_BLOCK = 48;
/** Instructions a self-looping block runs before returning to the dispatcher. */
const LOOP_BUDGET = 2048;

type BlockFn = (c: Cpu, x: typeof X) => void;

/** Helpers the generated code calls. */
const X = {
  par: PARITY,
  alu,
  alu64,
  imul32,
  imul64,
  mulDivAx,
  sse: execKnownSse,
  xmm: xmmDwords,
  incdec,
  shift,
  shift64,
  rmw: readMemWFor,
  step,
  /** Exact 64-bit linear address of base + index * s + disp (+ FS/GS base when seg >= 0). */
  ea64(c: Cpu, b: number, i: number, s: number, disp: number, seg: number): number {
    let l = disp + (c.lo[i]! >>> 0) * s, h = c.hi[i]! * s;
    if (b >= 0) {
      l += c.lo[b]! >>> 0;
      h += c.hi[b]!;
    }
    if (seg >= 0) l += c.segBase[seg]!;
    const carry = Math.floor(l / 4294967296);
    return ((h + carry) | 0) * 4294967296 + (l - carry * 4294967296);
  },
};

/** A compiled block pushed out of its table slot by another block (kept to avoid recompiling). */
type Spilled = { ip: number; mode: number; len: number; fn: BlockFn };

/** Per-CPU compiled blocks. */
class BlockCache {
  readonly tag = new Float64Array(BT_SIZE).fill(-1);
  readonly ip = new Float64Array(BT_SIZE);
  readonly mode = new Int8Array(BT_SIZE);
  readonly len = new Int32Array(BT_SIZE);
  readonly hot = new Int32Array(BT_SIZE);
  readonly fn: (BlockFn | null)[] = new Array(BT_SIZE).fill(null);
  /**
   * Compiled blocks evicted from their slot by a colliding block, by RAM offset. Without it, two
   * hot blocks sharing a slot recompiled each other over and over (the kernel's text is far
   * larger than the table).
   */
  readonly spill = new Map<number, Spilled>();
  /** Per RAM page: number of its blocks in `spill` (skips the map lookup for most misses). */
  readonly spillPages: Uint32Array;

  constructor(ramPages: number) {
    this.spillPages = new Uint32Array(ramPages);
  }

  invalidatePage(page: number): void {
    const start = page * 4096;
    for (let k = 0; k < 4096; k++) {
      const s = (start + k) & BT_MASK;
      const t = this.tag[s]!;
      if (t >= start && t < start + 4096) {
        this.tag[s] = -1;
        this.fn[s] = null;
      }
    }
    if (this.spillPages[page]! !== 0) {
      for (let k = 0; k < 4096; k++) this.spill.delete(start + k);
      this.spillPages[page] = 0;
    }
  }

  flush(): void {
    this.tag.fill(-1);
    this.fn.fill(null);
    this.hot.fill(0);
    this.spill.clear();
    this.spillPages.fill(0);
  }

  /**
   * Points slot `s` at the block starting at RAM offset `off` (linear `ip`, `mode`): the
   * slot's compiled block, if any, moves to the spill map; a spilled block for `off` moves back.
   */
  claim(s: number, off: number, ip: number, mode: number): void {
    const old = this.fn[s] ?? null;
    if (old !== null) {
      const o = this.tag[s]!;
      this.spill.set(o, { ip: this.ip[s]!, mode: this.mode[s]!, len: this.len[s]!, fn: old });
      this.spillPages[Math.floor(o / 4096)]!++;
    }
    this.tag[s] = off;
    this.ip[s] = ip;
    this.mode[s] = mode;
    const page = Math.floor(off / 4096);
    if (this.spillPages[page]! !== 0) {
      const sp = this.spill.get(off);
      if (sp !== undefined) {
        this.spill.delete(off);
        this.spillPages[page]!--;
        if (sp.ip === ip && sp.mode === mode) {
          this.fn[s] = sp.fn;
          this.len[s] = sp.len;
          return;
        }
      }
    }
    this.fn[s] = null;
    this.hot[s] = 1;
  }
}

const caches = new WeakMap<Cpu, BlockCache>();

function cacheFor(c: Cpu): BlockCache {
  let bc = caches.get(c);
  if (!bc) {
    const made = new BlockCache(c.codePages.length);
    bc = made;
    caches.set(c, made);
    const prev = c.onCodeWrite;
    c.onCodeWrite = (page: number) => {
      prev?.(page);
      made.invalidatePage(page);
    };
    const prevFlush = c.onFlushDecoded;
    c.onFlushDecoded = () => {
      prevFlush?.();
      made.flush();
    };
  }
  return bc;
}

/**
 * Executes about `n` instructions on `cpu`, running compiled blocks where they exist and
 * compiling blocks that become hot. Same contract as `runSlice` in exec.ts.
 */
export function runSliceJit(cpu: Cpu, n: number): void {
  const bc = cacheFor(cpu);
  const start = cpu.icount;
  const gen = cpu.pageGen;
  while (cpu.icount - start < n) {
    // Code a device wrote (maybe from another thread) is dropped before it runs again.
    if (gen[H_GEN] !== cpu.pageGenSeen) cpu.pageSync();
    const ip = cpu.ip;
    let d = ip - cpu.fetchIpBase;
    if (!(d >= 0 && d < 4096)) {
      cpu.startIp = ip; // a fetch fault belongs to the instruction at `ip`
      cpu.fetchRefill();
      d = ip - cpu.fetchIpBase;
    }
    const off = cpu.fetchOff + d;
    const s = off & BT_MASK;
    const mode = cpu.long64 ? 2 : cpu.code32 ? 1 : 0;
    if (bc.tag[s] === off && bc.ip[s] === ip && bc.mode[s] === mode) {
      const fn = bc.fn[s] ?? null;
      if (fn !== null) {
        fn(cpu, X);
        if (cpu.breakLoop) return;
        continue;
      }
      if (++bc.hot[s]! >= HOT_THRESHOLD) {
        const compiled = compileBlock(cpu, ip, off, d);
        bc.fn[s] = compiled.fn;
        bc.len[s] = compiled.len;
        if (compiled.fn === null) bc.hot[s] = -1_000_000; // not worth compiling: stay cold
        else {
          // Run it now: stepping on would reach the next instruction, as hot as this one in a
          // loop, and compile a block there too (one per instruction of a long loop body).
          compiled.fn(cpu, X);
          if (cpu.breakLoop) return;
          continue;
        }
      }
    } else {
      bc.claim(s, off, ip, mode);
      const fn = bc.fn[s] ?? null;
      if (fn !== null) {
        fn(cpu, X);
        if (cpu.breakLoop) return;
        continue;
      }
    }
    step(cpu);
    if (cpu.breakLoop) return;
  }
}

/** Source text of the linear address of the decoded memory operand, or null if not templated. */
function eaExpr(c: Cpu, e: Int32Array, b0: number, asz: number, next: number): string | null {
  const base = e[b0 + F_BASE]!, index = e[b0 + F_INDEX]!, scale = e[b0 + F_SCALE]!;
  const disp = e[b0 + F_DISP]!, seg = e[b0 + F_SEG]!;
  if (c.long64) {
    let expr: string;
    if (asz === 8) {
      if (scale & 4) expr = String(next + disp);
      else if (index >= 0) {
        // A scaled index can wrap modulo 2^64: compute exactly on halves.
        return `X.ea64(c, ${base}, ${index}, ${1 << (scale & 3)}, ${disp}, ${
          seg >= FS ? seg : -1
        })`;
      } else {
        const t: string[] = [];
        if (disp !== 0) t.push(String(disp));
        if (base >= 0) t.push(`((L[${base}] >>> 0) + H[${base}] * 4294967296)`);
        if (index >= 0) {
          t.push(`((L[${index}] >>> 0) + H[${index}] * 4294967296) * ${1 << (scale & 3)}`);
        }
        expr = t.length ? t.join(" + ") : "0";
      }
    } else if (asz === 4) {
      const t: string[] = [String(disp)];
      if (scale & 4) t.push(String(next));
      if (base >= 0) t.push(`L[${base}]`);
      if (index >= 0) t.push(`(L[${index}] << ${scale & 3})`);
      expr = `((${t.join(" + ")}) >>> 0)`;
    } else return null;
    return seg >= FS ? `(c.segBase[${seg}] + ${expr})` : expr;
  }
  if (asz !== 4) return null;
  const t: string[] = [String(disp)];
  if (base >= 0) t.push(`L[${base}]`);
  if (index >= 0) t.push(`(L[${index}] << ${scale & 3})`);
  return `((c.segBase[${seg}] + ((${t.join(" + ")}) >>> 0)) >>> 0)`;
}

/** How far ahead (bytes) a conditional branch may jump and stay inside its block. */
const FORWARD_MAX = 128;

/** Calls in template code that can raise a guest exception. */
const CAN_FAULT = /c\.(rd|wr|push|pop|peek|adjSp|gp)|X\.(rmw|step|mulDivAx|sse)/;
/** Templates whose data access may reach MMIO (stack accesses are taken to be RAM). */
const MAY_MMIO = /c\.(rd|wr)|X\.(rmw|sse)/;

/**
 * Deferred lazy flags. A template that sets all of `c`'s lazy-flag fields from its `fa`/`fb`/`fr`
 * locals marks that store (`flagStore`); the compiler holds it back and emits it only where
 * something may look at the flags: before code that reads them or can fault (exception
 * delivery pushes RFLAGS), on every exit, and at a loop back. A later template that sets them
 * all again drops it. `cf` is CF as a JS expression on the same locals ("" when not known), so
 * that an inline INC/DEC can take CF without the store.
 */
const STORE_MARK = "\u0001", CF_MARK = "\u0002";
function flagStore(store: string, cf: string): string {
  return STORE_MARK + store + CF_MARK + cf + STORE_MARK;
}
/** Template code that reads `c`'s flags (or calls a helper that may). */
const READS_FLAGS =
  /c\.(cf|cond|flags|materialize|lop|lsz|lres|la|lb|lcf|setArith|getFlags|setFlags)\b|X\.(?!par\b|ea64\b)/;

/** Kind of the last flag-producing template in a block, for fusing it with a following Jcc. */
type Producer = { kind: "sub" | "logic" | "add" | "eager" | "shift"; w: 1 | 4 | 8 } | null;

/**
 * Inline code for byte ALU op `aop` (ADD, OR, AND, SUB, XOR, CMP, TEST as 4; not ADC/SBB) on
 * operands given as JS expressions (masked here): the result in `fr`, the lazy flags as `alu`
 * records them for size 1 (a held-back store), or null for ADC/SBB.
 */
function byteAluCode(aop: number, a: string, b: string): { code: string; prod: Producer } | null {
  if (aop === 2 || aop === 3) return null;
  const kind = aop === 0 ? "add" : aop === 5 || aop === 7 ? "sub" : "logic";
  const expr = aop === 0
    ? "(fa + fb) & 0xff"
    : kind === "sub"
    ? "(fa - fb) & 0xff"
    : `fa ${aop === 1 ? "|" : aop === 4 ? "&" : "^"} fb`;
  const lop = kind === "add" ? 1 : kind === "sub" ? 3 : 5;
  const cf = kind === "logic" ? "0" : kind === "sub" ? "(fa < fb ? 1 : 0)" : "(fr < fa ? 1 : 0)";
  return {
    code: `fa = (${a}) & 0xff; fb = (${b}) & 0xff; fr = ${expr}; ` +
      flagStore(`c.lop = ${lop}; c.lsz = 1; c.lres = fr; c.la = fa; c.lb = fb;`, cf),
    prod: { kind, w: 1 },
  };
}

/**
 * Inline code for ALU op `aop` (0 add .. 7 cmp) on 32- or 64-bit operands given as JS
 * expressions; the result is left in `fr` (and `frh`), operands in `fa`/`fb` (`fah`/`fbh`), and
 * the lazy-flag fields of `c` are set as `alu`/`alu64` would set them.
 */
function aluCode(
  aop: number,
  w: boolean,
  a: string,
  ah: string,
  b: string,
  bh: string,
): { code: string; prod: Producer } {
  if (w) {
    const ops = `fa = ${a}; fah = ${ah}; fb = ${b}; fbh = ${bh}; `;
    if (aop === 2 || aop === 3) {
      return { code: ops + `fr = X.alu64(c, ${aop}, fa, fah, fb, fbh); frh = c.rh;`, prod: null };
    }
    // Inline ADD/SUB/CMP/AND/OR/XOR on halves, recording the lazy flags exactly as alu64 does.
    let body: string, lop: number, kind: "sub" | "logic" | "add";
    switch (aop) {
      case 0:
        body = "{ const s = (fa >>> 0) + (fb >>> 0); fr = s | 0; " +
          "frh = (fah + fbh + (s >= 4294967296 ? 1 : 0)) | 0; }";
        lop = 1;
        kind = "add";
        break;
      case 1:
        body = "fr = fa | fb; frh = fah | fbh;";
        lop = 5;
        kind = "logic";
        break;
      case 4:
        body = "fr = fa & fb; frh = fah & fbh;";
        lop = 5;
        kind = "logic";
        break;
      case 6:
        body = "fr = fa ^ fb; frh = fah ^ fbh;";
        lop = 5;
        kind = "logic";
        break;
      default: // 5 sub, 7 cmp
        body = "{ const s = (fa >>> 0) - (fb >>> 0); fr = s | 0; " +
          "frh = (fah - fbh - (s < 0 ? 1 : 0)) | 0; }";
        lop = 3;
        kind = "sub";
    }
    const cf = kind === "logic"
      ? "0"
      : kind === "sub"
      ? `(${B64} ? 1 : 0)`
      : "(((frh >>> 0) < (fah >>> 0) || (frh === fah && (fr >>> 0) < (fa >>> 0))) ? 1 : 0)";
    return {
      code: ops + body + " " + flagStore(
        `c.lop = ${lop}; c.lsz = 8; c.lres = fr; c.lresH = frh; c.la = fa; c.laH = fah; ` +
          "c.lb = fb; c.lbH = fbh; c.lcf = 0;",
        cf,
      ),
      prod: { kind, w: 8 },
    };
  }
  if (aop === 2 || aop === 3) return { code: `fr = X.alu(c, ${aop}, ${a}, ${b}, 4);`, prod: null };
  let expr: string, lop: number, kind: "sub" | "logic" | "add";
  switch (aop) {
    case 0:
      expr = "(fa + fb) | 0";
      lop = 1;
      kind = "add";
      break;
    case 1:
      expr = "fa | fb";
      lop = 5;
      kind = "logic";
      break;
    case 4:
      expr = "fa & fb";
      lop = 5;
      kind = "logic";
      break;
    case 6:
      expr = "fa ^ fb";
      lop = 5;
      kind = "logic";
      break;
    default: // 5 sub, 7 cmp
      expr = "(fa - fb) | 0";
      lop = 3;
      kind = "sub";
  }
  const cf = kind === "logic"
    ? "0"
    : kind === "sub"
    ? "((fa >>> 0) < (fb >>> 0) ? 1 : 0)"
    : "((fr >>> 0) < (fa >>> 0) ? 1 : 0)";
  return {
    code: `fa = ${a} | 0; fb = ${b} | 0; fr = ${expr}; ` +
      flagStore(`c.lop = ${lop}; c.lsz = 4; c.lres = fr; c.la = fa; c.lb = fb;`, cf),
    prod: { kind, w: 4 },
  };
}

/**
 * Inline 64-bit-address LEA into `reg` (`w`: 64-bit destination): base + index * scale + disp
 * (or RIP-relative: `next` + disp when scale has bit 2), exactly modulo 2^64 on the halves.
 */
function leaCode(
  reg: number,
  w: boolean,
  base: number,
  index: number,
  scale: number,
  disp: number,
  next: number,
): string {
  const s = 1 << (scale & 3);
  if (!w) {
    // Only the low 32 bits are kept: int32 sums wrap the same way.
    const t = [String((scale & 4 ? next + disp : disp) | 0)];
    if (base >= 0) t.push(`L[${base}]`);
    if (index >= 0) t.push(s === 1 ? `L[${index}]` : `(L[${index}] << ${scale & 3})`);
    return `L[${reg}] = (${t.join(" + ")}) | 0; H[${reg}] = 0;`;
  }
  // The constant part as an unsigned low half and a signed high half.
  const k = scale & 4 ? next + disp : disp;
  const kh = Math.floor(k / 4294967296), kl = k - kh * 4294967296;
  const lt = [String(kl)], ht = [String(kh)];
  if (base >= 0) {
    lt.push(`(L[${base}] >>> 0)`);
    ht.push(`H[${base}]`);
  }
  if (index >= 0) {
    lt.push(s === 1 ? `(L[${index}] >>> 0)` : `(L[${index}] >>> 0) * ${s}`);
    ht.push(s === 1 ? `H[${index}]` : `H[${index}] * ${s}`);
  }
  return `{ const l = ${lt.join(" + ")}, h = ${ht.join(" + ")}; ` +
    `const cy = Math.floor(l / 4294967296); L[${reg}] = (l - cy * 4294967296) | 0; ` +
    `H[${reg}] = (h + cy) | 0; }`;
}

/**
 * Inline ROL/ROR of register `r` by a constant `n` (1..31, or 1..63 when `w`): CF and OF as
 * `shift`/`shift64` set them (the same on both vendors), the other flags kept (materialized).
 */
function rotateImmCode(ror: boolean, w: boolean, r: number, n: number): string {
  if (!w) {
    const res = ror ? `(a >>> ${n}) | (a << ${32 - n})` : `(a << ${n}) | (a >>> ${32 - n})`;
    const flags = ror
      ? "const cf = rl >>> 31, of = cf ^ ((rl >>> 30) & 1);"
      : "const cf = rl & 1, of = (rl >>> 31) ^ cf;";
    return `{ const a = L[${r}], rl = ${res}; L[${r}] = rl; H[${r}] = 0; c.materialize(); ` +
      `${flags} c.flags = (c.flags & ~0x801) | cf | (of << 11); }`;
  }
  // ROR by n is ROL by 64 - n; ROL by k on halves: by 32 swaps them.
  const k = ror ? 64 - n : n;
  const [x, y] = k < 32 ? ["l", "h"] : ["h", "l"]; // the halves that move into rl / rh
  const m = k & 31;
  const res = m === 0
    ? `rl = ${x}; rh = ${y};`
    : `rl = (${x} << ${m}) | (${y} >>> ${32 - m}); rh = (${y} << ${m}) | (${x} >>> ${32 - m});`;
  const flags = ror
    ? "const cf = rh >>> 31, of = cf ^ ((rh >>> 30) & 1);"
    : "const cf = rl & 1, of = (rh >>> 31) ^ cf;";
  return `{ const l = L[${r}], h = H[${r}]; let rl = 0, rh = 0; ${res} L[${r}] = rl; ` +
    `H[${r}] = rh; c.materialize(); ${flags} c.flags = (c.flags & ~0x801) | cf | (of << 11); }`;
}

/**
 * Inline SHL/SAL/SHR/SAR/ROL/ROR of register `r` by a constant `n` (1..31, or 1..63 when `w`),
 * with the flags `shift`/`shift64` compute (shifts: eager in `c.flags`, lazy state cleared, as a
 * held-back store on the `sl`/`sh`/`scf`/`sof` locals that a Jcc can test: see `flagStore`), or
 * null for RCL/RCR. CF, SF, ZF, PF as defined; OF and AF follow the CPU model's vendor as in
 * alu.ts.
 */
function shiftImmCode(sop: number, w: boolean, r: number, n: number): string | null {
  if (sop < 2) return rotateImmCode(sop === 1, w, r, n);
  if (sop < 4) return null;
  let body: string;
  if (!w) {
    switch (sop) {
      case 5:
        body = `cf = (a >>> ${n - 1}) & 1; rl = a >>> ${n}; of = c.intel ? a >>> 31 : ` +
          `(rl >>> 30) & 1;`;
        break;
      case 7:
        body = `cf = (a >> ${n - 1}) & 1; rl = a >> ${n}; of = 0;`;
        break;
      default:
        body = `cf = (a >>> ${32 - n}) & 1; rl = a << ${n}; of = c.intel && ${n > 1} ? ` +
          `((a >>> 31) ^ (a >>> 30)) & 1 : ((rl >>> 31) & 1) ^ cf;`;
    }
    return `{ const a = L[${r}]; let cf = 0, of = 0, rl = 0; ${body} L[${r}] = rl; H[${r}] = 0; ` +
      "scf = cf; sof = of; sl = rl; sh = 0; } " + flagStore(
        "c.lop = 0; c.flags = (c.flags & ~0x8d5) | scf | (sof << 11) | (sl === 0 ? 0x40 : 0) | " +
          "((sl >>> 31) << 7) | X.par[sl & 0xff] | (c.intel ? 0 : 0x10);",
        "scf",
      );
  }
  switch (sop) {
    case 5:
    case 7: {
      const sar = sop === 7;
      const cf = n <= 32 ? `(l >>> ${n - 1}) & 1` : `(h ${sar ? ">>" : ">>>"} ${n - 33}) & 1`;
      const res = n < 32
        ? `rl = (l >>> ${n}) | (h << ${32 - n}); rh = h ${sar ? ">>" : ">>>"} ${n};`
        : n === 32
        ? `rl = h; rh = ${sar ? "h >> 31" : "0"};`
        : `rl = h ${sar ? ">>" : ">>>"} ${n - 32}; rh = ${sar ? "h >> 31" : "0"};`;
      body = `cf = ${cf}; ${res} of = ${sar ? "0" : "c.intel ? h >>> 31 : (rh >>> 30) & 1"};`;
      break;
    }
    default: {
      const cf = n <= 32 ? `(h >>> ${32 - n}) & 1` : `(l >>> ${64 - n}) & 1`;
      const res = n < 32
        ? `rl = l << ${n}; rh = (h << ${n}) | (l >>> ${32 - n});`
        : n === 32
        ? "rl = 0; rh = l;"
        : `rl = 0; rh = l << ${n - 32};`;
      body = `cf = ${cf}; ${res} of = c.intel && ${n > 1} ? ((h >>> 31) ^ (h >>> 30)) & 1 : ` +
        "((rh >>> 31) & 1) ^ cf;";
    }
  }
  return `{ const l = L[${r}], h = H[${r}]; let cf = 0, of = 0, rl = 0, rh = 0; ${body} ` +
    `L[${r}] = rl; H[${r}] = rh; scf = cf; sof = of; sl = rl; sh = rh; } ` + flagStore(
      "c.lop = 0; c.flags = (c.flags & ~0x8d5) | scf | (sof << 11) | " +
        "((sl | sh) === 0 ? 0x40 : 0) | ((sh >>> 31) << 7) | X.par[sl & 0xff] | " +
        "(c.intel ? 0 : 0x10);",
      "scf",
    );
}

const SUB32: Record<number, string> = {
  2: "(fa >>> 0) < (fb >>> 0)",
  3: "(fa >>> 0) >= (fb >>> 0)",
  4: "fa === fb",
  5: "fa !== fb",
  6: "(fa >>> 0) <= (fb >>> 0)",
  7: "(fa >>> 0) > (fb >>> 0)",
  12: "fa < fb",
  13: "fa >= fb",
  14: "fa <= fb",
  15: "fa > fb",
};
const LOGIC32: Record<number, string> = {
  4: "fr === 0",
  5: "fr !== 0",
  8: "fr < 0",
  9: "fr >= 0",
  12: "fr < 0",
  13: "fr >= 0",
  14: "fr <= 0",
  15: "fr > 0",
};
/** Conditions on a shift by a constant's locals (CF, ZF, SF; the rest read the flags). */
const SHIFT32: Record<number, string> = {
  2: "scf !== 0",
  3: "scf === 0",
  4: "sl === 0",
  5: "sl !== 0",
  8: "sl < 0",
  9: "sl >= 0",
};
const SHIFT64: Record<number, string> = {
  2: "scf !== 0",
  3: "scf === 0",
  4: "(sl | sh) === 0",
  5: "(sl | sh) !== 0",
  8: "sh < 0",
  9: "sh >= 0",
};

/** Byte operands are 0..255 in `fa`/`fb`; shifted to bit 31 they compare as signed bytes. */
const SUB8: Record<number, string> = {
  2: "fa < fb",
  3: "fa >= fb",
  4: "fa === fb",
  5: "fa !== fb",
  6: "fa <= fb",
  7: "fa > fb",
  8: "(fr & 0x80) !== 0",
  9: "(fr & 0x80) === 0",
  12: "(fa << 24) < (fb << 24)",
  13: "(fa << 24) >= (fb << 24)",
  14: "(fa << 24) <= (fb << 24)",
  15: "(fa << 24) > (fb << 24)",
};
const LOGIC8: Record<number, string> = {
  4: "fr === 0",
  5: "fr !== 0",
  8: "(fr & 0x80) !== 0",
  9: "(fr & 0x80) === 0",
  12: "(fr & 0x80) !== 0",
  13: "(fr & 0x80) === 0",
  14: "(fr === 0 || (fr & 0x80) !== 0)",
  15: "(fr !== 0 && (fr & 0x80) === 0)",
};
const ADD8: Record<number, string> = {
  4: "fr === 0",
  5: "fr !== 0",
  8: "(fr & 0x80) !== 0",
  9: "(fr & 0x80) === 0",
};
const ADD32: Record<number, string> = { 4: "fr === 0", 5: "fr !== 0", 8: "fr < 0", 9: "fr >= 0" };
const B64 = "((fah >>> 0) < (fbh >>> 0) || (fah === fbh && (fa >>> 0) < (fb >>> 0)))";
const BE64 = "((fah >>> 0) < (fbh >>> 0) || (fah === fbh && (fa >>> 0) <= (fb >>> 0)))";
const L64 = "(fah < fbh || (fah === fbh && (fa >>> 0) < (fb >>> 0)))";
const LE64 = "(fah < fbh || (fah === fbh && (fa >>> 0) <= (fb >>> 0)))";
const EQ64 = "(fa === fb && fah === fbh)";
const SUB64: Record<number, string> = {
  2: B64,
  3: `!${B64}`,
  4: EQ64,
  5: `!${EQ64}`,
  6: BE64,
  7: `!${BE64}`,
  12: L64,
  13: `!${L64}`,
  14: LE64,
  15: `!${LE64}`,
};
const Z64 = "((fr | frh) === 0)";
const LOGIC64: Record<number, string> = {
  4: Z64,
  5: `!${Z64}`,
  8: "frh < 0",
  9: "frh >= 0",
  12: "frh < 0",
  13: "frh >= 0",
  14: `(frh < 0 || ${Z64})`,
  15: `!(frh < 0 || ${Z64})`,
};
const ADD64: Record<number, string> = { 4: Z64, 5: `!${Z64}`, 8: "frh < 0", 9: "frh >= 0" };

/** Templated opcodes that leave the arithmetic flags alone (a fused producer survives them). */
function preservesFlags(op: number): boolean {
  return op === 0x89 || op === 0x8b || op === 0x8d || op === 0xc7 || op === 0xc6 || op === 0x88 ||
    op === 0x8a || op === 0x90 || op === 0x1b6 || op === 0x1b7 || op === 0x1be || op === 0x1bf ||
    op === 0x63 || op === 0x68 || op === 0x6a || (op >= 0xb8 && op <= 0xbf) ||
    (op >= 0x50 && op <= 0x5f) || (op >= 0x140 && op <= 0x14f) || (op >= 0x190 && op <= 0x19f);
}

const SOF = "(((c.flags >> 7) ^ (c.flags >> 11)) & 1)";
/** Conditions on flags already evaluated into `c.flags` (after shifts and rotates). */
const EAGER: Record<number, string> = {
  0: "(c.flags & 0x800) !== 0",
  1: "(c.flags & 0x800) === 0",
  2: "(c.flags & 1) !== 0",
  3: "(c.flags & 1) === 0",
  4: "(c.flags & 0x40) !== 0",
  5: "(c.flags & 0x40) === 0",
  6: "(c.flags & 0x41) !== 0",
  7: "(c.flags & 0x41) === 0",
  8: "(c.flags & 0x80) !== 0",
  9: "(c.flags & 0x80) === 0",
  10: "(c.flags & 4) !== 0",
  11: "(c.flags & 4) === 0",
  12: `${SOF} !== 0`,
  13: `${SOF} === 0`,
  14: `((c.flags & 0x40) !== 0 || ${SOF} !== 0)`,
  15: `((c.flags & 0x40) === 0 && ${SOF} === 0)`,
};

/** A Jcc condition computed from the fused producer's operands, or null. */
function fusedCond(p: Producer, cc: number): string | null {
  if (p === null) return null;
  if (p.kind === "eager") return EAGER[cc] ?? null;
  if (p.kind === "shift") return (p.w === 8 ? SHIFT64 : SHIFT32)[cc] ?? null;
  if (p.w === 1) return (p.kind === "sub" ? SUB8 : p.kind === "logic" ? LOGIC8 : ADD8)[cc] ?? null;
  const t = p.w === 4
    ? (p.kind === "sub" ? SUB32 : p.kind === "logic" ? LOGIC32 : ADD32)
    : (p.kind === "sub" ? SUB64 : p.kind === "logic" ? LOGIC64 : ADD64);
  return t[cc] ?? null;
}

/**
 * Inline code for an SSE/SSE2 instruction between XMM registers `reg` and `rm` (0F-map `op`,
 * mandatory prefix `pfx`) on the dwords `x`: moves, bitwise logic and dword/qword add and
 * subtract, which set no flags and raise nothing. Null for anything else.
 */
function sseRegCode(op: number, pfx: number, reg: number, rm: number): string | null {
  const lanes = (f: (i: number) => string) => [0, 1, 2, 3].map(f).join(" ");
  const move = (d: number, s: number) => lanes((i) => `x[${d * 4 + i}] = x[${s * 4 + i}];`);
  const d = reg * 4, s = rm * 4;
  const logic = (expr: (a: string, b: string) => string) =>
    lanes((i) => `x[${d + i}] = ${expr(`x[${d + i}]`, `x[${s + i}]`)};`);
  const packed = pfx === 0 || pfx === 0x66;
  if ((op === 0x6f && (pfx === 0x66 || pfx === 0xf3)) || ((op === 0x28 || op === 0x10) && packed)) {
    return move(reg, rm); // MOVDQA/MOVDQU, MOVAPS/MOVAPD, MOVUPS/MOVUPD load forms
  }
  if ((op === 0x7f && (pfx === 0x66 || pfx === 0xf3)) || ((op === 0x29 || op === 0x11) && packed)) {
    return move(rm, reg); // their store forms
  }
  if ((op === 0xef && pfx === 0x66) || (op === 0x57 && packed)) {
    return logic((a, b) => `${a} ^ ${b}`);
  }
  if ((op === 0xeb && pfx === 0x66) || (op === 0x56 && packed)) {
    return logic((a, b) => `${a} | ${b}`);
  }
  if ((op === 0xdb && pfx === 0x66) || (op === 0x54 && packed)) {
    return logic((a, b) => `${a} & ${b}`);
  }
  if ((op === 0xdf && pfx === 0x66) || (op === 0x55 && packed)) {
    return logic((a, b) => `~${a} & ${b}`);
  }
  if (pfx !== 0x66) return null;
  if (op === 0xfe) return logic((a, b) => `(${a} + ${b}) | 0`); // PADDD
  if (op === 0xfa) return logic((a, b) => `(${a} - ${b}) | 0`); // PSUBD
  if (op === 0xd4 || op === 0xfb) { // PADDQ, PSUBQ: the low dword's carry or borrow into the high
    const sign = op === 0xd4 ? "+" : "-";
    return [0, 2].map((i) =>
      `{ const lo = (x[${d + i}] >>> 0) ${sign} (x[${s + i}] >>> 0); x[${d + i}] = lo | 0; ` +
      `x[${d + i + 1}] = (x[${d + i + 1}] ${sign} x[${s + i + 1}] ${sign} ` +
      `(${op === 0xd4 ? "lo > 4294967295" : "lo < 0"} ? 1 : 0)) | 0; }`
    ).join(" ");
  }
  return null;
}

/** Translates the instructions at `ip` into a block function; null when nothing is templated. */
function compileBlock(
  c: Cpu,
  ip: number,
  off: number,
  d: number,
  maxLen = MAX_BLOCK,
): { fn: BlockFn | null; len: number } {
  const e = c.dc.ent;
  // The body runs inside `for (;;)`: a branch back to the block start loops without returning to
  // the dispatcher (n counts the instructions of completed iterations).
  const lines: string[] = [
    "const L = c.lo, H = c.hi, G = c.pageGen, gs = c.pageGenSeen;",
    "let n = 0, fa = 0, fb = 0, fr = 0, fah = 0, fbh = 0, frh = 0, fc = 0;",
    "let sl = 0, sh = 0, scf = 0, sof = 0;",
    "for (;;) {",
  ];
  let prod: Producer = null;
  let count = 0; // instructions in the block
  let templated = 0;
  let pos = 0; // byte offset from the block start
  let done = false;
  // The held-back flag store (see `flagStore`) and its CF expression.
  let pending: string | null = null, pendingCf = "";
  const flush = () => {
    if (pending !== null) lines.push(pending);
    pending = null;
  };
  const exit = (k: number) => `${pending ?? ""} c.icount += n + ${k}; return;`;
  // A loop back to the start is a block boundary too: it leaves when a device wrote code.
  const again = (k: number) =>
    `${pending ?? ""} n += ${k}; if (n < ${LOOP_BUDGET} && !c.breakLoop && G[${H_GEN}] === gs) ` +
    `continue; c.ip = ${ip}; c.icount += n; return;`;
  // Before decoding: a writer on another thread then either sees CODE or is seen (cpu.ts).
  const page = Math.floor(off / 4096);
  if (c.codePages[page] === 0) c.markCodePage(page);
  // Forward conditional branches kept inside the block: each opens a labeled JS block that the
  // taken path breaks out of, closed where the fall-through path reaches the target. Innermost
  // last; a branch whose target the compiler never lands on exits the block as before.
  const labels: {
    id: number;
    target: number;
    line: number;
    after: number;
    held: string;
    exit: string;
  }[] = [];
  const closeLabels = (at: number) => {
    for (;;) {
      const lb = labels[labels.length - 1];
      if (lb === undefined || lb.target > at) return;
      labels.pop();
      let taken: string;
      if (lb.target === at) {
        // Both paths meet here: the fall-through's held-back flags are stored first, and the
        // taken path did not run the instructions in between.
        flush();
        prod = null;
        taken = `${lb.held} n -= ${templated - lb.after}; break L${lb.id};`;
      } else taken = lb.exit;
      lines.push("}");
      lines[lb.line] = lines[lb.line]!.replace(`@B${lb.id}@`, taken);
    }
  };
  while (!done && count < maxLen) {
    const avail = 4096 - (d + pos);
    if (avail < 15) break; // keep every instruction inside this page
    const cur = ip + pos;
    closeLabels(cur);
    const slot = decode(c, c.dc, cur, off + pos, avail);
    if (slot === DC_SCRATCH) break;
    const b0 = slot * DC_STRIDE;
    const len = e[b0 + F_LEN]!;
    const next = cur + len;
    const op = e[b0 + F_OP]!;
    const pfx = e[b0 + F_PFX]!;
    const osz = pfx & 15, asz = (pfx >> 4) & 15, rex = (pfx >> 12) & 0xff;
    const repPfx = (pfx >>> 29) & 3;
    const modrm = e[b0 + F_MODRM]!, reg = e[b0 + F_REG]!, rm = e[b0 + F_RM]!;
    const imm = e[b0 + F_IMM]!, imm2 = e[b0 + F_IMM2]!;
    const wide = c.long64 || c.code32;
    let code: string | null = null;
    let newProd: Producer = null;
    let keepProd = false;
    const templ = templated; // instructions templated before this one (for icount at exits)
    const mem = modrm >= 0 && rm < 0 ? eaExpr(c, e, b0, asz, next) : null;
    const canMem = modrm >= 0 && rm < 0 && mem !== null;
    if (wide && repPfx === 0 && (osz === 4 || osz === 8)) {
      const w = osz === 8;
      if (op < 0x40 && (op & 7) < 4 && (op & 1) === 1) {
        // ALU Ev,Gv (01..39) and Gv,Ev (03..3B)
        const aop = op >> 3;
        const toReg = (op & 2) !== 0;
        const write = aop !== 7;
        if (rm >= 0) {
          const dst = toReg ? reg : rm, s = toReg ? rm : reg;
          const g = aluCode(aop, w, `L[${dst}]`, `H[${dst}]`, `L[${s}]`, `H[${s}]`);
          code = `{ ${g.code}` + (write ? ` L[${dst}] = fr; H[${dst}] = ${w ? "frh" : "0"};` : "") +
            " }";
          newProd = g.prod;
        } else if (canMem && toReg) {
          const g = aluCode(aop, w, `L[${reg}]`, `H[${reg}]`, "v", "vh");
          code = `{ const v = ${w ? `c.rd64(${mem})` : `c.rd32(${mem})`}, vh = c.rh; ${g.code}` +
            (write ? ` L[${reg}] = fr; H[${reg}] = ${w ? "frh" : "0"};` : "") + " }";
          newProd = g.prod;
        } else if (canMem) {
          const g = aluCode(aop, w, "v", "vh", `L[${reg}]`, `H[${reg}]`);
          const rd = write ? `X.rmw(c, a, ${osz})` : w ? "c.rd64(a)" : "c.rd32(a)";
          code = `{ const a = ${mem}; const v = ${rd}, vh = c.rh; ${g.code}` +
            (write ? (w ? " c.wr64(a, fr, frh);" : " c.wr32(a, fr);") : "") + " }";
          newProd = g.prod;
        }
      } else if ((op === 0x81 || op === 0x83) && (rm >= 0 || canMem)) {
        const aop = (modrm >> 3) & 7;
        const iv = op === 0x83 ? (imm << 24) >> 24 : imm;
        const ih = iv >> 31;
        const write = aop !== 7;
        if (rm >= 0) {
          const g = aluCode(aop, w, `L[${rm}]`, `H[${rm}]`, String(iv), String(ih));
          code = `{ ${g.code}` + (write ? ` L[${rm}] = fr; H[${rm}] = ${w ? "frh" : "0"};` : "") +
            " }";
          newProd = g.prod;
        } else {
          const g = aluCode(aop, w, "v", "vh", String(iv), String(ih));
          const rd = write ? `X.rmw(c, a, ${osz})` : w ? "c.rd64(a)" : "c.rd32(a)";
          code = `{ const a = ${mem}; const v = ${rd}, vh = c.rh; ${g.code}` +
            (write ? (w ? " c.wr64(a, fr, frh);" : " c.wr32(a, fr);") : "") + " }";
          newProd = g.prod;
        }
      } else if (op < 0x40 && (op & 7) === 5) { // ALU eAX, imm32
        const aop = op >> 3;
        const write = aop !== 7;
        const g = aluCode(aop, w, "L[0]", "H[0]", String(imm), String(imm >> 31));
        code = `{ ${g.code}` + (write ? ` L[0] = fr; H[0] = ${w ? "frh" : "0"};` : "") + " }";
        newProd = g.prod;
      } else if (op === 0xa9) { // TEST eAX, imm32
        const g = aluCode(4, w, "L[0]", "H[0]", String(imm), String(imm >> 31));
        code = g.code;
        newProd = g.prod;
      } else if (op === 0x85 && rm >= 0) { // TEST r, r
        const g = aluCode(4, w, `L[${rm}]`, `H[${rm}]`, `L[${reg}]`, `H[${reg}]`);
        code = g.code;
        newProd = g.prod;
      } else if ((op === 0xd1 || op === 0xd3) && rm >= 0) { // shift/rotate r, 1 / CL
        const sop = (modrm >> 3) & 7;
        const cnt = op === 0xd1 ? "1" : `(L[1] & ${w ? 0x3f : 0x1f})`;
        const inline = op === 0xd1 ? shiftImmCode(sop, w, rm, 1) : null;
        code = inline !== null
          ? inline
          : w
          ? `{ const r = X.shift64(c, ${sop}, L[${rm}], H[${rm}], ${cnt}); L[${rm}] = r; ` +
            `H[${rm}] = c.rh; }`
          : `{ L[${rm}] = X.shift(c, ${sop}, L[${rm}], ${cnt}, 4); H[${rm}] = 0; }`;
        if (op === 0xd1) {
          newProd = inline !== null && sop >= 4
            ? { kind: "shift", w: w ? 8 : 4 }
            : { kind: "eager", w: 4 };
        }
      } else if (op >= 0x140 && op <= 0x14f && rm >= 0) { // CMOVcc r, r
        code = `if (${fusedCond(prod, op & 15) ?? `c.cond(${op & 15})`}) { L[${reg}] = L[${rm}]; ` +
          `H[${reg}] = ${w ? `H[${rm}]` : "0"}; }` +
          (w ? "" : ` else H[${reg}] = 0;`);
      } else if (op === 0x89 || op === 0x8b) { // MOV
        const toReg = op === 0x8b;
        if (rm >= 0) {
          const dst = toReg ? reg : rm, s = toReg ? rm : reg;
          code = `L[${dst}] = L[${s}]; H[${dst}] = ${w ? `H[${s}]` : "0"};`;
        } else if (canMem) {
          code = toReg
            ? (w
              ? `{ const v = c.rd64(${mem}); L[${reg}] = v; H[${reg}] = c.rh; }`
              : `{ const v = c.rd32(${mem}); L[${reg}] = v; H[${reg}] = 0; }`)
            : (w ? `c.wr64(${mem}, L[${reg}], H[${reg}]);` : `c.wr32(${mem}, L[${reg}]);`);
        }
      } else if (op >= 0xb8 && op <= 0xbf) {
        const r = (op & 7) | ((rex & 1) << 3);
        code = `L[${r}] = ${imm}; H[${r}] = ${w ? imm2 : 0};`;
      } else if (op === 0xc7 && ((modrm >> 3) & 7) === 0 && (rm >= 0 || canMem)) {
        code = rm >= 0
          ? `L[${rm}] = ${imm}; H[${rm}] = ${w ? imm >> 31 : 0};`
          : (w ? `c.wr64(${mem}, ${imm}, ${imm >> 31});` : `c.wr32(${mem}, ${imm});`);
      } else if (op === 0x8d && rm < 0 && mem !== null && c.long64 && asz === 8) { // LEA
        code = leaCode(
          reg,
          w,
          e[b0 + F_BASE]!,
          e[b0 + F_INDEX]!,
          e[b0 + F_SCALE]!,
          e[b0 + F_DISP]!,
          next,
        );
      } else if (op === 0xff && rm >= 0 && ((modrm >> 3) & 7) < 2) { // INC/DEC r
        const dec = ((modrm >> 3) & 7) === 1;
        if (w) {
          // As incdec64: the 64-bit ADD/SUB of 1, then INC/DEC with CF kept through lcf.
          const g = aluCode(dec ? 5 : 0, true, `L[${rm}]`, `H[${rm}]`, "1", "0");
          const body = g.code.slice(0, g.code.indexOf(STORE_MARK));
          code = `{ fc = c.cf(); ${body} L[${rm}] = fr; H[${rm}] = frh; } ` + flagStore(
            `c.lop = ${dec ? 7 : 6}; c.lsz = 8; c.lres = fr; c.lresH = frh; c.la = fa; ` +
              "c.laH = fah; c.lb = fb; c.lbH = fbh; c.lcf = fc;",
            "fc",
          );
          newProd = { kind: "add", w: 8 };
        } else {
          // Inline INC/DEC (CF preserved through lcf); ZF/SF fuse with a following Jcc.
          code = `{ fc = c.cf(); fa = L[${rm}]; fr = (fa ${dec ? "-" : "+"} 1) | 0; ` +
            flagStore(
              `c.lop = ${dec ? 7 : 6}; c.lsz = 4; c.lres = fr; c.la = fa; c.lb = 1; c.lcf = fc;`,
              "fc",
            ) + ` L[${rm}] = fr; H[${rm}] = 0; }`;
          newProd = { kind: "add", w: 4 };
        }
      } else if (op === 0xc1 && rm >= 0) { // shift/rotate r, imm8
        const sop = (modrm >> 3) & 7;
        const n = imm & (w ? 0x3f : 0x1f);
        const inline = n !== 0 ? shiftImmCode(sop, w, rm, n) : null;
        code = inline !== null
          ? inline
          : w
          ? `{ const r = X.shift64(c, ${sop}, L[${rm}], H[${rm}], ${n}); L[${rm}] = r; ` +
            `H[${rm}] = c.rh; }`
          : `{ L[${rm}] = X.shift(c, ${sop}, L[${rm}], ${n}, 4); H[${rm}] = 0; }`;
        // A nonzero count leaves the flags eager in c.flags; a zero count leaves them alone.
        if (n !== 0) {
          newProd = inline !== null && sop >= 4
            ? { kind: "shift", w: w ? 8 : 4 }
            : { kind: "eager", w: 4 };
        } else keepProd = true;
      } else if (
        (op === 0x1b6 || op === 0x1b7) &&
        (canMem || (rm >= 0 && (op === 0x1b7 || rex !== 0 || rm < 4)))
      ) {
        const src = op === 0x1b6
          ? (rm >= 0 ? `(L[${rm}] & 0xff)` : `c.rd8(${mem})`)
          : (rm >= 0 ? `(L[${rm}] & 0xffff)` : `c.rd16(${mem})`);
        code = `L[${reg}] = ${src}; H[${reg}] = 0;`;
      } else if (
        (op === 0x1be || op === 0x1bf) &&
        (canMem || (rm >= 0 && (op === 0x1bf || rex !== 0 || rm < 4)))
      ) { // MOVSX
        const src = op === 0x1be
          ? (rm >= 0 ? `((L[${rm}] << 24) >> 24)` : `((c.rd8(${mem}) << 24) >> 24)`)
          : (rm >= 0 ? `((L[${rm}] << 16) >> 16)` : `((c.rd16(${mem}) << 16) >> 16)`);
        code = `{ const v = ${src}; L[${reg}] = v; H[${reg}] = ${w ? "v >> 31" : "0"}; }`;
      } else if (op === 0x63 && c.long64 && (rm >= 0 || canMem)) { // MOVSXD
        const src = rm >= 0 ? `L[${rm}]` : `c.rd32(${mem})`;
        code = `{ const v = ${src}; L[${reg}] = v; H[${reg}] = ${w ? "v >> 31" : "0"}; }`;
      } else if (op === 0x1af && (rm >= 0 || canMem)) { // IMUL r, r/m
        const load = rm >= 0
          ? `const v = L[${rm}], vh = H[${rm}];`
          : w
          ? `const v = c.rd64(${mem}), vh = c.rh;`
          : `const v = c.rd32(${mem}), vh = 0;`;
        code = w
          ? `{ ${load} const l = X.imul64(c, L[${reg}], H[${reg}], v, vh); L[${reg}] = l; ` +
            `H[${reg}] = c.rh; }`
          : `{ ${load} L[${reg}] = X.imul32(c, L[${reg}], v); H[${reg}] = 0; }`;
        newProd = { kind: "eager", w: 4 };
      } else if (op === 0xff && !w && canMem && ((modrm >> 3) & 7) < 2) { // INC/DEC m32
        code = `{ const a = ${mem}; const v = X.rmw(c, a, 4); ` +
          `c.wr32(a, X.incdec(c, ${((modrm >> 3) & 7) === 1}, v, 4)); }`;
      } else if (op === 0xf7 && rm >= 0 && ((modrm >> 3) & 7) >= 2 && ((modrm >> 3) & 7) <= 3) {
        if (((modrm >> 3) & 7) === 2) { // NOT
          code = `L[${rm}] = ~L[${rm}]; H[${rm}] = ${w ? `~H[${rm}]` : "0"};`;
        } else { // NEG
          const g = aluCode(5, w, "0", "0", `L[${rm}]`, `H[${rm}]`);
          code = `{ ${g.code} L[${rm}] = fr; H[${rm}] = ${w ? "frh" : "0"}; }`;
          newProd = g.prod;
        }
      } else if (op === 0xf7 && ((modrm >> 3) & 7) >= 4 && (rm >= 0 || canMem)) {
        // MUL, IMUL, DIV, IDIV rDX:rAX by r/m (DIV may raise #DE: the helper can fault)
        const load = rm >= 0
          ? `const v = L[${rm}], vh = H[${rm}];`
          : w
          ? `const v = c.rd64(${mem}), vh = c.rh;`
          : `const v = c.rd32(${mem}), vh = 0;`;
        code = `{ ${load} X.mulDivAx(c, ${(modrm >> 3) & 7}, ${osz}, v, vh); }`;
      } else if (op === 0xf7 && ((modrm >> 3) & 7) === 0 && (rm >= 0 || canMem)) { // TEST imm
        const src = rm >= 0 ? null : w ? `c.rd64(${mem})` : `c.rd32(${mem})`;
        const g = src === null
          ? aluCode(4, w, `L[${rm}]`, `H[${rm}]`, String(imm), String(imm >> 31))
          : aluCode(4, w, "v", "vh", String(imm), String(imm >> 31));
        code = src === null ? g.code : `{ const v = ${src}, vh = c.rh; ${g.code} }`;
        newProd = g.prod;
      }
    }
    if (code === null && wide && repPfx === 0) {
      // Byte TEST, CMP AL and ALU between registers, inline (AH..BH without REX).
      const r8 = (r: number) =>
        rex !== 0 || r < 4 ? `(L[${r}] & 0xff)` : `((L[${r - 4}] >> 8) & 0xff)`;
      const inline = (g: { code: string; prod: Producer } | null, tail = "") => {
        if (g === null) return;
        code = `{ ${g.code}${tail} }`;
        newProd = g.prod;
      };
      if (op === 0x84 && (rm >= 0 || canMem)) {
        inline(byteAluCode(4, rm >= 0 ? r8(rm) : `c.rd8(${mem})`, r8(reg)));
      } else if (op === 0xf6 && ((modrm >> 3) & 7) === 0 && (rm >= 0 || canMem)) {
        inline(byteAluCode(4, rm >= 0 ? r8(rm) : `c.rd8(${mem})`, String(imm & 0xff)));
      } else if (op === 0xa8 || op === 0x3c) {
        inline(byteAluCode(op === 0xa8 ? 4 : 7, "L[0]", String(imm & 0xff)));
      } else if (op < 0x40 && (op & 7) < 4 && (op & 1) === 0 && rm >= 0) {
        // ALU r/m8, r8 and r8, r/m8 between registers (CMP writes nothing).
        const aop = op >> 3;
        const dst = op & 2 ? reg : rm, src = op & 2 ? rm : reg;
        const w8 = rex !== 0 || dst < 4
          ? ` L[${dst}] = (L[${dst}] & ~0xff) | fr;`
          : ` L[${dst - 4}] = (L[${dst - 4}] & ~0xff00) | (fr << 8);`;
        inline(byteAluCode(aop, r8(dst), r8(src)), aop === 7 ? "" : w8);
        if (code === null) { // ADC/SBB through the helper
          code = `{ fr = X.alu(c, ${aop}, ${r8(dst)}, ${r8(src)}, 1) & 0xff;${w8} }`;
        }
      }
    }
    if (code === null && wide && repPfx === 0 && (op === 0x80 || op === 0x38 || op === 0x3a)) {
      // Byte compares with memory (CMP r/m8, imm8 and CMP m8, r8 / r8, m8; between registers
      // they were compiled above).
      const byteReg = (r: number) => rex !== 0 || r < 4;
      const rd8 = (r: number) => `(L[${r}] & 0xff)`;
      let g: { code: string; prod: Producer } | null = null;
      if (op === 0x80 && ((modrm >> 3) & 7) === 7) {
        if (canMem) g = byteAluCode(7, `c.rd8(${mem})`, String(imm & 0xff));
        else if (rm >= 0 && byteReg(rm)) g = byteAluCode(7, rd8(rm), String(imm & 0xff));
      } else if (op !== 0x80 && byteReg(reg) && canMem) {
        const e8 = `c.rd8(${mem})`;
        g = op === 0x38 ? byteAluCode(7, e8, rd8(reg)) : byteAluCode(7, rd8(reg), e8);
      }
      if (g !== null) {
        code = `{ ${g.code} }`;
        newProd = g.prod;
      }
    }
    if (code === null && wide && repPfx === 0) {
      // Byte operations and NOP (any operand size).
      const byteReg = (r: number) => rex !== 0 || r < 4;
      if (
        (op === 0x90 && (rex & 1) === 0) || op === 0x11f || // NOP, NOP Ev (no memory access)
        (op === 0x1ae && rm >= 0 && ((modrm >> 3) & 7) >= 5 && osz !== 2) || // L/M/SFENCE
        (op === 0x118 && rm < 0 && ((modrm >> 3) & 7) < 4) // PREFETCHh: no access, no fault
      ) {
        code = "";
        keepProd = true;
      } else if (op === 0xc6 && ((modrm >> 3) & 7) === 0) {
        if (rm >= 0 && byteReg(rm)) code = `L[${rm}] = (L[${rm}] & ~0xff) | ${imm & 0xff};`;
        else if (canMem) code = `c.wr8(${mem}, ${imm & 0xff});`;
      } else if (op === 0x88 && byteReg(reg) && canMem) {
        code = `c.wr8(${mem}, L[${reg}] & 0xff);`;
      } else if (op === 0x8a && byteReg(reg) && canMem) {
        code = `L[${reg}] = (L[${reg}] & ~0xff) | c.rd8(${mem});`;
      } else if (op >= 0x190 && op <= 0x19f && rm >= 0 && byteReg(rm)) {
        const cond = fusedCond(prod, op & 15) ?? `c.cond(${op & 15})`;
        code = `L[${rm}] = (L[${rm}] & ~0xff) | (${cond} ? 1 : 0);`;
      }
    }
    if (code === null && wide && op >= 0x100 && op < 0x200 && rm >= 0) {
      const body = sseRegCode(op & 0xff, (pfx >> 20) & 0xff, reg, rm);
      if (body !== null) {
        // Register to register, inline; with CR0.EM/TS set or CR4.OSFXSR clear the executor
        // raises what it must.
        code = `if ((c.cr0 & 12) !== 0 || (c.cr4 & 0x200) === 0) X.sse(c, ${op & 0xff}, ` +
          `${(pfx >> 20) & 0xff}, ${modrm}, ${reg}, ${rm}, 0, ${imm}, ${osz}) || c.ud(); ` +
          `else { const x = X.xmm(c); ${body} }`;
      }
    }
    if (
      code === null && wide && op >= 0x100 && op < 0x200 && isSse(op & 0xff, (pfx >> 20) & 0xff) &&
      (rm >= 0 || canMem)
    ) {
      // SSE: straight to the SSE executor with the decoded operands (its own #UD/#NM checks).
      code = `X.sse(c, ${op & 0xff}, ${(pfx >> 20) & 0xff}, ${modrm}, ${reg}, ${rm}, ` +
        `${rm >= 0 ? 0 : mem}, ${imm}, ${osz}) || c.ud();`;
    }
    if (code === null && c.long64 && repPfx === 0 && op === 0xe2 && asz === 8) { // LOOP
      flush();
      lines.push(`c.startIp = ${cur};`);
      lines.push(
        `{ const l = (L[1] >>> 0) - 1; L[1] = l | 0; if (l < 0) H[1] = (H[1] - 1) | 0; ` +
          `if ((L[1] | H[1]) !== 0) { ${
            next + ((imm << 24) >> 24) === ip
              ? again(templated + 1)
              : `c.ip = ${next + ((imm << 24) >> 24)}; ${exit(templated + 1)}`
          } } c.ip = ${next}; } ` + exit(templated + 1),
      );
      templated++;
      count++;
      done = true;
      continue;
    }
    if (code === null && c.long64 && repPfx === 0) {
      // Control flow and stack in 64-bit mode.
      if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f)) {
        const rel = op < 0x100 ? (imm << 24) >> 24 : imm;
        if (op < 0x100 || osz !== 2) {
          // Taken: leave the block; not taken: keep going (a superblock through the fall-through).
          const cond = fusedCond(prod, op & 15) ?? `c.cond(${op & 15})`;
          if (cond.includes("c.")) flush();
          const target = next + rel;
          const inner = labels[labels.length - 1];
          if (
            rel > 0 && rel <= FORWARD_MAX && Math.floor(target / 4096) === Math.floor(ip / 4096) &&
            (inner === undefined || target <= inner.target)
          ) {
            const id = count; // unique: one branch per instruction
            labels.push({
              id,
              target,
              line: lines.length,
              after: templ + 1,
              held: pending ?? "", // the taken path stores the flags held back so far
              exit: `c.ip = ${target}; ${exit(templ + 1)}`,
            });
            lines.push(`L${id}: { if (${cond}) { @B${id}@ }`);
            templated++;
            count++;
            pos += len;
            continue;
          }
          lines.push(
            `if (${cond}) { ${
              next + rel === ip ? again(templ + 1) : `c.ip = ${next + rel}; ${exit(templ + 1)}`
            } }`,
          );
          templated++;
          count++;
          pos += len;
          continue;
        }
      } else if ((op === 0xeb || op === 0xe9) && osz !== 2) {
        const rel = op === 0xeb ? (imm << 24) >> 24 : imm;
        lines.push(
          next + rel === ip ? again(templ + 1) : `c.ip = ${next + rel}; ${exit(templ + 1)}`,
        );
        templated++;
        count++;
        done = true;
        continue;
      } else if (op === 0xe8 && osz !== 2) {
        flush();
        lines.push(`c.startIp = ${cur};`);
        lines.push(`c.pushNum64(${next}); c.ip = ${next + imm}; ${exit(templ + 1)}`);
        templated++;
        count++;
        done = true;
        continue;
      } else if (op === 0xc3 && osz !== 2) {
        flush();
        lines.push(`c.startIp = ${cur};`);
        lines.push(
          `{ const v = c.peek(0, 8), vh = c.rh; if (((vh << 16) >> 16) !== vh) c.gp(0); ` +
            `c.ip = vh * 4294967296 + (v >>> 0); c.adjSp(8); } ${exit(templ + 1)}`,
        );
        templated++;
        count++;
        done = true;
        continue;
      } else if (op >= 0x50 && op <= 0x57 && osz !== 2) {
        const r = (op & 7) | ((rex & 1) << 3);
        code = `c.push64(L[${r}], H[${r}]);`;
      } else if ((op === 0x68 || op === 0x6a) && osz !== 2) { // PUSH imm
        const v = op === 0x6a ? (imm << 24) >> 24 : imm;
        code = `c.push64(${v}, ${v >> 31});`;
      } else if (
        op === 0xff && osz !== 2 && (((modrm >> 3) & 7) === 2 || ((modrm >> 3) & 7) === 4) &&
        (rm >= 0 || canMem)
      ) { // CALL / JMP near indirect
        const call = ((modrm >> 3) & 7) === 2;
        const load = rm >= 0
          ? `const v = L[${rm}], vh = H[${rm}];`
          : `const v = c.rd64(${mem}), vh = c.rh;`;
        flush();
        lines.push(`c.startIp = ${cur};`);
        lines.push(
          `{ ${load} if (((vh << 16) >> 16) !== vh) c.gp(0); ` +
            (call ? `c.pushNum64(${next}); ` : "") +
            `c.ip = vh * 4294967296 + (v >>> 0); } ${exit(templ + 1)}`,
        );
        templated++;
        count++;
        done = true;
        continue;
      } else if (op >= 0x58 && op <= 0x5f && osz !== 2) {
        const r = (op & 7) | ((rex & 1) << 3);
        code = `{ const v = c.pop(8); L[${r}] = v; H[${r}] = c.rh; }`;
      }
    }
    if (code !== null) {
      // Take out this template's own flag store, to hold back after it.
      let store: string | null = null, storeCf = "";
      const m = code.indexOf(STORE_MARK);
      if (m >= 0) {
        const e2 = code.indexOf(STORE_MARK, m + 1), cm = code.indexOf(CF_MARK, m);
        store = code.slice(m + 1, cm);
        storeCf = code.slice(cm + 1, e2);
        code = code.slice(0, m) + code.slice(e2 + 1);
      }
      if (pending !== null) {
        // An inline INC/DEC takes CF from the held-back producer's locals.
        if (pendingCf !== "") code = code.replace("c.cf()", pendingCf);
        if (CAN_FAULT.test(code) || READS_FLAGS.test(code)) flush();
      }
      // Only templates that touch memory or the stack can fault and need `startIp`.
      lines.push(CAN_FAULT.test(code) ? `c.startIp = ${cur}; ${code}` : code);
      if (store !== null) {
        pending = store; // drops the one before: every lazy-flag field is written again
        pendingCf = storeCf;
      }
      // A data access may be MMIO, whose device may stop the VM or write this very block by
      // DMA (then `breakLoop` is set): leave before the next instruction.
      if (MAY_MMIO.test(code)) {
        lines.push(`if (c.breakLoop) { c.ip = ${next}; ${exit(templ + 1)} }`);
      }
      templated++;
      prod = newProd ?? (keepProd || preservesFlags(op) ? prod : null);
    } else {
      prod = null;
      flush();
      // Through the interpreter; leave the block if it did not fall through.
      lines.push(
        `c.ip = ${cur}; X.step(c); if (c.ip !== ${next} || c.breakLoop) { ${exit(templ)} }`,
      );
    }
    count++;
    pos += len;
  }
  if (templated === 0 || count === 0) return { fn: null, len: 0 };
  if (!done) lines.push(`c.ip = ${ip + pos}; ${exit(templated)}`);
  closeLabels(Infinity); // targets never reached: their taken paths leave the block
  lines.push("}");
  // deno-lint-ignore no-explicit-any
  const fn = new Function("c", "X", lines.join("\n")) as any as BlockFn;
  return { fn, len: count };
}

/**
 * Executes exactly one instruction through the block compiler when it has a template for it
 * (otherwise through the interpreter). For testing the templates one instruction at a time.
 */
export function stepJit(cpu: Cpu): void {
  const ip = cpu.ip;
  cpu.startIp = ip;
  let d = ip - cpu.fetchIpBase;
  if (!(d >= 0 && d < 4096)) {
    cpu.fetchRefill();
    d = ip - cpu.fetchIpBase;
  }
  const { fn } = compileBlock(cpu, ip, cpu.fetchOff + d, d, 1);
  if (fn !== null) fn(cpu, X);
  else step(cpu);
}
