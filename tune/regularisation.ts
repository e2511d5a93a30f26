// Regularisation images for the concepts that have none: retrieved from a local image-caption corpus
// by the pipeline's own text features, or sampled from the base model (cached)
import * as path from "node:path";
import { noGrad } from "../engine/index.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import type { ConceptSpec } from "./dataset.ts";
import type { TextFeatureFn } from "./retrieve.ts";
import { retrieveRegularisation } from "./retrieve.ts";
import { generateRegularisation } from "./generate_reg.ts";

/** The pooled text features of the pipeline's own text encoder (CLIP text features for Stable Diffusion). */
export function pipelineTextFeatures(pipe: StableDiffusionPipeline): TextFeatureFn {
  return (texts) => {
    const o = noGrad(() => pipe.textEncoder.forward(pipe.tokenize(texts)).pooler_output);
    const d = o.shape[1],
      data = o.data;
    return texts.map((_, k) => Float64Array.from(data.subarray(k * d, (k + 1) * d)));
  };
}

/** Where {@link addRegularisation} takes the images from: one of `retrieve` and `generate`. */
export interface RegularisationSource {
  /** retrieval from a corpus (see retrieveRegularisation); the images go to `<outputDir>/regularisation/<concept index>` */
  retrieve?: { corpus: string; threshold?: number; max?: number };
  /** samples of "photo of a {class}" from the base pipeline (see generateRegularisation) */
  generate?: { numImages?: number; guidanceScale?: number; cacheDir?: string };
  /** the run's output folder */
  outputDir: string;
  log?: (line: string) => void;
}

/**
 * The concepts with a `class_data_dir` for each one that lacks it, from `source` (retrieval or
 * generation, with the base `pipe`); concepts that have one are kept as they are.
 */
export function addRegularisation(
  pipe: StableDiffusionPipeline,
  concepts: readonly ConceptSpec[],
  source: RegularisationSource,
): ConceptSpec[] {
  const log = source.log ?? ((s: string) => console.log(s));
  const { retrieve, generate } = source;
  return concepts.map((c, i) => {
    if (c.class_data_dir) return c;
    let dir: string;
    if (retrieve) {
      dir = path.join(source.outputDir, "regularisation", String(i));
      retrieveRegularisation({
        ...retrieve,
        classPrompt: c.class_prompt,
        textFeatures: pipelineTextFeatures(pipe),
        out: dir,
        log,
      });
    } else {
      dir = generateRegularisation({ pipeline: pipe, classPrompt: c.class_prompt, ...generate, log }).dir;
    }
    return { ...c, class_data_dir: dir };
  });
}
