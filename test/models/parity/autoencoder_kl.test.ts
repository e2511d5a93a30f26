// Parity of AutoencoderKL with diffusers 0.21.4 on test/fixtures/autoencoder_kl (diffusers' unit-test
// config, perturbed F16-grid weights): posterior mean/logvar/std of a (1, 3, 32, 32) image and its decode.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { noGrad } from "../../../engine/index.ts";
import type { DType } from "../../../engine/index.ts";
import { AutoencoderKL } from "../../../models/autoencoders/autoencoder_kl.ts";
import { assertAllClose, Golden, TOL } from "./golden.ts";

const G = new Golden("autoencoder_kl");

function run(dtype: DType) {
  const model = AutoencoderKL.fromPretrained(G.dir);
  if (dtype === "float64") model.toDType("float64");
  return noGrad(() => {
    const image = G.tensor("input.image", dtype);
    const post = model.encode(image);
    return {
      mean: post.mean,
      logvar: post.logvar,
      std: post.std,
      decode: model.decode(post.mean),
      forward: model.forward(image),
    };
  });
}

const FIELDS = [
  ["mean", "latent_dist.mean"],
  ["logvar", "latent_dist.logvar"],
  ["std", "latent_dist.std"],
  ["decode", "decode_mean"],
] as const;

test("float32: latent mean, logvar, std and decode(mean)", () => {
  const out = run("float32");
  for (const [f, key] of FIELDS) {
    assertAllClose(
      `output.${key}`,
      out[f],
      G.data(`output.${key}`),
      TOL.f32Vae.atol,
      TOL.f32Vae.rtol,
      G.shape(`output.${key}`),
    );
    assertAllClose(`output.${key} vs ref64`, out[f], G.data(`ref64.output.${key}`), TOL.f32Vae.atol, TOL.f32Vae.rtol);
  }
  // forward without sampling decodes the mean
  assert.equal(Array.from(out.forward.data), Array.from(out.decode.data));
});

test("float64 matches ref64 to 1e-6 relative", () => {
  const out = run("float64");
  assert.is(out.decode.dtype, "float64");
  for (const [f, key] of FIELDS)
    assertAllClose(
      `ref64.output.${key}`,
      out[f],
      G.data(`ref64.output.${key}`),
      TOL.f64.atol,
      TOL.f64.rtol,
      G.shape(`ref64.output.${key}`),
    );
});

test.run();
