// What the page and its worker agree on: the training defaults (world/demo.ts's: K/V + <new1>,
// lr 1e-3, batch 4, seed 0, hflip) and the message shapes. Shared by test/web (the Node run).
import type { FreezeModel } from "../tune/params.ts";

export interface WebTrainOptions {
  steps: number;
  freezeModel: FreezeModel;
  lr: number;
  batch: number;
  seed: number;
  /** samples per prompt in the before/after grid, and their DDIM steps */
  samples: number;
  sampleSteps: number;
}

export const WEB_TRAIN_DEFAULTS: WebTrainOptions = {
  steps: 100,
  freezeModel: "crossattn_kv",
  lr: 1e-3,
  batch: 4,
  seed: 0,
  samples: 4,
  sampleSteps: 25,
};

/** The instance prompt for a class word, as the demo picks it ("photo of a <new1> horse face"). */
export function instancePrompt(classWord: string): string {
  return `photo of a <new1> ${classWord}`;
}

export interface SampleRequest {
  type: "sample";
  id: number;
  prompt: string;
  n: number;
  steps: number;
  seed: number;
}

export interface TrainRequest {
  type: "train";
  files: { name: string; bytes: Uint8Array }[];
  classWord: string;
  prompts: string[];
  options: Partial<WebTrainOptions>;
}
