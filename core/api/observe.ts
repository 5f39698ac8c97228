/**
 * `PUT /logger` and `PUT /metrics`, as Firecracker has them: the logger appends VMM messages
 * (the VM's own, and one line per API request at Info) to `log_path` from the moment it is
 * configured; metrics append one JSON line to `metrics_path` on `FlushMetrics` and every 60 s.
 * Each can be configured once, as in Firecracker.
 */

/** Firecracker's log levels, most severe first. */
export const LOG_LEVELS = ["Error", "Warning", "Info", "Debug", "Trace"] as const;
type Level = (typeof LOG_LEVELS)[number];

const enc = new TextEncoder();

function openAppend(path: string, field: string, what: string): Deno.FsFile {
  try {
    return Deno.openSync(path, { write: true, append: true, create: true });
  } catch (err) {
    throw new Error(`${what}: cannot open ${field} "${path}": ${(err as Error).message}`);
  }
}

/** The VMM's logger (`PUT /logger`). */
export class ApiLogger {
  #file: Deno.FsFile | null = null;
  #level: number = LOG_LEVELS.indexOf("Info");
  #showLevel = false;
  #showOrigin = false;
  #configured = false;
  readonly #id: string;

  constructor(id: string) {
    this.#id = id;
  }

  get configured(): boolean {
    return this.#configured;
  }

  /** Applies validated `Logger` fields; throws Error with the reason (a 400). */
  configure(
    opts: { logPath?: string; level?: Level | "Off"; showLevel?: boolean; showOrigin?: boolean },
  ): void {
    if (this.#configured) throw new Error("logger: the logger is already configured");
    if (opts.logPath !== undefined) this.#file = openAppend(opts.logPath, "log_path", "logger");
    this.#level = opts.level === "Off" ? -1 : LOG_LEVELS.indexOf(opts.level ?? "Info");
    this.#showLevel = opts.showLevel ?? false;
    this.#showOrigin = opts.showOrigin ?? false;
    this.#configured = true;
  }

  /** Writes `message` at `level` (origin: which part of denovisor said it). */
  log(level: Level, origin: string, message: string): void {
    if (this.#file === null || LOG_LEVELS.indexOf(level) > this.#level) return;
    let tag = this.#id;
    if (this.#showLevel) tag += `:${level.toUpperCase()}`;
    if (this.#showOrigin) tag += `:${origin}`;
    try {
      this.#file.writeSync(enc.encode(`${new Date().toISOString()} [${tag}] ${message}\n`));
    } catch {
      // A log that cannot be written must not stop the VM.
    }
  }

  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/** What the metrics lines count. */
export interface MetricsSource {
  state(): string;
  backend(): string | null;
}

/** The VMM's metrics (`PUT /metrics`). */
export class ApiMetrics {
  /** API requests answered, and those refused with 400. */
  requests = 0;
  faults = 0;
  #file: Deno.FsFile | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #started = performance.now();
  readonly #source: MetricsSource;

  constructor(source: MetricsSource) {
    this.#source = source;
  }

  get configured(): boolean {
    return this.#file !== null;
  }

  configure(path: string): void {
    if (this.#file !== null) throw new Error("metrics: the metrics are already configured");
    this.#file = openAppend(path, "metrics_path", "metrics");
    this.#timer = setInterval(() => this.flush(), 60_000);
    Deno.unrefTimer(this.#timer);
  }

  /** Appends one JSON line; false when no metrics file is configured. */
  flush(): boolean {
    if (this.#file === null) return false;
    const line = {
      utc_timestamp_ms: Date.now(),
      api_server: { requests: this.requests, faults: this.faults },
      vmm: {
        state: this.#source.state(),
        backend: this.#source.backend(),
        uptime_ms: Math.round(performance.now() - this.#started),
      },
    };
    try {
      this.#file.writeSync(enc.encode(JSON.stringify(line) + "\n"));
    } catch {
      // Metrics that cannot be written must not stop the VM.
    }
    return true;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#file?.close();
    this.#file = null;
  }
}
