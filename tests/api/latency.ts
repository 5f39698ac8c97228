/**
 * API latencies on this host: `deno run -A tests/api/latency.ts`. Prints the `GET /` round trip
 * (a new connection per request, as curl makes) and `PATCH /vm` Paused/Resumed against a guest
 * spinning with no exits (so KVM's vCPU must be kicked out of KVM_RUN), on every backend here.
 */

import { BACKENDS, ROOT } from "../_run.ts";
import { api, VmProcess } from "./_api.ts";

const dir = Deno.makeTempDirSync({ prefix: "dv-api-latency-" });
try {
  const idle = new VmProcess(`${dir}/idle.sock`, ["--backend", "interp"]);
  await idle.ready();
  for (let i = 0; i < 200; i++) await api(idle.sock, "GET", "/");
  const n = 2000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await api(idle.sock, "GET", "/");
  console.log(`GET / round trip: ${((performance.now() - t0) / n * 1000).toFixed(0)} µs`);
  idle.kill();
  await idle.exited;

  for (const backend of BACKENDS) {
    const vm = new VmProcess(`${dir}/${backend}.sock`, [
      "--backend",
      backend,
      "--kernel",
      `${ROOT}tests/api/guests/spin.bin`,
    ]);
    await vm.ready();
    await vm.lines(1);
    let pause = 0, resume = 0;
    const rounds = 200;
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      await api(vm.sock, "PATCH", "/vm", { state: "Paused" });
      pause += performance.now() - t;
      t = performance.now();
      await api(vm.sock, "PATCH", "/vm", { state: "Resumed" });
      resume += performance.now() - t;
    }
    console.log(
      `${backend}: PATCH /vm Paused ${(pause / rounds * 1000).toFixed(0)} µs, ` +
        `Resumed ${(resume / rounds * 1000).toFixed(0)} µs`,
    );
    vm.child.kill("SIGTERM");
    await vm.exited;
  }
} finally {
  Deno.removeSync(dir, { recursive: true });
}
