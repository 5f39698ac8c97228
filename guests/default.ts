/**
 * The guest `deno run mod.ts` boots when no --kernel is given: the bytes of
 * `guests/default.bin`, built from `guests/default.asm` by `guests/build.ts` (do not edit by
 * hand; a test checks this file against a fresh nasm build). It is a flat real-mode image: load
 * it with format "flat". It prints a banner and the backend's name over COM1, switches to
 * protected mode, prints `protected mode: ok` and resets through the i8042 (exit status 0).
 */

const IMAGE_BASE64 =
  "+vwxwI7YjsCO0LwAfLr5A+66+wOwgO66+AOwAe66+QMwwO66+wOwA+6+1nzoRwC68AXu7Dz/dBK5" +
  "EACEwHQR6CUAuvAF7OLz6wa+CH3oJgCwCugSAA8BFtB8DyDADAEPIsDqgXwIAFC6/QPsqCB0+1i6" +
  "+APuw6yEwHQF6On/6/bDZrgQAI7YjsCO0LwAfAAAvhB9AACshMB0FIjDZrr9A+yoIHT7iNhmuvgD" +
  "7uvnsP7mZPTr/ZCQkAAAAAAAAAAA//8AAACazwD//wAAAJLPABcAuHwAAGRlbm92aXNvcjogaGVs" +
  "bG8gZnJvbSB0aGUgZGVmYXVsdCBndWVzdApiYWNrZW5kOiAAdW5rbm93bgBwcm90ZWN0ZWQgbW9k" +
  "ZTogb2sKAA==";

/**
 * The default guest image (292 bytes, flat real mode, loaded at 0x7C00).
 *
 * @example
 * ```ts
 * import { DEFAULT_GUEST } from "./default.ts";
 * console.log(DEFAULT_GUEST.length);
 * ```
 */
export const DEFAULT_GUEST: Uint8Array = Uint8Array.from(
  atob(IMAGE_BASE64),
  (c) => c.charCodeAt(0),
);
