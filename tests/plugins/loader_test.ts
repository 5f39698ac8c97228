import { assertEquals, assertRejects, assertThrows, assertTrue } from "../_assert.ts";
import { loadPlugin, resolvePluginUrl } from "../../plugins/loader.ts";
import { makeOptions, parseDeviceSpec } from "../../plugins/options.ts";
import { API_VERSION, definePlugin, isPlugin } from "../../plugins/mod.ts";
import { PluginError, UsageError } from "../../core/errors.ts";

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

Deno.test("loader imports an example plugin by path and checks it is a device", async () => {
  const p = await loadPlugin("plugins/examples/hw_rng.ts");
  assertEquals(p.name, "hw-rng");
  assertTrue(isPlugin(p));
});

Deno.test("loader names a plugin path that does not exist and says to check it", async () => {
  await assertRejects(
    () => loadPlugin("plugins/examples/nope.ts"),
    PluginError,
    'Plugin "plugins/examples/nope.ts" cannot be read',
  );
});

Deno.test("loader refuses a module that does not export a device", async () => {
  const err = await assertRejects(() => loadPlugin(fixture("not_a_device.ts")), PluginError);
  assertTrue(err.message.includes("does not export a device"));
  assertTrue(err.message.includes("definePlugin"));
});

Deno.test("loader refuses a plugin written for another API version, saying which", async () => {
  await assertRejects(
    () => loadPlugin(fixture("future_api.ts")),
    PluginError,
    "written for API version 99",
  );
});

Deno.test("loader resolves relative paths against the current directory", () => {
  assertEquals(resolvePluginUrl("x/y.ts", "/a b").href, "file:///a%20b/x/y.ts");
  assertEquals(resolvePluginUrl("/abs.ts").href, "file:///abs.ts");
  assertEquals(resolvePluginUrl("https://example.org/d.ts").href, "https://example.org/d.ts");
});

Deno.test("device specs split the path from key=value options", () => {
  assertEquals(parseDeviceSpec("rng.ts,port=0x5a0,seed=7,fast"), {
    specifier: "rng.ts",
    options: { port: "0x5a0", seed: "7", fast: "true" },
  });
  assertThrows(() => parseDeviceSpec(",port=1"), UsageError, "names no plugin");
  assertThrows(() => parseDeviceSpec("x.ts,=3"), UsageError, "not key=value");
});

Deno.test("plugin options give typed values and name the device on bad ones", () => {
  const o = makeOptions({ port: "0x2f8", n: "12", on: "yes", bad: "zz" }, "dev");
  assertEquals([o.number("port", 0), o.number("n", 0), o.number("missing", 5)], [0x2f8, 12, 5]);
  assertEquals([o.boolean("on", false), o.string("x", "d")], [true, "d"]);
  assertThrows(() => o.number("bad", 0), UsageError, 'Device "dev": option bad=zz is not a number');
});

Deno.test("definePlugin rejects a definition without create or with a bad name", () => {
  assertThrows(
    // deno-lint-ignore no-explicit-any
    () => definePlugin({ name: "x", apiVersion: API_VERSION } as any),
    TypeError,
    "has no create",
  );
  assertThrows(
    () => definePlugin({ name: "a b", apiVersion: API_VERSION, create: () => ({} as never) }),
    TypeError,
    "is not valid",
  );
});
