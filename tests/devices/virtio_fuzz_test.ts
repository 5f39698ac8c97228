import { assertEquals, assertTrue } from "../_assert.ts";
import { fuzzVirtio } from "../../tools/fuzz/virtio.ts";

// `deno task fuzz:virtio --count 1000000` runs the large count; CI runs 20k rings per seed.
for (const seed of [1, 0xdecafbad]) {
  Deno.test(`virtio fuzz: 20k random rings (seed ${seed}): no host exception, no stray write`, () => {
    const r = fuzzVirtio({ count: 20_000, seed });
    assertEquals(r.firstFailure, null);
    assertEquals([r.exceptions, r.internalErrors, r.strayWrites], [0, 0, 0]);
    // The generator reaches both sides: chains the device completes and guests it refuses.
    assertTrue(r.completed > 5_000, `${r.completed} chains completed`);
    assertTrue(r.needsReset > 1_000, `${r.needsReset} cases ended in DEVICE_NEEDS_RESET`);
  });
}
