/**
 * Snapshots of whole machines: a guest paused mid-run, snapshotted to files, restored into a new
 * Machine (and in a new process, and on the other backend where KVM runs it) finishes with the
 * output of an uninterrupted run; bad snapshot files are refused naming the file and the problem.
 */

import { assertEquals, assertTrue, assertTrue as assert } from "../../_assert.ts";
import { BACKENDS, KVM_OK, ROOT, runCli } from "../../_run.ts";
import { buildMachine, restoreMachine, type VmConfig } from "../../../core/vm.ts";
import type { Machine } from "../../../core/machine.ts";
import { applyDiff, createSnapshot, readSnapshot } from "../../../core/snapshot/mod.ts";
import { VmmError } from "../../../core/errors.ts";
import { MSR } from "../../../core/cpu_state.ts";

const GUEST = `${ROOT}tests/core/snapshot/guests/counter.bin`;
/** PIT interrupts through the PIC, HLT between them (tests/core/snapshot/guests/ticker.asm). */
const TICKER = `${ROOT}tests/core/snapshot/guests/ticker.bin`;

function config(backend: "interp" | "kvm", kernel = GUEST): VmConfig {
  return {
    backend,
    memSize: 16 << 20,
    kernel,
    format: "flat",
    cmdline: "",
    initrd: null,
    devices: [],
    serial: { kind: "stdio" },
    trace: false,
  };
}

/** A serial sink that collects text and calls `onLine` after each write. */
function collector(onLine: (lines: number) => void = () => {}) {
  const dec = new TextDecoder();
  const out = {
    text: "",
    sink: {
      writeSync: (b: Uint8Array): number => {
        out.text += dec.decode(b);
        onLine(out.text.split("\n").length - 1);
        return b.length;
      },
    },
  };
  return out;
}

const quiet = { log: () => {} };

async function uninterrupted(backend: "interp" | "kvm", kernel = GUEST): Promise<string> {
  const out = collector();
  const m = await buildMachine(config(backend, kernel), { ...quiet, stdout: out.sink });
  try {
    const r = m.run();
    assertEquals(r.reason, { kind: "exit", status: 1 });
  } finally {
    m.close();
  }
  return out.text;
}

/** Runs the guest on `backend` until it printed `lines` lines, pauses and snapshots it. */
async function runAndSnapshot(
  backend: "interp" | "kvm",
  dir: string,
  lines: number,
  kernel = GUEST,
): Promise<{ text: string; statePath: string; memPath: string }> {
  let machine: Machine | null = null;
  const out = collector((n) => {
    if (n >= lines) machine?.pause();
  });
  machine = await buildMachine(config(backend, kernel), { ...quiet, stdout: out.sink });
  try {
    const r = machine.run();
    assertEquals(r.reason, { kind: "pause" });
    const statePath = `${dir}/vm.state`, memPath = `${dir}/vm.mem`;
    createSnapshot(machine, { statePath, memPath, type: "Full" });
    return { text: out.text, statePath, memPath };
  } finally {
    machine.close();
  }
}

async function restoreAndFinish(
  files: { statePath: string; memPath: string },
  backend: "interp" | "kvm",
  onEnd: (m: Machine) => void = () => {},
): Promise<string> {
  const out = collector();
  const m = await restoreMachine(files, { ...quiet, stdout: out.sink }, { backend });
  try {
    const r = m.run();
    assertEquals(r.reason, { kind: "exit", status: 1 }, out.text);
    onEnd(m);
  } finally {
    m.close();
  }
  return out.text;
}

for (const backend of BACKENDS) {
  Deno.test(`${backend}: pause, snapshot, restore into a new machine: output equals an uninterrupted run`, async () => {
    const whole = await uninterrupted(backend);
    assertEquals(whole.split("\n").length - 1, 200);
    const dir = Deno.makeTempDirSync();
    try {
      const first = await runAndSnapshot(backend, dir, 50);
      assert(first.text.length > 0 && first.text.length < whole.length, "paused mid-way");
      const rest = await restoreAndFinish(first, backend);
      assertEquals(first.text + rest, whole);
      // The same snapshot restores twice: the files are not consumed.
      assertEquals(first.text + (await restoreAndFinish(first, backend)), whole);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });

  Deno.test(`${backend}: pause and resume in the same machine continues the run`, async () => {
    const whole = await uninterrupted(backend);
    let machine: Machine | null = null;
    let pauses = 0;
    const out = collector((n) => {
      if (n % 60 === 0 && pauses < 3) {
        pauses++;
        machine?.pause();
      }
    });
    machine = await buildMachine(config(backend), { ...quiet, stdout: out.sink });
    try {
      let kinds = "";
      for (;;) {
        const r = machine.run();
        kinds += r.reason.kind + " ";
        if (r.reason.kind !== "pause") break;
      }
      assertEquals(kinds, "pause pause pause exit ");
      assertEquals(out.text, whole);
    } finally {
      machine.close();
    }
  });
}

const PAIRS: (readonly ["interp" | "kvm", "interp" | "kvm"])[] = BACKENDS.flatMap((a) =>
  BACKENDS.map((b) => [a, b] as const)
);
for (const [from, to] of PAIRS) {
  Deno.test(`${from} -> ${to}: a guest sleeping on PIT interrupts resumes its timer, PIC and HLT after a restore`, async () => {
    const whole = await uninterrupted("interp", TICKER);
    assertEquals(whole.split("\n").length - 1, 40);
    const dir = Deno.makeTempDirSync();
    try {
      const first = await runAndSnapshot(from, dir, 15, TICKER);
      // Host time spent between snapshot and restore is not guest time.
      await new Promise((r) => setTimeout(r, 300));
      let endNs = 0;
      const rest = await restoreAndFinish(first, to, (m) => endNs = m.clock.now());
      assertEquals(first.text + rest, whole);
      // 200 ticks of 2 ms: about 400 ms of VM time in all, however long the pause was.
      assertTrue(endNs > 390e6 && endNs < 600e6, `VM time at exit: ${endNs / 1e6} ms`);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

if (KVM_OK) {
  for (const [from, to] of [["interp", "kvm"], ["kvm", "interp"]] as const) {
    Deno.test(`cross-backend: a real-mode guest snapshotted on ${from} finishes on ${to}`, async () => {
      const whole = await uninterrupted("interp");
      const dir = Deno.makeTempDirSync();
      try {
        const first = await runAndSnapshot(from, dir, 70);
        const rest = await restoreAndFinish(first, to);
        assertEquals(first.text + rest, whole);
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
} else {
  console.warn("note: cross-backend snapshot tests are skipped: KVM is not available here");
}

Deno.test("cross-process: snapshot in one process, --restore in another", async () => {
  const whole = await uninterrupted("interp");
  const dir = Deno.makeTempDirSync();
  try {
    const first = await runAndSnapshot("interp", dir, 120);
    const r = await runCli([
      "--backend",
      "interp",
      "--restore",
      first.statePath,
      "--mem-file",
      first.memPath,
    ]);
    assertEquals(r.stderr, "");
    assertEquals(r.status, 1);
    assertEquals(first.text + r.stdout, whole);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

function refused(fn: () => unknown, ...parts: string[]): void {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert(err instanceof VmmError, `expected a VmmError, got ${err}`);
  for (const p of parts) assert(err.message.includes(p), `"${err.message}" should mention "${p}"`);
}

Deno.test("bad snapshot files are refused, naming the file and the problem", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const { statePath, memPath } = await runAndSnapshot("interp", dir, 10);
    readSnapshot(statePath, memPath); // the good one reads
    const good = Deno.readFileSync(statePath);
    const bad = `${dir}/bad.state`;
    const write = (b: Uint8Array) => Deno.writeFileSync(bad, b);

    const corrupt = good.slice();
    corrupt[good.length >> 1] = corrupt[good.length >> 1]! ^ 0x20;
    write(corrupt);
    refused(() => readSnapshot(bad, memPath), bad, "checksum mismatch", "corrupted");

    write(good.subarray(0, good.length - 100));
    refused(() => readSnapshot(bad, memPath), bad, "truncated");
    write(good.subarray(0, 10));
    refused(() => readSnapshot(bad, memPath), bad, "truncated");

    const newer = good.slice();
    new DataView(newer.buffer).setUint32(8, 2, true);
    write(newer);
    refused(() => readSnapshot(bad, memPath), bad, "format version 2", "newer release");

    const magic = good.slice();
    magic[0] = 0x41;
    write(magic);
    refused(() => readSnapshot(bad, memPath), bad, "bad magic");

    const mem = Deno.readFileSync(memPath);
    const badMem = `${dir}/bad.mem`;
    Deno.writeFileSync(badMem, mem.subarray(0, mem.length - 4096));
    refused(() => readSnapshot(statePath, badMem), badMem, "truncated", `${16 << 20} bytes`);
    Deno.writeFileSync(badMem, new Uint8Array(32 << 20));
    refused(() => readSnapshot(statePath, badMem), badMem, `${32 << 20} bytes`);
    refused(() => readSnapshot(`${dir}/none.state`, memPath), "none.state", "cannot read");

    // Through the CLI: a clear message, no stack trace.
    write(corrupt);
    const r = await runCli(["--restore", bad, "--mem-file", memPath]);
    assertEquals(r.status, 1, r.stderr);
    assertEquals(r.stdout, "");
    assert(r.stderr.startsWith(`denovisor: Snapshot file "${bad}": checksum mismatch`), r.stderr);
    assert(!r.stderr.includes("    at "), r.stderr);
    const u = await runCli(["--restore", bad]);
    assertEquals(u.status, 2);
    assert(u.stderr.includes("--mem-file"), u.stderr);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the memory file is sparse: zero pages cost no disk and are not read back", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const { statePath, memPath } = await runAndSnapshot("interp", dir, 5);
    // The state lists the pages that are not zero; a restore reads only those.
    const pages = readSnapshot(statePath, memPath).pages.reduce((n, [, c]) => n + c, 0);
    assertTrue(pages > 0 && pages < 16, `${pages} pages with data`);
    const st = Deno.statSync(memPath);
    assertEquals(st.size, 16 << 20);
    // blocks are 512-byte units; a 16 MiB guest that touched a few pages needs far less.
    if (st.blocks !== null) assert(st.blocks * 512 < (1 << 20), `${st.blocks} blocks`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("interp: a Diff snapshot holds only the pages written since the Full one, and restores once applied", async () => {
  const whole = await uninterrupted("interp");
  const dir = Deno.makeTempDirSync();
  let machine: Machine | null = null;
  let pauseAt = 40;
  const out = collector((n) => {
    if (n === pauseAt) machine?.pause();
  });
  machine = await buildMachine(config("interp"), { ...quiet, stdout: out.sink });
  try {
    assertEquals(machine.run().reason, { kind: "pause" });
    const full = createSnapshot(machine, {
      statePath: `${dir}/full.state`,
      memPath: `${dir}/full.mem`,
      type: "Full",
    });
    pauseAt = 120;
    assertEquals(machine.run().reason, { kind: "pause" });
    const diff = createSnapshot(machine, {
      statePath: `${dir}/diff.state`,
      memPath: `${dir}/diff.mem`,
      type: "Diff",
    });
    const first = out.text;
    // The guest writes its counter, its stack and nothing else: a page or two.
    assertTrue(
      diff.memBytesWritten > 0 && diff.memBytesWritten <= 2 * 4096,
      `${diff.memBytesWritten}`,
    );
    assertTrue(diff.memBytesWritten < full.memBytesWritten);
    const snap = readSnapshot(`${dir}/diff.state`, `${dir}/diff.mem`);
    assertEquals(snap.type, "Diff");
    // Applied to a copy of the Full snapshot's memory, the Diff's state restores.
    Deno.copyFileSync(`${dir}/full.mem`, `${dir}/rebased.mem`);
    applyDiff(`${dir}/rebased.mem`, `${dir}/diff.state`, `${dir}/diff.mem`);
    const rest = await restoreAndFinish(
      { statePath: `${dir}/diff.state`, memPath: `${dir}/rebased.mem` },
      "interp",
    );
    assertEquals(first + rest, whole);
  } finally {
    machine.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", Deno.readFileSync(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

if (KVM_OK) {
  for (const from of ["kvm", "interp"] as const) {
    Deno.test(`kvm: a snapshot taken on ${from} restores with its memory file mapped copy-on-write; the file is unchanged`, async () => {
      const whole = await uninterrupted("kvm");
      const dir = Deno.makeTempDirSync();
      try {
        const first = await runAndSnapshot(from, dir, 50);
        const before = await sha256(first.memPath);
        const out = collector();
        const m = await restoreMachine(first, { ...quiet, stdout: out.sink }, { backend: "kvm" });
        try {
          assert(m.memoryMapped, "KVM maps the memory file instead of reading it");
          // A device's DMA lands in the private copy too.
          m.memory.writeU32(0x8000, 0xdead_beef);
          assertEquals(m.memory.readU32(0x8000), 0xdead_beef);
          assertEquals(m.run().reason, { kind: "exit", status: 1 }, out.text);
        } finally {
          m.close();
        }
        assertEquals(first.text + out.text, whole);
        // The guest wrote its counter and stack on every line: none of it reached the file.
        assertEquals(await sha256(first.memPath), before);
        // And it restores again, the same.
        assertEquals(first.text + (await restoreAndFinish(first, "kvm")), whole);
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }

  Deno.test("kvm: a Full snapshot over the memory file a running VM was restored from leaves that VM's RAM intact", async () => {
    const whole = await uninterrupted("kvm");
    const dir = Deno.makeTempDirSync();
    try {
      const first = await runAndSnapshot("kvm", dir, 50);
      let machine: Machine | null = null;
      let pauseAt = 100;
      const out = collector((n) => {
        if (n === pauseAt) machine?.pause();
      });
      machine = await restoreMachine(first, { ...quiet, stdout: out.sink }, { backend: "kvm" });
      try {
        assertEquals(machine.run().reason, { kind: "pause" });
        // Same paths: the mapped file is replaced, not truncated under the mapping.
        createSnapshot(machine, { statePath: first.statePath, memPath: first.memPath });
        pauseAt = -1;
        assertEquals(machine.run().reason, { kind: "exit", status: 1 });
      } finally {
        machine.close();
      }
      assertEquals(first.text + out.text, whole);
      // The new snapshot (taken 100 lines after the restore) restores too.
      const upTo = first.text.split("\n").length - 1 + 100;
      const prefix = whole.split("\n").slice(0, upTo).join("\n") + "\n";
      assertEquals(prefix + (await restoreAndFinish(first, "kvm")), whole);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });

  Deno.test("kvm: a Diff snapshot holds only the pages written since the Full one (KVM's dirty log), and restores once applied", async () => {
    const whole = await uninterrupted("kvm");
    const dir = Deno.makeTempDirSync();
    let machine: Machine | null = null;
    let pauseAt = 40;
    const out = collector((n) => {
      if (n === pauseAt) machine?.pause();
    });
    machine = await buildMachine(config("kvm"), { ...quiet, stdout: out.sink });
    try {
      assertEquals(machine.run().reason, { kind: "pause" });
      const full = createSnapshot(machine, {
        statePath: `${dir}/full.state`,
        memPath: `${dir}/full.mem`,
        type: "Full",
      });
      pauseAt = 120;
      assertEquals(machine.run().reason, { kind: "pause" });
      const diff = createSnapshot(machine, {
        statePath: `${dir}/diff.state`,
        memPath: `${dir}/diff.mem`,
        type: "Diff",
      });
      const first = out.text;
      // The guest writes its counter, its stack and nothing else: a page or two, which only
      // KVM's dirty log knows about (no GuestMemory write happened in between).
      assertTrue(
        diff.memBytesWritten > 0 && diff.memBytesWritten <= 2 * 4096,
        `${diff.memBytesWritten}`,
      );
      assertTrue(diff.memBytesWritten < full.memBytesWritten);
      const snap = readSnapshot(`${dir}/diff.state`, `${dir}/diff.mem`);
      assertEquals(snap.type, "Diff");
      Deno.copyFileSync(`${dir}/full.mem`, `${dir}/rebased.mem`);
      applyDiff(`${dir}/rebased.mem`, `${dir}/diff.state`, `${dir}/diff.mem`);
      const rest = await restoreAndFinish(
        { statePath: `${dir}/diff.state`, memPath: `${dir}/rebased.mem` },
        "kvm",
      );
      assertEquals(first + rest, whole);
      // Nothing written since: the next Diff is empty.
      const none = createSnapshot(machine, {
        statePath: `${dir}/d2.state`,
        memPath: `${dir}/d2.mem`,
        type: "Diff",
      });
      assertEquals(none.memBytesWritten, 0);
    } finally {
      machine.close();
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("interp: guest time (clock and TSC) does not advance while the VM is paused, nor across a restore", async () => {
  let machine: Machine | null = null;
  let lines = 0;
  const sink = {
    writeSync: (b: Uint8Array) => {
      for (const x of b) if (x === 10 && ++lines === 30) machine?.pause();
      return b.length;
    },
  };
  const config = {
    backend: "interp" as const,
    memSize: 16 << 20,
    kernel: `${ROOT}tests/core/snapshot/guests/counter.bin`,
    format: "flat" as const,
    cmdline: "",
    initrd: null,
    devices: [],
    serial: { kind: "stdio" as const },
    trace: false,
  };
  machine = await buildMachine(config, { stdout: sink, log: () => {} });
  const dir = Deno.makeTempDirSync();
  try {
    assertEquals(machine.clock.now(), 0, "no VM time before the first run");
    assertEquals(machine.run().reason, { kind: "pause" });
    const clock0 = machine.clock.now();
    const tsc0 = machine.vcpu.getState().msrs.get(MSR.TSC)!;
    await sleep(100);
    assertEquals(machine.clock.now(), clock0);
    const tsc1 = machine.vcpu.getState().msrs.get(MSR.TSC)!;
    assertTrue(tsc1 - tsc0 < 1_000n, `TSC moved ${tsc1 - tsc0} while paused`);
    const files = { statePath: `${dir}/s`, memPath: `${dir}/m` };
    createSnapshot(machine, files);
    await sleep(100);
    const restored = await restoreMachine(files, { stdout: sink, log: () => {} });
    try {
      const c = restored.clock.now();
      assertTrue(Math.abs(c - clock0) < 1e3, `restored clock ${c} vs saved ${clock0}`);
      const tsc2 = restored.vcpu.getState().msrs.get(MSR.TSC)!;
      assertTrue(tsc2 >= tsc1 && tsc2 - tsc1 < 1_000n, `restored TSC ${tsc2} vs ${tsc1}`);
    } finally {
      restored.close();
    }
  } finally {
    machine.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a snapshot of a running machine is refused: pause it first", async () => {
  const dir = Deno.makeTempDirSync();
  let machine: Machine | null = null;
  let message = "";
  const out = collector((n) => {
    if (n !== 3 || machine === null) return;
    try {
      createSnapshot(machine, { statePath: `${dir}/s`, memPath: `${dir}/m` });
    } catch (err) {
      message = (err as Error).message;
    }
  });
  machine = await buildMachine(config("interp"), { ...quiet, stdout: out.sink });
  try {
    assertEquals(machine.run().reason, { kind: "exit", status: 1 });
    assertTrue(message.includes("pause it first"), message);
  } finally {
    machine.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
