/**
 * The `io` bench group's guest script and its parser (bench/io_group.ts): the parser takes a
 * reading's cost off each interval and refuses a transfer that failed, moved less than asked or
 * is missing; the script is valid busybox sh (`sh -n`, where the guests' busybox is cached).
 */

import { assertEquals, assertThrows, assertTrue } from "./_assert.ts";
import { ROOT } from "./_run.ts";
import { ioScript, parseIoLines } from "../bench/io_group.ts";

/** Marker lines as the guest prints them (start/end in ns), amid other console output. */
function output(over: Partial<Record<string, string>> = {}, clock = "IOBENCH-CLOCK 2000000") {
  const lines = {
    "blk-read": "IOBENCH blk-read start=1000000000 end=3002000000 status=0 records=64+0",
    "blk-write": "IOBENCH blk-write start=4000000000 end=12002000000 status=0 records=64+0",
    "9p-read": "IOBENCH 9p-read start=13000000000 end=13502000000 status=0 records=16+0",
    ...over,
  };
  return `[    0.28] PCI: Fatal: No config space access function found\r\n\x1eNONCES\n${clock}\n` +
    Object.values(lines).join("\n") + "\n\x1eNONCEX0\n";
}

Deno.test("io group: parseIoLines takes a reading's cost off each transfer", () => {
  const t = parseIoLines(output());
  assertEquals([...t.keys()], ["blk-read", "blk-write", "9p-read"]);
  assertEquals(t.get("blk-read"), { seconds: 2, bytes: 64 << 20, readingNs: 2e6 });
  assertEquals(t.get("blk-write")!.seconds, 8);
  assertEquals(t.get("9p-read"), { seconds: 0.5, bytes: 16 << 20, readingNs: 2e6 });
  // The same lines with \r\n (a console not in raw mode) parse the same.
  assertEquals(parseIoLines(output().replaceAll("\n", "\r\n")), t);
});

Deno.test("io group: parseIoLines refuses failed, short, empty and missing transfers", () => {
  const bad = (over: Record<string, string>, includes: string, clock?: string) =>
    assertThrows(() => parseIoLines(output(over, clock)), Error, includes);
  bad(
    { "blk-write": "IOBENCH blk-write start=1 end=900000000 status=1 records=3+0" },
    "blk-write: dd ended with status 1",
  );
  bad(
    { "blk-read": "IOBENCH blk-read start=0 end=900000000 status=0 records=63+1" },
    "blk-read: dd wrote 63+1 records",
  );
  bad(
    { "9p-read": "IOBENCH 9p-read start=5 end=1000005 status=0 records=16+0" },
    "9p-read: -0.001 s",
  );
  bad({ "9p-read": "" }, `no "IOBENCH 9p-read" line`);
  bad({}, `no "IOBENCH-CLOCK" line`, "");
});

Deno.test("io group: the guest script is valid busybox sh and times every transfer", async () => {
  const script = ioScript();
  for (const n of ["blk-read", "blk-write", "9p-read"]) assertTrue(script.includes(`\nio ${n} `));
  const busybox = `${ROOT}.cache/guests/busybox`;
  try {
    Deno.statSync(busybox);
  } catch {
    console.log(`skipped sh -n: ${busybox} is missing (deno task guests)`);
    return;
  }
  const r = await new Deno.Command(busybox, { args: ["sh", "-n", "-c", script], stderr: "piped" })
    .output();
  assertEquals(new TextDecoder().decode(r.stderr), "");
  assertEquals(r.code, 0);
});
