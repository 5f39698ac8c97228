/**
 * The VM clock and its one-shot timers. Time is VM time: host monotonic time while the clock
 * runs, frozen while it is paused, so a guest's `sleep 1` takes a second on either backend and a
 * paused VM sees no time pass. `save()`/`restore()` carry it to another Machine or process, where
 * it continues from the saved time (devices keep absolute VM-clock deadlines, so they need no
 * adjusting). Timers fire only from `service()`, which the vCPU loop calls between instructions
 * or exits: device code never runs concurrently.
 */

import type { Clock, Timer } from "../plugins/mod.ts";
import { VmmError } from "./errors.ts";

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

/** What `VmClock.save` returns: the VM time and whether the clock was running. */
export interface ClockState {
  /** VM time in nanoseconds. */
  nowNs: number;
  running: boolean;
}

/** VM-time clock with timers, serviced by the vCPU loop. Starts at 0, running unless told not to. */
export class VmClock implements Clock {
  /** VM time (ns) at `#hostOrigin`. */
  #base = 0;
  /** performance.now() (ms) when the clock last started running. */
  #hostOrigin = performance.now();
  #running: boolean;
  readonly #timers: VmTimer[] = [];
  /** Earliest armed deadline (Infinity when none): one compare decides whether to service. */
  nextDeadline = Infinity;

  /** A clock at 0, running (default) or paused until `resume()`. */
  constructor(opts: { running?: boolean } = {}) {
    this.#running = opts.running ?? true;
  }

  /** VM time in nanoseconds: time the clock has run since the VM started. */
  now(): number {
    return this.#running ? this.#base + (performance.now() - this.#hostOrigin) * 1e6 : this.#base;
  }

  /** True while VM time advances. */
  get running(): boolean {
    return this.#running;
  }

  /** Stops VM time (no-op when paused). Timer deadlines stay where they are in VM time. */
  pause(): void {
    if (!this.#running) return;
    this.#base = this.now();
    this.#running = false;
  }

  /** Lets VM time advance again from where it stopped (no-op when running). */
  resume(): void {
    if (this.#running) return;
    this.#hostOrigin = performance.now();
    this.#running = true;
  }

  /** The VM time and running flag, for snapshots. */
  save(): ClockState {
    return { nowNs: this.now(), running: this.#running };
  }

  /**
   * Continues from a saved time: `now()` returns `saved.nowNs` at once and advances from there
   * if `saved.running`. Armed timers keep their VM-time deadlines (devices re-arm theirs when
   * restored, so restore the clock first).
   */
  restore(saved: ClockState): void {
    if (
      typeof saved !== "object" || saved === null || typeof saved.nowNs !== "number" ||
      !Number.isFinite(saved.nowNs) || saved.nowNs < 0 || typeof saved.running !== "boolean"
    ) {
      throw new VmmError(
        `Cannot restore the VM clock from ${JSON.stringify(saved)}: expected ` +
          `{ nowNs: a time in ns >= 0, running: true or false }`,
      );
    }
    this.#base = saved.nowNs;
    this.#hostOrigin = performance.now();
    this.#running = saved.running;
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
