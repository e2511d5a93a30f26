// the command line end to end on a tiny saved pipeline: customise writes a delta, sample applies it
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { main } from "../../cli/main.ts";
import { readImage } from "../../data/images.ts";
import { conceptFolder, tinyPipeline, tmpDir } from "../tune/tiny.ts";

test("customise then sample with the delta, from a saved diffusers-layout folder", () => {
  const model = path.join(tmpDir(), "model");
  tinyPipeline().save(model);
  const out = path.join(tmpDir(), "delta");
  const logs: string[] = [];
  const orig = console.log;
  console.log = (s: string) => logs.push(String(s));
  try {
    assert.is(
      main([
        "customise",
        "--model",
        model,
        "--images",
        conceptFolder([1, 0, 0]),
        "--prompt",
        "photo of a <new1> square",
        "--class",
        "square",
        "--out",
        out,
        "--steps",
        "3",
        "--lr",
        "1e-3",
      ]),
      0,
    );
  } finally {
    console.log = orig;
  }
  assert.ok(
    logs.some((l) => /^step 3\/3 /.test(l)),
    "progress lines are printed",
  );
  assert.ok(fs.existsSync(path.join(out, "pytorch_custom_diffusion_weights.safetensors")));
  assert.ok(fs.existsSync(path.join(out, "<new1>.safetensors")));
  const png = path.join(tmpDir(), "s.png");
  const err = process.stderr.write;
  process.stderr.write = () => true;
  try {
    assert.is(
      main([
        "sample",
        "--model",
        model,
        "--delta",
        out,
        "--prompt",
        "photo of a <new1> square",
        "--steps",
        "2",
        "--guidance",
        "1",
        "--n",
        "2",
        "--out",
        png,
      ]),
      0,
    );
  } finally {
    process.stderr.write = err;
  }
  const img = readImage(png);
  assert.is(img.height, 8 + 2 * 2); // grid padding around the row
  assert.is(img.width, 8 * 2 + 2 * 3);
});

test("compress, stack and analyze from the command line", () => {
  const model = path.join(tmpDir(), "model");
  tinyPipeline().save(model);
  const quiet = console.log;
  const lines: string[] = [];
  console.log = (s: string) => lines.push(String(s));
  try {
    const a = path.join(tmpDir(), "a"),
      b = path.join(tmpDir(), "b");
    assert.is(
      main([
        "customise",
        "--model",
        model,
        "--images",
        conceptFolder([1, 0, 0]),
        "--prompt",
        "a <new1> square",
        "--class",
        "square",
        "--out",
        a,
        "--steps",
        "2",
        "--lr",
        "1e-2",
      ]),
      0,
    );
    assert.is(
      main([
        "customise",
        "--model",
        model,
        "--images",
        conceptFolder([0, 0, 1]),
        "--prompt",
        "a <new1> square",
        "--class",
        "square",
        "--out",
        b,
        "--steps",
        "2",
        "--lr",
        "1e-2",
      ]),
      0,
    );
    const st = path.join(tmpDir(), "stacked");
    assert.is(main(["stack", "--model", model, "--delta", a, "--delta", b, "--out", st]), 0);
    assert.ok(
      lines.some((l) => l.includes("<new1> -> <new2>")),
      "the second delta's token is renumbered",
    );
    assert.ok(fs.existsSync(path.join(st, "<new2>.safetensors")));
    const c = path.join(tmpDir(), "compressed");
    assert.is(main(["compress", "--model", model, "--delta", a, "--rank", "2", "--out", c]), 0);
    const an = path.join(tmpDir(), "analysis");
    assert.is(main(["analyze", "--model", model, "--delta", a, "--out", an]), 0);
    assert.ok(fs.readdirSync(an).some((f) => f.endsWith(".png")));
    // several deltas at sampling time are stacked
    const png = path.join(tmpDir(), "s.png");
    const err = process.stderr.write;
    process.stderr.write = () => true;
    try {
      assert.is(
        main([
          "sample",
          "--model",
          model,
          "--delta",
          a,
          "--delta",
          c,
          "--prompt",
          "a <new1> square and a <new2> square",
          "--steps",
          "2",
          "--guidance",
          "1",
          "--out",
          png,
        ]),
        0,
      );
    } finally {
      process.stderr.write = err;
    }
  } finally {
    console.log = quiet;
  }
});

test("customise with generated regularisation images reuses its cache on a second run", () => {
  const model = path.join(tmpDir(), "model");
  tinyPipeline().save(model);
  const cache = tmpDir();
  const lines: string[] = [];
  const orig = console.log;
  console.log = (s: string) => lines.push(String(s));
  try {
    const args = [
      "customise",
      "--model",
      model,
      "--images",
      conceptFolder([1, 0, 0]),
      "--prompt",
      "a <new1> square",
      "--class",
      "square",
      "--steps",
      "1",
      "--class-generate",
      "2",
      "--guidance",
      "1",
      "--reg-cache",
      cache,
    ];
    assert.is(main([...args, "--out", path.join(tmpDir(), "o1")]), 0);
    assert.ok(
      lines.some((l) => /2 regularisation image/.test(l)),
      "the generated images are used",
    );
    assert.is(main([...args, "--out", path.join(tmpDir(), "o2")]), 0);
    assert.ok(
      lines.some((l) => /reusing 2 cached images/.test(l)),
      lines.join("\n"),
    );
  } finally {
    console.log = orig;
  }
});

test("bad arguments give a readable error and a non-zero status", () => {
  const errs: string[] = [];
  const orig = console.error;
  console.error = (s: string) => errs.push(String(s));
  try {
    assert.is(main(["sample", "--prompt", "x", "--out", "/tmp/x.png"]), 2); // a usage error
    assert.is(main(["frobnicate"]), 2);
    assert.is(
      main([
        "customise",
        "--model",
        "/nonexistent",
        "--images",
        "/tmp",
        "--prompt",
        "p",
        "--class",
        "c",
        "--out",
        "/tmp/o",
        "--steps",
        "x",
      ]),
      2,
    );
  } finally {
    console.error = orig;
  }
  assert.match(errs[0], /sample needs --model DIR/);
  assert.match(errs[1], /unknown command "frobnicate"/);
  assert.match(errs[2], /--steps must be an integer of at least 1, got "x"/);
});

test.run();
