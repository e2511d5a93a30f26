// Stable Diffusion's VAE (diffusers models/autoencoders); the blocks keep diffusers' class names, so
// ResnetBlock2D, Attention, Downsample2D and Upsample2D are exported under VAE-prefixed aliases here
export * from "./autoencoder_kl.ts";
export { Decoder, DiagonalGaussianDistribution, Encoder } from "./vae.ts";
export type { VAECoderConfig, VAEDownBlockType, VAEUpBlockType } from "./vae.ts";
export { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D } from "./vae_blocks.ts";
export {
  Attention as VAEAttention,
  Downsample2D as VAEDownsample2D,
  ResnetBlock2D as VAEResnetBlock2D,
  Upsample2D as VAEUpsample2D,
} from "./vae_blocks.ts";
export type { VAEActFn, VAEBlockArgs } from "./vae_blocks.ts";
