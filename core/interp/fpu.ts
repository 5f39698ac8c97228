/**
 * FPU glue for the interpreter: x87 escapes go to `x87.ts`, FXSAVE/FXRSTOR move the x87, MXCSR
 * and XMM state to and from the 512-byte image (Intel SDM Vol. 1, 10.5.1).
 */

import type { Cpu } from "./cpu.ts";
import { execX87, x87FromFpuState, x87ToFpuState } from "./x87.ts";

/** Executes an x87 escape (D8–DF). */
export function execFpu(c: Cpu, op: number, modrm: number, rmReg: number, ea: number): void {
  execX87(c, op, modrm, rmReg, ea);
}

/** FXSAVE: stores the x87/SSE state image (512 bytes) at `lin`. */
export function fxsave(c: Cpu, lin: number, _width: number): void {
  if (lin % 16 !== 0) c.gp(0);
  c.probeWrite(lin, 512);
  x87ToFpuState(c);
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
  x87FromFpuState(c);
}

/** Executes a three-byte-map instruction (0F 38 xx as 0x2xx, 0F 3A xx as 0x3xx). */
export function execSse3(_c: Cpu, _op: number, _prefix: number, _rex: number): boolean {
  return false;
}
