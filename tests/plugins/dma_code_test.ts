/**
 * A device overwrites guest code the vCPU has run hot, by DMA through `host.memory.write`, and
 * the guest runs the new code: sandboxed (the Worker's own view of guest RAM) and trusted
 * (in-process), on every backend here, with the interpreter's block compiler on and off
 * (DENOVISOR_INTERP_JIT). The guest and device are tests/plugins/fixtures/dma_code_guest.asm and
 * code_patcher.ts.
 */
import { assertEquals } from "../_assert.ts";
import { BACKENDS, ROOT } from "../_run.ts";
import { testDevice } from "../../plugins/testing.ts";
import { loadSandboxedPlugin } from "../../plugins/sandbox.ts";
import { GuestMemory } from "../../core/memory.ts";
import { CODE, STALE } from "../../core/page_state.ts";

const GUEST = "tests/plugins/fixtures/dma_code_guest.bin";
const DEVICE = "tests/plugins/fixtures/code_patcher.ts";
const PORT = 0x5e0;
const EXPECTED = "near 0x00003333\nfar 0x00004444\nnext 0x00006666\ntimer 0x00005555\n";

/** Runs the CLI with the block compiler on or off. */
async function run(args: string[], jit: boolean) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "mod.ts", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENOVISOR_INTERP_JIT: jit ? "1" : "0" },
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return { status: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

for (const backend of BACKENDS) {
  // The block compiler is the interpreter's; KVM runs once.
  for (const jit of backend === "interp" ? [true, false] : [true]) {
    for (const mode of ["sandboxed", "trusted"] as const) {
      const label = backend === "interp" ? `${backend}, jit ${jit ? "on" : "off"}` : backend;
      Deno.test(`[${label}] a ${mode} device rewrites hot code by DMA and the guest runs the new code`, async () => {
        const r = await run([
          "--backend",
          backend,
          "--kernel",
          GUEST,
          "--device",
          mode === "trusted" ? `${DEVICE},trusted` : DEVICE,
        ], jit);
        assertEquals(r.stdout, EXPECTED, r.stderr);
        assertEquals(r.status, 0, r.stderr);
      });
    }
  }
}

for (const ram of ["shared", "not shared (KVM's mmap'd RAM: DMA through the channel)"] as const) {
  Deno.test(`a sandboxed device's DMA marks the page dirty and its code stale, RAM ${ram}`, async () => {
    const memory = ram === "shared"
      ? GuestMemory.allocate(1 << 20)
      : new GuestMemory(new ArrayBuffer(1 << 20));
    const t = testDevice(await loadSandboxedPlugin(DEVICE), { memory });
    try {
      memory.pages.takeDirty();
      memory.pages.code[0x12] = CODE; // as the interpreter marks a page it decoded from
      t.out(PORT, 0x12340, 4);
      t.out(PORT + 4, 0x4444, 4);
      assertEquals([...memory.read(0x12340, 6)], [0xb8, 0x44, 0x44, 0, 0, 0xc3]);
      assertEquals(memory.pages.takeDirty().pages, [0x12]);
      assertEquals(memory.pages.code[0x12], CODE | STALE);
    } finally {
      t.device.close?.();
    }
  });
}
