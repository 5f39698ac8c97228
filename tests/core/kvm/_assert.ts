/** Re-exports the assertions the KVM tests use from node:assert, in std's calling style. */
import nodeAssert from "node:assert/strict";

/** Asserts `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}
/** Asserts deep equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}
/** Asserts `s` matches `re`. */
export function assertMatch(s: string, re: RegExp): void {
  nodeAssert.match(s, re);
}
/** Asserts `fn` throws an instance of `cls` and returns it. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: new (...args: never[]) => E,
): E {
  try {
    fn();
  } catch (err) {
    if (err instanceof cls) return err;
    throw new Error(`expected ${cls.name}, got ${err}`);
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}
