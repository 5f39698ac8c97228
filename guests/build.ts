/**
 * Rebuilds the embedded default guest: assembles `guests/default.asm` with nasm into
 * `guests/default.bin` and writes `guests/default.ts`, which carries the same bytes so the CLI
 * needs no file read. Run from anywhere: `deno run -A guests/build.ts`.
 */

const HERE = new URL(".", import.meta.url);
const LINE = 76;

/** Assembles `default.asm` and returns the image bytes (throws when nasm fails). */
export async function assembleDefaultGuest(outPath: string): Promise<Uint8Array> {
  const src = new URL("default.asm", HERE).pathname;
  const out = await new Deno.Command("nasm", { args: ["-f", "bin", "-o", outPath, src] }).output();
  if (!out.success) {
    throw new Error(`nasm failed on ${src}:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return await Deno.readFile(outPath);
}

/** The source text of `default.ts` for the given image bytes. */
export function renderDefaultGuestModule(image: Uint8Array): string {
  let b64 = "";
  for (const byte of image) b64 += String.fromCharCode(byte);
  b64 = btoa(b64);
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += LINE) lines.push(`  "${b64.slice(i, i + LINE)}"`);
  return `/**
 * The guest \`deno run mod.ts\` boots when no --kernel is given: the bytes of
 * \`guests/default.bin\`, built from \`guests/default.asm\` by \`guests/build.ts\` (do not edit by
 * hand; a test checks this file against a fresh nasm build). It is a flat real-mode image: load
 * it with format "flat". It prints a banner and the backend's name over COM1, switches to
 * protected mode, prints \`protected mode: ok\` and resets through the i8042 (exit status 0).
 */

const IMAGE_BASE64 =
${lines.join(" +\n")};

/**
 * The default guest image (${image.length} bytes, flat real mode, loaded at 0x7C00).
 *
 * @example
 * \`\`\`ts
 * import { DEFAULT_GUEST } from "./default.ts";
 * console.log(DEFAULT_GUEST.length);
 * \`\`\`
 */
export const DEFAULT_GUEST: Uint8Array = Uint8Array.from(
  atob(IMAGE_BASE64),
  (c) => c.charCodeAt(0),
);
`;
}

if (import.meta.main) {
  const bin = new URL("default.bin", HERE).pathname;
  const image = await assembleDefaultGuest(bin);
  await Deno.writeTextFile(new URL("default.ts", HERE), renderDefaultGuestModule(image));
  console.log(`guests/default.bin and guests/default.ts: ${image.length} bytes`);
}
