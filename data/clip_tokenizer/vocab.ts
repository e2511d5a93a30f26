// The BPE vocabulary: CLIP's constants, merges parsed and ranked, ids in CLIP's order, the special tokens.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { FormatError } from "../../engine/errors.ts";
import { BYTE_ENCODER } from "./text.ts";
import { CLIPTokenizer } from "./tokenizer.ts";

/** Number of merges CLIP uses: 49152 - 256 - 2. */
export const CLIP_NUM_MERGES = 48894;
export const BOS = "<|startoftext|>";
export const EOS = "<|endoftext|>";
export const END_OF_WORD = "</w>";
export const DEFAULT_ASSET = fileURLToPath(new URL("../assets/bpe_simple_vocab_16e6.txt.gz", import.meta.url));
export const BPE_CACHE_LIMIT = 20_000;

// ---------------------------------------------------------------------------------------------
// vocabulary

/** Immutable tables shared by tokenizers built from the same files (plus the bpe() memo). */
export interface BaseVocab {
  encoder: Map<string, number>;
  decoder: Map<number, string>;
  ranks: Map<string, number>;
  merges: string[];
  size: number;
  cache: Map<string, string>;
}

export function seedCache(): Map<string, string> {
  return new Map([
    [BOS, BOS],
    [EOS, EOS],
  ]);
}

export function parseMergeLines(lines: string[], maxMerges: number, source: string): string[] {
  const merges: string[] = [];
  for (let i = 0; i < lines.length && merges.length < maxMerges; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const parts = line.split(/\s+/);
    if (parts.length !== 2) {
      throw new FormatError(`${source}: merge line ${i + 2} must hold two symbols, got ${JSON.stringify(line)}`);
    }
    merges.push(`${parts[0]} ${parts[1]}`);
  }
  return merges;
}

export function rankTable(merges: string[]): Map<string, number> {
  const ranks = new Map<string, number>();
  merges.forEach((m, i) => {
    if (!ranks.has(m)) ranks.set(m, i);
  });
  return ranks;
}

export function vocabFromMerges(merges: string[]): BaseVocab {
  const tokens: string[] = [];
  for (const c of BYTE_ENCODER.values()) tokens.push(c);
  for (const c of BYTE_ENCODER.values()) tokens.push(c + END_OF_WORD);
  for (const m of merges) tokens.push(m.replace(" ", ""));
  tokens.push(BOS, EOS);
  const encoder = new Map<string, number>();
  const decoder = new Map<number, string>();
  tokens.forEach((t, id) => {
    encoder.set(t, id); // a repeated token keeps its last id, as a Python dict built from zip() does
    decoder.set(id, t);
  });
  return { encoder, decoder, ranks: rankTable(merges), merges, size: tokens.length, cache: seedCache() };
}

export function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new FormatError(`CLIPTokenizer: cannot read ${path}, got ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormatError(`CLIPTokenizer: ${path} is not valid JSON, got ${(e as Error).message}`);
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isRecord(v) && typeof v["content"] === "string") return v["content"];
  return undefined;
}

export interface SpecialTokens {
  bos: string;
  eos: string;
  pad: string;
  unk: string;
}
