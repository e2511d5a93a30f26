// which UNet weights Custom Diffusion trains: crossattn_kv (default), crossattn, full, or none (token only)
import { ConfigError } from "../engine/errors.ts";
import type { Tensor } from "../engine/index.ts";
import type { Module } from "../models/nn/module.ts";

/** `none` trains only the modifier-token rows (Textual-Inversion-like baseline). */
export type FreezeModel = "crossattn_kv" | "crossattn" | "full" | "none";
export const FREEZE_MODELS: readonly FreezeModel[] = ["crossattn_kv", "crossattn", "full", "none"];

const KV = /\.attn2\.to_[kv]\.weight$/;
const QOUT = /\.attn2\.(to_q\.weight|to_out\.0\.(weight|bias))$/;

/** Whether a UNet parameter key is trained under `mode`. */
export function isTrained(key: string, mode: FreezeModel): boolean {
  switch (mode) {
    case "crossattn_kv":
      return KV.test(key);
    case "crossattn":
      return KV.test(key) || QOUT.test(key);
    case "full":
      return true;
    case "none":
      return false;
    default:
      throw new ConfigError(`freeze_model must be one of ${FREEZE_MODELS.join(", ")}, got "${mode satisfies never}"`);
  }
}

export interface Selection {
  params: [string, Tensor][];
  count: number;
  total: number;
  /** trained share of the UNet's parameters */
  share: number;
}

/**
 * Marks the selected UNet parameters as trainable and freezes every other one (frozen weights then
 * record no graph and get no gradient or optimizer state).
 */
export function selectParameters(unet: Module, mode: FreezeModel): Selection {
  if (!FREEZE_MODELS.includes(mode))
    throw new ConfigError(`freeze_model must be one of ${FREEZE_MODELS.join(", ")}, got "${mode}"`);
  const params: [string, Tensor][] = [];
  let count = 0,
    total = 0;
  for (const [k, p] of unet.namedParameters()) {
    const on = isTrained(k, mode);
    if (on && (p.dtype === "bfloat16" || p.dtype === "float16")) {
      throw new ConfigError(
        `freeze_model ${mode} trains ${k}, which is held in ${p.dtype}; trained weights must be float32 (load with weights dtype float32, or keep the trained weights in float32)`,
      );
    }
    p.requiresGrad = on;
    total += p.size;
    if (on) {
      params.push([k, p]);
      count += p.size;
    }
  }
  if (params.length === 0 && mode !== "none")
    throw new ConfigError(`freeze_model ${mode}: the model has no cross-attention (attn2) layers to train`);
  return { params, count, total, share: total > 0 ? count / total : 0 };
}
