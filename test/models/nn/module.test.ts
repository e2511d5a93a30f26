// Module: keys from field paths, strict state-dict loading with named errors, shape-only builds
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../../engine/index.ts";
import { Dropout, Linear, Module, withShapeOnly } from "../../../models/nn/index.ts";

class Block extends Module {
  to_q = new Linear(4, 4, false);
  to_out: [Linear, Dropout] = [new Linear(4, 2), new Dropout(0.1)];
  _cache: T.Tensor | null = T.zeros([1]);
  scale = 0.5;
}
class Net extends Module {
  layers = [new Block(), new Block()];
  proj = new Linear(2, 3);
}

test("state-dict keys mirror field paths; '_' fields and non-tensors are skipped", () => {
  const keys = [...new Net().stateDict().keys()];
  assert.equal(keys, [
    "layers.0.to_q.weight",
    "layers.0.to_out.0.weight",
    "layers.0.to_out.0.bias",
    "layers.1.to_q.weight",
    "layers.1.to_out.0.weight",
    "layers.1.to_out.0.bias",
    "proj.weight",
    "proj.bias",
  ]);
  assert.is(new Net().numParameters(), 2 * (16 + 8 + 2) + 6 + 3);
});

test("loadStateDict copies values into the same tensors and names missing/unexpected/mis-shaped keys", () => {
  const a = new Net(),
    b = new Net();
  const w = b.proj.weight;
  b.loadStateDict(a.stateDict());
  assert.is(b.proj.weight, w);
  assert.equal(b.proj.weight.toArray(), a.proj.weight.toArray());
  const sd = a.stateDict();
  sd.delete("proj.bias");
  sd.set("extra.weight", T.zeros([1]));
  assert.throws(
    () => b.loadStateDict(sd),
    (e: Error) =>
      e.name === "StateDictError" && /missing 1 key \(proj.bias\), unexpected 1 key \(extra.weight\)/.test(e.message),
  );
  const sd2 = a.stateDict();
  sd2.set("proj.weight", T.zeros([3, 3]));
  assert.throws(() => b.loadStateDict(sd2), /load: proj.weight expected \[3,2\], got \[3,3\]/);
  const sd3 = a.stateDict();
  sd3.set("text_model.embeddings.position_ids", T.zeros([1]));
  b.loadStateDict(sd3, { ignore: ["text_model.embeddings.position_ids"] });
});

test("shape-only build allocates no parameter memory", () => {
  const big = withShapeOnly(() => new Linear(4096, 4096));
  assert.equal(big.weight.shape, [4096, 4096]);
  assert.is(big.weight.data.length, 0);
});

test("train/eval propagate; toDType converts parameters", () => {
  const n = new Net().eval();
  assert.is(n.layers[1].to_out[1].training, false);
  n.train();
  assert.is(n.layers[1].to_out[1].training, true);
  n.toDType("float64");
  assert.is(n.proj.weight.dtype, "float64");
  assert.ok(n.proj.weight.data instanceof Float64Array);
});

test.run();
