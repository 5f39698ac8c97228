/**
 * The VM clock and its one-shot timers. Time is host monotonic time since the VM started, so a
 * guest's `sleep 1` takes a second on either backend. Timers fire only from `service()`, which
 * the vCPU loop calls between instructions or exits: device code never runs concurrently.
 */

import type { Clock, Timer } from "../plugins/mod.ts";

/** A timer armed on a VmClock. */
class VmTimer implements Timer {
  deadline = Infinity;
  constructor(private readonly clock: VmClock, readonly callback: () => void) {}
  arm(delayNs: number): void {
    this.deadline = this.clock.now() + Math.max(0, delayNs);
    this.clock.schedule(this);
  }
  cancel(): void {
    this.deadline = Infinity;
  }
}

/** Host-time clock with timers, serviced by the vCPU loop. */
export class VmClock implements Clock {
  readonly #origin = performance.now();
  readonly #timers: VmTimer[] = [];
  /** Earliest armed deadline (Infinity when none): one compare decides whether to service. */
  nextDeadline = Infinity;

  /** Nanoseconds since the VM started. */
  now(): number {
    return (performance.now() - this.#origin) * 1e6;
  }

  /** Creates a one-shot timer. */
  timer(callback: () => void): Timer {
    const t = new VmTimer(this, callback);
    this.#timers.push(t);
    return t;
  }

  /** Called by timers when armed. */
  schedule(t: VmTimer): void {
    if (t.deadline < this.nextDeadline) this.nextDeadline = t.deadline;
  }

  /** Fires every timer whose deadline has passed. */
  fireDue(): void {
    if (this.nextDeadline === Infinity) return;
    const now = this.now();
    if (now < this.nextDeadline) return;
    for (const t of this.#timers) {
      if (t.deadline <= now) {
        t.deadline = Infinity;
        t.callback();
      }
    }
    // Recomputed after all callbacks ran: a callback may have armed any timer, including one
    // earlier in the list.
    let next = Infinity;
    for (const t of this.#timers) if (t.deadline < next) next = t.deadline;
    this.nextDeadline = next;
  }
}
