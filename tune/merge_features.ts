// Text features for the closed-form merge: text-encoder token features of prompts (with modifier-token
// rows supplied per call) and the regularisation caption file reader
import * as fs from "node:fs";
import { ConfigError } from "../engine/errors.ts";
import { Tensor, noGrad } from "../engine/index.ts";
import * as la from "../engine/linalg.ts";
import type { Mat } from "../engine/linalg.ts";
import type { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import type { CLIPTextModel } from "../models/clip/modeling_clip.ts";

/**
 * Token features of prompts: text-encoder last_hidden_state rows from position 1 through the first
 * end-of-text token (inclusive), stacked in prompt order (no padding, so nothing past eos is read).
 * `rows` maps modifier tokens to embedding rows used for this call only (the encoder is restored).
 */
export function tokenFeatures(
  textEncoder: CLIPTextModel,
  tokenizer: CLIPTokenizer,
  prompts: readonly string[],
  rows: Map<string, Float32Array> = new Map(),
  opts: { batchSize?: number } = {},
): { features: Mat; counts: number[] } {
  const emb = textEncoder.text_model.embeddings;
  const w = emb.token_embedding.weight;
  const vocab = w.shape[0]!,
    dim = w.shape[1]!;
  const maxLen = Math.min(tokenizer.modelMaxLength, textEncoder.config.max_position_embeddings);
  const tokIds = new Map<string, number>();
  const flat = new Float32Array(rows.size * dim);
  let i = 0;
  for (const [t, r] of rows) {
    if (r.length !== dim) throw new ConfigError(`merge: token ${t} has a ${r.length}-dim row, the text encoder ${dim}`);
    flat.set(r, i * dim);
    tokIds.set(t, vocab + i++);
  }
  const split = tokIds.size
    ? new RegExp(`(${[...tokIds.keys()].map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`)
    : null;
  const encodeOne = (text: string): number[] => {
    const parts = split ? text.split(split) : [text];
    const ids: number[] = [];
    for (const p of parts) {
      const tid = tokIds.get(p);
      if (tid !== undefined) ids.push(tid);
      else if (p.trim()) ids.push(...tokenizer.encode(p, { padding: "none", maxLength: 1_000_000 }).slice(1, -1));
    }
    const body = ids.slice(0, maxLen - 2);
    return [tokenizer.bosTokenId, ...body, tokenizer.eosTokenId];
  };
  const encoded = prompts.map(encodeOne);
  const perPrompt: Float64Array[] = new Array(prompts.length);
  const saved = emb._addedRows;
  const bs = opts.batchSize ?? 16;
  try {
    emb._addedRows = rows.size
      ? new Tensor(
          w.backend.fromHost(w.dtype === "float64" ? Float64Array.from(flat) : flat),
          [rows.size, dim],
          w.dtype,
          w.backend,
        )
      : null;
    // batches of equal length (causal attention: a row's features never depend on later positions)
    const byLen = new Map<number, number[]>();
    encoded.forEach((ids, k) => byLen.set(ids.length, [...(byLen.get(ids.length) ?? []), k]));
    noGrad(() => {
      for (const [len, ks] of byLen) {
        for (let b0 = 0; b0 < ks.length; b0 += bs) {
          const batch = ks.slice(b0, b0 + bs);
          const h = textEncoder.forward(batch.map((k) => encoded[k]!)).last_hidden_state.data; // (B, L, D)
          batch.forEach((k, bi) => {
            const ids = encoded[k]!;
            let eos = ids.indexOf(tokenizer.eosTokenId, 1);
            if (eos < 0) eos = len - 1;
            const out = new Float64Array(eos * dim);
            for (let p = 1; p <= eos; p++)
              for (let q = 0; q < dim; q++) out[(p - 1) * dim + q] = h[(bi * len + p) * dim + q]!;
            perPrompt[k] = out;
          });
        }
      }
    });
  } finally {
    emb._addedRows = saved;
  }
  const counts = perPrompt.map((f) => f.length / dim);
  const features = la.mat(
    counts.reduce((a, b) => a + b, 0),
    dim,
  );
  let off = 0;
  for (const f of perPrompt) {
    features.data.set(f, off);
    off += f.length;
  }
  return { features, counts };
}

/** The first `limit` non-empty lines of a caption file (the reference uses 200). */
export function readCaptions(file: string, limit = 200): string[] {
  if (!fs.existsSync(file)) throw new ConfigError(`merge: caption file ${file} does not exist`);
  return fs
    .readFileSync(file, "utf8")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(0, limit);
}
