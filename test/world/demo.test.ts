// the README's demo runs end to end on the shipped world model (a few steps, as a smoke test)
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readImage } from "../../data/images.ts";
import { DEMO_DEFAULTS, runDemo } from "../../world/demo.ts";

test("demo: customises the shipped model on a held-out concept and writes grids, a delta and measurements", () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "demo-"));
  const r = runDemo({ ...DEMO_DEFAULTS, steps: 2, samples: 2, out, log: () => {} });
  for (const f of [
    "before.png",
    "after.png",
    "demo.json",
    "delta/pytorch_custom_diffusion_weights.safetensors",
    "delta/<new1>.safetensors",
  ]) {
    assert.ok(fs.existsSync(path.join(out, f)), f);
  }
  const after = readImage(path.join(out, "after.png"));
  assert.ok(after.height > readImage(path.join(out, "before.png")).height, "after.png has more rows than before.png");
  assert.ok(Number.isFinite(r.after.drift) && Number.isFinite(r.after.imageAlignment));
  assert.throws(
    () => runDemo({ ...DEMO_DEFAULTS, concept: "no such thing", out, log: () => {} }),
    /no held-out concept "no such thing"/,
  );
});

test.run();
