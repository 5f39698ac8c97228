import { assertEquals, assertTrue } from "../_assert.ts";
import { testDevice } from "../../plugins/testing.ts";
import uart from "../../devices/uart16550.ts";
import i8042 from "../../devices/i8042.ts";
import debugExit from "../../devices/debug_exit.ts";
import postCode from "../../devices/post_code.ts";
import vmmInfo from "../../devices/vmm_info.ts";

const COM1 = 0x3f8;

Deno.test("uart transmits THR writes to the console and reports an empty transmitter", () => {
  const t = testDevice(uart);
  assertEquals(t.in(COM1 + 5) & 0x60, 0x60);
  for (const c of "hi\n") t.out(COM1, c.charCodeAt(0));
  assertEquals(t.outputText(), "hi\n");
});

Deno.test("uart divisor latch and scratch register hold their values", () => {
  const t = testDevice(uart);
  t.out(COM1 + 3, 0x80); // DLAB
  t.out(COM1, 0x01);
  t.out(COM1 + 1, 0x02);
  assertEquals([t.in(COM1), t.in(COM1 + 1)], [0x01, 0x02]);
  t.out(COM1 + 3, 0x03);
  assertEquals(t.in(COM1 + 3), 0x03);
  t.out(COM1 + 7, 0x5a);
  assertEquals(t.in(COM1 + 7), 0x5a);
  // Divisor writes did not transmit anything.
  assertEquals(t.output.length, 0);
});

Deno.test("uart receives host input, sets data-ready and raises IRQ 4 when enabled", () => {
  const t = testDevice(uart);
  t.out(COM1 + 4, 0x08); // OUT2: interrupts reach the PIC
  t.out(COM1 + 1, 0x01); // receive-data interrupt
  assertEquals(t.in(COM1 + 2) & 0x0f, 0x01, "no interrupt pending yet");
  t.input("ok");
  assertTrue(t.irqLevel(4));
  assertEquals(t.in(COM1 + 5) & 1, 1);
  assertEquals(t.in(COM1 + 2) & 0x0f, 0x04);
  assertEquals(String.fromCharCode(t.in(COM1), t.in(COM1)), "ok");
  assertEquals(t.in(COM1 + 5) & 1, 0);
  assertEquals(t.irqLevel(4), false);
});

Deno.test("uart THRE interrupt fires on enable and is acknowledged by reading IIR", () => {
  const t = testDevice(uart);
  t.out(COM1 + 4, 0x08);
  t.out(COM1 + 1, 0x02);
  assertTrue(t.irqLevel(4));
  assertEquals(t.in(COM1 + 2) & 0x0f, 0x02);
  assertEquals(t.irqLevel(4), false);
  t.out(COM1, 0x41);
  assertTrue(t.irqLevel(4));
});

Deno.test("uart loopback echoes transmitted bytes and mirrors modem lines as Linux probes", () => {
  const t = testDevice(uart);
  t.out(COM1 + 4, 0x1a); // LOOP | OUT2 | RTS
  assertEquals(t.in(COM1 + 6) & 0xf0, 0x90);
  t.out(COM1, 0x55);
  assertEquals(t.output.length, 0);
  assertEquals(t.in(COM1), 0x55);
  t.out(COM1 + 2, 0x07); // enable FIFO
  assertEquals(t.in(COM1 + 2) & 0xc0, 0xc0);
});

Deno.test("uart state survives save and restore", () => {
  const a = testDevice(uart);
  a.out(COM1 + 7, 0x99);
  a.out(COM1 + 3, 0x03);
  a.input("z");
  const b = testDevice(uart);
  b.device.restore(a.device.save());
  assertEquals([b.in(COM1 + 7), b.in(COM1 + 3), b.in(COM1)], [0x99, 0x03, "z".charCodeAt(0)]);
});

Deno.test("uart at another port follows its port option", () => {
  const t = testDevice(uart, { options: { port: "0x2f8" } });
  t.out(0x2f8, 0x42);
  assertEquals(t.outputText(), "B");
  assertEquals(t.in(COM1 + 5), 0xff, "COM1 is unclaimed");
});

Deno.test("i8042 reset command ends the VM, self test answers 0x55", () => {
  const t = testDevice(i8042);
  t.out(0x64, 0xaa);
  assertEquals(t.in(0x64) & 1, 1);
  assertEquals(t.in(0x60), 0x55);
  assertEquals(t.in(0x64) & 1, 0);
  assertEquals(t.power, []);
  t.out(0x64, 0xfe);
  assertEquals(t.power, ["reset"]);
});

Deno.test("i8042 controller config byte round-trips and the keyboard acknowledges", () => {
  const t = testDevice(i8042);
  t.out(0x64, 0x60);
  t.out(0x60, 0x45);
  t.out(0x64, 0x20);
  assertEquals(t.in(0x60), 0x45);
  t.out(0x60, 0xf2); // identify
  assertEquals([t.in(0x60), t.in(0x60), t.in(0x60)], [0xfa, 0xab, 0x83]);
  assertTrue(t.irqs.some((e) => e.line === 1 && e.level));
  // An output-port write with bit 0 clear resets too.
  t.out(0x64, 0xd1);
  t.out(0x60, 0x00);
  assertEquals(t.power, ["reset"]);
});

Deno.test("debug-exit turns a write of v into exit status (v << 1) | 1", () => {
  const t = testDevice(debugExit);
  t.out(0xf4, 0x21);
  t.out(0xf4, 0, 4);
  assertEquals(t.power, ["exit:67", "exit:1"]);
});

Deno.test("post code port keeps the last code and logs it for --trace", () => {
  const t = testDevice(postCode);
  t.out(0x80, 0x3c);
  assertEquals(t.in(0x80), 0x3c);
  assertEquals(t.logs, ["debug: POST code 0x3c"]);
});

Deno.test("vmm-info port spells the backend name, then 0, and rewinds on write", () => {
  const t = testDevice(vmmInfo, { options: { backend: "interp" } });
  const read = () => {
    let s = "";
    for (let b = t.in(0x5f0); b !== 0; b = t.in(0x5f0)) s += String.fromCharCode(b);
    return s;
  };
  assertEquals(read(), "interp");
  assertEquals(t.in(0x5f0), 0);
  t.out(0x5f0, 0);
  assertEquals(read(), "interp");
});

Deno.test("i8042 leaves port 0x61 to the PIT so speaker/timer status stays readable", () => {
  const t = testDevice(i8042);
  assertEquals(t.in(0x61), 0xff, "port 0x61 is not the keyboard controller's");
  assertEquals(t.in(0x64) & 0x10, 0x10);
});
