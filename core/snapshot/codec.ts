/**
 * JSON with the types a MachineState holds that JSON lacks: bigints (`{"$bigint": "0x…"}`), Maps
 * (`{"$map": [[key, value], …]}`) and Uint8Arrays (`{"$bytes": base64}`). Decoding is exact: a
 * tagged object has exactly one key, so no plain state object is mistaken for one.
 */

const BIGINT = "$bigint", MAP = "$map", BYTES = "$bytes";

function toBase64(b: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < b.length; i += 0x8000) {
    bin += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function encodeValue(v: unknown): unknown {
  if (typeof v === "bigint") {
    return { [BIGINT]: v < 0n ? "-0x" + (-v).toString(16) : "0x" + v.toString(16) };
  }
  if (v instanceof Uint8Array) return { [BYTES]: toBase64(v) };
  if (v instanceof Map) return { [MAP]: [...v].map(([k, x]) => [encodeValue(k), encodeValue(x)]) };
  if (Array.isArray(v)) return v.map(encodeValue);
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = encodeValue(x);
    return out;
  }
  if (typeof v === "number" && !Number.isFinite(v)) {
    throw new TypeError(`cannot encode the number ${v} in a snapshot`);
  }
  return v;
}

function decodeValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeValue);
  if (typeof v !== "object" || v === null) return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1) {
    const x = o[keys[0]!];
    if (keys[0] === BIGINT && typeof x === "string") {
      return x.startsWith("-") ? -BigInt(x.slice(1)) : BigInt(x);
    }
    if (keys[0] === BYTES && typeof x === "string") return fromBase64(x);
    if (keys[0] === MAP && Array.isArray(x)) {
      return new Map(x.map((e) => {
        if (!Array.isArray(e) || e.length !== 2) throw new TypeError("malformed $map entry");
        return [decodeValue(e[0]), decodeValue(e[1])];
      }));
    }
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = decodeValue(o[k]);
  return out;
}

/**
 * JSON text for `value`, keeping bigints, Maps and Uint8Arrays.
 *
 * @example
 * ```ts
 * import { decodeJson, encodeJson } from "./codec.ts";
 * const text = encodeJson({ rip: 0x7c00n, msrs: new Map([[0x10, 5n]]) });
 * console.log(decodeJson(text)); // { rip: 31744n, msrs: Map(1) { 16 => 5n } }
 * ```
 */
export function encodeJson(value: unknown): string {
  return JSON.stringify(encodeValue(value));
}

/** Decodes what `encodeJson` wrote (throws SyntaxError or TypeError for malformed text). */
export function decodeJson(text: string): unknown {
  return decodeValue(JSON.parse(text));
}
