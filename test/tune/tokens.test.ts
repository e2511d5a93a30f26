// installTokens when the tokenizer's vocabulary and the text encoder's table differ (a small or custom
// CLIP): rows at the tokenizer's ids (replacing or appending), explicit rows, and the errors
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, Generator, noGrad } from "../../engine/index.ts";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import { withInitGenerator } from "../../models/nn/module.ts";
import { CLIPTextModel, TINY_CLIP_TEXT } from "../../models/clip/index.ts";
import { installTokens } from "../../tune/tokens.ts";

const tinyEncoder = (vocab: number) =>
  withInitGenerator(new Generator(0), () =>
    CLIPTextModel.fromConfig({ ...TINY_CLIP_TEXT, vocab_size: vocab, eos_token_id: 49407 }),
  );
const row = (v: number) => new Float32Array(32).fill(v);
/** The embedding the text encoder gives token id `id` (position 0 removed). */
function tokenRow(te: CLIPTextModel, id: number): number[] {
  const emb = te.text_model.embeddings;
  return noGrad(() => {
    const x = emb.forward([id], 1, 1).sub(emb.position_embedding.weight.slice(0, 0, 1).reshape([1, 1, 32]));
    return Array.from(x.data, (v) => Math.round(v * 1e5) / 1e5);
  });
}

test("one vocabulary: rows are appended at the tokenizer's new ids (as before)", () => {
  const tok = CLIPTokenizer.default();
  const te = tinyEncoder(49408);
  assert.equal(
    installTokens(
      tok,
      te,
      new Map([
        ["<new1>", row(1)],
        ["<new2>", row(2)],
      ]),
    ),
    [49408, 49409],
  );
  assert.is(te.text_model.embeddings.vocabSize, 49410);
  assert.equal(tokenRow(te, 49409), Array.from(row(2)));
});

test("a tokenizer smaller than the encoder's table: the row at the tokenizer's id is replaced, the table copied", () => {
  const tok = CLIPTokenizer.fromMerges("#version\n", { maxMerges: 0 }); // 512 byte tokens + bos/eos = 514 ids
  assert.is(tok.vocabSize, 514);
  const te = tinyEncoder(1000);
  const before = te.text_model.embeddings.token_embedding.weight;
  const old515 = tokenRow(te, 515);
  assert.equal(installTokens(tok, te, new Map([["<new1>", row(0.5)]])), [514]);
  assert.is(te.text_model.embeddings.vocabSize, 1000, "nothing appended");
  assert.equal(tokenRow(te, 514), Array.from(row(0.5)));
  assert.equal(tokenRow(te, 515), old515, "other rows kept");
  assert.ok(
    te.text_model.embeddings.token_embedding.weight !== before && before.data[514 * 32] !== 0.5,
    "the old table is not written",
  );
  // the tokenizer's ids reach the row through the forward
  const ids = tok.encode("<new1>", { maxLength: 8 });
  assert.is(ids[1], 514);
  assert.ok(Number.isFinite(te.forward([ids]).pooler_output.data[0]!));
});

test("a tokenizer larger than the encoder's table: vocabularies differ unless rows are given; explicit rows are appended", () => {
  const tok = CLIPTokenizer.default();
  const te = tinyEncoder(1000);
  assert.throws(
    () => installTokens(tok, te, new Map([["<new1>", row(1)]])),
    (e: Error) =>
      e instanceof ConfigError &&
      /vocabularies differ \(49408 and 1000 tokens\); pass rows \(e\.g\. rows: \[1000\]\)/.test(e.message),
  );
  assert.is(tok.vocabSize, 49408, "the tokenizer is unchanged after the error");
  const ids = installTokens(
    tok,
    te,
    new Map([
      ["<new1>", row(1)],
      ["<new2>", row(2)],
    ]),
    { rows: [1001, 1000] },
  );
  assert.equal(ids, [49408, 49409]);
  assert.is(te.text_model.embeddings.vocabSize, 1002);
  assert.equal(tokenRow(te, 1001), Array.from(row(1)));
  assert.equal(tokenRow(te, 1000), Array.from(row(2)));
  // rows inside the table replace, here an earlier added row
  installTokens(tok, te, new Map([["<new3>", row(3)]]), { rows: [1000] });
  assert.equal(tokenRow(te, 1000), Array.from(row(3)));
  // errors, each before anything changes
  assert.throws(
    () => installTokens(tok, te, new Map([["<a>", row(1)]]), { rows: [1005] }),
    /without a gap, got 1005 where 1002 comes next/,
  );
  assert.throws(
    () =>
      installTokens(
        tok,
        te,
        new Map([
          ["<a>", row(1)],
          ["<b>", row(1)],
        ]),
        { rows: [7, 7] },
      ),
    /row 7 is given twice/,
  );
  assert.throws(() => installTokens(tok, te, new Map([["<a>", row(1)]]), { rows: [1, 2] }), /1 tokens but 2 rows/);
  assert.throws(() => installTokens(tok, te, new Map([["<new1>", row(1)]]), { rows: [5] }), /already contains <new1>/);
  assert.throws(
    () => installTokens(tok, te, new Map([["<a>", new Float32Array(8)]]), { rows: [5] }),
    /8-dim embedding/,
  );
  assert.is(tok.vocabSize, 49411);
});

test.run();
