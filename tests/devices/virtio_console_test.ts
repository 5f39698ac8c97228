import { assertEquals, assertThrows } from "../_assert.ts";
import { parseCli } from "../../core/cli.ts";
import { UsageError } from "../../core/errors.ts";
import { fakeHost } from "./_fake_host.ts";
import { VirtioTestDriver } from "./_virtio_driver.ts";
import { REG } from "../../devices/virtio/mmio.ts";
import {
  CONSOLE_TXQ,
  createConsoleDevice,
  VIRTIO_ID_CONSOLE,
} from "../../devices/virtio/console.ts";

const TX_DESC = 0x5_0000, TX_AVAIL = 0x5_8000, TX_USED = 0x6_0000, TX_DATA = 0x7_0000;

function setup() {
  const base = fakeHost({ memSize: 0x20_0000, options: { base: "0xd0000000", irq: "5" } });
  const out: number[] = [];
  let input: ((b: number) => void) | null = null;
  const host = {
    ...base,
    console: {
      write: (b: Uint8Array) => out.push(...b),
      onInput: (r: (b: number) => void) => input = r,
    },
  };
  const t = createConsoleDevice(host);
  const drv = new VirtioTestDriver(t.device(), host.memory);
  const type = (s: string) => [...new TextEncoder().encode(s)].forEach((b) => input!(b));
  return { host, drv, out, type };
}

Deno.test("virtio-console: what the guest writes on hvc0 goes to the VMM's console", () => {
  const { host, drv, out } = setup();
  assertEquals(drv.r(REG.DeviceID), VIRTIO_ID_CONSOLE);
  drv.init({ eventIdx: false });
  drv.w(REG.QueueSel, CONSOLE_TXQ);
  drv.w(REG.QueueNum, 16);
  drv.w(REG.QueueDescLow, TX_DESC);
  drv.w(REG.QueueDriverLow, TX_AVAIL);
  drv.w(REG.QueueDeviceLow, TX_USED);
  drv.w(REG.QueueReady, 1);
  const text = new TextEncoder().encode("hello from hvc0\n");
  host.memory.write(TX_DATA, text);
  drv.writeDesc(TX_DESC, 0, TX_DATA, text.length, 0, 0);
  host.memory.writeU16(TX_AVAIL + 4, 0);
  host.memory.writeU16(TX_AVAIL + 2, 1);
  drv.w(REG.QueueNotify, CONSOLE_TXQ);
  assertEquals(new TextDecoder().decode(Uint8Array.from(out)), "hello from hvc0\n");
  assertEquals(host.memory.readU16(TX_USED + 2), 1);
});

Deno.test("virtio-console: host input fills receive buffers, input typed before a buffer waits", () => {
  const { host, drv, type } = setup();
  drv.init({ eventIdx: false });
  type("ab"); // before a buffer is posted: kept
  const { addrs } = drv.submit([{ writeLen: 64 }]);
  assertEquals(drv.used(), [{ id: 0, len: 2 }]);
  assertEquals(new TextDecoder().decode(host.memory.read(addrs[0]!, 2)), "ab");
  const second = drv.submit([{ writeLen: 64 }]);
  type("c");
  const used = drv.used();
  assertEquals(used.length, 1);
  assertEquals(used[0]!.len, 1);
  assertEquals(host.memory.read(second.addrs[0]!, 1)[0], "c".charCodeAt(0));
});

Deno.test("--console virtio adds the device to the config; another kind is refused", () => {
  const c = parseCli(["--console", "virtio"]);
  assertEquals(typeof c === "object" && c.console, "virtio");
  const d = parseCli([]);
  assertEquals(typeof d === "object" && d.console, undefined);
  assertThrows(() => parseCli(["--console", "tty"]), UsageError, "use serial or virtio");
});
