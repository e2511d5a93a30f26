// Stacking deltas at inference (neither public implementation can): W = W0 + sum_i (W_i - W0) per key,
// every delta's tokens kept and renumbered <new1>.. in order, with the mapping to rewrite prompts
import { ConfigError } from "../engine/errors.ts";
import type { Module } from "../models/nn/module.ts";
import type { Delta, HostTensor } from "./delta.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { applyDeltaToUNet, checkSameBase, renumberTokens, rewritePrompt } from "./delta.ts";
import type { FreezeModel } from "./params.ts";
import { installTokens } from "./tokens.ts";

export { rewritePrompt };

/** Result of {@link stackDeltas}. */
export interface StackResult {
  delta: Delta;
  /** per input delta: its token -> the stacked token */
  tokenMap: Map<string, string>[];
}

const WIDER: Record<FreezeModel, number> = { none: -1, crossattn_kv: 0, crossattn: 1, full: 2 };

/**
 * Sums the deltas' changes onto the base (float64 accumulation): keys any delta changes appear in the
 * result; a delta without a key contributes nothing there. Deltas must share the base.
 * @param weights optional scale per delta (default 1 each)
 */
export function stackDeltas(baseUnet: Module, deltas: readonly Delta[], weights?: readonly number[]): StackResult {
  if (deltas.length === 0) throw new ConfigError("stack: no deltas");
  if (weights && weights.length !== deltas.length)
    throw new ConfigError(`stack: ${deltas.length} deltas but ${weights.length} weights`);
  const fp = checkSameBase(baseUnet, deltas, "stack");
  const sd = baseUnet.stateDict();
  const keys = [...sd.keys()].filter((k) => deltas.some((d) => d.unet.has(k)));
  const unet = new Map<string, HostTensor>();
  for (const k of keys) {
    const p = sd.get(k)!;
    const w0 = p.data;
    const acc = Float64Array.from(w0);
    deltas.forEach((d, i) => {
      const v = d.unet.get(k);
      if (!v) return;
      const s = weights?.[i] ?? 1;
      for (let q = 0; q < acc.length; q++) acc[q] += s * (v.data[q]! - w0[q]!);
    });
    unet.set(k, { shape: [...p.shape], data: Float32Array.from(acc) });
  }
  const { tokens, tokenMap } = renumberTokens(deltas);
  const freezeModel = deltas.map((d) => d.freezeModel).reduce((a, b) => (WIDER[b] > WIDER[a] ? b : a));
  return { delta: { unet, tokens, freezeModel, baseFingerprint: fp }, tokenMap };
}

/**
 * Applies one delta, or several stacked (see {@link stackDeltas}; `onStacked` hears each input's token
 * map before they are applied), to a pipeline: the UNet's weights (refused on another base unless
 * `force`) and the new tokens. Returns the delta applied.
 */
export function applyDeltas(
  pipe: Pick<StableDiffusionPipeline, "unet" | "tokenizer" | "textEncoder">,
  deltas: readonly Delta[],
  opts: { force?: boolean; onStacked?: (tokenMap: Map<string, string>[]) => void } = {},
): Delta {
  let delta = deltas[0]!;
  if (deltas.length !== 1) {
    const st = stackDeltas(pipe.unet, deltas);
    delta = st.delta;
    opts.onStacked?.(st.tokenMap);
  }
  applyDeltaToUNet(pipe.unet, delta, { force: opts.force === true });
  installTokens(pipe.tokenizer, pipe.textEncoder, delta.tokens);
  return delta;
}
