/**
 * The PC's physical memory map as a BIOS reports it through INT 15h E820, built from a
 * GuestMemory's RAM regions. Both Linux boot paths hand it to the kernel: the bzImage path in
 * boot_params.e820_table, the PVH path as hvm_start_info's memmap (same entry types).
 */

import type { GuestMemory, MemoryRegion } from "../memory.ts";

/** E820 entry types (ACPI specification, "Address Range Types"). */
export const E820_RAM = 1, E820_RESERVED = 2, E820_ACPI = 3, E820_NVS = 4;

/** Start of the reserved hole below 1 MiB: the EBDA (where the MP table goes), VGA, ROMs, BIOS. */
export const EBDA_START = 0x9_fc00;
/** Where RAM resumes above the hole (HIMEM). */
export const HIMEM_START = 0x10_0000;

/** One range of the memory map. */
export interface E820Entry {
  /** First physical address. */
  addr: number;
  /** Length in bytes. */
  size: number;
  /** E820_RAM, E820_RESERVED, ... */
  type: number;
}

/**
 * The memory map of `memory`: RAM below the EBDA, [0x9fc00, 0x100000) reserved, then each RAM
 * region from 1 MiB up (the MMIO gap below 4 GiB is left out: not RAM).
 *
 * @example
 * ```ts
 * import { e820Map } from "./e820.ts";
 * import { GuestMemory } from "../memory.ts";
 * e820Map(GuestMemory.allocate(16 << 20)); // [0,0x9fc00) RAM, hole reserved, [1M,16M) RAM
 * ```
 */
export function e820Map(memory: { readonly regions: readonly MemoryRegion[] }): E820Entry[] {
  const map: E820Entry[] = [];
  for (const r of memory.regions) {
    const end = r.gpa + r.size;
    if (r.gpa < EBDA_START) {
      map.push({ addr: r.gpa, size: Math.min(end, EBDA_START) - r.gpa, type: E820_RAM });
    }
    if (r.gpa < HIMEM_START && end > EBDA_START) {
      map.push({ addr: EBDA_START, size: HIMEM_START - EBDA_START, type: E820_RESERVED });
    }
    const hi = Math.max(r.gpa, HIMEM_START);
    if (end > hi) map.push({ addr: hi, size: end - hi, type: E820_RAM });
  }
  return map;
}

/** Size in bytes of one packed boot_params e820 entry (`struct boot_e820_entry`). */
export const BOOT_E820_ENTRY_SIZE = 20;

/** Writes `map` as packed boot_params e820 entries (u64 addr, u64 size, u32 type) at `gpa`. */
export function writeE820Table(memory: GuestMemory, gpa: number, map: readonly E820Entry[]): void {
  map.forEach((e, i) => {
    const at = gpa + i * BOOT_E820_ENTRY_SIZE;
    memory.writeU64(at, BigInt(e.addr));
    memory.writeU64(at + 8, BigInt(e.size));
    memory.writeU32(at + 16, e.type);
  });
}
