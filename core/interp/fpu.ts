/**
 * x87 and SSE for the interpreter. Step 1 holds only what the integer core needs to compile:
 * FXSAVE/FXRSTOR of the stored state; x87 and SSE instructions raise #UD until implemented
 * (CPUID does not advertise them yet).
 */

import type { Cpu } from "./cpu.ts";

/** Executes an x87 escape (D8–DF). Not implemented yet: #UD. */
export function execFpu(c: Cpu, _op: number, _modrm: number, _rmReg: number, _ea: number): void {
  c.ud();
}

/** Executes an SSE instruction with 0F opcode `op`; returns false when it is not one we know. */
export function execSse(_c: Cpu, _op: number, _prefix: number, _rex: number): boolean {
  return false;
}

/** FXSAVE: stores the x87/SSE state image (512 bytes) at `lin`. */
export function fxsave(c: Cpu, lin: number, _width: number): void {
  if (lin % 16 !== 0) c.gp(0);
  c.probeWrite(lin, 512);
  const f = c.fpu;
  c.wr16(lin, f.fcw);
  c.wr16(lin + 2, f.fsw);
  c.wr8(lin + 4, f.ftw);
  c.wr8(lin + 5, 0);
  c.wr16(lin + 6, f.fop);
  c.wr32(lin + 24, f.mxcsr);
  c.wr32(lin + 28, 0xffff);
  for (let i = 0; i < 128; i++) c.wr8(lin + 32 + i, f.st[i]!);
  for (let i = 0; i < 256; i++) c.wr8(lin + 160 + i, f.xmm[i]!);
}

/** FXRSTOR: loads the x87/SSE state image at `lin`. */
export function fxrstor(c: Cpu, lin: number, _width: number): void {
  if (lin % 16 !== 0) c.gp(0);
  const f = c.fpu;
  const mx = c.rd32(lin + 24);
  if (mx & ~0xffff) c.gp(0);
  f.fcw = c.rd16(lin);
  f.fsw = c.rd16(lin + 2);
  f.ftw = c.rd8(lin + 4);
  f.fop = c.rd16(lin + 6);
  f.mxcsr = mx;
  for (let i = 0; i < 128; i++) f.st[i] = c.rd8(lin + 32 + i);
  for (let i = 0; i < 256; i++) f.xmm[i] = c.rd8(lin + 160 + i);
}

/** Executes a three-byte-map instruction (0F 38 xx as 0x2xx, 0F 3A xx as 0x3xx). */
export function execSse3(_c: Cpu, _op: number, _prefix: number, _rex: number): boolean {
  return false;
}
