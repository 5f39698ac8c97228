/**
 * Runs a flat test guest (loaded at 0000:7C00, repetition count at 0x500) under QEMU TCG: a
 * raw disk holds bench/guests/disk_loader.bin, which SeaBIOS boots, and the image after it. For
 * the interp bench group's QEMU baselines, and for tests that take QEMU's output as the oracle
 * where KVM cannot run a guest.
 */

const LOADER = new URL("./guests/disk_loader.bin", import.meta.url);

/** A raw disk: the loader sector (patched with the image size and `reps`) and the image. */
export function diskImage(loader: Uint8Array, image: Uint8Array, reps: number): Uint8Array {
  const sectors = Math.ceil(image.length / 512);
  const disk = new Uint8Array(512 * (1 + sectors));
  disk.set(loader);
  disk.set(image, 512);
  // The DAP: size 16, reserved 0, sector count, offset 0x7C00, segment 0, LBA 1; reps follows.
  let dap = -1;
  for (let i = 0; i < 500; i += 4) {
    if (disk[i] === 16 && disk[i + 1] === 0 && disk[i + 4] === 0x00 && disk[i + 5] === 0x7c) {
      dap = i;
      break;
    }
  }
  if (dap < 0) throw new Error("disk_loader.bin has no DAP: rebuild it from disk_loader.asm");
  const dv = new DataView(disk.buffer);
  dv.setUint16(dap + 2, sectors, true);
  dv.setUint32(dap + 16, reps, true);
  return disk;
}

/** What one QEMU run of a flat guest gave. */
export interface QemuFlatRun {
  /** Wall-clock seconds from spawning QEMU to its exit (start-up included). */
  seconds: number;
  /** What the guest wrote to COM1 (CRs dropped). */
  serial: string;
}

/** True when `qemu-system-x86_64` runs here (nothing is installed). */
export async function qemuPresent(): Promise<boolean> {
  try {
    const cmd = new Deno.Command("qemu-system-x86_64", { args: ["--version"], stdout: "null" });
    return (await cmd.output()).success;
  } catch {
    return false;
  }
}

/**
 * Boots `image` under QEMU TCG (`-cpu qemu64`) with `reps` at 0x500 and waits for it to end
 * through debug-exit with status 0; throws with QEMU's stderr if it ends any other way.
 */
export async function runFlatOnQemu(image: Uint8Array, reps: number): Promise<QemuFlatRun> {
  const disk = diskImage(await Deno.readFile(LOADER), image, reps);
  const path = await Deno.makeTempFile({ suffix: ".img" });
  try {
    await Deno.writeFile(path, disk);
    const t0 = performance.now();
    const out = await new Deno.Command("qemu-system-x86_64", {
      args: [
        ...["-M", "pc", "-accel", "tcg", "-cpu", "qemu64", "-m", "128M"],
        ...["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"],
        ...["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
        ...["-drive", `file=${path},format=raw,if=ide`],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - t0) / 1000;
    // The guests end with debug-exit 0: QEMU exits with (0 << 1) | 1.
    if (out.code !== 1) {
      throw new Error(
        `QEMU ended with status ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return { seconds, serial: new TextDecoder().decode(out.stdout).replaceAll("\r", "") };
  } finally {
    await Deno.remove(path);
  }
}
