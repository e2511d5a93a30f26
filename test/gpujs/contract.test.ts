// The contract suites (ops, gradient checks, autograd, the toy training run, Adam, attention, Custom
// Diffusion, nn) in a child process with gpujs as the default backend (test/gpujs/use_gpujs_backend.ts):
// they pass, every kernel of the contract ran on gpujs, none on cpu, and the float32 calls ran on the GPU.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { getBackend } from "../../engine/index.ts";
import { gpuOrSkip } from "./gpu.ts";
import { runContractSuites } from "../contract/run_suites.ts";

if (gpuOrSkip("gpujs contract suites")) {
  test("the op suite, gradient checks, optimizer and attention tests pass with gpujs as the default backend", () => {
    const { total, report } = runContractSuites<{
      plain: Record<string, number>;
      cpu: Record<string, number>;
      stats: { gpu: Record<string, number>; host: Record<string, number> };
    }>("test/gpujs/use_gpujs_backend.ts", 600_000);
    const { plain, cpu, stats } = report;
    for (const k of Object.keys(getBackend("gpujs"))) {
      if (k === "name") continue;
      assert.ok((plain[k] ?? 0) > 0, `kernel ${k} never ran on the gpujs backend`);
    }
    assert.equal(cpu, {}, "a kernel of the cpu backend ran");
    // these suites are float64-heavy (host path); the float32 ones must still reach the GPU
    for (const k of [
      "binary",
      "unary",
      "matmul",
      "reduce",
      "conv2d",
      "attention",
      "attentionBackward",
      "groupNorm",
      "adamUpdate",
    ]) {
      assert.ok((stats.gpu[k] ?? 0) > 0, `kernel ${k} never ran on the GPU in the suites`);
    }
    process.stdout.write(
      `\n[gpujs contract] ${total} tests; GPU calls ${JSON.stringify(stats.gpu)}\n[gpujs contract] host calls (float64 tests) ${JSON.stringify(stats.host)}\n`,
    );
  });
}

test.run();
