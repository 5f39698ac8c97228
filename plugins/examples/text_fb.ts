/**
 * Example plugin: an 80x25 text framebuffer on the MMIO bus, laid out like a VGA text screen
 * (a character byte and an attribute byte per cell). The host renders the screen's non-blank
 * rows to the log when the guest asks (control register) and when the VM stops.
 *
 * MMIO (at `base`, default 0xC000_0000, the start of the PC's MMIO gap): [0, 4000) the cells,
 * +4000 control (write 1: render now). Accesses of 1, 2 or 4 bytes.
 * Options: `base`.
 *
 * Use: deno run -A mod.ts --mem 1M --kernel guest.bin \
 *        --device plugins/examples/text_fb.ts,base=0x100000
 */

import { API_VERSION, definePlugin } from "../mod.ts";

/** Screen size. */
export const COLS = 80, ROWS = 25;
/** Offset of the control register. */
export const REG_CONTROL = COLS * ROWS * 2;

/** The screen's rows as text, trailing blanks trimmed, from cell bytes (char, attribute). */
export function screenRows(cells: Uint8Array): string[] {
  const rows: string[] = [];
  for (let r = 0; r < ROWS; r++) {
    let line = "";
    for (let c = 0; c < COLS; c++) {
      const ch = cells[(r * COLS + c) * 2]!;
      line += ch >= 0x20 && ch < 0x7f ? String.fromCharCode(ch) : " ";
    }
    rows.push(line.trimEnd());
  }
  return rows;
}

export default definePlugin({
  name: "text-fb",
  apiVersion: API_VERSION,
  description: "80x25 text framebuffer on MMIO, rendered to the log",
  create(host) {
    const base = host.options.number("base", 0xc000_0000);
    const cells = new Uint8Array(REG_CONTROL);
    let dirty = false;

    function render(): void {
      const rows = screenRows(cells);
      host.log.info(`screen (${COLS}x${ROWS}), non-blank rows:`);
      rows.forEach((text, i) => {
        if (text !== "") host.log.info(`row ${String(i).padStart(2, "0")}: ${text}`);
      });
      dirty = false;
    }

    return {
      mmio: [{
        base,
        length: 4096,
        read(offset, size) {
          if (offset + size > cells.length) return 0;
          let v = 0;
          for (let i = size - 1; i >= 0; i--) v = v * 256 + cells[offset + i]!;
          return v;
        },
        write(offset, size, value) {
          if (offset === REG_CONTROL) {
            if (value & 1) render();
            return;
          }
          for (let i = 0; i < size && offset + i < cells.length; i++) {
            cells[offset + i] = (value >>> (8 * i)) & 0xff;
          }
          dirty = true;
        },
      }],
      reset() {
        cells.fill(0);
        dirty = false;
      },
      save: () => ({ version: 1, fields: { cells: cells.slice() } }),
      restore(s) {
        const saved = s.fields.cells;
        if (saved instanceof Uint8Array) cells.set(saved.subarray(0, cells.length));
      },
      close() {
        if (dirty) render();
      },
    };
  },
});
