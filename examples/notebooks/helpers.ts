// Small drawing and display helpers shared by the notebooks in this folder: show an image in the notebook,
// tile 16 px world images into labelled grids, line charts, heat maps, and a picture of an autograd graph.
// Everything here is plain TypeScript over data/images.ts and tune/chart.ts; read it like any other module.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Buffer } from "node:buffer";
import type { Tensor } from "../../engine/index.ts";
import type { Image } from "../../data/images.ts";
import { chwToImage, encodePng, makeGrid, writePng } from "../../data/images.ts";
import type { RGB } from "../../tune/chart.ts";
import { canvas, drawText, fillRect, formatTick, niceTicks, textWidth } from "../../tune/chart.ts";
import type { StableDiffusionPipeline } from "../../models/pipelines/pipeline_stable_diffusion.ts";
import type { HeldoutConcept, WorldDataset } from "../../world/dataset.ts";
import { upscale } from "../../world/demo.ts";

export { upscale };
export type { Image, RGB };

type Jupyter = { display(obj: unknown, options?: { raw?: boolean }): Promise<void> };
const jupyter = (globalThis as { Deno?: { jupyter?: Jupyter } }).Deno?.jupyter;

/**
 * Shows an image (or a PNG's bytes) as the cell's output. In a Deno Jupyter kernel it is a PNG
 * `display_data`; elsewhere (a plain script) a line saying what would have been shown.
 */
export async function show(img: Image | Uint8Array, opts: { scale?: number } = {}): Promise<void> {
  let png: Uint8Array;
  let size: string;
  if (img instanceof Uint8Array) {
    png = img;
    size = `${png.length} bytes`;
  } else {
    const im = opts.scale && opts.scale > 1 ? upscale(img, opts.scale) : img;
    png = encodePng(im);
    size = `${im.width}x${im.height}`;
  }
  if (!jupyter) {
    console.log(`<image ${size}>`);
    return;
  }
  await jupyter.display(
    { "image/png": Buffer.from(png).toString("base64"), "text/plain": `<image ${size}>` },
    { raw: true },
  );
  // give the kernel a moment to publish the message before the cell ends: on a busy machine the Deno kernel
  // (2.x) can otherwise report the cell finished first, and the runner records the cell without its image
  await new Promise((resolve) => setTimeout(resolve, 25));
}

/** A CHW world image in [-1, 1] (3 x size x size) as an image. */
export function toImage(chw: Float32Array, size = 16): Image {
  return chwToImage(chw, 3, size, size);
}

/** CHW images tiled in a grid, each upscaled by `scale` (nearest) so 16 px images are visible. */
export function tiles(
  chws: readonly Float32Array[],
  opts: { cols?: number; scale?: number; size?: number; pad?: number } = {},
): Image {
  const size = opts.size ?? Math.round(Math.sqrt(chws[0]!.length / 3));
  const scale = opts.scale ?? 4;
  return makeGrid(
    chws.map((c) => upscale(toImage(c, size), scale)),
    { cols: opts.cols ?? chws.length, pad: opts.pad ?? 2 },
  );
}

/** Rows of images with a text label to the left of each row (and optional column titles above). */
export function labelledGrid(
  rows: readonly { label: string; images: readonly Image[] }[],
  opts: { columns?: readonly string[]; pad?: number; textScale?: number } = {},
): Image {
  const pad = opts.pad ?? 3,
    s = opts.textScale ?? 1;
  const tw = Math.max(...rows.flatMap((r) => r.images.map((i) => i.width)));
  const th = Math.max(...rows.flatMap((r) => r.images.map((i) => i.height)));
  const ncol = Math.max(...rows.map((r) => r.images.length));
  const labelW = Math.max(0, ...rows.map((r) => textWidth(r.label, s))) + 8 * s;
  const headH = opts.columns ? 12 * s : 0;
  const W = labelW + ncol * (tw + pad) + pad,
    H = headH + rows.length * (th + pad) + pad;
  const img = canvas(W, H);
  opts.columns?.forEach((c, j) =>
    drawText(img, labelW + pad + j * (tw + pad) + Math.max(0, (tw - textWidth(c, s)) / 2), 2 * s, c, [0, 0, 0], s),
  );
  rows.forEach((r, i) => {
    const y = headH + pad + i * (th + pad);
    drawText(img, 4 * s, y + (th - 7 * s) / 2, r.label, [0, 0, 0], s);
    r.images.forEach((im, j) => paste(img, im, labelW + pad + j * (tw + pad), y));
  });
  return img;
}

/** Copies `src` (1 or 3 channels) into `dst` (RGB) with its top-left corner at (x, y). */
export function paste(dst: Image, src: Image, x: number, y: number): void {
  for (let r = 0; r < src.height; r++) {
    for (let c = 0; c < src.width; c++) {
      const X = x + c,
        Y = y + r;
      if (X < 0 || Y < 0 || X >= dst.width || Y >= dst.height) continue;
      for (let ch = 0; ch < 3; ch++)
        dst.data[(Y * dst.width + X) * 3 + ch] =
          src.data[(r * src.width + c) * src.channels + (src.channels === 1 ? 0 : ch)]!;
    }
  }
}

// ---- charts -----------------------------------------------------------------------------------

export const COLORS: readonly RGB[] = [
  [0.12, 0.47, 0.71],
  [0.84, 0.15, 0.16],
  [0.17, 0.63, 0.17],
  [1, 0.5, 0.05],
  [0.58, 0.4, 0.74],
  [0.55, 0.34, 0.29],
];

/** A line from (x0, y0) to (x1, y1), `width` pixels thick. */
export function line(img: Image, x0: number, y0: number, x1: number, y1: number, color: RGB, width = 1): void {
  const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
  const h = Math.floor(width / 2);
  for (let i = 0; i <= n; i++) {
    const x = Math.round(x0 + ((x1 - x0) * i) / n),
      y = Math.round(y0 + ((y1 - y0) * i) / n);
    fillRect(img, x - h, y - h, x - h + width, y - h + width, color);
  }
}

export interface Series {
  values: readonly number[];
  label?: string;
  color?: RGB;
  /** x of each value (default 0, 1, 2, ...) */
  x?: readonly number[];
}

/** Ticks at a 1-2-5 step covering [lo, hi] (about `count` of them). */
export function rangeTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo, lo + 1];
  const step = niceTicks(hi - lo, count)[1]!;
  const a = Math.floor(lo / step + 1e-9),
    b = Math.ceil(hi / step - 1e-9);
  return Array.from({ length: b - a + 1 }, (_, i) => +((a + i) * step).toPrecision(12));
}

/** A line chart of one or more series (y axis from 0 unless a value is negative), with a legend. */
export function lineChart(
  series: readonly Series[],
  opts: {
    title?: string;
    xLabel?: string;
    yLabel?: string;
    width?: number;
    height?: number;
    yMin?: number;
    yMax?: number;
  } = {},
): Image {
  const W = opts.width ?? 640,
    H = opts.height ?? 320;
  const img = canvas(W, H);
  const black: RGB = [0, 0, 0],
    grey: RGB = [0.88, 0.88, 0.88];
  const xs = series.map((s) => s.x ?? s.values.map((_, i) => i));
  const all = series.flatMap((s) => s.values.filter(Number.isFinite));
  const ticks = rangeTicks(opts.yMin ?? Math.min(0, ...all), opts.yMax ?? Math.max(...all));
  const lo = ticks[0]!,
    hi = ticks[ticks.length - 1]!;
  const xmin = Math.min(...xs.flat()),
    xmax = Math.max(...xs.flat());
  const labels = ticks.map(formatTick);
  const left = 14 + Math.max(...labels.map((l) => textWidth(l))) + (opts.yLabel ? 10 : 0);
  const top = opts.title ? 20 : 8,
    bottom = H - (opts.xLabel ? 30 : 18),
    right = W - 12;
  const X = (x: number) => left + ((right - left) * (x - xmin)) / Math.max(1e-12, xmax - xmin);
  const Y = (y: number) => bottom - ((bottom - top) * (y - lo)) / Math.max(1e-12, hi - lo);
  if (opts.title) drawText(img, (W - textWidth(opts.title)) / 2, 5, opts.title, black);
  if (opts.yLabel) [...opts.yLabel].forEach((ch, i) => drawText(img, 2, top + i * 9, ch, black));
  ticks.forEach((t, i) => {
    const y = Math.round(Y(t));
    fillRect(img, left, y, right, y + 1, grey);
    drawText(img, left - 6 - textWidth(labels[i]!), y - 3, labels[i]!, black);
  });
  for (const t of rangeTicks(xmin, xmax, 6).filter((v) => v >= xmin - 1e-9 && v <= xmax + 1e-9)) {
    const x = Math.round(X(t)),
      l = formatTick(t);
    fillRect(img, x, bottom, x + 1, bottom + 4, black);
    drawText(img, x - textWidth(l) / 2, bottom + 6, l, black);
  }
  if (opts.xLabel) drawText(img, (left + right - textWidth(opts.xLabel)) / 2, H - 10, opts.xLabel, black);
  series.forEach((s, k) => {
    const c = s.color ?? COLORS[k % COLORS.length]!;
    for (let i = 1; i < s.values.length; i++) {
      if (!Number.isFinite(s.values[i - 1]) || !Number.isFinite(s.values[i])) continue;
      line(img, X(xs[k]![i - 1]!), Y(s.values[i - 1]!), X(xs[k]![i]!), Y(s.values[i]!), c, 2);
    }
    if (s.values.length === 1)
      fillRect(img, X(xs[k]![0]!) - 2, Y(s.values[0]!) - 2, X(xs[k]![0]!) + 3, Y(s.values[0]!) + 3, c);
  });
  fillRect(img, left, top, left + 1, bottom + 1, black);
  fillRect(img, left, bottom, right, bottom + 1, black);
  const named = series
    .map((s, k) => ({ label: s.label, color: s.color ?? COLORS[k % COLORS.length]! }))
    .filter((s) => s.label);
  if (named.length) {
    const lw = Math.max(...named.map((s) => textWidth(s.label!))) + 18;
    const lx = right - lw - 4,
      ly = top + 4;
    fillRect(img, lx - 3, ly - 3, lx + lw + 3, ly + named.length * 11 + 1, [1, 1, 1]);
    named.forEach((s, i) => {
      fillRect(img, lx, ly + i * 11 + 3, lx + 12, ly + i * 11 + 5, s.color);
      drawText(img, lx + 16, ly + i * 11, s.label!, black);
    });
  }
  return img;
}

/** Moving average over a window (the first values average what there is so far). */
export function smooth(values: readonly number[], window = 10): number[] {
  return values.map((_, i) => {
    const a = Math.max(0, i - window + 1);
    let s = 0;
    for (let j = a; j <= i; j++) s += values[j]!;
    return s / (i - a + 1);
  });
}

const VIRIDIS: readonly RGB[] = [
  [0.267, 0.005, 0.329],
  [0.229, 0.322, 0.546],
  [0.128, 0.567, 0.551],
  [0.369, 0.789, 0.383],
  [0.993, 0.906, 0.144],
];

/** A value in [0, 1] on the viridis colour scale (dark purple to yellow). */
export function viridis(t: number): RGB {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x)),
    f = x - i;
  const a = VIRIDIS[i]!,
    b = VIRIDIS[i + 1]!;
  return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
}

/** A (h, w) array of values as a viridis heat map, each cell `scale` pixels; range [min, max] (default the data's). */
export function heatmap(
  values: ArrayLike<number>,
  h: number,
  w: number,
  opts: { scale?: number; min?: number; max?: number } = {},
): Image {
  const s = opts.scale ?? 8;
  let lo = opts.min ?? Infinity,
    hi = opts.max ?? -Infinity;
  if (opts.min === undefined || opts.max === undefined) {
    for (let i = 0; i < h * w; i++) {
      if (opts.min === undefined) lo = Math.min(lo, values[i]!);
      if (opts.max === undefined) hi = Math.max(hi, values[i]!);
    }
  }
  const img = canvas(w * s, h * s);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      fillRect(
        img,
        x * s,
        y * s,
        (x + 1) * s,
        (y + 1) * s,
        viridis((values[y * w + x]! - lo) / Math.max(1e-12, hi - lo)),
      );
  return img;
}

// ---- autograd graphs --------------------------------------------------------------------------

/**
 * A picture of the graph that produced `out`: one box per tensor, left to right from the leaves
 * (named by `names`, or "const"/"param" with their shape) through each op (its name and output shape)
 * to `out`. Draw it before `backward()`, which releases the graph.
 */
export function graphImage(out: Tensor, names: Map<Tensor, string> = new Map()): Image {
  // collect the tensors reachable from out through gradNode.inputs
  const nodes: Tensor[] = [];
  const seen = new Set<Tensor>();
  const visit = (t: Tensor): void => {
    if (seen.has(t)) return;
    seen.add(t);
    for (const i of t.gradNode?.inputs ?? []) visit(i);
    nodes.push(t); // inputs before consumers
  };
  visit(out);
  const level = new Map<Tensor, number>();
  for (const t of nodes) level.set(t, t.gradNode ? 1 + Math.max(...t.gradNode.inputs.map((i) => level.get(i)!)) : 0);
  // a leaf sits just left of its first consumer, so its edge stays short
  for (const t of nodes) {
    if (t.gradNode) continue;
    const users = nodes.filter((u) => u.gradNode?.inputs.includes(t)).map((u) => level.get(u)!);
    if (users.length) level.set(t, Math.min(...users) - 1);
  }
  const shape = (t: Tensor) => (t.ndim === 0 ? "scalar" : `[${t.shape.join("x")}]`);
  const label = (t: Tensor): string[] => {
    const n = names.get(t);
    if (t.gradNode) return [t.gradNode.op, n ? `${n} ${shape(t)}` : shape(t)];
    return [n ?? (t.requiresGrad ? "param" : "const"), shape(t)];
  };
  const cols: Tensor[][] = [];
  for (const t of nodes) (cols[level.get(t)!] ??= []).push(t);
  for (let i = 0; i < cols.length; i++) cols[i] ??= [];
  const boxW = Math.max(...nodes.map((t) => Math.max(...label(t).map((l) => textWidth(l))))) + 12,
    boxH = 26,
    gapX = 40,
    gapY = 14;
  const rowsMax = Math.max(...cols.map((c) => c.length));
  const W = cols.length * (boxW + gapX) - gapX + 20,
    H = rowsMax * (boxH + gapY) - gapY + 20;
  const img = canvas(W, H);
  const pos = new Map<Tensor, { x: number; y: number }>();
  cols.forEach((c, i) => {
    const off = ((rowsMax - c.length) * (boxH + gapY)) / 2;
    c.forEach((t, j) => pos.set(t, { x: 10 + i * (boxW + gapX), y: 10 + off + j * (boxH + gapY) }));
  });
  const edge: RGB = [0.45, 0.45, 0.45];
  for (const t of nodes) {
    for (const i of t.gradNode?.inputs ?? []) {
      const a = pos.get(i)!,
        b = pos.get(t)!;
      const x0 = a.x + boxW,
        y0 = a.y + boxH / 2,
        x1 = b.x,
        y1 = b.y + boxH / 2;
      line(img, x0, y0, x1, y1, edge);
      // arrow head
      const ang = Math.atan2(y1 - y0, x1 - x0);
      for (const d of [2.6, -2.6]) line(img, x1, y1, x1 + 6 * Math.cos(ang + d), y1 + 6 * Math.sin(ang + d), edge);
    }
  }
  for (const t of nodes) {
    const { x, y } = pos.get(t)!;
    const fill: RGB =
      t === out
        ? [0.78, 0.92, 0.78]
        : t.gradNode
          ? [1, 0.87, 0.7]
          : t.requiresGrad
            ? [0.76, 0.86, 0.98]
            : [0.9, 0.9, 0.9];
    fillRect(img, x, y, x + boxW, y + boxH, [0.3, 0.3, 0.3]);
    fillRect(img, x + 1, y + 1, x + boxW - 1, y + boxH - 1, fill);
    label(t).forEach((l, k) => drawText(img, x + (boxW - textWidth(l)) / 2, y + 3 + k * 11, l));
  }
  return img;
}

// ---- the small world --------------------------------------------------------------------------

/** Samples CHW images in [-1, 1] for a prompt (DDIM by default; the pipeline's scheduler). */
export function sample(
  pipe: StableDiffusionPipeline,
  prompt: string,
  n: number,
  opts: { steps?: number; guidance?: number; seed?: number } = {},
): Float32Array[] {
  const { latents } = pipe.generate({
    prompt,
    numImagesPerPrompt: n,
    numInferenceSteps: opts.steps ?? 25,
    guidanceScale: opts.guidance ?? 1,
    seed: opts.seed ?? 0,
    outputLatents: true,
  });
  const d = latents.data,
    per = d.length / n;
  return Array.from({ length: n }, (_, i) =>
    Float32Array.from(d.subarray(i * per, (i + 1) * per), (v) => Math.max(-1, Math.min(1, v))),
  );
}

/**
 * Writes a held-out concept's images and its class's training images as PNG folders (what `customise`
 * reads), under a fresh temporary folder. Returns the two folders and the root (remove it when done).
 */
export function conceptFolders(
  ds: WorldDataset,
  concept: HeldoutConcept,
): { root: string; instance: string; classImages: string } {
  const root = fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), "cdiff-notebook-"));
  const write = (dir: string, imgs: readonly Float32Array[]) => {
    fs.mkdirSync(dir, { recursive: true });
    imgs.forEach((im, i) => writePng(path.join(dir, `${String(i).padStart(3, "0")}.png`), toImage(im, ds.size)));
  };
  const instance = path.join(root, "concept"),
    classImages = path.join(root, "class");
  write(instance, concept.images);
  write(
    classImages,
    ds.classes[concept.classIndex]!.imageIndices.map((i) => ds.images[i]!),
  );
  return { root, instance, classImages };
}

/** Formats rows of cells as an aligned text table (first row: the header). */
export function table(rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) =>
    r.map((c) => (typeof c === "number" ? (Number.isInteger(c) ? c.toLocaleString("en") : c.toPrecision(4)) : c)),
  );
  const widths = cells[0]!.map((_, j) => Math.max(...cells.map((r) => (r[j] ?? "").length)));
  const fmt = (r: readonly string[]) =>
    r.map((c, j) => (j === 0 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join("  ");
  return [fmt(cells[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(fmt)].join("\n");
}
