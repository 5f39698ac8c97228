/** Helpers for end-to-end tests: the backends available here and a way to run the CLI. */

import { kvmAvailable } from "../core/kvm/backend.ts";

const kvm = kvmAvailable();
if (!kvm.ok) {
  console.warn(`note: KVM guest tests are skipped on this machine: ${kvm.reason}`);
}

/** True when /dev/kvm opens and answers as KVM. */
export const KVM_OK: boolean = kvm.ok;

/** Every backend a guest test must run on here. */
export const BACKENDS: readonly ("interp" | "kvm")[] = kvm.ok ? ["interp", "kvm"] : ["interp"];

/** Repository root. */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/** What a CLI run produced. */
export interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
}

/** Options for `runCli`. */
export interface CliOptions {
  /** Kill the VMM after this long (default 60 s). */
  timeoutMs?: number;
  /** Extra environment variables (e.g. `DENOVISOR_INTERP_JIT: "0"`). */
  env?: Record<string, string>;
}

/** Runs `deno run -A mod.ts ...args` from the repository root, with no stdin. */
export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliRun> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "mod.ts", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...opts.env },
  });
  const child = cmd.spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { status: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
