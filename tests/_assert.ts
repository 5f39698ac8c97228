/** Assertions for the tests, on top of node:assert/strict (JSR's std is unreachable here). */

import assert from "node:assert/strict";

/** Deep equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

/** Truthiness. */
export function assertTrue(value: unknown, message?: string): asserts value {
  assert.ok(value, message);
}

/** `text` contains `part`. */
export function assertIncludes(text: string, part: string, message?: string): void {
  if (!text.includes(part)) {
    throw new assert.AssertionError({
      message: message ?? `expected text to include ${JSON.stringify(part)}, got:\n${text}`,
    });
  }
}

/** `fn` throws an instance of `cls`; returns the error. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof cls)) {
      throw new assert.AssertionError({
        message: `expected ${cls.name}, got ${(err as Error)?.constructor?.name}: ${
          (err as Error)?.message
        }`,
      });
    }
    if (includes !== undefined) assertIncludes(err.message, includes);
    return err;
  }
  throw new assert.AssertionError({ message: `expected ${cls.name} to be thrown` });
}

/** Async version of assertThrows. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: abstract new (...args: never[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof cls)) {
      throw new assert.AssertionError({
        message: `expected ${cls.name}, got ${(err as Error)?.constructor?.name}: ${
          (err as Error)?.message
        }`,
      });
    }
    if (includes !== undefined) assertIncludes(err.message, includes);
    return err;
  }
  throw new assert.AssertionError({ message: `expected ${cls.name} to be thrown` });
}
