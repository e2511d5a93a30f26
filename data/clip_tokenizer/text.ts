// Text before BPE: the byte <-> unicode table of byte-level BPE, HTML unescaping, BERT-style cleanup
// (as transformers' CLIPTokenizer without ftfy) and CLIP's pre-split pattern.

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

export const BYTE_ENCODER = bytesToUnicode();
export const BYTE_TO_CHAR: string[] = Array.from({ length: 256 }, (_, b) => BYTE_ENCODER.get(b)!);
export const CHAR_TO_BYTE = new Map<string, number>(Array.from(BYTE_ENCODER, ([b, c]) => [c, b]));
export const UTF8: { encode(input?: string): Uint8Array } = new TextEncoder();
export const UTF8_DECODE: { decode(input?: Uint8Array): string } = new TextDecoder("utf-8", { fatal: false });

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
  ["amp", "&"],
  ["AMP", "&"],
  ["lt", "<"],
  ["LT", "<"],
  ["gt", ">"],
  ["GT", ">"],
  ["quot", '"'],
  ["QUOT", '"'],
  ["apos", "'"],
  ["COPY", "\u00a9"],
  ["REG", "\u00ae"],
  ["hellip", "\u2026"],
  ["mdash", "\u2014"],
  ["ndash", "\u2013"],
  ["lsquo", "\u2018"],
  ["rsquo", "\u2019"],
  ["sbquo", "\u201a"],
  ["ldquo", "\u201c"],
  ["rdquo", "\u201d"],
  ["bdquo", "\u201e"],
  ["lsaquo", "\u2039"],
  ["rsaquo", "\u203a"],
  ["bull", "\u2022"],
  ["dagger", "\u2020"],
  ["Dagger", "\u2021"],
  ["permil", "\u2030"],
  ["prime", "\u2032"],
  ["Prime", "\u2033"],
  ["euro", "\u20ac"],
  ["trade", "\u2122"],
  ["TRADE", "\u2122"],
  ["larr", "\u2190"],
  ["rarr", "\u2192"],
  ["uarr", "\u2191"],
  ["darr", "\u2193"],
  ["harr", "\u2194"],
  ["hearts", "\u2665"],
  ["spades", "\u2660"],
  ["clubs", "\u2663"],
  ["diams", "\u2666"],
  ["star", "\u2606"],
  ["starf", "\u2605"],
  ["check", "\u2713"],
  ["infin", "\u221e"],
  ["ne", "\u2260"],
  ["le", "\u2264"],
  ["ge", "\u2265"],
  ["asymp", "\u2248"],
  ["minus", "\u2212"],
  ["radic", "\u221a"],
  ["sum", "\u2211"],
  ["prod", "\u220f"],
  ["part", "\u2202"],
  ["int", "\u222b"],
  ["deg", "\u00b0"],
  ["oelig", "\u0153"],
  ["OElig", "\u0152"],
  ["scaron", "\u0161"],
  ["Scaron", "\u0160"],
  ["Yuml", "\u0178"],
  ["fnof", "\u0192"],
  ["circ", "\u02c6"],
  ["tilde", "\u02dc"],
  ["ensp", "\u2002"],
  ["emsp", "\u2003"],
  ["thinsp", "\u2009"],
  ["zwnj", "\u200c"],
  ["zwj", "\u200d"],
  ["lrm", "\u200e"],
  ["rlm", "\u200f"],
  ["Alpha", "\u0391"],
  ["Beta", "\u0392"],
  ["Gamma", "\u0393"],
  ["Delta", "\u0394"],
  ["Omega", "\u03a9"],
  ["Pi", "\u03a0"],
  ["Sigma", "\u03a3"],
  ["alpha", "\u03b1"],
  ["beta", "\u03b2"],
  ["gamma", "\u03b3"],
  ["delta", "\u03b4"],
  ["epsilon", "\u03b5"],
  ["lambda", "\u03bb"],
  ["mu", "\u03bc"],
  ["pi", "\u03c0"],
  ["sigma", "\u03c3"],
  ["tau", "\u03c4"],
  ["phi", "\u03c6"],
  ["omega", "\u03c9"],
  ["theta", "\u03b8"],
]);
/** Names HTML accepts without the trailing `;` (legacy entities). */
const LEGACY_ENTITIES = new Set<string>(["amp", "AMP", "lt", "LT", "gt", "GT", "quot", "QUOT", "COPY", "REG"]);
LATIN1_ENTITY_NAMES.forEach((name, i) => {
  NAMED_ENTITIES.set(name, String.fromCharCode(160 + i));
  LEGACY_ENTITIES.add(name);
});

// numeric references to C1 controls etc. that browsers (and Python's html module) remap
const INVALID_CHARREFS = new Map<number, string>([
  [0x00, "\ufffd"],
  [0x0d, "\r"],
  [0x80, "\u20ac"],
  [0x81, "\x81"],
  [0x82, "\u201a"],
  [0x83, "\u0192"],
  [0x84, "\u201e"],
  [0x85, "\u2026"],
  [0x86, "\u2020"],
  [0x87, "\u2021"],
  [0x88, "\u02c6"],
  [0x89, "\u2030"],
  [0x8a, "\u0160"],
  [0x8b, "\u2039"],
  [0x8c, "\u0152"],
  [0x8d, "\x8d"],
  [0x8e, "\u017d"],
  [0x8f, "\x8f"],
  [0x90, "\x90"],
  [0x91, "\u2018"],
  [0x92, "\u2019"],
  [0x93, "\u201c"],
  [0x94, "\u201d"],
  [0x95, "\u2022"],
  [0x96, "\u2013"],
  [0x97, "\u2014"],
  [0x98, "\u02dc"],
  [0x99, "\u2122"],
  [0x9a, "\u0161"],
  [0x9b, "\u203a"],
  [0x9c, "\u0153"],
  [0x9d, "\x9d"],
  [0x9e, "\u017e"],
  [0x9f, "\u0178"],
]);

function isDroppedCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) ||
    n === 0xb ||
    (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe
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
const CJK_IDEOGRAPH =
  /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{2a6df}\u{2a700}-\u{2b73f}\u{2b740}-\u{2b81f}\u{2b820}-\u{2ceaf}\u{2f800}-\u{2fa1f}]/gu;
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
export const SPLIT_PATTERN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}]+/giu;

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\\/-]/g, "\\$&");
}
