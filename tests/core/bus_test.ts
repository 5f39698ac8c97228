import { assertEquals, assertThrows } from "../_assert.ts";
import { allOnes, MmioBus, PortBus } from "../../core/bus.ts";
import { BusConflictError, PluginError } from "../../core/errors.ts";

function recorder() {
  const log: string[] = [];
  return {
    log,
    handler: {
      read: (o: number, s: number) => {
        log.push(`r${o}/${s}`);
        return 0x1234_5678;
      },
      write: (o: number, s: number, v: number) => {
        log.push(`w${o}/${s}=${v.toString(16)}`);
      },
    },
  };
}

Deno.test("port bus routes accesses to the device with offsets relative to its base", () => {
  const bus = new PortBus();
  const r = recorder();
  bus.register(0x3f8, 8, "uart", r.handler);
  bus.write(0x3fb, 1, 0x83);
  assertEquals(bus.read(0x3f8, 1), 0x78);
  assertEquals(bus.read(0x3f8, 2), 0x5678);
  assertEquals(bus.read(0x3f8, 4), 0x1234_5678);
  assertEquals(r.log, ["w3/1=83", "r0/1", "r0/2", "r0/4"]);
  assertEquals(bus.ownerOf(0x3ff), "uart");
  assertEquals(bus.ownerOf(0x400), undefined);
});

Deno.test("port bus reads unclaimed ports as all ones and reports them when tracing", () => {
  const bus = new PortBus();
  const seen: string[] = [];
  assertEquals(bus.read(0x2f8, 1), 0xff);
  assertEquals(bus.read(0x2f8, 2), 0xffff);
  assertEquals(bus.read(0x2f8, 4), 0xffff_ffff);
  bus.onUnclaimed = (k, a, s, v) => seen.push(`${k} ${a.toString(16)} ${s} ${v.toString(16)}`);
  bus.write(0x2f8, 1, 0x41);
  bus.read(0x2f9, 1);
  assertEquals(seen, ["write 2f8 1 41", "read 2f9 1 ff"]);
});

Deno.test("port bus rejects a device that overlaps another, naming both", () => {
  const bus = new PortBus();
  bus.register(0x60, 5, "i8042", recorder().handler);
  const err = assertThrows(
    () => bus.register(0x64, 1, "intruder", recorder().handler),
    BusConflictError,
  );
  assertEquals(err.message.includes('"intruder"') && err.message.includes('"i8042"'), true);
  assertEquals(err.message.includes("0x64"), true);
  // The failed registration claimed nothing.
  assertEquals(bus.ownerOf(0x63), "i8042");
  assertEquals(bus.ranges().length, 1);
});

Deno.test("port bus rejects ranges past port 0xffff or empty", () => {
  const bus = new PortBus();
  assertThrows(() => bus.register(0xfffe, 4, "x", recorder().handler), BusConflictError);
  assertThrows(() => bus.register(0x10, 0, "x", recorder().handler), BusConflictError);
});

Deno.test("port bus names the device whose handler throws", () => {
  const bus = new PortBus();
  bus.register(0x500, 1, "flaky", {
    read: () => {
      throw new Error("boom");
    },
    write: () => {
      throw new TypeError("bad");
    },
  });
  const e1 = assertThrows(() => bus.read(0x500, 1), PluginError);
  assertEquals(e1.message, 'Device "flaky" failed in its port read handler: boom');
  const e2 = assertThrows(() => bus.write(0x500, 1, 0), PluginError);
  assertEquals(e2.message, 'Device "flaky" failed in its port write handler: bad');
});

Deno.test("mmio bus finds devices by binary search and rejects overlaps", () => {
  const bus = new MmioBus();
  const a = recorder(), b = recorder(), c = recorder();
  bus.register(0xfee0_0000, 0x1000, "lapic", b.handler);
  bus.register(0xfec0_0000, 0x100, "ioapic", a.handler);
  bus.register(0xd000_0000, 0x1000, "fb", c.handler);
  assertEquals(bus.ranges().map((r) => r.owner), ["fb", "ioapic", "lapic"]);
  bus.write(0xfee0_00b0, 4, 0);
  assertEquals(bus.read(0xfec0_0010, 4), 0x1234_5678);
  assertEquals(b.log, ["w176/4=0"]);
  assertEquals(a.log, ["r16/4"]);
  assertEquals(bus.read(0xfec0_0100, 4), 0xffff_ffff);
  assertEquals(bus.find(0xd000_0fff), 0);
  assertEquals(bus.find(0xd000_1000), -1);
  const err = assertThrows(
    () => bus.register(0xfec0_00f0, 0x20, "late", a.handler),
    BusConflictError,
  );
  assertEquals(err.message.includes('"ioapic"'), true);
});

Deno.test("allOnes is the width of the access", () => {
  assertEquals([1, 2, 4].map(allOnes), [0xff, 0xffff, 0xffff_ffff]);
});
