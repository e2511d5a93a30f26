// diffusion schedulers: DDPMScheduler (training noise, ancestral sampling) and DDIMScheduler (sampling)
export * from "./scheduling_utils.ts";
export * from "./scheduling_ddpm.ts";
export * from "./scheduling_ddim.ts";
