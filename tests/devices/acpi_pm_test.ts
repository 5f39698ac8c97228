import { assertEquals, assertTrue } from "../_assert.ts";
import acpiPmPlugin, { AcpiPm, PM_TIMER_HZ, SLP_TYP_S5 } from "../../devices/acpi_pm.ts";
import { createOnFakeHost, fakeHost } from "./_fake_host.ts";

Deno.test("acpi pm timer counts at 3.579545 MHz and wraps at 24 bits", () => {
  const { host, io } = createOnFakeHost(acpiPmPlugin);
  const t0 = io.inl(0x608);
  host.clock.advance(100_000_000);
  const t1 = io.inl(0x608);
  assertEquals(t1 - t0, Math.floor(PM_TIMER_HZ / 10));
  host.clock.advance(5_000_000_000); // 17.9M ticks: past 2^24
  const t2 = io.inl(0x608);
  assertTrue(t2 <= 0xffffff);
  assertEquals(t2, Math.floor(5.1 * PM_TIMER_HZ) & 0xffffff);
});

Deno.test("acpi pm S5 sleep with SLP_EN powers the VM off", () => {
  const { host, io } = createOnFakeHost(acpiPmPlugin);
  io.outw(0x604, SLP_TYP_S5 << 10);
  assertEquals(host.powerEvents, []);
  io.outw(0x604, (SLP_TYP_S5 << 10) | 0x2000);
  assertEquals(host.powerEvents, ["off"]);
});

Deno.test("acpi pm other sleep types do not power off", () => {
  const { host, io } = createOnFakeHost(acpiPmPlugin);
  io.outw(0x604, (3 << 10) | 0x2000);
  assertEquals(host.powerEvents, []);
  assertEquals(io.inw(0x600) & 0x8000, 0x8000, "woke at once");
});

Deno.test("acpi pm reset register resets the VM with the FADT's value", () => {
  const { host, io } = createOnFakeHost(acpiPmPlugin);
  io.outb(0x60c, 0x00);
  assertEquals(host.powerEvents, []);
  io.outb(0x60c, 0x06);
  assertEquals(host.powerEvents, ["reset"]);
});

Deno.test("acpi pm reset register can live at 0xCF9", () => {
  const { host, io, device } = createOnFakeHost(acpiPmPlugin, {
    options: { reset_port: "0xcf9" },
  });
  assertEquals(device.ports!.map((r) => r.base), [0x600, 0xcf9]);
  io.outb(0xcf9, 0x06);
  assertEquals(host.powerEvents, ["reset"]);
});

Deno.test("acpi pm control reads SCI_EN set and keeps SLP_TYP", () => {
  const { io } = createOnFakeHost(acpiPmPlugin);
  assertEquals(io.inw(0x604), 0x0001);
  io.outw(0x604, 0x1400);
  assertEquals(io.inw(0x604), 0x1401);
});

Deno.test("acpi pm timer carry raises the SCI on IRQ 9 while TMR_EN is set", () => {
  const { host, io } = createOnFakeHost(acpiPmPlugin);
  io.outw(0x602, 0x0001); // TMR_EN
  assertEquals(io.inw(0x602), 0x0001);
  host.clock.advance(Math.ceil(0x800000 * 1e9 / PM_TIMER_HZ) + 1);
  assertEquals(host.irqLevels.get(9), true);
  assertEquals(io.inw(0x600) & 0x0001, 0x0001);
  io.outw(0x600, 0x0001); // write 1 to clear
  assertEquals(host.irqLevels.get(9), false);
});

Deno.test("acpi pm power button raises the SCI only when enabled", () => {
  const host = fakeHost();
  const pm = new AcpiPm(host.clock, host.irq(9), host.power);
  pm.pressPowerButton();
  assertEquals(host.irqLevels.get(9), undefined);
  pm.write(2, 2, 0x0100);
  assertEquals(host.irqLevels.get(9), true);
  assertEquals(pm.read(0, 2), 0x0100);
  pm.write(0, 1, 0x00);
  pm.write(1, 1, 0x01); // byte write of PWRBTN_STS
  assertEquals(host.irqLevels.get(9), false);
});

Deno.test("acpi pm state survives save and restore", () => {
  const host = fakeHost();
  const pm = new AcpiPm(host.clock, host.irq(9), host.power);
  pm.write(4, 2, 0x1400);
  pm.write(2, 2, 0x0100);
  const copy = new AcpiPm(host.clock, host.irq(9), host.power);
  copy.restore(JSON.parse(JSON.stringify(pm.save())));
  assertEquals(copy.read(2, 2), 0x0100);
  assertEquals(copy.read(4, 2), 0x1401);
});
