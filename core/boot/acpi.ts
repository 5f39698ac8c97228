/**
 * ACPI tables for the PC platform, written into guest memory for Linux to find: RSDP (v2) in the
 * BIOS area at 0xE0000, RSDT and XSDT, FADT (revision 6, not hardware-reduced) naming the PM
 * ports of `devices/acpi_pm.ts`, FACS, a DSDT in hand-assembled AML with the `\_S5_` sleep
 * package (and optional virtio-mmio device nodes), and an MADT with the local APIC, the IOAPIC
 * and the ISA interrupt overrides `devices/platform.ts` implements (IRQ 0 on GSI 2, SCI level).
 *
 * Layout and field offsets follow the ACPI specification 6.3 (sections 5.2.5-5.2.12, 19 for AML).
 *
 * @module
 */

import {
  ACPI_PM_BASE,
  PM1_CNT_LEN,
  PM1_CNT_OFFSET,
  PM1_EVT_LEN,
  PM1_EVT_OFFSET,
  PM_TMR_LEN,
  PM_TMR_OFFSET,
  RESET_REG_OFFSET,
  RESET_VALUE,
  SCI_IRQ,
  SLP_TYP_S5,
} from "../../devices/acpi_pm.ts";
import { IOAPIC_BASE } from "../../devices/ioapic.ts";
import { LAPIC_BASE } from "../../devices/lapic.ts";
import { ISA_IRQ0_GSI } from "../../devices/platform.ts";
import { CMOS_CENTURY } from "../../devices/rtc_cmos.ts";
import type { GuestMemory } from "../memory.ts";

/** Where the RSDP goes by default: the start of the BIOS read-only area Linux scans. */
export const ACPI_RSDP_ADDR = 0xe0000;
/** The BIOS area ends here; tables written from ACPI_RSDP_ADDR must stay below it. */
const BIOS_AREA_END = 0x10_0000;

/** A virtio-mmio device to describe in the DSDT (Linux matches `LNRO0005`). */
export interface AcpiVirtioMmio {
  /** Guest-physical base of its 0x200-byte (or larger) window. */
  addr: number;
  /** Window size in bytes. */
  size: number;
  /** Its GSI (IOAPIC pin); edge-triggered, active high. */
  irq: number;
}

/** What the tables describe; defaults match the built-in devices. */
export interface AcpiOptions {
  /** RSDP address (default 0xE0000); the other tables follow it. */
  rsdpAddr?: number;
  /** First port of the PM block of `devices/acpi_pm.ts` (default 0x600). */
  pmBase?: number;
  /** Reset register port (default pmBase + 0xC). */
  resetPort?: number;
  /** SCI ISA IRQ (default 9). */
  sciIrq?: number;
  /** IOAPIC address (default 0xFEC00000). */
  ioapicAddr?: number;
  /** Local APIC address (default 0xFEE00000). */
  lapicAddr?: number;
  /** virtio-mmio devices to list under `\_SB`. */
  virtioMmio?: AcpiVirtioMmio[];
}

/** One table that was written. */
export interface AcpiTableInfo {
  /** Table signature ("RSD PTR " for the RSDP). */
  signature: string;
  /** Guest-physical address. */
  addr: number;
  /** Length in bytes. */
  length: number;
}

/** What {@link writeAcpiTables} wrote. */
export interface AcpiTables {
  /** Address of the RSDP (for boot_params.acpi_rsdp_addr or PVH's rsdp_paddr). */
  rsdpAddr: number;
  /** Every table, in the order written (RSDP first). */
  tables: AcpiTableInfo[];
}

// --- Byte assembly --------------------------------------------------------------------------

/** A growable little-endian byte builder. */
class Bytes {
  #buf = new Uint8Array(256);
  length = 0;

  #room(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.length + n));
    next.set(this.#buf);
    this.#buf = next;
  }
  u8(v: number): this {
    this.#room(1);
    this.#buf[this.length++] = v & 0xff;
    return this;
  }
  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(Math.floor(v / 0x10000) & 0xffff);
  }
  u64(v: number): this {
    return this.u32(v >>> 0).u32(Math.floor(v / 0x1_0000_0000));
  }
  ascii(s: string, len = s.length): this {
    for (let i = 0; i < len; i++) this.u8(i < s.length ? s.charCodeAt(i) : 0x20);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.#room(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  zeros(n: number): this {
    this.#room(n);
    this.length += n; // the buffer is zero-filled and never shrinks
    return this;
  }
  done(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

/** Sets byte `at` so that all bytes of `data` (or its first `len`) sum to 0 mod 256. */
function fixChecksum(data: Uint8Array, at: number, len = data.length): void {
  data[at] = 0;
  let sum = 0;
  for (let i = 0; i < len; i++) sum += data[i]!;
  data[at] = (0x100 - (sum & 0xff)) & 0xff;
}

/** The sum of `data[0..len)` mod 256 (0 for a valid table). */
export function acpiChecksum(data: Uint8Array, len = data.length): number {
  let sum = 0;
  for (let i = 0; i < len; i++) sum += data[i]!;
  return sum & 0xff;
}

const OEM_ID = "DENOVI";
const OEM_TABLE_ID = "DENOVSOR";
const CREATOR_ID = "DNVS";
const SDT_HEADER_LEN = 36;

/** A system description table: the standard 36-byte header around `body`, checksummed. */
function sdt(signature: string, revision: number, body: Uint8Array): Uint8Array {
  const b = new Bytes()
    .ascii(signature, 4)
    .u32(SDT_HEADER_LEN + body.length)
    .u8(revision)
    .u8(0) // checksum, fixed below
    .ascii(OEM_ID, 6)
    .ascii(OEM_TABLE_ID, 8)
    .u32(1) // OEM revision
    .ascii(CREATOR_ID, 4)
    .u32(1) // creator revision
    .bytes(body);
  const out = b.done();
  fixChecksum(out, 9);
  return out;
}

/** Generic Address Structure (ACPI 5.2.3.2) for a port range. */
function gasIo(b: Bytes, port: number, bitWidth: number, accessSize = 0): void {
  const SYSTEM_IO = 1;
  b.u8(port === 0 ? 0 : SYSTEM_IO).u8(port === 0 ? 0 : bitWidth).u8(0).u8(accessSize).u64(port);
}

// --- AML (ACPI 6.3 chapter 20) --------------------------------------------------------------

const AML_ZERO = 0x00, AML_ONE = 0x01;
const AML_NAME = 0x08, AML_BYTE = 0x0a, AML_WORD = 0x0b, AML_DWORD = 0x0c, AML_STRING = 0x0d;
const AML_QWORD = 0x0e, AML_SCOPE = 0x10, AML_BUFFER = 0x11, AML_PACKAGE = 0x12;
const AML_EXT = 0x5b, AML_DEVICE = 0x82, AML_ROOT = 0x5c, AML_DUAL = 0x2e, AML_MULTI = 0x2f;

/** PkgLength for a body of `n` bytes (the encoding counts its own bytes). */
function amlPkgLength(n: number): Uint8Array {
  if (n + 1 <= 0x3f) return Uint8Array.of(n + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = n + 1 + extra;
    if (total < 1 << (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = (total >> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML object of ${n} bytes is too large for a PkgLength`);
}

/** A NameString: `\` root prefix, then 4-character segments joined by `.`. */
function amlName(path: string): Uint8Array {
  const b = new Bytes();
  let rest = path;
  if (rest.startsWith("\\")) {
    b.u8(AML_ROOT);
    rest = rest.slice(1);
  }
  const segs = rest === "" ? [] : rest.split(".");
  for (const s of segs) {
    if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(s)) {
      throw new TypeError(`AML name segment "${s}" in "${path}" is not 1-4 of A-Z, 0-9, _`);
    }
  }
  if (segs.length === 2) b.u8(AML_DUAL);
  else if (segs.length > 2) b.u8(AML_MULTI).u8(segs.length);
  if (segs.length === 0) b.u8(0); // NullName
  for (const s of segs) b.ascii(s.padEnd(4, "_"), 4);
  return b.done();
}

function amlInteger(v: number): Uint8Array {
  if (v === 0) return Uint8Array.of(AML_ZERO);
  if (v === 1) return Uint8Array.of(AML_ONE);
  if (v <= 0xff) return Uint8Array.of(AML_BYTE, v);
  if (v <= 0xffff) return new Bytes().u8(AML_WORD).u16(v).done();
  if (v <= 0xffff_ffff) return new Bytes().u8(AML_DWORD).u32(v).done();
  return new Bytes().u8(AML_QWORD).u64(v).done();
}

function amlString(s: string): Uint8Array {
  return new Bytes().u8(AML_STRING).ascii(s).u8(0).done();
}

function concat(parts: Uint8Array[]): Uint8Array {
  const b = new Bytes();
  for (const p of parts) b.bytes(p);
  return b.done();
}

function amlNameObject(path: string, value: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(AML_NAME), amlName(path), value]);
}

function amlPackage(elements: Uint8Array[]): Uint8Array {
  const body = concat([Uint8Array.of(elements.length), ...elements]);
  return concat([Uint8Array.of(AML_PACKAGE), amlPkgLength(body.length), body]);
}

function amlScope(path: string, body: Uint8Array[]): Uint8Array {
  const inner = concat([amlName(path), ...body]);
  return concat([Uint8Array.of(AML_SCOPE), amlPkgLength(inner.length), inner]);
}

function amlDevice(name: string, body: Uint8Array[]): Uint8Array {
  const inner = concat([amlName(name), ...body]);
  return concat([Uint8Array.of(AML_EXT, AML_DEVICE), amlPkgLength(inner.length), inner]);
}

function amlBuffer(data: Uint8Array): Uint8Array {
  const inner = concat([amlInteger(data.length), data]);
  return concat([Uint8Array.of(AML_BUFFER), amlPkgLength(inner.length), inner]);
}

/** A ResourceTemplate: descriptors plus the End Tag (checksum 0 means "not checked"). */
function amlResourceTemplate(descriptors: Uint8Array[]): Uint8Array {
  const END_TAG = 0x79;
  return amlBuffer(concat([...descriptors, Uint8Array.of(END_TAG, 0)]));
}

/** Memory32Fixed(ReadWrite, base, length) (ACPI 6.4.3.4). */
function resMemory32Fixed(base: number, length: number): Uint8Array {
  const MEMORY32_FIXED = 0x86, READ_WRITE = 1;
  return new Bytes().u8(MEMORY32_FIXED).u16(9).u8(READ_WRITE).u32(base).u32(length).done();
}

/** Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } (ACPI 6.4.3.6). */
function resExtendedIrqEdge(gsi: number): Uint8Array {
  const EXTENDED_IRQ = 0x89, CONSUMER = 0x01, EDGE = 0x02;
  return new Bytes().u8(EXTENDED_IRQ).u16(6).u8(CONSUMER | EDGE).u8(1).u32(gsi).done();
}

/** The DSDT's AML body. */
function dsdtBody(opts: AcpiOptions): Uint8Array {
  const parts: Uint8Array[] = [
    // Name(\_S5, Package() { SLP_TYPa, SLP_TYPb, 0, 0 }): what Linux writes for power-off.
    amlNameObject(
      "\\_S5_",
      amlPackage([amlInteger(SLP_TYP_S5), amlInteger(SLP_TYP_S5), amlInteger(0), amlInteger(0)]),
    ),
  ];
  const devices = (opts.virtioMmio ?? []).map((d, i) =>
    amlDevice(`VR${i.toString(16).toUpperCase().padStart(2, "0")}`, [
      amlNameObject("_HID", amlString("LNRO0005")),
      amlNameObject("_UID", amlInteger(i)),
      amlNameObject(
        "_CRS",
        amlResourceTemplate([resMemory32Fixed(d.addr, d.size), resExtendedIrqEdge(d.irq)]),
      ),
    ])
  );
  if (devices.length > 0) parts.push(amlScope("\\_SB_", devices));
  return concat(parts);
}

// --- Tables -----------------------------------------------------------------------------------

/** Builds the DSDT (exported for tests and for tools that want to disassemble it). */
export function buildDsdt(opts: AcpiOptions = {}): Uint8Array {
  const DSDT_REVISION = 2; // 64-bit integers
  return sdt("DSDT", DSDT_REVISION, dsdtBody(opts));
}

/** FADT flags (ACPI 5.2.9, table 5-34). */
const FADT_WBINVD = 1 << 0, FADT_PROC_C1 = 1 << 2, FADT_SLP_BUTTON = 1 << 5;
const FADT_FIX_RTC = 1 << 6, FADT_RESET_REG_SUP = 1 << 10;
/** IAPC_BOOT_ARCH: ISA legacy devices present, an 8042 present. */
const IAPC_LEGACY_DEVICES = 1 << 0, IAPC_8042 = 1 << 1;
/** FADT revision 6 (ACPI 6.x), 276 bytes; minor version 3 (ACPI 6.3). */
const FADT_REVISION = 6, FADT_MINOR = 3, FADT_LENGTH = 276;
/** P_LVL2/3 latencies above 100/1000 µs say "C2/C3 not supported". */
const C2_NOT_SUPPORTED = 101, C3_NOT_SUPPORTED = 1001;

function buildFadt(opts: AcpiOptions, facsAddr: number, dsdtAddr: number): Uint8Array {
  const pm = opts.pmBase ?? ACPI_PM_BASE;
  const evt = pm + PM1_EVT_OFFSET, cnt = pm + PM1_CNT_OFFSET, tmr = pm + PM_TMR_OFFSET;
  const reset = opts.resetPort ?? pm + RESET_REG_OFFSET;
  const b = new Bytes()
    .u32(facsAddr) // 36 FIRMWARE_CTRL
    .u32(dsdtAddr) // 40 DSDT
    .u8(0) // 44 reserved
    .u8(0) // 45 Preferred_PM_Profile: unspecified
    .u16(opts.sciIrq ?? SCI_IRQ) // 46 SCI_INT
    .u32(0) // 48 SMI_CMD: none, the platform is always in ACPI mode
    .u8(0) // 52 ACPI_ENABLE
    .u8(0) // 53 ACPI_DISABLE
    .u8(0) // 54 S4BIOS_REQ
    .u8(0) // 55 PSTATE_CNT
    .u32(evt) // 56 PM1a_EVT_BLK
    .u32(0) // 60 PM1b_EVT_BLK
    .u32(cnt) // 64 PM1a_CNT_BLK
    .u32(0) // 68 PM1b_CNT_BLK
    .u32(0) // 72 PM2_CNT_BLK
    .u32(tmr) // 76 PM_TMR_BLK
    .u32(0) // 80 GPE0_BLK
    .u32(0) // 84 GPE1_BLK
    .u8(PM1_EVT_LEN) // 88 PM1_EVT_LEN
    .u8(PM1_CNT_LEN) // 89 PM1_CNT_LEN
    .u8(0) // 90 PM2_CNT_LEN
    .u8(PM_TMR_LEN) // 91 PM_TMR_LEN
    .u8(0) // 92 GPE0_BLK_LEN
    .u8(0) // 93 GPE1_BLK_LEN
    .u8(0) // 94 GPE1_BASE
    .u8(0) // 95 CST_CNT
    .u16(C2_NOT_SUPPORTED) // 96 P_LVL2_LAT
    .u16(C3_NOT_SUPPORTED) // 98 P_LVL3_LAT
    .u16(0) // 100 FLUSH_SIZE
    .u16(0) // 102 FLUSH_STRIDE
    .u8(0) // 104 DUTY_OFFSET
    .u8(0) // 105 DUTY_WIDTH
    .u8(0) // 106 DAY_ALRM
    .u8(0) // 107 MON_ALRM
    .u8(CMOS_CENTURY) // 108 CENTURY
    .u16(IAPC_LEGACY_DEVICES | IAPC_8042) // 109 IAPC_BOOT_ARCH
    .u8(0) // 111 reserved
    .u32(FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC | FADT_RESET_REG_SUP);
  gasIo(b, reset, 8, 1); // 116 RESET_REG: one byte
  b.u8(RESET_VALUE) // 128 RESET_VALUE
    .u16(0) // 129 ARM_BOOT_ARCH
    .u8(FADT_MINOR) // 131 FADT minor version
    .u64(facsAddr) // 132 X_FIRMWARE_CTRL
    .u64(dsdtAddr); // 140 X_DSDT
  gasIo(b, evt, PM1_EVT_LEN * 8); // 148 X_PM1a_EVT_BLK
  gasIo(b, 0, 0); // 160 X_PM1b_EVT_BLK
  gasIo(b, cnt, PM1_CNT_LEN * 8); // 172 X_PM1a_CNT_BLK
  gasIo(b, 0, 0); // 184 X_PM1b_CNT_BLK
  gasIo(b, 0, 0); // 196 X_PM2_CNT_BLK
  gasIo(b, tmr, PM_TMR_LEN * 8); // 208 X_PM_TMR_BLK
  gasIo(b, 0, 0); // 220 X_GPE0_BLK
  gasIo(b, 0, 0); // 232 X_GPE1_BLK
  gasIo(b, 0, 0); // 244 SLEEP_CONTROL_REG (hardware-reduced only)
  gasIo(b, 0, 0); // 256 SLEEP_STATUS_REG
  b.ascii("DENOVISR", 8); // 268 Hypervisor Vendor Identity
  const table = sdt("FACP", FADT_REVISION, b.done());
  if (table.length !== FADT_LENGTH) {
    throw new Error(`FADT is ${table.length} bytes, expected ${FADT_LENGTH}: layout bug`);
  }
  return table;
}

function buildFacs(): Uint8Array {
  const FACS_LENGTH = 64, FACS_VERSION = 2;
  return new Bytes()
    .ascii("FACS", 4)
    .u32(FACS_LENGTH)
    .u32(0) // hardware signature
    .u32(0) // firmware waking vector
    .u32(0) // global lock
    .u32(0) // flags
    .u64(0) // X firmware waking vector
    .u8(FACS_VERSION)
    .zeros(3 + 4 + 24)
    .done();
}

/** MADT entry types and flags (ACPI 5.2.12). */
const MADT_LAPIC = 0, MADT_IOAPIC = 1, MADT_ISO = 2, MADT_LAPIC_NMI = 4;
const MADT_PCAT_COMPAT = 1, LAPIC_ENABLED = 1;
/** MPS INTI flags: polarity active high (01), trigger level (11 << 2). */
const INTI_ACTIVE_HIGH_LEVEL = 0x0d;
const MADT_REVISION = 5;

function buildMadt(opts: AcpiOptions): Uint8Array {
  const sci = opts.sciIrq ?? SCI_IRQ;
  const b = new Bytes()
    .u32(opts.lapicAddr ?? LAPIC_BASE)
    .u32(MADT_PCAT_COMPAT)
    // Processor Local APIC: ACPI processor UID 0, APIC ID 0, enabled.
    .u8(MADT_LAPIC).u8(8).u8(0).u8(0).u32(LAPIC_ENABLED)
    // I/O APIC: ID 0, address, GSI base 0.
    .u8(MADT_IOAPIC).u8(12).u8(0).u8(0).u32(opts.ioapicAddr ?? IOAPIC_BASE).u32(0)
    // Interrupt source overrides: ISA IRQ 0 (PIT) on GSI 2, bus-conforming polarity/trigger.
    .u8(MADT_ISO).u8(10).u8(0).u8(0).u32(ISA_IRQ0_GSI).u16(0)
    // The SCI: level-triggered, active high.
    .u8(MADT_ISO).u8(10).u8(0).u8(sci).u32(sci).u16(INTI_ACTIVE_HIGH_LEVEL)
    // Local APIC NMI: all processors, LINT1, bus-conforming.
    .u8(MADT_LAPIC_NMI).u8(6).u8(0xff).u16(0).u8(1);
  return sdt("APIC", MADT_REVISION, b.done());
}

/**
 * Writes RSDP, XSDT, RSDT, FADT, FACS, DSDT and MADT into guest memory from `opts.rsdpAddr`
 * (default 0xE0000) and returns where they are. Throws GuestMemoryError if guest RAM does not
 * cover the area, RangeError if the tables would leave the BIOS area.
 *
 * @example
 * ```ts
 * import { GuestMemory } from "../memory.ts";
 * import { writeAcpiTables } from "./acpi.ts";
 * const memory = GuestMemory.allocate(2 * 1024 * 1024);
 * const { rsdpAddr } = writeAcpiTables(memory);
 * console.log(rsdpAddr.toString(16)); // "e0000"
 * ```
 */
export function writeAcpiTables(memory: GuestMemory, opts: AcpiOptions = {}): AcpiTables {
  const rsdpAddr = opts.rsdpAddr ?? ACPI_RSDP_ADDR;
  const tables: AcpiTableInfo[] = [];
  const RSDP_LENGTH = 36;
  let cursor = rsdpAddr + 0x40;
  const place = (signature: string, data: Uint8Array, align = 16): number => {
    cursor = Math.ceil(cursor / align) * align;
    const addr = cursor;
    if (
      rsdpAddr >= ACPI_RSDP_ADDR && rsdpAddr < BIOS_AREA_END && addr + data.length > BIOS_AREA_END
    ) {
      throw new RangeError(
        `ACPI table ${signature} would end at 0x${(addr + data.length).toString(16)}, past the ` +
          `BIOS area: describe fewer devices or place the RSDP lower`,
      );
    }
    memory.write(addr, data);
    tables.push({ signature, addr, length: data.length });
    cursor += data.length;
    return addr;
  };

  const FACS_ALIGN = 64;
  const dsdtAddr = place("DSDT", buildDsdt(opts));
  const facsAddr = place("FACS", buildFacs(), FACS_ALIGN);
  const fadtAddr = place("FACP", buildFadt(opts, facsAddr, dsdtAddr));
  const madtAddr = place("APIC", buildMadt(opts));
  const entries = [fadtAddr, madtAddr];
  const xsdtBody = new Bytes();
  for (const a of entries) xsdtBody.u64(a);
  const xsdtAddr = place("XSDT", sdt("XSDT", 1, xsdtBody.done()));
  const rsdtBody = new Bytes();
  for (const a of entries) rsdtBody.u32(a);
  const rsdtAddr = place("RSDT", sdt("RSDT", 1, rsdtBody.done()));

  const RSDP_REVISION = 2, RSDP_V1_LENGTH = 20;
  const rsdp = new Bytes()
    .ascii("RSD PTR ", 8)
    .u8(0) // checksum of the first 20 bytes
    .ascii(OEM_ID, 6)
    .u8(RSDP_REVISION)
    .u32(rsdtAddr)
    .u32(RSDP_LENGTH)
    .u64(xsdtAddr)
    .u8(0) // extended checksum
    .zeros(3)
    .done();
  fixChecksum(rsdp, 8, RSDP_V1_LENGTH);
  fixChecksum(rsdp, 32);
  memory.write(rsdpAddr, rsdp);
  tables.unshift({ signature: "RSD PTR ", addr: rsdpAddr, length: RSDP_LENGTH });
  return { rsdpAddr, tables };
}

// --- Finding and moving written tables ------------------------------------------------------

/** Guests look for the RSDP on 16-byte boundaries from here to 1 MiB (ACPI 5.2.5.1). */
export const ACPI_SCAN_START = 0xe0000;
/** The FACS must be 64-byte aligned, so a move keeps every table's address modulo this. */
export const ACPI_MOVE_ALIGN = 64;

const RSDP_SIGNATURE = "RSD PTR ";

function asciiAt(memory: GuestMemory, gpa: number, len: number): string {
  return String.fromCharCode(...memory.read(gpa, len));
}

/**
 * The tables reachable from the RSDP at `rsdpAddr` in guest memory: the RSDP, RSDT, XSDT, every
 * table they list, and the FACS and DSDT the FADT names. Null when there is no RSDP there.
 * Tables outside guest RAM are left out.
 *
 * @example
 * ```ts
 * import { GuestMemory } from "../memory.ts";
 * import { readAcpiTables, writeAcpiTables } from "./acpi.ts";
 * const memory = GuestMemory.allocate(2 * 1024 * 1024);
 * writeAcpiTables(memory);
 * console.log(readAcpiTables(memory, 0xe0000)?.tables.length); // 7
 * ```
 */
export function readAcpiTables(memory: GuestMemory, rsdpAddr: number): AcpiTables | null {
  if (!memory.isRam(rsdpAddr, 36) || asciiAt(memory, rsdpAddr, 8) !== RSDP_SIGNATURE) return null;
  const revision = memory.readU8(rsdpAddr + 15);
  const tables: AcpiTableInfo[] = [{
    signature: RSDP_SIGNATURE,
    addr: rsdpAddr,
    length: revision >= 2 ? memory.readU32(rsdpAddr + 20) : 20,
  }];
  const seen = new Set<number>();
  const visit = (addr: number, signature?: string): AcpiTableInfo | null => {
    if (addr === 0 || seen.has(addr) || !memory.isRam(addr, 8)) return null;
    seen.add(addr);
    const length = memory.readU32(addr + 4);
    if (!memory.isRam(addr, Math.max(length, 8))) return null;
    const t = { signature: signature ?? asciiAt(memory, addr, 4), addr, length };
    tables.push(t);
    return t;
  };
  const roots: [number, number][] = [[memory.readU32(rsdpAddr + 16), 4]];
  if (revision >= 2) roots.push([Number(memory.readU64(rsdpAddr + 24)), 8]);
  for (const [addr, width] of roots) {
    const root = visit(addr);
    if (!root) continue;
    for (let at = root.addr + SDT_HEADER_LEN; at + width <= root.addr + root.length; at += width) {
      const entry = width === 4 ? memory.readU32(at) : Number(memory.readU64(at));
      const t = visit(entry);
      if (t?.signature !== "FACP") continue;
      visit(memory.readU32(t.addr + 36), "FACS");
      visit(memory.readU32(t.addr + 40), "DSDT");
      if (t.length >= 148) {
        visit(Number(memory.readU64(t.addr + 132)), "FACS");
        visit(Number(memory.readU64(t.addr + 140)), "DSDT");
      }
    }
  }
  return { rsdpAddr, tables };
}

/** The range `[start, end)` that holds every table of `acpi`. */
export function acpiExtent(acpi: AcpiTables): { start: number; end: number } {
  let start = Infinity, end = 0;
  for (const t of acpi.tables) {
    start = Math.min(start, t.addr);
    end = Math.max(end, t.addr + t.length);
  }
  return { start, end };
}

/**
 * Moves the tables reachable from the RSDP at `rsdpAddr` (as one block, {@link acpiExtent})
 * so that the RSDP lands at `newRsdpAddr`, rewriting the pointers between them and their
 * checksums, and zeroes what the block left behind, so a guest scanning for the RSDP finds only
 * the new one. `newRsdpAddr - rsdpAddr` must be a multiple of {@link ACPI_MOVE_ALIGN}.
 * Throws RangeError when there is no RSDP at `rsdpAddr` or the move is misaligned.
 */
export function moveAcpiTables(
  memory: GuestMemory,
  rsdpAddr: number,
  newRsdpAddr: number,
): AcpiTables {
  const acpi = readAcpiTables(memory, rsdpAddr);
  if (!acpi) throw new RangeError(`No ACPI RSDP at 0x${rsdpAddr.toString(16)} to move`);
  const delta = newRsdpAddr - rsdpAddr;
  if (delta % ACPI_MOVE_ALIGN !== 0) {
    throw new RangeError(`ACPI tables can only move by multiples of ${ACPI_MOVE_ALIGN} bytes`);
  }
  const { start, end } = acpiExtent(acpi);
  const block = memory.read(start, end - start);
  const dv = new DataView(block.buffer);
  const inBlock = (a: number) => a >= start && a < end;
  const move32 = (at: number) => {
    const a = dv.getUint32(at - start, true);
    if (inBlock(a)) dv.setUint32(at - start, a + delta, true);
  };
  const move64 = (at: number) => {
    const a = Number(dv.getBigUint64(at - start, true));
    if (inBlock(a)) dv.setBigUint64(at - start, BigInt(a + delta), true);
  };
  const checksum = (t: AcpiTableInfo, at: number, len: number) =>
    fixChecksum(block.subarray(t.addr - start, t.addr - start + len), at);
  for (const t of acpi.tables) {
    if (t.signature === RSDP_SIGNATURE) {
      move32(t.addr + 16);
      if (t.length >= 32) move64(t.addr + 24);
      checksum(t, 8, 20);
      if (t.length >= 33) checksum(t, 32, t.length);
      continue;
    }
    if (t.signature === "FACS") continue; // no pointers, no checksum
    if (t.signature === "RSDT" || t.signature === "XSDT") {
      const width = t.signature === "RSDT" ? 4 : 8;
      for (let at = t.addr + SDT_HEADER_LEN; at + width <= t.addr + t.length; at += width) {
        if (width === 4) move32(at);
        else move64(at);
      }
    } else if (t.signature === "FACP") {
      move32(t.addr + 36);
      move32(t.addr + 40);
      if (t.length >= 148) {
        move64(t.addr + 132);
        move64(t.addr + 140);
      }
    }
    checksum(t, 9, t.length);
  }
  memory.fill(start, end - start, 0);
  memory.write(start + delta, block);
  return {
    rsdpAddr: newRsdpAddr,
    tables: acpi.tables.map((t) => ({ ...t, addr: t.addr + delta })),
  };
}
