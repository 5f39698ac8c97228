/**
 * The VM clock as state: paused time does not pass (its time and its timers), and a restored
 * clock continues from the saved time. (A whole machine's clock and TSC across a pause and a
 * restore: tests/core/snapshot/snapshot_test.ts.)
 */

import { assertEquals, assertThrows, assertTrue } from "../../_assert.ts";
import { type ClockState, VmClock } from "../../../core/clock.ts";
import { VmmError } from "../../../core/errors.ts";

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
