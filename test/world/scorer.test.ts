// The shipped world scorer: its files, image->caption accuracy over the training classes, own caption
// above other captions, the two image entry points agreeing, text encoding, and retrieval over the world corpus
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Generator } from "../../engine/index.ts";
import { chwToImage, resize } from "../../data/images.ts";
import { readSafetensorsHeader } from "../../data/safetensors.ts";
import { cosine } from "../../tune/evaluate.ts";
import { readCorpus, retrieveRegularisation } from "../../tune/retrieve.ts";
import { loadHeldoutConcepts, loadWorldDataset } from "../../world/dataset.ts";
import { WORLD_SCORER_DIR, buildWorldCorpus, encodeWorldText, loadWorldScorer } from "../../world/scorer.ts";
import { measureWorldScorer } from "../../world/train_scorer.ts";

const ds = loadWorldDataset();
const scorer = loadWorldScorer();
const captions = ds.classes.map((c) => c.caption);

test("shipped as a CLIPModel folder: config.json, F16 model.safetensors under 1 MB, tokenizer/, scorer.json", () => {
  const cfg = JSON.parse(fs.readFileSync(path.join(WORLD_SCORER_DIR, "config.json"), "utf8"));
  assert.is(cfg.model_type, "clip");
  assert.is(cfg.vision_config.image_size, 16);
  const file = path.join(WORLD_SCORER_DIR, "model.safetensors");
  assert.ok(fs.statSync(file).size < 1 << 20, `${fs.statSync(file).size} bytes`);
  const h = readSafetensorsHeader(file);
  assert.ok([...h.tensors.values()].every((t) => t.dtype === "F16"));
  assert.ok(fs.existsSync(path.join(WORLD_SCORER_DIR, "tokenizer", "vocab.json")));
  const rec = JSON.parse(fs.readFileSync(path.join(WORLD_SCORER_DIR, "scorer.json"), "utf8"));
  assert.ok(rec.steps > 0 && rec.seconds > 0 && typeof rec.seed === "number");
  assert.ok(rec.quality.imageToCaptionTop1 > 0);
});

test("image -> caption top-1 over the 123 training classes is well above chance (0.8%)", () => {
  const img = scorer.imageFeaturesCHW(ds.images);
  const txt = scorer.textFeatures(captions);
  let hits = 0;
  img.forEach((f, i) => {
    const s = txt.map((t) => cosine(f, t));
    if (s.indexOf(Math.max(...s)) === ds.labels[i]) hits++;
  });
  const acc = hits / ds.images.length;
  const recorded = JSON.parse(fs.readFileSync(path.join(WORLD_SCORER_DIR, "scorer.json"), "utf8")).quality
    .imageToCaptionTop1;
  assert.ok(acc >= 0.9, `top-1 ${acc}`); // measured 0.996 (245 of 246)
  assert.ok(Math.abs(acc - recorded) < 0.02, `measured ${acc}, scorer.json says ${recorded}`);
});

test("a class image scores higher with its own caption than with a random other caption", () => {
  const g = new Generator(0);
  const img = scorer.imageFeaturesCHW(ds.images);
  const txt = scorer.textFeatures(captions);
  let diff = 0,
    wins = 0;
  img.forEach((f, i) => {
    let j = g.randint(0, captions.length - 1);
    if (j >= ds.labels[i]!) j++;
    const d = cosine(f, txt[ds.labels[i]!]!) - cosine(f, txt[j]!);
    diff += d;
    if (d > 0) wins++;
  });
  assert.ok(diff / img.length > 0.5, `mean margin ${diff / img.length}`);
  assert.ok(wins / img.length > 0.95, `wins ${wins / img.length}`);
});

test("the FeatureScorer entry point (HWC [0, 1] images) equals the CHW [-1, 1] one, and resizes other sizes", () => {
  const some = ds.images.slice(0, 6);
  const a = scorer.imageFeaturesCHW(some);
  const b = scorer.imageFeatures(some.map((c) => chwToImage(c, 3, 16, 16)));
  a.forEach((f, i) => assert.ok(cosine(f, b[i]!) > 0.99999, `image ${i}`));
  const big = scorer.imageFeatures(some.map((c) => resize(chwToImage(c, 3, 16, 16), 64, 64, "nearest")));
  big.forEach((f, i) => assert.ok(cosine(f, a[i]!) > 0.8, `64 px image ${i}: ${cosine(f, a[i]!)}`));
});

test("text encoding: words outside the world's vocabulary are dropped, not read as end-of-text", () => {
  const tok = scorer.tokenizer;
  assert.equal(encodeWorldText(tok, "photo of a zzqx horse face"), encodeWorldText(tok, "photo of a horse face"));
  const ids = encodeWorldText(tok, "horse face");
  assert.is(ids.length, 16);
  assert.is(ids[0], tok.bosTokenId);
  assert.is(ids.indexOf(tok.eosTokenId), 3);
});

test("the measured quality matches scorer.json (held-out concepts included)", () => {
  const q = measureWorldScorer(scorer, ds, loadHeldoutConcepts(ds));
  const rec = JSON.parse(fs.readFileSync(path.join(WORLD_SCORER_DIR, "scorer.json"), "utf8")).quality;
  assert.ok(Math.abs(q.imageToCaptionTop1 - rec.imageToCaptionTop1) < 0.02);
  assert.is(q.heldout.length, 8);
  assert.equal(
    q.heldout.map((h) => h.concept),
    rec.heldout.map((h: { concept: string }) => h.concept),
  );
  assert.ok(q.ownCaptionCosine > q.otherCaptionCosine + 0.5);
});

test("retrieval over the world corpus: 'horse face' returns the horse face images first, above 0.85", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "world-corpus-"));
  const c = buildWorldCorpus(dir);
  assert.is(c.count, ds.images.length);
  assert.is(readCorpus(dir).length, ds.images.length);
  const r = retrieveRegularisation({
    corpus: dir,
    classPrompt: "horse face",
    textFeatures: (t) => scorer.textFeatures(t),
    out: path.join(dir, "reg"),
    log: () => {},
  });
  assert.equal(
    r.kept.slice(0, 2).map((e) => e.caption),
    ["horse face", "horse face"],
  );
  assert.ok(r.kept.slice(0, 2).every((e) => /horse-face/.test(e.image)));
  assert.ok(r.passed < 20, `${r.passed} captions passed: the threshold should be selective`);
  // with templated captions the class's own lines are still above the threshold
  const dirT = fs.mkdtempSync(path.join(os.tmpdir(), "world-corpus-"));
  buildWorldCorpus(dirT, { templates: true });
  const rT = retrieveRegularisation({
    corpus: dirT,
    classPrompt: "horse face",
    textFeatures: (t) => scorer.textFeatures(t),
    out: path.join(dirT, "reg"),
    log: () => {},
  });
  assert.ok(rT.kept.filter((e) => /horse-face/.test(e.image)).length === 2);
});

test.run();
