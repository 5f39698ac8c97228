/**
 * The API's request-body checks: each refusal is an ApiError (a 400 whose `fault_message`
 * names the field and the fix).
 */

/** A refused request: becomes 400 with `fault_message`. */
export class ApiError extends Error {}

/** A JSON object body. */
export type Json = Record<string, unknown>;

/** Refuses fields outside `allowed`, naming them and the accepted ones. */
export function onlyFields(obj: Json, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw new ApiError(
        `${what}: unknown field "${key}"; accepted fields: ${allowed.join(", ")}`,
      );
    }
  }
}

/** A string field (absent or null: undefined, unless required). */
export function str(obj: Json, key: string, what: string, required: boolean): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) throw new ApiError(`${what}: missing field "${key}" (a string)`);
    return undefined;
  }
  if (typeof v !== "string") throw new ApiError(`${what}: field "${key}" must be a string`);
  if (required && v === "") throw new ApiError(`${what}: field "${key}" must not be empty`);
  return v;
}

/** A boolean field. */
export function bool(obj: Json, key: string, what: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw new ApiError(`${what}: field "${key}" must be true or false`);
  return v;
}

/** An integer field. */
export function int(obj: Json, key: string, what: string, required: boolean): number | undefined {
  const v = obj[key];
  if (v === undefined) {
    if (required) throw new ApiError(`${what}: missing field "${key}" (an integer)`);
    return undefined;
  }
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new ApiError(`${what}: field "${key}" must be an integer`);
  }
  return v;
}
