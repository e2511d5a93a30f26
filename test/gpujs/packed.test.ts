// CDIFF_GPUJS_PACK=1 (kernel outputs four values per texel: a quarter of the GPU memory) passes the
// same parity suite: every kernel forward and backward, the tiny UNet and the K/V step against cpu,
// run in a child process (the option is read when the backend starts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { gpuOrSkip } from "./gpu.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

if (gpuOrSkip("gpujs packed textures")) {
  test("the parity suite passes with CDIFF_GPUJS_PACK=1", () => {
    const r = spawnSync(
      process.execPath,
      [path.join(root, "node_modules/uvu/bin.js"), "-r", "tsx", "test/gpujs", "parity\\.test\\.ts$"],
      { cwd: root, encoding: "utf8", env: { ...process.env, CDIFF_GPUJS_PACK: "1" }, timeout: 600_000 },
    );
    const out = `${r.stdout}\n${r.stderr}`.replace(/\x1b\[[0-9;]*m/g, "");
    assert.is(r.status, 0, `packed parity failed:\n${out.slice(-4000)}`);
    assert.match(out, /textures packed \(four values per texel\)/, "the child ran without packed textures");
    const passed = /Passed:\s+(\d+)/.exec(out);
    assert.ok(passed && Number(passed[1]) >= 20, `expected the parity tests to run:\n${out.slice(-2000)}`);
    const worst = out.split("\n").find((l) => /^\s+fill \d/.test(l));
    process.stdout.write(
      `\n[gpujs packed] parity with CDIFF_GPUJS_PACK=1: ${passed![1]} passed; worst/tolerance: ${worst?.trim()}\n`,
    );
  });
}

test.run();
