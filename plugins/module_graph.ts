/**
 * Walks the local module graph of a sandboxed plugin before anything of it runs, with our own
 * scanner (no `deno info`: the VMM must not need to spawn processes to load a plugin).
 *
 * The walk gives the list of files the sandbox Worker may read, and the Worker imports the
 * plugin with only that read permission, so Deno itself refuses any file the walk did not list.
 * The scanner therefore only has to be inclusive where it matters: a specifier it misses is
 * denied by Deno when the graph loads (before any of it runs); a file it lists must be a code
 * module by name (`.ts`, `.js`, ...) and by target (a symlink `x.ts` to `/etc/os-release` is
 * refused), since Deno runs an extensionless file such as `/etc/os-release` as a script whose
 * `KEY="value"` lines reach setters a plugin defines on `globalThis`.
 */

import { PluginError } from "../core/errors.ts";

/** Extensions of the code modules a sandboxed plugin may import. */
export const CODE_EXTENSIONS: readonly string[] = [".js", ".mjs", ".jsx", ".ts", ".mts", ".tsx"];

/** The walk's result: every local file to allow, and the remote hosts modules come from. */
export interface ModuleGraph {
  /** Paths of the local modules (and, for symlinks, their targets) the Worker may read. */
  files: string[];
  /** Hosts (`host:port`) of remote modules, for the Worker's `import` permission. */
  remoteHosts: string[];
}

/** How `walkModuleGraph` walks. */
export interface WalkOptions {
  /**
   * Keep going past what the sandbox refuses (a trusted module's graph): a file that is not
   * code by name is listed and not scanned, import attributes are allowed.
   */
  lenient?: boolean;
  /** Receives every local file the walk touches, also when it then throws. */
  reached?: Set<string>;
}

/** Largest plugin graph walked (a guard against a generated graph of endless files). */
const MAX_MODULES = 2000;

/** True when `path` names a code module by its extension. */
export function isCodeModulePath(path: string): boolean {
  const lower = path.toLowerCase();
  return CODE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** The advice every refusal ends with. */
const CODE_ONLY = "a sandboxed plugin may import code modules only (" +
  CODE_EXTENSIONS.join(", ") + "); put data in a .ts module, or use --device PATH,trusted";

/**
 * Static import specifiers in `source`: `import "x"`, `import ... from "x"`, `export ... from "x"`
 * and `import("x")`. Throws a PluginError (naming `where`) for import attributes
 * (`with { type: "text" }`), which would read a file as data.
 */
export function scanImports(
  source: string,
  where: string,
  specifier: string,
  allowAttributes = false,
): string[] {
  const out: string[] = [];
  // Tokens that matter: identifiers/keywords, string literals, and the few punctuators the
  // patterns need. Comments, template literals and regex literals are skipped.
  const tokens: { t: "id" | "str" | "p"; v: string }[] = [];
  const n = source.length;
  let i = 0;
  const last = () => tokens[tokens.length - 1];
  while (i < n) {
    const c = source[i]!;
    if (c === "/" && source[i + 1] === "/") {
      while (i < n && source[i] !== "\n") i++;
    } else if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === '"' || c === "'") {
      let v = "";
      i++;
      while (i < n && source[i] !== c && source[i] !== "\n") {
        if (source[i] === "\\") i++;
        v += source[i] ?? "";
        i++;
      }
      i++;
      tokens.push({ t: "str", v });
    } else if (c === "`") {
      // Skip a template literal, nested `${ ... }` braces included (roughly; see the header).
      i++;
      let depth = 0;
      while (i < n) {
        const d = source[i]!;
        if (d === "\\") i += 2;
        else if (depth === 0 && d === "`") break;
        else if (d === "$" && source[i + 1] === "{") (depth++, i += 2);
        else if (depth > 0 && d === "}") (depth--, i++);
        else i++;
      }
      i++;
      tokens.push({ t: "p", v: "`" });
    } else if (c === "/") {
      // A regex literal where an expression may start, else division.
      const prev = last();
      const regexHere = !prev ||
        (prev.t === "p" && !/^[)\]}]$/.test(prev.v)) ||
        (prev.t === "id" &&
          /^(return|typeof|case|do|else|in|of|new|delete|void|throw)$/.test(prev.v));
      if (regexHere) {
        i++;
        let cls = false;
        while (i < n && source[i] !== "\n") {
          const d = source[i]!;
          if (d === "\\") i++;
          else if (d === "[") cls = true;
          else if (d === "]") cls = false;
          else if (d === "/" && !cls) break;
          i++;
        }
        i++;
        tokens.push({ t: "p", v: ")" }); // a value (so a `/` after it divides)
      } else {
        tokens.push({ t: "p", v: "/" });
        i++;
      }
    } else if (/[A-Za-z_$]/.test(c)) {
      let j = i + 1;
      while (j < n && /[\w$]/.test(source[j]!)) j++;
      tokens.push({ t: "id", v: source.slice(i, j) });
      i = j;
    } else if (/\s/.test(c)) {
      i++;
    } else if (/[0-9]/.test(c)) {
      let j = i + 1;
      while (j < n && /[\w.]/.test(source[j]!)) j++;
      tokens.push({ t: "id", v: "0" });
      i = j;
    } else {
      tokens.push({ t: "p", v: c });
      i++;
    }
  }
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k]!;
    if (tok.t !== "str") continue;
    const prev = tokens[k - 1], prev2 = tokens[k - 2];
    const isStatic = prev?.t === "id" && (prev.v === "from" || prev.v === "import");
    const isDynamic = prev?.t === "p" && prev.v === "(" && prev2?.t === "id" &&
      prev2.v === "import";
    if (!isStatic && !isDynamic) continue;
    const next = tokens[k + 1];
    const attributes =
      (isStatic && next?.t === "id" && (next.v === "with" || next.v === "assert")) ||
      (isDynamic && next?.t === "p" && next.v === ",");
    if (attributes && !allowAttributes) {
      throw new PluginError(
        `Plugin "${specifier}" imports "${tok.v}" with import attributes (in ${where}): ` +
          `${CODE_ONLY}`,
      );
    }
    out.push(tok.v);
  }
  return out;
}

/** The refusal of a `--device` path that is not a code module (e.g. `/etc/hostname`). */
export function notCodePlugin(specifier: string): PluginError {
  return new PluginError(
    `Plugin "${specifier}" is not a code module: a device plugin is a ` +
      `${CODE_EXTENSIONS.join(", ")} file whose default export is made with definePlugin()`,
  );
}

/** What a specifier found in a module refers to. */
function resolveIn(spec: string, base: URL): URL | null {
  if (/^(\.{0,2}\/|file:|https?:)/.test(spec)) {
    try {
      return new URL(spec, base);
    } catch {
      return null;
    }
  }
  return null; // node:, npm:, jsr:, data: or a bare name: Deno decides (and denies) at load
}

/**
 * Walks the graph from `root` (a `file:` or remote URL) and returns the files and hosts the
 * sandbox may load. Throws a PluginError naming the first module that is not code.
 */
export async function walkModuleGraph(
  root: URL,
  specifier: string,
  opts: WalkOptions = {},
): Promise<ModuleGraph> {
  const lenient = opts.lenient === true;
  const files = new Set<string>();
  const hosts = new Set<string>();
  const seen = new Set<string>();
  const queue: { url: URL; from: string }[] = [{ url: root, from: "the --device option" }];
  while (queue.length > 0) {
    const { url, from } = queue.shift()!;
    if (seen.has(url.href)) continue;
    seen.add(url.href);
    if (seen.size > MAX_MODULES) {
      throw new PluginError(`Plugin "${specifier}" imports more than ${MAX_MODULES} modules`);
    }
    if (url.protocol === "http:" || url.protocol === "https:") {
      hosts.add(url.host);
      continue; // fetched by Deno; a remote module cannot import a local file
    }
    if (url.protocol !== "file:") continue;
    const path = decodeURIComponent(url.pathname);
    const notCode = (what: string) =>
      new PluginError(
        `Plugin "${specifier}" imports "${path}" (from ${from}), which ${what}: ${CODE_ONLY}`,
      );
    if (lenient && !isCodeModulePath(path) && url.href !== root.href) {
      files.add(path); // data a trusted module imports (JSON, text): read, not scanned
      continue;
    }
    if (!isCodeModulePath(path)) {
      if (url.href === root.href) throw notCodePlugin(specifier);
      throw notCode("is not a code module");
    }
    let real: string;
    opts.reached?.add(path);
    try {
      real = await Deno.realPath(path);
      opts.reached?.add(real);
      if (!(await Deno.stat(real)).isFile) throw notCode("is not a file");
    } catch (err) {
      if (err instanceof PluginError) throw err;
      throw new PluginError(
        `Plugin "${specifier}" imports "${path}" (from ${from}), which cannot be read: ` +
          `${(err as Error).message}`,
      );
    }
    if (lenient && !isCodeModulePath(real) && url.href !== root.href) {
      files.add(path).add(real);
      continue;
    }
    if (!isCodeModulePath(real)) throw notCode(`links to "${real}", not a code module`);
    files.add(path);
    files.add(real);
    const source = await Deno.readTextFile(real);
    for (const spec of scanImports(source, path, specifier, lenient)) {
      const target = resolveIn(spec, url);
      if (target) queue.push({ url: target, from: path });
    }
  }
  return { files: [...files], remoteHosts: [...hosts] };
}
