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
export const DEFAULT_INITIALIZERS = [
  "ktn",
  "pll",
  "ucd",
  "sks",
  "tvc",
  "pbc",
  "dbz",
  "cae",
  "hmv",
  "ulf",
  "omd",
  "waj",
  "rcn",
  "hta",
];

/** `<new1>`, `<new2>`, ... */
export function defaultModifierTokens(n: number, start = 1): string[] {
  return Array.from({ length: n }, (_, i) => `<new${i + start}>`);
}

/** Picks one initializer per token: the given ones, then defaults that encode to a single token. */
export function resolveInitializers(
  tokenizer: CLIPTokenizer,
  count: number,
  given: readonly string[] = [],
  log?: (s: string) => void,
): string[] {
  const out: string[] = [];
  if (count > given.length && log) {
    const multi = DEFAULT_INITIALIZERS.filter((w) => tokenizer.idsForTokenString(w).length !== 1);
    if (multi.length)
      log(
        `note: default initializer${multi.length > 1 ? "s" : ""} ${multi.join(", ")} encode to several tokens with this vocabulary and are skipped`,
      );
  }
  for (let i = 0; i < count; i++) {
    if (i < given.length) {
      out.push(given[i]);
      continue;
    }
    const next = DEFAULT_INITIALIZERS.find((w) => !out.includes(w) && tokenizer.idsForTokenString(w).length === 1);
    if (!next)
      throw new ConfigError(
        `modifier tokens: no default initializer left for concept ${i + 1}; pass initializer tokens`,
      );
    out.push(next);
  }
  return out;
}

/**
 * Adds `tokens` to the tokenizer and gives each a trainable embedding row copied from its
 * initializer's row. Returns the rows (n, D) - the only text-encoder parameter that trains.
 */
export function addModifierTokens(
  tokenizer: CLIPTokenizer,
  textEncoder: CLIPTextModel,
  tokens: readonly string[],
  initializers: readonly string[],
): { rows: Tensor; ids: number[] } {
  if (initializers.length < tokens.length)
    throw new ConfigError(`modifier tokens: ${tokens.length} tokens but ${initializers.length} initializer tokens`);
  const emb = textEncoder.text_model.embeddings;
  const initIds: number[] = [];
  tokens.forEach((t, i) => {
    const w = initializers[i];
    const ids = tokenizer.idsForTokenString(w);
    if (ids.length !== 1)
      throw new ConfigError(
        `modifier tokens: initializer "${w}" for ${t} must be a single token, got ${ids.length} tokens (${ids.join(", ")})`,
      );
    if (ids[0] >= emb.token_embedding.weight.shape[0])
      throw new ConfigError(`modifier tokens: initializer "${w}" is itself an added token`);
    initIds.push(ids[0]);
  });
  const ids: number[] = [];
  for (const t of tokens) {
    if (tokenizer.addTokens([t]) !== 1)
      throw new ConfigError(`modifier tokens: the tokenizer already contains ${t}; pass a different token`);
    ids.push(tokenizer.convertTokensToIds(t) as number);
  }
  const rows = noGrad(() => indexSelect(emb.token_embedding.weight, 0, initIds))
    .detach()
    .requiresGrad_(true); // (n, D)
  const first = emb.addTokenRows(rows);
  ids.forEach((id, i) => {
    if (id !== first + i)
      throw new ConfigError(
        `modifier tokens: tokenizer gave ${tokens[i]} id ${id} but the text encoder's next row is ${first + i} (tokenizer and text encoder vocabularies differ)`,
      );
  });
  return { rows: emb._addedRows as Tensor, ids };
}

/** Current values of the added rows, by token. */
export function tokenRows(textEncoder: CLIPTextModel, tokens: readonly string[]): Map<string, Float32Array> {
  const rows = textEncoder.text_model.embeddings._addedRows;
  if (!rows || rows.shape[0] < tokens.length)
    throw new ConfigError(
      `modifier tokens: the text encoder has ${rows?.shape[0] ?? 0} added rows, ${tokens.length} tokens asked`,
    );
  const d = rows.shape[1],
    data = rows.data;
  return new Map(tokens.map((t, i) => [t, Float32Array.from(data.subarray(i * d, (i + 1) * d))]));
}

/** Options of {@link installTokens}. */
export interface InstallTokensOptions {
  /**
   * The text-encoder row of each token, in the map's order. Default: each token's new tokenizer id,
   * so the ids the tokenizer gives select the rows. Pass rows when the tokenizer's ids are not the
   * encoder's rows (a tokenizer larger than a small or custom CLIP's table); the text encoder then
   * has to be fed the rows, so map the tokenizer's ids to them before its forward.
   */
  rows?: readonly number[];
}

/**
 * Adds tokens with given embedding rows (loading a delta for sampling) and returns their tokenizer ids.
 *
 * Each row goes to the text-encoder row given by `opts.rows`, by default the token's tokenizer id
 * (diffusers' load_textual_inversion writes rows at the tokenizer's ids the same way): a row below the
 * encoder's vocabulary size replaces that row (the table is copied; nothing is shared with the old
 * one), and rows from the vocabulary size on are appended as added rows and must follow it without a
 * gap. When tokenizer and encoder share one vocabulary the tokens are simply appended. A tokenizer
 * whose ids run past the encoder's table (the 49,408-token CLIP tokenizer on a 1,000-row test
 * encoder) cannot have rows at its ids: pass `rows`, or add rows yourself with
 * `textEncoder.text_model.embeddings.addTokenRows(rows)`, which appends (n, D) rows and returns the
 * first new row id.
 */
export function installTokens(
  tokenizer: CLIPTokenizer,
  textEncoder: CLIPTextModel,
  tokens: Map<string, Float32Array>,
  opts: InstallTokensOptions = {},
): number[] {
  const emb = textEncoder.text_model.embeddings;
  const d = emb.token_embedding.weight.shape[1];
  if (opts.rows !== undefined && opts.rows.length !== tokens.size)
    throw new ConfigError(`delta: ${tokens.size} tokens but ${opts.rows.length} rows`);
  const known = tokens.size > 0 ? tokenizer.getVocab() : {};
  for (const [t, row] of tokens) {
    if (row.length !== d)
      throw new ConfigError(`delta: token ${t} has a ${row.length}-dim embedding, the text encoder ${d}`);
    if (Object.hasOwn(known, t)) throw new ConfigError(`delta: the tokenizer already contains ${t}`);
  }
  // the rows, checked before the tokenizer changes
  const vocab = emb.vocabSize;
  const nextIds = Array.from({ length: tokens.size }, (_, k) => tokenizer.vocabSize + k);
  const rows = opts.rows ?? nextIds;
  const seen = new Set<number>();
  for (const r of rows) {
    if (!Number.isInteger(r) || r < 0) throw new ConfigError(`delta: rows must be non-negative integers, got ${r}`);
    if (seen.has(r)) throw new ConfigError(`delta: row ${r} is given twice`);
    seen.add(r);
  }
  const appended = rows.filter((r) => r >= vocab).sort((a, b) => a - b);
  appended.forEach((r, k) => {
    if (r !== vocab + k) {
      const why =
        opts.rows === undefined
          ? `the tokenizer's ids (${nextIds[0]}..${nextIds[nextIds.length - 1]}) run past the text encoder's ${vocab} rows: tokenizer and text encoder vocabularies differ (${tokenizer.vocabSize} and ${vocab} tokens); pass rows (e.g. rows: [${vocab}${tokens.size > 1 ? ", ..." : ""}]) and map the ids to them, or use addTokenRows`
          : `appended rows must continue the text encoder's ${vocab} rows without a gap, got ${r} where ${vocab + k} comes next`;
      throw new ConfigError(`delta: cannot place the token rows: ${why}`);
    }
  });
  const ids: number[] = [];
  for (const t of tokens.keys()) {
    if (tokenizer.addTokens([t]) !== 1) throw new ConfigError(`delta: the tokenizer already contains ${t}`);
    ids.push(tokenizer.convertTokensToIds(t) as number);
  }
  if (tokens.size === 0) return ids;
  const values = [...tokens.values()];
  const w = emb.token_embedding.weight;
  const make = (data: Float32Array | Float64Array, n: number) => {
    const host =
      w.dtype === "float64"
        ? data instanceof Float64Array
          ? data
          : Float64Array.from(data)
        : data instanceof Float32Array
          ? data
          : Float32Array.from(data);
    return new Tensor(w.backend.fromHost(host), [n, d], w.dtype, w.backend);
  };
  // rows inside the table: a copy of the table (base or added part) with those rows written
  const base = w.shape[0];
  const rewrite = (t: Tensor, offset: number): Tensor => {
    const data = t.data.slice(); // a copy in the table's own precision
    rows.forEach((r, k) => {
      if (r >= offset && r < offset + t.shape[0]) data.set(values[k]!, (r - offset) * d);
    });
    return make(data, t.shape[0]).requiresGrad_(t.requiresGrad);
  };
  if (rows.some((r) => r < base)) emb.token_embedding.weight = rewrite(w, 0);
  if (emb._addedRows && rows.some((r) => r >= base && r < vocab)) emb._addedRows = rewrite(emb._addedRows, base);
  if (appended.length > 0) {
    const data = new Float32Array(appended.length * d);
    rows.forEach((r, k) => {
      if (r >= vocab) data.set(values[k]!, (r - vocab) * d);
    });
    emb.addTokenRows(make(data, appended.length));
  }
  return ids;
}
