/**
 * Port 0x80 POST codes: firmware and kernels write progress codes (and Linux uses the port for
 * I/O delays). The last code reads back; with `--trace` each one is logged.
 */

import { API_VERSION, definePlugin } from "../plugins/mod.ts";

export default definePlugin({
  name: "post-code",
  apiVersion: API_VERSION,
  description: "port 0x80 POST codes, shown with --trace",
  create(host) {
    let last = 0;
    return {
      ports: [{
        base: 0x80,
        length: 1,
        read: () => last,
        write(_offset, _size, value) {
          last = value & 0xff;
          host.log.debug(`POST code 0x${last.toString(16).padStart(2, "0")}`);
        },
      }],
      reset() {
        last = 0;
      },
      save: () => ({ version: 1, fields: { last } }),
      restore(state) {
        last = Number(state.fields.last ?? 0) & 0xff;
      },
    };
  },
});
