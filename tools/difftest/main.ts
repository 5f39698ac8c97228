/**
 * `deno task difftest`: runs random user-mode x86-64 instructions on the interpreter and on the
 * host CPU, compares registers, flags, XMM, MXCSR and memory, prints a reproducer for every
 * divergence and a summary by instruction class, and exits non-zero when anything diverged.
 */

import { parseArgs } from "node:util";
import { type CpuVendor, hostCpuVendor } from "../../core/cpu_model.ts";
import { describeError, UsageError, VmmError } from "../../core/errors.ts";
import { compareStates, type DivergenceReport, formatReproducer } from "./compare.ts";
import { CLASS_FEATURES, CLASS_NAMES, Generator } from "./generator.ts";
import { InterpSide, loadInterpreterApi } from "./interp.ts";
import { SLOT_COUNT } from "./layout.ts";
import { NativeOracle } from "./native.ts";

const USAGE = `Usage: deno run -A tools/difftest/main.ts [options]

Runs random user-mode instructions on the interpreter and on the host CPU and compares the
results (GPRs, RIP, RFLAGS, XMM, MXCSR, memory). The interpreter follows the host vendor's CPU
model, so what the manuals leave undefined is compared too; where that vendor's rule is not yet
verified on silicon, a difference is reported as a model gap and does not fail the run.

Options:
  --cases N          number of cases (default 20000)
  --seed S           PRNG seed, 0..4294967295 (default: random, printed so a run can be repeated)
  --only CLASS[,..]  only these instruction classes (see --list); without it, classes needing a
                     CPUID feature the interpreter does not advertise (SSE2, POPCNT, ...) are
                     skipped, and the skipped ones are printed
  --max-failures K   stop after K divergences (default 10)
  --native-only      run the generator on the host CPU only (no interpreter), as a smoke test
  --jit              run each instruction through the block compiler's templates instead of
                     the plain interpreter
  --list             print the instruction classes and exit
  --quiet            print only divergences and the summary
  -h, --help         show this help
`;

/** Options of one difftest run. */
export interface DifftestOptions {
  /** Number of cases. */
  cases: number;
  /** PRNG seed. */
  seed: number;
  /** Classes to generate (default: all). */
  classes?: readonly string[];
  /** Drop classes whose CPUID features the interpreter does not advertise (default false). */
  skipUnadvertised?: boolean;
  /** Stop after this many divergences (default 10). */
  maxFailures?: number;
  /** Do not run the interpreter. */
  nativeOnly?: boolean;
  /** Run each instruction through the interpreter's block compiler (its templates). */
  jit?: boolean;
  /** Where reproducers and progress go (default console.log). */
  log?: (line: string) => void;
}

/** Per-class counts of one run. */
export interface ClassCount {
  /** Cases run. */
  cases: number;
  /** Cases that diverged. */
  failed: number;
}

/** The outcome of one run. */
export interface DifftestSummary {
  seed: number;
  /** Cases run (fewer than asked when --max-failures stopped the run). */
  cases: number;
  /** Divergences found. */
  failures: number;
  /** Counts by instruction class. */
  byClass: Map<string, ClassCount>;
  /** The divergences, in order. */
  reports: DivergenceReport[];
  /** Wall time in seconds. */
  seconds: number;
  /** Classes skipped because the interpreter does not advertise their features, with why. */
  skipped: string[];
  /** The host vendor, whose model the interpreter followed. */
  vendor: CpuVendor;
  /**
   * Cases that differed only in results the manuals leave undefined and whose model for this
   * vendor is unverified, by mnemonic (not failures: what the silicon did, to be modelled).
   */
  modelGaps: Map<string, number>;
}

/**
 * Runs `cases` generated cases on the host CPU and (unless `nativeOnly`) the interpreter.
 *
 * @example
 * ```ts ignore
 * const s = await runDifftest({ cases: 1000, seed: 1, classes: ["alu"] });
 * console.log(formatSummary(s));
 * ```
 */
export async function runDifftest(options: DifftestOptions): Promise<DifftestSummary> {
  const log = options.log ?? ((l: string) => console.log(l));
  const maxFailures = options.maxFailures ?? 10;
  let interp: InterpSide | null = null;
  if (!options.nativeOnly) {
    const api = await loadInterpreterApi();
    if (typeof api === "string") {
      throw new UsageError(
        `Cannot run the interpreter side: ${api}. Run with --native-only to test the generator ` +
          `and the host oracle alone.`,
      );
    }
    interp = new InterpSide(api, { jit: options.jit });
  }
  let classes = options.classes ?? CLASS_NAMES;
  const skipped: string[] = [];
  if (interp && options.skipUnadvertised) {
    const side = interp;
    classes = classes.filter((c) => {
      const missing = (CLASS_FEATURES[c] ?? []).filter((f) => !side.hasFeature(f));
      if (missing.length) skipped.push(`${c} (needs ${missing.map((f) => f.name).join(", ")})`);
      return missing.length === 0;
    });
    if (skipped.length) {
      log(
        `difftest: skipping classes the interpreter's CPUID does not advertise: ${
          skipped.join("; ")
        }`,
      );
    }
    if (classes.length === 0) {
      throw new UsageError("No instruction class left to test: the interpreter advertises none");
    }
  }
  const oracle = NativeOracle.open();
  const start = performance.now();
  const summary: DifftestSummary = {
    seed: options.seed,
    cases: 0,
    failures: 0,
    byClass: new Map(),
    reports: [],
    seconds: 0,
    skipped,
    vendor: hostCpuVendor(),
    modelGaps: new Map(),
  };
  try {
    const gen = new Generator(options.seed, classes, {
      gsBase: oracle.gsBaseWritable,
      base: oracle.base,
    });
    let index = 0;
    while (index < options.cases && summary.failures < maxFailures) {
      const n = Math.min(SLOT_COUNT, options.cases - index);
      const batch = gen.batch(n);
      oracle.prepare(batch);
      interp?.mirror(oracle.region, oracle.base);
      const after = oracle.execute(batch);
      for (let i = 0; i < n && summary.failures < maxFailures; i++) {
        const c = batch[i]!;
        let count = summary.byClass.get(c.cls);
        if (!count) summary.byClass.set(c.cls, count = { cases: 0, failed: 0 });
        count.cases++;
        summary.cases++;
        if (!interp) continue;
        const got = interp.run(c);
        const diffs = compareStates(c, after[i]!, got, { vendor: summary.vendor });
        if (diffs.length === 0) continue;
        const report: DivergenceReport = {
          index: index + i,
          seed: options.seed,
          testCase: c,
          native: after[i]!,
          interp: got,
          diffs,
        };
        if (diffs.every((d) => d.unverified)) {
          const name = c.mnemonic.split(" ")[0]!;
          const seen = summary.modelGaps.get(name) ?? 0;
          summary.modelGaps.set(name, seen + 1);
          if (seen === 0) {
            log(
              `MODEL GAP (not a failure): ${summary.vendor} silicon computes what the manuals ` +
                `leave undefined differently from the interpreter's unverified model\n` +
                formatReproducer(report),
            );
          }
          continue;
        }
        // Confirm the host's result by running the case alone once more.
        const again = oracle.runOne(c);
        if (compareStates(c, after[i]!, { state: again }, { x87: true }).length) {
          log(
            `difftest: note: case ${index + i} (${c.mnemonic}) gave a different host result ` +
              `when run alone; the host side may have been disturbed (a signal?)`,
          );
        }
        count.failed++;
        summary.failures++;
        summary.reports.push(report);
        log(formatReproducer(report));
      }
      index += n;
    }
  } finally {
    oracle.close();
  }
  summary.seconds = (performance.now() - start) / 1000;
  return summary;
}

/** The one-line summary of a run, with counts by instruction class. */
export function formatSummary(s: DifftestSummary, nativeOnly = false): string {
  const classes = [...s.byClass.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, c]) => `${name} ${c.cases - c.failed}/${c.cases}`)
    .join(", ");
  const rate = s.seconds > 0 ? Math.round(s.cases / s.seconds) : 0;
  const what = nativeOnly ? "ran natively (no comparison)" : `${s.failures} divergences`;
  const gaps = [...s.modelGaps.entries()].map(([m, n]) => `${m} ${n}`).join(", ");
  return `difftest: seed ${s.seed}, ${s.cases} cases (${s.vendor} host model), ${what}; ` +
    `passed by class: ${classes}; ${s.seconds.toFixed(1)} s, ${rate} cases/s` +
    (gaps ? `; model gaps (unverified ${s.vendor} rules, not failures): ${gaps}` : "");
}

function parseCount(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new UsageError(`Cannot parse --${name} "${text}": expected a whole number such as 1000`);
  }
  return n;
}

function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/** Runs the CLI with `args`; returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        cases: { type: "string" },
        seed: { type: "string" },
        only: { type: "string" },
        "max-failures": { type: "string" },
        "native-only": { type: "boolean" },
        jit: { type: "boolean" },
        list: { type: "boolean" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    console.error(`difftest: ${describeError(err)}\n\n${USAGE}`);
    return 2;
  }
  const v = parsed.values;
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  if (v.list) {
    console.log(CLASS_NAMES.join("\n"));
    return 0;
  }
  try {
    const cases = parseCount("cases", v.cases, 20000);
    const seed = parseCount("seed", v.seed, randomSeed());
    if (seed > 0xffff_ffff) {
      throw new UsageError(`Cannot use --seed ${seed}: the seed must be below 2^32`);
    }
    const maxFailures = parseCount("max-failures", v["max-failures"], 10);
    if (maxFailures < 1) throw new UsageError("--max-failures must be at least 1");
    const classes = v.only?.split(",").map((s) => s.trim()).filter((s) => s) ?? CLASS_NAMES;
    const skipUnadvertised = v.only === undefined;
    for (const c of classes) {
      if (!CLASS_NAMES.includes(c)) {
        throw new UsageError(
          `Unknown instruction class "${c}" in --only: expected one of ${CLASS_NAMES.join(", ")}`,
        );
      }
    }
    if (!v.quiet) {
      console.log(
        `difftest: seed ${seed} (repeat with --seed ${seed}), ${cases} cases, classes: ` +
          `${classes.join(",")}`,
      );
    }
    const summary = await runDifftest({
      cases,
      seed,
      classes,
      maxFailures,
      nativeOnly: v["native-only"],
      jit: v.jit,
      skipUnadvertised,
    });
    if (summary.failures >= maxFailures) {
      console.log(`difftest: stopped after ${maxFailures} divergences (--max-failures)`);
    }
    console.log(formatSummary(summary, v["native-only"]));
    return summary.failures > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof VmmError) {
      console.error(`difftest: ${err.message}`);
      return err.exitCode;
    }
    throw err;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
