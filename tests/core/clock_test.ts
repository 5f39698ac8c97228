import { assertEquals } from "../_assert.ts";
import { VmClock } from "../../core/clock.ts";

function waitUntil(clock: VmClock, ns: number): void {
  while (clock.now() < ns) { /* spin: the VM clock is host time */ }
}

Deno.test("a timer armed from another timer's callback still fires, wherever it is listed", () => {
  const clock = new VmClock();
  const fired: string[] = [];
  // `early` is listed first; `late`'s callback re-arms it after the loop has passed it.
  const early = clock.timer(() => fired.push("early"));
  const late = clock.timer(() => {
    fired.push("late");
    early.arm(1_000);
  });
  late.arm(0);
  waitUntil(clock, 10_000);
  clock.fireDue();
  assertEquals(fired, ["late"]);
  assertEquals(clock.nextDeadline < Infinity, true, "the re-armed timer keeps a deadline");
  waitUntil(clock, clock.nextDeadline + 1);
  clock.fireDue();
  assertEquals(fired, ["late", "early"]);
  assertEquals(clock.nextDeadline, Infinity);
});

Deno.test("timers fire only once their deadline has passed, and cancel drops them", () => {
  const clock = new VmClock();
  let n = 0;
  const t = clock.timer(() => n++);
  t.arm(50_000_000);
  clock.fireDue();
  assertEquals(n, 0);
  t.cancel();
  waitUntil(clock, 60_000_000);
  clock.fireDue();
  assertEquals(n, 0);
});
