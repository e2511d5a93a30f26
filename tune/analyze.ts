// The weight-change analysis of the paper's Fig. 3: per parameter tensor Delta_l = ||theta'_l - theta_l|| /
// ||theta_l|| (Frobenius), grouped into cross-attention, self-attention and other layers; JSON, CSV, PNG
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, StateDictError } from "../engine/errors.ts";
import type { HostTensor } from "../engine/host.ts";
import type { Module } from "../models/nn/module.ts";
import { writeFileAtomic, writeJsonAtomic } from "../data/atomic.ts";
import type { RGB } from "./chart.ts";
import { writeBarChart } from "./chart.ts";

export type LayerGroup = "cross-attention" | "self-attention" | "other";
export const LAYER_GROUPS: readonly LayerGroup[] = ["cross-attention", "self-attention", "other"];
export const GROUP_COLORS: Record<LayerGroup, RGB> = {
  "cross-attention": [0.84, 0.15, 0.16],
  "self-attention": [0.12, 0.47, 0.71],
  other: [0.6, 0.6, 0.6],
};

/** Group of a UNet parameter key: attn2.* cross-attention, attn1.* self-attention, everything else other. */
export function layerGroup(key: string): LayerGroup {
  if (/(^|\.)attn2\./.test(key)) return "cross-attention";
  if (/(^|\.)attn1\./.test(key)) return "self-attention";
  return "other";
}

/** One tensor's change. */
export interface LayerChange {
  key: string;
  group: LayerGroup;
  numel: number;
  /** ||theta_l|| and ||theta'_l - theta_l|| */
  norm: number;
  changeNorm: number;
  /** changeNorm / norm; null when the base tensor is all zeros */
  delta: number | null;
}

/** Per-group summary. */
export interface GroupSummary {
  group: LayerGroup;
  tensors: number;
  params: number;
  /** share of all parameters */
  share: number;
  /** mean of Delta_l over the group's tensors (zero-norm tensors left out) */
  meanDelta: number;
  /** ||theta'_g - theta_g|| / ||theta_g|| over the whole group */
  pooledDelta: number;
}

export interface WeightAnalysis {
  layers: LayerChange[];
  groups: GroupSummary[];
  totalParams: number;
}

type Values = HostTensor<ArrayLike<number>>;
type Source = Module | Map<string, Values>;

const paramsOf = (m: Source): Map<string, Values> =>
  m instanceof Map ? m : new Map<string, Values>(m.namedParameters());

/**
 * Compares every parameter of `base` with `tuned` (a Module, or a map of replacement values such as
 * a delta's `unet`, where missing keys count as unchanged). Keys and shapes must agree.
 */
export function analyzeWeights(base: Module, tuned: Source, opts: { by?: "tensor" | "layer" } = {}): WeightAnalysis {
  const b = paramsOf(base),
    t = paramsOf(tuned);
  const partial = tuned instanceof Map;
  for (const k of t.keys())
    if (!b.has(k)) throw new ConfigError(`analyze: the tuned model has ${k}, which the base does not`);
  const layers: LayerChange[] = [];
  for (const [k, p] of b) {
    const q = t.get(k);
    if (!q && !partial) throw new StateDictError(`analyze: the tuned model lacks ${k}`);
    if (q && q.shape.join() !== p.shape.join())
      throw new StateDictError(`analyze: ${k} is [${q.shape}] in the tuned model, [${p.shape}] in the base`);
    let n2 = 0,
      c2 = 0;
    const a = p.data;
    for (let i = 0; i < a.length; i++) {
      n2 += a[i]! * a[i]!;
      if (q) c2 += (q.data[i]! - a[i]!) ** 2;
    }
    const norm = Math.sqrt(n2),
      changeNorm = Math.sqrt(c2);
    layers.push({
      key: k,
      group: layerGroup(k),
      numel: a.length,
      norm,
      changeNorm,
      delta: norm > 0 ? changeNorm / norm : null,
    });
  }
  if (opts.by === "layer") layers.splice(0, layers.length, ...poolByLayer(layers));
  const totalParams = layers.reduce((s, l) => s + l.numel, 0);
  const groups = LAYER_GROUPS.map((g): GroupSummary => {
    const ls = layers.filter((l) => l.group === g);
    const ds = ls.map((l) => l.delta).filter((d): d is number => d !== null);
    const params = ls.reduce((s, l) => s + l.numel, 0);
    const n2 = ls.reduce((s, l) => s + l.norm ** 2, 0),
      c2 = ls.reduce((s, l) => s + l.changeNorm ** 2, 0);
    return {
      group: g,
      tensors: ls.length,
      params,
      share: totalParams ? params / totalParams : 0,
      meanDelta: ds.length ? ds.reduce((a, x) => a + x, 0) / ds.length : 0,
      pooledDelta: n2 > 0 ? Math.sqrt(c2 / n2) : 0,
    };
  });
  return { layers, groups, totalParams };
}

/** Pools tensors of one module (`...to_k.weight` and `...to_k.bias` -> `...to_k`): norms combine in quadrature. */
function poolByLayer(tensors: readonly LayerChange[]): LayerChange[] {
  const byKey = new Map<string, LayerChange>();
  for (const t of tensors) {
    const key = t.key.replace(/\.[^.]+$/, "");
    const prev = byKey.get(key);
    if (!prev) {
      byKey.set(key, { ...t, key });
      continue;
    }
    const norm = Math.hypot(prev.norm, t.norm),
      changeNorm = Math.hypot(prev.changeNorm, t.changeNorm);
    byKey.set(key, {
      key,
      group: prev.group,
      numel: prev.numel + t.numel,
      norm,
      changeNorm,
      delta: norm > 0 ? changeNorm / norm : null,
    });
  }
  return [...byKey.values()];
}

/** CSV: key,group,numel,norm,change_norm,delta (RFC 4180 quoting where needed). */
export function analysisCsv(a: WeightAnalysis): string {
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const rows = ["key,group,numel,norm,change_norm,delta"];
  for (const l of a.layers) rows.push([q(l.key), l.group, l.numel, l.norm, l.changeNorm, l.delta ?? ""].join(","));
  return rows.join("\n") + "\n";
}

/** Written file paths. */
export interface AnalysisFiles {
  json: string;
  csv: string;
  png: string;
}

/**
 * Writes `<name>.json`, `<name>.csv` and `<name>.png` (each atomically) into `dir`. The chart has one
 * bar per tensor coloured by group (`chart: "layers"`, default) or one bar per group's mean Delta.
 */
export function writeAnalysis(
  a: WeightAnalysis,
  dir: string,
  opts: { name?: string; chart?: "layers" | "groups"; width?: number; height?: number; title?: string } = {},
): AnalysisFiles {
  fs.mkdirSync(dir, { recursive: true });
  const name = opts.name ?? "weight_change";
  const files = {
    json: path.join(dir, `${name}.json`),
    csv: path.join(dir, `${name}.csv`),
    png: path.join(dir, `${name}.png`),
  };
  writeJsonAtomic(files.json, a);
  writeFileAtomic(files.csv, analysisCsv(a));
  const legend = a.groups.map((g) => ({
    label: `${g.group} ${(100 * g.share).toFixed(1)}% params, mean ${g.meanDelta.toPrecision(3)}`,
    color: GROUP_COLORS[g.group],
  }));
  const bars =
    opts.chart === "groups"
      ? a.groups.map((g) => ({ value: g.meanDelta, color: GROUP_COLORS[g.group], label: g.group }))
      : a.layers.map((l) => ({ value: l.delta ?? 0, color: GROUP_COLORS[l.group] }));
  writeBarChart(files.png, {
    bars,
    legend,
    title: opts.title ?? "relative weight change per layer",
    yLabel: "delta",
    width: opts.width ?? 900,
    height: opts.height ?? 420,
  });
  return files;
}

/** Human-readable group summary lines. */
export function formatAnalysis(a: WeightAnalysis): string[] {
  return a.groups.map(
    (g) =>
      `${g.group.padEnd(16)} ${String(g.tensors).padStart(4)} tensors ${g.params.toLocaleString("en").padStart(13)} params (${(100 * g.share).toFixed(2)}%)  mean delta ${g.meanDelta.toExponential(3)}  pooled ${g.pooledDelta.toExponential(3)}`,
  );
}
