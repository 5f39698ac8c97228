/**
 * Text from a plugin on its way to the user's terminal (its log lines, its error messages, a
 * sandboxed device's console output): control characters are shown escaped, never sent, so a
 * plugin cannot clear the screen, set the window title or forge a `denovisor:` line. Guest serial
 * output from the built-in UART does not come through here: it is the guest's terminal.
 */

/**
 * C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide text
 * (bidi embeddings/overrides/isolates, line/paragraph separators, zero-width no-break space).
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;

function escapeOne(c: string, keep: string): string {
  if (keep.includes(c)) return c;
  const code = c.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}

/** `text` with every control character escaped (`\x1b`, `\u202e`), except those in `keep`. */
export function escapeControl(text: string, keep = ""): string {
  return String(text).replace(CONTROL, (c) => escapeOne(c, keep));
}

/**
 * A plugin's log message as lines for stderr: tabs kept, other controls escaped, and every line
 * after the first given `prefix` too, so a newline cannot start a line that looks like ours.
 */
export function prefixLines(prefix: string, text: string): string {
  return escapeControl(text, "\t\n").split("\n").map((l) => prefix + l).join("\n");
}

/**
 * Console bytes from a sandboxed device: line ends and tabs kept, other controls escaped (text
 * that is not plain ASCII is decoded as UTF-8 for that, so bidi overrides are caught too).
 */
export function escapeConsoleBytes(bytes: Uint8Array): Uint8Array {
  let plain = true;
  for (const b of bytes) {
    if ((b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) || b >= 0x7f) {
      plain = false;
      break;
    }
  }
  if (plain) return bytes; // the common case: no copy
  return encoder.encode(escapeControl(decoder.decode(bytes), "\t\n\r"));
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
