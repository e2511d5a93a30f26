// The CLIP tokenizer: added tokens, BPE, encode / decode with padding and truncation, and the
// diffusers `tokenizer/` folder read and written.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { ConfigError, FormatError } from "../../engine/errors.ts";
import { writeFileAtomic } from "../atomic.ts";
import { BYTE_TO_CHAR, CHAR_TO_BYTE, SPLIT_PATTERN, UTF8, UTF8_DECODE, cleanText, escapeRegExp } from "./text.ts";
import {
  BOS,
  BPE_CACHE_LIMIT,
  CLIP_NUM_MERGES,
  DEFAULT_ASSET,
  END_OF_WORD,
  EOS,
  parseMergeLines,
  seedCache,
  vocabFromMerges,
} from "./vocab.ts";
import type { BaseVocab, SpecialTokens } from "./vocab.ts";
import { readTokenizerFolder } from "./folder.ts";

let defaultVocab: BaseVocab | undefined;
// ---------------------------------------------------------------------------------------------
// tokenizer

/** Options of {@link CLIPTokenizer.fromMerges}. */
export interface CLIPTokenizerOptions {
  /** Padding token; `<|endoftext|>` (49407) for Stable Diffusion 1.x, `!` (0) for 2.x. */
  padToken?: string;
  /** Sequence length of the text encoder; 77. */
  modelMaxLength?: number;
  /** How many merge lines to use after the header; 48894 (CLIP's count). */
  maxMerges?: number;
}

/** Options of {@link CLIPTokenizer.encode}. */
export interface EncodeOptions {
  /** Target length including bos/eos; defaults to `modelMaxLength` (77). */
  maxLength?: number;
  /** `"max_length"` (default) pads with `padTokenId` up to `maxLength`; `"none"` does not pad. */
  padding?: "max_length" | "none";
  /** Cut to `maxLength`, keeping bos first and eos last (default true). */
  truncation?: boolean;
}

/** Options of {@link CLIPTokenizer.decode}. */
export interface DecodeOptions {
  /** Leave out bos, eos, pad and unk ids (default true). */
  skipSpecialTokens?: boolean;
}
/**
 * The CLIP tokenizer of Stable Diffusion (transformers `CLIPTokenizer` without ftfy, the ids
 * diffusers pipelines get when ftfy is not installed): {@link cleanText}, byte-level BPE over 48,894
 * merges, vocabulary of 49,408 ids with `<|startoftext|>` = 49406 and `<|endoftext|>` = 49407,
 * sequences of 77 ids.
 * Added tokens (e.g. Custom Diffusion's `<new1>`) get ids from 49408 on and are matched in the raw
 * text before cleanup and BPE, case-sensitively, so they are never split.
 */
export class CLIPTokenizer {
  /** Id of the begin-of-text token (49406). */
  readonly bosTokenId: number;
  /** Id of the end-of-text token (49407). */
  readonly eosTokenId: number;
  /** Id used for padding (49407 for Stable Diffusion 1.x). */
  readonly padTokenId: number;
  /** Id returned for pieces missing from the vocabulary (49407). */
  readonly unkTokenId: number;
  /** Length of encoded sequences (77). */
  readonly modelMaxLength: number;
  private readonly base: BaseVocab;
  private readonly specials: SpecialTokens;
  private readonly added = new Map<string, number>();
  private readonly addedById = new Map<number, string>();
  private addedPattern: RegExp | null = null;

  private constructor(base: BaseVocab, specials: SpecialTokens, modelMaxLength: number) {
    if (!Number.isInteger(modelMaxLength) || modelMaxLength < 2) {
      throw new ConfigError(`CLIPTokenizer: modelMaxLength must be an integer >= 2, got ${modelMaxLength}`);
    }
    this.base = base;
    this.specials = specials;
    this.modelMaxLength = modelMaxLength;
    const id = (role: keyof SpecialTokens): number => {
      const v = base.encoder.get(specials[role]);
      if (v === undefined) {
        throw new FormatError(
          `CLIPTokenizer: ${role} token ${JSON.stringify(specials[role])} is not in the vocabulary`,
        );
      }
      return v;
    };
    this.bosTokenId = id("bos");
    this.eosTokenId = id("eos");
    this.padTokenId = id("pad");
    this.unkTokenId = id("unk");
  }

  /**
   * Builds a tokenizer from `bpe_simple_vocab_16e6.txt` text: the first line is a header, the next
   * `maxMerges` (48894) lines are merges "a b" in rank order. Vocabulary: the 256 byte characters,
   * the same with `</w>`, the merges joined, then `<|startoftext|>` and `<|endoftext|>`.
   */
  static fromMerges(mergesText: string, opts: CLIPTokenizerOptions = {}): CLIPTokenizer {
    const maxMerges = opts.maxMerges ?? CLIP_NUM_MERGES;
    if (!Number.isInteger(maxMerges) || maxMerges < 0) {
      throw new ConfigError(`CLIPTokenizer.fromMerges: maxMerges must be a non-negative integer, got ${maxMerges}`);
    }
    const lines = mergesText.split("\n").slice(1);
    const base = vocabFromMerges(parseMergeLines(lines, maxMerges, "CLIPTokenizer.fromMerges"));
    return new CLIPTokenizer(
      base,
      { bos: BOS, eos: EOS, unk: EOS, pad: opts.padToken ?? EOS },
      opts.modelMaxLength ?? 77,
    );
  }

  /**
   * The Stable Diffusion 1.x tokenizer from the bundled `data/assets/bpe_simple_vocab_16e6.txt.gz`.
   * The parsed tables are cached; each call returns a fresh tokenizer (its own added tokens).
   */
  static default(): CLIPTokenizer {
    if (defaultVocab === undefined) {
      let text: string;
      try {
        text = gunzipSync(readFileSync(DEFAULT_ASSET)).toString("utf8");
      } catch (e) {
        throw new FormatError(`CLIPTokenizer.default: cannot read ${DEFAULT_ASSET}, got ${(e as Error).message}`);
      }
      const merges = parseMergeLines(text.split("\n").slice(1), CLIP_NUM_MERGES, DEFAULT_ASSET);
      if (merges.length !== CLIP_NUM_MERGES) {
        throw new FormatError(
          `CLIPTokenizer.default: ${DEFAULT_ASSET} must hold ${CLIP_NUM_MERGES} merges, got ${merges.length}`,
        );
      }
      defaultVocab = vocabFromMerges(merges);
    }
    return new CLIPTokenizer(defaultVocab, { bos: BOS, eos: EOS, unk: EOS, pad: EOS }, 77);
  }

  /**
   * Loads a diffusers / transformers `tokenizer/` folder: `vocab.json` (token -> id) and
   * `merges.txt` (header line, then merges; the first 48894 are used) are required;
   * `special_tokens_map.json` (bos/eos/unk/pad), `added_tokens.json`, and `tokenizer_config.json`
   * (`model_max_length`, `added_tokens_decoder`) are read when present.
   */
  static fromPretrained(folder: string): CLIPTokenizer {
    const { base, specials, maxLen, addedEntries } = readTokenizerFolder(folder);
    const { encoder } = base;

    const tok = new CLIPTokenizer(base, specials, maxLen);
    const extra = new Map<string, number>();
    for (const [name, id] of addedEntries) if (!encoder.has(name)) extra.set(name, id);
    const sorted = [...extra].sort((a, b) => a[1] - b[1]);
    sorted.forEach(([name, id], i) => {
      if (id !== base.size + i) {
        throw new FormatError(
          `CLIPTokenizer: added token ${JSON.stringify(name)} in ${folder} must have id ${base.size + i} (ids follow the vocabulary), got ${id}`,
        );
      }
    });
    tok.addTokens(sorted.map(([name]) => name));
    return tok;
  }

  /** Vocabulary size including added tokens (49408 + added). */
  get vocabSize(): number {
    return this.base.size + this.added.size;
  }

  /** Tokens added with {@link addTokens}, in id order. */
  get addedTokens(): string[] {
    return [...this.added.keys()];
  }

  /**
   * Adds whole-unit tokens (e.g. `"<new1>"` -> 49408, `"<new2>"` -> 49409). Tokens already in the
   * vocabulary or already added are skipped. Returns how many were added.
   */
  addTokens(tokens: string[]): number {
    let n = 0;
    for (const t of tokens) {
      if (typeof t !== "string" || t.length === 0) {
        throw new ConfigError(`CLIPTokenizer.addTokens: tokens must be non-empty strings, got ${JSON.stringify(t)}`);
      }
      if (this.base.encoder.has(t) || this.added.has(t)) continue;
      const id = this.vocabSize;
      this.added.set(t, id);
      this.addedById.set(id, t);
      n++;
    }
    if (n > 0) {
      const alts = [...this.added.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.addedPattern = new RegExp(alts.join("|"), "gu");
    }
    return n;
  }

  /** Byte-level BPE of one pre-split, byte-encoded word; returns pieces joined by spaces (memoised). */
  bpe(token: string): string {
    const cache = this.base.cache;
    const hit = cache.get(token);
    if (hit !== undefined) return hit;
    let word = Array.from(token);
    if (word.length === 0) return "";
    word[word.length - 1] += END_OF_WORD;
    const ranks = this.base.ranks;
    while (word.length > 1) {
      let best = Infinity;
      let first = "";
      let second = "";
      for (let i = 0; i < word.length - 1; i++) {
        const r = ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < best) {
          best = r;
          first = word[i]!;
          second = word[i + 1]!;
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      for (let i = 0; i < word.length;) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else {
          next.push(word[i]!);
          i += 1;
        }
      }
      word = next;
    }
    const out = word.join(" ");
    if (cache.size >= BPE_CACHE_LIMIT) {
      cache.clear();
      for (const [k, v] of seedCache()) cache.set(k, v);
    }
    cache.set(token, out);
    return out;
  }

  /** Splits raw text around added tokens (leftmost, longest first). */
  private splitAdded(text: string): { text: string; added: boolean }[] {
    const pat = this.addedPattern;
    if (pat === null) return [{ text, added: false }];
    const out: { text: string; added: boolean }[] = [];
    let last = 0;
    for (const m of text.matchAll(pat)) {
      const at = m.index;
      if (at > last) out.push({ text: text.slice(last, at), added: false });
      out.push({ text: m[0], added: true });
      last = at + m[0].length;
    }
    if (last < text.length) out.push({ text: text.slice(last), added: false });
    return out;
  }

  private bpePieces(text: string, out: string[]): void {
    const clean = cleanText(text);
    for (const m of clean.matchAll(SPLIT_PATTERN)) {
      let encoded = "";
      for (const b of UTF8.encode(m[0])) encoded += BYTE_TO_CHAR[b]!;
      for (const piece of this.bpe(encoded).split(" ")) out.push(piece);
    }
  }

  /** BPE pieces of `text` (e.g. `"a photo"` -> `["a</w>", "photo</w>"]`); added tokens come out whole. */
  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const seg of this.splitAdded(text)) {
      if (seg.added) out.push(seg.text);
      else this.bpePieces(seg.text, out);
    }
    return out;
  }

  /** Id of one token; unknown tokens give `unkTokenId`. */
  convertTokensToIds(tokens: string): number;
  /** Ids of several tokens; unknown tokens give `unkTokenId`. */
  convertTokensToIds(tokens: string[]): number[];
  convertTokensToIds(tokens: string | string[]): number | number[] {
    const one = (t: string): number => this.added.get(t) ?? this.base.encoder.get(t) ?? this.unkTokenId;
    return typeof tokens === "string" ? one(tokens) : tokens.map(one);
  }

  /** Token strings of ids (byte-encoded BPE pieces, or added/special tokens). */
  convertIdsToTokens(ids: number[]): string[] {
    return ids.map((id) => {
      const t = this.addedById.get(id) ?? this.base.decoder.get(id);
      if (t === undefined)
        throw new ConfigError(`CLIPTokenizer: token id out of range [0, ${this.vocabSize}), got ${id}`);
      return t;
    });
  }

  /** Ids of `text` without bos/eos or padding (a single-token word gives one id). */
  idsForTokenString(s: string): number[] {
    return this.convertTokensToIds(this.tokenize(s));
  }

  /**
   * Ids of `text` framed by bos/eos. By default truncated to `modelMaxLength` (77) with eos kept last,
   * and padded with `padTokenId` to that length.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const maxLength = opts.maxLength ?? this.modelMaxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new ConfigError(`CLIPTokenizer.encode: maxLength must be an integer >= 2, got ${maxLength}`);
    }
    const padding = opts.padding ?? "max_length";
    if (padding !== "max_length" && padding !== "none") {
      throw new ConfigError(
        `CLIPTokenizer.encode: padding must be "max_length" or "none", got ${JSON.stringify(padding)}`,
      );
    }
    let body = this.idsForTokenString(text);
    if ((opts.truncation ?? true) && body.length > maxLength - 2) body = body.slice(0, maxLength - 2);
    const ids = [this.bosTokenId, ...body, this.eosTokenId];
    if (padding === "max_length") while (ids.length < maxLength) ids.push(this.padTokenId);
    return ids;
  }

  /**
   * Text of `ids`: BPE pieces are joined, turned back into UTF-8 bytes (invalid sequences become
   * U+FFFD), `</w>` becomes a space; added and special tokens stand as words. Bos/eos/pad/unk are
   * left out unless `skipSpecialTokens` is false.
   */
  decode(ids: number[], opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? true;
    const specialIds = new Set([this.bosTokenId, this.eosTokenId, this.padTokenId, this.unkTokenId]);
    const words: string[] = [];
    let run: number[] = [];
    const flush = (): void => {
      if (run.length === 0) return;
      const text = UTF8_DECODE.decode(Uint8Array.from(run)).split(END_OF_WORD).join(" ").trim();
      if (text !== "") words.push(text);
      run = [];
    };
    const tokens = this.convertIdsToTokens(ids);
    for (let i = 0; i < ids.length; i++) {
      const tok = tokens[i]!;
      const id = ids[i]!;
      const special = specialIds.has(id);
      if (special && skip) continue;
      if (special || this.addedById.has(id)) {
        flush();
        words.push(tok);
        continue;
      }
      for (const ch of tok.endsWith(END_OF_WORD) ? tok.slice(0, -END_OF_WORD.length) : tok) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b === undefined) {
          // a vocabulary entry outside the byte alphabet: keep its UTF-8 as is
          for (const x of UTF8.encode(ch)) run.push(x);
        } else run.push(b);
      }
      if (tok.endsWith(END_OF_WORD)) for (const x of UTF8.encode(END_OF_WORD)) run.push(x);
    }
    flush();
    return words.join(" ");
  }

  /** Vocabulary as token -> id, added tokens included. */
  getVocab(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [t, id] of this.base.encoder) out[t] = id;
    for (const [t, id] of this.added) out[t] = id;
    return out;
  }

  /** Merges in rank order, each `"a b"`. */
  getMerges(): string[] {
    return this.base.merges.slice();
  }

  /**
   * Writes a diffusers-style `tokenizer/` folder: vocab.json, merges.txt, special_tokens_map.json,
   * tokenizer_config.json, and added_tokens.json when tokens were added, each file written atomically.
   * {@link fromPretrained} reads it back.
   */
  savePretrained(folder: string): void {
    mkdirSync(folder, { recursive: true });
    const vocab: Record<string, number> = {};
    for (const [t, id] of this.base.encoder) vocab[t] = id;
    writeFileAtomic(join(folder, "vocab.json"), JSON.stringify(vocab));
    writeFileAtomic(join(folder, "merges.txt"), ["#version: 0.2", ...this.base.merges].join("\n") + "\n");
    const s = this.specials;
    writeFileAtomic(
      join(folder, "special_tokens_map.json"),
      JSON.stringify({ bos_token: s.bos, eos_token: s.eos, unk_token: s.unk, pad_token: s.pad }, null, 2),
    );
    writeFileAtomic(
      join(folder, "tokenizer_config.json"),
      JSON.stringify({ tokenizer_class: "CLIPTokenizer", model_max_length: this.modelMaxLength }, null, 2),
    );
    if (this.added.size > 0) {
      writeFileAtomic(join(folder, "added_tokens.json"), JSON.stringify(Object.fromEntries(this.added), null, 2));
    }
  }
}
