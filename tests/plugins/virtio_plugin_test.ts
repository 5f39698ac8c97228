/**
 * Virtio devices as plugins (defineVirtioPlugin): the VMM's transport and queues around a
 * plugin's chain handler, in-process and sandboxed, driven by a fake driver over rings in guest
 * memory; a plugin that throws, answers a bad length, breaks its config space or hangs; and
 * Debian's Linux reading the example virtio-rng plugin's documented stream from /dev/hwrng.
 */

import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../_assert.ts";
import { BACKENDS, ROOT, runCli } from "../_run.ts";
import { testDevice, type TestDeviceOptions } from "../../plugins/testing.ts";
import { loadSandboxedPlugin, probePlugin } from "../../plugins/sandbox.ts";
import { PluginError } from "../../core/errors.ts";
import { hostKvmFlavor } from "../../core/select_backend.ts";
import { loadModuleSet, virtioDrivers } from "../../core/boot/modules.ts";
import { REG, STATUS_NEEDS_RESET } from "../../devices/virtio/mmio.ts";
import { VirtioTestDriver } from "../devices/_virtio_driver.ts";
import { API_VERSION, defineVirtioPlugin, type Plugin } from "../../plugins/mod.ts";
import rngPlugin from "../../plugins/examples/virtio_rng.ts";
import { buildMachine, restoreMachine, type VmConfig } from "../../core/vm.ts";
import { createSnapshot } from "../../core/snapshot/mod.ts";
import { readAcpiTables } from "../../core/boot/acpi.ts";
import type { Machine } from "../../core/machine.ts";
import type { Device } from "../../plugins/mod.ts";
import echoPlugin from "./fixtures/virtio_echo.ts";

const RNG = new URL("../../plugins/examples/virtio_rng.ts", import.meta.url).pathname;
const ECHO = new URL("./fixtures/virtio_echo.ts", import.meta.url).pathname;

/**
 * The example's stream as its header documents it, written out independently: xorshift32 from
 * `seed`, each step's value little-endian.
 */
function xorshiftStream(seed: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    for (let b = 0; b < 4 && i + b < bytes; b++) out[i + b] = (x >>> (8 * b)) & 0xff;
  }
  return out;
}

const MODES = ["trusted", "sandboxed"] as const;
type Mode = typeof MODES[number];

/** The plugin at `path` (`trusted`: the module itself) on the test kit, with a driver. */
async function open(mode: Mode, trusted: Plugin, path: string, opts: TestDeviceOptions = {}) {
  const plugin = mode === "trusted" ? trusted : await loadSandboxedPlugin(path);
  const t = testDevice(plugin, { memSize: 4 << 20, ...opts });
  const drv = new VirtioTestDriver(t.device, t.memory);
  return Object.assign({ t, drv }, { [Symbol.dispose]: () => t.device.close?.() });
}

for (const mode of MODES) {
  Deno.test(`[${mode}] virtio plugin: the guest reads the example's documented stream`, async () => {
    using d = await open(mode, rngPlugin, RNG, { options: { seed: "7" } });
    const { t, drv } = d;
    assertEquals(drv.r(REG.DeviceID), 4);
    drv.init();
    const a = drv.submit([{ writeLen: 10 }, { writeLen: 6 }]);
    const b = drv.submit([{ writeLen: 33 }], { indirect: true });
    assertEquals(drv.used(), [{ id: a.head, len: 16 }, { id: b.head, len: 33 }]);
    const got = new Uint8Array([
      ...t.memory.read(a.addrs[0]!, 10),
      ...t.memory.read(a.addrs[1]!, 6),
      ...t.memory.read(b.addrs[0]!, 33),
    ]);
    assertEquals(got, xorshiftStream(7, 49));
    assertTrue(t.irqs.some((e) => e.line === 5 && e.level), "no used-buffer interrupt on line 5");
    assertEquals(drv.ack(), 1);
  });

  Deno.test(`[${mode}] virtio plugin: a snapshot keeps the stream's place`, async () => {
    using d = await open(mode, rngPlugin, RNG, { options: { seed: "9" } });
    d.drv.init();
    d.drv.submit([{ writeLen: 5 }]);
    d.drv.used();
    const state = d.t.device.save();
    using e = await open(mode, rngPlugin, RNG, { options: { seed: "9" }, memory: d.t.memory });
    e.t.device.restore(state);
    const drv = d.drv.continueOn(e.t.device, e.t.memory);
    const { addrs } = drv.submit([{ writeLen: 11 }]);
    assertEquals(drv.used()[0]!.len, 11);
    assertEquals(e.t.memory.read(addrs[0]!, 11), xorshiftStream(9, 16).subarray(5));
  });

  Deno.test(`[${mode}] virtio plugin: readable bytes in, written bytes out, config, features`, async () => {
    using d = await open(mode, echoPlugin, ECHO);
    const { t, drv } = d;
    assertEquals(drv.r(REG.DeviceID), 0x1f);
    assertEquals(drv.deviceFeatures() & 0xffn, 1n << 3n);
    drv.init();
    // 200 KiB each way: more than one sandbox channel message.
    const data = crypto.getRandomValues(new Uint8Array(65536));
    const big = new Uint8Array(200 * 1024);
    for (let i = 0; i < big.length; i += data.length) big.set(data.subarray(0, big.length - i), i);
    const { head, addrs } = drv.submit([
      { data: big.subarray(0, 100_000) },
      { data: big.subarray(100_000) },
      { writeLen: 150_000 },
      { writeLen: 70_000 },
    ]);
    assertEquals(drv.used(), [{ id: head, len: big.length }]);
    const out = new Uint8Array([
      ...t.memory.read(addrs[2]!, 150_000),
      ...t.memory.read(addrs[3]!, big.length - 150_000),
    ]);
    assertEquals(out, big.map((b) => (b + 1) & 0xff));
    // Config space at 0x100: chains seen, then the high word of the negotiated features
    // (VERSION_1 is bit 32).
    assertEquals(drv.r(REG.Config), 1);
    assertEquals(drv.r(REG.Config + 4) & 1, 1);
    assertEquals(drv.r(REG.Config, 1), 1);
    assertEquals(drv.r(REG.Status) & STATUS_NEEDS_RESET, 0);
  });

  for (
    const [how, words] of [
      ["throw", 'Device "virtio-echo" failed in its chain handler: chain handler on fire'],
      ["length", "its chain handler returned 9, not a used length from 0 to 8"],
      ["nan", 'returned the string "lots"'],
    ] as const
  ) {
    Deno.test(`[${mode}] hostile virtio plugin (${how}): the device asks for a reset, the VMM goes on`, async () => {
      using d = await open(mode, echoPlugin, ECHO, { options: { mode: how, once: "true" } });
      const { t, drv } = d;
      drv.init();
      drv.submit([{ data: new Uint8Array(4) }, { writeLen: 8 }]); // no throw out of the notify
      assertEquals(drv.used(), []);
      assertTrue((drv.r(REG.Status) & STATUS_NEEDS_RESET) !== 0, "not NEEDS_RESET");
      assertEquals(drv.ack() & 2, 2); // a configuration-change interrupt told the driver
      const warning = t.logs.find((l) => l.startsWith("warning: device needs reset"));
      assertIncludes(warning ?? t.logs.join("\n"), words);
      // Reset and start again: the device works (it misbehaves once).
      drv.init();
      const { head, addrs } = drv.submit([{ data: Uint8Array.of(1, 2) }, { writeLen: 2 }]);
      assertEquals(drv.used(), [{ id: head, len: 2 }]);
      assertEquals(t.memory.read(addrs[1]!, 2), Uint8Array.of(2, 3));
    });
  }

  Deno.test(`[${mode}] hostile virtio plugin: a config() that throws asks for a reset`, async () => {
    using d = await open(mode, echoPlugin, ECHO, { options: { mode: "config" } });
    d.drv.init();
    assertEquals(d.drv.r(REG.Config), 0);
    assertTrue((d.drv.r(REG.Status) & STATUS_NEEDS_RESET) !== 0, "not NEEDS_RESET");
    assertIncludes(d.t.logs.join("\n"), "failed in its config(): config space on fire");
  });
}

Deno.test("[sandboxed] hostile virtio plugin: a chain handler that hangs stops the VM, saying so", async () => {
  const t = testDevice(await loadSandboxedPlugin(ECHO), {
    options: { mode: "hang", timeout_ms: "300" },
    memSize: 4 << 20,
  });
  try {
    const drv = new VirtioTestDriver(t.device, t.memory);
    drv.init();
    const err = assertThrows(() => drv.submit([{ writeLen: 8 }]), PluginError);
    assertIncludes(
      err.message,
      'Device "virtio-echo" did not return from its chain handler within 300 ms and was stopped',
    );
  } finally {
    t.device.close?.();
  }
});

Deno.test("virtio plugin: definitions and devices with bad shapes are refused, naming the fix", () => {
  const base = {
    name: "bad",
    apiVersion: API_VERSION,
    create: () => ({ queues: [8], handle: () => 0 }),
  };
  assertIncludes(
    assertThrows(() => defineVirtioPlugin({ ...base, deviceId: 0 }), RangeError).message,
    "give the virtio device ID",
  );
  const bad = (device: unknown) =>
    testDevice(defineVirtioPlugin({ ...base, deviceId: 4, create: () => device as never }));
  for (
    const [device, words] of [
      [{ queues: [8] }, "without handle()"],
      [{ queues: [3], handle: () => 0 }, "each a power of 2"],
      [{ queues: [], handle: () => 0 }, "queues must list 1 to 32"],
      [{ queues: [8], handle: () => 0, features: 1n << 32n }, "device feature bits 0-23"],
    ] as const
  ) {
    assertIncludes(assertThrows(() => bad(device), TypeError).message, words);
  }
  // Called directly, outside the VMM's transport, it says how to use it.
  assertIncludes(
    assertThrows(() => rngPlugin.create({} as never), TypeError).message,
    "the VMM attaches it behind its virtio-mmio transport",
  );
});

Deno.test("virtio plugin: probePlugin reads the device ID without making the device", async () => {
  assertEquals(await probePlugin(RNG), { name: "virtio-xorshift-rng", virtio: { deviceId: 4 } });
  assertEquals(
    await probePlugin(new URL("../../plugins/examples/hw_rng.ts", import.meta.url).pathname),
    { name: "hw-rng" },
  );
});

// ---- In a machine: allocator, DSDT, snapshot ----

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] virtio plugins in a machine: windows after the built-ins, DSDT nodes, restored in place`, async () => {
    const dir = Deno.makeTempDirSync();
    const config: VmConfig = {
      backend,
      memSize: 16 << 20,
      kernel: `${ROOT}tests/core/snapshot/guests/counter.bin`,
      format: "flat",
      cmdline: "",
      initrd: null,
      devices: [
        { specifier: RNG, options: { seed: "3" } }, // sandboxed
        { specifier: ECHO, options: { trusted: "true" } },
      ],
      serial: { kind: "none" },
      trace: false,
      rng: true,
    };
    const quiet = { log: () => {} };
    const m = await buildMachine(config, quiet);
    let restored: Machine | null = null;
    try {
      // The built-in virtio-rng keeps the first window and line; the plugins follow.
      const at = (name: string) => m.devices.find((d) => d.name === name)!.source!.options;
      assertEquals([at("virtio-rng").base, at("virtio-rng").irq], ["0xd0000000", "5"]);
      assertEquals([at("virtio-xorshift-rng").base, at("virtio-xorshift-rng").irq], [
        "0xd0001000",
        "6",
      ]);
      assertEquals([at("virtio-echo").base, at("virtio-echo").irq], ["0xd0002000", "7"]);
      assertEquals(m.mmio.read(0xd000_1008, 4), 4);
      assertEquals(m.mmio.read(0xd000_2008, 4), 0x1f);
      const dsdtInfo = readAcpiTables(m.memory, 0xe0000)!.tables.find((t) =>
        t.signature === "DSDT"
      )!;
      const dsdt = new TextDecoder("latin1").decode(m.memory.read(dsdtInfo.addr, dsdtInfo.length));
      assertEquals(dsdt.split("LNRO0005").length - 1, 3);
      // A driver over the machine's bus reads 8 bytes of the stream; then a snapshot.
      const bus = (addr: number): Device => ({
        mmio: [{
          base: addr,
          length: 0x1000,
          read: (o, sz) => m.mmio.read(addr + o, sz),
          write: (o, sz, v) => m.mmio.write(addr + o, sz, v),
        }],
        reset() {},
        save: () => ({ version: 1, fields: {} }),
        restore() {},
      });
      const drv = new VirtioTestDriver(bus(0xd000_1000), m.memory);
      drv.init();
      const first = drv.submit([{ writeLen: 8 }]);
      assertEquals(m.memory.read(first.addrs[0]!, 8), xorshiftStream(3, 8));
      const statePath = `${dir}/vm.state`, memPath = `${dir}/vm.mem`;
      createSnapshot(m, { statePath, memPath });
      m.close();
      restored = await restoreMachine({ statePath, memPath }, quiet, { serial: { kind: "none" } });
      const r = restored;
      const again = drv.continueOn({
        ...bus(0xd000_1000),
        mmio: [{
          base: 0xd000_1000,
          length: 0x1000,
          read: (o, sz) => r.mmio.read(0xd000_1000 + o, sz),
          write: (o, sz, v) => r.mmio.write(0xd000_1000 + o, sz, v),
        }],
      }, r.memory);
      const next = again.submit([{ writeLen: 8 }]);
      assertEquals(r.memory.read(next.addrs[0]!, 8), xorshiftStream(3, 16).subarray(8));
      assertEquals(again.used().map((u) => u.len), [8, 8]);
    } finally {
      restored?.close();
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

// ---- Debian's Linux uses the example plugin (--exec) ----

const DIR = `${ROOT}.cache/guests/`;
const present = ["vmlinux", "busybox", "kernel-package", "modules"].every((f) => {
  try {
    Deno.statSync(DIR + f);
    return true;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux virtio plugin tests skipped: run `deno task guests` first");
// The nested kvm_pvm host cannot run Linux.
const linuxBackends = BACKENDS.filter((b) => b !== "kvm" || hostKvmFlavor() !== "kvm_pvm");
if (linuxBackends.length < BACKENDS.length) {
  console.warn("note: Linux virtio plugin tests skip KVM: this kvm_pvm host cannot boot Linux");
}

Deno.test({
  name: "virtio plugin: the module cache's aliases name each virtio driver by device ID",
  ignore: !present,
  async fn() {
    const release = Deno.readTextFileSync(`${DIR}kernel-package`).trim()
      .replace(/^linux-image-/, "");
    const drivers = await virtioDrivers(await loadModuleSet(`${DIR}modules`, release));
    assertEquals(drivers.get(4), "virtio_rng");
    assertEquals(drivers.get(2), "virtio_blk");
    assertEquals(drivers.get(0x1f), undefined);
  },
});

for (const backend of linuxBackends) {
  for (const mode of MODES) {
    Deno.test({
      name: `[${backend}] [${mode}] Linux reads the virtio-rng plugin's stream from /dev/hwrng`,
      ignore: !present,
      async fn() {
        const hw = "/sys/class/misc/hw_random";
        // rng_quality 0 stops the kernel's own reader (hwrng_fillfn), so the command is the
        // only one taking bytes: it reads a contiguous window of the stream (the kernel took the
        // bytes before it at probe time).
        const cmd = [
          `cat ${hw}/rng_current`,
          `echo 0 > ${hw}/rng_quality`,
          "echo hwrng=$(head -c 64 /dev/hwrng | od -An -v -tx1 | tr -d ' \\n')",
          "grep virtio /proc/interrupts",
        ].join("; ");
        const device = `plugins/examples/virtio_rng.ts,seed=12345${
          mode === "trusted" ? ",trusted" : ""
        }`;
        const r = await runCli(["--exec", cmd, "--backend", backend, "--device", device], {
          timeoutMs: 10 * 60_000,
        });
        assertEquals(r.status, 0, r.stdout + r.stderr);
        assertIncludes(r.stdout, "virtio_rng.0\n");
        const hex = /hwrng=([0-9a-f]{128})\n/.exec(r.stdout)?.[1];
        assertTrue(hex !== undefined, `no 64 bytes read from /dev/hwrng:\n${r.stdout}`);
        const stream = [...xorshiftStream(12345, 1 << 20)]
          .map((b) => b.toString(16).padStart(2, "0")).join("");
        const at = stream.indexOf(hex!);
        assertTrue(at >= 0 && at % 2 === 0, `the guest's bytes are not the stream's:\n${hex}`);
        // The plugin's device is on an edge-triggered IOAPIC line, after the current
        // directory's 9p share (virtio0).
        assertTrue(/^\s*\d+:\s+\d+\s+IO-APIC\s+\d+-edge\s+virtio1$/m.test(r.stdout), r.stdout);
      },
    });
  }
}
