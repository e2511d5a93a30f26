// Preload (uvu -r): makes the plain test backend the default and reports, at exit, how often each
// kernel ran and whether any tensor reached the cpu backend's kernels.
import { cpuBackend, registerBackend, setDefaultBackend } from "../../engine/index.ts";
import type { TypedArray } from "../../engine/index.ts";
import { countCalls, plainBackend } from "./plain_backend.ts";

const counts = countCalls(plainBackend);
const cpuCounts = countCalls(cpuBackend as typeof plainBackend);
registerBackend("plain-test", plainBackend);
setDefaultBackend("plain-test");
process.on("exit", () => {
  const cpu = [...cpuCounts.entries()].filter(([k]) => k !== "fromHost" && k !== "toHost");
  process.stdout.write(
    `\nCONTRACT ${JSON.stringify({ plain: Object.fromEntries(counts), cpu: Object.fromEntries(cpu) })}\n`,
  );
});
export type { TypedArray };
