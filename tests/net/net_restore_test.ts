/**
 * What a snapshot records of a network card and what a restore reads back: the backend (TAP
 * name or switch socket), id and MAC round-trip through the device's options; other devices,
 * `--device` net plugins and cards without a backend are not reconnected; and the test
 * responder's ARP and ICMP answers are well-formed.
 */

import { assertEquals } from "../_assert.ts";
import {
  netDeviceOptions,
  type NetSpec,
  netSpecOfOptions,
  savedNets,
} from "../../core/net/spec.ts";
import { answer, inetChecksum } from "./_responder.ts";

Deno.test("a net card's options record its backend; savedNets reads back only built-in cards with one", () => {
  const tap: NetSpec = { kind: "tap", path: "tap7", mac: "02:00:00:00:00:07", id: "lan" };
  const sw: NetSpec = { kind: "switch", path: "/tmp/s.sock", mac: "02:00:00:00:00:08", id: "net1" };
  assertEquals(netSpecOfOptions(netDeviceOptions(tap)), tap);
  assertEquals(netSpecOfOptions({ mac: "02:00:00:00:00:01" }), null);
  assertEquals(netSpecOfOptions({ ...netDeviceOptions(tap), backend: "vde" }), null);
  const builtin = (specifier: string, options: Record<string, string>) => ({
    source: { kind: "builtin", specifier, options },
  });
  const devices = [
    builtin("file:///x/devices/uart16550.ts", {}),
    builtin("file:///x/devices/virtio/net.ts", { ...netDeviceOptions(tap), base: "0xd0000000" }),
    builtin("file:///x/devices/virtio/blk.ts", { path: "/d.img", id: "d" }),
    { source: { kind: "plugin", specifier: "file:///x/devices/virtio/net.ts", options: {} } },
    builtin("file:///x/devices/virtio/net.ts", { mac: "02:00:00:00:00:09" }),
    builtin("file:///x/devices/virtio/net.ts", netDeviceOptions(sw)),
    {},
  ];
  assertEquals(savedNets(devices), [tap, sw]);
});

Deno.test("the ping responder answers ARP for its address and echo requests with valid checksums", () => {
  const mac = Uint8Array.of(2, 0, 0, 0, 0, 2), ip = Uint8Array.of(10, 0, 0, 2);
  const guest = Uint8Array.of(2, 0, 0, 0, 0, 1), guestIp = Uint8Array.of(10, 0, 0, 1);
  const arp = new Uint8Array(60);
  arp.fill(0xff, 0, 6);
  arp.set(guest, 6);
  arp.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], 12);
  arp.set(guest, 22);
  arp.set(guestIp, 28);
  arp.set(ip, 38);
  const reply = answer(arp, mac, ip)!;
  assertEquals(reply.subarray(0, 6), guest);
  assertEquals(reply[21], 2);
  assertEquals(reply.subarray(22, 32), Uint8Array.of(...mac, ...ip));
  assertEquals(reply.subarray(32, 42), Uint8Array.of(...guest, ...guestIp));
  assertEquals(answer(arp.map((b, i) => (i === 41 ? 9 : b)), mac, ip), null);

  const ping = new Uint8Array(14 + 20 + 16);
  ping.set(mac, 0);
  ping.set(guest, 6);
  ping.set([0x08, 0x00, 0x45, 0, 0, 36, 0, 1, 0x40, 0, 64, 1, 0, 0], 12);
  ping.set(guestIp, 26);
  ping.set(ip, 30);
  ping.set([8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8], 34);
  const echo = answer(ping, mac, ip)!;
  assertEquals(echo[34], 0);
  assertEquals(echo.subarray(26, 30), ip);
  assertEquals(echo.subarray(30, 34), guestIp);
  assertEquals(inetChecksum(echo.subarray(14, 34)), 0);
  assertEquals(inetChecksum(echo.subarray(34)), 0);
  assertEquals(echo.subarray(38), ping.subarray(38));
});
