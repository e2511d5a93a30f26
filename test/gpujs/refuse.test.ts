// The gpujs backend never falls back silently: where no GPU context comes up it refuses with an error
// naming the cause; and importing the engine loads neither gpu.js nor gl (the backend starts on first use).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { probeGpujs } from "../../engine/backend/gpujs/index.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const node = (code: string, env: Record<string, string>) =>
  spawnSync(process.execPath, ["--import", "tsx", "-e", code], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 120_000,
  });

test("no GPU context: getBackend('gpujs') and CDIFF_BACKEND=gpujs refuse with the cause, never webasm or cpu", () => {
  const code = `const E = await import("./engine/index.ts");
    try { E.getBackend("gpujs"); console.log("NO ERROR"); } catch (e) { console.log("REFUSED " + e.name + ": " + e.message); }`;
  const r = node(code, { ANGLE_DEFAULT_PLATFORM: "not-a-platform", CDIFF_BACKEND: "cpu" });
  assert.match(r.stdout, /REFUSED GpujsUnavailableError: gpujs backend unavailable: /, r.stdout + r.stderr);
  assert.match(
    r.stdout,
    /(could not create a WebGL context with ANGLE_DEFAULT_PLATFORM=not-a-platform|failed to load|not installed)/,
  );
  const r2 = node(`const E = await import("./engine/index.ts"); E.ones([2]);`, {
    ANGLE_DEFAULT_PLATFORM: "not-a-platform",
    CDIFF_BACKEND: "gpujs",
  });
  assert.ok(r2.status !== 0, "CDIFF_BACKEND=gpujs without a GPU path must fail");
  assert.match(r2.stderr, /gpujs backend unavailable/);
});

test("importing the engine loads neither gpu.js nor gl", () => {
  const code = `await import("./engine/index.ts");
    const { createRequire } = await import("node:module");
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => /node_modules[\\\\/](gl|gpu\\.js)[\\\\/]/.test(k));
    console.log("LOADED " + JSON.stringify(loaded));`;
  const r = node(code, {});
  assert.match(r.stdout, /LOADED \[\]/, r.stdout + r.stderr);
});

test("CDIFF_GPUJS_PROFILE=1 times each kernel call (stats.kernelMs); unset, nothing is timed", () => {
  if (!probeGpujs().ok) return; // gpu.ts's suites report the missing GPU path (a failure in CI)
  const code = `const E = await import("./engine/index.ts");
    const { gpujsReport } = await import("./engine/backend/gpujs/index.ts");
    E.setDefaultBackend("gpujs");
    const a = E.randn([32, 16]), b = E.randn([16, 8]);
    void E.matmul(a, b).exp().data;
    console.log("MS " + JSON.stringify(gpujsReport().stats.kernelMs ?? null));`;
  const on = node(code, { CDIFF_GPUJS_PROFILE: "1", CDIFF_BACKEND: "cpu" });
  const ms = JSON.parse(/MS (.*)/.exec(on.stdout)?.[1] ?? "null") as Record<string, number> | null;
  assert.ok(ms && ms.matmul! > 0 && ms.unary! > 0, on.stdout + on.stderr);
  const off = node(code, { CDIFF_GPUJS_PROFILE: "", CDIFF_BACKEND: "cpu" });
  assert.match(off.stdout, /MS null/, off.stdout + off.stderr);
});

test.run();
