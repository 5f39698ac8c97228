/**
 * The block device, watchdog and text framebuffer examples: each through the test kit, in-process
 * and in the sandbox (the same plugin source), and end to end with its guest through the CLI.
 */

import { assertEquals, assertIncludes, assertThrows, assertTrue } from "../_assert.ts";
import { type DeviceUnderTest, testDevice, type TestDeviceOptions } from "../../plugins/testing.ts";
import { loadSandboxedPlugin } from "../../plugins/sandbox.ts";
import type { Plugin } from "../../plugins/mod.ts";
import { PluginError } from "../../core/errors.ts";
import { BACKENDS, KVM_OK, runCli } from "../_run.ts";
import blockDev, {
  CMD_READ,
  CMD_WRITE,
  SECTOR_SIZE,
  STATUS_BAD_ADDRESS,
  STATUS_BAD_SECTOR,
  STATUS_DONE,
  STATUS_READ_ONLY,
} from "../../plugins/examples/block_dev.ts";
import watchdog, { ARMED, EXPIRED } from "../../plugins/examples/watchdog.ts";
import textFb, { REG_CONTROL } from "../../plugins/examples/text_fb.ts";

const EXAMPLES = new URL("../../plugins/examples/", import.meta.url);
const MODES = ["in-process", "sandboxed"] as const;
type Mode = typeof MODES[number];

/** The device under test in `mode`; disposing it closes the device (and its Worker). */
async function make(
  mode: Mode,
  plugin: Plugin,
  file: string,
  opts: TestDeviceOptions = {},
): Promise<DeviceUnderTest & Disposable> {
  const p = mode === "in-process"
    ? plugin
    : await loadSandboxedPlugin(new URL(file, EXAMPLES).href);
  const t = testDevice(p, opts);
  return Object.assign(t, { [Symbol.dispose]: () => t.device.close?.() });
}

/** A disk image whose sector i starts with the text "sector i". */
async function diskImage(sectors: number): Promise<string> {
  const img = new Uint8Array(sectors * SECTOR_SIZE);
  for (let i = 0; i < sectors; i++) {
    img.set(new TextEncoder().encode(`sector ${i}`), i * SECTOR_SIZE);
  }
  const path = await Deno.makeTempFile({ suffix: ".img" });
  await Deno.writeFile(path, img);
  return path;
}

const BLK = 0x5d0;

function blkCommand(
  t: DeviceUnderTest,
  sector: number,
  addr: number,
  count: number,
  cmd: number,
): number {
  t.out(BLK, sector, 4);
  t.out(BLK + 4, addr, 4);
  t.out(BLK + 8, count, 4);
  t.out(BLK + 12, cmd, 4);
  return t.in(BLK + 16, 4);
}

for (const mode of MODES) {
  Deno.test(`[${mode}] block-dev DMAs sectors from its file into RAM and interrupts`, async () => {
    const path = await diskImage(8);
    try {
      using t = await make(mode, blockDev, "block_dev.ts", { options: { file: path } });
      assertEquals(t.in(BLK + 20, 4), 8);
      assertEquals(blkCommand(t, 2, 0x3000, 3, CMD_READ), STATUS_DONE);
      const text = (gpa: number) => new TextDecoder().decode(t.memory.read(gpa, 8));
      assertEquals([text(0x3000), text(0x3200), text(0x3400)], [
        "sector 2",
        "sector 3",
        "sector 4",
      ]);
      assertEquals(t.irqs.map((e) => [e.line, e.level]), [[9, true], [9, false]]);
    } finally {
      await Deno.remove(path);
    }
  });

  Deno.test(`[${mode}] block-dev is read-only unless told otherwise`, async () => {
    const path = await diskImage(2);
    try {
      using t = await make(mode, blockDev, "block_dev.ts", { options: { file: path } });
      t.memory.fill(0x1000, SECTOR_SIZE, 0xee);
      assertEquals(blkCommand(t, 0, 0x1000, 1, CMD_WRITE), STATUS_READ_ONLY);
      assertEquals((await Deno.readFile(path))[0], "s".charCodeAt(0));
    } finally {
      await Deno.remove(path);
    }
  });

  Deno.test(`[${mode}] block-dev with writable=true writes RAM back to its file`, async () => {
    const path = await diskImage(2);
    try {
      {
        using t = await make(mode, blockDev, "block_dev.ts", {
          options: { file: path, writable: "true" },
        });
        t.memory.fill(0x1000, SECTOR_SIZE, 0xab);
        assertEquals(blkCommand(t, 1, 0x1000, 1, CMD_WRITE), STATUS_DONE);
      }
      const img = await Deno.readFile(path);
      assertEquals(img.subarray(512, 1024), new Uint8Array(512).fill(0xab));
      assertEquals(new TextDecoder().decode(img.subarray(0, 8)), "sector 0");
    } finally {
      await Deno.remove(path);
    }
  });

  Deno.test(`[${mode}] block-dev refuses sectors past the end and RAM it does not have`, async () => {
    const path = await diskImage(2);
    try {
      using t = await make(mode, blockDev, "block_dev.ts", { options: { file: path } });
      assertEquals(blkCommand(t, 1, 0x1000, 2, CMD_READ), STATUS_BAD_SECTOR);
      assertEquals(blkCommand(t, 0, 0xfff00, 2, CMD_READ), STATUS_BAD_ADDRESS);
      assertTrue(t.logs.some((l) => l.includes("outside guest RAM")));
    } finally {
      await Deno.remove(path);
    }
  });

  Deno.test(`[${mode}] block-dev without a file option says how to give one`, async () => {
    const p = mode === "in-process"
      ? blockDev
      : await loadSandboxedPlugin(new URL("block_dev.ts", EXAMPLES).href);
    const err = assertThrows(() => testDevice(p), Error);
    assertIncludes(err.message, "needs a file: give it as file=PATH");
  });

  Deno.test(`[${mode}] watchdog fires only when a timeout passes without a kick`, async () => {
    using t = await make(mode, watchdog, "watchdog.ts");
    t.out(0x590, 100, 4); // arm: 100 ms
    assertEquals(t.in(0x59c, 4), ARMED);
    t.clock.advance(60e6);
    t.out(0x594, 1, 4); // kick
    t.clock.advance(60e6);
    assertEquals(t.power, []);
    assertEquals(t.in(0x598, 4), 120); // its clock, in ms
    t.clock.advance(50e6);
    assertEquals(t.power, ["reset"]);
    assertEquals(t.in(0x59c, 4), EXPIRED);
    assertEquals(t.logs, ["warning: watchdog expired: no kick within 100 ms (after 1 kicks)"]);
  });

  Deno.test(`[${mode}] watchdog disarmed with 0 never fires, and exits with a status`, async () => {
    using t = await make(mode, watchdog, "watchdog.ts", {
      options: { action: "exit", status: "42" },
    });
    t.out(0x590, 10, 4);
    t.out(0x590, 0, 4);
    t.clock.advance(1e9);
    assertEquals(t.power, []);
    t.out(0x590, 10, 4);
    t.clock.advance(10e6);
    assertEquals(t.power, ["exit:42"]);
  });

  Deno.test(`[${mode}] text-fb keeps the guest's cells and renders non-blank rows`, async () => {
    using t = await make(mode, textFb, "text_fb.ts", { options: { base: "0x100000" } });
    const put = (row: number, col: number, text: string) => {
      for (let i = 0; i < text.length; i++) {
        t.write(0x100000 + (row * 80 + col + i) * 2, 0x0700 | text.charCodeAt(i), 2);
      }
    };
    put(0, 0, "hello");
    put(3, 2, "world");
    assertEquals(t.read(0x100000, 2), 0x0768); // 'h', attribute 7
    assertEquals(t.read(0x100000, 4), 0x07650768); // "he"
    t.write(0x100000 + REG_CONTROL, 1, 4);
    assertEquals(t.logs, ["screen (80x25), non-blank rows:", "row 00: hello", "row 03:   world"]);
    const state = t.device.save();
    t.device.reset();
    assertEquals(t.read(0x100000, 2), 0);
    t.device.restore(state);
    assertEquals(t.read(0x100000 + (3 * 80 + 2) * 2, 1), "w".charCodeAt(0));
  });

  Deno.test(`[${mode}] text-fb renders what is left unrendered when it closes`, async () => {
    const t = await make(mode, textFb, "text_fb.ts");
    t.write(0xc000_0000, 0x0741, 2);
    t.device.close?.();
    assertEquals(t.logs, ["screen (80x25), non-blank rows:", "row 00: A"]);
  });

  Deno.test(`[${mode}] restoring a state from a newer watchdog is refused`, async () => {
    using t = await make(mode, watchdog, "watchdog.ts");
    if (mode === "sandboxed") {
      assertThrows(
        () => t.device.restore({ version: 9, fields: {} }),
        PluginError,
        "cannot restore state version 9",
      );
    } else {
      // In-process, the Machine runs the same check before restore (plugins/state.ts).
      const { checkStateVersion } = await import("../../plugins/state.ts");
      assertThrows(
        () => checkStateVersion(watchdog, { version: 9, fields: {} }),
        PluginError,
        'Device "watchdog" cannot restore state version 9',
      );
    }
  });
}

// ---- end to end, on every backend here ----

/** `--device` spellings: in-process, and the sandbox (the default once the CLI wires it). */
const DEVICE_MODES = [
  { mode: "trusted", suffix: ",trusted", ignore: false },
  { mode: "sandboxed", suffix: "", ignore: false },
] as const;

for (const backend of BACKENDS) {
  const b = ["--backend", backend];
  for (const { mode, suffix, ignore } of DEVICE_MODES) {
    Deno.test({
      name: `[${backend}, ${mode}] block-dev's guest reads sectors of a host file`,
      ignore,
      async fn() {
        const img = new Uint8Array(4 * SECTOR_SIZE);
        img.set(new TextEncoder().encode("first sector\0"), 0);
        img.set(new TextEncoder().encode("second sector\0"), SECTOR_SIZE);
        const path = await Deno.makeTempFile({ suffix: ".img" });
        try {
          await Deno.writeFile(path, img);
          const r = await runCli([
            ...b,
            "--kernel",
            "plugins/examples/guests/block_guest.bin",
            "--device",
            `plugins/examples/block_dev.ts,file=${path}${suffix}`,
          ]);
          assertEquals(r.status, 0, r.stderr);
          assertEquals(
            r.stdout,
            "capacity: 00000004\nsector 0: first sector\nsector 1: second sector\n" +
              "write refused: read-only\nread past the end refused\n",
          );
        } finally {
          await Deno.remove(path);
        }
      },
    });

    Deno.test({
      name: `[${backend}, ${mode}] watchdog's guest stops kicking and the watchdog ends the VM`,
      ignore,
      async fn() {
        const r = await runCli([
          ...b,
          "--kernel",
          "plugins/examples/guests/watchdog_guest.bin",
          "--device",
          `plugins/examples/watchdog.ts,action=exit,status=42${suffix}`,
        ]);
        assertEquals(r.status, 42, r.stderr);
        assertEquals(r.stdout, "kick\n".repeat(5) + "no more kicks\n");
        assertIncludes(r.stderr, "watchdog: warning: watchdog expired: no kick within 500 ms");
      },
    });

    Deno.test({
      name: `[${backend}, ${mode}] text-fb's guest writes the screen over MMIO`,
      ignore,
      async fn() {
        const r = await runCli([
          ...b,
          "--mem",
          "1M",
          "--kernel",
          "plugins/examples/guests/text_fb_guest.bin",
          "--device",
          `plugins/examples/text_fb.ts,base=0x100000${suffix}`,
        ]);
        assertEquals(r.status, 0, r.stderr);
        assertEquals(r.stdout, "text-fb: rendered\n");
        assertIncludes(
          r.stderr,
          "text-fb: row 00: denovisor text framebuffer\n" +
            "text-fb: row 02: written by a real-mode guest over MMIO\n",
        );
      },
    });
  }

  Deno.test({
    name: `[${backend}] a stranger's plugin that reads /etc/hostname stops the VM with exit 1`,
    ignore: false,
    async fn() {
      const r = await runCli([
        ...b,
        "--kernel",
        "tests/plugins/fixtures/evil_guest.bin",
        "--device",
        "tests/plugins/fixtures/evil_device.ts,attempt=read",
      ]);
      assertEquals(r.status, 1, r.stderr);
      assertIncludes(r.stderr, 'Device "evil" tried to read a file ("/etc/hostname")');
      assertEquals(r.stdout, "");
    },
  });
}

if (!KVM_OK) console.warn("note: the KVM runs of the examples are skipped (no usable /dev/kvm)");
