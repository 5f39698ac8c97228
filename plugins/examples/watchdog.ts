/**
 * Example plugin: a watchdog timer with a millisecond clock, built on the host clock and its
 * timers. The guest arms it with a timeout and kicks it before the timeout passes; if a timeout
 * passes without a kick, the device warns and resets the VM (or powers it off, or ends it with a
 * status, as `action` says).
 *
 * Registers (32-bit, at `port`, default 0x590): +0 timeout in ms (write: arm; 0 disarms),
 * +4 kick (write anything), +8 clock (read: ms since the VM started), +12 status (read: 0
 * disarmed, 1 armed, 2 expired).
 * Options: `port`, `action` (reset, off or exit; default reset), `status` (exit status for
 * action=exit, default 1).
 *
 * Use: deno run -A mod.ts --kernel guest.bin --device plugins/examples/watchdog.ts,action=exit
 */

import { API_VERSION, definePlugin } from "../mod.ts";

/** Register offsets. */
export const REG_TIMEOUT = 0, REG_KICK = 4, REG_CLOCK = 8, REG_STATUS = 12;
/** Status values. */
export const DISARMED = 0, ARMED = 1, EXPIRED = 2;
const NS_PER_MS = 1_000_000;

export default definePlugin({
  name: "watchdog",
  apiVersion: API_VERSION,
  description: "watchdog timer and ms clock at port 0x590",
  create(host) {
    const base = host.options.number("port", 0x590);
    const action = host.options.string("action", "reset");
    if (!["reset", "off", "exit"].includes(action)) {
      throw new RangeError(`option action=${action} is not reset, off or exit`);
    }
    const exitStatus = host.options.number("status", 1);
    let timeoutMs = 0, status = DISARMED, kicks = 0;

    const timer = host.clock.timer(() => {
      status = EXPIRED;
      host.log.warn(`watchdog expired: no kick within ${timeoutMs} ms (after ${kicks} kicks)`);
      if (action === "exit") host.power.exit(exitStatus);
      else if (action === "off") host.power.off();
      else host.power.reset();
    });

    function arm(): void {
      if (timeoutMs === 0) {
        timer.cancel();
        status = DISARMED;
      } else {
        timer.arm(timeoutMs * NS_PER_MS);
        status = ARMED;
      }
    }

    return {
      ports: [{
        base,
        length: 16,
        read(offset) {
          if (offset === REG_CLOCK) return Math.floor(host.clock.now() / NS_PER_MS) >>> 0;
          if (offset === REG_STATUS) return status;
          if (offset === REG_TIMEOUT) return timeoutMs;
          return 0;
        },
        write(offset, _size, value) {
          if (offset === REG_TIMEOUT) {
            timeoutMs = value >>> 0;
            arm();
          } else if (offset === REG_KICK && status === ARMED) {
            kicks++;
            arm();
          }
        },
      }],
      reset() {
        timeoutMs = 0;
        kicks = 0;
        arm();
      },
      save: () => ({ version: 1, fields: { timeoutMs, status, kicks } }),
      restore(s) {
        timeoutMs = Number(s.fields.timeoutMs ?? 0);
        kicks = Number(s.fields.kicks ?? 0);
        arm();
      },
    };
  },
});
