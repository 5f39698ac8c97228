import { assertEquals } from "../_assert.ts";
import pic8259Plugin, { Pic8259 } from "../../devices/pic8259.ts";
import { createOnFakeHost } from "./_fake_host.ts";

/** Linux's init_8259A sequence with the given bases, then masks. */
function initLinux(pic: Pic8259, masterBase = 0x30, slaveBase = 0x38): void {
  pic.ioWrite(0x21, 0xff);
  pic.ioWrite(0xa1, 0xff);
  pic.ioWrite(0x20, 0x11); // ICW1: edge, cascade, ICW4
  pic.ioWrite(0x21, masterBase); // ICW2
  pic.ioWrite(0x21, 0x04); // ICW3: slave on IR2
  pic.ioWrite(0x21, 0x01); // ICW4: 8086, normal EOI
  pic.ioWrite(0xa0, 0x11);
  pic.ioWrite(0xa1, slaveBase);
  pic.ioWrite(0xa1, 0x02);
  pic.ioWrite(0xa1, 0x01);
  pic.ioWrite(0x21, 0x00);
  pic.ioWrite(0xa1, 0x00);
}

Deno.test("pic delivers an IRQ as base+irq after initialization and EOI clears ISR", () => {
  const pic = new Pic8259();
  initLinux(pic);
  assertEquals(pic.hasInterrupt(), false);
  pic.setIrq(4, true);
  assertEquals(pic.hasInterrupt(), true);
  assertEquals(pic.acknowledge(), 0x34);
  assertEquals(pic.hasInterrupt(), false);
  pic.ioWrite(0x20, 0x0b); // OCW3: read ISR
  assertEquals(pic.ioRead(0x20), 0x10);
  pic.ioWrite(0x20, 0x20); // non-specific EOI
  assertEquals(pic.ioRead(0x20), 0x00);
});

Deno.test("pic reads IRR by default and after OCW3 read-IRR", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.ioWrite(0x21, 0xff);
  pic.setIrq(3, true);
  assertEquals(pic.ioRead(0x20), 0x08);
  pic.ioWrite(0x20, 0x0b);
  assertEquals(pic.ioRead(0x20), 0x00);
  pic.ioWrite(0x20, 0x0a);
  assertEquals(pic.ioRead(0x20), 0x08);
});

Deno.test("pic masking holds a request until it is unmasked", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.ioWrite(0x21, 0x01);
  assertEquals(pic.ioRead(0x21), 0x01);
  pic.setIrq(0, true);
  pic.setIrq(0, false);
  assertEquals(pic.hasInterrupt(), false);
  pic.ioWrite(0x21, 0x00);
  assertEquals(pic.hasInterrupt(), true);
  assertEquals(pic.acknowledge(), 0x30);
});

Deno.test("pic gives the lower IRQ priority and nests a higher one over a lower in service", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.setIrq(5, true);
  assertEquals(pic.acknowledge(), 0x35);
  pic.setIrq(6, true);
  assertEquals(pic.hasInterrupt(), false, "IRQ6 waits for IRQ5's EOI");
  pic.setIrq(1, true);
  assertEquals(pic.hasInterrupt(), true, "IRQ1 interrupts IRQ5's handler");
  assertEquals(pic.acknowledge(), 0x31);
  pic.ioWrite(0x20, 0x61); // specific EOI IRQ1
  assertEquals(pic.hasInterrupt(), false);
  pic.ioWrite(0x20, 0x65); // specific EOI IRQ5
  assertEquals(pic.acknowledge(), 0x36);
});

Deno.test("pic delivers slave IRQs through the cascade and needs EOI on both chips", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.setIrq(12, true);
  assertEquals(pic.hasInterrupt(), true);
  assertEquals(pic.acknowledge(), 0x3c);
  pic.setIrq(14, true);
  pic.setIrq(12, false);
  assertEquals(pic.hasInterrupt(), false);
  pic.ioWrite(0xa0, 0x20);
  assertEquals(pic.hasInterrupt(), false, "master IR2 still in service");
  pic.ioWrite(0x20, 0x20);
  assertEquals(pic.hasInterrupt(), true);
  assertEquals(pic.acknowledge(), 0x3e);
});

Deno.test("pic answers a vanished request with spurious IRQ7 and leaves ISR clear", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.ioWrite(0x4d0, 0x20); // IRQ5 level-triggered
  pic.setIrq(5, true);
  assertEquals(pic.hasInterrupt(), true);
  pic.setIrq(5, false);
  assertEquals(pic.acknowledge(), 0x37);
  pic.ioWrite(0x20, 0x0b);
  assertEquals(pic.ioRead(0x20), 0);
  assertEquals(pic.spurious, 1);
});

Deno.test("pic level-triggered input re-interrupts after EOI while the line stays high", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.ioWrite(0x4d1, 0x02); // IRQ9 level
  assertEquals(pic.ioRead(0x4d1), 0x02);
  pic.setIrq(9, true);
  assertEquals(pic.acknowledge(), 0x39);
  pic.ioWrite(0xa0, 0x20);
  pic.ioWrite(0x20, 0x20);
  assertEquals(pic.hasInterrupt(), true);
  assertEquals(pic.acknowledge(), 0x39);
  pic.ioWrite(0xa0, 0x20);
  pic.ioWrite(0x20, 0x20);
  pic.setIrq(9, false);
  assertEquals(pic.hasInterrupt(), false);
});

Deno.test("pic edge-triggered input needs a new edge to interrupt again", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.setIrq(3, true);
  assertEquals(pic.acknowledge(), 0x33);
  pic.ioWrite(0x20, 0x20);
  assertEquals(pic.hasInterrupt(), false);
  pic.setIrq(3, false);
  pic.setIrq(3, true);
  assertEquals(pic.hasInterrupt(), true);
});

Deno.test("pic auto-EOI leaves nothing in service", () => {
  const pic = new Pic8259();
  pic.ioWrite(0x20, 0x11);
  pic.ioWrite(0x21, 0x08);
  pic.ioWrite(0x21, 0x04);
  pic.ioWrite(0x21, 0x03); // 8086 + AEOI
  pic.ioWrite(0x21, 0x00);
  pic.setIrq(1, true);
  assertEquals(pic.acknowledge(), 0x09);
  pic.ioWrite(0x20, 0x0b);
  assertEquals(pic.ioRead(0x20), 0);
});

Deno.test("pic ELCR cannot make IRQ0-2 level-triggered", () => {
  const pic = new Pic8259();
  pic.ioWrite(0x4d0, 0xff);
  assertEquals(pic.ioRead(0x4d0), 0xf8);
});

Deno.test("pic poll command acknowledges the highest request", () => {
  const pic = new Pic8259();
  initLinux(pic);
  pic.setIrq(6, true);
  pic.ioWrite(0x20, 0x0c);
  assertEquals(pic.ioRead(0x20), 0x86);
  assertEquals(pic.hasInterrupt(), false);
});

Deno.test("pic state survives save and restore", () => {
  const pic = new Pic8259();
  initLinux(pic, 0x20, 0x28);
  pic.ioWrite(0x21, 0x10);
  pic.setIrq(3, true);
  const copy = new Pic8259();
  copy.restore(JSON.parse(JSON.stringify(pic.save())));
  assertEquals(copy.ioRead(0x21), 0x10);
  assertEquals(copy.hasInterrupt(), true);
  assertEquals(copy.acknowledge(), 0x23);
});

Deno.test("pic plugin claims the master, slave and ELCR ports", () => {
  const { device, io } = createOnFakeHost(pic8259Plugin);
  assertEquals(device.ports!.map((r) => [r.base, r.length]), [[0x20, 2], [0xa0, 2], [0x4d0, 2]]);
  io.outb(0xa1, 0x5a);
  assertEquals(io.inb(0xa1), 0x5a);
});
