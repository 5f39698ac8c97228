import {
  assertEquals,
  assertIncludes,
  assertRejects,
  assertThrows,
  assertTrue,
} from "../_assert.ts";
import { type DeviceUnderTest, testDevice, type TestDeviceOptions } from "../../plugins/testing.ts";
import { loadSandboxedPlugin, type SandboxLimits } from "../../plugins/sandbox.ts";
import { PluginError } from "../../core/errors.ts";
import { GuestMemory } from "../../core/memory.ts";
import { crc32 } from "../../plugins/examples/crc32_dma.ts";
import { checkStateVersion, decodeState, encodeState } from "../../plugins/state.ts";

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const EVIL = fixture("evil_device.ts");
const HINT = "plugins run with no permissions; use --device PATH,trusted to run it in-process";

/** Loads `specifier` sandboxed and creates its device on the test kit's fake host. */
async function sandboxed(
  specifier: string,
  opts: TestDeviceOptions = {},
  limits: SandboxLimits = {},
): Promise<DeviceUnderTest & Disposable> {
  const t = testDevice(await loadSandboxedPlugin(specifier, limits), opts);
  return Object.assign(t, { [Symbol.dispose]: () => t.device.close?.() });
}

/** Loads the evil fixture and expects `create` to fail with a PluginError. */
async function createFails(options: Record<string, string>): Promise<PluginError> {
  const plugin = await loadSandboxedPlugin(EVIL);
  return assertThrows(() => testDevice(plugin, { options }), PluginError);
}

const DENIALS: [attempt: string, words: string][] = [
  ["read", 'tried to read a file ("/etc/hostname")'],
  ["write", 'tried to write a file ("/tmp/denovisor-evil-device")'],
  ["net", "tried to open a network connection"],
  ["ffi", "tried to call native code through FFI"],
  ["run", 'tried to spawn a process ("id")'],
  ["env", 'tried to read the environment ("HOME")'],
];

for (const [attempt, words] of DENIALS) {
  Deno.test(`a sandboxed device that tries to ${attempt} in a handler is denied and named`, async () => {
    using t = await sandboxed(EVIL, { options: { attempt } });
    const err = assertThrows(() => t.out(0x5e0, 1), PluginError);
    assertIncludes(err.message, `Device "evil" ${words.replace(/ \(.*/, "")}`);
    assertIncludes(err.message, words.replace(/^tried to /, ""));
    assertIncludes(err.message, "in its port write handler and was denied");
    assertIncludes(err.message, HINT);
  });

  Deno.test(`a sandboxed device that tries to ${attempt} in create is denied and named`, async () => {
    const err = await createFails({ attempt, when: "create" });
    assertIncludes(err.message, `Device "evil" ${words.replace(/ \(.*/, "")}`);
    assertIncludes(err.message, "while starting and was denied");
    assertIncludes(err.message, HINT);
  });
}

Deno.test("a sandboxed device's write did not reach the file system", async () => {
  await Deno.remove("/tmp/denovisor-evil-device").catch(() => {});
  using t = await sandboxed(EVIL, { options: { attempt: "write" } });
  assertThrows(() => t.out(0x5e0, 1), PluginError);
  await assertRejects(() => Deno.stat("/tmp/denovisor-evil-device"), Deno.errors.NotFound);
});

Deno.test("a sandboxed handler that throws becomes a PluginError naming the device", async () => {
  using t = await sandboxed(EVIL, { options: { attempt: "throw" } });
  assertThrows(
    () => t.out(0x5e0, 1),
    PluginError,
    'Device "evil" failed in its port write handler: the evil device exploded',
  );
});

Deno.test("a sandboxed read handler that returns a string is refused", async () => {
  using t = await sandboxed(EVIL, { options: { attempt: "wrongtype" } });
  assertThrows(
    () => t.in(0x5e0),
    PluginError,
    'Device "evil": its port read handler returned the string "not a number", not a number',
  );
});

Deno.test("a sandboxed handler that never returns is stopped after the time limit", async () => {
  using t = await sandboxed(EVIL, { options: { attempt: "hang", timeout_ms: "200" } });
  const start = performance.now();
  assertThrows(
    () => t.out(0x5e0, 1),
    PluginError,
    'Device "evil" did not return from its port write handler within 200 ms and was stopped',
  );
  assertTrue(performance.now() - start >= 200);
  // The device stays failed: later accesses say why instead of waiting again.
  assertThrows(() => t.in(0x5e0), PluginError, "within 200 ms");
});

Deno.test("a sandboxed create that throws says the device failed to start", async () => {
  const err = await createFails({ attempt: "throw", when: "create" });
  assertEquals(err.message, 'Device "evil" failed to start: the evil device exploded');
});

Deno.test("a plugin that reads a file when its module loads is denied at load", async () => {
  await assertRejects(
    () => loadSandboxedPlugin(fixture("evil_top_level.ts")),
    PluginError,
    'tried to read a file ("/etc/hostname") while loading and was denied',
  );
});

Deno.test("a plugin that imports a host file as text is refused before it runs", async () => {
  await assertRejects(
    () => loadSandboxedPlugin(fixture("evil_text_import.ts")),
    PluginError,
    'imports "/etc/hostname" with import attributes',
  );
});

Deno.test("a sandboxed module that exports no device is refused", async () => {
  await assertRejects(
    () => loadSandboxedPlugin(fixture("not_a_device.ts")),
    PluginError,
    "does not export a device",
  );
});

Deno.test("a sandboxed plugin path that does not exist is named", async () => {
  await assertRejects(
    () => loadSandboxedPlugin("plugins/examples/nope.ts"),
    PluginError,
    'Plugin "plugins/examples/nope.ts" cannot be read',
  );
});

Deno.test("crc32-dma in the sandbox DMAs shared guest RAM and raises its interrupt", async () => {
  using t = await sandboxed("plugins/examples/crc32_dma.ts");
  const data = new TextEncoder().encode("123456789");
  t.memory.write(0x4000, data);
  t.out(0x5b0, 0x4000, 4);
  t.out(0x5b4, data.length, 4);
  t.out(0x5b8, 1, 4);
  assertEquals(t.in(0x5c0, 4), 1);
  assertEquals(t.in(0x5bc, 4), 0xcbf43926);
  assertEquals(t.irqs.map((e) => [e.line, e.level]), [[5, true], [5, false]]);
  // Out of guest RAM: the sandbox's bounds check refuses it, and the warning crosses over.
  t.out(0x5b0, 0xffff0, 4);
  t.out(0x5b4, 0x100, 4);
  t.out(0x5b8, 1, 4);
  assertEquals(t.in(0x5c0, 4), 2);
  assertTrue(t.logs.some((l) => l.startsWith("warning: DMA refused") && l.includes("outside")));
});

Deno.test("crc32-dma in the sandbox DMAs through the channel when RAM is not shared", async () => {
  // KVM's guest RAM is mmap'd host memory, which a Worker cannot share: a plain ArrayBuffer
  // stands for it here.
  const memory = new GuestMemory(new ArrayBuffer(1 << 20));
  using t = await sandboxed("plugins/examples/crc32_dma.ts", { memory });
  const data = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff); // more than one chunk
  memory.write(0x10000, data);
  t.out(0x5b0, 0x10000, 4);
  t.out(0x5b4, data.length, 4);
  t.out(0x5b8, 1, 4);
  assertEquals(t.in(0x5c0, 4), 1);
  assertEquals(t.in(0x5bc, 4), crc32(data));
  t.out(0x5b0, 0xfff00, 4);
  t.out(0x5b8, 1, 4);
  assertEquals(t.in(0x5c0, 4), 2);
});

Deno.test("a sandboxed device's state round-trips and a newer version is refused", async () => {
  using t = await sandboxed("plugins/examples/crc32_dma.ts");
  t.out(0x5b0, 0x1234, 4);
  const state = t.device.save();
  assertEquals(state, { version: 1, fields: { addr: 0x1234, len: 0, result: 0, status: 0 } });
  t.device.reset();
  assertEquals(t.in(0x5b0, 4), 0);
  t.device.restore(state);
  assertEquals(t.in(0x5b0, 4), 0x1234);
  assertThrows(
    () => t.device.restore({ version: 2, fields: {} }),
    PluginError,
    'Device "crc32-dma" cannot restore state version 2: this plugin writes version 1 at most',
  );
});

Deno.test("a closed sandboxed device refuses further accesses", async () => {
  const t = await sandboxed("plugins/examples/hw_rng.ts", { options: { seed: "3" } });
  assertTrue(t.in(0x5a0, 4) !== 0);
  t.device.close?.();
  assertThrows(() => t.in(0x5a0, 4), PluginError, 'Device "hw-rng" was closed');
});

Deno.test("state checks refuse unknown versions and values that are not states", () => {
  const owner = { name: "latch", stateVersion: 2 };
  checkStateVersion(owner, { version: 2, fields: {} });
  assertThrows(
    () => checkStateVersion(owner, { version: 1.5, fields: {} }),
    PluginError,
    'Device "latch" cannot restore a state with unknown version 1.5',
  );
  assertThrows(
    () => checkStateVersion(owner, { fields: {} }, "latch2"),
    PluginError,
    'Device "latch2" cannot restore a state with unknown version undefined',
  );
  assertThrows(
    () => checkStateVersion(owner, "nope"),
    PluginError,
    'Device "latch" cannot restore a string: a device state is { version, fields }',
  );
  assertThrows(
    () => checkStateVersion(owner, { version: 3, fields: {} }),
    PluginError,
    "cannot restore state version 3: this plugin writes version 2 at most",
  );
});

Deno.test("device states keep their Uint8Array fields across the sandbox encoding", () => {
  const state = { version: 1, fields: { cells: new Uint8Array([0, 1, 255]), n: 3, s: "x" } };
  assertEquals(decodeState(encodeState(state)), state);
});
