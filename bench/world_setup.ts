// One pretraining step of the small world (UNet + text encoder, batch B at 16x16, AdamW), the step
// bench/world_step.ts times against PyTorch and bench/world_profile.ts breaks down by kernel.
// Times nothing itself (the steps are timed by bench/world_step.ts and bench/world_profile.ts).
import * as os from "node:os";
import * as path from "node:path";
import { Generator, mseLoss, randn, tidy } from "../engine/index.ts";
import { AdamW, clipGradNorm } from "../optim/index.ts";
import { buildWorldPipeline, worldTokenIds, writeRestrictedTokenizer, WORLD_MAX_TOKENS } from "../world/model.ts";
import { loadWorldDataset } from "../world/dataset.ts";

/** Builds the world model and its optimizer; returns one training step and the vocabulary size (for the PyTorch twin). */
export function worldTrainingStep(batch: number): { step: () => void; vocabSize: number } {
  const ds = loadWorldDataset();
  const tokenizer = writeRestrictedTokenizer(
    path.join(os.tmpdir(), `world-tok-${process.pid}`),
    worldTokenIds(ds.tokenIds),
  );
  const pipe = buildWorldPipeline(tokenizer, 0);
  const params = [...pipe.unet.parameters(), ...pipe.textEncoder.parameters()];
  const opt = new AdamW(params, { lr: 1e-3, weightDecay: 0.01 });
  const g = new Generator(0);
  const x0 = randn([batch, 3, 16, 16], { generator: g });
  const ids = Array.from({ length: batch }, (_, i) =>
    tokenizer.encode(ds.captions[i % ds.captions.length]!, { maxLength: WORLD_MAX_TOKENS }),
  );
  // tidied as the trainers do (frees each step's textures on gpujs; nothing on cpu)
  const step = (): void =>
    tidy(
      () => {
        const noise = randn(x0.shape, { generator: g });
        const ts = Array.from({ length: batch }, () => g.randint(0, 1000));
        const ehs = pipe.textEncoder.forward(ids).last_hidden_state;
        const loss = mseLoss(pipe.unet.forward(x0.add(noise), ts, ehs), noise);
        opt.zeroGrad();
        loss.backward();
        clipGradNorm(params, 1);
        opt.step();
        opt.zeroGrad();
      },
      () => opt.tensors(),
    );
  return { step, vocabSize: tokenizer.vocabSize };
}
