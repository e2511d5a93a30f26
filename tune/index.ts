// the Custom Diffusion method: training, deltas, merge, compression, stacking, analysis, evaluation
export * from "./dataset.ts";
export * from "./params.ts";
export * from "./tokens.ts";
export * from "./delta.ts";
export * from "./train.ts";
export * from "./merge.ts";
export * from "./compress.ts";
export { stackDeltas } from "./stack.ts";
export * from "./analyze.ts";
export * from "./evaluate.ts";
export * from "./chart.ts";
export * from "./retrieve.ts";
export * from "./generate_reg.ts";
