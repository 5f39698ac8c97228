/**
 * KVM API numbers for x86-64: ioctl requests (derived with the kernel's `_IO/_IOR/_IOW/_IOWR`
 * encoding), capabilities, exit reasons and the byte offsets of the `kvm_run` fields the
 * backend reads. Source: the kernel's include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h
 * and Documentation/virt/kvm/api.rst.
 */

/** The KVM ioctl type byte (`KVMIO` in linux/kvm.h). */
export const KVMIO = 0xae;

/** `_IOC_NONE`, `_IOC_WRITE`, `_IOC_READ` direction bits (asm-generic/ioctl.h). */
const IOC_NONE = 0, IOC_WRITE = 1, IOC_READ = 2;

/** `_IOC(dir, type, nr, size)`: dir in bits 30-31, size in 16-29, type in 8-15, nr in 0-7. */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
/** `_IO(type, nr)`: no argument struct. */
export function io(nr: number): number {
  return ioc(IOC_NONE, KVMIO, nr, 0);
}
/** `_IOR(type, nr, size)`: the kernel writes `size` bytes to the argument. */
export function ior(nr: number, size: number): number {
  return ioc(IOC_READ, KVMIO, nr, size);
}
/** `_IOW(type, nr, size)`: the kernel reads `size` bytes from the argument. */
export function iow(nr: number, size: number): number {
  return ioc(IOC_WRITE, KVMIO, nr, size);
}
/** `_IOWR(type, nr, size)`: both directions. */
export function iowr(nr: number, size: number): number {
  return ioc(IOC_READ | IOC_WRITE, KVMIO, nr, size);
}

// ---- struct sizes (arch/x86/include/uapi/asm/kvm.h) ----

/** sizeof(struct kvm_regs): 18 × u64. */
export const KVM_REGS_SIZE = 144;
/** sizeof(struct kvm_segment). */
export const KVM_SEGMENT_SIZE = 24;
/** sizeof(struct kvm_dtable). */
export const KVM_DTABLE_SIZE = 16;
/** sizeof(struct kvm_sregs): 8 segments, 2 dtables, 7 × u64, interrupt_bitmap[4]. */
export const KVM_SREGS_SIZE = 312;
/** sizeof(struct kvm_fpu). */
export const KVM_FPU_SIZE = 416;
/** sizeof(struct kvm_userspace_memory_region). */
export const KVM_USERSPACE_MEMORY_REGION_SIZE = 32;
/** sizeof(struct kvm_msrs) header (nmsrs, pad); entries follow. */
export const KVM_MSRS_HEADER_SIZE = 8;
/** sizeof(struct kvm_msr_entry): index, reserved, data. */
export const KVM_MSR_ENTRY_SIZE = 16;
/** sizeof(struct kvm_cpuid2) header (nent, padding); entries follow. */
export const KVM_CPUID2_HEADER_SIZE = 8;
/** sizeof(struct kvm_cpuid_entry2). */
export const KVM_CPUID_ENTRY2_SIZE = 40;
/** sizeof(struct kvm_vcpu_events). */
export const KVM_VCPU_EVENTS_SIZE = 64;
/** sizeof(struct kvm_interrupt). */
export const KVM_INTERRUPT_SIZE = 4;

// ---- ioctl requests ----

/** `_IO(KVMIO, 0x00)` on /dev/kvm: returns 12. */
export const KVM_GET_API_VERSION: number = io(0x00);
/** `_IO(KVMIO, 0x01)` on /dev/kvm: returns a VM fd. */
export const KVM_CREATE_VM: number = io(0x01);
/** `_IO(KVMIO, 0x03)`: returns > 0 when a capability is present. */
export const KVM_CHECK_EXTENSION: number = io(0x03);
/** `_IO(KVMIO, 0x04)`: size of the vCPU's kvm_run mapping. */
export const KVM_GET_VCPU_MMAP_SIZE: number = io(0x04);
/** `_IOWR(KVMIO, 0x05, struct kvm_cpuid2)`. */
export const KVM_GET_SUPPORTED_CPUID: number = iowr(0x05, KVM_CPUID2_HEADER_SIZE);
/** `_IO(KVMIO, 0x41)` on a VM fd: returns a vCPU fd. */
export const KVM_CREATE_VCPU: number = io(0x41);
/** Bytes of `struct kvm_dirty_log`: slot u32, padding u32, dirty_bitmap pointer u64. */
export const KVM_DIRTY_LOG_SIZE = 16;
/**
 * `_IOW(KVMIO, 0x42, struct kvm_dirty_log)` on a VM fd: copies a slot's dirty bitmap (one bit per
 * page, 64-bit words) out and clears it.
 */
export const KVM_GET_DIRTY_LOG: number = iow(0x42, KVM_DIRTY_LOG_SIZE);
/** `_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)`. */
export const KVM_SET_USER_MEMORY_REGION: number = iow(0x46, KVM_USERSPACE_MEMORY_REGION_SIZE);
/** `_IO(KVMIO, 0x47)`: three pages the VMX real-mode emulation needs, below 4 GiB. */
export const KVM_SET_TSS_ADDR: number = io(0x47);
/** `_IOW(KVMIO, 0x48, __u64)`: one page for the VMX identity map. */
export const KVM_SET_IDENTITY_MAP_ADDR: number = iow(0x48, 8);
/** `_IO(KVMIO, 0x80)`: runs the vCPU; the argument must be 0. */
export const KVM_RUN: number = io(0x80);
/** `_IOR(KVMIO, 0x81, struct kvm_regs)`. */
export const KVM_GET_REGS: number = ior(0x81, KVM_REGS_SIZE);
/** `_IOW(KVMIO, 0x82, struct kvm_regs)`. */
export const KVM_SET_REGS: number = iow(0x82, KVM_REGS_SIZE);
/** `_IOR(KVMIO, 0x83, struct kvm_sregs)`. */
export const KVM_GET_SREGS: number = ior(0x83, KVM_SREGS_SIZE);
/** `_IOW(KVMIO, 0x84, struct kvm_sregs)`. */
export const KVM_SET_SREGS: number = iow(0x84, KVM_SREGS_SIZE);
/** `_IOW(KVMIO, 0x86, struct kvm_interrupt)`: queue an external interrupt (no irqchip). */
export const KVM_INTERRUPT: number = iow(0x86, KVM_INTERRUPT_SIZE);
/** `_IOWR(KVMIO, 0x88, struct kvm_msrs)`. */
export const KVM_GET_MSRS: number = iowr(0x88, KVM_MSRS_HEADER_SIZE);
/** `_IOW(KVMIO, 0x89, struct kvm_msrs)`. */
export const KVM_SET_MSRS: number = iow(0x89, KVM_MSRS_HEADER_SIZE);
/** `_IOR(KVMIO, 0x8c, struct kvm_fpu)`. */
export const KVM_GET_FPU: number = ior(0x8c, KVM_FPU_SIZE);
/** `_IOW(KVMIO, 0x8d, struct kvm_fpu)`. */
export const KVM_SET_FPU: number = iow(0x8d, KVM_FPU_SIZE);
/** sizeof(struct kvm_xsave) (the fixed 4 KiB form). */
export const KVM_XSAVE_SIZE = 4096;
/** `_IOR(KVMIO, 0xa4, struct kvm_xsave)`. */
export const KVM_GET_XSAVE: number = ior(0xa4, KVM_XSAVE_SIZE);
/** `_IOW(KVMIO, 0xa5, struct kvm_xsave)`. */
export const KVM_SET_XSAVE: number = iow(0xa5, KVM_XSAVE_SIZE);
/** sizeof(struct kvm_clock_data): clock, flags, pad0, realtime, host_tsc, pad[4]. */
export const KVM_CLOCK_DATA_SIZE = 48;
/** `_IOR(KVMIO, 0x7c, struct kvm_clock_data)` (VM ioctl): the VM's kvmclock in ns. */
export const KVM_GET_CLOCK: number = ior(0x7c, KVM_CLOCK_DATA_SIZE);
/** `_IOW(KVMIO, 0x7b, struct kvm_clock_data)` (VM ioctl). */
export const KVM_SET_CLOCK: number = iow(0x7b, KVM_CLOCK_DATA_SIZE);
/** `_IOR(KVMIO, 0x9f, struct kvm_vcpu_events)`. */
export const KVM_GET_VCPU_EVENTS: number = ior(0x9f, KVM_VCPU_EVENTS_SIZE);
/** `_IOW(KVMIO, 0xa0, struct kvm_vcpu_events)`. */
export const KVM_SET_VCPU_EVENTS: number = iow(0xa0, KVM_VCPU_EVENTS_SIZE);
/** kvm_vcpu_events.flags: `nmi.pending` is valid. */
export const KVM_VCPUEVENT_VALID_NMI_PENDING = 0x1;
/** kvm_vcpu_events.flags: `interrupt.shadow` is valid. */
export const KVM_VCPUEVENT_VALID_SHADOW = 0x4;
/** sizeof(struct kvm_debugregs): db[4], dr6, dr7, flags, reserved[9] (all u64). */
export const KVM_DEBUGREGS_SIZE = 128;
/** `_IOR(KVMIO, 0xa1, struct kvm_debugregs)`. */
export const KVM_GET_DEBUGREGS: number = ior(0xa1, KVM_DEBUGREGS_SIZE);
/** `_IOW(KVMIO, 0xa2, struct kvm_debugregs)`. */
export const KVM_SET_DEBUGREGS: number = iow(0xa2, KVM_DEBUGREGS_SIZE);
/** KVM_MAX_XCRS: entries in kvm_xcrs.xcrs. */
export const KVM_MAX_XCRS = 16;
/** sizeof(struct kvm_xcrs): nr_xcrs, flags (u32), xcrs[16] {xcr, reserved: u32; value: u64}, padding[16] (u64). */
export const KVM_XCRS_SIZE = 8 + KVM_MAX_XCRS * 16 + 16 * 8;
/** `_IOR(KVMIO, 0xa6, struct kvm_xcrs)`. */
export const KVM_GET_XCRS: number = ior(0xa6, KVM_XCRS_SIZE);
/** `_IOW(KVMIO, 0xa7, struct kvm_xcrs)`. */
export const KVM_SET_XCRS: number = iow(0xa7, KVM_XCRS_SIZE);
/** sizeof(struct kvm_mp_state): one u32. */
export const KVM_MP_STATE_SIZE = 4;
/** `_IOR(KVMIO, 0x98, struct kvm_mp_state)`. */
export const KVM_GET_MP_STATE: number = ior(0x98, KVM_MP_STATE_SIZE);
/** `_IOW(KVMIO, 0x99, struct kvm_mp_state)`. */
export const KVM_SET_MP_STATE: number = iow(0x99, KVM_MP_STATE_SIZE);
/** Offset of MXCSR in the XSAVE legacy (FXSAVE) region. */
export const XSAVE_MXCSR = 24;
/** Offset of XSTATE_BV in the XSAVE header. */
export const XSAVE_XSTATE_BV = 512;
/** XSTATE_BV bits for x87 and SSE state. */
export const XFEATURE_MASK_FPSSE = 0x3;
/** `_IOW(KVMIO, 0x90, struct kvm_cpuid2)`. */
export const KVM_SET_CPUID2: number = iow(0x90, KVM_CPUID2_HEADER_SIZE);

// ---- capabilities (KVM_CAP_*) ----

/** KVM_CAP_HLT: HLT exits to userspace without an in-kernel irqchip. */
export const KVM_CAP_HLT = 1;
/** KVM_CAP_USER_MEMORY: KVM_SET_USER_MEMORY_REGION. */
export const KVM_CAP_USER_MEMORY = 3;
/** KVM_CAP_SET_TSS_ADDR. */
export const KVM_CAP_SET_TSS_ADDR = 4;
/** KVM_CAP_EXT_CPUID: KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2. */
export const KVM_CAP_EXT_CPUID = 7;
/** KVM_CAP_SET_IDENTITY_MAP_ADDR. */
export const KVM_CAP_SET_IDENTITY_MAP_ADDR = 37;
/** KVM_CAP_NR_MEMSLOTS: number of memory slots. */
export const KVM_CAP_NR_MEMSLOTS = 10;
/** KVM_CAP_MP_STATE: KVM_GET_MP_STATE / KVM_SET_MP_STATE. */
export const KVM_CAP_MP_STATE = 14;
/** KVM_CAP_DEBUGREGS: KVM_GET_DEBUGREGS / KVM_SET_DEBUGREGS. */
export const KVM_CAP_DEBUGREGS = 50;
/** KVM_CAP_XCRS: KVM_GET_XCRS / KVM_SET_XCRS. */
export const KVM_CAP_XCRS = 56;
/** KVM_CAP_XSAVE: KVM_GET_XSAVE / KVM_SET_XSAVE. */
export const KVM_CAP_XSAVE = 55;
/** KVM_CAP_SYNC_REGS: returns the mask of KVM_SYNC_X86_* sets kvm_run can carry. */
export const KVM_CAP_SYNC_REGS = 74;
/** KVM_CAP_IMMEDIATE_EXIT: kvm_run.immediate_exit. */
export const KVM_CAP_IMMEDIATE_EXIT = 136;

/** The API version every KVM since Linux 2.6.22 reports. */
export const KVM_API_VERSION = 12;

/** kvm_run.kvm_valid_regs / kvm_dirty_regs bits (arch/x86/include/uapi/asm/kvm.h). */
export const KVM_SYNC_X86_REGS = 1 << 0, KVM_SYNC_X86_SREGS = 1 << 1, KVM_SYNC_X86_EVENTS = 1 << 2;

// ---- exit reasons (KVM_EXIT_*) ----

/** kvm_run.exit_reason values. */
export const KVM_EXIT_UNKNOWN = 0;
/** The guest raised an exception KVM passed up. */
export const KVM_EXIT_EXCEPTION = 1;
/** Port I/O; details in kvm_run.io. */
export const KVM_EXIT_IO = 2;
/** Hypercall. */
export const KVM_EXIT_HYPERCALL = 3;
/** Debug exit (guest debugging enabled). */
export const KVM_EXIT_DEBUG = 4;
/** HLT with no in-kernel irqchip. */
export const KVM_EXIT_HLT = 5;
/** MMIO outside any memory slot; details in kvm_run.mmio. */
export const KVM_EXIT_MMIO = 6;
/** The guest can take an interrupt now (request_interrupt_window was set). */
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
/** Triple fault (or INIT without irqchip). */
export const KVM_EXIT_SHUTDOWN = 8;
/** VM entry failed; hardware reason in kvm_run.fail_entry. */
export const KVM_EXIT_FAIL_ENTRY = 9;
/** A signal interrupted KVM_RUN. */
export const KVM_EXIT_INTR = 10;
/** KVM could not handle something; suberror in kvm_run.internal. */
export const KVM_EXIT_INTERNAL_ERROR = 17;
/** A system event (shutdown, reset, crash) in kvm_run.system_event. */
export const KVM_EXIT_SYSTEM_EVENT = 24;

/** Names of exit reasons, for trace lines and messages (index = reason). */
export const EXIT_REASON_NAMES: readonly string[] = [
  "UNKNOWN",
  "EXCEPTION",
  "IO",
  "HYPERCALL",
  "DEBUG",
  "HLT",
  "MMIO",
  "IRQ_WINDOW_OPEN",
  "SHUTDOWN",
  "FAIL_ENTRY",
  "INTR",
  "SET_TPR",
  "TPR_ACCESS",
  "S390_SIEIC",
  "S390_RESET",
  "DCR",
  "NMI",
  "INTERNAL_ERROR",
  "OSI",
  "PAPR_HCALL",
  "S390_UCONTROL",
  "WATCHDOG",
  "S390_TSCH",
  "EPR",
  "SYSTEM_EVENT",
  "S390_STSI",
  "IOAPIC_EOI",
  "HYPERV",
  "ARM_NISV",
  "X86_RDMSR",
  "X86_WRMSR",
  "DIRTY_RING_FULL",
  "AP_RESET_HOLD",
  "X86_BUS_LOCK",
  "XEN",
  "RISCV_SBI",
  "RISCV_CSR",
  "NOTIFY",
  "LOONGARCH_IOCSR",
  "MEMORY_FAULT",
];

/** KVM_INTERNAL_ERROR_* suberrors, by value. */
export const INTERNAL_ERROR_NAMES: Readonly<Record<number, string>> = {
  1: "EMULATION (KVM could not emulate an instruction)",
  2: "SIMUL_EX (an exception occurred while delivering another)",
  3: "DELIVERY_EV (an exit happened while delivering an event)",
  4: "UNEXPECTED_EXIT_REASON (the hardware exited for a reason KVM does not handle)",
};

/** kvm_run.io.direction values. */
export const KVM_EXIT_IO_IN = 0, KVM_EXIT_IO_OUT = 1;

// ---- struct kvm_run offsets (include/uapi/linux/kvm.h, x86-64) ----

/** `__u8 request_interrupt_window`. */
export const RUN_REQUEST_INTERRUPT_WINDOW = 0;
/** `__u8 immediate_exit`. */
export const RUN_IMMEDIATE_EXIT = 1;
/** `__u32 exit_reason`. */
export const RUN_EXIT_REASON = 8;
/** `__u8 ready_for_interrupt_injection`. */
export const RUN_READY_FOR_INTERRUPT_INJECTION = 12;
/** `__u8 if_flag`: the guest's RFLAGS.IF at exit. */
export const RUN_IF_FLAG = 13;
/** `__u16 flags`. */
export const RUN_FLAGS = 14;
/** `__u64 cr8`. */
export const RUN_CR8 = 16;
/** `__u64 apic_base`. */
export const RUN_APIC_BASE = 24;
/** Start of the exit-specific union. */
export const RUN_EXIT_UNION = 32;
/** io: `__u8 direction`. */
export const RUN_IO_DIRECTION = 32;
/** io: `__u8 size` (1, 2 or 4). */
export const RUN_IO_SIZE = 33;
/** io: `__u16 port`. */
export const RUN_IO_PORT = 34;
/** io: `__u32 count` (elements of a string instruction). */
export const RUN_IO_COUNT = 36;
/** io: `__u64 data_offset` (from the start of the kvm_run mapping). */
export const RUN_IO_DATA_OFFSET = 40;
/** mmio: `__u64 phys_addr`. */
export const RUN_MMIO_PHYS_ADDR = 32;
/** mmio: `__u8 data[8]`. */
export const RUN_MMIO_DATA = 40;
/** mmio: `__u32 len`. */
export const RUN_MMIO_LEN = 48;
/** mmio: `__u8 is_write`. */
export const RUN_MMIO_IS_WRITE = 52;
/** internal: `__u32 suberror`. */
export const RUN_INTERNAL_SUBERROR = 32;
/** internal: `__u32 ndata`. */
export const RUN_INTERNAL_NDATA = 36;
/** internal: `__u64 data[16]`. */
export const RUN_INTERNAL_DATA = 40;
/** fail_entry: `__u64 hardware_entry_failure_reason`. */
export const RUN_FAIL_ENTRY_REASON = 32;
/** fail_entry: `__u32 cpu`. */
export const RUN_FAIL_ENTRY_CPU = 40;
/** hw: `__u64 hardware_exit_reason` (KVM_EXIT_UNKNOWN). */
export const RUN_HW_EXIT_REASON = 32;
/** system_event: `__u32 type`. */
export const RUN_SYSTEM_EVENT_TYPE = 32;
/** `__u64 kvm_valid_regs`: sets KVM stores into `s.regs` at every exit. */
export const RUN_KVM_VALID_REGS = 288;
/** `__u64 kvm_dirty_regs`: sets KVM loads from `s.regs` before entering. */
export const RUN_KVM_DIRTY_REGS = 296;
/** `union { struct kvm_sync_regs regs; char padding[2048]; } s`. */
export const RUN_SYNC_REGS = 304;
/** kvm_sync_regs.regs (struct kvm_regs). */
export const RUN_SYNC_REGS_REGS: number = RUN_SYNC_REGS;
/** kvm_sync_regs.sregs (struct kvm_sregs). */
export const RUN_SYNC_REGS_SREGS: number = RUN_SYNC_REGS + KVM_REGS_SIZE;
/** kvm_sync_regs.events (struct kvm_vcpu_events). */
export const RUN_SYNC_REGS_EVENTS: number = RUN_SYNC_REGS_SREGS + KVM_SREGS_SIZE;
/** Bytes of kvm_run up to the end of the `s` union (the fixed part of the first page). */
export const RUN_FIXED_SIZE: number = RUN_SYNC_REGS + 2048;

// ---- misc ----

/** Where the VMX real-mode TSS (3 pages) goes: just below the BIOS, as Firecracker does. */
export const TSS_ADDRESS = 0xfffb_d000;
/** The VMX identity-map page: the page just below the TSS. */
export const IDENTITY_MAP_ADDRESS = 0xfffb_c000;

/** kvm_userspace_memory_region.flags: dirty page logging. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;

/** errno values the backend tests for (asm-generic/errno-base.h). */
export const EINTR = 4, EAGAIN = 11, ENOENT = 2, EACCES = 13;
