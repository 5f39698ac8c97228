/**
 * Fuzzes the kernel loaders: `count` mutated kernels and initrds of every format (see
 * `loader_cases.ts`), each of which must end within `caseTimeoutMs` with a boot or a clear error
 * (a VmmError subclass), never a hang or another exception. Cases run on a Worker; one that
 * runs past its limit is stopped and reported as a hang, and the run goes on after it.
 *
 * `deno task fuzz:loaders [--count N] [--seed S] [--case-timeout-ms MS]`; exits 1 if any case
 * failed or hung, printing the seed and case index that repeat it (`--only INDEX`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type CaseResult, runCase } from "./loader_cases.ts";
import type { FuzzJob } from "./_loaders_worker.ts";

/** What a run found. */
export interface FuzzSummary {
  seed: number;
  cases: number;
  /** Cases by outcome: "boot" or the VmmError subclass's name. */
  outcomes: Record<string, number>;
  /** Cases by seed image: [cases, boots]. */
  bySeed: Record<string, [number, number]>;
  failures: { index: number; seedImage: string; error: string }[];
  hangs: { index: number }[];
  ms: number;
  /** The slowest case that ended: its index and time. */
  slowest: { index: number; ms: number };
}

/** Runs cases [0, count) of `seed`; resolves with the summary. */
export async function fuzzLoaders(
  opts: { count: number; seed: number; caseTimeoutMs?: number; hangAt?: number },
): Promise<FuzzSummary> {
  const limit = opts.caseTimeoutMs ?? 5000;
  const summary: FuzzSummary = {
    seed: opts.seed,
    cases: 0,
    outcomes: {},
    bySeed: {},
    failures: [],
    hangs: [],
    ms: 0,
    slowest: { index: -1, ms: 0 },
  };
  const t0 = performance.now();
  const record = (index: number, r: CaseResult, ms: number) => {
    summary.cases++;
    if (ms > summary.slowest.ms) summary.slowest = { index, ms };
    summary.outcomes[r.outcome] = (summary.outcomes[r.outcome] ?? 0) + 1;
    const s = summary.bySeed[r.seedImage] ??= [0, 0];
    s[0]++;
    if (r.outcome === "boot") s[1]++;
    if (r.outcome === "FAILURE") {
      summary.failures.push({ index, seedImage: r.seedImage, error: r.error ?? "" });
    }
  };
  let next = 0;
  while (next < opts.count) {
    next = await runSpan(opts.seed, next, opts.count, limit, opts.hangAt, record, (index) => {
      summary.cases++;
      summary.outcomes["HANG"] = (summary.outcomes["HANG"] ?? 0) + 1;
      summary.hangs.push({ index });
    });
  }
  summary.ms = performance.now() - t0;
  return summary;
}

/** Runs cases from `from` on a fresh Worker until done or one hangs; returns where to go on. */
function runSpan(
  seed: number,
  from: number,
  to: number,
  limitMs: number,
  hangAt: number | undefined,
  record: (index: number, r: CaseResult, ms: number) => void,
  hung: (index: number) => void,
): Promise<number> {
  const progress = new SharedArrayBuffer(4);
  const p = new Int32Array(progress);
  const worker = new Worker(new URL("./_loaders_worker.ts", import.meta.url), { type: "module" });
  let index = from;
  return new Promise((resolve, reject) => {
    let seen = 0, since = performance.now();
    const watch = setInterval(() => {
      const now = Atomics.load(p, 0);
      if (now !== seen) [seen, since] = [now, performance.now()];
      else if (seen > 0 && performance.now() - since > limitMs) {
        clearInterval(watch);
        worker.terminate();
        // Every case before this one has posted its result (see the worker).
        hung(seen - 1);
        resolve(seen);
      }
    }, 50);
    worker.onmessage = (e: MessageEvent) => {
      if (e.data.kind === "result") record(index++, e.data.result as CaseResult, e.data.ms);
      else {
        clearInterval(watch);
        worker.terminate();
        resolve(to);
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      clearInterval(watch);
      worker.terminate();
      reject(new Error(`the fuzz worker failed: ${e.message}`));
    };
    worker.postMessage({ seed, from, to, progress, hangAt } satisfies FuzzJob);
  });
}

function report(s: FuzzSummary): string {
  const lines = [
    `loader fuzz: seed ${s.seed}, ${s.cases} cases in ${(s.ms / 1000).toFixed(1)} s ` +
    `(${(s.cases / (s.ms / 1000)).toFixed(0)} cases/s), slowest case ${s.slowest.index} ` +
    `${s.slowest.ms.toFixed(1)} ms, ${s.failures.length} failures, ${s.hangs.length} hangs`,
    `  outcomes: ${Object.entries(s.outcomes).sort().map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `  boots by seed image: ${
      Object.entries(s.bySeed).sort().map(([k, [n, b]]) => `${k} ${b}/${n}`).join(", ")
    }`,
  ];
  for (const f of s.failures.slice(0, 10)) {
    lines.push(`FAILURE case ${f.index} (${f.seedImage}; --seed ${s.seed} --only ${f.index}):`);
    lines.push(f.error);
  }
  for (const h of s.hangs.slice(0, 10)) {
    lines.push(`HANG case ${h.index} (--seed ${s.seed} --only ${h.index})`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      count: { type: "string", default: "100000" },
      seed: { type: "string", default: "1" },
      "case-timeout-ms": { type: "string", default: "5000" },
      only: { type: "string" },
    },
  });
  const seed = Number(values.seed);
  if (values.only !== undefined) {
    const r = runCase(seed, Number(values.only));
    console.log(JSON.stringify(r, null, 2));
    Deno.exit(r.outcome === "FAILURE" ? 1 : 0);
  }
  const s = await fuzzLoaders({
    count: Number(values.count),
    seed,
    caseTimeoutMs: Number(values["case-timeout-ms"]),
  });
  console.log(report(s));
  Deno.exit(s.failures.length + s.hangs.length > 0 ? 1 : 0);
}
