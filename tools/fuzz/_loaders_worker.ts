/**
 * Runs loader fuzz cases on a Worker, so the driver (`loaders.ts`) can stop one that hangs. It
 * publishes the case it is on in a shared Int32Array ([0] = index + 1, bumped per case) and
 * posts each result.
 */
import { runCase } from "./loader_cases.ts";

/** What the driver sends. */
export interface FuzzJob {
  seed: number;
  from: number;
  to: number;
  progress: SharedArrayBuffer;
  /** Test hook: spin forever at this case, to show the driver stops a hang. */
  hangAt?: number;
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<FuzzJob>) => void) | null;
  postMessage(m: unknown): void;
};

scope.onmessage = (e) => {
  const { seed, from, to, progress, hangAt } = e.data;
  const p = new Int32Array(progress);
  for (let i = from; i < to; i++) {
    Atomics.store(p, 0, i + 1);
    if (i === hangAt) { for (;;) { /* the test hook's hang */ } }
    // One message per case: when a case hangs, every case before it has been reported.
    const t0 = performance.now();
    const result = runCase(seed, i);
    scope.postMessage({ kind: "result", result, ms: performance.now() - t0 });
  }
  scope.postMessage({ kind: "done" });
};
