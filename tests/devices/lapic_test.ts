import { assertEquals, assertTrue } from "../_assert.ts";
import lapicPlugin, { LocalApic } from "../../devices/lapic.ts";
import { createOnFakeHost, FakeClock } from "./_fake_host.ts";

const SVR = 0xf0, TPR = 0x80, EOI = 0xb0, PPR = 0xa0, LDR = 0xd0, DFR = 0xe0;
const ICR_LO = 0x300, ICR_HI = 0x310, LVT_TIMER = 0x320, LVT_LINT0 = 0x350;
const TMICT = 0x380, TMCCT = 0x390, TDCR = 0x3e0, ESR = 0x280, LVT_ERROR = 0x370;

function enabled(): { clock: FakeClock; lapic: LocalApic } {
  const clock = new FakeClock();
  const lapic = new LocalApic(clock);
  lapic.writeRegister(SVR, 0x1ff);
  return { clock, lapic };
}

Deno.test("lapic reports version 0x14 with six LVT entries and starts software-disabled", () => {
  const lapic = new LocalApic(new FakeClock());
  assertEquals(lapic.readRegister(0x30), 0x50014);
  assertEquals(lapic.readRegister(SVR), 0xff);
  assertEquals(lapic.readRegister(DFR), 0xffffffff);
  assertEquals(lapic.readRegister(LVT_LINT0), 0x700, "BSP LINT0 is ExtINT (virtual wire)");
  assertEquals(lapic.readRegister(LVT_TIMER), 0x10000);
});

Deno.test("lapic one-shot timer counts down at the divided rate and interrupts once", () => {
  const { clock, lapic } = enabled();
  lapic.writeRegister(TDCR, 0x3); // divide by 16
  lapic.writeRegister(LVT_TIMER, 0xec);
  lapic.writeRegister(TMICT, 1000);
  clock.advance(16 * 250);
  assertEquals(lapic.readRegister(TMCCT), 750);
  assertEquals(lapic.pendingVector, -1);
  clock.advance(16 * 750);
  assertEquals(lapic.readRegister(TMCCT), 0);
  assertEquals(lapic.pendingVector, 0xec);
  assertEquals(lapic.acknowledge(), 0xec);
  lapic.writeRegister(EOI, 0);
  clock.advance(1_000_000);
  assertEquals(lapic.pendingVector, -1, "one-shot fires once");
});

Deno.test("lapic periodic timer interrupts every period and reloads its count", () => {
  const { clock, lapic } = enabled();
  lapic.writeRegister(TDCR, 0xb); // divide by 1
  lapic.writeRegister(LVT_TIMER, 0x20000 | 0xef);
  lapic.writeRegister(TMICT, 4_000_000); // 4 ms at 1 GHz
  let count = 0;
  for (let i = 0; i < 10; i++) {
    clock.advance(4_000_000);
    if (lapic.pendingVector === 0xef) {
      count++;
      lapic.acknowledge();
      lapic.writeRegister(EOI, 0);
    }
  }
  assertEquals(count, 10);
  clock.advance(1_000_000);
  assertEquals(lapic.readRegister(TMCCT), 3_000_000);
});

Deno.test("lapic timer counts while masked but raises nothing", () => {
  const { clock, lapic } = enabled();
  lapic.writeRegister(TDCR, 0xb);
  lapic.writeRegister(LVT_TIMER, 0x10000 | 0xec);
  lapic.writeRegister(TMICT, 100);
  clock.advance(50);
  assertEquals(lapic.readRegister(TMCCT), 50);
  clock.advance(100);
  assertEquals(lapic.pendingVector, -1);
});

Deno.test("lapic TPR and in-service priority hold back lower-class vectors", () => {
  const { lapic } = enabled();
  lapic.acceptInterrupt(0x51, false);
  assertEquals(lapic.acknowledge(), 0x51);
  lapic.acceptInterrupt(0x45, false);
  assertEquals(lapic.pendingVector, -1, "class 4 waits behind class 5 in service");
  assertEquals(lapic.readRegister(PPR), 0x50);
  lapic.acceptInterrupt(0x61, false);
  assertEquals(lapic.pendingVector, 0x61);
  lapic.writeRegister(TPR, 0x70);
  assertEquals(lapic.pendingVector, -1, "TPR 0x70 blocks class 6");
  lapic.writeRegister(TPR, 0);
  assertEquals(lapic.acknowledge(), 0x61);
  lapic.writeRegister(EOI, 0);
  lapic.writeRegister(EOI, 0);
  assertEquals(lapic.acknowledge(), 0x45);
});

Deno.test("lapic EOI of a level-triggered vector is broadcast, an edge one is not", () => {
  const { lapic } = enabled();
  const eois: number[] = [];
  lapic.onEoi = (v) => eois.push(v);
  lapic.acceptInterrupt(0x30, true);
  lapic.acknowledge();
  lapic.writeRegister(EOI, 0);
  lapic.acceptInterrupt(0x31, false);
  lapic.acknowledge();
  lapic.writeRegister(EOI, 0);
  assertEquals(eois, [0x30]);
});

Deno.test("lapic delivers self-IPIs by shorthand and by its own physical or logical ID", () => {
  const { lapic } = enabled();
  lapic.writeRegister(ICR_LO, (1 << 18) | 0xf6); // self
  assertEquals(lapic.acknowledge(), 0xf6);
  lapic.writeRegister(EOI, 0);
  lapic.writeRegister(ICR_HI, 0);
  lapic.writeRegister(ICR_LO, 0xf5); // physical destination 0 = our ID
  assertEquals(lapic.acknowledge(), 0xf5);
  lapic.writeRegister(EOI, 0);
  lapic.writeRegister(LDR, 0x01000000);
  lapic.writeRegister(ICR_HI, 0x02000000);
  lapic.writeRegister(ICR_LO, 0x800 | 0xf4); // logical 2: not us
  assertEquals(lapic.pendingVector, -1);
  lapic.writeRegister(ICR_LO, (3 << 18) | 0xf3); // all but self
  assertEquals(lapic.pendingVector, -1);
  assertEquals(lapic.readRegister(ICR_LO) & 0x1000, 0, "delivery status idle");
});

Deno.test("lapic ignores INIT and SIPI to other CPUs and reports them", () => {
  const { lapic } = enabled();
  const seen: string[] = [];
  lapic.onUnhandled = (w) => seen.push(w);
  lapic.writeRegister(ICR_LO, (3 << 18) | 0x500);
  lapic.writeRegister(ICR_LO, (3 << 18) | 0x600 | 0x10);
  assertEquals(seen.length, 2);
  assertEquals(lapic.pendingVector, -1);
});

Deno.test("lapic software disable masks every LVT and holds delivery", () => {
  const { lapic } = enabled();
  lapic.writeRegister(LVT_TIMER, 0xec);
  lapic.acceptInterrupt(0x40, false);
  lapic.writeRegister(SVR, 0xff);
  assertEquals(lapic.readRegister(LVT_TIMER) & 0x10000, 0x10000);
  assertEquals(lapic.pendingVector, -1);
  lapic.writeRegister(LVT_TIMER, 0xec);
  assertEquals(lapic.readRegister(LVT_TIMER) & 0x10000, 0x10000, "cannot unmask while off");
});

Deno.test("lapic illegal vectors set the error status register", () => {
  const { lapic } = enabled();
  lapic.writeRegister(LVT_ERROR, 0xfe);
  lapic.writeRegister(ICR_LO, (1 << 18) | 0x05);
  lapic.writeRegister(ESR, 0);
  assertEquals(lapic.readRegister(ESR), 0x20);
  assertEquals(lapic.pendingVector, 0xfe);
});

Deno.test("lapic flat and cluster logical destinations", () => {
  const { lapic } = enabled();
  lapic.writeRegister(LDR, 0x04000000);
  assertTrue(lapic.matchesDestination(0x04, true));
  assertTrue(!lapic.matchesDestination(0x03, true));
  lapic.writeRegister(DFR, 0x0fffffff);
  lapic.writeRegister(LDR, 0x21000000);
  assertTrue(lapic.matchesDestination(0x23, true));
  assertTrue(!lapic.matchesDestination(0x13, true));
  assertTrue(lapic.matchesDestination(0xff, false));
});

Deno.test("lapic plugin maps the page at 0xFEE00000 and reads registers by MMIO", () => {
  const { io, host } = createOnFakeHost(lapicPlugin);
  assertEquals(io.readl(0xfee00030), 0x50014);
  io.writel(0xfee000f0, 0x1ff);
  io.writel(0xfee003e0, 0xb);
  io.writel(0xfee00380, 500);
  host.clock.advance(200);
  assertEquals(io.readl(0xfee00390), 300);
});

Deno.test("lapic state survives save and restore with a running timer", () => {
  const { clock, lapic } = enabled();
  lapic.writeRegister(TDCR, 0xb);
  lapic.writeRegister(LVT_TIMER, 0xec);
  lapic.writeRegister(TMICT, 1000);
  clock.advance(300);
  const state = JSON.parse(JSON.stringify(lapic.save()));
  const clock2 = new FakeClock();
  clock2.advance(300);
  const copy = new LocalApic(clock2);
  copy.restore(state);
  assertEquals(copy.readRegister(TMCCT), 700);
  clock2.advance(700);
  assertEquals(copy.pendingVector, 0xec);
});

Deno.test("lapic one-shot count that has already expired when armed still fires, once", () => {
  // A tickless guest on a slow CPU programs counts that are over before the write returns.
  let now = 0;
  const timers: { deadline: number; cb: () => void }[] = [];
  const clock = {
    now: () => now,
    timer: (cb: () => void) => {
      const t = { deadline: Infinity, cb };
      timers.push(t);
      return { arm: (d: number) => t.deadline = now + d, cancel: () => t.deadline = Infinity };
    },
  };
  const apic = new LocalApic(clock);
  apic.writeRegister(0xf0, 0x1ff); // software enable, spurious vector 0xff
  apic.writeRegister(0x3e0, 0xb); // divide by 1
  apic.writeRegister(0x320, 0x40); // LVT timer: vector 0x40, one-shot, unmasked
  // The clock moves between the count's start and the arming: the count has run out already.
  const realNow = clock.now;
  let calls = 0;
  clock.now = () => (calls++ === 0 ? realNow() : realNow() + 50);
  apic.writeRegister(0x380, 1); // one tick = 1 ns
  clock.now = realNow;
  const fire = () => {
    for (const t of timers) {
      if (t.deadline <= now) {
        t.deadline = Infinity;
        t.cb();
      }
    }
  };
  now += 100;
  fire();
  assertEquals(apic.pendingVector, 0x40);
  // Re-writing the LVT after it fired must not fire it again.
  apic.acknowledge();
  apic.writeRegister(0xb0, 0); // EOI
  apic.writeRegister(0x320, 0x40);
  now += 100;
  fire();
  assertEquals(apic.pendingVector, -1);
});

Deno.test("lapic one-shot due but not yet delivered when saved still fires after restore", () => {
  // The VM clock passes the deadline, the machine pauses before its timers are serviced, and
  // the snapshot is taken then: the count reads 0 but the interrupt is still owed.
  const manual = () => {
    let now = 0;
    const timers: { deadline: number; cb: () => void }[] = [];
    return {
      clock: {
        now: () => now,
        timer: (cb: () => void) => {
          const t = { deadline: Infinity, cb };
          timers.push(t);
          return { arm: (d: number) => t.deadline = now + d, cancel: () => t.deadline = Infinity };
        },
      },
      /** Moves time without servicing timers. */
      pass: (ns: number) => now += ns,
      service: () => {
        for (const t of timers) {
          if (t.deadline <= now) {
            t.deadline = Infinity;
            t.cb();
          }
        }
      },
    };
  };
  const a = manual();
  const apic = new LocalApic(a.clock);
  apic.writeRegister(SVR, 0x1ff);
  apic.writeRegister(TDCR, 0xb); // divide by 1
  apic.writeRegister(LVT_TIMER, 0x40); // one-shot
  apic.writeRegister(TMICT, 1000);
  a.pass(1500);
  assertEquals(apic.readRegister(TMCCT), 0);
  assertEquals(apic.pendingVector, -1, "not delivered yet");
  const state = JSON.parse(JSON.stringify(apic.save()));
  const b = manual();
  b.pass(1500);
  const copy = new LocalApic(b.clock);
  copy.restore(state);
  b.service();
  assertEquals(copy.pendingVector, 0x40, "the owed one-shot fires");
  copy.acknowledge();
  copy.writeRegister(EOI, 0);
  b.pass(1_000_000);
  b.service();
  assertEquals(copy.pendingVector, -1, "once");
});
