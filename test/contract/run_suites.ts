// The contract suites (ops, gradient checks, autograd, the toy training run, Adam, attention, Custom
// Diffusion, nn) in a child process whose preload makes another backend the default and prints one
// `CONTRACT {...}` line at exit; returns how many tests ran and that report.
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as assert from "uvu/assert";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SUITES =
  "test/(engine/(autograd|forward|gradcheck|train_toy)|optim/adam|models/(attention|custom_diffusion|nn/.*))\\.test\\.ts$";

export function runContractSuites<R>(preload: string, timeoutMs: number): { total: number; report: R } {
  const r = spawnSync(
    process.execPath,
    [path.join(root, "node_modules/uvu/bin.js"), "-r", "tsx", "-r", path.join(root, preload), ".", SUITES],
    {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, CDIFF_THREADS: "1" },
      timeout: timeoutMs,
    },
  );
  const out = `${r.stdout}\n${r.stderr}`;
  assert.is(r.status, 0, `child suite failed:\n${out.slice(-4000)}`);
  const total = /Total:\s+(\d+)/.exec(out.replace(/\x1b\[[0-9;]*m/g, ""));
  assert.ok(total && Number(total[1]) >= 60, `expected the suites to run, got: ${out.slice(-2000)}`);
  const line = out.split("\n").find((l) => l.startsWith("CONTRACT "));
  assert.ok(line, "the preload did not report");
  return { total: Number(total![1]), report: JSON.parse(line!.slice("CONTRACT ".length)) as R };
}
