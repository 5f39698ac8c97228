/**
 * Example virtio plugin: an entropy device (virtio device ID 4, which Linux's `virtio_rng`
 * drives as /dev/hwrng) that gives a documented, reproducible stream, so a test can check the
 * guest read exactly those bytes. Not a source of real randomness: use `--rng` for that.
 *
 * The stream: xorshift32 (`x ^= x << 13; x ^= x >>> 17; x ^= x << 5`, on unsigned 32-bit `x`)
 * from `x = seed` (option `seed`, default 1; 0 counts as 1). Each step's new `x` gives four
 * bytes, least significant first. The device fills each request's writable bytes with the next
 * bytes of the stream, in order across requests; a guest reset does not restart it, a snapshot
 * keeps its place.
 *
 * Use: deno run -A mod.ts --exec 'head -c 16 /dev/hwrng | od -An -tx1' \
 *        --device plugins/examples/virtio_rng.ts,seed=7
 */

import { API_VERSION, defineVirtioPlugin } from "../mod.ts";

/** The virtio device ID of an entropy source (virtio 1.2, section 5.4). */
const VIRTIO_ID_ENTROPY = 4;

export default defineVirtioPlugin({
  name: "virtio-xorshift-rng",
  apiVersion: API_VERSION,
  deviceId: VIRTIO_ID_ENTROPY,
  description: "virtio-rng with a reproducible xorshift32 stream (option seed=N)",
  create(host) {
    let x = (host.options.number("seed", 1) >>> 0) || 1;
    let word = 0; // the current step's value
    let used = 4; // bytes of `word` already given
    let given = 0; // bytes given so far (shown in the log at close)

    function nextByte(): number {
      if (used === 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        word = x;
        used = 0;
      }
      return (word >>> (8 * used++)) & 0xff;
    }

    return {
      queues: [64], // one request queue (5.4.2)
      handle(chain) {
        // A request is only device-writable buffers; fill them all.
        for (let i = 0; i < chain.writable.length; i++) chain.writable[i] = nextByte();
        given += chain.writable.length;
        return chain.writable.length;
      },
      save: () => ({ version: 1, fields: { x, word, used, given } }),
      restore(state) {
        x = Number(state.fields.x) >>> 0;
        word = Number(state.fields.word) >>> 0;
        used = Number(state.fields.used);
        given = Number(state.fields.given);
      },
      close() {
        host.log.debug(`gave ${given} bytes`);
      },
    };
  },
});
