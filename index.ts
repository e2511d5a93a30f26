// custom-diffusion-ts: the engine, models, optimizers, data formats and the Custom Diffusion method
export * as engine from "./engine/index.ts";
export * as models from "./models/index.ts";
export * as optim from "./optim/index.ts";
export * as data from "./data/index.ts";
export * as tune from "./tune/index.ts";
