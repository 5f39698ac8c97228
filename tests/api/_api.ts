/**
 * Helpers for the API tests: a denovisor process serving `--api-sock`, its stdout collected as
 * it comes, and `ctl`'s HTTP/1.1 client over the unix socket (no curl needed).
 */

import { type Reply, request } from "../../core/ctl/http.ts";
import { ROOT } from "../_run.ts";

/** The counter guest: "tick 00" .. "tick 29", one line per ~50 ms of VM time, exit 0x10. */
export const COUNTER = `${ROOT}tests/api/guests/counter.bin`;
/** Its complete output. */
export const COUNTER_OUTPUT: string = Array.from(
  { length: 30 },
  (_, i) => `tick ${String(i).padStart(2, "0")}\n`,
).join("");
/** Its exit status ((0x10 << 1) | 1). */
export const COUNTER_STATUS = 33;

/** An HTTP answer. */
export type ApiReply = Reply;

/** Sends one request over the unix socket `path` (Connection: close) and reads the answer. */
export function api(path: string, method: string, url: string, body?: unknown): Promise<ApiReply> {
  return request(path, method, url, body);
}

/** A denovisor process with an API socket. */
export class VmProcess {
  readonly sock: string;
  stdout = "";
  stderr = "";
  readonly child: Deno.ChildProcess;
  readonly exited: Promise<number>;
  #reads: Promise<void>[];

  #stdin: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #gone = false;

  /**
   * Starts `mod.ts --api-sock sock ...args`; killed after `timeoutMs`; stdin piped if asked.
   * `prefix` runs it under a command (e.g. `["ip", "netns", "exec", "ns1"]`); `apiSock: false`
   * leaves `--api-sock` out (`sock` is then where the VM's socket is expected, e.g. the one
   * `--name` puts in the runtime directory, or "" for none); `env` adds variables.
   */
  constructor(
    sock: string,
    args: string[],
    opts: {
      timeoutMs?: number;
      stdin?: boolean;
      prefix?: string[];
      apiSock?: boolean;
      env?: Record<string, string>;
    } = {},
  ) {
    this.sock = sock;
    const own = [
      "run",
      "-A",
      "--quiet",
      "mod.ts",
      ...(opts.apiSock === false ? [] : ["--api-sock", sock]),
      ...args,
    ];
    const prefix = opts.prefix ?? [];
    this.child = new Deno.Command(prefix.length > 0 ? prefix[0]! : Deno.execPath(), {
      args: prefix.length > 0 ? [...prefix.slice(1), Deno.execPath(), ...own] : own,
      cwd: ROOT,
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...opts.env },
    }).spawn();
    if (opts.stdin) this.#stdin = this.child.stdin.getWriter();
    const collect = async (s: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      const dec = new TextDecoder();
      for await (const chunk of s) this[into] += dec.decode(chunk, { stream: true });
    };
    this.#reads = [collect(this.child.stdout, "stdout"), collect(this.child.stderr, "stderr")];
    const timer = setTimeout(() => this.kill(), opts.timeoutMs ?? 120_000);
    this.exited = this.child.status.then(async (s) => {
      this.#gone = true;
      clearTimeout(timer);
      await Promise.all(this.#reads);
      return s.code;
    });
  }

  /** Waits until the socket answers (or the process has already ended). */
  async ready(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !this.#gone) {
      try {
        (await Deno.connect({ transport: "unix", path: this.sock })).close();
        return;
      } catch {
        await sleep(50);
      }
    }
    if (this.#gone) return; // it ran to its end already: the caller looks at the outcome
    throw new Error(`no API socket at ${this.sock} after 30 s; stderr: ${this.stderr}`);
  }

  call(method: string, url: string, body?: unknown): Promise<ApiReply> {
    return api(this.sock, method, url, body);
  }

  /** Writes `text` to the guest's console (needs `stdin: true`). */
  async type(text: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(text));
  }

  /** Waits until stdout contains `text` (after `from` characters). */
  async output(text: string, timeoutMs: number, from = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.slice(from).includes(text)) {
      if (Date.now() > deadline) {
        throw new Error(
          `no ${JSON.stringify(text)} on stdout after ${timeoutMs} ms: ` +
            JSON.stringify(this.stdout.slice(-2000)),
        );
      }
      await sleep(50);
    }
  }

  /** Waits until stderr contains `text`; throws if the process ends first. */
  async diagnostic(text: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stderr.includes(text)) {
      if (this.#gone) {
        await this.exited;
        if (this.stderr.includes(text)) return;
        throw new Error(`ended without ${JSON.stringify(text)} on stderr: ${this.stderr}`);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `no ${JSON.stringify(text)} on stderr after ${timeoutMs} ms: ${this.stderr}`,
        );
      }
      await sleep(20);
    }
  }

  /** Waits until stdout holds `lines` lines. */
  async lines(lines: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.stdout.split("\n").length - 1 < lines) {
      if (Date.now() > deadline) {
        throw new Error(
          `stdout has fewer than ${lines} lines: ${JSON.stringify(this.stdout)}; stderr: ` +
            this.stderr.slice(-2000),
        );
      }
      await sleep(10);
    }
  }

  kill(): void {
    this.#stdin?.close().catch(() => {});
    this.#stdin = null;
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
