// Entry of a worker-pool thread (see pool.ts): instantiates the SGEMM and row modules on the shared
// memory, then serves jobs from its control-block slot, each a part kernel (parts.ts) run with this
// thread's packing buffers.

import { requireWasm } from "./api.ts";
import { makeContext } from "./context.ts";
import type { SgemmExports } from "./kernels.ts";
import { partKernel } from "./parts.ts";
import { FAILED, STATE, counterOffset, serveJobs, slotWords, type WorkerInit } from "./protocol.ts";
import type { RowExports } from "./rowops.ts";
import { onThreadStart } from "./thread.ts";

onThreadStart<WorkerInit>((init) => {
  const { memory, ctrl, slot } = init;
  let ctx;
  try {
    const api = requireWasm();
    const counter = new Int32Array(ctrl, counterOffset(init.slots), 1);
    ctx = makeContext({
      gemmModule: new api.Instance(init.gemmModule, { env: { memory } }).exports as unknown as SgemmExports,
      row: new api.Instance(init.rowModule, { env: { memory } }).exports as unknown as RowExports,
      consts: init.consts,
      bufs: init.bufs,
      heap: () => new Float32Array(memory.buffer),
      next: () => Atomics.add(counter, 0, 1),
    });
  } catch (e) {
    const I = slotWords(ctrl, slot);
    Atomics.store(I, STATE, FAILED);
    Atomics.notify(I, STATE);
    throw e;
  }
  const c = ctx;
  serveJobs(ctrl, slot, (cmd, args) => partKernel(cmd)(c, args));
});
