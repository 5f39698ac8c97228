/** Tiny flat guests for the hardening tests, written to a temporary file. */

/** `cli; mov dx, 0x5e0; l: out dx, al; jmp l`: writes port 0x5E0 forever. */
export const PORT_LOOP: Uint8Array = new Uint8Array([0xfa, 0xba, 0xe0, 0x05, 0xee, 0xeb, 0xfd]);

/** Writes `bytes` to a new temporary file and returns its path. */
export async function tempImage(bytes: Uint8Array, suffix = ".bin"): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "denovisor-hardening-", suffix });
  await Deno.writeFile(path, bytes);
  return path;
}

/** `cli; l: jmp l`: spins forever without touching any device. */
export const SPIN: Uint8Array = new Uint8Array([0xfa, 0xeb, 0xfe]);
