// Parity of CLIPTextModel with transformers 4.57.6 on test/fixtures/clip_text_model (eos_token_id 2:
// legacy argmax pooling) and clip_text_model_eos (eos_token_id 500: first-eos pooling).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { noGrad } from "../../../engine/index.ts";
import type { Tensor } from "../../../engine/index.ts";
import { CLIPTextModel, eosPositions } from "../../../models/clip/modeling_clip.ts";
import { assertAllClose, assertRelToMax, Golden, TOL } from "./golden.ts";

const GRAD_KEYS = [
  "text_model.embeddings.token_embedding.weight",
  "text_model.encoder.layers.0.self_attn.k_proj.weight",
];

/** transformers' hidden_states: the embeddings, then each encoder layer's output (no final norm). */
function hiddenStates(model: CLIPTextModel, ids: Float32Array, batch: number, length: number): Tensor[] {
  const tm = model.text_model;
  const out = [tm.embeddings.forward(Int32Array.from(ids), batch, length)]; // (B, L, D)
  for (const layer of tm.encoder.layers) out.push(layer.forward(out[out.length - 1], { causal: true }));
  return out;
}

for (const [folder, eos] of [
  ["clip_text_model", 2],
  ["clip_text_model_eos", 500],
] as const) {
  const G = new Golden(folder);
  const ids = G.data("input.input_ids");
  const [B, L] = G.shape("input.input_ids");

  test(`${folder}: config and pooled positions (eos_token_id ${eos})`, () => {
    const model = CLIPTextModel.fromPretrained(G.dir);
    assert.is(model.config.eos_token_id, eos);
    assert.equal(eosPositions(ids, B, L, eos), [...G.data("pooled_positions")]);
  });

  test(`${folder}: float32 hidden states, last_hidden_state, pooler_output and two gradients`, () => {
    const model = CLIPTextModel.fromPretrained(G.dir);
    const hs = noGrad(() => hiddenStates(model, ids, B, L));
    hs.forEach((h, i) =>
      assertAllClose(
        `output.hidden_states.${i}`,
        h,
        G.data(`output.hidden_states.${i}`),
        TOL.f32.atol,
        TOL.f32.rtol,
        G.shape(`output.hidden_states.${i}`),
      ),
    );

    const out = model.forward(Array.from(ids), [B, L]);
    for (const k of ["last_hidden_state", "pooler_output"] as const) {
      assertAllClose(`output.${k}`, out[k], G.data(`output.${k}`), TOL.f32.atol, TOL.f32.rtol, G.shape(`output.${k}`));
      assertAllClose(`output.${k} vs ref64`, out[k], G.data(`ref64.output.${k}`), TOL.f32.atol, TOL.f32.rtol);
    }
    const h = out.last_hidden_state;
    const loss = h.mul(h).mean();
    assertAllClose("output.loss", loss, G.data("output.loss"), 0, 1e-5);
    loss.backward();
    const params = new Map(model.namedParameters());
    for (const k of GRAD_KEYS) {
      const g = params.get(k)?.grad;
      assert.ok(g, `${k} has a gradient`);
      assertRelToMax(`grad.${k}`, g!, G.data(`grad.${k}`), TOL.grad32);
      assertRelToMax(`grad.${k} vs ref64`, g!, G.data(`ref64.grad.${k}`), TOL.grad32);
    }
  });

  test(`${folder}: float64 matches ref64 to 1e-6 relative (outputs, hidden states, gradients)`, () => {
    const model = CLIPTextModel.fromPretrained(G.dir).toDType("float64");
    const hs = noGrad(() => hiddenStates(model, ids, B, L));
    hs.forEach((h, i) =>
      assertAllClose(
        `ref64.output.hidden_states.${i}`,
        h,
        G.data(`ref64.output.hidden_states.${i}`),
        TOL.f64.atol,
        TOL.f64.rtol,
      ),
    );

    const out = model.forward(Array.from(ids), [B, L]);
    assert.is(out.last_hidden_state.dtype, "float64");
    for (const k of ["last_hidden_state", "pooler_output"] as const) {
      assertAllClose(
        `ref64.output.${k}`,
        out[k],
        G.data(`ref64.output.${k}`),
        TOL.f64.atol,
        TOL.f64.rtol,
        G.shape(`ref64.output.${k}`),
      );
    }
    const h = out.last_hidden_state;
    const loss = h.mul(h).mean();
    assertAllClose("ref64.output.loss", loss, G.data("ref64.output.loss"), 0, 1e-6);
    loss.backward();
    const params = new Map(model.namedParameters());
    for (const k of GRAD_KEYS)
      assertRelToMax(`ref64.grad.${k}`, params.get(k)!.grad!, G.data(`ref64.grad.${k}`), TOL.grad64);
  });
}

test("the two pooling rules pick different positions on the eos fixture's first row", () => {
  const G = new Golden("clip_text_model_eos");
  const ids = G.data("input.input_ids");
  const [B, L] = G.shape("input.input_ids");
  const legacy = eosPositions(ids, B, L, 2),
    firstEos = eosPositions(ids, B, L, 500);
  assert.not.equal(legacy, firstEos);
  assert.equal(firstEos, [...G.data("pooled_positions")]);
});

test.run();
