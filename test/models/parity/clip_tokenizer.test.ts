// Parity of CLIPTokenizer with transformers 4.57.6 CLIPTokenizer on test/fixtures/clip_tokenizer/golden.json:
// 18 prompts, plain and after add_tokens(["<new1>", "<new2>"]), untruncated and padded to 77.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import { CLIPTokenizer } from "../../../data/clip_tokenizer.ts";
import { fixtureDir } from "./golden.ts";

type Mode = "slow_ftfy" | "slow_no_ftfy" | "fast";
interface Case {
  prompt: string;
  added_tokens: boolean;
  modes_agree: boolean;
  input_ids: Record<Mode, number[]>;
  padded_input_ids: Record<Mode, number[]>;
}
const J = JSON.parse(fs.readFileSync(`${fixtureDir("clip_tokenizer")}golden.json`, "utf8")) as {
  added_tokens: Record<string, number>;
  photo_of_new1_dog_without_added_token: number[];
  cases: Case[];
};

function tokenizer(added: boolean): CLIPTokenizer {
  const tok = CLIPTokenizer.default();
  if (added) tok.addTokens(Object.keys(J.added_tokens));
  return tok;
}

test("the fixture covers 18 prompts twice, with the added tokens at 49408 and 49409", () => {
  assert.is(J.cases.length, 36);
  assert.is(J.cases.filter((c) => c.added_tokens).length, 18);
  const tok = tokenizer(true);
  for (const [t, id] of Object.entries(J.added_tokens)) assert.is(tok.convertTokensToIds(t), id, t);
  assert.equal(
    tokenizer(false).encode("photo of a <new1> dog", { padding: "none" }),
    J.photo_of_new1_dog_without_added_token,
  );
});

for (const c of J.cases) {
  const label = `${JSON.stringify(c.prompt.length > 40 ? `${c.prompt.slice(0, 40)}...` : c.prompt)}${c.added_tokens ? " (added tokens)" : ""}`;
  test(`${label}: the no-ftfy slow tokenizer's ids`, () => {
    const tok = tokenizer(c.added_tokens);
    const ids = tok.encode(c.prompt, { padding: "none", truncation: false });
    assert.equal(ids, c.input_ids.slow_no_ftfy, "input_ids");
    assert.equal(tok.encode(c.prompt), c.padded_input_ids.slow_no_ftfy, "padded_input_ids");
    // curly quotes, full-width forms, mojibake and ligatures: ftfy would normalise them first; CJK
    // ideographs: BasicTokenizer spaces them, ftfy mode and the fast tokenizer do not
    if (!c.modes_agree) assert.not.equal(ids, c.input_ids.slow_ftfy, "ftfy changes this prompt");
  });
}

test.run();
