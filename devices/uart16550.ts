/**
 * 16550A UART, the PC's COM1 by default (ports 0x3F8-0x3FF, IRQ 4): all registers, the divisor
 * latch, scratch, FIFO identification, loopback (Linux's 8250 driver probes with it), and
 * interrupts for received data and an empty transmitter. Options: `port`, `irq`.
 */

import { API_VERSION, definePlugin } from "../plugins/mod.ts";

// Register offsets (DLAB=0 unless noted).
const RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6;
const IER_RDA = 0x01, IER_THRE = 0x02, IER_RLS = 0x04, IER_MS = 0x08;
const IIR_NONE = 0x01, IIR_MS = 0x00, IIR_THRE = 0x02, IIR_RDA = 0x04, IIR_RLS = 0x06;
const IIR_FIFO_ON = 0xc0;
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
const LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40;
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;
const RX_CAPACITY = 4096;

export default definePlugin({
  name: "uart16550",
  apiVersion: API_VERSION,
  description: "16550A serial port (COM1 at 0x3F8, IRQ 4)",
  create(host) {
    const base = host.options.number("port", 0x3f8);
    const irq = host.irq(host.options.number("irq", 4));
    const out = new Uint8Array(1);
    const rx: number[] = [];
    let ier = 0, lcr = 0, mcr = 0, lsrErrors = 0, scr = 0, dll = 0x0c, dlm = 0;
    let fcr = 0, threPending = false, msrDelta = 0, irqHigh = false;

    function modemStatus(): number {
      if (mcr & MCR_LOOP) {
        return (mcr & MCR_RTS ? MSR_CTS : 0) | (mcr & MCR_DTR ? MSR_DSR : 0) |
          (mcr & MCR_OUT1 ? MSR_RI : 0) | (mcr & MCR_OUT2 ? MSR_DCD : 0);
      }
      return MSR_DCD | MSR_DSR | MSR_CTS;
    }

    function interruptId(): number {
      if ((ier & IER_RLS) && lsrErrors) return IIR_RLS;
      if ((ier & IER_RDA) && rx.length > 0) return IIR_RDA;
      if ((ier & IER_THRE) && threPending) return IIR_THRE;
      if ((ier & IER_MS) && msrDelta) return IIR_MS;
      return IIR_NONE;
    }

    // The PC wires OUT2 as the interrupt enable between the UART and the PIC.
    function updateIrq(): void {
      const want = interruptId() !== IIR_NONE && (mcr & MCR_OUT2) !== 0;
      if (want === irqHigh) return;
      irqHigh = want;
      if (want) irq.raise();
      else irq.lower();
    }

    function receive(byte: number): void {
      if (rx.length >= RX_CAPACITY) {
        lsrErrors |= LSR_OE;
      } else rx.push(byte);
      updateIrq();
    }

    host.console.onInput(receive);

    return {
      ports: [{
        base,
        length: 8,
        read(offset) {
          switch (offset) {
            case RBR_THR: {
              if (lcr & LCR_DLAB) return dll;
              const b = rx.length > 0 ? rx.shift()! : 0;
              updateIrq();
              return b;
            }
            case IER:
              return lcr & LCR_DLAB ? dlm : ier;
            case IIR_FCR: {
              const id = interruptId();
              // Reading IIR acknowledges a THRE interrupt.
              if (id === IIR_THRE) {
                threPending = false;
                updateIrq();
              }
              return id | (fcr & 1 ? IIR_FIFO_ON : 0);
            }
            case LCR:
              return lcr;
            case MCR:
              return mcr;
            case LSR: {
              const v = LSR_THRE | LSR_TEMT | (rx.length > 0 ? LSR_DR : 0) | lsrErrors;
              lsrErrors = 0;
              updateIrq();
              return v;
            }
            case MSR: {
              const v = modemStatus() | msrDelta;
              msrDelta = 0;
              updateIrq();
              return v;
            }
            default: // SCR
              return scr;
          }
        },
        write(offset, _size, value) {
          value &= 0xff;
          switch (offset) {
            case RBR_THR:
              if (lcr & LCR_DLAB) {
                dll = value;
                return;
              }
              if (mcr & MCR_LOOP) receive(value);
              else {
                out[0] = value;
                host.console.write(out);
              }
              // The transmitter empties at once, so THRE is pending again.
              threPending = true;
              updateIrq();
              return;
            case IER:
              if (lcr & LCR_DLAB) {
                dlm = value;
                return;
              }
              // Enabling THRE interrupts with an empty transmitter raises one at once.
              if ((value & IER_THRE) && !(ier & IER_THRE)) threPending = true;
              ier = value & 0x0f;
              updateIrq();
              return;
            case IIR_FCR:
              fcr = value & 0xc9;
              if (value & 0x02) rx.length = 0;
              updateIrq();
              return;
            case LCR:
              lcr = value;
              return;
            case MCR: {
              const before = modemStatus();
              mcr = value & 0x1f;
              const after = modemStatus();
              // Delta bits: CTS, DSR, DCD changes and the trailing edge of RI.
              msrDelta |= ((before ^ after) >> 4) & 0x0b;
              if ((before & MSR_RI) && !(after & MSR_RI)) msrDelta |= 0x04;
              updateIrq();
              return;
            }
            case LSR:
            case MSR:
              return; // read-only
            default:
              scr = value;
          }
        },
      }],
      reset() {
        rx.length = 0;
        ier =
          lcr =
          mcr =
          lsrErrors =
          scr =
          fcr =
          msrDelta =
          dlm =
            0;
        dll = 0x0c;
        threPending = false;
        updateIrq();
      },
      save: () => ({
        version: 1,
        fields: {
          rx: [...rx],
          ier,
          lcr,
          mcr,
          lsrErrors,
          scr,
          dll,
          dlm,
          fcr,
          threPending,
          msrDelta,
        },
      }),
      restore(state) {
        const f = state.fields;
        rx.length = 0;
        for (const b of (f.rx as number[] | undefined) ?? []) rx.push(b & 0xff);
        ier = Number(f.ier ?? 0);
        lcr = Number(f.lcr ?? 0);
        mcr = Number(f.mcr ?? 0);
        lsrErrors = Number(f.lsrErrors ?? 0);
        scr = Number(f.scr ?? 0);
        dll = Number(f.dll ?? 0x0c);
        dlm = Number(f.dlm ?? 0);
        fcr = Number(f.fcr ?? 0);
        threPending = Boolean(f.threPending);
        msrDelta = Number(f.msrDelta ?? 0);
        updateIrq();
      },
    };
  },
});
