// Closed-form merge of N Custom Diffusion deltas (Kumari et al. 2023, eq. 4-5 and appendix A): every
// cross-attention K/V matrix solves min ||(W - W0) C_reg^T|| s.t. W C^T = V, in float64 with solves only
import { ConfigError, NumericalError, ShapeError } from "../engine/errors.ts";
import { Tensor } from "../engine/index.ts";
import * as la from "../engine/linalg.ts";
import type { Mat } from "../engine/linalg.ts";
import type { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import type { CLIPTextModel } from "../models/clip/modeling_clip.ts";
import type { Module } from "../models/nn/module.ts";
import type { Delta, HostTensor } from "./delta.ts";
import { checkSameBase, renumberTokens, saveDelta } from "./delta.ts";
import { readCaptions, tokenFeatures } from "./merge_features.ts";

export { readCaptions, tokenFeatures } from "./merge_features.ts";

const KV = /\.attn2\.to_[kv]\.weight$/;

const fro = (a: Mat): number => la.norm(a, "fro");

function toMat(t: HostTensor | Tensor, what: string): Mat {
  if (t.shape.length !== 2) throw new ShapeError(`merge: ${what} must be a matrix, got shape [${t.shape}]`);
  return la.mat(t.shape[0]!, t.shape[1]!, t.data);
}

// ---------------------------------------------------------------------------------------------
// the closed form on matrices

/** Options of {@link prepareMerge}. */
export interface PrepareOptions {
  /** how a target feature shared by several concepts gets its value: the first concept's (the reference's) or their mean (default) */
  duplicates?: "first" | "mean";
  /** rows closer than this (relative Euclidean distance) are one target (default 1e-5: float32 features computed in different batches) */
  dedupeTol?: number;
  /** adds ridge * trace(M) / d to M's diagonal (default 0: the paper's M) */
  ridge?: number;
}

/**
 * Everything that depends only on the features, not on the layer: M = C_reg^T C_reg (Cholesky),
 * the de-duplicated targets C (s x d), D = C M^-1 (by solves) and the Cholesky factor of D C^T.
 * Reused for every K/V matrix of the model.
 */
export interface MergePlan {
  /** unique targets (s x d) */
  c: Mat;
  /** D = C M^-1 (s x d) */
  dmat: Mat;
  /** G = D C^T = C M^-1 C^T (s x s) and its Cholesky factor */
  g: Mat;
  gChol: Mat;
  /** transposed Cholesky factor of M (upper, d x d) */
  mCholT: Mat;
  /** per concept: its targets (rows) */
  conceptTargets: Mat[];
  /** per unique target: the concepts that own it */
  owners: number[][];
  /** per concept: the unique-target index of each of its rows */
  rowIndex: number[][];
  duplicates: "first" | "mean";
  duplicatesRemoved: number;
  /** reciprocal condition estimates: M's from its Cholesky diagonal (an upper bound), G's by the LU 1-norm estimator */
  rcondM: number;
  rcondG: number;
  regFeatures: number;
}

/** Prepares the layer-independent part of the merge from regularisation features (r x d) and per-concept targets (s_n x d). */
export function prepareMerge(creg: Mat, targets: readonly Mat[], opts: PrepareOptions = {}): MergePlan {
  const d = creg.cols;
  if (targets.length === 0) throw new ConfigError("merge: no concepts");
  for (const [n, t] of targets.entries()) {
    if (t.cols !== d)
      throw new ConfigError(`merge: concept ${n + 1} targets have width ${t.cols}, the regularisation features ${d}`);
    if (t.rows === 0) throw new ConfigError(`merge: concept ${n + 1} has no target features`);
  }
  const tol = opts.dedupeTol ?? 1e-5;
  // unique targets across (and within) concepts, first occurrence first
  const uniq: Float64Array[] = [];
  const uniqNorm: number[] = [];
  const owners: number[][] = [];
  const rowIndex: number[][] = [];
  let total = 0;
  targets.forEach((t, n) => {
    const idx: number[] = [];
    for (let i = 0; i < t.rows; i++) {
      total++;
      const row = t.data.subarray(i * d, (i + 1) * d);
      let nrm = 0;
      for (let k = 0; k < d; k++) nrm += row[k]! * row[k]!;
      nrm = Math.sqrt(nrm);
      let found = -1;
      for (let u = 0; u < uniq.length && found < 0; u++) {
        const q = uniq[u]!;
        let dist = 0;
        for (let k = 0; k < d; k++) dist += (row[k]! - q[k]!) ** 2;
        if (Math.sqrt(dist) <= tol * Math.max(nrm, uniqNorm[u]!)) found = u;
      }
      if (found < 0) {
        found = uniq.length;
        uniq.push(Float64Array.from(row));
        uniqNorm.push(nrm);
        owners.push([]);
      }
      if (!owners[found]!.includes(n)) owners[found]!.push(n);
      idx.push(found);
    }
    rowIndex.push(idx);
  });
  const s = uniq.length;
  if (s > d)
    throw new ConfigError(
      `merge: ${s} distinct target features but the feature width is ${d}; the constraints W C^T = V cannot all hold (merge fewer concepts or use fewer target prompts)`,
    );
  const c = la.mat(s, d);
  uniq.forEach((r, i) => c.data.set(r, i * d));

  const m = la.gram(creg); // (d, d)
  if (opts.ridge) {
    let tr = 0;
    for (let i = 0; i < d; i++) tr += m.data[i * d + i]!;
    const add = (opts.ridge * tr) / d;
    for (let i = 0; i < d; i++) m.data[i * d + i] += add;
  }
  let mChol: Mat;
  try {
    mChol = la.cholesky(m);
  } catch (e) {
    if (e instanceof NumericalError) {
      throw new ConfigError(
        `merge: the regularisation features (${creg.rows} rows of width ${d}) do not span the feature space (M = C_reg^T C_reg is singular); add captions or pass a small ridge (${e.message})`,
      );
    }
    throw e;
  }
  let dmin = Infinity,
    dmax = 0;
  for (let i = 0; i < d; i++) {
    const v = mChol.data[i * d + i]!;
    dmin = Math.min(dmin, v);
    dmax = Math.max(dmax, v);
  }
  const rcondM = (dmin / dmax) ** 2; // a cheap upper bound from the Cholesky diagonal
  const dmatT = la.choleskySolve(mChol, la.transpose(c)); // M^-1 C^T (d, s)
  const dmat = la.transpose(dmatT); // (s, d)
  const g = la.matmulNT(dmat, c); // D C^T (s, s)
  for (let i = 0; i < s; i++)
    for (let j = 0; j < i; j++) {
      const v = 0.5 * (g.data[i * s + j]! + g.data[j * s + i]!);
      g.data[i * s + j] = v;
      g.data[j * s + i] = v;
    }
  let gChol: Mat;
  try {
    gChol = la.cholesky(g);
  } catch (e) {
    if (e instanceof NumericalError)
      throw new ConfigError(
        `merge: the ${s} target features are linearly dependent (C M^-1 C^T is singular); two concepts may share a token row or class prompt (${e.message})`,
      );
    throw e;
  }
  const rcondG = la.luRcond(la.lu(g));
  return {
    c,
    dmat,
    g,
    gChol,
    mCholT: la.transpose(mChol),
    conceptTargets: [...targets],
    owners,
    rowIndex,
    duplicates: opts.duplicates ?? "mean",
    duplicatesRemoved: total - s,
    rcondM,
    rcondG,
    regFeatures: creg.rows,
  };
}

/** Result of {@link mergeMatrix}. */
export interface MatrixMerge {
  /** merged matrix (out x d), float64 */
  w: Mat;
  /** V (out x s): what the constraints ask W C^T to be */
  v: Mat;
  /** per concept: ||W C_n^T - W_n C_n^T|| / ||W_n C_n^T|| over all its targets */
  targetResidual: number[];
  /** ||(W - W0) C_reg^T|| / ||W0 C_reg^T||, or null when not computed */
  regResidual: number | null;
}

/**
 * Merges one matrix: `W = W0 + (V - W0 C^T) (D C^T)^-1 D` with V's column for each unique target
 * taken from its owning concepts' fine-tuned matrices `tuned[n]` (out x d each).
 */
export function mergeMatrix(
  plan: MergePlan,
  w0: Mat,
  tuned: readonly Mat[],
  opts: { regResidual?: boolean } = {},
): MatrixMerge {
  const out = w0.rows,
    d = w0.cols,
    s = plan.c.rows;
  if (d !== plan.c.cols)
    throw new ConfigError(`merge: matrix width ${d} differs from the feature width ${plan.c.cols}`);
  if (tuned.length !== plan.conceptTargets.length)
    throw new ConfigError(`merge: ${tuned.length} tuned matrices for ${plan.conceptTargets.length} concepts`);
  tuned.forEach((w, n) => {
    if (w.rows !== out || w.cols !== d)
      throw new ConfigError(`merge: concept ${n + 1} matrix is ${w.rows}x${w.cols}, the base ${out}x${d}`);
  });
  // per concept: W_n C_n^T (out, s_n)
  const own = tuned.map((w, n) => la.matmulNT(w, plan.conceptTargets[n]!));
  const v = la.mat(out, s);
  const counts = new Float64Array(s);
  plan.rowIndex.forEach((idx, n) => {
    const wn = own[n]!,
      sn = idx.length;
    idx.forEach((u, j) => {
      if (plan.duplicates === "first" ? plan.owners[u]![0] !== n || counts[u]! > 0 : false) return;
      counts[u]++;
      for (let i = 0; i < out; i++) v.data[i * s + u] += wn.data[i * sn + j]!;
    });
  });
  for (let u = 0; u < s; u++) if (counts[u]! > 1) for (let i = 0; i < out; i++) v.data[i * s + u] /= counts[u]!;
  const w0c = la.matmulNT(w0, plan.c); // W0 C^T (out, s)
  const r = la.sub(v, w0c); // (out, s)
  const xT = la.choleskySolve(plan.gChol, la.transpose(r)); // G^-1 R^T (s, out), G symmetric
  const x = la.transpose(xT); // (out, s)
  const w = la.add(w0, la.matmul(x, plan.dmat)); // (out, d)
  const targetResidual = tuned.map((_, n) => {
    const got = la.matmulNT(w, plan.conceptTargets[n]!);
    const ref = own[n]!;
    const den = fro(ref);
    return den === 0 ? fro(got) : fro(la.sub(got, ref)) / den;
  });
  let regResidual: number | null = null;
  if (opts.regResidual ?? true) {
    // ||(W - W0) C_reg^T||^2 = tr(X D M D^T X^T) = tr(X G X^T); ||W0 C_reg^T||^2 = ||W0 L||^2 with M = L L^T
    const xg = la.matmul(x, plan.g);
    let num = 0;
    for (let i = 0; i < xg.data.length; i++) num += xg.data[i]! * x.data[i]!;
    const den = la.sqNormTimesLower(w0, plan.mCholT);
    regResidual = den === 0 ? Math.sqrt(Math.max(num, 0)) : Math.sqrt(Math.max(num, 0) / den);
  }
  return { w, v, targetResidual, regResidual };
}

// ---------------------------------------------------------------------------------------------
// merging deltas

/** The base model parts the merge reads (never modified; the text encoder is restored after use). */
export interface MergeBase {
  unet: Module;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
}

/** Options of {@link mergeDeltas}. */
export interface MergeOptions extends PrepareOptions {
  /** regularisation captions (the reference: the first 200 lines of a caption file, see {@link readCaptions}) */
  regCaptions: readonly string[];
  /** one per delta ("dog"), or one per token of that delta */
  classWords: readonly (string | readonly string[])[];
  /** target prompt templates; `{token}` and `{class}` are replaced (default "{token} {class}" and "photo of a {token} {class}") */
  templates?: readonly string[];
  /** compute the regularisation residual (an extra out x d x d product per matrix; default true) */
  regResidual?: boolean;
  /** delta parameters other than attn2 to_k/to_v: an error (default) or their mean over the deltas that have them */
  otherKeys?: "error" | "average";
  log?: (line: string) => void;
}

/** What {@link mergeDeltas} reports. */
export interface MergeReport {
  concepts: {
    index: number;
    tokens: string[];
    newTokens: string[];
    classWords: string[];
    targets: number;
    maxResidual: number;
    meanResidual: number;
  }[];
  layers: { key: string; shape: number[]; targetResidual: number[]; regResidual: number | null }[];
  /** distinct targets s, duplicates removed, regularisation features, feature width */
  targets: number;
  duplicatesRemoved: number;
  regFeatures: number;
  featureDim: number;
  rcondM: number;
  rcondG: number;
  /** worst regularisation residual over the matrices (null when not computed) */
  maxRegResidual: number | null;
  seconds: number;
}

/** Result of {@link mergeDeltas}. */
export interface MergeResult {
  delta: Delta;
  report: MergeReport;
  /** per input delta: its token -> the merged token */
  tokenMap: Map<string, string>[];
}

/**
 * Merges N >= 2 deltas trained from the same base into one (paper eq. 4-5): for every attn2
 * to_k / to_v matrix separately, W = W0 + (V - W0 C^T)(D C^T)^-1 D with C_reg the base text
 * encoder's token features of `regCaptions`, C the features of each concept's target prompts with
 * that concept's token rows, V = W_n c. M and D are factored once and reused for every matrix.
 */
export function mergeDeltas(base: MergeBase, deltas: readonly Delta[], opts: MergeOptions): MergeResult {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  if (deltas.length < 2) throw new ConfigError(`merge: needs at least 2 deltas, got ${deltas.length}`);
  if (opts.classWords.length !== deltas.length)
    throw new ConfigError(
      `merge: ${deltas.length} deltas but ${opts.classWords.length} class words (one per delta, e.g. "dog")`,
    );
  if (opts.regCaptions.length === 0) throw new ConfigError("merge: no regularisation captions");
  const fp = checkSameBase(base.unet, deltas, "merge");
  const sd = base.unet.stateDict();
  const other = new Set<string>();
  for (const d of deltas) for (const k of d.unet.keys()) if (!KV.test(k)) other.add(k);
  if (other.size && (opts.otherKeys ?? "error") === "error") {
    throw new ConfigError(
      `merge: the closed form applies to attn2 to_k/to_v only, but the deltas also change ${[...other].slice(0, 3).join(", ")}${other.size > 3 ? ", ..." : ""} (freeze_model crossattn/full); pass otherKeys "average" to average those`,
    );
  }
  const templates = opts.templates ?? ["{token} {class}", "photo of a {token} {class}"];
  const { tokens, tokenMap } = renumberTokens(deltas);

  // features: C_reg from the base encoder, targets per concept with its own token rows
  const creg = tokenFeatures(base.textEncoder, base.tokenizer, opts.regCaptions).features;
  log(
    `merge: ${creg.rows} regularisation token features (width ${creg.cols}) from ${opts.regCaptions.length} captions`,
  );
  const classLists: string[][] = [];
  const targets = deltas.map((d, n) => {
    const cw = opts.classWords[n]!;
    const toks = [...d.tokens.keys()];
    const classes = typeof cw === "string" ? (toks.length ? toks.map(() => cw) : [cw]) : [...cw];
    if (toks.length && classes.length !== toks.length)
      throw new ConfigError(`merge: delta ${n + 1} has ${toks.length} tokens but ${classes.length} class words`);
    classLists.push(classes);
    const prompts = (toks.length ? toks : [""]).flatMap((t, j) =>
      templates.map((tpl) => tpl.replace("{token}", t).replace("{class}", classes[j]!).replace(/\s+/g, " ").trim()),
    );
    return tokenFeatures(base.textEncoder, base.tokenizer, prompts, d.tokens).features;
  });
  const plan = prepareMerge(creg, targets, opts);
  log(
    `merge: ${plan.c.rows} distinct target features (${plan.duplicatesRemoved} duplicates removed), rcond(M) ${plan.rcondM.toExponential(2)}, rcond(C M^-1 C^T) ${plan.rcondG.toExponential(2)}`,
  );

  if (plan.rcondM < 1e-10)
    log(
      `warning: M = C_reg^T C_reg is nearly singular (rcond ${plan.rcondM.toExponential(1)}); use more captions or a small ridge`,
    );
  const keys = [...sd.keys()].filter((k) => KV.test(k) && deltas.some((d) => d.unet.has(k)));
  const unet = new Map<string, HostTensor>();
  const layers: MergeReport["layers"] = [];
  for (const k of keys) {
    const p = sd.get(k) as Tensor;
    const w0 = toMat(p, k);
    const tuned = deltas.map((d) => (d.unet.has(k) ? toMat(d.unet.get(k)!, k) : w0));
    const r = mergeMatrix(plan, w0, tuned, { regResidual: opts.regResidual ?? true });
    unet.set(k, { shape: [...p.shape], data: Float32Array.from(r.w.data) });
    layers.push({ key: k, shape: [...p.shape], targetResidual: r.targetResidual, regResidual: r.regResidual });
  }
  for (const k of other) {
    const have = deltas.filter((d) => d.unet.has(k));
    const v = have[0]!.unet.get(k)!;
    const acc = new Float64Array(v.data.length);
    for (const d of have) d.unet.get(k)!.data.forEach((x, i) => (acc[i] += x));
    unet.set(k, { shape: [...v.shape], data: Float32Array.from(acc, (x) => x / have.length) });
  }
  let ti = 0;
  const concepts = deltas.map((d, n) => {
    const res = layers.map((l) => l.targetResidual[n]!);
    const toks = [...d.tokens.keys()];
    const c = {
      index: n + 1,
      tokens: toks,
      newTokens: toks.map(() => `<new${++ti}>`),
      classWords: classLists[n]!,
      targets: targets[n]!.rows,
      maxResidual: res.length ? Math.max(...res) : 0,
      meanResidual: res.length ? res.reduce((a, b) => a + b, 0) / res.length : 0,
    };
    return c;
  });
  const regs = layers.map((l) => l.regResidual).filter((x): x is number => x !== null);
  const report: MergeReport = {
    concepts,
    layers,
    targets: plan.c.rows,
    duplicatesRemoved: plan.duplicatesRemoved,
    regFeatures: creg.rows,
    featureDim: creg.cols,
    rcondM: plan.rcondM,
    rcondG: plan.rcondG,
    maxRegResidual: regs.length ? Math.max(...regs) : null,
    seconds: (performance.now() - t0) / 1000,
  };
  for (const line of formatMergeReport(report)) log(line);
  const freezeModel = other.size ? deltas.find((d) => d.freezeModel !== "crossattn_kv")!.freezeModel : "crossattn_kv";
  return { delta: { unet, tokens, freezeModel, baseFingerprint: fp }, report, tokenMap };
}

/** Human-readable lines of a merge report. */
export function formatMergeReport(r: MergeReport): string[] {
  const e = (x: number) => x.toExponential(2);
  const lines = [
    `merged ${r.concepts.length} deltas over ${r.layers.length} matrices: ${r.targets} target features, ${r.regFeatures} regularisation features, ${r.seconds.toFixed(2)} s`,
  ];
  for (const c of r.concepts) {
    lines.push(
      `  concept ${c.index} (${c.tokens.map((t, i) => `${t} -> ${c.newTokens[i]}`).join(", ") || "no token"}; ${c.classWords.join(", ")}): ${c.targets} targets, relative target error max ${e(c.maxResidual)} mean ${e(c.meanResidual)}`,
    );
  }
  if (r.maxRegResidual !== null)
    lines.push(
      `  regularisation features: relative change ||(W - W0) C_reg^T|| / ||W0 C_reg^T|| max ${e(r.maxRegResidual)}`,
    );
  return lines;
}

/** Writes the merged delta (the usual delta folder) plus `merge_report.json`, as one unit. */
export function saveMerged(folder: string, result: MergeResult, sources: readonly string[] = []): void {
  saveDelta(
    folder,
    result.delta,
    {
      merged_from: JSON.stringify(sources),
      token_map: JSON.stringify(result.tokenMap.map((m) => Object.fromEntries(m))),
    },
    {
      json: {
        "merge_report.json": { ...result.report, tokenMap: result.tokenMap.map((m) => Object.fromEntries(m)), sources },
      },
    },
  );
}
