/**
 * How a denied host call of an in-process (built-in or trusted) device reads: the CLI runs the
 * machine in a Worker with only the permissions its VM needs (core/vm_permissions.ts), so a
 * device that reaches past them gets Deno's NotCapable error, whose "run again with the
 * --allow-read flag" advice does not apply. This turns it into one line naming what was denied.
 */

import { PluginError } from "./errors.ts";
import { escapeControl } from "./term_text.ts";

const ATTEMPTS: Record<string, string> = {
  read: "read a file",
  write: "write a file",
  net: "open a network connection",
  env: "read the environment",
  run: "spawn a process",
  ffi: "call native code through FFI",
  sys: "read system information",
  import: "import a remote module",
};

/**
 * A PluginError saying device `name` was denied a permission `where` ("while starting", "in its
 * port write handler"), or null when `err` is not a permission denial.
 */
export function deviceDenial(name: string, where: string, err: unknown): PluginError | null {
  if (!(err instanceof Error) || err.name !== "NotCapable") return null;
  const m = /Requires (\w+) access(?: to "?([^",]*)"?)?/.exec(err.message);
  const attempt = ATTEMPTS[m?.[1] ?? ""] ?? "use a host permission";
  const on = m?.[2] ? ` (${escapeControl(JSON.stringify(m[2]))})` : "";
  return new PluginError(
    `Device "${name}" tried to ${attempt}${on} ${where} and was denied: the VM runs with only ` +
      `the permissions it needs (its kernel, initrd, drives, serial file and device modules; ` +
      `see README "Permissions")`,
    { cause: err },
  );
}
