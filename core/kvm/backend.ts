/**
 * The KVM backend: a VM on /dev/kvm with guest RAM mmap'd from this process, and vCPUs whose
 * synchronous `KVM_RUN` loop turns each exit into a call on the port or MMIO bus. The exit
 * path allocates nothing: typed views over `kvm_run` are made once per vCPU, registers travel
 * in `kvm_run` (KVM_CAP_SYNC_REGS) instead of GET_REGS per exit.
 *
 * Threads: every ioctl of one vCPU must come from the thread that created it (the kernel's
 * first ioctl after a thread switch is slow); the code itself does not care which thread that
 * is, so the machine runs each vCPU inside its own Worker. A backend opened on one thread can
 * be re-attached in a Worker with `attachKvmBackend(backend.handles())`.
 */

import type {
  Backend,
  InterruptController,
  RunControl,
  StopReason,
  Vcpu,
  VcpuEnv,
} from "../backend.ts";
import type { CpuState } from "../cpu_state.ts";
import { CR0_PE, EFER_LMA, MSR } from "../cpu_state.ts";
import { cpuModelFor } from "../cpu_model.ts";
import { HostError, VmmError } from "../errors.ts";
import { kvmCpuidFor } from "./cpuid.ts";
import { GuestMemory, hex, layoutRegions } from "../memory.ts";
import {
  EACCES,
  EINTR,
  ENOENT,
  EXIT_REASON_NAMES,
  IDENTITY_MAP_ADDRESS,
  INTERNAL_ERROR_NAMES,
  KVM_API_VERSION,
  KVM_CAP_DEBUGREGS,
  KVM_CAP_EXT_CPUID,
  KVM_CAP_MP_STATE,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_SET_IDENTITY_MAP_ADDR,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_SYNC_REGS,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_XCRS,
  KVM_CAP_XSAVE,
  KVM_CHECK_EXTENSION,
  KVM_CLOCK_DATA_SIZE,
  KVM_CPUID2_HEADER_SIZE,
  KVM_CPUID_ENTRY2_SIZE,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_DEBUGREGS_SIZE,
  KVM_DIRTY_LOG_SIZE,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_IRQ_WINDOW_OPEN,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_SYSTEM_EVENT,
  KVM_FPU_SIZE,
  KVM_GET_API_VERSION,
  KVM_GET_CLOCK,
  KVM_GET_DEBUGREGS,
  KVM_GET_DIRTY_LOG,
  KVM_GET_FPU,
  KVM_GET_MP_STATE,
  KVM_GET_MSRS,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_SUPPORTED_CPUID,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_INTERRUPT,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MP_STATE_SIZE,
  KVM_REGS_SIZE,
  KVM_RUN,
  KVM_SET_CLOCK,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_FPU,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_TSS_ADDR,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_VCPU_EVENTS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  KVM_SREGS_SIZE,
  KVM_SYNC_X86_REGS,
  KVM_SYNC_X86_SREGS,
  KVM_VCPU_EVENTS_SIZE,
  KVM_XCRS_SIZE,
  KVM_XSAVE_SIZE,
  RUN_EXIT_REASON,
  RUN_FIXED_SIZE,
  RUN_IF_FLAG,
  RUN_IMMEDIATE_EXIT,
  RUN_IO_COUNT,
  RUN_IO_DIRECTION,
  RUN_IO_PORT,
  RUN_IO_SIZE,
  RUN_KVM_DIRTY_REGS,
  RUN_KVM_VALID_REGS,
  RUN_MMIO_IS_WRITE,
  RUN_MMIO_LEN,
  RUN_MMIO_PHYS_ADDR,
  RUN_READY_FOR_INTERRUPT_INJECTION,
  RUN_REQUEST_INTERRUPT_WINDOW,
  RUN_SYNC_REGS_REGS,
  RUN_SYNC_REGS_SREGS,
  RUN_SYSTEM_EVENT_TYPE,
  TSS_ADDRESS,
  XSAVE_MXCSR,
} from "./constants.ts";
import { dispatchIoExit, dispatchMmioExit } from "./exit_dispatch.ts";
import {
  errno,
  ioctlBuf,
  ioctlInt,
  libc,
  type LibcSymbols,
  mmapAnonymous,
  mmapFd,
  mmapFilePrivate,
  O_RDONLY,
  O_RDWR,
  pointerAddress,
  strerror,
  sysClose,
  sysGettid,
  sysMunmap,
  sysOpen,
  sysTgkill,
  viewMapping,
} from "./libc.ts";
import {
  allocCpuid2,
  cpuStateFromKvm,
  decodeCpuid2,
  decodeDebugRegs,
  decodeEvents,
  decodeFailEntry,
  decodeFpu,
  decodeInternalError,
  decodeMpState,
  decodeMsrs,
  decodeRegs,
  decodeSregs,
  decodeXcrs,
  encodeCpuid2,
  encodeDebugRegs,
  encodeEvents,
  encodeFpu,
  encodeMemoryRegion,
  encodeMpState,
  encodeMsrs,
  encodeRegs,
  encodeSregs,
  encodeXcrs,
  msrEntriesOf,
  putFpuInXsave,
  STATE_MSRS,
  supportedXcr0,
} from "./structs.ts";

/** The KVM device node. */
export const KVM_DEVICE = "/dev/kvm";
/** Where the kernel says the nested PVM flavour of KVM is loaded. */
const KVM_PVM_MODULE = "/sys/module/kvm_pvm";

let presetPvm: boolean | null = null;

/**
 * Says whether the host runs kvm_pvm, as another thread saw it: the CLI's VM Worker cannot look
 * at /sys/module (Deno grants /sys files only with --allow-all).
 */
export function setHostIsPvm(pvm: boolean): void {
  presetPvm = pvm;
}
/** RFLAGS.IF. */
const RFLAGS_IF = 1 << 9;
/** Longest single sleep of a halted vCPU before it re-checks requests (ms). */
const HALT_POLL_MS = 1;
/** Page size guest RAM must be a multiple of. */
const PAGE_SIZE = 4096;

/** File descriptors and the RAM mapping of a VM, to re-attach it on another thread. */
export interface KvmHandles {
  /** The /dev/kvm file descriptor. */
  kvmFd: number;
  /** The VM's file descriptor. */
  vmFd: number;
  /** Host address and size of guest RAM (absent before `createMemory`). */
  memory?: { address: bigint; size: number };
  /** Whether the host runs the nested kvm_pvm flavour of KVM. */
  pvm: boolean;
}

/** Tuning of a KVM backend. */
export interface KvmOptions {
  /** The KVM device node (default /dev/kvm). */
  device?: string;
  /**
   * Which registers KVM stores in kvm_run at every exit (KVM_CAP_SYNC_REGS), so reading them
   * after a run costs no ioctl: "regs" (GPRs, RIP, RFLAGS), "all" (also kvm_sregs) or "none".
   * Default "regs": measured here, storing kvm_sregs too adds about 0.3 µs (3%) to every exit,
   * while GET_SREGS on the rare state read costs one ioctl.
   */
  syncRegs?: "none" | "regs" | "all";
  /**
   * Register RAM slots with KVM_MEM_LOG_DIRTY_PAGES, so `collectDirtyLog` can feed the pages
   * the guest wrote into the page-state map (Diff snapshots). Default true.
   */
  dirtyLog?: boolean;
}

/** The KVM backend. */
export interface KvmBackend extends Backend {
  /** Always "kvm". */
  readonly name: "kvm";
  /** The handles another thread passes to `attachKvmBackend` to create vCPUs there. */
  handles(): KvmHandles;
  /** The guest RAM, once `createMemory` made it (or, when attached, the owner's RAM). */
  readonly memory: GuestMemory | null;
  /** Creates vCPU `id`; all its ioctls must then come from the calling thread. */
  createVcpu(id: number, env: VcpuEnv): KvmVcpu;
  /** `{ kvmclockNs }`: the VM's kvmclock (KVM_GET_CLOCK). */
  saveState(): Record<string, unknown>;
  /** Sets the VM's kvmclock (KVM_SET_CLOCK) from what `saveState` returned. */
  restoreState(state: Record<string, unknown>): void;
  /** Guest RAM mapped copy-on-write from a memory file (see `Backend.mapMemoryFile`). */
  mapMemoryFile(path: string, size: number): GuestMemory;
  /** KVM_GET_DIRTY_LOG per RAM slot into the page-state map (see `Backend.collectDirtyLog`). */
  collectDirtyLog(): void;
}

function errText(negErrno: number): string {
  return strerror(-negErrno);
}

/** Runs an ioctl that must succeed; throws HostError naming it otherwise. */
function must(r: number, what: string): number {
  if (r < 0) throw new HostError(`KVM ${what} failed: ${errText(r)}`);
  return r;
}

function openKvm(device: string): number {
  let fd: number;
  try {
    fd = sysOpen(device, O_RDWR);
  } catch (err) {
    throw new HostError(
      `Cannot open ${device}: ${(err as Error).message}. ` +
        `Run with --allow-ffi, or use --backend interp`,
      { cause: err },
    );
  }
  if (fd < 0) {
    const hint = -fd === EACCES
      ? "Add your user to the kvm group, or use --backend interp"
      : -fd === ENOENT
      ? "Use --backend interp, or load the kvm module"
      : "Use --backend interp";
    throw new HostError(`Cannot open ${device}: ${errText(fd)}. ${hint}`);
  }
  return fd;
}

/** Throws HostError unless `fd` is a KVM device speaking API version 12. */
function checkApiVersion(fd: number, device: string): void {
  const version = ioctlInt(fd, KVM_GET_API_VERSION, 0);
  if (version < 0) {
    throw new HostError(
      `${device} is not a KVM device (KVM_GET_API_VERSION: ${errText(version)}). ` +
        `Use --backend interp`,
    );
  }
  if (version !== KVM_API_VERSION) {
    throw new HostError(
      `${device} reports KVM API version ${version}; denovisor needs ${KVM_API_VERSION}. ` +
        `Use --backend interp`,
    );
  }
}

function detectPvm(): boolean {
  if (presetPvm !== null) return presetPvm;
  try {
    return Deno.statSync(KVM_PVM_MODULE).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Whether a KVM VM can be created here. Never throws: the reason says why not.
 *
 * @example
 * ```ts
 * import { kvmAvailable } from "./backend.ts";
 * const k = kvmAvailable();
 * console.log(k.ok ? "kvm" : k.reason);
 * ```
 */
export function kvmAvailable(
  options: Pick<KvmOptions, "device"> = {},
): { ok: true } | { ok: false; reason: string } {
  const device = options.device ?? KVM_DEVICE;
  let fd = -1;
  try {
    fd = openKvm(device);
    checkApiVersion(fd, device);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  } finally {
    if (fd >= 0) sysClose(fd);
  }
}

/**
 * Opens /dev/kvm and creates a VM. Throws HostError naming /dev/kvm and the reason when it
 * cannot (no device, no permission, an API version or capability this backend needs missing).
 *
 * @example
 * ```ts ignore
 * import { createKvmBackend } from "./backend.ts";
 * const kvm = createKvmBackend();
 * const memory = kvm.createMemory(1 << 20);
 * kvm.close();
 * ```
 */
export function createKvmBackend(options: KvmOptions = {}): KvmBackend {
  const device = options.device ?? KVM_DEVICE;
  const kvmFd = openKvm(device);
  try {
    checkApiVersion(kvmFd, device);
    for (
      const [cap, name] of [
        [KVM_CAP_USER_MEMORY, "USER_MEMORY"],
        [KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"],
        [KVM_CAP_EXT_CPUID, "EXT_CPUID"],
      ] as const
    ) {
      if (ioctlInt(kvmFd, KVM_CHECK_EXTENSION, cap) <= 0) {
        throw new HostError(
          `${device} lacks the capability KVM_CAP_${name} this backend needs. ` +
            `Use --backend interp`,
        );
      }
    }
    const vmFd = must(ioctlInt(kvmFd, KVM_CREATE_VM, 0), "KVM_CREATE_VM");
    try {
      must(ioctlInt(vmFd, KVM_SET_TSS_ADDR, TSS_ADDRESS), "KVM_SET_TSS_ADDR");
      if (ioctlInt(kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        const addr = new Uint8Array(8);
        new DataView(addr.buffer).setBigUint64(0, BigInt(IDENTITY_MAP_ADDRESS), true);
        must(ioctlBuf(vmFd, KVM_SET_IDENTITY_MAP_ADDR, addr), "KVM_SET_IDENTITY_MAP_ADDR");
      }
    } catch (err) {
      sysClose(vmFd);
      throw err;
    }
    return new KvmBackendImpl({ kvmFd, vmFd, pvm: detectPvm() }, true, options);
  } catch (err) {
    sysClose(kvmFd);
    throw err;
  }
}

/**
 * A backend over a VM opened on another thread (from `backend.handles()`): vCPUs created here
 * run on this thread. Closing it releases only what it created (its vCPUs), not the VM or RAM.
 */
export function attachKvmBackend(handles: KvmHandles, options: KvmOptions = {}): KvmBackend {
  return new KvmBackendImpl(handles, false, options);
}

class KvmBackendImpl implements KvmBackend {
  readonly name = "kvm" as const;
  readonly #h: KvmHandles;
  readonly #owner: boolean;
  #memory: GuestMemory | null = null;
  #memPtr: Deno.PointerObject | null = null;
  /** RAM slots and a reusable dirty bitmap each (one bit per page, whole 64-bit words). */
  #slots: { slot: number; firstPage: number; bitmap: Uint8Array; flags: number }[] = [];
  #cpuid: Uint8Array | null = null;
  #vcpus = new Set<KvmVcpu>();
  #closed = false;

  readonly #options: KvmOptions;

  constructor(h: KvmHandles, owner: boolean, options: KvmOptions) {
    this.#h = { ...h };
    this.#owner = owner;
    this.#options = options;
    if (!owner && h.memory) {
      // Safe: the owning thread keeps the RAM mapped until its backend's close(), which the
      // machine calls only after every vCPU thread has finished.
      const p = Deno.UnsafePointer.create(h.memory.address);
      if (p === null) throw new HostError("KVM handles carry a null guest RAM address");
      this.#memory = new GuestMemory(viewMapping(p, h.memory.size), h.memory.size);
    }
  }

  handles(): KvmHandles {
    return { ...this.#h, memory: this.#h.memory ? { ...this.#h.memory } : undefined };
  }

  /** The guest RAM, once created (or attached). */
  get memory(): GuestMemory | null {
    return this.#memory;
  }

  createMemory(size: number): GuestMemory {
    this.#checkNewMemory(size);
    const p = mmapAnonymous(size);
    if (typeof p === "number") {
      throw new HostError(
        `Cannot map ${size} bytes of guest memory: ${errText(p)}. Use a smaller --mem`,
      );
    }
    return this.#registerMemory(p, size);
  }

  /**
   * Guest RAM over the memory file `path` (raw RAM, `size` bytes: byte `offset` of the file is
   * byte `offset` of `GuestMemory.bytes`, so the regions around the MMIO gap line up with the
   * slots below), mapped MAP_PRIVATE: nothing is read up front, pages fault in from the page
   * cache as the guest touches them, and the guest's and devices' stores go to private copies,
   * never to the file. The file must not change while this VM runs (a page not yet copied would
   * show the change).
   */
  mapMemoryFile(path: string, size: number): GuestMemory {
    this.#checkNewMemory(size);
    const fd = sysOpen(path, O_RDONLY);
    if (fd < 0) throw new HostError(`Cannot open the memory file "${path}": ${errText(fd)}`);
    let p: Deno.PointerObject | number;
    try {
      p = mmapFilePrivate(fd, size);
    } finally {
      sysClose(fd); // the mapping keeps the file
    }
    if (typeof p === "number") {
      throw new HostError(`Cannot map the memory file "${path}" (${size} bytes): ${errText(p)}`);
    }
    return this.#registerMemory(p, size);
  }

  #checkNewMemory(size: number): void {
    if (this.#memory !== null) {
      throw new HostError("This KVM VM already has guest memory; create one backend per VM");
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(`Guest memory size ${size} must be a positive multiple of 4 KiB`);
    }
  }

  #registerMemory(p: Deno.PointerObject, size: number): GuestMemory {
    const base = pointerAddress(p);
    const regions = layoutRegions(size);
    const slots = ioctlInt(this.#h.kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
    if (slots > 0 && regions.length > slots) {
      sysMunmap(p, size);
      throw new HostError(`KVM offers ${slots} memory slots; guest RAM needs ${regions.length}`);
    }
    const flags = this.#options.dirtyLog === false ? 0 : KVM_MEM_LOG_DIRTY_PAGES;
    regions.forEach((r, slot) => {
      const region = encodeMemoryRegion({
        slot,
        flags,
        guestPhysAddr: r.gpa,
        memorySize: r.size,
        userspaceAddr: base + BigInt(r.offset),
      });
      const rc = ioctlBuf(this.#h.vmFd, KVM_SET_USER_MEMORY_REGION, region);
      if (rc < 0) {
        sysMunmap(p, size);
        throw new HostError(
          `KVM_SET_USER_MEMORY_REGION for slot ${slot} (${hex(r.gpa)}, ${r.size} bytes) ` +
            `failed: ${errText(rc)}`,
        );
      }
      const pages = r.size / PAGE_SIZE;
      const bitmap = new Uint8Array(Math.ceil(pages / 64) * 8);
      this.#slots.push({ slot, firstPage: r.offset / PAGE_SIZE, bitmap, flags });
    });
    this.#memPtr = p;
    this.#h.memory = { address: base, size };
    this.#memory = new GuestMemory(viewMapping(p, size), size);
    return this.#memory;
  }

  /**
   * Marks in the page-state map every page the guest wrote through KVM since the last call
   * (KVM_GET_DIRTY_LOG per slot, which also clears KVM's log). Writes through `GuestMemory`
   * (device DMA, the loader) mark the map themselves. Call it while no vCPU runs. Without
   * dirty logging (`dirtyLog: false`) it throws.
   */
  collectDirtyLog(): void {
    if (this.#memory === null) return;
    if (!this.#owner) throw new HostError("Collect KVM's dirty log on the VM's owning thread");
    const arg = new Uint8Array(KVM_DIRTY_LOG_SIZE);
    const dv = new DataView(arg.buffer);
    for (const s of this.#slots) {
      if ((s.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) {
        throw new HostError(
          "This KVM VM's RAM was registered without dirty logging (dirtyLog: false): it cannot " +
            "say which pages the guest wrote",
        );
      }
      dv.setUint32(0, s.slot, true);
      dv.setUint32(4, 0, true);
      // Safe: the bitmap is a plain ArrayBuffer the kernel fills during the call only.
      dv.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(s.bitmap))), true);
      must(ioctlBuf(this.#h.vmFd, KVM_GET_DIRTY_LOG, arg), `KVM_GET_DIRTY_LOG slot ${s.slot}`);
      this.#memory.pages.markDirtyBitmap(s.bitmap, s.firstPage);
    }
  }

  /** KVM_GET_SUPPORTED_CPUID, fetched once. */
  supportedCpuid(): Uint8Array {
    if (this.#cpuid !== null) return this.#cpuid;
    for (let n = 64; n <= 4096; n *= 2) {
      const buf = allocCpuid2(n);
      const rc = ioctlBuf(this.#h.kvmFd, KVM_GET_SUPPORTED_CPUID, buf);
      if (rc >= 0) {
        const nent = new DataView(buf.buffer).getUint32(0, true);
        this.#cpuid = buf.slice(0, KVM_CPUID2_HEADER_SIZE + nent * KVM_CPUID_ENTRY2_SIZE);
        return this.#cpuid;
      }
      if (-rc !== 7 /* E2BIG: more entries than room */) {
        throw new HostError(`KVM_GET_SUPPORTED_CPUID failed: ${errText(rc)}`);
      }
    }
    throw new HostError("KVM_GET_SUPPORTED_CPUID reports more than 4096 entries");
  }

  /** The VM's kvmclock (KVM_GET_CLOCK), in ns, for snapshots. */
  saveState(): Record<string, unknown> {
    const b = new Uint8Array(KVM_CLOCK_DATA_SIZE);
    must(ioctlBuf(this.#h.vmFd, KVM_GET_CLOCK, b), "KVM_GET_CLOCK");
    return { kvmclockNs: new DataView(b.buffer).getBigUint64(0, true) };
  }

  /** Continues the kvmclock from a saved value (KVM_SET_CLOCK), so guest time does not jump. */
  restoreState(state: Record<string, unknown>): void {
    const ns = state.kvmclockNs;
    if (typeof ns !== "bigint" || Object.keys(state).length !== 1) {
      throw new HostError(
        `Cannot restore KVM's VM state ${JSON.stringify(Object.keys(state))}: expected ` +
          `{ kvmclockNs }`,
      );
    }
    const b = new Uint8Array(KVM_CLOCK_DATA_SIZE);
    new DataView(b.buffer).setBigUint64(0, ns, true);
    must(ioctlBuf(this.#h.vmFd, KVM_SET_CLOCK, b), "KVM_SET_CLOCK");
  }

  createVcpu(id: number, env: VcpuEnv): KvmVcpu {
    if (this.#closed) throw new HostError("This KVM backend is closed");
    if (this.#memory === null || env.memory.buffer !== this.#memory.buffer) {
      throw new HostError(
        "A KVM vCPU needs the guest memory that this backend's createMemory() returned",
      );
    }
    // The VM's CPU model, filtered to what this host's KVM supports (the interpreter presents
    // the same leaves).
    const cpuid = encodeCpuid2(
      kvmCpuidFor(
        decodeCpuid2(this.supportedCpuid()),
        env.cpuModel ?? cpuModelFor("host"),
        id,
        env.platform ?? null,
      ),
    );
    const vcpu = new KvmVcpu(id, env, {
      kvmFd: this.#h.kvmFd,
      vmFd: this.#h.vmFd,
      cpuid,
      syncRegs: this.#options.syncRegs ?? "regs",
      pvm: this.#h.pvm,
      onClose: (v) => this.#vcpus.delete(v),
    });
    this.#vcpus.add(vcpu);
    return vcpu;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const v of [...this.#vcpus]) v.close();
    if (!this.#owner) return;
    sysClose(this.#h.vmFd);
    sysClose(this.#h.kvmFd);
    // The GuestMemory over this mapping must not be used after close(): its pages are gone.
    if (this.#memPtr !== null) sysMunmap(this.#memPtr, this.#h.memory!.size);
    this.#memPtr = null;
  }
}

interface VcpuSetup {
  syncRegs: "none" | "regs" | "all";
  kvmFd: number;
  vmFd: number;
  cpuid: Uint8Array;
  pvm: boolean;
  onClose: (v: KvmVcpu) => void;
}

/** A KVM vCPU. Create it with `KvmBackend.createVcpu`. */
export class KvmVcpu implements Vcpu {
  /** The vCPU index (its APIC id). */
  readonly id: number;
  /** Kernel id of the thread that created this vCPU, the one that must run it. */
  readonly threadId: number;
  /** Shared with kickers: [KICK_OPEN] 1 while kvm_run is mapped, [KICK_IN_FLIGHT] kicks now. */
  readonly #kickGuard = new Int32Array(new SharedArrayBuffer(8));
  readonly #env: VcpuEnv;
  readonly #fd: number;
  readonly #pvm: boolean;
  readonly #onClose: (v: KvmVcpu) => void;
  readonly #runPtr: Deno.PointerObject;
  readonly #runSize: number;
  // Views over kvm_run, made once: the exit path reads and writes only through these.
  readonly #u8: Uint8Array;
  readonly #dv: DataView;
  readonly #run: LibcSymbols["ioctl_run"];
  readonly #ioctl: LibcSymbols["ioctl_buf"];
  readonly #irqBuf = new Uint8Array(4);
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));
  /** The KVM_SYNC_X86_* sets KVM stores in kvm_run at every exit. */
  readonly #syncMask: number;
  /** KVM_GET/SET_XSAVE work here (KVM_GET_FPU does not report MXCSR; XSAVE does). */
  #xsave: boolean;
  /** KVM_CAP_DEBUGREGS, KVM_CAP_XCRS and KVM_CAP_MP_STATE on this host. */
  #debugRegs = false;
  #xcrs = false;
  #mpState = false;
  /** The XCR0 bits the guest's CPUID allows (1: x87 only, no XSAVE announced). */
  #xcr0Mask = 1n;
  /** kvm_run's synced registers describe the vCPU (false before a run and after setState). */
  #syncFresh = false;
  #halted = false;
  /**
   * The last exit was port I/O or MMIO: KVM finishes that instruction (stores an IN's value,
   * advances RIP, continues a REP) only on the next KVM_RUN, so state read or written before
   * then would be stale or overwritten. See #completePendingIo.
   */
  #ioPending = false;
  #stateMsrs: number[] | null = null;
  #closed = false;

  /** @internal Use `KvmBackend.createVcpu`. */
  constructor(id: number, env: VcpuEnv, setup: VcpuSetup) {
    this.id = id;
    this.threadId = sysGettid();
    Atomics.store(this.#kickGuard, KICK_OPEN, 1);
    this.#env = env;
    this.#pvm = setup.pvm;
    this.#onClose = setup.onClose;
    this.#fd = must(ioctlInt(setup.vmFd, KVM_CREATE_VCPU, id), `KVM_CREATE_VCPU ${id}`);
    try {
      this.#runSize = must(
        ioctlInt(setup.kvmFd, KVM_GET_VCPU_MMAP_SIZE, 0),
        "KVM_GET_VCPU_MMAP_SIZE",
      );
      if (this.#runSize < RUN_FIXED_SIZE) {
        throw new HostError(`KVM's kvm_run mapping is only ${this.#runSize} bytes`);
      }
      const p = mmapFd(this.#fd, this.#runSize);
      if (typeof p === "number") throw new HostError(`Cannot map kvm_run: ${errText(p)}`);
      this.#runPtr = p;
      // Safe: the kvm_run mapping lives until close(), and close() drops every use of the views.
      const buf = viewMapping(p, this.#runSize);
      this.#u8 = new Uint8Array(buf);
      this.#dv = new DataView(buf);
      must(ioctlBuf(this.#fd, KVM_SET_CPUID2, setup.cpuid), "KVM_SET_CPUID2");
      const sync = ioctlInt(setup.kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
      const wanted = setup.syncRegs === "all"
        ? KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS
        : setup.syncRegs === "regs"
        ? KVM_SYNC_X86_REGS
        : 0;
      this.#syncMask = sync > 0 ? sync & wanted : 0;
      this.#dv.setUint32(RUN_KVM_VALID_REGS, this.#syncMask, true);
      this.#dv.setUint32(RUN_KVM_DIRTY_REGS, 0, true);
      this.#xsave = ioctlInt(setup.kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0;
      this.#debugRegs = ioctlInt(setup.kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0;
      this.#xcrs = ioctlInt(setup.kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
      this.#mpState = ioctlInt(setup.kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_MP_STATE) > 0;
      this.#xcr0Mask = supportedXcr0(decodeCpuid2(setup.cpuid));
    } catch (err) {
      sysClose(this.#fd);
      throw err;
    }
    this.#run = libc().ioctl_run;
    this.#ioctl = libc().ioctl_buf;
  }

  // ---- state ----

  #getRegs(): DataView {
    if (this.#syncFresh && (this.#syncMask & KVM_SYNC_X86_REGS) !== 0) {
      return new DataView(
        this.#u8.slice(RUN_SYNC_REGS_REGS, RUN_SYNC_REGS_REGS + KVM_REGS_SIZE).buffer,
      );
    }
    const b = new Uint8Array(KVM_REGS_SIZE);
    must(ioctlBuf(this.#fd, KVM_GET_REGS, b), "KVM_GET_REGS");
    return new DataView(b.buffer);
  }

  #getSregs(): DataView {
    if (this.#syncFresh && (this.#syncMask & KVM_SYNC_X86_SREGS) !== 0) {
      return new DataView(
        this.#u8.slice(RUN_SYNC_REGS_SREGS, RUN_SYNC_REGS_SREGS + KVM_SREGS_SIZE).buffer,
      );
    }
    const b = new Uint8Array(KVM_SREGS_SIZE);
    must(ioctlBuf(this.#fd, KVM_GET_SREGS, b), "KVM_GET_SREGS");
    return new DataView(b.buffer);
  }

  /** The state MSRs this host's KVM can read (learned once by trying each). */
  #msrList(): number[] {
    if (this.#stateMsrs !== null) return this.#stateMsrs;
    const ok: number[] = [];
    for (const index of STATE_MSRS) {
      const b = encodeMsrs([[index, 0n]]);
      if (ioctlBuf(this.#fd, KVM_GET_MSRS, b) === 1) ok.push(index);
    }
    this.#stateMsrs = ok;
    return ok;
  }

  /** The vCPU's XSAVE image, or null where KVM_GET_XSAVE is unavailable. */
  #getXsave(): DataView | null {
    if (!this.#xsave) return null;
    const b = new Uint8Array(KVM_XSAVE_SIZE);
    if (ioctlBuf(this.#fd, KVM_GET_XSAVE, b) < 0) {
      this.#xsave = false;
      return null;
    }
    return new DataView(b.buffer);
  }

  /**
   * Lets KVM finish an I/O instruction whose exit was handled but not yet resumed: KVM_RUN
   * with kvm_run.immediate_exit set completes it and returns EINTR without running the guest
   * (the KVM API's recipe before saving state).
   */
  #completePendingIo(): void {
    if (!this.#ioPending) return;
    this.#ioPending = false;
    this.#u8[RUN_IMMEDIATE_EXIT] = 1;
    const rc = this.#run(this.#fd, KVM_RUN, null);
    const e = rc < 0 ? errno() : 0;
    this.#u8[RUN_IMMEDIATE_EXIT] = 0;
    this.#syncFresh = false;
    if (rc >= 0 || e !== EINTR) {
      throw new HostError(
        `KVM could not complete vCPU ${this.id}'s pending I/O before a state transfer: ` +
          (rc < 0 ? strerror(e) : "KVM_RUN ran the guest despite immediate_exit"),
      );
    }
  }

  /** What another thread needs to kick this vCPU out of KVM_RUN (see `kickVcpu`). */
  kickHandle(): VcpuKickHandle {
    return {
      threadId: this.threadId,
      runAddress: pointerAddress(this.#runPtr),
      guard: this.#kickGuard.buffer as SharedArrayBuffer,
    };
  }

  getState(): CpuState {
    this.#completePendingIo();
    const regs = decodeRegs(this.#getRegs());
    const sregs = decodeSregs(this.#getSregs());
    const fpuBuf = new Uint8Array(KVM_FPU_SIZE);
    must(ioctlBuf(this.#fd, KVM_GET_FPU, fpuBuf), "KVM_GET_FPU");
    const fpu = decodeFpu(new DataView(fpuBuf.buffer));
    const xsave = this.#getXsave();
    if (xsave !== null) {
      fpu.mxcsr = xsave.getUint32(XSAVE_MXCSR, true);
      // The area as setState writes it back (x87/SSE marked present, from `fpu`), so a
      // get-set-get round trip returns the same bytes.
      putFpuInXsave(fpu, xsave);
    }
    const list = this.#msrList();
    const msrBuf = encodeMsrs(list.map((i) => [i, 0n] as const));
    const n = must(ioctlBuf(this.#fd, KVM_GET_MSRS, msrBuf), "KVM_GET_MSRS");
    const events = new Uint8Array(KVM_VCPU_EVENTS_SIZE);
    must(ioctlBuf(this.#fd, KVM_GET_VCPU_EVENTS, events), "KVM_GET_VCPU_EVENTS");
    const dr = new Uint8Array(KVM_DEBUGREGS_SIZE);
    if (this.#debugRegs) must(ioctlBuf(this.#fd, KVM_GET_DEBUGREGS, dr), "KVM_GET_DEBUGREGS");
    let xcr0 = 1n;
    if (this.#xcrs) {
      const b = new Uint8Array(KVM_XCRS_SIZE);
      must(ioctlBuf(this.#fd, KVM_GET_XCRS, b), "KVM_GET_XCRS");
      xcr0 = decodeXcrs(new DataView(b.buffer)).find(([i]) => i === 0)?.[1] ?? 1n;
    }
    const mp = new Uint8Array(KVM_MP_STATE_SIZE);
    if (this.#mpState) must(ioctlBuf(this.#fd, KVM_GET_MP_STATE, mp), "KVM_GET_MP_STATE");
    return cpuStateFromKvm(regs, sregs, {
      fpu,
      msrs: decodeMsrs(msrBuf, n),
      halted: this.#halted,
      events: decodeEvents(new DataView(events.buffer)),
      debug: this.#debugRegs ? decodeDebugRegs(new DataView(dr.buffer)) : undefined,
      xcr0,
      xsave: xsave === null ? null : new Uint8Array(xsave.buffer),
      mpState: decodeMpState(new DataView(mp.buffer)),
    });
  }

  setState(s: CpuState): void {
    this.#completePendingIo();
    const regs = new Uint8Array(KVM_REGS_SIZE);
    encodeRegs(s, new DataView(regs.buffer));
    const apicBase = s.msrs.get(MSR.APIC_BASE) ??
      decodeSregs(this.#getSregs()).apicBase;
    const sregs = new Uint8Array(KVM_SREGS_SIZE);
    encodeSregs(s, apicBase, new DataView(sregs.buffer));
    const fpu = new Uint8Array(KVM_FPU_SIZE);
    encodeFpu(s.fpu, new DataView(fpu.buffer));
    // SREGS before REGS: setting CR0/EFER can change how KVM interprets RFLAGS and RIP.
    must(ioctlBuf(this.#fd, KVM_SET_SREGS, sregs), "KVM_SET_SREGS");
    must(ioctlBuf(this.#fd, KVM_SET_REGS, regs), "KVM_SET_REGS");
    must(ioctlBuf(this.#fd, KVM_SET_FPU, fpu), "KVM_SET_FPU");
    if (this.#xcrs) {
      // XCR0 before XSAVE. A state from the interpreter (or a model without XSAVE) has 1.
      if ((s.xcr0 & ~this.#xcr0Mask) !== 0n || (s.xcr0 & 1n) === 0n) {
        throw new VmmError(
          `Cannot restore XCR0 ${hex(s.xcr0)}: the guest's CPU model allows ` +
            `${hex(this.#xcr0Mask)} (restore with the CPU model the state was taken with)`,
        );
      }
      const rc = ioctlBuf(this.#fd, KVM_SET_XCRS, encodeXcrs([[0, s.xcr0]]));
      if (rc < 0) throw new HostError(`KVM refused XCR0 ${hex(s.xcr0)}: ${errText(rc)}`);
    }
    // XSAVE last: it rewrites what KVM_SET_FPU set, so its legacy region is `s.fpu` (KVM_SET_FPU
    // leaves MXCSR alone; XSAVE with the SSE bit in XSTATE_BV sets it), and the state beyond
    // SSE is the snapshot's (`s.xsave`) or, without one, the vCPU's own.
    const xsave = this.#xsave && s.xsave !== null && s.xsave.length === KVM_XSAVE_SIZE
      ? new DataView(s.xsave.slice().buffer)
      : this.#getXsave();
    if (xsave !== null) {
      putFpuInXsave(s.fpu, xsave);
      const rc = ioctlBuf(this.#fd, KVM_SET_XSAVE, new Uint8Array(xsave.buffer));
      if (rc < 0) {
        throw new HostError(`KVM refused MXCSR ${hex(s.fpu.mxcsr)}: ${errText(rc)}`);
      }
    }
    const entries = msrEntriesOf(s);
    if (entries.length > 0) {
      const n = must(ioctlBuf(this.#fd, KVM_SET_MSRS, encodeMsrs(entries)), "KVM_SET_MSRS");
      if (n < entries.length) {
        const [index, value] = entries[n]!;
        throw new HostError(
          `KVM refused to set MSR ${hex(index)} to ${hex(value)}: this host's KVM does not ` +
            `support it or the value is invalid`,
        );
      }
    }
    // An interrupt or exception the state was delivering is delivered on the next KVM_RUN.
    must(ioctlBuf(this.#fd, KVM_SET_VCPU_EVENTS, encodeEvents(s.events)), "KVM_SET_VCPU_EVENTS");
    if (this.#debugRegs) {
      must(ioctlBuf(this.#fd, KVM_SET_DEBUGREGS, encodeDebugRegs(s.debug)), "KVM_SET_DEBUGREGS");
    }
    const halted = s.halted || s.mpState === "halted";
    if (this.#mpState) {
      // HLT exits to this VMM (no in-kernel irqchip), which waits itself (#halted): KVM's side
      // stays runnable, the only state it accepts without an in-kernel LAPIC.
      const mp = halted ? "runnable" : s.mpState;
      const rc = ioctlBuf(this.#fd, KVM_SET_MP_STATE, encodeMpState(mp));
      if (rc < 0) throw new HostError(`KVM refused MP state ${mp}: ${errText(rc)}`);
    }
    this.#syncFresh = false;
    this.#halted = halted;
  }

  // ---- run loop ----

  /** Returns (and clears) the pending stop. */
  #take(c: RunControl): StopReason {
    const s = c.stop!;
    c.stop = null;
    return s;
  }

  /** Guest RFLAGS.IF at the last exit. */
  #ifFlag(): boolean {
    if (this.#syncFresh && (this.#syncMask & KVM_SYNC_X86_REGS) !== 0) {
      return (this.#dv.getUint32(RUN_SYNC_REGS_REGS + 136, true) & RFLAGS_IF) !== 0;
    }
    return this.#u8[RUN_IF_FLAG] !== 0;
  }

  /** Protected or long mode at the last exit, for messages. */
  #modeName(): "real" | "protected" | "long" {
    try {
      const s = decodeSregs(this.#getSregs());
      if ((s.efer & EFER_LMA) !== 0) return "long";
      return (s.cr0 & CR0_PE) !== 0 ? "protected" : "real";
    } catch {
      return "real";
    }
  }

  #rip(): string {
    try {
      return hex(decodeRegs(this.#getRegs()).rip);
    } catch {
      return "unknown";
    }
  }

  /**
   * Waits while the guest is halted with interrupts enabled: runs the machine's timers, checks
   * requests, sleeps up to 1 ms at a time. Returns a StopReason, or null when an interrupt is
   * pending and the guest should be entered again.
   */
  #waitHalted(c: RunControl, irq: InterruptController): StopReason | null {
    for (;;) {
      if (irq.hasInterrupt()) {
        this.#halted = false;
        return null;
      }
      c.service();
      if (c.checkRequests()) return this.#take(c);
      if (irq.hasInterrupt()) continue;
      const wait = (c.nextDeadline() - c.now()) / 1e6;
      const ms = wait > HALT_POLL_MS ? HALT_POLL_MS : wait;
      if (ms > 0) Atomics.wait(this.#sleeper, 0, 0, ms);
    }
  }

  #fault(message: string): StopReason {
    return { kind: "fault", message };
  }

  run(): StopReason {
    if (this.#closed) throw new HostError(`vCPU ${this.id} is closed`);
    const env = this.#env;
    const c = env.control;
    const ports = env.ports;
    const mmio = env.mmio;
    const u8 = this.#u8;
    const dv = this.#dv;
    const fd = this.#fd;
    const kvmRun = this.#run;
    const kvmIoctl = this.#ioctl;
    const runSize = this.#runSize;

    if (c.checkRequests()) return this.#take(c);
    if (this.#halted) {
      const r = this.#waitHalted(c, env.interrupts);
      if (r !== null) return r;
    }
    for (;;) {
      // Device timers (PIT, APIC timer, plugins) fire between exits, before interrupts are
      // offered to the guest: one compare per exit while none is due.
      const deadline = c.nextDeadline();
      if (deadline !== Infinity && deadline <= c.now()) c.service();
      // Interrupt injection without an in-kernel irqchip: KVM_INTERRUPT when the guest can take
      // one, otherwise ask KVM to exit as soon as it can (KVM_EXIT_IRQ_WINDOW_OPEN).
      const irq = env.interrupts;
      if (irq.hasInterrupt()) {
        if (u8[RUN_READY_FOR_INTERRUPT_INJECTION] !== 0 && this.#ifFlag()) {
          this.#irqBuf[0] = irq.acknowledge() & 0xff;
          const irc = kvmIoctl(fd, KVM_INTERRUPT, this.#irqBuf);
          if (irc < 0) must(-errno(), "KVM_INTERRUPT");
          u8[RUN_REQUEST_INTERRUPT_WINDOW] = 0;
        } else {
          u8[RUN_REQUEST_INTERRUPT_WINDOW] = 1;
        }
      } else if (u8[RUN_REQUEST_INTERRUPT_WINDOW] !== 0) {
        u8[RUN_REQUEST_INTERRUPT_WINDOW] = 0;
      }

      // Hot path: one FFI call, no allocation; `null` is a 64-bit zero argument.
      const rc = kvmRun(fd, KVM_RUN, null);
      if (rc < 0) {
        const e = errno();
        if (e === EINTR) {
          this.#ioPending = false; // KVM completes pending I/O before it looks at signals
          u8[RUN_IMMEDIATE_EXIT] = 0; // set by kickVcpu; KVM does not clear it
          // A signal kicked the vCPU out (or arrived before entry): see whether anyone wants
          // it to stop, else go back in.
          if (c.checkRequests()) return this.#take(c);
          continue;
        }
        throw new HostError(`KVM_RUN on vCPU ${this.id} failed: ${strerror(e)}`);
      }
      this.#syncFresh = true;
      const reason = dv.getUint32(RUN_EXIT_REASON, true);
      this.#ioPending = reason === KVM_EXIT_IO || reason === KVM_EXIT_MMIO;
      if (env.trace !== null) env.trace(this.#describeExit(reason));

      switch (reason) {
        case KVM_EXIT_IO:
          if (!dispatchIoExit(u8, dv, ports, runSize)) {
            return this.#fault(
              `KVM reported a port I/O exit whose data lies outside kvm_run (${
                this.#describeExit(reason)
              })`,
            );
          }
          break;
        case KVM_EXIT_MMIO:
          dispatchMmioExit(u8, dv, mmio);
          break;
        case KVM_EXIT_HLT: {
          if (!this.#ifFlag()) {
            this.#halted = true;
            return this.#fault(
              `CPU halted with interrupts disabled: nothing can wake it (rip=${this.#rip()})`,
            );
          }
          this.#halted = true;
          const r = this.#waitHalted(c, env.interrupts);
          if (r !== null) return r;
          break;
        }
        case KVM_EXIT_IRQ_WINDOW_OPEN:
        case KVM_EXIT_INTR:
          break;
        case KVM_EXIT_SHUTDOWN:
          return this.#fault("guest triple-faulted (KVM_EXIT_SHUTDOWN)");
        case KVM_EXIT_INTERNAL_ERROR:
          return this.#fault(this.#internalErrorMessage());
        case KVM_EXIT_FAIL_ENTRY: {
          const f = decodeFailEntry(dv);
          return this.#fault(
            `KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY): hardware entry failure ` +
              `reason ${hex(f.hardwareEntryFailureReason)} on host CPU ${f.cpu}; the vCPU ` +
              `state is invalid for this mode`,
          );
        }
        case KVM_EXIT_SYSTEM_EVENT: {
          const type = dv.getUint32(RUN_SYSTEM_EVENT_TYPE, true);
          // KVM_SYSTEM_EVENT_SHUTDOWN = 1, _RESET = 2 (linux/kvm.h).
          if (type === 1) return { kind: "poweroff" };
          if (type === 2) return { kind: "reset" };
          return this.#fault(`KVM reported system event ${type}`);
        }
        default:
          return this.#fault(
            `KVM stopped the vCPU with exit reason ${reason} ` +
              `(${EXIT_REASON_NAMES[reason] ?? "unknown"}) that denovisor does not handle`,
          );
      }
      if (c.stop !== null || c.checkRequests()) return this.#take(c);
    }
  }

  #internalErrorMessage(): string {
    const e = decodeInternalError(this.#dv);
    const name = INTERNAL_ERROR_NAMES[e.suberror] ?? `unknown suberror ${e.suberror}`;
    const data = e.data.length > 0 ? `; data ${e.data.map((d) => hex(d)).join(" ")}` : "";
    const mode = this.#modeName();
    let msg = `KVM internal error ${name} at rip=${this.#rip()} in ${mode} mode${data}`;
    if (mode !== "real") {
      msg += this.#pvm
        ? `. This host's nested KVM (kvm_pvm) cannot deliver exceptions or interrupts to a ` +
          `guest in protected or long mode; --backend interp runs it`
        : `. Try --backend interp to see what the guest was doing`;
    }
    return msg;
  }

  #describeExit(reason: number): string {
    const dv = this.#dv;
    const name = EXIT_REASON_NAMES[reason] ?? String(reason);
    if (reason === KVM_EXIT_IO) {
      const dir = dv.getUint8(RUN_IO_DIRECTION) === KVM_EXIT_IO_OUT ? "out" : "in";
      return `kvm vcpu${this.id} exit IO ${dir} port=${hex(dv.getUint16(RUN_IO_PORT, true), 4)} ` +
        `size=${dv.getUint8(RUN_IO_SIZE)} count=${dv.getUint32(RUN_IO_COUNT, true)}`;
    }
    if (reason === KVM_EXIT_MMIO) {
      const rw = dv.getUint8(RUN_MMIO_IS_WRITE) ? "write" : "read";
      return `kvm vcpu${this.id} exit MMIO ${rw} addr=${
        hex(dv.getBigUint64(RUN_MMIO_PHYS_ADDR, true))
      } len=${dv.getUint32(RUN_MMIO_LEN, true)}`;
    }
    return `kvm vcpu${this.id} exit ${name}`;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // A kick from another thread may be on its way (the supervisor learns that the VM ended
    // only later): refuse new ones and wait out any in flight before kvm_run goes away, since
    // kickVcpu stores into it.
    Atomics.store(this.#kickGuard, KICK_OPEN, 0);
    while (Atomics.load(this.#kickGuard, KICK_IN_FLIGHT) !== 0) {
      // A kick is a byte store and a tgkill: microseconds.
    }
    sysMunmap(this.#runPtr, this.#runSize);
    sysClose(this.#fd);
    this.#onClose(this);
  }
}

/** Signal used to kick a vCPU thread out of KVM_RUN (SIGUSR2, number 12 on x86-64 Linux). */
export const KICK_SIGNAL = "SIGUSR2";
const KICK_SIGNAL_NUMBER = 12;

/** Identifies a vCPU for `kickVcpu` from any thread (plain numbers: it can be posted). */
export interface VcpuKickHandle {
  /** Kernel id of the vCPU's thread. */
  threadId: number;
  /** Host address of the vCPU's kvm_run mapping. */
  runAddress: bigint;
  /** The vCPU's kick guard (KICK_OPEN, KICK_IN_FLIGHT): a kick after its close does nothing. */
  guard: SharedArrayBuffer;
}

/** Kick guard cell: 1 while the vCPU is open. */
const KICK_OPEN = 0;
/** Kick guard cell: kicks under way (close waits for none). */
const KICK_IN_FLIGHT = 1;

let kicksEnabled = false;
function ignoreKick(): void {}

/**
 * Installs a do-nothing handler for KICK_SIGNAL, so that a kick interrupts KVM_RUN instead of
 * killing the process. Call (any thread) before kicking. The handler stays for the life of the
 * process: a kick still in flight after its vCPU stopped (or one whose thread id was reused)
 * must never meet the default action, which ends the process. It does not keep the process
 * alive. The returned function is kept for callers that pair setup with teardown; it does nothing.
 */
export function enableVcpuKicks(): () => void {
  if (!kicksEnabled) {
    kicksEnabled = true;
    Deno.addSignalListener(KICK_SIGNAL, ignoreKick);
  }
  return () => {};
}

/**
 * Makes a vCPU running on another thread return from KVM_RUN soon, so that it sees a request
 * stored in its RunControl (store the request first, then kick). Sets kvm_run.immediate_exit,
 * which covers a vCPU that is between two KVM_RUN calls, then signals its thread, which
 * covers one inside the guest. A kick that lands while the vCPU completes I/O for a state
 * transfer can be lost: a supervisor repeats it until the request is taken.
 * Needs `enableVcpuKicks()` first; the vCPU must not have been closed.
 */
export function kickVcpu(handle: VcpuKickHandle): void {
  const guard = new Int32Array(handle.guard);
  Atomics.add(guard, KICK_IN_FLIGHT, 1);
  try {
    // Closed (or closing): kvm_run may be gone and the thread with it; nothing to interrupt.
    if (Atomics.load(guard, KICK_OPEN) !== 1) return;
    const p = Deno.UnsafePointer.create(handle.runAddress);
    if (p === null) throw new HostError("A vCPU kick handle carries a null kvm_run address");
    // immediate_exit is one byte KVM reads at each entry; kvm_run stays mapped while the
    // guard says open and this kick is counted in flight.
    new Uint8Array(viewMapping(p, RUN_IMMEDIATE_EXIT + 1))[RUN_IMMEDIATE_EXIT] = 1;
    const rc = sysTgkill(handle.threadId, KICK_SIGNAL_NUMBER);
    if (rc < 0) {
      throw new HostError(`Cannot signal vCPU thread ${handle.threadId}: ${errText(rc)}`);
    }
  } finally {
    Atomics.sub(guard, KICK_IN_FLIGHT, 1);
  }
}
