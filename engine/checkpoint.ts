// gradient checkpointing: run a function without keeping its activations, and run it again during
// backward to get its gradients; the gradients are bit for bit those of the plain run
import { isGradEnabled, noGrad, record, runBackward, withGrad } from "./autograd.ts";
import { ShapeError } from "./errors.ts";
import { add } from "./ops/elementwise.ts";
import { Tensor } from "./tensor.ts";

/**
 * `fn(...inputs)` as one graph node that keeps only its inputs: the forward runs without recording,
 * and the backward runs `fn` again with recording on, then walks that small graph. `params` are the
 * trainable tensors `fn` uses besides its inputs (a module's parameters): their gradients accumulate
 * into `.grad` as they would without checkpointing. Inputs' gradients are added in the order the
 * whole walk would have added them, so results are bit-identical to the plain run. `fn` must be
 * deterministic (no dropout drawing new randomness) and must not change its inputs.
 */
export function checkpoint(
  fn: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  params: readonly Tensor[] = [],
): Tensor {
  if (!isGradEnabled() || ![...inputs, ...params].some((t) => t.requiresGrad)) return fn(...inputs);
  const unique = [...new Set(inputs)];
  // parameters that are not also inputs: node inputs so the output requires grad, but their gradients accumulate in the inner walk
  const extra = params.filter((p) => !unique.includes(p));
  const out = noGrad(() => fn(...inputs));
  if (!(out instanceof Tensor)) throw new ShapeError("checkpoint: the function must return one tensor");
  return record(
    out,
    "checkpoint",
    [...unique, ...extra],
    (g, pending) => {
      // the inputs as leaves of a fresh graph, their pending sums carried in
      const leaves = new Map(unique.map((x) => [x, Object.assign(x.detach(), { requiresGrad: x.requiresGrad })]));
      const y = withGrad(true, () => fn(...inputs.map((x) => leaves.get(x)!)));
      const capture = new Map<Tensor, Tensor | null>();
      unique.forEach((x, k) => {
        if (x.requiresGrad) capture.set(leaves.get(x)!, pending ? pending(k) : null);
      });
      if (y.requiresGrad) runBackward(y, g, add, false, capture);
      return [
        ...unique.map((x) => (x.requiresGrad ? (capture.get(leaves.get(x)!) ?? null) : null)),
        ...extra.map(() => null),
      ];
    },
    undefined,
    true,
  );
}
