import { assertEquals, assertTrue } from "../_assert.ts";
import pit8254Plugin, { PIT_HZ } from "../../devices/pit8254.ts";
import { createOnFakeHost, type PortIo } from "./_fake_host.ts";

const LATCH_250HZ = Math.round(PIT_HZ / 250); // Linux's LATCH for HZ=250: 4773

function readCounter(io: PortIo, channel: number): number {
  io.outb(0x43, channel << 6); // counter latch
  const lo = io.inb(0x40 + channel);
  return lo | (io.inb(0x40 + channel) << 8);
}

function nsForTicks(ticks: number): number {
  return ticks * 1e9 / PIT_HZ;
}

Deno.test("pit mode 2 counts down at 1.193182 MHz as the clock advances", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0x34); // channel 0, lohi, mode 2
  io.outb(0x40, LATCH_250HZ & 0xff);
  io.outb(0x40, LATCH_250HZ >> 8);
  assertEquals(readCounter(io, 0), LATCH_250HZ);
  host.clock.advance(nsForTicks(1000) + 1);
  assertEquals(readCounter(io, 0), LATCH_250HZ - 1000);
  host.clock.advance(nsForTicks(LATCH_250HZ)); // one full period later: same phase
  assertEquals(readCounter(io, 0), LATCH_250HZ - 1000);
});

Deno.test("pit mode 2 pulses IRQ0 once per period at the right times", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0x34);
  io.outb(0x40, LATCH_250HZ & 0xff);
  io.outb(0x40, LATCH_250HZ >> 8);
  host.clock.advance(101_000_000); // 101 ms at 250 Hz (a period is 4.0001 ms)
  const times = host.risingEdgeTimes(0);
  assertEquals(times.length, 25);
  times.forEach((t, i) => {
    const expected = nsForTicks(LATCH_250HZ * (i + 1));
    assertTrue(Math.abs(t - expected) < 1, `edge ${i} at ${t}, expected ${expected}`);
  });
  assertEquals(host.irqLevels.get(0), false, "IRQ0 is pulsed, not held");
});

Deno.test("pit mode 0 raises IRQ0 once at terminal count", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0x30); // channel 0, lohi, mode 0
  io.outb(0x40, 0x00);
  io.outb(0x40, 0x10); // 4096
  host.clock.advance(nsForTicks(4095));
  assertEquals(host.risingEdges(0), 0);
  host.clock.advance(nsForTicks(2));
  assertEquals(host.risingEdges(0), 1);
  host.clock.advance(200_000_000);
  assertEquals(host.risingEdges(0), 1);
});

Deno.test("pit mode 4 one-shot (Linux's oneshot clockevent) fires after the written count", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0x38);
  io.outb(0x40, 100);
  io.outb(0x40, 0);
  host.clock.advance(nsForTicks(99));
  assertEquals(host.risingEdges(0), 0);
  host.clock.advance(nsForTicks(2));
  assertEquals(host.risingEdges(0), 1);
  io.outb(0x40, 200);
  io.outb(0x40, 0);
  host.clock.advance(nsForTicks(201));
  assertEquals(host.risingEdges(0), 2);
});

Deno.test("pit channel 2 calibration: gate on, mode 0, OUT2 in port 0x61 goes high at count", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  // Linux pit_calibrate_tsc(): gate high, speaker off; channel 2 mode 0; latch for 10 ms.
  io.outb(0x61, (io.inb(0x61) & ~0x02) | 0x01);
  io.outb(0x43, 0xb0);
  const latch = Math.floor(PIT_HZ / (1000 / 10));
  io.outb(0x42, latch & 0xff);
  io.outb(0x42, latch >> 8);
  assertEquals(io.inb(0x61) & 0x20, 0);
  let polls = 0;
  while ((io.inb(0x61) & 0x20) === 0) {
    host.clock.advance(10_000); // 10 µs per poll
    polls++;
    if (polls > 10_000) throw new Error("OUT2 never went high");
  }
  assertTrue(Math.abs(host.clock.now() - 10_000_000) <= 10_000, `OUT2 at ${host.clock.now()} ns`);
  assertEquals(host.risingEdges(0), 0, "channel 2 does not raise IRQ0");
});

Deno.test("pit quick calibration sees the channel 2 MSB step down every 256 clocks", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x61, (io.inb(0x61) & ~0x02) | 0x01);
  io.outb(0x43, 0xb0);
  io.outb(0x42, 0xff);
  io.outb(0x42, 0xff);
  for (let i = 0; i < 5; i++) {
    io.inb(0x42); // LSB
    assertEquals(io.inb(0x42), 0xff - i);
    host.clock.advance(nsForTicks(256));
  }
});

Deno.test("pit channel 2 stops counting while its gate is low", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0xb0);
  io.outb(0x42, 0x00);
  io.outb(0x42, 0x10);
  host.clock.advance(nsForTicks(1000));
  assertEquals(readCounter(io, 2), 0x1000, "gate is low after reset");
  io.outb(0x61, 0x01);
  host.clock.advance(nsForTicks(100) + 1);
  assertEquals(readCounter(io, 2), 0x1000 - 100);
  io.outb(0x61, 0x00);
  host.clock.advance(nsForTicks(500));
  assertEquals(readCounter(io, 2), 0x1000 - 100);
});

Deno.test("pit read-back latches status and count of the selected channel", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0x74); // channel 1, lohi, mode 2
  io.outb(0x41, 0x00);
  io.outb(0x41, 0x02);
  host.clock.advance(nsForTicks(16) + 1);
  io.outb(0x43, 0xc4); // read-back count and status of channel 1
  host.clock.advance(nsForTicks(100));
  assertEquals(io.inb(0x41), 0x80 | 0x30 | 0x04, "status: OUT high, lohi, mode 2");
  assertEquals(io.inb(0x41) | (io.inb(0x41) << 8), 0x200 - 16);
});

Deno.test("pit LSB-only access reads and writes one byte", () => {
  const { host, io } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0x14); // channel 0, LSB only, mode 2
  io.outb(0x40, 200);
  host.clock.advance(nsForTicks(50) + 1);
  assertEquals(io.inb(0x40), 150);
  assertEquals(io.inb(0x40), 150);
});

Deno.test("pit state survives save and restore, including the pending IRQ0", () => {
  const { host, io, device } = createOnFakeHost(pit8254Plugin);
  io.outb(0x43, 0x34);
  io.outb(0x40, LATCH_250HZ & 0xff);
  io.outb(0x40, LATCH_250HZ >> 8);
  host.clock.advance(5_000_000);
  const state = JSON.parse(JSON.stringify(device.save()));
  const other = createOnFakeHost(pit8254Plugin);
  other.host.clock.advance(5_000_000);
  other.device.restore(state);
  assertEquals(readCounter(other.io, 0), readCounter(io, 0));
  other.host.clock.advance(8_000_000); // edges at 8.0002 and 12.0003 ms
  assertEquals(other.host.risingEdges(0), 2);
});
