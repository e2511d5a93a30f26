// Image I/O and preprocessing on a plain HWC float image: PNG/JPEG decoding with header checks
// against hostile files, PNG writing, alpha compositing, area/bilinear/nearest resizing, crops and grids.
// The parts live in data/images/: image (the type, limits, checks), png and jpeg (decoders), codec
// (files), resample, crop, grid, layout (RGB and CHW conversion).
export type { Image, DecodeOptions, ResizeMode } from "./images/image.ts";
export { DEFAULT_MAX_PIXELS } from "./images/image.ts";
export { decodeImage, readImage, encodePng, writePng } from "./images/codec.ts";
export { resize } from "./images/resample.ts";
export { centerCrop, resizeAndCenterCrop, flipHorizontal } from "./images/crop.ts";
export { makeGrid } from "./images/grid.ts";
export { toRGB, imageToCHW, chwToImage } from "./images/layout.ts";
