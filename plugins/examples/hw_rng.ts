/**
 * Example plugin: a hardware random-number generator. Each read of the data port returns fresh
 * random bytes (1, 2 or 4 at a time); the status port reads 1 (data always ready).
 * Options: `port` (default 0x5A0), `seed` (a number: a reproducible xorshift stream for tests).
 *
 * Use: deno run -A mod.ts --kernel guest.bin --device plugins/examples/hw_rng.ts
 */

import { API_VERSION, definePlugin } from "../mod.ts";

export default definePlugin({
  name: "hw-rng",
  apiVersion: API_VERSION,
  description: "random numbers at port 0x5A0 (data) / 0x5A1 (status)",
  create(host) {
    const base = host.options.number("port", 0x5a0);
    const seeded = host.options.raw.seed !== undefined;
    let state = (host.options.number("seed", 1) >>> 0) || 1;
    const pool = new Uint32Array(64);
    let left = 0;
    let reads = 0;

    function next32(): number {
      if (seeded) {
        // xorshift32: reproducible, for tests.
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        return state >>> 0;
      }
      if (left === 0) {
        crypto.getRandomValues(pool);
        left = pool.length;
      }
      return pool[--left]!;
    }

    return {
      ports: [{
        base,
        length: 2,
        read(offset) {
          if (offset === 1) return 1;
          reads++;
          return next32();
        },
        write() {},
      }],
      reset() {
        left = 0;
      },
      save: () => ({ version: 1, fields: { state, reads } }),
      restore(s) {
        state = Number(s.fields.state ?? 1) >>> 0 || 1;
        reads = Number(s.fields.reads ?? 0);
      },
    };
  },
});
