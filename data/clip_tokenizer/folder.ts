// Reading a diffusers / transformers `tokenizer/` folder: the vocabulary, the merges, the special
// tokens, the model's maximum length and the added tokens, each file checked
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FormatError } from "../../engine/errors.ts";
import {
  BOS,
  CLIP_NUM_MERGES,
  EOS,
  isRecord,
  parseMergeLines,
  rankTable,
  readJson,
  seedCache,
  tokenName,
} from "./vocab.ts";
import type { BaseVocab, SpecialTokens } from "./vocab.ts";

/** What a `tokenizer/` folder holds (see {@link readTokenizerFolder}). */
export interface TokenizerFolder {
  base: BaseVocab;
  specials: SpecialTokens;
  maxLen: number;
  /** added tokens with the ids the folder gives them, in file order (not yet checked against the vocabulary) */
  addedEntries: [string, number][];
}

/**
 * Reads `vocab.json` and `merges.txt` (required), and `tokenizer_config.json`,
 * `special_tokens_map.json` and `added_tokens.json` when present, as CLIPTokenizer.fromPretrained does.
 */
export function readTokenizerFolder(folder: string): TokenizerFolder {
  const vocabPath = join(folder, "vocab.json");
  const mergesPath = join(folder, "merges.txt");
  const vocabJson = readJson(vocabPath);
  if (!isRecord(vocabJson)) throw new FormatError(`CLIPTokenizer: ${vocabPath} must be an object of token -> id`);
  const encoder = new Map<string, number>();
  const decoder = new Map<number, string>();
  for (const [tok, id] of Object.entries(vocabJson)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new FormatError(
        `CLIPTokenizer: ${vocabPath} id of ${JSON.stringify(tok)} must be a non-negative integer, got ${JSON.stringify(id)}`,
      );
    }
    if (decoder.has(id)) throw new FormatError(`CLIPTokenizer: ${vocabPath} id ${id} is given twice`);
    encoder.set(tok, id);
    decoder.set(id, tok);
  }
  let mergesText: string;
  try {
    mergesText = readFileSync(mergesPath, "utf8");
  } catch (e) {
    throw new FormatError(`CLIPTokenizer: cannot read ${mergesPath}, got ${(e as Error).message}`);
  }
  const merges = parseMergeLines(mergesText.trim().split("\n").slice(1), CLIP_NUM_MERGES, mergesPath);
  const size = decoder.size === 0 ? 0 : Math.max(...decoder.keys()) + 1;
  const base: BaseVocab = { encoder, decoder, ranks: rankTable(merges), merges, size, cache: seedCache() };

  const specials: SpecialTokens = { bos: BOS, eos: EOS, unk: EOS, pad: EOS };
  let maxLen = 77;
  const addedEntries: [string, number][] = [];
  const configPath = join(folder, "tokenizer_config.json");
  if (existsSync(configPath)) {
    const cfg = readJson(configPath);
    if (isRecord(cfg)) {
      const m = cfg["model_max_length"];
      if (typeof m === "number" && Number.isInteger(m) && m >= 2 && m < 1e6) maxLen = m;
      for (const role of ["bos", "eos", "unk", "pad"] as const) {
        const name = tokenName(cfg[`${role}_token`]);
        if (name !== undefined) specials[role] = name;
      }
      const dec = cfg["added_tokens_decoder"];
      if (isRecord(dec)) {
        for (const [id, entry] of Object.entries(dec)) {
          const name = tokenName(entry);
          if (name !== undefined) addedEntries.push([name, Number(id)]);
        }
      }
    }
  }
  const mapPath = join(folder, "special_tokens_map.json");
  if (existsSync(mapPath)) {
    const map = readJson(mapPath);
    if (!isRecord(map)) throw new FormatError(`CLIPTokenizer: ${mapPath} must be an object`);
    for (const role of ["bos", "eos", "unk", "pad"] as const) {
      const name = tokenName(map[`${role}_token`]);
      if (name !== undefined) specials[role] = name;
    }
  }
  const addedPath = join(folder, "added_tokens.json");
  if (existsSync(addedPath)) {
    const added = readJson(addedPath);
    if (!isRecord(added)) throw new FormatError(`CLIPTokenizer: ${addedPath} must be an object of token -> id`);
    for (const [tok, id] of Object.entries(added)) {
      if (typeof id !== "number")
        throw new FormatError(
          `CLIPTokenizer: ${addedPath} id of ${JSON.stringify(tok)} must be a number, got ${JSON.stringify(id)}`,
        );
      addedEntries.push([tok, id]);
    }
  }
  return { base, specials, maxLen, addedEntries };
}
