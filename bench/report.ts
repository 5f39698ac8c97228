/**
 * `deno task bench:report [GROUP...] [--json]`: the side-by-side comparisons, each a ratio
 * against a baseline measured in the same run. Prints a markdown table; with `--json` the last
 * line is a JSON array of rows `{name, unit, value, baseline, baselineValue, ratio}`.
 * A group that cannot run here (e.g. no /dev/kvm) prints why and emits no rows.
 */

import { parseArgs } from "node:util";

/** One comparison. `ratio = value / baselineValue`. */
export interface BenchRow {
  name: string;
  unit: string;
  value: number;
  baseline: string;
  baselineValue: number;
  ratio: number;
}

/** A group returns its rows, or a sentence saying why it cannot run here. */
export type BenchGroup = () => Promise<BenchRow[] | string>;

const GROUPS: Record<string, () => Promise<BenchGroup>> = {
  exits: async () => (await import("./exits_group.ts")).runExitsGroup,
  interp: async () => (await import("./interp_group.ts")).runInterpGroup,
  plugins: async () => (await import("./plugins_group.ts")).runPluginsGroup,
  boot: async () => (await import("./boot_group.ts")).runBootGroup,
  lifecycle: async () => (await import("./lifecycle_group.ts")).runLifecycleGroup,
  migration: async () => (await import("./migration_group.ts")).runMigrationGroup,
  ha: async () => (await import("./ha_group.ts")).runHaGroup,
  io: async () => (await import("./io_group.ts")).runIoGroup,
};

/** Formats rows as a markdown table. */
export function formatTable(rows: BenchRow[]): string {
  const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));
  const lines = [
    "| name | value | unit | baseline | baseline value | ratio |",
    "|---|---:|---|---|---:|---:|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${fmt(r.value)} | ${r.unit} | ${r.baseline} | ${fmt(r.baselineValue)} | ${
        r.ratio.toFixed(3)
      } |`,
    );
  }
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: "boolean", default: false }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(
      `Usage: deno task bench:report [GROUP...] [--json]\nGroups: ${
        Object.keys(GROUPS).join(", ")
      }`,
    );
    return 0;
  }
  const names = positionals.length ? positionals : Object.keys(GROUPS);
  for (const n of names) {
    if (!GROUPS[n]) {
      console.error(`Unknown group "${n}": choose from ${Object.keys(GROUPS).join(", ")}`);
      return 2;
    }
  }
  const rows: BenchRow[] = [];
  for (const n of names) {
    console.error(`bench:report: running group ${n}...`);
    const result = await (await GROUPS[n]!())();
    if (typeof result === "string") console.error(`group ${n}: skipped: ${result}`);
    else rows.push(...result);
  }
  console.log(formatTable(rows));
  if (values.json) console.log(JSON.stringify(rows));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
