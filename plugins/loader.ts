/**
 * Loads a device plugin module with dynamic `import()` and checks that it exports a device.
 * Paths are resolved against the current directory; URLs are imported as they are.
 */

import { PluginError } from "../core/errors.ts";
import { escapeControl } from "../core/term_text.ts";
import { isPlugin, type Plugin } from "./mod.ts";
import { isCodeModulePath, notCodePlugin } from "./module_graph.ts";

/** Resolves a `--device` specifier to a module URL. */
export function resolvePluginUrl(specifier: string, cwd = Deno.cwd()): URL {
  if (/^(https?|file|data|npm|jsr):/.test(specifier)) return new URL(specifier);
  const path = specifier.startsWith("/") ? specifier : `${cwd}/${specifier}`;
  return new URL(`file://${path.split("/").map(encodeURIComponent).join("/")}`);
}

/** Imports the plugin at `specifier` and returns its definition. Throws PluginError. */
export async function loadPlugin(specifier: string): Promise<Plugin> {
  const url = resolvePluginUrl(specifier);
  if (url.protocol === "file:") {
    try {
      const info = await Deno.stat(url);
      if (!info.isFile) {
        throw new PluginError(
          `Plugin "${specifier}" is not a file: give the path of a .ts or .js module`,
        );
      }
      // Deno would run any file as a script (`/etc/hostname` as JavaScript): code modules only.
      if (!isCodeModulePath(decodeURIComponent(url.pathname))) throw notCodePlugin(specifier);
    } catch (err) {
      if (err instanceof PluginError) throw err;
      throw new PluginError(
        `Plugin "${specifier}" cannot be read: ${
          (err as Error).message
        }. Check the path given to --device`,
      );
    }
  }
  let mod: Record<string, unknown>;
  try {
    mod = await import(url.href);
  } catch (err) {
    const msg = escapeControl(err instanceof Error ? err.message.split("\n")[0]! : String(err));
    throw new PluginError(`Plugin "${specifier}" failed to load: ${msg}`, { cause: err });
  }
  const def = mod.default;
  if (!isPlugin(def)) {
    throw new PluginError(
      `Module "${specifier}" does not export a device: its default export must be made with ` +
        `definePlugin() from denovisor's plugins/mod.ts`,
    );
  }
  return def;
}
