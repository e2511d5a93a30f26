// Node worker bootstrap for a TypeScript entry (see thread.ts): registers tsx's require hook in this
// worker thread (in-thread, cheaper to start than its ESM loader thread) and loads the entry through
// it. Where that fails, the error is printed and the pool is told at once through the status word.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { workerData } from "node:worker_threads";

try {
  const { register } = await import("tsx/cjs/api");
  register();
  createRequire(import.meta.url)(fileURLToPath(workerData.entry));
} catch (e) {
  console.error("cpu worker failed to start:", e);
  Atomics.store(workerData.status, 0, -1);
  Atomics.notify(workerData.status, 0);
}
