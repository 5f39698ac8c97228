/**
 * The `plugins` bench group: the cost of one port write (a guest `OUT`) reaching a device
 * plugin and coming back, measured on the port bus: a built-in device (the UART's scratch
 * register) as the baseline, a plugin in-process (`--device PATH,trusted`), and the same plugin
 * in its sandbox Worker, with the channel's adaptive waiting and with each fixed policy.
 * The first rows are guest-driven: a real-mode guest loop doing `OUT` on the interpreter, the
 * cost of the OUT being the loop's time with it minus the loop's time without it.
 */

import { PortBus } from "../core/bus.ts";
import { testDevice } from "../plugins/testing.ts";
import { loadSandboxedPlugin, type SpinMode } from "../plugins/sandbox.ts";
import type { Plugin } from "../plugins/mod.ts";
import uart from "../devices/uart16550.ts";
import crc32Dma from "../plugins/examples/crc32_dma.ts";

import type { BenchRow } from "./report.ts";
import { guestOutNs } from "./interp_group.ts";
export type { BenchRow };

/** The UART's scratch register (COM1 + 7): a write stores one byte, nothing else. */
const UART_SCR = 0x3f8 + 7;
/** crc32-dma's address register: a write stores one number, nothing else. */
const CRC_ADDR = 0x5b0;
/** Each measurement runs about this long. */
const TARGET_MS = 400;

/** ns per `bus.write(port, ...)`, timed over enough writes to take about TARGET_MS. */
function nsPerWrite(bus: PortBus, port: number, size: number): number {
  let n = 64;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) bus.write(port, size, i);
    const ms = performance.now() - t0;
    if (ms >= TARGET_MS || n >= 1 << 26) return (ms * 1e6) / n;
    n = Math.min(1 << 26, Math.ceil(n * Math.max(2, (TARGET_MS * 1.1) / Math.max(ms, 0.01))));
  }
}

/** A bus holding `plugin`'s device (created on the test kit's host). */
function busWith(plugin: Plugin): { bus: PortBus; close: () => void } {
  const t = testDevice(plugin);
  const bus = new PortBus();
  for (const r of t.device.ports ?? []) bus.register(r.base, r.length, t.host.name, r);
  return { bus, close: () => t.device.close?.() };
}

async function sandboxedNs(mode: SpinMode): Promise<number> {
  const url = new URL("../plugins/examples/crc32_dma.ts", import.meta.url).href;
  const { bus, close } = busWith(await loadSandboxedPlugin(url, { spinMode: mode }));
  try {
    nsPerWrite(bus, CRC_ADDR, 4); // warm up both threads
    return nsPerWrite(bus, CRC_ADDR, 4);
  } finally {
    close();
  }
}

/** Guest-driven rows: one `OUT` on the interpreter to each device, against the built-in UART. */
async function guestRows(): Promise<BenchRow[]> {
  const url = new URL("../plugins/examples/crc32_dma.ts", import.meta.url).href;
  const sandboxed = await loadSandboxedPlugin(url);
  const buses = [busWith(uart), busWith(crc32Dma), busWith(sandboxed)];
  try {
    const builtin = guestOutNs(buses[0]!.bus, UART_SCR).out;
    const trusted = guestOutNs(buses[1]!.bus, CRC_ADDR, { size: 4 }).out;
    const boxed = guestOutNs(buses[2]!.bus, CRC_ADDR, { size: 4, n: 100_000 }).out;
    const row = (name: string, value: number): BenchRow => ({
      name,
      unit: "ns",
      value,
      baseline: "guest OUT to the built-in UART on the interpreter",
      baselineValue: builtin,
      ratio: value / builtin,
    });
    return [row("plugin pio trusted", trusted), row("plugin pio sandboxed", boxed)];
  } finally {
    for (const b of buses) b.close();
  }
}

/** Runs the group: guest-driven rows, then bus-level rows against the built-in device. */
export async function runPluginsGroup(): Promise<BenchRow[] | string> {
  const guest = await guestRows();
  const builtin = busWith(uart);
  nsPerWrite(builtin.bus, UART_SCR, 1);
  const base = nsPerWrite(builtin.bus, UART_SCR, 1);
  builtin.close();
  const trusted = busWith(crc32Dma);
  nsPerWrite(trusted.bus, CRC_ADDR, 4);
  const inProcess = nsPerWrite(trusted.bus, CRC_ADDR, 4);
  trusted.close();
  const row = (name: string, value: number): BenchRow => ({
    name,
    unit: "ns/OUT",
    value,
    baseline: "built-in uart scratch write",
    baselineValue: base,
    ratio: value / base,
  });
  return [
    ...guest,
    row("plugin pio trusted (bus only)", inProcess),
    row("plugin pio sandboxed (bus only)", await sandboxedNs("adaptive")),
    row("plugin pio sandboxed (always block)", await sandboxedNs("never")),
    row("plugin pio sandboxed (always spin)", await sandboxedNs("always")),
  ];
}

if (import.meta.main) {
  const { formatTable } = await import("./report.ts");
  const rows = await runPluginsGroup();
  console.log(typeof rows === "string" ? rows : formatTable(rows));
  Deno.exit(0);
}
