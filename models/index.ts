// models layer: nn building blocks, the SD-compatible UNet, CLIP, VAE, schedulers and the pipeline
export * from "./nn/index.ts";
export * from "./modeling_utils.ts";
export * from "./attention_processor.ts";
export * from "./attention.ts";
export * from "./resnet.ts";
export * from "./embeddings.ts";
export * from "./unets/unet_2d_blocks.ts";
export * from "./unets/unet_2d_condition.ts";
export * from "./custom_diffusion.ts";
export * from "./clip/index.ts";
export * from "./autoencoders/index.ts";
export * from "./schedulers/index.ts";
export * from "./pipelines/pipeline_stable_diffusion.ts";
