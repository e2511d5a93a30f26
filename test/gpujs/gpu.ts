// Shared by the gpujs tests: is there a GPU path here? In CI (CI=true) its absence is a failure; elsewhere
// the tests are skipped with a loud message naming the cause and the fix.
import { test } from "uvu";
import { probeGpujs } from "../../engine/backend/gpujs/index.ts";
import type { GpujsProbe } from "../../engine/backend/gpujs/index.ts";

/** The probe when the GPU path exists; otherwise null after a loud skip notice (or a failing test in CI). */
export function gpuOrSkip(suite: string): GpujsProbe | null {
  const p = probeGpujs();
  if (p.ok) {
    process.stdout.write(`\n[${suite}] gpujs runs on: ${p.description}\n`);
    return p;
  }
  if (process.env.CI === "true") {
    test(`${suite}: the gpujs GPU path exists (required in CI)`, () => {
      throw new Error(`no GPU path in CI: ${p.reason}`);
    });
  } else {
    const bar = "!".repeat(100);
    process.stdout.write(
      `\n${bar}\n!! SKIPPED ${suite}: no gpujs GPU path here: ${p.reason}\n!! run: bash scripts/gpu-setup.sh (CI=true makes this a failure)\n${bar}\n`,
    );
    test.skip(`${suite} (skipped: no GPU path)`, () => {});
  }
  return null;
}
