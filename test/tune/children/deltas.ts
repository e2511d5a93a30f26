// two distinguishable deltas for the interrupted-write tests: A has tokens <new1>, <new2>; B only <new1>
import type { Delta, HostTensor } from "../../../tune/delta.ts";

const KEYS = [
  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight",
];

export function deltaOf(which: "A" | "B"): { delta: Delta; config: { run: string } } {
  const v = which === "A" ? 1 : 2;
  const unet = new Map<string, HostTensor>(
    KEYS.map((k, i) => [k, { shape: [16, 16], data: new Float32Array(256).fill(v + i / 10) }]),
  );
  const tokens = new Map<string, Float32Array>([["<new1>", new Float32Array(16).fill(v)]]);
  if (which === "A") tokens.set("<new2>", new Float32Array(16).fill(-1));
  return {
    delta: { unet, tokens, freezeModel: "crossattn_kv", baseFingerprint: `fp-${which}` },
    config: { run: which },
  };
}
