export * from "./adam.ts";
export * from "./clip_grad.ts";
export * from "./lr_schedule.ts";
