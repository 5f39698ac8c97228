/**
 * Hardening, items 1 and 6: a sandboxed plugin loads its own code modules only. A static import
 * of a host file that is not code (`/etc/os-release`, which Deno would run as a script whose
 * `KEY="value"` lines reach setters the plugin put on `globalThis`) is refused before anything
 * runs, naming the file; so is a `.ts` name linking to it, and one hidden from our scanner is
 * refused by Deno's permission check. `--device /etc/hostname` is refused as not a code module.
 */
import { assertIncludes, assertRejects, assertTrue } from "../_assert.ts";
import { loadSandboxedPlugin } from "../../plugins/sandbox.ts";
import { loadPlugin } from "../../plugins/loader.ts";
import { scanImports } from "../../plugins/module_graph.ts";
import { PluginError } from "../../core/errors.ts";
import { runCli } from "../_run.ts";

/**
 * The hostile plugins are written to a temporary directory by the test (checked in, `deno check
 * tests/` would type-check `/etc/os-release` through them).
 */
const FIX = await Deno.makeTempDir({ prefix: "denovisor-hardening-" });
const MOD = new URL("../../plugins/mod.ts", import.meta.url).href;
const DEVICE = (name: string) =>
  `import { API_VERSION, definePlugin } from "${MOD}";
export default definePlugin({
  name: "${name}",
  apiVersion: API_VERSION,
  create: (host) => {
    host.log.info(\`stolen: \${seen.join(" ")}\`);
    return { reset() {}, save: () => ({ version: 1, fields: {} }), restore() {} };
  },
});
`;
const OS_RELEASE_KEYS = (await Deno.readTextFile("/etc/os-release").catch(() => ""))
  .split("\n").map((l) => l.split("=")[0]!.trim()).filter((k) => /^[A-Z_]+$/.test(k));
// Setters on globalThis that capture what a KEY="value" file assigns when run as a script;
// imported before the host file, so they are in place when it runs.
await Deno.writeTextFile(
  `${FIX}/setters.ts`,
  `export const seen: string[] = [];
for (const key of ["SECRET", ${JSON.stringify(OS_RELEASE_KEYS)}].flat()) {
  Object.defineProperty(globalThis, key, { configurable: true, set(v: string) { seen.push(key + "=" + v); } });
}
`,
);
// The attack of the issue: a static import of /etc/os-release.
await Deno.writeTextFile(
  `${FIX}/os_release_import.ts`,
  `import { seen } from "./setters.ts";\nimport "/etc/os-release";\n${DEVICE("thief")}`,
);
// The same with a KEY="value" file of the test's own (so the leak is shown on any host).
await Deno.writeTextFile(`${FIX}/secret`, 'SECRET = "hunter2";\n');
await Deno.writeTextFile(
  `${FIX}/secret_import.ts`,
  `import { seen } from "./setters.ts";\nimport "./secret";\n${DEVICE("thief")}`,
);
// The same through a .ts name linking to it.
await Deno.symlink("/etc/os-release", `${FIX}/linked_os_release.ts`);
await Deno.writeTextFile(
  `${FIX}/symlink_import.ts`,
  `import { seen } from "./setters.ts";\nimport "./linked_os_release.ts";\n${DEVICE("thief")}`,
);
// An import hidden from our scanner: a regex literal after ")" that the scanner takes for a
// division and a template literal, which swallows the import up to the backtick in the comment.
await Deno.writeTextFile(
  `${FIX}/hidden_import.ts`,
  `import { seen } from "./setters.ts";\nif (seen) /\`/.test("");\nimport "/etc/os-release"; // \`\n` +
    DEVICE("thief"),
);
globalThis.addEventListener("unload", () => Deno.removeSync(FIX, { recursive: true }));

/** Nothing of Deno's own error report, and nothing the thief would have logged. */
function assertClean(stderr: string): void {
  assertTrue(!/Uncaught|^\s+at |^error:/m.test(stderr), `Deno's report reached stderr:\n${stderr}`);
  assertTrue(!/stolen|Debian|VERSION/.test(stderr), `host values leaked:\n${stderr}`);
}

Deno.test("a static import of /etc/os-release is refused by the walk, naming it", async () => {
  const path = `${FIX}/os_release_import.ts`;
  const r = await runCli(["--backend", "interp", "--device", path]);
  assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
  assertIncludes(
    r.stderr,
    `denovisor: Plugin "${path}" imports "/etc/os-release" (from ${FIX}/os_release_import.ts), which is not a code module: a sandboxed plugin may import code ` +
      `modules only`,
  );
  assertClean(r.stderr);
  assertTrue(r.stdout === "", r.stdout);
});

Deno.test("a .ts symlink to /etc/os-release is refused, naming its target", async () => {
  const err = await assertRejects(
    () => loadSandboxedPlugin(`${FIX}/symlink_import.ts`),
    PluginError,
    `linked_os_release.ts"`,
  );
  assertIncludes(err.message, `, not a code module: a sandboxed plugin may import code modules`);
});

Deno.test("an import the scanner misses is still refused by Deno before anything runs", async () => {
  const path = `${FIX}/hidden_import.ts`;
  const r = await runCli(["--backend", "interp", "--device", path]);
  assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
  assertIncludes(
    r.stderr,
    `denovisor: Plugin "${path}" tried to read a file ("/etc/os-release") while loading and ` +
      `was denied`,
  );
  assertClean(r.stderr);
});

Deno.test("the scanner finds static, re-export and literal dynamic imports, not comments", () => {
  const src = `import a from "./a.ts"; import "./b.ts";
export { c } from './c.ts'; export * from "./d.ts";
// import "./not_this.ts"
/* import "./nor_this.ts" */ const s = "import './str.ts'";
const t = \`\${"x"} import "./tpl.ts"\`; await import("./e.ts");
import type { F } from "./f.ts";`;
  const got = scanImports(src, "x.ts", "x.ts").join(" ");
  assertTrue(got === "./a.ts ./b.ts ./c.ts ./d.ts ./e.ts ./f.ts", got);
});

Deno.test("--device /etc/hostname is refused as not a code module, sandboxed or trusted", async () => {
  for (const spec of ["/etc/hostname", "/etc/hostname,trusted"]) {
    const r = await runCli(["--backend", "interp", "--device", spec]);
    assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
    assertIncludes(
      r.stderr,
      'denovisor: Plugin "/etc/hostname" is not a code module: a device plugin is a .js, .mjs,',
    );
    assertClean(r.stderr);
  }
  await assertRejects(() => loadPlugin("/etc/hostname"), PluginError, "is not a code module");
});

Deno.test("a KEY=value file is leaked when trusted and refused by name when sandboxed", async () => {
  const trusted = await runCli([
    "--backend",
    "interp",
    "--device",
    `${FIX}/secret_import.ts,trusted`,
  ]);
  assertIncludes(trusted.stderr, "thief: stolen: SECRET=hunter2"); // the attack is real
  const r = await runCli(["--backend", "interp", "--device", `${FIX}/secret_import.ts`]);
  assertTrue(r.status === 1, `status ${r.status}, stderr:\n${r.stderr}`);
  assertIncludes(r.stderr, `imports "${FIX}/secret" (from ${FIX}/secret_import.ts), which is not`);
  assertTrue(!r.stderr.includes("hunter2"), r.stderr);
});
