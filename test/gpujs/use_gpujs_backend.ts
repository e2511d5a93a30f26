// Preload (uvu -r): makes the gpujs backend the default and reports, at exit, how often each kernel
// ran, how many of those calls ran on the GPU and on the host, and whether any tensor reached the cpu
// backend's kernels. Refuses (exit 1) when there is no GPU path: this preload is only used where one is expected.
import { cpuBackend, getBackend, setDefaultBackend } from "../../engine/index.ts";
import type { Backend, TypedArray } from "../../engine/index.ts";
import { gpujsReport } from "../../engine/backend/gpujs/index.ts";
import { countCalls } from "../contract/plain_backend.ts";

const gpujs = getBackend("gpujs");
const counts = countCalls(gpujs as unknown as Backend<TypedArray>);
const cpuCounts = countCalls(cpuBackend as Backend<TypedArray>);
setDefaultBackend("gpujs");
process.stdout.write(`gpujs preload: ${gpujsReport().probe.description}\n`);
process.on("exit", () => {
  const cpu = [...cpuCounts.entries()].filter(([k]) => k !== "fromHost" && k !== "toHost");
  const r = gpujsReport();
  process.stdout.write(
    `\nCONTRACT ${JSON.stringify({ plain: Object.fromEntries(counts), cpu: Object.fromEntries(cpu), stats: r.stats })}\n`,
  );
});
