/**
 * Versioned device state: the one check every `restore()` goes through (the Machine for
 * in-process devices, the sandbox for isolated ones), and the encoding that carries a state
 * across the sandbox channel (JSON, with Uint8Array fields kept as bytes).
 */

import { PluginError } from "../core/errors.ts";
import type { DeviceState } from "./mod.ts";

/** What `checkStateVersion` needs to know about the plugin. */
export interface StateOwner {
  /** Plugin name (used when no device name is given). */
  readonly name: string;
  /** Newest state version the plugin writes. */
  readonly stateVersion: number;
}

/**
 * Throws PluginError unless `state` is a device state whose version `owner` can read: a
 * `{ version, fields }` object with an integer version from 1 to `owner.stateVersion`.
 *
 * @example
 * ```ts
 * import { checkStateVersion } from "./state.ts";
 * checkStateVersion({ name: "latch", stateVersion: 2 }, { version: 1, fields: {} }); // fine
 * ```
 */
export function checkStateVersion(
  owner: StateOwner,
  state: unknown,
  deviceName: string = owner.name,
): asserts state is DeviceState {
  const s = state as Partial<DeviceState> | null;
  if (typeof s !== "object" || s === null || typeof s.fields !== "object" || s.fields === null) {
    throw new PluginError(
      `Device "${deviceName}" cannot restore ${describeValue(state)}: a device state is ` +
        `{ version, fields } as save() returns it`,
    );
  }
  const v = s.version;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new PluginError(
      `Device "${deviceName}" cannot restore a state with unknown version ${
        JSON.stringify(v) ?? String(v)
      }: versions are whole numbers from 1`,
    );
  }
  if (v > owner.stateVersion) {
    throw new PluginError(
      `Device "${deviceName}" cannot restore state version ${v}: this plugin writes version ` +
        `${owner.stateVersion} at most (the state comes from a newer release of the plugin; ` +
        `update the plugin to restore it)`,
    );
  }
}

function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object without fields" : `a ${typeof v}`;
}

const BYTES_TAG = "$bytes";

/** Encodes a device state as JSON text; Uint8Array fields survive as bytes. */
export function encodeState(state: DeviceState): string {
  return JSON.stringify(state, (_key, value) => {
    if (value instanceof Uint8Array) {
      let bin = "";
      for (let i = 0; i < value.length; i++) bin += String.fromCharCode(value[i]!);
      return { [BYTES_TAG]: btoa(bin) };
    }
    return value;
  });
}

/** Decodes what `encodeState` wrote. */
export function decodeState(text: string): DeviceState {
  return JSON.parse(text, (_key, value) => {
    if (
      typeof value === "object" && value !== null && typeof value[BYTES_TAG] === "string" &&
      Object.keys(value).length === 1
    ) {
      const bin = atob(value[BYTES_TAG]);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    }
    return value;
  });
}
