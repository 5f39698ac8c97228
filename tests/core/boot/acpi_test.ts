import { assertEquals, assertTrue } from "../../_assert.ts";
import { acpiChecksum, buildDsdt, writeAcpiTables } from "../../../core/boot/acpi.ts";
import { GuestMemory } from "../../../core/memory.ts";
import acpiPmPlugin from "../../../devices/acpi_pm.ts";
import { createOnFakeHost } from "../../devices/_fake_host.ts";

const MIB = 0x10_0000;

function sig(mem: GuestMemory, addr: number, len = 4): string {
  return new TextDecoder().decode(mem.read(addr, len));
}

/** Follows RSDP → XSDT → tables the way Linux does and returns them by signature. */
function walk(mem: GuestMemory, rsdp: number): Map<string, { addr: number; bytes: Uint8Array }> {
  const out = new Map<string, { addr: number; bytes: Uint8Array }>();
  const xsdt = Number(mem.readU64(rsdp + 24));
  const len = mem.readU32(xsdt + 4);
  out.set("XSDT", { addr: xsdt, bytes: mem.read(xsdt, len) });
  for (let off = 36; off < len; off += 8) {
    const addr = Number(mem.readU64(xsdt + off));
    out.set(sig(mem, addr), { addr, bytes: mem.read(addr, mem.readU32(addr + 4)) });
  }
  const fadt = out.get("FACP")!;
  const dsdt = Number(new DataView(fadt.bytes.buffer).getBigUint64(140, true));
  out.set("DSDT", { addr: dsdt, bytes: mem.read(dsdt, mem.readU32(dsdt + 4)) });
  const facs = Number(new DataView(fadt.bytes.buffer).getBigUint64(132, true));
  out.set("FACS", { addr: facs, bytes: mem.read(facs, mem.readU32(facs + 4)) });
  return out;
}

Deno.test("acpi RSDP is at 0xE0000 with both checksums valid and points at the XSDT", () => {
  const mem = GuestMemory.allocate(2 * MIB);
  const { rsdpAddr, tables } = writeAcpiTables(mem);
  assertEquals(rsdpAddr, 0xe0000);
  assertEquals(sig(mem, rsdpAddr, 8), "RSD PTR ");
  assertEquals(mem.readU8(rsdpAddr + 15), 2, "revision 2");
  assertEquals(acpiChecksum(mem.read(rsdpAddr, 20)), 0);
  assertEquals(acpiChecksum(mem.read(rsdpAddr, 36)), 0);
  assertEquals(mem.readU32(rsdpAddr + 20), 36);
  const xsdt = Number(mem.readU64(rsdpAddr + 24));
  assertEquals(sig(mem, xsdt), "XSDT");
  assertEquals(sig(mem, mem.readU32(rsdpAddr + 16)), "RSDT");
  for (const t of tables) assertTrue(t.addr + t.length <= 0x100000, `${t.signature} in BIOS area`);
});

Deno.test("acpi tables all have valid checksums and the lengths their headers say", () => {
  const mem = GuestMemory.allocate(2 * MIB);
  const { tables } = writeAcpiTables(mem);
  assertEquals(tables.map((t) => t.signature).sort(), [
    "APIC",
    "DSDT",
    "FACP",
    "FACS",
    "RSD PTR ",
    "RSDT",
    "XSDT",
  ]);
  for (const t of tables) {
    if (t.signature === "RSD PTR ") continue;
    assertEquals(mem.readU32(t.addr + 4), t.length, `${t.signature} length`);
    if (t.signature === "FACS") {
      assertEquals(t.addr % 64, 0, "FACS is 64-byte aligned");
      continue;
    }
    assertEquals(acpiChecksum(mem.read(t.addr, t.length)), 0, `${t.signature} checksum`);
  }
  const fadt = tables.find((t) => t.signature === "FACP")!;
  assertEquals(fadt.length, 276);
  assertEquals(mem.readU8(fadt.addr + 8), 6, "FADT revision 6");
});

Deno.test("acpi FADT points at the DSDT, the FACS and the PM ports the device claims", () => {
  const mem = GuestMemory.allocate(2 * MIB);
  const { rsdpAddr } = writeAcpiTables(mem);
  const t = walk(mem, rsdpAddr);
  const fadt = new DataView(t.get("FACP")!.bytes.buffer);
  assertEquals(fadt.getUint32(40, true), t.get("DSDT")!.addr);
  assertEquals(fadt.getUint32(36, true), t.get("FACS")!.addr);
  assertEquals(fadt.getUint16(46, true), 9, "SCI_INT");
  assertEquals(fadt.getUint8(108), 0x32, "CENTURY");
  assertEquals(fadt.getUint16(109, true) & 0x3, 0x3, "legacy devices and 8042");
  assertTrue((fadt.getUint32(112, true) & (1 << 10)) !== 0, "RESET_REG_SUP");
  assertEquals(fadt.getUint32(112, true) & (1 << 20), 0, "not hardware-reduced");

  const { device, io, host } = createOnFakeHost(acpiPmPlugin);
  const claimed = (port: number, len: number) =>
    device.ports!.some((r) => port >= r.base && port + len <= r.base + r.length);
  const evt = fadt.getUint32(56, true), cnt = fadt.getUint32(64, true);
  const tmr = fadt.getUint32(76, true);
  assertTrue(claimed(evt, fadt.getUint8(88)), "PM1a_EVT_BLK claimed");
  assertTrue(claimed(cnt, fadt.getUint8(89)), "PM1a_CNT_BLK claimed");
  assertTrue(claimed(tmr, fadt.getUint8(91)), "PM_TMR_BLK claimed");
  assertEquals(Number(fadt.getBigUint64(208 + 4, true)), tmr, "X_PM_TMR_BLK matches");
  assertEquals(fadt.getUint8(208 + 1), 32);
  assertEquals(Number(fadt.getBigUint64(172 + 4, true)), cnt, "X_PM1a_CNT_BLK matches");
  assertEquals(Number(fadt.getBigUint64(148 + 4, true)), evt, "X_PM1a_EVT_BLK matches");

  // Reset the way ACPICA does: write RESET_VALUE to RESET_REG.
  assertEquals(fadt.getUint8(116), 1, "RESET_REG in system I/O space");
  const resetPort = Number(fadt.getBigUint64(116 + 4, true));
  io.outb(resetPort, fadt.getUint8(128));
  assertEquals(host.powerEvents, ["reset"]);
});

Deno.test("acpi power-off as Linux does it: DSDT \\_S5_ SLP_TYP into the FADT's PM1a_CNT", () => {
  const mem = GuestMemory.allocate(2 * MIB);
  const { rsdpAddr } = writeAcpiTables(mem);
  const t = walk(mem, rsdpAddr);
  const dsdt = t.get("DSDT")!.bytes;
  const at = new TextDecoder("latin1").decode(dsdt).indexOf("_S5_");
  assertTrue(at > 36, "DSDT defines _S5_");
  // NameOp '\' "_S5_" PackageOp PkgLength NumElements then the first element (Byte or Zero/One).
  assertEquals(dsdt[at - 2], 0x08);
  assertEquals(dsdt[at + 4], 0x12);
  const first = dsdt[at + 7]!;
  const slpTyp = first === 0x0a ? dsdt[at + 8]! : first;
  const fadt = new DataView(t.get("FACP")!.bytes.buffer);
  const { io, host } = createOnFakeHost(acpiPmPlugin);
  io.outw(fadt.getUint32(64, true), (slpTyp << 10) | (1 << 13));
  assertEquals(host.powerEvents, ["off"]);
});

Deno.test("acpi MADT describes the local APIC, IOAPIC, IRQ0 to GSI 2 and a level SCI", () => {
  const mem = GuestMemory.allocate(2 * MIB);
  const { rsdpAddr } = writeAcpiTables(mem);
  const madt = walk(mem, rsdpAddr).get("APIC")!.bytes;
  const v = new DataView(madt.buffer);
  assertEquals(v.getUint32(36, true), 0xfee00000);
  assertEquals(v.getUint32(40, true) & 1, 1, "PCAT_COMPAT");
  const entries: number[][] = [];
  for (let off = 44; off < madt.length; off += madt[off + 1]!) {
    entries.push(Array.from(madt.subarray(off, off + madt[off + 1]!)));
  }
  assertEquals(entries[0], [0, 8, 0, 0, 1, 0, 0, 0]);
  assertEquals(entries[1], [1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]);
  assertEquals(entries[2], [2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
  assertEquals(entries[3], [2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]);
  assertEquals(entries[4], [4, 6, 0xff, 0, 0, 1]);
});

Deno.test("acpi DSDT lists virtio-mmio devices with their window and interrupt", () => {
  const dsdt = buildDsdt({ virtioMmio: [{ addr: 0xd0000000, size: 0x1000, irq: 5 }] });
  assertEquals(acpiChecksum(dsdt), 0);
  const text = new TextDecoder("latin1").decode(dsdt);
  assertTrue(text.includes("LNRO0005"));
  assertTrue(text.includes("VR00"));
});

const iasl = (() => {
  try {
    return new Deno.Command("iasl", { args: ["-v"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();
if (!iasl) {
  console.warn("acpi_test: iasl not found (apt package acpica-tools); skipping disassembly tests");
}

Deno.test({
  name: "acpi DSDT disassembles with iasl and defines _S5_ and the virtio-mmio device",
  ignore: !iasl,
  fn() {
    const dir = Deno.makeTempDirSync();
    try {
      const dsdt = buildDsdt({ virtioMmio: [{ addr: 0xd0000000, size: 0x200, irq: 5 }] });
      Deno.writeFileSync(`${dir}/dsdt.aml`, dsdt);
      const r = new Deno.Command("iasl", { args: ["-d", `${dir}/dsdt.aml`], cwd: dir })
        .outputSync();
      const log = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
      assertTrue(r.success, log);
      const dsl = Deno.readTextFileSync(`${dir}/dsdt.dsl`);
      assertTrue(/Name \(\\?_S5, Package \(0x04\)/.test(dsl), dsl);
      assertTrue(dsl.includes('Name (_HID, "LNRO0005")'), dsl);
      assertTrue(/Memory32Fixed \(ReadWrite,\s*0xD0000000,[^\n]*\n\s*0x00000200,/.test(dsl), dsl);
      assertTrue(/Interrupt \(ResourceConsumer, Edge, ActiveHigh, Exclusive/.test(dsl), dsl);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "acpi FADT and MADT disassemble with iasl without errors",
  ignore: !iasl,
  fn() {
    const mem = GuestMemory.allocate(2 * MIB);
    const { tables } = writeAcpiTables(mem);
    const dir = Deno.makeTempDirSync();
    try {
      for (const name of ["FACP", "APIC"]) {
        const t = tables.find((x) => x.signature === name)!;
        Deno.writeFileSync(`${dir}/${name}.dat`, mem.read(t.addr, t.length));
        const r = new Deno.Command("iasl", { args: ["-d", `${name}.dat`], cwd: dir }).outputSync();
        const log = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
        assertTrue(r.success, log);
        const dsl = Deno.readTextFileSync(`${dir}/${name}.dsl`);
        assertTrue(!/\*\*\*\* ACPI table terminates|Invalid|ERROR/i.test(dsl), dsl);
      }
      const fadt = Deno.readTextFileSync(`${dir}/FACP.dsl`);
      assertTrue(
        /PM1A Control Block Address : 0000000000000604/.test(fadt) ||
          /PM1A Control Block Address : 00000604/.test(fadt),
        fadt,
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
