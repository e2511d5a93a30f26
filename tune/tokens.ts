// modifier tokens (<new1>, <new2>, ...): added to the tokenizer, their embedding rows initialised from
// single-token initializer words and kept apart from the frozen base table so only they train
import { ConfigError } from "../engine/errors.ts";
import { Tensor, indexSelect, noGrad } from "../engine/index.ts";
import type { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import type { CLIPTextModel } from "../models/clip/modeling_clip.ts";

/**
 * The reference's initializers (ktn, pll, ucd), then other rarely used words that are single CLIP
 * tokens. With CLIP's 49,408-token vocabulary "ktn" is two tokens (k + tn), so it is skipped and the
 * choice is logged; the diffusers example instead maps it silently to the unknown token.
 */
export const DEFAULT_INITIALIZERS = ["ktn", "pll", "ucd", "sks", "tvc", "pbc", "dbz", "cae", "hmv", "ulf", "omd", "waj", "rcn", "hta"];

/** `<new1>`, `<new2>`, ... */
export function defaultModifierTokens(n: number, start = 1): string[] {
  return Array.from({ length: n }, (_, i) => `<new${i + start}>`);
}

/** Picks one initializer per token: the given ones, then defaults that encode to a single token. */
export function resolveInitializers(tokenizer: CLIPTokenizer, count: number, given: readonly string[] = [], log?: (s: string) => void): string[] {
  const out: string[] = [];
  if (count > given.length && log) {
    const multi = DEFAULT_INITIALIZERS.filter((w) => tokenizer.idsForTokenString(w).length !== 1);
    if (multi.length) log(`note: default initializer${multi.length > 1 ? "s" : ""} ${multi.join(", ")} encode to several tokens with this vocabulary and are skipped`);
  }
  for (let i = 0; i < count; i++) {
    if (i < given.length) {
      out.push(given[i]);
      continue;
    }
    const next = DEFAULT_INITIALIZERS.find((w) => !out.includes(w) && tokenizer.idsForTokenString(w).length === 1);
    if (!next) throw new ConfigError(`modifier tokens: no default initializer left for concept ${i + 1}; pass initializer tokens`);
    out.push(next);
  }
  return out;
}

/**
 * Adds `tokens` to the tokenizer and gives each a trainable embedding row copied from its
 * initializer's row. Returns the rows (n, D) - the only text-encoder parameter that trains.
 */
export function addModifierTokens(tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, tokens: readonly string[], initializers: readonly string[]): { rows: Tensor; ids: number[] } {
  if (initializers.length < tokens.length) throw new ConfigError(`modifier tokens: ${tokens.length} tokens but ${initializers.length} initializer tokens`);
  const emb = textEncoder.text_model.embeddings;
  const initIds: number[] = [];
  tokens.forEach((t, i) => {
    const w = initializers[i];
    const ids = tokenizer.idsForTokenString(w);
    if (ids.length !== 1) throw new ConfigError(`modifier tokens: initializer "${w}" for ${t} must be a single token, got ${ids.length} tokens (${ids.join(", ")})`);
    if (ids[0] >= emb.token_embedding.weight.shape[0]) throw new ConfigError(`modifier tokens: initializer "${w}" is itself an added token`);
    initIds.push(ids[0]);
  });
  const ids: number[] = [];
  for (const t of tokens) {
    if (tokenizer.addTokens([t]) !== 1) throw new ConfigError(`modifier tokens: the tokenizer already contains ${t}; pass a different token`);
    ids.push(tokenizer.convertTokensToIds(t) as number);
  }
  const rows = noGrad(() => indexSelect(emb.token_embedding.weight, 0, initIds)).detach().requiresGrad_(true); // (n, D)
  const first = emb.addTokenRows(rows);
  ids.forEach((id, i) => {
    if (id !== first + i) throw new ConfigError(`modifier tokens: tokenizer gave ${tokens[i]} id ${id} but the text encoder's next row is ${first + i} (tokenizer and text encoder vocabularies differ)`);
  });
  return { rows: emb._addedRows as Tensor, ids };
}

/** Current values of the added rows, by token. */
export function tokenRows(textEncoder: CLIPTextModel, tokens: readonly string[]): Map<string, Float32Array> {
  const rows = textEncoder.text_model.embeddings._addedRows;
  if (!rows || rows.shape[0] < tokens.length) throw new ConfigError(`modifier tokens: the text encoder has ${rows?.shape[0] ?? 0} added rows, ${tokens.length} tokens asked`);
  const d = rows.shape[1], data = rows.data;
  return new Map(tokens.map((t, i) => [t, Float32Array.from(data.subarray(i * d, (i + 1) * d))]));
}

/** Adds tokens with given rows (loading a delta for sampling). */
export function installTokens(tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, tokens: Map<string, Float32Array>): number[] {
  const emb = textEncoder.text_model.embeddings;
  const d = emb.token_embedding.weight.shape[1];
  const ids: number[] = [];
  const data = new Float32Array(tokens.size * d);
  let i = 0;
  for (const [t, row] of tokens) {
    if (row.length !== d) throw new ConfigError(`delta: token ${t} has a ${row.length}-dim embedding, the text encoder ${d}`);
    if (tokenizer.addTokens([t]) !== 1) throw new ConfigError(`delta: the tokenizer already contains ${t}`);
    ids.push(tokenizer.convertTokensToIds(t) as number);
    data.set(row, i++ * d);
  }
  if (tokens.size === 0) return ids;
  const w = emb.token_embedding.weight;
  const rows = new Tensor(w.backend.fromHost(w.dtype === "float64" ? Float64Array.from(data) : data), [tokens.size, d], w.dtype, w.backend);
  const first = emb.addTokenRows(rows);
  ids.forEach((id, k) => {
    if (id !== first + k) throw new ConfigError(`delta: tokenizer and text encoder vocabularies differ (token id ${id}, row ${first + k})`);
  });
  return ids;
}
