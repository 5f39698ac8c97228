import { assertEquals, assertTrue } from "../_assert.ts";
import rtcPlugin from "../../devices/rtc_cmos.ts";
import { createOnFakeHost, type PortIo } from "./_fake_host.ts";

const TIME = "2024-02-29T23:59:58Z";

function cmos(io: PortIo, reg: number): number {
  io.outb(0x70, reg);
  return io.inb(0x71);
}
function setCmos(io: PortIo, reg: number, v: number): void {
  io.outb(0x70, reg);
  io.outb(0x71, v);
}

Deno.test("rtc returns the configured time in BCD, 24-hour mode", () => {
  const { io } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  assertEquals(cmos(io, 0x0b) & 0x06, 0x02, "BCD, 24h after reset");
  assertEquals(cmos(io, 0x00), 0x58);
  assertEquals(cmos(io, 0x02), 0x59);
  assertEquals(cmos(io, 0x04), 0x23);
  assertEquals(cmos(io, 0x07), 0x29);
  assertEquals(cmos(io, 0x08), 0x02);
  assertEquals(cmos(io, 0x09), 0x24);
  assertEquals(cmos(io, 0x32), 0x20);
  assertEquals(cmos(io, 0x06), 0x05, "Thursday is day 5");
});

Deno.test("rtc time advances with the VM clock and rolls over the leap day", () => {
  const { host, io } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  host.clock.advance(3_000_000_000);
  assertEquals(cmos(io, 0x00), 0x01);
  assertEquals(cmos(io, 0x04), 0x00);
  assertEquals(cmos(io, 0x07), 0x01);
  assertEquals(cmos(io, 0x08), 0x03);
});

Deno.test("rtc binary and 12-hour modes follow register B", () => {
  const { io } = createOnFakeHost(rtcPlugin, { options: { time: "2024-05-06T13:14:15Z" } });
  setCmos(io, 0x0b, 0x04); // binary, 12-hour
  assertEquals(cmos(io, 0x00), 15);
  assertEquals(cmos(io, 0x04), 0x80 | 1);
  setCmos(io, 0x0b, 0x06);
  assertEquals(cmos(io, 0x04), 13);
});

Deno.test("rtc accepts a new time written under the SET bit", () => {
  const { host, io } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  setCmos(io, 0x0b, 0x82); // SET, BCD, 24h
  setCmos(io, 0x00, 0x30);
  setCmos(io, 0x02, 0x45);
  setCmos(io, 0x04, 0x12);
  setCmos(io, 0x07, 0x15);
  setCmos(io, 0x08, 0x08);
  setCmos(io, 0x09, 0x99);
  setCmos(io, 0x32, 0x19);
  setCmos(io, 0x0b, 0x02);
  host.clock.advance(2_000_000_000);
  assertEquals(cmos(io, 0x00), 0x32);
  assertEquals(cmos(io, 0x09), 0x99);
  assertEquals(cmos(io, 0x32), 0x19);
});

Deno.test("rtc sets UIP only just before the second changes", () => {
  const { host, io } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  assertEquals(cmos(io, 0x0a) & 0x80, 0);
  host.clock.advance(999_900_000);
  assertEquals(cmos(io, 0x0a) & 0x80, 0x80);
  assertEquals(cmos(io, 0x0a) & 0x7f, 0x26, "divider and rate as the BIOS leaves them");
  host.clock.advance(200_000);
  assertEquals(cmos(io, 0x0a) & 0x80, 0);
});

Deno.test("rtc update-ended interrupt raises IRQ 8 each second until C is read", () => {
  const { host, io } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  setCmos(io, 0x0b, 0x12); // UIE
  host.clock.advance(500_000_000);
  assertEquals(host.risingEdges(8), 0);
  host.clock.advance(600_000_000);
  assertEquals(host.irqLevels.get(8), true);
  assertEquals(cmos(io, 0x0c), 0x90);
  assertEquals(host.irqLevels.get(8), false);
  assertEquals(cmos(io, 0x0c), 0x00);
  host.clock.advance(1_000_000_000);
  assertEquals(host.risingEdges(8), 2);
});

Deno.test("rtc periodic interrupt runs at the rate in register A", () => {
  const { host, io } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  setCmos(io, 0x0a, 0x26); // 1024 Hz
  setCmos(io, 0x0b, 0x42); // PIE
  let edges = 0;
  for (let i = 0; i < 100; i++) {
    host.clock.advance(1_000_000);
    if (host.irqLevels.get(8)) {
      edges++;
      assertEquals(cmos(io, 0x0c) & 0xc0, 0xc0);
    }
  }
  // 100 ms at 1024 Hz is 102.4 periods; reads once per ms can see at most one per ms.
  assertTrue(edges >= 97 && edges <= 100, `${edges} interrupts`);
});

Deno.test("rtc reports memory sizes in CMOS as a PC BIOS does", () => {
  const { io } = createOnFakeHost(rtcPlugin, { memSize: 64 * 0x10_0000 });
  assertEquals(cmos(io, 0x15) | (cmos(io, 0x16) << 8), 640);
  assertEquals(cmos(io, 0x30) | (cmos(io, 0x31) << 8), 63 * 1024);
  assertEquals(cmos(io, 0x17) | (cmos(io, 0x18) << 8), 63 * 1024);
  assertEquals(cmos(io, 0x34) | (cmos(io, 0x35) << 8), (48 * 0x10_0000) / 0x1_0000);
  assertEquals(cmos(io, 0x5b) | cmos(io, 0x5c) | cmos(io, 0x5d), 0);
  assertEquals(cmos(io, 0x0d), 0x80, "valid RAM and time");
});

Deno.test("rtc index port keeps the NMI mask bit and CMOS RAM is read/write", () => {
  const { io } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  io.outb(0x70, 0x80 | 0x40);
  io.outb(0x71, 0xa5);
  assertEquals(io.inb(0x71), 0xa5);
  assertEquals(io.inb(0x70), 0xc0);
});

Deno.test("rtc state survives save and restore with its wall-clock base", () => {
  const { host, io, device } = createOnFakeHost(rtcPlugin, { options: { time: TIME } });
  setCmos(io, 0x50, 0x42);
  const state = JSON.parse(JSON.stringify(device.save()));
  const other = createOnFakeHost(rtcPlugin, { options: { time: "2000-01-01T00:00:00Z" } });
  other.device.restore(state);
  host.clock.advance(1);
  assertEquals(cmos(other.io, 0x50), 0x42);
  assertEquals(cmos(other.io, 0x09), 0x24);
});
