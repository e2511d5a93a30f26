// Custom Diffusion's attention processor: cross-attention with the start-of-text token's key and
// value detached (no gradient through them), as diffusers' CustomDiffusionAttnProcessor does
import type { Tensor } from "../engine/index.ts";
import type { Attention, AttentionProcessor } from "./attention_processor.ts";
import { detachFirstToken } from "./attention_processor.ts";

/**
 * Uses the layer's own to_q/to_k/to_v (the trained weights live in the layer, so the model can be
 * saved and sampled as is); for cross-attention the first token's key and value carry no gradient.
 */
export class CustomDiffusionAttnProcessor implements AttentionProcessor {
  call(attn: Attention, hiddenStates: Tensor, encoderHiddenStates: Tensor | null): Tensor {
    const context = encoderHiddenStates ?? hiddenStates;
    const q = attn.to_q.forward(hiddenStates); // (B, Lq, H*d)
    let k = attn.to_k.forward(context); // (B, Lk, H*d)
    let v = attn.to_v.forward(context); // (B, Lk, H*d)
    if (encoderHiddenStates) {
      k = detachFirstToken(k);
      v = detachFirstToken(v);
    }
    return attn.attend(q, k, v);
  }
}
