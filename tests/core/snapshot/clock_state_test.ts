/**
 * The VM clock as state: paused time does not pass (its time and its timers), and a restored
 * clock continues from the saved time. (A whole machine's clock and TSC across a pause and a
 * restore: tests/core/snapshot/snapshot_test.ts.)
 */

import { assertEquals, assertThrows, assertTrue } from "../../_assert.ts";
import { type ClockState, VmClock } from "../../../core/clock.ts";
import { HostError, VmmError } from "../../../core/errors.ts";
import { createKvmBackend } from "../../../core/kvm/backend.ts";
import { KVM_OK } from "../../_run.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MS = 1e6;

Deno.test("a paused clock stands still, resumes where it stopped, and timers wait with it", async () => {
  const clock = new VmClock();
  let fired = 0;
  clock.timer(() => fired++).arm(20 * MS);
  clock.pause();
  const t0 = clock.now();
  assertEquals(clock.running, false);
  await sleep(40);
  assertEquals(clock.now(), t0, "no VM time passes while paused");
  clock.fireDue();
  assertEquals(fired, 0, "a timer does not fire on host time spent paused");
  clock.resume();
  assertTrue(clock.now() - t0 < 10 * MS, "resume continues from the paused time");
  await sleep(30);
  clock.fireDue();
  assertEquals(fired, 1);
});

Deno.test("a restored clock continues from the saved time, running or paused", async () => {
  const a = new VmClock();
  await sleep(20);
  const saved: ClockState = a.save();
  assertTrue(saved.running && saved.nowNs >= 15 * MS, JSON.stringify(saved));
  const b = new VmClock();
  b.restore({ nowNs: saved.nowNs, running: false });
  assertEquals(b.now(), saved.nowNs);
  await sleep(20);
  assertEquals(b.now(), saved.nowNs);
  b.restore(saved);
  const t = b.now();
  assertTrue(t >= saved.nowNs && t < saved.nowNs + 10 * MS, `${t}`);
  assertThrows(() => b.restore({ nowNs: -1, running: true }), VmmError, "VM clock");
  assertThrows(
    () => b.restore({ nowNs: 5 } as unknown as ClockState),
    VmmError,
    "running: true or false",
  );
});

Deno.test({
  name: "kvm: a new VM's kvmclock continues from the saved one (KVM_GET_CLOCK / KVM_SET_CLOCK)",
  ignore: !KVM_OK,
  async fn() {
    const a = createKvmBackend();
    const b = createKvmBackend();
    try {
      a.createMemory(1 << 20);
      b.createMemory(1 << 20);
      await sleep(50);
      const saved = a.saveState();
      const ns = saved.kvmclockNs as bigint;
      await sleep(200);
      b.restoreState(saved);
      const now = b.saveState().kvmclockNs as bigint;
      assertTrue(now >= ns && now - ns < 50_000_000n, `saved ${ns}, restored ${now}`);
      assertThrows(() => b.restoreState({ clock: 1 }), HostError, "kvmclockNs");
    } finally {
      a.close();
      b.close();
    }
  },
});
