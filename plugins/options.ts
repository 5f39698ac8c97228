/**
 * `--device PATH_OR_URL[,key=value...]` parsing and the PluginOptions a device reads its
 * settings from.
 */

import { UsageError } from "../core/errors.ts";
import type { PluginOptions } from "./mod.ts";

/** One `--device` argument, parsed. */
export interface DeviceSpec {
  /** File path or URL of the plugin module. */
  specifier: string;
  /** `key=value` options (a bare `key` means "true"). */
  options: Record<string, string>;
}

/** Parses `PATH_OR_URL[,key=value...]`. */
export function parseDeviceSpec(arg: string): DeviceSpec {
  const [specifier, ...rest] = arg.split(",");
  if (!specifier) {
    throw new UsageError(
      `--device "${arg}" names no plugin: expected --device PATH_OR_URL[,key=value...]`,
    );
  }
  const options: Record<string, string> = {};
  for (const part of rest) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) {
      throw new UsageError(`--device "${arg}": option "${part}" is not key=value`);
    }
    options[key] = eq < 0 ? "true" : part.slice(eq + 1);
  }
  return { specifier, options };
}

/** Wraps raw options with typed getters; `owner` names the device in error messages. */
export function makeOptions(raw: Record<string, string>, owner: string): PluginOptions {
  const frozen = Object.freeze({ ...raw });
  return {
    raw: frozen,
    string: (key, fallback) => frozen[key] ?? fallback,
    number(key, fallback) {
      const v = frozen[key];
      if (v === undefined) return fallback;
      const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^-?\d+$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n)) {
        throw new UsageError(
          `Device "${owner}": option ${key}=${v} is not a number (use decimal or 0x hex)`,
        );
      }
      return n;
    },
    boolean(key, fallback) {
      const v = frozen[key];
      if (v === undefined) return fallback;
      if (/^(true|1|yes|on)$/i.test(v)) return true;
      if (/^(false|0|no|off)$/i.test(v)) return false;
      throw new UsageError(`Device "${owner}": option ${key}=${v} is not true or false`);
    },
  };
}
