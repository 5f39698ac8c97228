/**
 * The KVM struct encoders and decoders against the kernel's byte layouts (linux/kvm.h,
 * asm/kvm.h): known offsets, ioctl numbers and round trips. None of this needs /dev/kvm.
 */

import { assertEquals } from "./_assert.ts";
import * as K from "../../../core/kvm/constants.ts";
import {
  cpuStateFromKvm,
  decodeCpuid2,
  decodeDebugRegs,
  decodeDtable,
  decodeExitReason,
  decodeFailEntry,
  decodeFpu,
  decodeInternalError,
  decodeIoExit,
  decodeMemoryRegion,
  decodeMmioExit,
  decodeMpState,
  decodeMsrs,
  decodeRegs,
  decodeSegment,
  decodeSregs,
  decodeXcrs,
  encodeCpuid2,
  encodeDebugRegs,
  encodeDtable,
  encodeFpu,
  encodeMemoryRegion,
  encodeMpState,
  encodeMsrs,
  encodeRegs,
  encodeSegment,
  encodeSregs,
  encodeXcrs,
  msrEntriesOf,
  putFpuInXsave,
  supportedXcr0,
} from "../../../core/kvm/structs.ts";
import {
  type CpuState,
  flatSegment,
  MP_STATES,
  MSR,
  resetCpuState,
  resetFpuState,
  type Segment,
} from "../../../core/cpu_state.ts";

function view(size: number): DataView {
  return new DataView(new ArrayBuffer(size));
}

Deno.test("ioctl numbers match the kernel's _IO/_IOR/_IOW encodings", () => {
  // Values as the kernel headers expand them on x86-64.
  assertEquals(K.KVM_GET_API_VERSION, 0xae00);
  assertEquals(K.KVM_CREATE_VM, 0xae01);
  assertEquals(K.KVM_CHECK_EXTENSION, 0xae03);
  assertEquals(K.KVM_GET_VCPU_MMAP_SIZE, 0xae04);
  assertEquals(K.KVM_GET_SUPPORTED_CPUID, 0xc008ae05);
  assertEquals(K.KVM_CREATE_VCPU, 0xae41);
  assertEquals(K.KVM_SET_USER_MEMORY_REGION, 0x4020ae46);
  assertEquals(K.KVM_SET_TSS_ADDR, 0xae47);
  assertEquals(K.KVM_SET_IDENTITY_MAP_ADDR, 0x4008ae48);
  assertEquals(K.KVM_RUN, 0xae80);
  assertEquals(K.KVM_GET_REGS, 0x8090ae81);
  assertEquals(K.KVM_SET_REGS, 0x4090ae82);
  assertEquals(K.KVM_GET_SREGS, 0x8138ae83);
  assertEquals(K.KVM_SET_SREGS, 0x4138ae84);
  assertEquals(K.KVM_INTERRUPT, 0x4004ae86);
  assertEquals(K.KVM_GET_MSRS, 0xc008ae88);
  assertEquals(K.KVM_SET_MSRS, 0x4008ae89);
  assertEquals(K.KVM_GET_FPU, 0x81a0ae8c);
  assertEquals(K.KVM_SET_FPU, 0x41a0ae8d);
  assertEquals(K.KVM_SET_CPUID2, 0x4008ae90);
  assertEquals(K.KVM_GET_XSAVE, 0x9000aea4);
  assertEquals(K.KVM_SET_XSAVE, 0x5000aea5);
  assertEquals(K.KVM_GET_DEBUGREGS, 0x8080aea1);
  assertEquals(K.KVM_SET_DEBUGREGS, 0x4080aea2);
  assertEquals(K.KVM_GET_XCRS, 0x8188aea6);
  assertEquals(K.KVM_SET_XCRS, 0x4188aea7);
  assertEquals(K.KVM_GET_MP_STATE, 0x8004ae98);
  assertEquals(K.KVM_SET_MP_STATE, 0x4004ae99);
});

Deno.test("kvm_debugregs: db[0..3] at 0, dr6 at 32, dr7 at 40, flags 0; round trip", () => {
  const d = {
    dr0: 0x1234_5678n,
    dr1: 0xffff_ffff_8100_0000n,
    dr2: 0n,
    dr3: 0xdead_beefn,
    dr6: 0xffff_0ff0n,
    dr7: 0x401n,
  };
  const b = encodeDebugRegs(d);
  assertEquals(b.length, 128);
  const dv = new DataView(b.buffer);
  assertEquals(dv.getBigUint64(8, true), 0xffff_ffff_8100_0000n);
  assertEquals(dv.getBigUint64(32, true), 0xffff_0ff0n);
  assertEquals(dv.getBigUint64(40, true), 0x401n);
  assertEquals(dv.getBigUint64(48, true), 0n, "flags");
  assertEquals(decodeDebugRegs(dv), d);
});

Deno.test("kvm_xcrs: nr_xcrs, flags, then {xcr, reserved, value} entries of 16 bytes", () => {
  const b = encodeXcrs([[0, 7n]]);
  assertEquals(b.length, 392);
  const dv = new DataView(b.buffer);
  assertEquals(dv.getUint32(0, true), 1);
  assertEquals(dv.getUint32(8, true), 0);
  assertEquals(dv.getBigUint64(16, true), 7n);
  assertEquals(decodeXcrs(dv), [[0, 7n]]);
  assertEquals(decodeXcrs(new DataView(encodeXcrs([[0, 1n], [1, 3n]]).buffer)), [[0, 1n], [1, 3n]]);
});

Deno.test("kvm_mp_state: every KVM_MP_STATE_* round-trips by number", () => {
  MP_STATES.forEach((name, n) => {
    const b = encodeMpState(name);
    assertEquals(new DataView(b.buffer).getUint32(0, true), n);
    assertEquals(decodeMpState(new DataView(b.buffer)), name);
  });
  assertEquals(MP_STATES[3], "halted");
  const bad = new DataView(new ArrayBuffer(4));
  bad.setUint32(0, 99, true);
  let threw = false;
  try {
    decodeMpState(bad);
  } catch {
    threw = true;
  }
  assertEquals(threw, true, "an unknown MP state is an error");
});

Deno.test("the x87/SSE part of an XSAVE image comes from FpuState, the rest is kept", () => {
  const img = new Uint8Array(K.KVM_XSAVE_SIZE);
  img.fill(0xaa, 576, 832); // YMM_Hi128 (AVX) state
  const f = resetFpuState();
  f.fcw = 0x27f;
  f.ftw = 0x81;
  f.fip = 0x1234n;
  f.mxcsr = 0x1fa0;
  f.st[0] = 0x11;
  f.xmm[255] = 0x22;
  const dv = new DataView(img.buffer);
  dv.setUint32(K.XSAVE_XSTATE_BV, 0x4, true);
  putFpuInXsave(f, dv);
  // The legacy region has FXSAVE's layout.
  assertEquals(dv.getUint16(0, true), 0x27f);
  assertEquals(img[4], 0x81);
  assertEquals(dv.getBigUint64(8, true), 0x1234n);
  assertEquals(dv.getUint32(K.XSAVE_MXCSR, true), 0x1fa0);
  assertEquals(img[32], 0x11);
  assertEquals(img[160 + 255], 0x22);
  assertEquals(dv.getUint32(K.XSAVE_XSTATE_BV, true), 0x7, "x87 and SSE added to AVX");
  assertEquals(img[576], 0xaa, "AVX state untouched");
});

Deno.test("the XCR0 bits a guest may set follow its CPUID: x87 only without XSAVE", () => {
  const leaf = (fn: number, index: number, eax: number, ecx: number, edx = 0) => ({
    function: fn,
    index,
    flags: 0,
    eax,
    ebx: 0,
    ecx,
    edx,
  });
  assertEquals(supportedXcr0([leaf(1, 0, 0, 0), leaf(0xd, 0, 7, 0)]), 1n);
  assertEquals(supportedXcr0([leaf(1, 0, 0, 1 << 26), leaf(0xd, 0, 7, 0)]), 7n);
  assertEquals(supportedXcr0([leaf(1, 0, 0, 1 << 26)]), 1n);
});

Deno.test("kvm_run's sync-regs area holds kvm_regs then kvm_sregs after the 256-byte union", () => {
  assertEquals(K.RUN_EXIT_UNION + 256, K.RUN_KVM_VALID_REGS);
  assertEquals(K.RUN_SYNC_REGS_REGS, 304);
  assertEquals(K.RUN_SYNC_REGS_SREGS, 448);
  assertEquals(K.RUN_SYNC_REGS_EVENTS, 760);
});

function sampleState(): CpuState {
  const s = resetCpuState();
  s.gpr = s.gpr.map((_, i) => 0x0101_0101_0101_0101n * BigInt(i + 1));
  s.rip = 0xffff_ffff_8100_0000n;
  s.rflags = 0x246;
  s.cs = { ...flatSegment(0x10, true), l: 1, db: 0 };
  s.ds = flatSegment(0x18, false);
  s.fs = { ...flatSegment(0, false), base: 0x7fff_dead_b000n, unusable: 1 };
  s.gs = { ...flatSegment(0, false), base: 0xffff_8880_1234_0000n };
  s.tr = { ...flatSegment(0x28, false), s: 0, type: 0xb, limit: 0x67, g: 0, db: 0 };
  s.gdt = { base: 0xffff_fe00_0000_1000n, limit: 0x7f };
  s.idt = { base: 0xffff_fe00_0000_0000n, limit: 0xfff };
  s.cr0 = 0x8005_0033;
  s.cr2 = 0x7f00_1234_5000n;
  s.cr3 = 0x1_2345_6000n;
  s.cr4 = 0x0030_06f0;
  s.cr8 = 0xf;
  s.efer = 0xd01;
  s.msrs.set(MSR.APIC_BASE, 0xfee0_0900n);
  s.fpu.fcw = 0x37f;
  s.fpu.fsw = 0x3800;
  s.fpu.ftw = 0x80;
  s.fpu.fop = 0x7ff;
  s.fpu.fip = 0x1234_5678_9abcn;
  s.fpu.fdp = 0xfedc_ba98n;
  s.fpu.mxcsr = 0x1fa0;
  s.fpu.st = s.fpu.st.map((_, i) => i);
  s.fpu.xmm = s.fpu.xmm.map((_, i) => 255 - i);
  return s;
}

Deno.test("kvm_regs puts RAX..R15 in the kernel's order, then RIP at 128 and RFLAGS at 136", () => {
  const s = sampleState();
  const v = view(K.KVM_REGS_SIZE);
  encodeRegs(s, v);
  // kvm_regs order: rax rbx rcx rdx rsi rdi rsp rbp r8..r15; CpuState: rax rcx rdx rbx rsp rbp rsi rdi
  assertEquals(v.getBigUint64(0, true), s.gpr[0]); // rax
  assertEquals(v.getBigUint64(8, true), s.gpr[3]); // rbx
  assertEquals(v.getBigUint64(16, true), s.gpr[1]); // rcx
  assertEquals(v.getBigUint64(24, true), s.gpr[2]); // rdx
  assertEquals(v.getBigUint64(32, true), s.gpr[6]); // rsi
  assertEquals(v.getBigUint64(40, true), s.gpr[7]); // rdi
  assertEquals(v.getBigUint64(48, true), s.gpr[4]); // rsp
  assertEquals(v.getBigUint64(56, true), s.gpr[5]); // rbp
  assertEquals(v.getBigUint64(64, true), s.gpr[8]); // r8
  assertEquals(v.getBigUint64(120, true), s.gpr[15]); // r15
  assertEquals(v.getBigUint64(128, true), s.rip);
  assertEquals(v.getBigUint64(136, true), 0x246n);
  assertEquals(decodeRegs(v), { gpr: s.gpr, rip: s.rip, rflags: s.rflags });
});

Deno.test("kvm_regs stores negative register values as unsigned 64-bit", () => {
  const s = sampleState();
  s.gpr[0] = -1n;
  const v = view(K.KVM_REGS_SIZE);
  encodeRegs(s, v);
  assertEquals(decodeRegs(v).gpr[0], 0xffff_ffff_ffff_ffffn);
});

Deno.test("kvm_segment has base at 0, limit at 8, selector at 12 and flag bytes from 14", () => {
  const g: Segment = {
    selector: 0x1234,
    base: 0xffff_8000_dead_0000n,
    limit: 0xfffff,
    type: 0xb,
    s: 1,
    dpl: 3,
    present: 1,
    l: 1,
    db: 0,
    g: 1,
    avl: 1,
    unusable: 0,
  };
  const v = view(K.KVM_SEGMENT_SIZE);
  encodeSegment(g, v, 0);
  assertEquals(v.getBigUint64(0, true), g.base);
  assertEquals(v.getUint32(8, true), 0xfffff);
  assertEquals(v.getUint16(12, true), 0x1234);
  // type present dpl db s l g avl unusable padding
  assertEquals([...new Uint8Array(v.buffer, 14, 10)], [0xb, 1, 3, 0, 1, 1, 1, 1, 0, 0]);
  assertEquals(decodeSegment(v, 0), g);
});

Deno.test("kvm_dtable is base then a 16-bit limit in 16 bytes", () => {
  const v = view(K.KVM_DTABLE_SIZE);
  encodeDtable({ base: 0x1000n, limit: 0x3ff }, v, 0);
  assertEquals([...new Uint8Array(v.buffer)], [
    0x00,
    0x10,
    0,
    0,
    0,
    0,
    0,
    0,
    0xff,
    0x03,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  assertEquals(decodeDtable(v, 0), { base: 0x1000n, limit: 0x3ff });
});

Deno.test("kvm_sregs places segments, tables, control registers, EFER and APIC base", () => {
  const s = sampleState();
  const v = view(K.KVM_SREGS_SIZE);
  encodeSregs(s, 0xfee0_0900n, v);
  assertEquals(v.getUint16(0 * 24 + 12, true), 0x10); // cs.selector
  assertEquals(v.getUint16(1 * 24 + 12, true), 0x18); // ds.selector
  assertEquals(v.getBigUint64(3 * 24, true), s.fs.base); // fs.base
  assertEquals(v.getUint8(3 * 24 + 22), 1); // fs.unusable
  assertEquals(v.getBigUint64(4 * 24, true), s.gs.base); // gs.base
  assertEquals(v.getUint16(6 * 24 + 12, true), 0x28); // tr.selector
  assertEquals(v.getBigUint64(192, true), s.gdt.base);
  assertEquals(v.getUint16(200, true), 0x7f);
  assertEquals(v.getBigUint64(208, true), s.idt.base);
  assertEquals(v.getBigUint64(224, true), 0x8005_0033n); // cr0
  assertEquals(v.getBigUint64(232, true), s.cr2);
  assertEquals(v.getBigUint64(240, true), s.cr3);
  assertEquals(v.getBigUint64(248, true), 0x0030_06f0n); // cr4
  assertEquals(v.getBigUint64(256, true), 0xfn); // cr8
  assertEquals(v.getBigUint64(264, true), 0xd01n); // efer
  assertEquals(v.getBigUint64(272, true), 0xfee0_0900n); // apic_base
  for (let i = 0; i < 4; i++) assertEquals(v.getBigUint64(280 + i * 8, true), 0n);
  const d = decodeSregs(v);
  assertEquals(d.apicBase, 0xfee0_0900n);
  assertEquals(d.interruptBitmap, [0n, 0n, 0n, 0n]);
  for (const name of ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const) {
    assertEquals(d[name], s[name], name);
  }
  assertEquals([d.cr0, d.cr2, d.cr3, d.cr4, d.cr8, d.efer], [
    s.cr0,
    s.cr2,
    s.cr3,
    s.cr4,
    s.cr8,
    s.efer,
  ]);
  assertEquals([d.gdt, d.idt], [s.gdt, s.idt]);
});

Deno.test("kvm_sregs decodes a pending interrupt from the bitmap", () => {
  const v = view(K.KVM_SREGS_SIZE);
  v.setBigUint64(280 + 8, 1n << 4n, true); // vector 64 + 4
  assertEquals(decodeSregs(v).interruptBitmap, [0n, 16n, 0n, 0n]);
});

Deno.test("kvm_fpu keeps ST registers, control words, XMM registers and MXCSR in place", () => {
  const s = sampleState();
  const v = view(K.KVM_FPU_SIZE);
  encodeFpu(s.fpu, v);
  assertEquals(v.getUint8(0), 0);
  assertEquals(v.getUint8(127), 127);
  assertEquals(v.getUint16(128, true), 0x37f); // fcw
  assertEquals(v.getUint16(130, true), 0x3800); // fsw
  assertEquals(v.getUint8(132), 0x80); // ftwx
  assertEquals(v.getUint16(134, true), 0x7ff); // last_opcode
  assertEquals(v.getBigUint64(136, true), 0x1234_5678_9abcn); // last_ip
  assertEquals(v.getBigUint64(144, true), 0xfedc_ba98n); // last_dp
  assertEquals(v.getUint8(152), 255); // xmm0[0]
  assertEquals(v.getUint8(152 + 255), 0); // xmm15[15]
  assertEquals(v.getUint32(408, true), 0x1fa0); // mxcsr
  assertEquals(decodeFpu(v), s.fpu);
});

Deno.test("kvm_msrs has a count header and 16-byte index/data entries", () => {
  const buf = encodeMsrs([[MSR.LSTAR, 0xffff_ffff_8100_0000n], [MSR.STAR, 1n]]);
  const v = new DataView(buf.buffer);
  assertEquals(buf.length, 8 + 2 * 16);
  assertEquals(v.getUint32(0, true), 2);
  assertEquals(v.getUint32(8, true), MSR.LSTAR);
  assertEquals(v.getBigUint64(16, true), 0xffff_ffff_8100_0000n);
  assertEquals(v.getUint32(24, true), MSR.STAR);
  assertEquals(decodeMsrs(buf), [[MSR.LSTAR, 0xffff_ffff_8100_0000n], [MSR.STAR, 1n]]);
  assertEquals(decodeMsrs(buf, 1), [[MSR.LSTAR, 0xffff_ffff_8100_0000n]]);
});

Deno.test("kvm_cpuid2 entries are 40 bytes after an 8-byte header and round-trip", () => {
  const entries = [
    {
      function: 0,
      index: 0,
      flags: 0,
      eax: 0xd,
      ebx: 0x756e_6547,
      ecx: 0x6c65_746e,
      edx: 0x4965_6e69,
    },
    { function: 7, index: 1, flags: 1, eax: 1, ebx: 2, ecx: 3, edx: 0xffff_ffff },
  ];
  const buf = encodeCpuid2(entries);
  assertEquals(buf.length, 8 + 2 * 40);
  const v = new DataView(buf.buffer);
  assertEquals(v.getUint32(8 + 40, true), 7);
  assertEquals(v.getUint32(8 + 40 + 4, true), 1);
  assertEquals(v.getUint32(8 + 40 + 24, true), 0xffff_ffff);
  assertEquals(decodeCpuid2(buf), entries);
});

Deno.test("kvm_userspace_memory_region is slot, flags, gpa, size, host address", () => {
  const r = {
    slot: 1,
    flags: K.KVM_MEM_LOG_DIRTY_PAGES,
    guestPhysAddr: 0x1_0000_0000,
    memorySize: 0x4000_0000,
    userspaceAddr: 0x7f12_3456_0000n,
  };
  const buf = encodeMemoryRegion(r);
  const v = new DataView(buf.buffer);
  assertEquals(buf.length, 32);
  assertEquals(v.getUint32(0, true), 1);
  assertEquals(v.getUint32(4, true), 1);
  assertEquals(v.getBigUint64(8, true), 0x1_0000_0000n);
  assertEquals(v.getBigUint64(16, true), 0x4000_0000n);
  assertEquals(v.getBigUint64(24, true), 0x7f12_3456_0000n);
  assertEquals(decodeMemoryRegion(buf), r);
});

Deno.test("kvm_run exit fields decode for port I/O", () => {
  const run = view(4096);
  run.setUint32(8, K.KVM_EXIT_IO, true);
  run.setUint8(32, K.KVM_EXIT_IO_OUT);
  run.setUint8(33, 2);
  run.setUint16(34, 0x3f8, true);
  run.setUint32(36, 5, true);
  run.setBigUint64(40, 4096n, true);
  assertEquals(decodeExitReason(run), K.KVM_EXIT_IO);
  assertEquals(decodeIoExit(run), {
    direction: 1,
    size: 2,
    port: 0x3f8,
    count: 5,
    dataOffset: 4096,
  });
});

Deno.test("kvm_run exit fields decode for MMIO", () => {
  const run = view(4096);
  run.setBigUint64(32, 0xfee0_0300n, true);
  new Uint8Array(run.buffer).set([1, 2, 3, 4, 5, 6, 7, 8], 40);
  run.setUint32(48, 4, true);
  run.setUint8(52, 1);
  assertEquals(decodeMmioExit(run), {
    physAddr: 0xfee0_0300,
    data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]),
    len: 4,
    isWrite: true,
  });
});

Deno.test("kvm_run exit fields decode for internal errors and failed entries", () => {
  const run = view(4096);
  run.setUint32(32, 1, true); // KVM_INTERNAL_ERROR_EMULATION
  run.setUint32(36, 2, true);
  run.setBigUint64(40, 0xaan, true);
  run.setBigUint64(48, 0xbbn, true);
  assertEquals(decodeInternalError(run), { suberror: 1, data: [0xaan, 0xbbn] });
  run.setBigUint64(32, 0x8000_0021n, true);
  run.setUint32(40, 3, true);
  assertEquals(decodeFailEntry(run), { hardwareEntryFailureReason: 0x8000_0021n, cpu: 3 });
});

Deno.test("a CpuState survives encode to kvm structs and decode back", () => {
  const s = sampleState();
  s.msrs.set(MSR.LSTAR, 0xffff_ffff_8160_0000n);
  const regs = view(K.KVM_REGS_SIZE);
  const sregs = view(K.KVM_SREGS_SIZE);
  const fpu = view(K.KVM_FPU_SIZE);
  encodeRegs(s, regs);
  encodeSregs(s, s.msrs.get(MSR.APIC_BASE)!, sregs);
  encodeFpu(s.fpu, fpu);
  const back = cpuStateFromKvm(decodeRegs(regs), decodeSregs(sregs), {
    fpu: decodeFpu(fpu),
    msrs: decodeMsrs(encodeMsrs(msrEntriesOf(s))),
    halted: false,
  });
  assertEquals(back, s);
});

Deno.test("the MSRs sent to KVM_SET_MSRS leave out those that travel in kvm_sregs", () => {
  const s = resetCpuState();
  s.msrs.set(MSR.APIC_BASE, 0xfee0_0900n);
  s.msrs.set(MSR.EFER, 0x500n);
  s.msrs.set(MSR.FS_BASE, 0x1000n);
  s.msrs.set(MSR.STAR, 7n);
  assertEquals(msrEntriesOf(s), [[MSR.PAT, 0x0007_0406_0007_0406n], [MSR.STAR, 7n]]);
});
