/**
 * A denovisor process for the bench groups: `deno run -A mod.ts ARGS` from the repository root,
 * its stdout (the guest's console) and stderr kept, and `until` to await what they show.
 */

const ROOT = new URL("..", import.meta.url).pathname;

/** A denovisor process whose stdout (the guest's console) and stderr are kept and awaited. */
export class VmmProc {
  readonly child: Deno.ChildProcess;
  readonly done: Promise<Deno.CommandStatus>;
  stdout = "";
  stderr = "";
  exited = false;
  #waiters: (() => void)[] = [];

  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "mod.ts", ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    const pump = async (s: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      const dec = new TextDecoder();
      for await (const chunk of s) {
        this[into] = (this[into] + dec.decode(chunk, { stream: true })).slice(-16_000);
        this.#wake();
      }
    };
    const out = pump(child.stdout, "stdout"), err = pump(child.stderr, "stderr");
    this.done = Promise.all([out, err, child.status]).then(([, , st]) => {
      this.exited = true;
      this.#wake();
      return st;
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves with `test`'s answer once it is not null; throws if the process ends first. */
  async until<T>(test: () => T | null, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = test();
      if (got !== null) return got;
      if (this.exited) throw new Error(`${what}: the process ended first${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: not after ${timeoutMs} ms${this.tail()}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  tail(): string {
    return `; console: ${JSON.stringify(this.stdout.slice(-600))}; stderr: ${this.stderr}`;
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.done;
  }
}
