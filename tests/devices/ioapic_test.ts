import { assertEquals } from "../_assert.ts";
import ioapicPlugin, { IoApic } from "../../devices/ioapic.ts";
import { createOnFakeHost } from "./_fake_host.ts";

interface Msg {
  dest: number;
  logical: boolean;
  mode: number;
  vector: number;
  level: boolean;
}

function recording(): { ioapic: IoApic; msgs: Msg[] } {
  const ioapic = new IoApic();
  const msgs: Msg[] = [];
  ioapic.deliver = (dest, logical, mode, vector, level) =>
    msgs.push({ dest, logical, mode, vector, level });
  return { ioapic, msgs };
}

Deno.test("ioapic reports version 0x11 with 24 entries, all masked at reset", () => {
  const { io } = createOnFakeHost(ioapicPlugin);
  io.writel(0xfec00000, 0x01);
  assertEquals(io.readl(0xfec00010), 0x170011);
  io.writel(0xfec00000, 0x10 + 2 * 23);
  assertEquals(io.readl(0xfec00010), 0x10000);
  io.writel(0xfec00000, 0x00);
  io.writel(0xfec00010, 0x0a000000);
  assertEquals(io.readl(0xfec00010), 0x0a000000);
  assertEquals(io.readl(0xfec00000), 0x00);
});

Deno.test("ioapic sends an edge message with the entry's vector and destination", () => {
  const { ioapic, msgs } = recording();
  ioapic.writeRegister(0x10 + 2 * 4 + 1, 0x01000000);
  ioapic.writeRegister(0x10 + 2 * 4, 0x800 | 0x24); // logical, fixed, edge
  ioapic.setPin(4, true);
  ioapic.setPin(4, true);
  assertEquals(msgs, [{ dest: 1, logical: true, mode: 0, vector: 0x24, level: false }]);
  ioapic.setPin(4, false);
  ioapic.setPin(4, true);
  assertEquals(msgs.length, 2);
});

Deno.test("ioapic holds an edge that arrives while masked until the entry is unmasked", () => {
  const { ioapic, msgs } = recording();
  ioapic.writeRegister(0x10 + 2 * 1, 0x10000 | 0x31);
  ioapic.setPin(1, true);
  ioapic.setPin(1, false);
  assertEquals(msgs.length, 0);
  ioapic.writeRegister(0x10 + 2 * 1, 0x31);
  assertEquals(msgs.length, 1);
});

Deno.test("ioapic level entry sets remote IRR and redelivers after EOI while asserted", () => {
  const { ioapic, msgs } = recording();
  ioapic.writeRegister(0x10 + 2 * 9, 0x8000 | 0x39); // level, active high
  ioapic.setPin(9, true);
  assertEquals(msgs.length, 1);
  assertEquals(ioapic.readRegister(0x10 + 2 * 9) & 0x4000, 0x4000, "remote IRR set");
  ioapic.setPin(9, true);
  assertEquals(msgs.length, 1, "no new message while remote IRR is set");
  ioapic.eoi(0x39);
  assertEquals(msgs.length, 2, "line still high: delivered again");
  ioapic.setPin(9, false);
  ioapic.eoi(0x39);
  assertEquals(msgs.length, 2);
  assertEquals(ioapic.readRegister(0x10 + 2 * 9) & 0x4000, 0);
});

Deno.test("ioapic ignores writes to read-only entry bits", () => {
  const { ioapic } = recording();
  ioapic.writeRegister(0x10, 0xffffffff);
  assertEquals(ioapic.readRegister(0x10), 0x1afff);
  ioapic.writeRegister(0x11, 0xffffffff);
  assertEquals(ioapic.readRegister(0x11), 0xff000000);
});

Deno.test("ioapic state survives save and restore", () => {
  const { ioapic } = recording();
  ioapic.writeRegister(0x10 + 2 * 5, 0x8000 | 0x35);
  ioapic.setPin(5, true);
  const copy = recording();
  copy.ioapic.restore(JSON.parse(JSON.stringify(ioapic.save())));
  assertEquals(copy.ioapic.readRegister(0x10 + 2 * 5), 0xc035);
  copy.ioapic.eoi(0x35);
  assertEquals(copy.msgs.length, 1);
});
