// A small bar-chart rasteriser for reports (the Fig. 3 weight-change chart): bars, y-axis ticks, a
// legend and a title drawn with a built-in 5x7 bitmap font, written as PNG with data/images.ts
import { ConfigError } from "../engine/errors.ts";
import type { Image } from "../data/images.ts";
import { writePng } from "../data/images.ts";

export type RGB = readonly [number, number, number];

/** One bar: its height and colour, optionally a label drawn under it when there is room. */
export interface Bar {
  value: number;
  color: RGB;
  label?: string;
}

/** Options of {@link barChart}. */
export interface BarChartOptions {
  bars: readonly Bar[];
  title?: string;
  yLabel?: string;
  legend?: readonly { label: string; color: RGB }[];
  /** image size in pixels (default 800 x 400) */
  width?: number;
  height?: number;
  /** text magnification (default 1: 5x7 glyphs on a 6x9 grid) */
  textScale?: number;
}

/** Rows of 5 pixels (bit 4 = left), 7 rows per glyph; lower case is drawn as upper case. */
const FONT: Record<string, string> = {
  "0": "0E1113151911 0E",
  "1": "040C04040404 0E",
  "2": "0E1101020408 1F",
  "3": "1F0204020111 0E",
  "4": "02060A121F02 02",
  "5": "1F101E010111 0E",
  "6": "0608101E1111 0E",
  "7": "1F0102040808 08",
  "8": "0E11110E1111 0E",
  "9": "0E11110F0102 0C",
  A: "0E11111F1111 11",
  B: "1E11111E1111 1E",
  C: "0E1110101011 0E",
  D: "1C1211111112 1C",
  E: "1F10101E1010 1F",
  F: "1F10101E1010 10",
  G: "0E1110171111 0F",
  H: "1111111F1111 11",
  I: "0E0404040404 0E",
  J: "070202020212 0C",
  K: "111214181412 11",
  L: "101010101010 1F",
  M: "111B15151111 11",
  N: "111119151311 11",
  O: "0E1111111111 0E",
  P: "1E11111E1010 10",
  Q: "0E1111111512 0D",
  R: "1E11111E1412 11",
  S: "0F10100E0101 1E",
  T: "1F0404040404 04",
  U: "111111111111 0E",
  V: "11111111110A 04",
  W: "111111151515 0A",
  X: "11110A040A11 11",
  Y: "11110A040404 04",
  Z: "1F0102040810 1F",
  " ": "000000000000 00",
  ".": "00000000000C 0C",
  ",": "000000000C04 08",
  "-": "0000001F0000 00",
  _: "000000000000 1F",
  ":": "000C0C000C0C 00",
  "%": "181902040813 03",
  "(": "020408080804 02",
  ")": "080402020204 08",
  "/": "000102040810 00",
  "+": "0004041F0404 00",
  "=": "00001F001F00 00",
  "<": "020408100804 02",
  ">": "080402010204 08",
  "|": "040404040404 04",
  "?": "0E1101020400 04",
  "#": "0A0A1F0A1F0A 0A",
  "*": "0004150E1504 00",
  "[": "0E0808080808 0E",
  "]": "0E0202020202 0E",
  "'": "040408000000 00",
};

const GLYPHS = new Map<string, Uint8Array>(
  Object.entries(FONT).map(([c, hex]) => {
    const h = hex.replace(/\s/g, "");
    return [c, Uint8Array.from({ length: 7 }, (_, i) => parseInt(h.slice(2 * i, 2 * i + 2), 16))];
  }),
);

/** The 7 row bitmasks of a character's glyph ("?" for characters the font lacks). */
export function glyph(ch: string): Uint8Array {
  return GLYPHS.get(ch.toUpperCase()) ?? GLYPHS.get("?")!;
}

/** Width in pixels of `text` at `scale` (6 px per character, the last column blank). */
export function textWidth(text: string, scale = 1): number {
  return Math.max(0, text.length * 6 - 1) * scale;
}

/** A white RGB canvas. */
export function canvas(width: number, height: number): Image {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0))
    throw new ConfigError(`chart: size must be positive integers, got ${width}x${height}`);
  return { width, height, channels: 3, data: new Float32Array(width * height * 3).fill(1) };
}

/** Fills [x0, x1) x [y0, y1) (clipped to the image). */
export function fillRect(img: Image, x0: number, y0: number, x1: number, y1: number, color: RGB): void {
  const xa = Math.max(0, Math.round(x0)),
    xb = Math.min(img.width, Math.round(x1));
  const ya = Math.max(0, Math.round(y0)),
    yb = Math.min(img.height, Math.round(y1));
  for (let y = ya; y < yb; y++) for (let x = xa; x < xb; x++) img.data.set(color, (y * img.width + x) * 3);
}

/** Draws `text` with its top-left corner at (x, y). */
export function drawText(img: Image, x: number, y: number, text: string, color: RGB = [0, 0, 0], scale = 1): void {
  for (let i = 0; i < text.length; i++) {
    const g = glyph(text[i]!);
    const gx = x + i * 6 * scale;
    for (let r = 0; r < 7; r++) {
      for (let c = 0; c < 5; c++)
        if (g[r]! & (0x10 >> c))
          fillRect(img, gx + c * scale, y + r * scale, gx + (c + 1) * scale, y + (r + 1) * scale, color);
    }
  }
}

/** Tick values 0, step, 2 step, ... up to at least `max`, with step 1, 2 or 5 times a power of ten (about `count` ticks). */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const n = Math.ceil(max / step - 1e-9);
  return Array.from({ length: n + 1 }, (_, i) => +(i * step).toPrecision(12));
}

/** Short tick label: up to 3 significant digits, exponent form for very small or large values. */
export function formatTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e-3 && a < 1e5) return String(+v.toPrecision(3));
  return v.toExponential(1).replace("e", "E").replace("+", "");
}

/** Renders a bar chart: bars over the plot width, y axis with ticks from 0, optional title, y label and legend. */
export function barChart(opts: BarChartOptions): Image {
  const W = opts.width ?? 800,
    H = opts.height ?? 400,
    s = opts.textScale ?? 1;
  const img = canvas(W, H);
  const black: RGB = [0, 0, 0],
    grey: RGB = [0.85, 0.85, 0.85];
  const vals = opts.bars.map((b) => (Number.isFinite(b.value) ? Math.max(0, b.value) : 0));
  const ticks = niceTicks(Math.max(0, ...vals));
  const top = ticks[ticks.length - 1]!;
  const labels = ticks.map(formatTick);
  const left = 12 * s + Math.max(...labels.map((l) => textWidth(l, s))) + (opts.yLabel ? 12 * s : 0);
  const titleH = opts.title ? 14 * s : 4 * s;
  const n = opts.bars.length;
  const plotW0 = W - left - 10 * s;
  const slot = n > 0 ? plotW0 / n : plotW0;
  const barLabels =
    n > 0 && opts.bars.some((b) => b.label) && opts.bars.every((b) => textWidth(b.label ?? "", s) <= slot - 2);
  const bottom = H - (barLabels ? 14 * s : 6 * s);
  const y0 = titleH + 4 * s;
  if (bottom - y0 < 10 || plotW0 < 10) throw new ConfigError(`chart: ${W}x${H} is too small for the text`);
  const yOf = (v: number) => bottom - ((bottom - y0) * v) / top;
  if (opts.title) drawText(img, Math.max(0, (W - textWidth(opts.title, s)) / 2), 3 * s, opts.title, black, s);
  if (opts.yLabel) {
    // vertical label: one character per line
    const lh = 9 * s,
      total = opts.yLabel.length * lh;
    const ys = Math.max(y0, (y0 + bottom - total) / 2);
    [...opts.yLabel].forEach((ch, i) => drawText(img, 2 * s, ys + i * lh, ch, black, s));
  }
  ticks.forEach((t, i) => {
    const y = Math.round(yOf(t));
    fillRect(img, left, y, W - 10 * s, y + 1, grey);
    fillRect(img, left - 4 * s, y, left, y + 1, black);
    drawText(img, left - 6 * s - textWidth(labels[i]!, s), y - 3 * s, labels[i]!, black, s);
  });
  opts.bars.forEach((b, i) => {
    const xa = left + i * slot,
      xb = left + (i + 1) * slot;
    const gap = slot >= 4 ? Math.max(1, Math.floor(slot * 0.15)) : 0;
    const x0 = Math.floor(xa + gap / 2),
      x1 = Math.max(x0 + 1, Math.floor(xb - gap / 2));
    fillRect(img, x0, yOf(vals[i]!), x1, bottom, b.color);
    if (barLabels && b.label) drawText(img, (xa + xb - textWidth(b.label, s)) / 2, bottom + 4 * s, b.label, black, s);
  });
  fillRect(img, left, y0, left + 1, bottom + 1, black);
  fillRect(img, left, bottom, W - 10 * s, bottom + 1, black);
  if (opts.legend?.length) {
    const lw = Math.max(...opts.legend.map((l) => textWidth(l.label, s))) + 16 * s;
    const lx = W - 14 * s - lw,
      ly = y0 + 2 * s;
    fillRect(img, lx - 3 * s, ly - 3 * s, lx + lw + 3 * s, ly + opts.legend.length * 11 * s + 1 * s, [1, 1, 1]);
    opts.legend.forEach((l, i) => {
      const y = ly + i * 11 * s;
      fillRect(img, lx, y, lx + 8 * s, y + 8 * s, l.color);
      drawText(img, lx + 12 * s, y + 1 * s, l.label, black, s);
    });
  }
  return img;
}

/** Renders and writes a bar chart PNG (atomically). */
export function writeBarChart(file: string, opts: BarChartOptions): Image {
  const img = barChart(opts);
  writePng(file, img);
  return img;
}
