// Tests of the CLIP tokenizer: hand-derived BPE ids, cleanup, unicode/emoji byte fallback,
// padding/truncation, added tokens, decode, and loading a tokenizer/ folder.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLIPTokenizer, bytesToUnicode, cleanText, htmlUnescape } from "../../data/clip_tokenizer.ts";
import { ConfigError, FormatError } from "../../engine/errors.ts";

const tok = CLIPTokenizer.default();
const BOS = 49406;
const EOS = 49407;
const pad = (ids: number[], n = 77): number[] => [...ids, ...Array<number>(n - ids.length).fill(EOS)];

// Vocabulary layout (from the merges file): ids 0..255 are the byte characters in byte-to-unicode order
// (printable bytes 0x21..0x7e first, so "!" = 0 and "a" = 0x61 - 0x21 = 64), 256..511 the same with
// "</w>", then merge of rank r (line r + 2 of the file; line 1 is the header) has id 512 + r.
test("vocabulary layout and special ids", () => {
  assert.is(tok.vocabSize, 49408);
  assert.is(tok.bosTokenId, BOS);
  assert.is(tok.eosTokenId, EOS);
  assert.is(tok.padTokenId, EOS);
  assert.is(tok.modelMaxLength, 77);
  assert.is(tok.convertTokensToIds("!"), 0);
  assert.is(tok.convertTokensToIds("a"), 64);
  assert.is(tok.convertTokensToIds("a</w>"), 320);
  assert.is(tok.convertTokensToIds("<|startoftext|>"), BOS);
  assert.is(tok.convertTokensToIds("<|endoftext|>"), EOS);
  // merges line 2 is "i n" (rank 0), line 3 "t h" (rank 1)
  assert.equal(tok.convertTokensToIds(["in", "th"]), [512, 513]);
  assert.equal(tok.getMerges().slice(0, 2), ["i n", "t h"]);
  assert.is(tok.getMerges().length, 48894);
  const bu = bytesToUnicode();
  assert.is(bu.get(0x20), "\u0120"); // space is the 33rd non-printable byte -> U+0100 + 32
  assert.is(bu.get(0x41), "A");
  assert.is(new Set(bu.values()).size, 256);
});

// Hand derivation (ranks checked with `zcat bpe_simple_vocab_16e6.txt.gz | grep -n -x -F`, rank = line - 2):
//   "a"     -> single symbol "a</w>"                                    -> 256 + 64          = 320
//   "of"    -> o f</w>: (o,f</w>)=27                                    -> "of</w>"  512 + 27   = 539
//   "cat"   -> c a t</w>: (c,a)=260 (a,t</w>)=24 -> c at</w>; (c,at</w>)=1856 -> "cat</w>" 512 + 1856 = 2368
//   "photo" -> p h o t o</w>: (p,h)=233 (h,o)=94 (o,t)=1351 (t,o</w>)=19 -> p h o to</w>
//              (o,to</w>)=22887, (h,o)=94 lowest -> p ho to</w>; (p,ho)=304, (ho,to</w>) only at line
//              51076, past the 48894 merges used -> pho to</w>; (pho,to</w>)=613 -> "photo</w>" 512 + 613 = 1125
// Known Stable Diffusion result: [49406, 320, 1125, 539, 320, 2368, 49407, 49407 x 70].
test('"a photo of a cat" gives the known Stable Diffusion ids', () => {
  assert.equal(tok.tokenize("a photo of a cat"), ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]);
  const ids = tok.encode("a photo of a cat");
  assert.is(ids.length, 77);
  assert.equal(ids, pad([BOS, 320, 1125, 539, 320, 2368, EOS]));
  assert.equal(tok.convertTokensToIds(["photo</w>", "of</w>", "cat</w>"]), [1125, 539, 2368]);
});

//   "dog"   -> d o g</w>: (d,o)=127 (o,g</w>)=8043 -> do g</w>; (do,g</w>)=1417 -> "dog</w>" = 1929
//   "hello" -> h e l l o</w>: (h,e)=139 (e,l)=32 (l,l)=1145 (l,o</w>)=2470 -> h el l o</w>
//              (h,el)=407 (el,l)=314 -> h ell o</w>; (h,ell)=7898 (ell,o</w>)=2000 -> h ello</w>
//              (h,ello</w>)=2794 -> "hello</w>" = 512 + 2794 = 3306
test("hand-derived BPE merges for dog and hello", () => {
  assert.is(tok.bpe("dog"), "dog</w>");
  assert.is(tok.bpe("hello"), "hello</w>");
  assert.equal(tok.idsForTokenString("dog"), [1929]);
  assert.equal(tok.idsForTokenString("hello"), [3306]);
  // "zqx" -> z q x</w>: (z,q) unranked, (q,x</w>)=44526 -> z qx</w>; (z,qx</w>) unranked: two pieces
  assert.is(tok.bpe("zqx"), "z qx</w>");
  assert.equal(tok.idsForTokenString("zqx"), [0x7a - 0x21, 512 + 44526]);
  // memoised result is stable
  assert.is(tok.bpe("hello"), "hello</w>");
});

// ","=0x2c -> 256 + 11 = 267, "!"=0x21 -> 256 + 0 = 256; "'s" is its own piece: (',s</w>)=56 -> 568
test("punctuation and contractions", () => {
  assert.equal(tok.tokenize("hello, world!"), ["hello</w>", ",</w>", "world</w>", "!</w>"]);
  assert.equal(tok.encode("hello, world!", { padding: "none" }), [BOS, 3306, 267, 1002, 256, EOS]);
  assert.equal(tok.tokenize("it's"), ["it</w>", "'s</w>"]);
  assert.is(tok.convertTokensToIds("'s</w>"), 568);
  // a run of symbols is one pre-token: "..." -> . . .</w>: (.,.)=96 -> .. .</w>; (..,.</w>)=166 -> 512 + 166 = 678
  assert.equal(tok.idsForTokenString("wow..."), [...tok.idsForTokenString("wow"), 678]);
});

// digits are split one by one: "1"=0x31 -> 256 + 16 = 272 ... "5" -> 276
test("numbers are split into single digits", () => {
  assert.equal(tok.tokenize("12345"), ["1</w>", "2</w>", "3</w>", "4</w>", "5</w>"]);
  assert.equal(tok.idsForTokenString("12345"), [272, 273, 274, 275, 276]);
  assert.equal(tok.tokenize("in 2024"), ["in</w>", "2</w>", "0</w>", "2</w>", "4</w>"]);
});

// "é" = C3 A9 -> "Ã" "©</w>": (Ã,©</w>)=3654 -> "Ã©</w>" = 4166
// "東" = E6 9D B1 -> "æ" "Ŀ" "±</w>" (0x9d is non-printable #63 -> U+013F): (æ,Ŀ)=27155 -> æĿ = 27667;
//   (æĿ,±</w>) unranked; "±" = 0xb1 is printable #109 -> "±</w>" = 256 + 109 = 365
test("unicode: accented letters and CJK", () => {
  assert.equal(tok.tokenize("é"), ["Ã©</w>"]);
  assert.equal(tok.idsForTokenString("é"), [4166]);
  assert.equal(tok.idsForTokenString("東"), [27667, 365]);
  assert.equal(tok.tokenize("CAFÉ"), tok.tokenize("café")); // lower-casing reaches accented capitals
  assert.equal(tok.tokenize("cafe\u0301"), tok.tokenize("café")); // NFC
  const cjk = tok.idsForTokenString("東京タワー");
  assert.ok(cjk.length > 1 && cjk.every((i) => i < 49406));
  assert.is(tok.decode(tok.encode("東京タワー")), "東 京 タワー"); // ideographs are spaced before BPE, as transformers does
  assert.is(tok.decode(tok.encode("café naïve")), "café naïve");
});

// "🫠" (U+1FAE0) = F0 9F AB A0 -> "ð" "Ł" "«" "ł</w>": (ð,Ł)=46 -> ðŁ = 558; (ðŁ,«) and («,ł</w>) unranked;
//   "«" = 0xab is printable #104 -> 104; 0xa0 is non-printable #66 -> U+0142 "ł", printable count 188
//   -> "ł</w>" = 256 + 188 + 66 = 510
test("emoji: byte-level fallback", () => {
  assert.equal(tok.tokenize("🫠"), ["ðŁ", "«", "ł</w>"]);
  assert.equal(tok.idsForTokenString("a 🫠 cat"), [320, 558, 104, 510, 2368]);
  assert.is(tok.decode(tok.encode("a 🫠 cat")), "a 🫠 cat");
  assert.equal(tok.idsForTokenString("🐶").length, 1); // a common emoji has its own token
  assert.is(tok.decode([558, 104]), "\ufffd"); // an incomplete UTF-8 sequence decodes to U+FFFD
});

test("long prompt is truncated to 77 with eos last", () => {
  const prompt = Array.from({ length: 60 }, (_, i) => `cat${i}`).join(" ");
  const body = tok.idsForTokenString(prompt);
  assert.ok(body.length > 75);
  const ids = tok.encode(prompt);
  assert.is(ids.length, 77);
  assert.is(ids[0], BOS);
  assert.is(ids[76], EOS);
  assert.equal(ids.slice(1, 76), body.slice(0, 75));
  const free = tok.encode(prompt, { truncation: false });
  assert.is(free.length, body.length + 2);
  assert.is(free[free.length - 1], EOS);
  assert.equal(tok.encode(prompt, { maxLength: 5 }), [BOS, ...body.slice(0, 3), EOS]);
});

test("padding with 49407 and options", () => {
  const ids = tok.encode("a cat");
  assert.equal(ids.slice(0, 4), [BOS, 320, 2368, EOS]);
  assert.ok(ids.slice(4).every((i) => i === EOS));
  assert.equal(tok.encode("a cat", { maxLength: 8 }), [BOS, 320, 2368, EOS, EOS, EOS, EOS, EOS]);
  assert.equal(tok.encode("a cat", { padding: "none" }), [BOS, 320, 2368, EOS]);
  assert.equal(tok.encode(""), pad([BOS, EOS]));
  assert.throws(
    () => tok.encode("a", { maxLength: 1 }),
    (e: unknown) => e instanceof ConfigError,
  );
});

test("text cleanup: whitespace, case; HTML entities are left as they are (transformers does not unescape)", () => {
  assert.is(cleanText("  A\t Photo \n of   a CAT  "), "a photo of a cat");
  assert.equal(tok.encode("  A\t Photo \n of   a CAT  "), tok.encode("a photo of a cat"));
  assert.is(
    htmlUnescape("a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#x27; &eacute; &hellip;"),
    "a & b <c> \"d\" 'e' é …",
  );
  assert.is(htmlUnescape("&ampx &nosuch; &#128; &#0; &#x110000; &#65"), "&x &nosuch; \u20ac \ufffd \ufffd A");
  assert.is(cleanText("tom&amp;jerry"), "tom&amp;jerry");
  assert.not.equal(tok.tokenize("tom&amp;jerry"), tok.tokenize("tom&jerry"));
  assert.is(cleanText("x\u00a0\u3000y\u2028z"), "x y z"); // Zs become spaces; U+2028 splits as Python's str.split does
});

test("text cleanup as transformers' BasicTokenizer path: category C removed, tab/newline/CR spaced, CJK ideographs spaced", () => {
  // a prompt ending with a C1 control keeps the ids of the prompt without it
  assert.equal(tok.encode("a photo of a cat\u009d"), tok.encode("a photo of a cat"));
  assert.is(cleanText("a\u009d"), "a");
  // Cc (also vertical tab, form feed, U+0085, which are not turned into spaces), Cf, Co, Cn, lone surrogates, U+0000, U+FFFD
  assert.is(cleanText("a\u000bb\u000cc\u0085d\u0000e\ufffdf"), "abcdef");
  assert.is(
    cleanText("zero\u200bwidth soft\u00adhyphen \ud83d\udc68\u200d\ud83d\udc69 bom\ufeff"),
    "zerowidth softhyphen \ud83d\udc68\ud83d\udc69 bom",
  );
  assert.is(cleanText("p\ue000u\u0378n\ud800s"), "puns");
  assert.is(cleanText("a\tb\nc\rd"), "a b c d");
  // BasicTokenizer._tokenize_chinese_chars: a space on each side of CJK ideographs (not kana or hangul)
  assert.is(cleanText("日本語のテキスト 中文 한국어"), "日 本 語 のテキスト 中 文 한국어");
  assert.equal(tok.tokenize("猫猫"), [...tok.tokenize("猫"), ...tok.tokenize("猫")]);
  // NFC after cleaning; lower case per word (final sigma)
  assert.is(cleanText("Cafe\u0301 \u039f\u0394\u039f\u03a3"), "caf\u00e9 \u03bf\u03b4\u03bf\u03c2");
  // added tokens are matched before cleaning, as transformers splits on them first
  const t = CLIPTokenizer.default();
  t.addTokens(["<new1>"]);
  assert.equal(t.tokenize("a\u200b<new1>\u009d dog"), ["a</w>", "<new1>", "dog</w>"]);
});

test("special token text maps to its id", () => {
  assert.equal(tok.idsForTokenString("<|endoftext|>"), [EOS]);
  assert.equal(tok.idsForTokenString("a <|startoftext|>"), [320, BOS]);
});

test("added tokens <new1> and <new2> get 49408 and 49409 and are never split", () => {
  const t = CLIPTokenizer.default();
  assert.is(t.addTokens(["<new1>", "<new2>"]), 2);
  assert.is(t.addTokens(["<new1>", "cat</w>"]), 0); // already known
  assert.is(t.vocabSize, 49410);
  assert.equal(t.convertTokensToIds(["<new1>", "<new2>"]), [49408, 49409]);
  assert.equal(t.tokenize("photo of a <new1> dog"), ["photo</w>", "of</w>", "a</w>", "<new1>", "dog</w>"]);
  assert.equal(t.encode("photo of a <new1> dog", { padding: "none" }), [BOS, 1125, 539, 320, 49408, 1929, EOS]);
  assert.equal(t.idsForTokenString("<new1><new2>"), [49408, 49409]);
  assert.equal(t.idsForTokenString("x<new2>y"), [...tok.idsForTokenString("x"), 49409, ...tok.idsForTokenString("y")]);
  assert.is(t.decode(t.encode("photo of a <new1> dog and <new2> cat")), "photo of a <new1> dog and <new2> cat");
  // other instances are unaffected; without the added token the text is split into pieces
  assert.is(tok.vocabSize, 49408);
  assert.equal(tok.tokenize("<new1>"), ["<</w>", "new</w>", "1</w>", "></w>"]);
  assert.throws(
    () => t.addTokens([""]),
    (e: unknown) => e instanceof ConfigError,
  );
});

test("decode round trip", () => {
  for (const s of ["a photo of a cat", "a sks dog wearing a red hat", "hello , world !"]) {
    assert.is(tok.decode(tok.encode(s)), s);
  }
  assert.is(
    tok.decode(tok.encode("a cat"), { skipSpecialTokens: false }).split(" ").slice(0, 4).join(" "),
    "<|startoftext|> a cat <|endoftext|>",
  );
  assert.equal(tok.convertIdsToTokens([320, 2368]), ["a</w>", "cat</w>"]);
  assert.throws(
    () => tok.decode([49408]),
    (e: unknown) => e instanceof ConfigError,
  );
});

test("fromPretrained on a tokenizer folder gives the same ids", () => {
  const dir = mkdtempSync(join(tmpdir(), "clip-tok-"));
  try {
    writeFileSync(join(dir, "vocab.json"), JSON.stringify(tok.getVocab()));
    writeFileSync(join(dir, "merges.txt"), ["#version: 0.2", ...tok.getMerges()].join("\n") + "\n");
    const t = CLIPTokenizer.fromPretrained(dir);
    assert.is(t.vocabSize, 49408);
    assert.is(t.padTokenId, EOS);
    for (const s of ["a photo of a cat", "hello, world!", "東京タワー 🫠 12345", "café naïve"]) {
      assert.equal(t.encode(s), tok.encode(s));
    }
    // a Stable Diffusion 2.x style folder pads with "!" and carries an added token
    writeFileSync(
      join(dir, "special_tokens_map.json"),
      JSON.stringify({ bos_token: { content: "<|startoftext|>" }, pad_token: "!" }),
    );
    writeFileSync(join(dir, "added_tokens.json"), JSON.stringify({ "<new1>": 49408 }));
    const t2 = CLIPTokenizer.fromPretrained(dir);
    assert.is(t2.padTokenId, 0);
    assert.equal(t2.encode("a <new1> cat", { maxLength: 7 }), [BOS, 320, 49408, 2368, EOS, 0, 0]);
    // savePretrained writes a folder that loads back identically
    const out = join(dir, "saved");
    t2.savePretrained(out);
    const t3 = CLIPTokenizer.fromPretrained(out);
    assert.equal(t3.encode("a <new1> cat"), t2.encode("a <new1> cat"));
    assert.is(t3.vocabSize, 49409);
    writeFileSync(join(dir, "added_tokens.json"), JSON.stringify({ "<new1>": 50000 }));
    assert.throws(
      () => CLIPTokenizer.fromPretrained(dir),
      (e: unknown) => e instanceof FormatError,
    );
    assert.throws(
      () => CLIPTokenizer.fromPretrained(join(dir, "missing")),
      (e: unknown) => e instanceof FormatError,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("fromMerges on a small merges list", () => {
  // ranks: (a,t</w>)=0 -> id 512, (c,at</w>)=1 -> 513, (c,a)=2 -> 514; bos/eos follow at 515/516
  const t = CLIPTokenizer.fromMerges("#version: 0.2\na t</w>\nc at</w>\nc a\n");
  assert.is(t.vocabSize, 512 + 3 + 2);
  assert.is(t.bosTokenId, 515);
  assert.is(t.eosTokenId, 516);
  // cat: c a t</w>: (c,a)=2 (a,t</w>)=0 -> c at</w>; (c,at</w>)=1 -> cat</w>
  assert.equal(t.tokenize("cat"), ["cat</w>"]);
  // cab: c a b</w>: (c,a)=2 -> ca b</w>; (ca,b</w>) unranked; "b" = 0x62 -> 256 + 65 = 321
  assert.equal(t.tokenize("cab"), ["ca", "b</w>"]);
  assert.equal(t.idsForTokenString("cat cab"), [513, 514, 321]);
  // rank order decides: with (c,a) first, "cat" stops at ca t</w>
  assert.equal(CLIPTokenizer.fromMerges("#h\nc a\na t</w>\nc at</w>").tokenize("cat"), ["ca", "t</w>"]);
  assert.is(CLIPTokenizer.fromMerges("#h\nc a\na t</w>", { maxMerges: 1 }).vocabSize, 515);
  assert.throws(
    () => CLIPTokenizer.fromMerges("#h\nc a t\n"),
    (e: unknown) => e instanceof FormatError,
  );
  assert.throws(
    () => CLIPTokenizer.fromMerges("#h\nc a\n", { padToken: "<pad>" }),
    (e: unknown) => e instanceof FormatError,
  );
});

test.run();
