// examples/sample_ddim.ts runs end to end (the denoising loop spelled out) and writes its PNGs
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { readImage } from "../../data/images.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

test("sample_ddim: 3 guided DDIM steps on the world model write samples.png and trajectory.png", () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "sample-ddim-"));
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", path.join(root, "examples/sample_ddim.ts"), "--steps", "3", "--n", "2", "--out", out],
    { cwd: root, encoding: "utf8", env: { ...process.env, CDIFF_THREADS: "1" } },
  );
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /step   3\/3/);
  const s = readImage(path.join(out, "samples.png"));
  assert.ok(s.width > s.height, "two samples side by side");
  assert.ok(fs.existsSync(path.join(out, "trajectory.png")));
  fs.rmSync(out, { recursive: true, force: true });
});

test.run();
