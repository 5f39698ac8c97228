/** Parses memory sizes as `--mem` spells them: 128M, 1G, 65536K, or plain bytes. */

import { UsageError } from "./errors.ts";

const UNITS: Record<string, number> = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30, T: 2 ** 40 };

/** Parses `text` (e.g. "256M") into bytes. Throws UsageError naming `flag`. */
export function parseSize(text: string, flag = "--mem"): number {
  const m = /^(\d+)([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) {
    throw new UsageError(`Cannot parse ${flag} "${text}": expected a size such as 256M or 1G`);
  }
  const bytes = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(bytes)) {
    throw new UsageError(`${flag} "${text}" is too large`);
  }
  return bytes;
}
