// CLIP byte-level BPE tokenizer, as used by Stable Diffusion's text encoder: text cleanup, CLIP's
// pre-split regex, merge-rank BPE with `</w>` end-of-word marks, added tokens, padding and truncation.
// Loads the bundled bpe_simple_vocab_16e6 merges or a diffusers `tokenizer/` folder.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { ConfigError, FormatError } from "../engine/errors.ts";
import { writeFileAtomic } from "./atomic.ts";

/** Number of merges CLIP uses: 49152 - 256 - 2. */
export const CLIP_NUM_MERGES = 48894;
const BOS = "<|startoftext|>";
const EOS = "<|endoftext|>";
const END_OF_WORD = "</w>";
const DEFAULT_ASSET = fileURLToPath(new URL("./assets/bpe_simple_vocab_16e6.txt.gz", import.meta.url));
const BPE_CACHE_LIMIT = 20_000;

// ---------------------------------------------------------------------------------------------
// byte <-> unicode table

/**
 * The reversible byte -> character table of byte-level BPE: printable Latin-1 bytes map to
 * themselves, the other 68 bytes (controls, space, 0x7f-0xa0, 0xad) to U+0100.. in byte order.
 * Index = byte value; insertion order of the returned map = CLIP's vocabulary order.
 */
export function bytesToUnicode(): Map<number, string> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  const printable = new Set(bs);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!printable.has(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Map<number, string>();
  for (let i = 0; i < bs.length; i++) out.set(bs[i]!, String.fromCharCode(cs[i]!));
  return out;
}

const BYTE_ENCODER = bytesToUnicode();
const BYTE_TO_CHAR: string[] = Array.from({ length: 256 }, (_, b) => BYTE_ENCODER.get(b)!);
const CHAR_TO_BYTE = new Map<string, number>(Array.from(BYTE_ENCODER, ([b, c]) => [c, b]));
const UTF8 = new TextEncoder();
const UTF8_DECODE = new TextDecoder("utf-8", { fatal: false });

// ---------------------------------------------------------------------------------------------
// text cleanup

// Latin-1 named entities 160..255, in code-point order; HTML also accepts these without ';'.
const LATIN1_ENTITY_NAMES = (
  "nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn " +
  "sup2 sup3 acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave " +
  "Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml " +
  "ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN " +
  "szlig agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute " +
  "icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml " +
  "yacute thorn yuml"
).split(" ");

/** Named entities with their `;` (the HTML5 names most met in prompts and captions). */
const NAMED_ENTITIES = new Map<string, string>([
  ["amp", "&"], ["AMP", "&"], ["lt", "<"], ["LT", "<"], ["gt", ">"], ["GT", ">"],
  ["quot", '"'], ["QUOT", '"'], ["apos", "'"], ["COPY", "\u00a9"], ["REG", "\u00ae"],
  ["hellip", "\u2026"], ["mdash", "\u2014"], ["ndash", "\u2013"], ["lsquo", "\u2018"],
  ["rsquo", "\u2019"], ["sbquo", "\u201a"], ["ldquo", "\u201c"], ["rdquo", "\u201d"],
  ["bdquo", "\u201e"], ["lsaquo", "\u2039"], ["rsaquo", "\u203a"], ["bull", "\u2022"],
  ["dagger", "\u2020"], ["Dagger", "\u2021"], ["permil", "\u2030"], ["prime", "\u2032"],
  ["Prime", "\u2033"], ["euro", "\u20ac"], ["trade", "\u2122"], ["TRADE", "\u2122"],
  ["larr", "\u2190"], ["rarr", "\u2192"], ["uarr", "\u2191"], ["darr", "\u2193"],
  ["harr", "\u2194"], ["hearts", "\u2665"], ["spades", "\u2660"], ["clubs", "\u2663"],
  ["diams", "\u2666"], ["star", "\u2606"], ["starf", "\u2605"], ["check", "\u2713"],
  ["infin", "\u221e"], ["ne", "\u2260"], ["le", "\u2264"], ["ge", "\u2265"], ["asymp", "\u2248"],
  ["minus", "\u2212"], ["radic", "\u221a"], ["sum", "\u2211"], ["prod", "\u220f"],
  ["part", "\u2202"], ["int", "\u222b"], ["deg", "\u00b0"], ["oelig", "\u0153"],
  ["OElig", "\u0152"], ["scaron", "\u0161"], ["Scaron", "\u0160"], ["Yuml", "\u0178"],
  ["fnof", "\u0192"], ["circ", "\u02c6"], ["tilde", "\u02dc"], ["ensp", "\u2002"],
  ["emsp", "\u2003"], ["thinsp", "\u2009"], ["zwnj", "\u200c"], ["zwj", "\u200d"],
  ["lrm", "\u200e"], ["rlm", "\u200f"], ["Alpha", "\u0391"], ["Beta", "\u0392"],
  ["Gamma", "\u0393"], ["Delta", "\u0394"], ["Omega", "\u03a9"], ["Pi", "\u03a0"],
  ["Sigma", "\u03a3"], ["alpha", "\u03b1"], ["beta", "\u03b2"], ["gamma", "\u03b3"],
  ["delta", "\u03b4"], ["epsilon", "\u03b5"], ["lambda", "\u03bb"], ["mu", "\u03bc"],
  ["pi", "\u03c0"], ["sigma", "\u03c3"], ["tau", "\u03c4"], ["phi", "\u03c6"],
  ["omega", "\u03c9"], ["theta", "\u03b8"],
]);
/** Names HTML accepts without the trailing `;` (legacy entities). */
const LEGACY_ENTITIES = new Set<string>(["amp", "AMP", "lt", "LT", "gt", "GT", "quot", "QUOT", "COPY", "REG"]);
LATIN1_ENTITY_NAMES.forEach((name, i) => {
  NAMED_ENTITIES.set(name, String.fromCharCode(160 + i));
  LEGACY_ENTITIES.add(name);
});

// numeric references to C1 controls etc. that browsers (and Python's html module) remap
const INVALID_CHARREFS = new Map<number, string>([
  [0x00, "\ufffd"], [0x0d, "\r"], [0x80, "\u20ac"], [0x81, "\x81"], [0x82, "\u201a"],
  [0x83, "\u0192"], [0x84, "\u201e"], [0x85, "\u2026"], [0x86, "\u2020"], [0x87, "\u2021"],
  [0x88, "\u02c6"], [0x89, "\u2030"], [0x8a, "\u0160"], [0x8b, "\u2039"], [0x8c, "\u0152"],
  [0x8d, "\x8d"], [0x8e, "\u017d"], [0x8f, "\x8f"], [0x90, "\x90"], [0x91, "\u2018"],
  [0x92, "\u2019"], [0x93, "\u201c"], [0x94, "\u201d"], [0x95, "\u2022"], [0x96, "\u2013"],
  [0x97, "\u2014"], [0x98, "\u02dc"], [0x99, "\u2122"], [0x9a, "\u0161"], [0x9b, "\u203a"],
  [0x9c, "\u0153"], [0x9d, "\x9d"], [0x9e, "\u017e"], [0x9f, "\u0178"],
]);

function isDroppedCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) || n === 0xb || (n >= 0xe && n <= 0x1f) || (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe
  );
}

function lookupEntity(name: string): string | undefined {
  if (name.endsWith(";")) return NAMED_ENTITIES.get(name.slice(0, -1));
  return LEGACY_ENTITIES.has(name) ? NAMED_ENTITIES.get(name) : undefined;
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/**
 * Replaces HTML character references the way Python's `html.unescape` does: decimal and hex
 * references (with the HTML remapping of C1 controls, U+FFFD for surrogates and out-of-range values),
 * and named references from a table of the common entities (legacy names also without `;`, longest
 * legacy prefix first). Unknown names are left as they are. Not part of {@link cleanText}:
 * transformers' CLIPTokenizer does no HTML unescaping of its own (OpenAI's `simple_tokenizer`
 * unescapes twice, and ftfy once); apply it to a prompt first to mirror those.
 */
export function htmlUnescape(s: string): string {
  if (!s.includes("&")) return s;
  return s.replace(CHARREF, (whole, ref: string) => {
    if (ref[0] === "#") {
      const hex = ref[1] === "x" || ref[1] === "X";
      const digits = ref.slice(hex ? 2 : 1).replace(/;$/, "");
      const n = parseInt(digits, hex ? 16 : 10);
      const remapped = INVALID_CHARREFS.get(n);
      if (remapped !== undefined) return remapped;
      if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return "\ufffd";
      if (isDroppedCodepoint(n)) return "";
      return String.fromCodePoint(n);
    }
    const direct = lookupEntity(ref);
    if (direct !== undefined) return direct;
    const chars = Array.from(ref);
    for (let x = chars.length - 1; x > 1; x--) {
      const hit = lookupEntity(chars.slice(0, x).join(""));
      if (hit !== undefined) return hit + chars.slice(x).join("");
    }
    return whole;
  });
}

// transformers' CLIPTokenizer without ftfy cleans text with BERT's BasicTokenizer(strip_accents=False,
// do_split_on_punc=False): _clean_text, _tokenize_chinese_chars, NFC, whitespace split, lower-case.
// U+0000, U+FFFD and Unicode category C (Cc, Cf, Cs, Co, Cn) except tab/newline/CR are dropped;
// tab, newline, CR and category Zs become spaces.
const CLEAN_DROPPED = /[\0\ufffd]|(?![\t\n\r])\p{C}/gu;
const CLEAN_SPACE = /[\t\n\r\p{Zs}]/gu;
// BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks and their compatibility blocks
const CJK_IDEOGRAPH = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{2a6df}\u{2a700}-\u{2b73f}\u{2b740}-\u{2b81f}\u{2b820}-\u{2ceaf}\u{2f800}-\u{2fa1f}]/gu;
// Python's str.split() / str.strip() whitespace (str.isspace())
const PY_SPACE_RUN = /[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/**
 * The text cleaning of transformers' `CLIPTokenizer` when ftfy is not installed (its BasicTokenizer
 * path), step for step: control characters (U+0000, U+FFFD and Unicode category C, i.e. Cc, Cf such
 * as U+200B/U+200D/U+00AD, Cs, Co, Cn, but not tab/newline/CR) are removed; tab, newline, CR and
 * space separators (Zs) become spaces; CJK ideographs get a space on each side; NFC; split on
 * Python whitespace; each word lower-cased; words joined by one space. No HTML unescaping.
 *
 * With ftfy installed, transformers runs `ftfy.fix_text`, collapses `\s+` and lower-cases instead,
 * so text ftfy rewrites gets other ids there: mojibake ("cafÃ©"), curly quotes and apostrophes,
 * full-width forms, Latin ligatures ("ﬁ"), HTML entities ("&amp;"); control and format characters
 * follow ftfy's rules rather than category C (C1 controls are read as Windows-1252, zero-width
 * joiners in emoji sequences and U+200B are kept); and CJK ideographs get no spaces. The fast
 * tokenizer (`CLIPTokenizerFast`: NFC, `\s+` collapsed, lower case) removes nothing and spaces no
 * ideographs. Category C comes from this JavaScript engine's Unicode version and Python's from its
 * own, so a code point assigned in one and unassigned (Cn) in the other is also cleaned differently.
 */
export function cleanText(text: string): string {
  const t = text.replace(CLEAN_DROPPED, "").replace(CLEAN_SPACE, " ").replace(CJK_IDEOGRAPH, " $& ").normalize("NFC");
  const words: string[] = [];
  for (const w of t.split(PY_SPACE_RUN)) if (w !== "") words.push(w.toLowerCase());
  return words.join(" ");
}

/** CLIP's pre-tokenization pattern: special tokens, English contractions, letter runs, single digits, other-symbol runs. */
const SPLIT_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}]+/giu;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\\/-]/g, "\\$&");
}

// ---------------------------------------------------------------------------------------------
// vocabulary

/** Immutable tables shared by tokenizers built from the same files (plus the bpe() memo). */
interface BaseVocab {
  encoder: Map<string, number>;
  decoder: Map<number, string>;
  ranks: Map<string, number>;
  merges: string[];
  size: number;
  cache: Map<string, string>;
}

function seedCache(): Map<string, string> {
  return new Map([[BOS, BOS], [EOS, EOS]]);
}

function parseMergeLines(lines: string[], maxMerges: number, source: string): string[] {
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

function rankTable(merges: string[]): Map<string, number> {
  const ranks = new Map<string, number>();
  merges.forEach((m, i) => {
    if (!ranks.has(m)) ranks.set(m, i);
  });
  return ranks;
}

function vocabFromMerges(merges: string[]): BaseVocab {
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

let defaultVocab: BaseVocab | undefined;

function readJson(path: string): unknown {
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

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isRecord(v) && typeof v["content"] === "string") return v["content"];
  return undefined;
}

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

interface SpecialTokens {
  bos: string;
  eos: string;
  pad: string;
  unk: string;
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
        throw new FormatError(`CLIPTokenizer: ${role} token ${JSON.stringify(specials[role])} is not in the vocabulary`);
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
    return new CLIPTokenizer(base, { bos: BOS, eos: EOS, unk: EOS, pad: opts.padToken ?? EOS }, opts.modelMaxLength ?? 77);
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
        throw new FormatError(`CLIPTokenizer.default: ${DEFAULT_ASSET} must hold ${CLIP_NUM_MERGES} merges, got ${merges.length}`);
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
    const vocabPath = join(folder, "vocab.json");
    const mergesPath = join(folder, "merges.txt");
    const vocabJson = readJson(vocabPath);
    if (!isRecord(vocabJson)) throw new FormatError(`CLIPTokenizer: ${vocabPath} must be an object of token -> id`);
    const encoder = new Map<string, number>();
    const decoder = new Map<number, string>();
    for (const [tok, id] of Object.entries(vocabJson)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
        throw new FormatError(`CLIPTokenizer: ${vocabPath} id of ${JSON.stringify(tok)} must be a non-negative integer, got ${JSON.stringify(id)}`);
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
        if (typeof id !== "number") throw new FormatError(`CLIPTokenizer: ${addedPath} id of ${JSON.stringify(tok)} must be a number, got ${JSON.stringify(id)}`);
        addedEntries.push([tok, id]);
      }
    }

    const tok = new CLIPTokenizer(base, specials, maxLen);
    const extra = new Map<string, number>();
    for (const [name, id] of addedEntries) if (!encoder.has(name)) extra.set(name, id);
    const sorted = [...extra].sort((a, b) => a[1] - b[1]);
    sorted.forEach(([name, id], i) => {
      if (id !== base.size + i) {
        throw new FormatError(`CLIPTokenizer: added token ${JSON.stringify(name)} in ${folder} must have id ${base.size + i} (ids follow the vocabulary), got ${id}`);
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
      for (let i = 0; i < word.length; ) {
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
      if (t === undefined) throw new ConfigError(`CLIPTokenizer: token id out of range [0, ${this.vocabSize}), got ${id}`);
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
      throw new ConfigError(`CLIPTokenizer.encode: padding must be "max_length" or "none", got ${JSON.stringify(padding)}`);
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
