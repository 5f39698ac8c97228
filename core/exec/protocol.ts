/**
 * The exec mode's serial-console protocol. The guest's /init (`execInitScript`) puts the
 * console in raw mode and writes, between the kernel's boot messages and the end:
 *
 * - `RS NONCE S \n` once the command starts: what came before is the boot log (kept, and shown
 *   only if the boot fails);
 * - the command's stdout, byte for byte;
 * - `RS NONCE E line \n` for each line of its stderr (relayed through a FIFO);
 * - `RS NONCE X status \n` when it ended, with its exit status.
 *
 * RS is 0x1E and NONCE a random string the VMM made for this run, so output that happens to
 * contain RS passes through unless it also carries the nonce. `ExecDemux` parses the stream.
 */

/** The record separator that starts every frame. */
export const RS = 0x1e;

/** What a demultiplexed console stream delivers. */
export interface ExecSinks {
  stdout(bytes: Uint8Array): void;
  stderr(bytes: Uint8Array): void;
  /** The command started (boot is over). */
  started?(): void;
  /** The command ended with `status`. */
  exited(status: number): void;
}

const enum State {
  /** Before the start frame: the kernel's boot log. */
  Boot,
  /** Between start and end: stdout bytes and frames. */
  Running,
  /** After the end frame: everything is ignored. */
  Done,
}

/** Splits the exec guest's console stream into boot log, stdout, stderr lines and exit status. */
export class ExecDemux {
  readonly #prefix: Uint8Array;
  readonly #sinks: ExecSinks;
  #state = State.Boot;
  /** Bytes of a frame being matched (RS, nonce, kind, body). */
  #frame: number[] = [];
  /** The boot log's last bytes (bounded). */
  #boot: number[] = [];
  #out: number[] = [];
  static readonly BOOT_LOG_LIMIT = 64 * 1024;
  /** Longest frame body (a stderr line or a status) before it is cut. */
  static readonly FRAME_LIMIT = 64 * 1024;

  constructor(nonce: string, sinks: ExecSinks) {
    this.#prefix = new TextEncoder().encode(nonce);
    this.#sinks = sinks;
  }

  /** True once the start frame was seen. */
  get started(): boolean {
    return this.#state !== State.Boot;
  }

  /** True once the exit frame was seen. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /** The console output before the command started (the last 64 KiB), as text. */
  bootLog(): string {
    return new TextDecoder().decode(new Uint8Array(this.#boot));
  }

  /** Feeds console bytes. */
  write(bytes: Uint8Array): number {
    for (const b of bytes) this.#byte(b);
    this.#flushOut();
    return bytes.length;
  }

  /** ByteSink: the serial console writes here. */
  writeSync(bytes: Uint8Array): number {
    return this.write(bytes);
  }

  #byte(b: number): void {
    if (this.#state === State.Done) return;
    const f = this.#frame;
    if (f.length === 0) {
      if (b === RS) f.push(b);
      else this.#plain(b);
      return;
    }
    const p = this.#prefix;
    if (f.length <= p.length) {
      if (b === p[f.length - 1]) f.push(b);
      else this.#abandon(b);
      return;
    }
    if (f.length === p.length + 1) {
      // The frame kind.
      const ok = b === 0x53 /* S */ || (this.#state === State.Running &&
        (b === 0x45 /* E */ || b === 0x58 /* X */));
      if (ok) f.push(b);
      else this.#abandon(b);
      return;
    }
    if (b !== 0x0a && f.length < p.length + 2 + ExecDemux.FRAME_LIMIT) {
      f.push(b);
      return;
    }
    const kind = f[p.length + 1]!;
    const body = new Uint8Array(f.slice(p.length + 2));
    this.#frame = [];
    this.#flushOut();
    if (kind === 0x53) {
      this.#state = State.Running;
      this.#sinks.started?.();
    } else if (kind === 0x45) {
      const line = new Uint8Array(body.length + 1);
      line.set(body);
      line[body.length] = 0x0a;
      this.#sinks.stderr(line);
    } else {
      const status = parseInt(new TextDecoder().decode(body), 10);
      this.#state = State.Done;
      this.#sinks.exited(Number.isFinite(status) ? status & 0xff : 1);
    }
  }

  /** Not a frame after all: its bytes are ordinary output, and `b` is looked at again. */
  #abandon(b: number): void {
    const f = this.#frame;
    this.#frame = [];
    for (const x of f) this.#plain(x);
    this.#byte(b);
  }

  #plain(b: number): void {
    if (this.#state === State.Running) {
      this.#out.push(b);
    } else if (this.#state === State.Boot) {
      this.#boot.push(b);
      if (this.#boot.length > ExecDemux.BOOT_LOG_LIMIT * 2) {
        this.#boot = this.#boot.slice(-ExecDemux.BOOT_LOG_LIMIT);
      }
    }
  }

  #flushOut(): void {
    if (this.#out.length === 0) return;
    const bytes = new Uint8Array(this.#out);
    this.#out = [];
    this.#sinks.stdout(bytes);
  }
}
