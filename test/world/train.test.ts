// a few steps of the world's pretraining recipe (smoke test), and exact resume from a checkpoint
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { WORLD_RECIPE, trainWorld } from "../../world/train.ts";

const quiet = () => {};

test("the recipe runs, checkpoints, and a resumed run equals an uninterrupted one", () => {
  const base = { ...WORLD_RECIPE, steps: 3, batch: 4, checkpointEvery: 1, resume: false, log: quiet };
  const a = trainWorld({ ...base, out: fs.mkdtempSync(path.join(os.tmpdir(), "world-a-")) });
  assert.is(a.losses.length, 3);
  assert.ok(a.losses.every((l) => Number.isFinite(l) && l > 0));
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "world-b-"));
  trainWorld({ ...base, out, stopAfter: 2 });
  assert.ok(fs.existsSync(path.join(out, "checkpoints", "checkpoint-2", "ema.safetensors")));
  const b = trainWorld({ ...base, out, resume: true });
  assert.equal(b.losses, a.losses);
  const wa = a.pipe.unet.stateDict(),
    wb = b.pipe.unet.stateDict();
  for (const [k, t] of wa) assert.equal(Array.from(wb.get(k)!.data), Array.from(t.data), k);
});

test.run();
