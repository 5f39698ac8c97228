/**
 * A read-only identity port at 0x5F0: successive reads return the bytes of the backend's name
 * ("kvm" or "interp") and then 0; a write rewinds. The default guest prints it. Options:
 * `backend` (set by the machine), `port`.
 */

import { API_VERSION, definePlugin } from "../plugins/mod.ts";

/** Where the info port lives. */
export const VMM_INFO_PORT = 0x5f0;

export default definePlugin({
  name: "vmm-info",
  apiVersion: API_VERSION,
  description: "port 0x5F0: reads return the backend's name, a write rewinds",
  create(host) {
    const text = new TextEncoder().encode(host.options.string("backend", "unknown"));
    let pos = 0;
    return {
      ports: [{
        base: host.options.number("port", VMM_INFO_PORT),
        length: 1,
        read: () => pos < text.length ? text[pos++]! : 0,
        write() {
          pos = 0;
        },
      }],
      reset() {
        pos = 0;
      },
      save: () => ({ version: 1, fields: { pos } }),
      restore(state) {
        pos = Number(state.fields.pos ?? 0);
      },
    };
  },
});
