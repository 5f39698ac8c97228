import { assertEquals, assertTrue } from "../_assert.ts";
import pit8254Plugin from "../../devices/pit8254.ts";
import { createPcPlatform, type PcPlatform } from "../../devices/platform.ts";
import { FakeClock, fakeHost } from "./_fake_host.ts";

function initPic(pc: PcPlatform): void {
  for (
    const [p, v] of [
      [0x20, 0x11],
      [0x21, 0x30],
      [0x21, 0x04],
      [0x21, 0x01],
      [0xa0, 0x11],
      [0xa1, 0x38],
      [0xa1, 0x02],
      [0xa1, 0x01],
      [0x21, 0x00],
      [0xa1, 0x00],
    ]
  ) pc.pic.ioWrite(p!, v!);
}

/** Linux's APIC setup on one CPU: enable, flat logical ID 1, LINT0 ExtINT masked. */
function enableApicMode(pc: PcPlatform): void {
  pc.pic.ioWrite(0x21, 0xff);
  pc.pic.ioWrite(0xa1, 0xff);
  pc.lapic.writeRegister(0xf0, 0x1ff);
  pc.lapic.writeRegister(0xe0, 0xffffffff);
  pc.lapic.writeRegister(0xd0, 0x01000000);
  pc.lapic.writeRegister(0x350, 0x10700);
}

function route(pc: PcPlatform, pin: number, vector: number, level = false): void {
  pc.ioapic.writeRegister(0x11 + 2 * pin, 0x01000000);
  pc.ioapic.writeRegister(0x10 + 2 * pin, 0x800 | (level ? 0x8000 : 0) | vector);
}

Deno.test("platform passes PIC interrupts through LINT0 while the APIC is disabled", () => {
  const pc = createPcPlatform({ clock: new FakeClock() });
  initPic(pc);
  pc.irqLine(4).raise();
  assertEquals(pc.hasInterrupt(), true);
  assertEquals(pc.acknowledge(), 0x34);
  assertEquals(pc.hasInterrupt(), false);
});

Deno.test("platform routes an ISA IRQ through the IOAPIC to a local APIC vector", () => {
  const pc = createPcPlatform({ clock: new FakeClock() });
  initPic(pc);
  enableApicMode(pc);
  route(pc, 4, 0x24);
  pc.irqLine(4).pulse();
  assertEquals(pc.hasInterrupt(), true);
  assertEquals(pc.acknowledge(), 0x24);
  assertEquals(pc.hasInterrupt(), false);
  pc.lapic.writeRegister(0xb0, 0);
  assertEquals(pc.lapic.readRegister(0x100 + 0x10 * (0x24 >> 5)), 0, "EOI cleared ISR");
});

Deno.test("platform wires ISA IRQ0 to IOAPIC pin 2 so the PIT tick arrives as the pin 2 vector", () => {
  const clock = new FakeClock();
  const pc = createPcPlatform({ clock });
  enableApicMode(pc);
  route(pc, 2, 0x30);
  const host = fakeHost();
  // The PIT raises its line through the platform instead of the recording host.
  const pit = pit8254Plugin.create({ ...host, clock, irq: (n) => pc.irqLine(n) });
  const out = pit.ports![0]!;
  out.write(3, 1, 0x34);
  out.write(0, 1, 4773 & 0xff);
  out.write(0, 1, 4773 >> 8);
  let ticks = 0;
  for (let ms = 0; ms < 41; ms++) {
    clock.advance(1_000_000);
    if (pc.hasInterrupt()) {
      assertEquals(pc.acknowledge(), 0x30);
      pc.lapic.writeRegister(0xb0, 0);
      ticks++;
    }
  }
  assertEquals(ticks, 10);
});

Deno.test("platform level-triggered IOAPIC entry is re-sent after the local APIC EOI", () => {
  const pc = createPcPlatform({ clock: new FakeClock() });
  enableApicMode(pc);
  route(pc, 9, 0x39, true);
  pc.irqLine(9).raise();
  assertEquals(pc.acknowledge(), 0x39);
  assertEquals(pc.hasInterrupt(), false);
  pc.lapic.writeRegister(0xb0, 0); // EOI while the line is still high
  assertEquals(pc.hasInterrupt(), true);
  assertEquals(pc.acknowledge(), 0x39);
  pc.irqLine(9).lower();
  pc.lapic.writeRegister(0xb0, 0);
  assertEquals(pc.hasInterrupt(), false);
});

Deno.test("platform blocks PIC interrupts once LINT0 is masked in APIC mode", () => {
  const pc = createPcPlatform({ clock: new FakeClock() });
  initPic(pc);
  pc.lapic.writeRegister(0xf0, 0x1ff);
  pc.irqLine(3).raise();
  assertEquals(pc.hasInterrupt(), true, "LINT0 is ExtINT after reset");
  pc.lapic.writeRegister(0x350, 0x10700);
  assertEquals(pc.hasInterrupt(), false);
  pc.lapic.writeRegister(0x350, 0x00700);
  assertEquals(pc.hasInterrupt(), true);
});

Deno.test("platform local APIC timer interrupts outrank a waiting PIC interrupt", () => {
  const clock = new FakeClock();
  const pc = createPcPlatform({ clock });
  initPic(pc);
  pc.lapic.writeRegister(0xf0, 0x1ff);
  pc.lapic.writeRegister(0x3e0, 0xb);
  pc.lapic.writeRegister(0x320, 0xec);
  pc.lapic.writeRegister(0x380, 1000);
  clock.advance(1000);
  pc.irqLine(1).raise();
  assertEquals(pc.acknowledge(), 0xec);
  assertEquals(pc.acknowledge(), 0x31);
});

Deno.test("platform without APICs is a plain PIC and routes GSIs above 15 nowhere", () => {
  const pc = createPcPlatform({ clock: new FakeClock(), apic: false });
  assertEquals(pc.device.mmio!.length, 0);
  initPic(pc);
  pc.irqLine(17).raise();
  assertEquals(pc.hasInterrupt(), false);
  pc.irqLine(10).raise();
  assertEquals(pc.acknowledge(), 0x3a);
});

Deno.test("platform claims PIC ports and both APIC pages, and restores its state", () => {
  const clock = new FakeClock();
  const pc = createPcPlatform({ clock });
  assertEquals(pc.device.ports!.map((r) => r.base), [0x20, 0xa0, 0x4d0]);
  assertEquals(pc.device.mmio!.map((r) => r.base), [0xfec00000, 0xfee00000]);
  enableApicMode(pc);
  route(pc, 5, 0x45);
  pc.irqLine(5).pulse();
  const copy = createPcPlatform({ clock });
  copy.restore(JSON.parse(JSON.stringify(pc.save())));
  assertTrue(copy.hasInterrupt());
  assertEquals(copy.acknowledge(), 0x45);
});
