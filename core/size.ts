/**
 * Parses memory sizes as users type them for `--mem`: 128M, 1G, 1.5G, 2GiB, 65536K, 0x10000000
 * or plain bytes; and checks a size against what the host can back.
 */

import { HostError, UsageError } from "./errors.ts";

const UNITS: Record<string, number> = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30, T: 2 ** 40 };

/** Parses `text` (e.g. "256M", "1.5G", "0x10000000") into bytes. Throws UsageError naming `flag`. */
export function parseSize(text: string, flag = "--mem"): number {
  const t = text.trim();
  if (/^-/.test(t)) {
    throw new UsageError(`${flag} "${text}" is negative: give a size such as 256M or 1G`);
  }
  let bytes: number;
  const hexMatch = /^0x([0-9a-f]+)$/i.exec(t);
  if (hexMatch) {
    bytes = parseInt(hexMatch[1]!, 16);
  } else {
    const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(t);
    if (!m) {
      throw new UsageError(
        `Cannot parse ${flag} "${text}": expected a size such as 256M or 1G`,
      );
    }
    bytes = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
    if (!Number.isInteger(bytes)) {
      throw new UsageError(`${flag} "${text}" is not a whole number of bytes`);
    }
  }
  if (!Number.isSafeInteger(bytes)) {
    throw new UsageError(`${flag} "${text}" is too large`);
  }
  return bytes;
}

/** RAM plus swap, from `/proc/meminfo` text; null when it says neither. */
export function hostMemoryBytes(meminfo: string): number | null {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(meminfo);
    return m ? Number(m[1]) * 1024 : 0;
  };
  const total = kb("MemTotal") + kb("SwapTotal");
  return total > 0 ? total : null;
}

/**
 * Refuses a guest RAM size this host could never back (more than its RAM and swap together, as
 * `/proc/meminfo` says; KVM would map it lazily and the guest would be killed when it uses it).
 * No check where `/proc/meminfo` cannot be read.
 */
export function checkHostMemory(bytes: number, text: string, flag = "--mem"): void {
  let meminfo: string;
  try {
    meminfo = Deno.readTextFileSync("/proc/meminfo");
  } catch {
    return;
  }
  const host = hostMemoryBytes(meminfo);
  if (host !== null && bytes > host) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
    throw new HostError(
      `${flag} ${text} (${gib(bytes)}) is more than this host can back: it has ${gib(host)} ` +
        `of RAM and swap. Give a smaller ${flag}`,
    );
  }
}
