/**
 * QEMU-compatible isa-debug-exit at port 0xF4: a write of value v ends the VMM with exit status
 * (v << 1) | 1, so a test guest can report success or failure. Options: `port`.
 */

import { API_VERSION, definePlugin } from "../plugins/mod.ts";

export default definePlugin({
  name: "debug-exit",
  apiVersion: API_VERSION,
  description: "ends the VMM with status (v << 1) | 1 when the guest writes v to port 0xF4",
  create(host) {
    return {
      ports: [{
        base: host.options.number("port", 0xf4),
        length: 4,
        read: () => 0xffff_ffff,
        write(_offset, _size, value) {
          host.power.exit(((value << 1) | 1) & 0xff);
        },
      }],
      reset() {},
      save: () => ({ version: 1, fields: {} }),
      restore() {},
    };
  },
});
