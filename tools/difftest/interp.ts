/**
 * The interpreter side of the differential tester: guest memory that mirrors the oracle's
 * mapping at the same virtual addresses (one 2 MiB page maps the oracle's base to the copy at
 * REGION_GPA), a 64-bit CPL3 CpuState built from a case's state, one `step()`, and the state
 * read back.
 *
 * The interpreter's API (`core/interp/difftest_api.ts`) is loaded dynamically so the tester
 * builds and its native side runs before the interpreter exists.
 */

import {
  type CpuState,
  CR0_ET,
  CR0_MP,
  CR0_NE,
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_OSFXSR,
  CR4_OSXMMEXCPT,
  CR4_PAE,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  EFER_SCE,
  resetCpuState,
  type Segment,
} from "../../core/cpu_state.ts";
import { HostError } from "../../core/errors.ts";
import { GuestMemory } from "../../core/memory.ts";
import { checkBase, DATA_SIZE, dataAddress, REGION_SIZE } from "./layout.ts";
import type { InterpOutcome } from "./compare.ts";
import type { TestCase, UserState } from "./state.ts";

/** What one `step()` of the interpreter reports. */
export type StepResult =
  | { kind: "ok" }
  | { kind: "exception"; vector: number; errorCode?: number };

/** The interpreter's user-mode CPU, as `core/interp/difftest_api.ts` provides it. */
export interface UserModeCpu {
  setState(state: CpuState): void;
  getState(): CpuState;
  step(): StepResult;
}

/** The module `core/interp/difftest_api.ts`. */
export interface DifftestApi {
  createUserModeCpu(memory: GuestMemory, options?: { jit?: boolean }): UserModeCpu;
}

/** Where the interpreter's difftest API lives, relative to this file. */
export const INTERP_API_URL = new URL("../../core/interp/difftest_api.ts", import.meta.url);

/** Where guest RAM holds the copy of the oracle's region (page tables and GDT sit below it). */
const REGION_GPA = 0x20_0000;
/** Guest RAM: the low 2 MiB, then the region. */
const GUEST_RAM = REGION_GPA + REGION_SIZE;
/**
 * Page tables: PML4, PDPT and PDs of 2 MiB pages. LOW_PD identity-maps [0, 2 MiB) (page tables,
 * GDT, CPUID scratch); the region's base maps to REGION_GPA, through LOW_PD when the base is
 * below 1 GiB and through REGION_PD otherwise. Nothing else is mapped.
 */
const PML4 = 0x1000, PDPT = 0x2000, LOW_PD = 0x3000, REGION_PD = 0x5000;
/** Page-table entry bits: present, writable, user, 2 MiB page (Intel SDM Vol. 3, 4.5). */
const PTE_P = 1n, PTE_RW = 2n, PTE_US = 4n, PTE_PS = 0x80n;
const PAGE_2M = 0x20_0000;
const PAGE_1G = 0x4000_0000;
if (REGION_SIZE !== PAGE_2M) throw new Error("difftest: the guest maps the region as one page");
/** Upper bound on steps for one REP string case (generated counts are at most 8). */
const MAX_REP_STEPS = 64;
/** Where `cpuid()` places its CPUID instruction (below the tester mapping). */
const CPUID_SCRATCH = 0x8000;
/** User-mode selectors Linux uses for 64-bit code and data (GDT entries 6 and 5, RPL 3). */
const USER_CS = 0x33, USER_DS = 0x2b;
/** A GDT laid out as Linux's (arch/x86/include/asm/segment.h), so far transfers can load CS. */
const GDT = 0x4000;
const GDT_ENTRIES = [
  0n,
  0x00cf_9b00_0000_ffffn, // 1: kernel 32-bit code
  0x00af_9b00_0000_ffffn, // 2: kernel 64-bit code
  0x00cf_9300_0000_ffffn, // 3: kernel data
  0x00cf_fb00_0000_ffffn, // 4: user 32-bit code (0x23)
  0x00cf_f300_0000_ffffn, // 5: user data (0x2b)
  0x00af_fb00_0000_ffffn, // 6: user 64-bit code (0x33)
];

/** Loads the interpreter API, or returns null with the reason when it does not exist yet. */
export async function loadInterpreterApi(): Promise<DifftestApi | string> {
  try {
    await Deno.stat(INTERP_API_URL);
  } catch {
    return `${INTERP_API_URL.pathname} does not exist yet`;
  }
  const mod = await import(INTERP_API_URL.href) as Partial<DifftestApi>;
  if (typeof mod.createUserModeCpu !== "function") {
    return `${INTERP_API_URL.pathname} does not export createUserModeCpu(memory)`;
  }
  return mod as DifftestApi;
}

function userSegment(selector: number, code: boolean): Segment {
  return {
    selector,
    base: 0n,
    limit: 0xffff_ffff,
    type: code ? 0xb : 0x3,
    s: 1,
    dpl: 3,
    present: 1,
    l: code ? 1 : 0,
    db: code ? 0 : 1,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/**
 * Runs cases in the interpreter. Call `mirror` with the oracle's region after `prepare` and
 * before `execute` of each batch (the host run changes the data windows), then `run` per case.
 */
export class InterpSide {
  readonly memory: GuestMemory;
  readonly #api: DifftestApi;
  #cpu: UserModeCpu | null = null;
  readonly #template: CpuState;
  /** The region base the page tables map (that of the last `mirror`). */
  #base: number | null = null;

  readonly #jit: boolean;

  /** `jit`: run each instruction through the block compiler's templates instead. */
  constructor(api: DifftestApi, options: { jit?: boolean } = {}) {
    this.#api = api;
    this.#jit = options.jit ?? false;
    this.memory = GuestMemory.allocate(GUEST_RAM);
    const m = this.memory;
    m.writeU64(PML4, BigInt(PDPT) | PTE_P | PTE_RW | PTE_US);
    m.writeU64(PDPT, BigInt(LOW_PD) | PTE_P | PTE_RW | PTE_US);
    m.writeU64(LOW_PD, PTE_P | PTE_RW | PTE_US | PTE_PS); // linear [0, 2 MiB) -> physical 0
    GDT_ENTRIES.forEach((d, i) => m.writeU64(GDT + 8 * i, d));
    const s = resetCpuState();
    s.gdt = { base: BigInt(GDT), limit: 8 * GDT_ENTRIES.length - 1 };
    s.cs = userSegment(USER_CS, true);
    s.ss = userSegment(USER_DS, false);
    s.ds = userSegment(0, false);
    s.es = userSegment(0, false);
    s.fs = userSegment(0, false);
    s.gs = userSegment(0, false);
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    s.cr3 = BigInt(PML4);
    s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    s.efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    this.#template = s;
  }

  /**
   * Copies the oracle's region (code, data windows) into guest memory, maps it at the oracle's
   * `base` (the same virtual addresses) and starts a fresh interpreter CPU, so no decoded code
   * or translation from an earlier batch survives.
   */
  mirror(region: Uint8Array, base: number): void {
    if (region.length !== REGION_SIZE) {
      throw new RangeError(`Expected the ${REGION_SIZE}-byte oracle region, got ${region.length}`);
    }
    if (base !== this.#base) this.#mapRegion(base);
    this.memory.bytes.set(region, REGION_GPA);
    this.#cpu = this.#api.createUserModeCpu(this.memory, { jit: this.#jit });
  }

  /** Points the page tables at the region for `base`, unmapping the previous one. */
  #mapRegion(base: number): void {
    checkBase(base);
    const m = this.memory;
    const dir = PTE_P | PTE_RW | PTE_US;
    if (this.#base !== null) {
      const old = this.#base;
      const pd = old < PAGE_1G ? LOW_PD : REGION_PD;
      m.writeU64(pd + 8 * ((old / PAGE_2M) % 512), 0n);
      if (old >= PAGE_1G) m.writeU64(PDPT + 8 * Math.floor(old / PAGE_1G), 0n);
    }
    const pd = base < PAGE_1G ? LOW_PD : REGION_PD;
    if (base >= PAGE_1G) m.writeU64(PDPT + 8 * Math.floor(base / PAGE_1G), BigInt(pd) | dir);
    m.writeU64(pd + 8 * ((base / PAGE_2M) % 512), BigInt(REGION_GPA) | dir | PTE_PS);
    this.#base = base;
  }

  /**
   * Runs CPUID in the interpreter: [eax, ebx, ecx, edx], or null when the interpreter does not
   * complete the instruction. Used to skip classes whose features it does not advertise.
   */
  cpuid(leaf: number, subleaf = 0): number[] | null {
    const cpu = this.#api.createUserModeCpu(this.memory);
    this.memory.write(CPUID_SCRATCH, new Uint8Array([0x0f, 0xa2]));
    const s = this.#toCpuState({
      gpr: Array.from(
        { length: 16 },
        (_, i) => i === 0 ? BigInt(leaf) : i === 1 ? BigInt(subleaf) : 0n,
      ),
      rflags: 0x202,
      rip: BigInt(CPUID_SCRATCH),
      gsBase: 0n,
      xmm: new Uint8Array(256),
      mxcsr: 0x1f80,
      x87: { fcw: 0x37f, fsw: 0, ftw: 0, st: new Uint8Array(128) },
      data: new Uint8Array(0),
    });
    cpu.setState(s);
    if (cpu.step().kind !== "ok") return null;
    const g = cpu.getState().gpr;
    return [0, 3, 1, 2].map((r) => Number(g[r]! & 0xffff_ffffn));
  }

  /** True when the interpreter's CPUID advertises `f`. */
  hasFeature(f: { leaf: number; reg: number; bit: number }): boolean {
    const maxLeaf = this.cpuid(f.leaf >= 0x8000_0000 ? 0x8000_0000 : 0)?.[0] ?? 0;
    if (f.leaf > maxLeaf) return false;
    const r = this.cpuid(f.leaf);
    return r !== null && ((r[f.reg]! >>> f.bit) & 1) === 1;
  }

  /** Runs one mirrored case for one instruction and returns its state after. */
  run(c: TestCase): InterpOutcome {
    const cpu = this.#cpu;
    if (!cpu) throw new Error("InterpSide.run before mirror(): mirror each batch first");
    if (c.base !== this.#base) {
      throw new RangeError(
        `Case "${c.mnemonic}" was generated for the region at 0x${c.base.toString(16)}, but ` +
          `the mirrored region is at 0x${this.#base!.toString(16)}`,
      );
    }
    cpu.setState(this.#toCpuState(c.state));
    let r: StepResult;
    try {
      r = cpu.step();
      // A REP string instruction may stop after any iteration with RIP unchanged (SDM Vol. 1,
      // 7.3.9.2: "interrupted" repeats resume); step until it moves on.
      for (let i = 0; c.rep && r.kind === "ok" && i < MAX_REP_STEPS; i++) {
        if (cpu.getState().rip !== c.state.rip) break;
        r = cpu.step();
      }
    } catch (err) {
      throw new HostError(
        `The interpreter threw on "${c.mnemonic}" (${
          [...c.bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ")
        }): ${(err as Error).message}`,
        { cause: err },
      );
    }
    const state = this.#fromCpuState(cpu.getState(), c);
    if (r.kind === "exception") {
      return { state, exception: { vector: r.vector, errorCode: r.errorCode } };
    }
    return { state };
  }

  #toCpuState(u: UserState): CpuState {
    const t = this.#template;
    return {
      ...t,
      gpr: [...u.gpr],
      rip: u.rip,
      rflags: u.rflags,
      cs: { ...t.cs },
      ss: { ...t.ss },
      ds: { ...t.ds },
      es: { ...t.es },
      fs: { ...t.fs },
      gs: { ...t.gs, base: u.gsBase },
      tr: { ...t.tr },
      ldt: { ...t.ldt },
      gdt: { ...t.gdt },
      idt: { ...t.idt },
      msrs: new Map(t.msrs),
      fpu: {
        ...t.fpu,
        fcw: u.x87.fcw,
        fsw: u.x87.fsw,
        ftw: u.x87.ftw,
        mxcsr: u.mxcsr,
        st: u.x87.st.slice(),
        xmm: u.xmm.slice(),
      },
    };
  }

  #fromCpuState(s: CpuState, c: TestCase): UserState {
    const d = REGION_GPA + dataAddress(c.slot, c.base) - c.base;
    return {
      gpr: s.gpr.map((v) => BigInt.asUintN(64, v)),
      rflags: s.rflags,
      rip: BigInt.asUintN(64, s.rip),
      gsBase: s.gs.base,
      xmm: s.fpu.xmm.slice(),
      mxcsr: s.fpu.mxcsr,
      x87: { fcw: s.fpu.fcw, fsw: s.fpu.fsw, ftw: s.fpu.ftw, st: s.fpu.st.slice() },
      data: this.memory.bytes.slice(d, d + DATA_SIZE),
    };
  }
}
