// The reference-library parity suites (diffusers' UNet2DConditionModel, transformers' CLIP, diffusers'
// AutoencoderKL on their fixtures) in a child process with gpujs as the default backend. About 5 minutes
// on SwiftShader with 2 cores, so it runs in CI (CI=true) or with CDIFF_GPUJS_FULL=1, and says so otherwise.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { gpuOrSkip } from "./gpu.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const wanted = process.env.CI === "true" || process.env.CDIFF_GPUJS_FULL === "1";

if (!wanted) {
  process.stdout.write(
    "\n!! SKIPPED gpujs golden parity (UNet, CLIP, VAE against diffusers/transformers fixtures, ~5 min): set CDIFF_GPUJS_FULL=1 (CI runs it)\n",
  );
  test.skip("gpujs golden parity (set CDIFF_GPUJS_FULL=1)", () => {});
} else if (gpuOrSkip("gpujs golden parity")) {
  test("UNet2DConditionModel, CLIP text/vision and AutoencoderKL match their reference fixtures with gpujs as the default backend", () => {
    const files = "test/models/parity/(unet_2d_condition|modeling_clip|autoencoder_kl)\\.test\\.ts$";
    const t0 = Date.now();
    const r = spawnSync(
      process.execPath,
      [
        path.join(root, "node_modules/uvu/bin.js"),
        "-r",
        "tsx",
        "-r",
        path.join(root, "test/gpujs/use_gpujs_backend.ts"),
        ".",
        files,
      ],
      {
        cwd: root,
        encoding: "utf8",
        env: { ...process.env, CDIFF_THREADS: "1" },
        timeout: 1_200_000,
      },
    );
    const out = `${r.stdout}\n${r.stderr}`;
    assert.is(r.status, 0, `child suite failed:\n${out.slice(-4000)}`);
    const total = /Total:\s+(\d+)/.exec(out.replace(/\x1b\[[0-9;]*m/g, ""));
    assert.ok(total && Number(total[1]) >= 10, `expected the parity suites to run, got: ${out.slice(-2000)}`);
    const line = out.split("\n").find((l) => l.startsWith("CONTRACT "));
    const { cpu, stats } = JSON.parse(line!.slice("CONTRACT ".length)) as {
      cpu: Record<string, number>;
      stats: { gpu: Record<string, number> };
    };
    assert.equal(cpu, {}, "a kernel of the cpu backend ran");
    for (const k of ["conv2d", "matmul", "attention", "groupNorm", "layerNorm"])
      assert.ok((stats.gpu[k] ?? 0) > 0, `${k} never ran on the GPU`);
    process.stdout.write(
      `\n[gpujs golden] ${total![1]} tests in ${((Date.now() - t0) / 1000).toFixed(0)} s; GPU calls ${JSON.stringify(stats.gpu)}\n`,
    );
  });
}

test.run();
