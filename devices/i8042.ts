/**
 * The i8042 keyboard controller at ports 0x60 (data) and 0x64 (status/command), with an AT
 * keyboard behind it and no mouse port. Enough for Linux's i8042 and atkbd probes and for the
 * classic reset: a write of 0xFE to port 0x64 (or an output-port write with bit 0 clear)
 * resets the PC, which ends the VM with status 0. IRQ 1 signals keyboard data.
 */

import { API_VERSION, definePlugin } from "../plugins/mod.ts";

const ST_OBF = 0x01, ST_SYS = 0x04, ST_CMD = 0x08, ST_UNLOCKED = 0x10;
const CTR_KBD_INT = 0x01, CTR_SYS = 0x04, CTR_KBD_DISABLE = 0x10, CTR_AUX_DISABLE = 0x20;
const CTR_XLATE = 0x40;
const ACK = 0xfa;

export default definePlugin({
  name: "i8042",
  apiVersion: API_VERSION,
  description: "i8042 keyboard controller (0x60/0x64, IRQ 1); 0xFE to 0x64 resets the VM",
  create(host) {
    const irq = host.irq(1);
    const queue: number[] = [];
    let ctr = CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLE | CTR_XLATE;
    let lastWasCommand = false;
    let pendingCommand = 0; // controller command waiting for its data byte
    let kbdPending = 0; // keyboard command waiting for its argument
    let outputPort = 0x01;

    function updateIrq(): void {
      if (queue.length > 0 && (ctr & CTR_KBD_INT)) irq.raise();
      else irq.lower();
    }
    function reply(...bytes: number[]): void {
      queue.push(...bytes);
      updateIrq();
    }

    function controllerCommand(cmd: number): void {
      if (cmd >= 0x20 && cmd <= 0x3f) return reply(cmd === 0x20 ? ctr : 0);
      switch (cmd) {
        case 0x60: // write CTR
        case 0xd1: // write output port
        case 0xd2: // write keyboard output buffer
        case 0xd3: // write aux output buffer (no aux port: swallowed)
        case 0xd4: // write to aux device (no aux port: swallowed)
          pendingCommand = cmd;
          return;
        case 0xa7:
          ctr |= CTR_AUX_DISABLE;
          return;
        case 0xa8:
          ctr &= ~CTR_AUX_DISABLE;
          return;
        case 0xa9: // aux interface test: 0xFF = no aux port here
          return reply(0xff);
        case 0xaa: // self test
          return reply(0x55);
        case 0xab: // keyboard interface test
          return reply(0x00);
        case 0xad:
          ctr |= CTR_KBD_DISABLE;
          return;
        case 0xae:
          ctr &= ~CTR_KBD_DISABLE;
          return;
        case 0xc0: // input port
          return reply(0x00);
        case 0xd0:
          return reply(outputPort);
        case 0xfe: // pulse the reset line
          host.power.reset();
          return;
        default:
          if (cmd >= 0xf0 && (cmd & 1) === 0) host.power.reset(); // pulse output bit 0 low
      }
    }

    function keyboardByte(b: number): void {
      if (kbdPending !== 0) {
        kbdPending = 0;
        return reply(ACK);
      }
      switch (b) {
        case 0xed: // set LEDs
        case 0xf0: // scan code set
        case 0xf3: // typematic rate
          kbdPending = b;
          return reply(ACK);
        case 0xf2: // identify: MF2 keyboard
          return reply(ACK, 0xab, 0x83);
        case 0xee: // echo
          return reply(0xee);
        case 0xff: // reset and self test
          return reply(ACK, 0xaa);
        default:
          return reply(ACK);
      }
    }

    return {
      // Two one-port ranges: port 0x61 between them belongs to the PIT/speaker (NMI status).
      ports: [{
        base: 0x60,
        length: 1,
        read() {
          const b = queue.length > 0 ? queue.shift()! : 0;
          // Reading empties the output buffer, which drops IRQ 1; the next queued byte raises
          // it again, a new edge (Linux's handler takes one byte per interrupt, and the IOAPIC
          // line is edge-triggered, so a line left high would strand the rest of a reply).
          irq.lower();
          updateIrq();
          return b;
        },
        write(_offset, _size, value) {
          value &= 0xff;
          lastWasCommand = false;
          const cmd = pendingCommand;
          pendingCommand = 0;
          switch (cmd) {
            case 0x60:
              ctr = value;
              updateIrq();
              return;
            case 0xd1:
              outputPort = value;
              if ((value & 1) === 0) host.power.reset();
              return;
            case 0xd2:
              return reply(value);
            case 0xd3:
            case 0xd4:
              return;
            default:
              keyboardByte(value);
          }
        },
      }, {
        base: 0x64,
        length: 1,
        read() {
          return (queue.length > 0 ? ST_OBF : 0) | (ctr & CTR_SYS ? ST_SYS : 0) |
            (lastWasCommand ? ST_CMD : 0) | ST_UNLOCKED;
        },
        write(_offset, _size, value) {
          lastWasCommand = true;
          pendingCommand = 0;
          controllerCommand(value & 0xff);
        },
      }],
      reset() {
        queue.length = 0;
        ctr = CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLE | CTR_XLATE;
        lastWasCommand = false;
        pendingCommand = kbdPending = 0;
        outputPort = 0x01;
        updateIrq();
      },
      save: () => ({
        version: 1,
        fields: { queue: [...queue], ctr, lastWasCommand, pendingCommand, kbdPending, outputPort },
      }),
      restore(state) {
        const f = state.fields;
        queue.length = 0;
        for (const b of (f.queue as number[] | undefined) ?? []) queue.push(b & 0xff);
        ctr = Number(f.ctr ?? ctr);
        lastWasCommand = Boolean(f.lastWasCommand);
        pendingCommand = Number(f.pendingCommand ?? 0);
        kbdPending = Number(f.kbdPending ?? 0);
        outputPort = Number(f.outputPort ?? 1);
        updateIrq();
      },
    };
  },
});
