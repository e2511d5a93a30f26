// The contract suites (ops, gradient checks, autograd, the toy training run, Adam, attention, Custom
// Diffusion, nn) in a child process with gpujs as the default backend (test/gpujs/use_gpujs_backend.ts):
// they pass, every kernel of the contract ran on gpujs, none on cpu, and the float32 calls ran on the GPU.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { getBackend } from "../../engine/index.ts";
import { gpuOrSkip } from "./gpu.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

if (gpuOrSkip("gpujs contract suites")) {
  test("the op suite, gradient checks, optimizer and attention tests pass with gpujs as the default backend", () => {
    const files = "test/(engine/(autograd|forward|gradcheck|train_toy)|optim/adam|models/(attention|custom_diffusion|nn/.*))\\.test\\.ts$";
    const r = spawnSync(process.execPath, [path.join(root, "node_modules/uvu/bin.js"), "-r", "tsx", "-r", path.join(root, "test/gpujs/use_gpujs_backend.ts"), ".", files], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, CDIFF_THREADS: "1" },
      timeout: 600_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.is(r.status, 0, `child suite failed:\n${out.slice(-4000)}`);
    const total = /Total:\s+(\d+)/.exec(out.replace(/\x1b\[[0-9;]*m/g, ""));
    assert.ok(total && Number(total[1]) >= 60, `expected the suites to run, got: ${out.slice(-2000)}`);
    const line = out.split("\n").find((l) => l.startsWith("CONTRACT "));
    assert.ok(line, "the preload did not report");
    const { plain, cpu, stats } = JSON.parse(line!.slice("CONTRACT ".length)) as { plain: Record<string, number>; cpu: Record<string, number>; stats: { gpu: Record<string, number>; host: Record<string, number> } };
    for (const k of Object.keys(getBackend("gpujs"))) {
      if (k === "name") continue;
      assert.ok((plain[k] ?? 0) > 0, `kernel ${k} never ran on the gpujs backend`);
    }
    assert.equal(cpu, {}, "a kernel of the cpu backend ran");
    // these suites are float64-heavy (host path); the float32 ones must still reach the GPU
    for (const k of ["binary", "unary", "matmul", "reduce", "conv2d", "attention", "attentionBackward", "groupNorm", "adamUpdate"]) {
      assert.ok((stats.gpu[k] ?? 0) > 0, `kernel ${k} never ran on the GPU in the suites`);
    }
    process.stdout.write(`\n[gpujs contract] ${total![1]} tests; GPU calls ${JSON.stringify(stats.gpu)}\n[gpujs contract] host calls (float64 tests) ${JSON.stringify(stats.host)}\n`);
  });
}

test.run();
