// every misuse of the command line gets one line naming the flag, file or value and what is accepted,
// with exit status 2 for usage errors and 1 for failures (table-driven); --help per command
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { helpText, main } from "../../cli/main.ts";
import { writeSafetensors, readSafetensors } from "../../data/safetensors.ts";
import { customise } from "../../tune/train.ts";
import { conceptFolder, tinyPipeline, tmpDir } from "../tune/tiny.ts";

interface Run {
  status: number;
  errors: string[];
  warnings: string[];
  out: string[];
}

function run(argv: string[]): Run {
  const err: string[] = [],
    out: string[] = [];
  const [oe, ol, ow] = [console.error, console.log, process.stderr.write];
  console.error = (...a: unknown[]) => err.push(a.map(String).join(" "));
  console.log = (...a: unknown[]) => out.push(a.map(String).join(" "));
  process.stderr.write = (() => true) as typeof process.stderr.write; // sampling progress
  let status: number;
  try {
    status = main(argv);
  } finally {
    [console.error, console.log, process.stderr.write] = [oe, ol, ow];
  }
  const lines = err.flatMap((e) => e.split("\n"));
  return {
    status,
    errors: lines.filter((l) => !/: warning: /.test(l)),
    warnings: lines.filter((l) => /: warning: /.test(l)),
    out,
  };
}

// a tiny saved model, a trained delta, and broken copies of it
const root = tmpDir();
const model = path.join(root, "model");
tinyPipeline().save(model);
const images = conceptFolder([1, 0, 0]);
const good = path.join(root, "good");
customise(tinyPipeline(), {
  concepts: [{ instance_prompt: "a <new1> square", class_prompt: "square", instance_data_dir: images }],
  outputDir: good,
  maxTrainSteps: 2,
  learningRate: 1e-3,
  log: () => {},
});
const copy = (name: string) => {
  const d = path.join(root, name);
  fs.cpSync(good, d, { recursive: true });
  return d;
};
const nan = copy("nan");
{
  const f = path.join(nan, "pytorch_custom_diffusion_weights.safetensors");
  const { tensors, metadata } = readSafetensors(f);
  const first = [...tensors.values()][0]!;
  first.data[5] = NaN;
  writeSafetensors(f, tensors, { metadata });
}
const nanUnet = path.join(root, "nan-unet");
tinyPipeline().unet.save(nanUnet);
{
  const f = path.join(
    nanUnet,
    fs.readdirSync(nanUnet).find((x) => x.endsWith(".safetensors"))!,
  );
  const { tensors, metadata } = readSafetensors(f);
  [...tensors.values()][3]!.data[0] = Infinity;
  writeSafetensors(f, tensors, { metadata });
}
const truncated = copy("truncated");
fs.truncateSync(path.join(truncated, "<new1>.safetensors"), 20);
const badJson = path.join(root, "bad.json");
fs.writeFileSync(badJson, '[{"instance_prompt": "a <new1> square", ');
const aFile = path.join(root, "a-file");
fs.writeFileSync(aFile, "x");
const captions = path.join(root, "captions.txt");
fs.writeFileSync(captions, "a square\na circle\n");
let n = 0;
const fresh = () => path.join(root, `out${n++}`);
const C = () => [
  "customise",
  "--model",
  model,
  "--images",
  images,
  "--prompt",
  "a <new1> square",
  "--class",
  "square",
  "--out",
  fresh(),
];
const S = (...more: string[]) => [
  "sample",
  "--model",
  model,
  "--prompt",
  "a square",
  "--steps",
  "1",
  "--guidance",
  "1",
  "--out",
  path.join(fresh(), "s.png"),
  ...more,
];

const CASES: [string, string[], number, RegExp][] = [
  [
    "negative value after a flag",
    [...C(), "--steps", "-1"],
    2,
    /^cdiff customise: --steps must be an integer of at least 1, got "-1"$/,
  ],
  ["flag with no value", [...C(), "--steps"], 2, /^cdiff customise: --steps needs a value \(N\), and none follows it$/],
  [
    "flag followed by a flag",
    [...C(), "--lr", "--steps", "3"],
    2,
    /^cdiff customise: --lr needs a value \(X\), got the option --steps$/,
  ],
  [
    "unknown flag, with a suggestion",
    [...C(), "--stpes", "3"],
    2,
    /^cdiff customise: unknown option --stpes for customise; did you mean --steps\? \(see cdiff customise --help\)$/,
  ],
  [
    "single-dash flag",
    [...C(), "-steps", "3"],
    2,
    /^cdiff customise: unexpected argument "-steps" \(options start with two dashes: --steps\)/,
  ],
  [
    "value given to a switch",
    [...C(), "--noaug=1"],
    2,
    /^cdiff customise: --noaug is a switch and takes no value, got "1"$/,
  ],
  [
    "flag given twice",
    [...C(), "--steps", "3", "--steps", "4"],
    2,
    /^cdiff customise: --steps is given twice \("3" and "4"\); give it once$/,
  ],
  ["stray argument", ["sample", "extra"], 2, /^cdiff sample: unexpected argument "extra"; see cdiff sample --help$/],
  [
    "broken --concepts-list JSON names the file",
    ["customise", "--model", model, "--concepts-list", badJson, "--out", fresh()],
    1,
    new RegExp(
      `^cdiff customise: ConfigError: --concepts-list ${badJson.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: not valid JSON \\(.+\\)$`,
    ),
  ],
  [
    "missing --concepts-list file",
    ["customise", "--model", model, "--concepts-list", path.join(root, "none.json"), "--out", fresh()],
    1,
    /--concepts-list .*none\.json: cannot read it \(ENOENT\)$/,
  ],
  [
    "--concepts-list with --images",
    ["customise", "--model", model, "--concepts-list", badJson, "--images", images, "--out", fresh()],
    2,
    /--images and --concepts-list exclude each other/,
  ],
  ["--batch 0", [...C(), "--batch", "0"], 2, /^cdiff customise: --batch must be an integer from 1 to 1024, got "0"$/],
  ["--n 0", S("--n", "0"), 2, /^cdiff sample: --n must be an integer from 1 to 64, got "0"$/],
  [
    "--resolution 0",
    [...C(), "--resolution", "0"],
    2,
    /^cdiff customise: --resolution must be an integer from 8 to 4096, got "0"$/,
  ],
  [
    "--resolution 100000",
    [...C(), "--resolution", "100000"],
    2,
    /^cdiff customise: --resolution must be an integer from 8 to 4096, got "100000"$/,
  ],
  ["--height not a multiple", S("--height", "4097"), 2, /--height must be an integer from 8 to 4096/],
  ["--steps 0", [...C(), "--steps", "0"], 2, /^cdiff customise: --steps must be an integer of at least 1, got "0"$/],
  ["--steps 1.5", [...C(), "--steps=1.5"], 2, /--steps must be an integer of at least 1, got "1\.5"/],
  ["--lr 0", [...C(), "--lr", "0"], 2, /^cdiff customise: --lr must be a number above 0, got 0$/],
  ["--lr not a number", [...C(), "--lr", "fast"], 2, /^cdiff customise: --lr must be a number above 0, got "fast"$/],
  ["--seed -5", [...C(), "--seed", "-5"], 2, /--seed must be a non-negative integer, got "-5"/],
  ["--eta 2", S("--eta", "2"), 2, /--eta must be a number from 0 to 1, got 2/],
  [
    "--weights-dtype unknown",
    [...C(), "--weights-dtype", "fp8"],
    2,
    /--weights-dtype must be one of f32, bf16, f16, got "fp8"/,
  ],
  [
    "--freeze-model full with half weights",
    [...C(), "--freeze-model", "full", "--weights-dtype", "bf16"],
    2,
    /--freeze-model full trains every weight: it needs --weights-dtype f32/,
  ],
  [
    "--freeze-model unknown",
    [...C(), "--freeze-model", "crossattn_k"],
    2,
    /--freeze-model must be one of crossattn_kv, crossattn, full, none, got "crossattn_k" \(did you mean crossattn_kv\?\)/,
  ],
  ["--scheduler unknown", S("--scheduler", "euler"), 2, /--scheduler must be one of ddim, ddpm, got "euler"/],
  [
    "missing --model",
    ["sample", "--prompt", "x", "--out", path.join(fresh(), "x.png")],
    2,
    /^cdiff sample: sample needs --model DIR/,
  ],
  [
    "missing --prompt",
    ["sample", "--model", model, "--out", path.join(fresh(), "x.png")],
    2,
    /^cdiff sample: sample needs --prompt TEXT$/,
  ],
  [
    "nonexistent --model",
    ["sample", "--model", path.join(root, "nope"), "--prompt", "x", "--out", path.join(fresh(), "x.png")],
    1,
    /^cdiff sample: ConfigError: --model .*nope: no such folder$/,
  ],
  [
    "--ratio with --rank",
    ["compress", "--model", model, "--delta", good, "--ratio", "0.5", "--rank", "2", "--out", fresh()],
    2,
    /--ratio and --rank exclude each other/,
  ],
  [
    "--ratio 0",
    ["compress", "--model", model, "--delta", good, "--ratio", "0", "--out", fresh()],
    2,
    /--ratio must be a number from 0 \(exclusive\) to 1, got 0/,
  ],
  [
    "same delta twice to stack",
    ["stack", "--model", model, "--delta", good, "--delta", good, "--out", fresh()],
    2,
    /^cdiff stack: --delta .*good is given twice; a delta stacked with itself doubles its change; give each delta once$/,
  ],
  [
    "same delta twice to sample (another spelling)",
    S("--delta", good, "--delta", `${good}/`),
    2,
    /^cdiff sample: --delta .*good\/ is given twice \(also as .*good\)/,
  ],
  [
    "same delta twice to merge",
    [
      "merge",
      "--model",
      model,
      "--delta",
      good,
      "--class",
      "a",
      "--delta",
      good,
      "--class",
      "b",
      "--captions",
      captions,
      "--out",
      fresh(),
    ],
    2,
    /--delta .* is given twice/,
  ],
  [
    "truncated <new1>.safetensors is not called a pickle",
    S("--delta", truncated),
    1,
    /^cdiff sample: FormatError: safetensors: .*<new1>\.safetensors: .*(truncated|shorter)/,
  ],
  [
    "non-finite delta refused by sample",
    S("--delta", nan),
    1,
    /^cdiff sample: NumericalError: delta .*nan: tensor .* holds 1 non-finite value \(first NaN at index 5\)/,
  ],
  [
    "non-finite delta refused by stack",
    ["stack", "--model", model, "--delta", nan, "--delta", good, "--out", fresh()],
    1,
    /^cdiff stack: NumericalError: delta .*nan: /,
  ],
  [
    "non-finite delta refused by merge",
    [
      "merge",
      "--model",
      model,
      "--delta",
      nan,
      "--class",
      "a",
      "--delta",
      good,
      "--class",
      "b",
      "--captions",
      captions,
      "--out",
      fresh(),
    ],
    1,
    /^cdiff merge: NumericalError: delta .*nan: /,
  ],
  [
    "non-finite delta refused by analyze",
    ["analyze", "--model", model, "--delta", nan, "--out", fresh()],
    1,
    /^cdiff analyze: NumericalError: delta .*nan: /,
  ],
  [
    "non-finite model refused by analyze --tuned",
    ["analyze", "--model", model, "--tuned", nanUnet, "--out", fresh()],
    1,
    /^cdiff analyze: NumericalError: --tuned .*nan-unet: .* holds 1 non-finite value \(first Infinity at index 0\)/,
  ],
  [
    "non-finite delta refused by compress",
    ["compress", "--model", model, "--delta", nan, "--out", fresh()],
    1,
    /^cdiff compress: NumericalError: delta .*nan: /,
  ],
  [
    "--out on /proc",
    [...C().slice(0, -2), "--out", "/proc/self/cdiff/out"],
    1,
    /^cdiff customise: ConfigError: --out \/proc\/self\/cdiff\/out: .* is on a system file system/,
  ],
  [
    "sample --out on /proc",
    ["sample", "--model", model, "--prompt", "x", "--out", "/proc/self/x/s.png"],
    1,
    /system file system/,
  ],
  [
    "--out under a file",
    [...C().slice(0, -2), "--out", path.join(aFile, "out")],
    1,
    /^cdiff customise: ConfigError: --out .*a-file\/out: .*a-file is a file, not a folder$/,
  ],
  [
    "sample --out is a folder",
    ["sample", "--model", model, "--prompt", "x", "--out", root],
    1,
    /--out .* is a folder; give a file name/,
  ],
  [
    "diverging training (--lr 1e6)",
    [...C(), "--lr", "1e6", "--steps", "40"],
    1,
    /^cdiff customise: NumericalError: customise: training diverged at step \d+ of 40: .*Try a learning rate \(--lr\) 10 or more times lower/,
  ],
  [
    "unknown --backend after the command",
    S("--backend", "nope"),
    2,
    /^cdiff sample: --backend must be one of cpu, .*got "nope"$/,
  ],
  [
    "unknown --backend before the command",
    ["--backend", "nope", ...C()],
    2,
    /^cdiff customise: --backend must be one of cpu, .*got "nope"$/,
  ],
  ["unknown command, with a suggestion", ["sampel"], 2, /^cdiff: unknown command "sampel"; did you mean sample\?/],
  ["help for an unknown command", ["help", "nope"], 2, /^cdiff help: unknown command "nope"/],
];

test("each misuse: one error line naming the flag, file or value; exit 2 for usage, 1 for failures", () => {
  const failures: string[] = [];
  for (const [name, argv, status, re] of CASES) {
    const t0 = performance.now();
    const r = run(argv);
    const ms = performance.now() - t0;
    if (r.status !== status) failures.push(`${name}: status ${r.status}, want ${status}: ${r.errors.join(" | ")}`);
    else if (r.errors.length !== 1) failures.push(`${name}: ${r.errors.length} error lines: ${r.errors.join(" | ")}`);
    else if (!re.test(r.errors[0]!)) failures.push(`${name}: "${r.errors[0]}" does not match ${re}`);
    else if (/pickle|SyntaxError|TypeError|RangeError|at \w+ \(/.test(r.errors[0]!))
      failures.push(`${name}: a raw error: ${r.errors[0]}`);
    if (status === 2 && ms > 1000)
      failures.push(`${name}: a usage error took ${ms.toFixed(0)} ms (it should be found before any work)`);
  }
  assert.equal(failures, []);
});

test("warnings: a very large --lr; a prompt with <new1> but no --delta; a token no delta defines", () => {
  const lr = run([...C(), "--lr", "1e6", "--steps", "40"]);
  assert.ok(
    lr.warnings.some((w) =>
      /^cdiff customise: warning: --lr 1e6 gives a learning rate of 1\.0e\+6, far above the usual 1e-6 to 1e-3/.test(w),
    ),
    lr.warnings.join("\n"),
  );
  const noDelta = run(S("--prompt", "a <new1> square"));
  assert.is(noDelta.status, 0, noDelta.errors.join("\n"));
  assert.ok(
    noDelta.warnings.some((w) =>
      w.includes('--prompt "a <new1> square" mentions <new1>, but no --delta is given, so it is read as plain text'),
    ),
    noDelta.warnings.join("\n"),
  );
  assert.not.ok(
    noDelta.warnings.some((w) => w.includes('"a square"')),
    "a prompt without tokens is not warned about",
  );
  const other = run(S("--delta", good, "--prompt", "a <new2> square"));
  assert.is(other.status, 0, other.errors.join("\n"));
  assert.ok(
    other.warnings.some((w) => w.includes("mentions <new2>, which no --delta defines (they define <new1>)")),
    other.warnings.join("\n"),
  );
  const fine = run(S("--delta", good, "--prompt", "a <new1> square"));
  assert.equal([fine.status, fine.warnings], [0, []]);
});

test("--backend NAME before or after the command word sets the engine's backend; twice is a misuse", () => {
  for (const argv of [
    ["--backend", "cpu", ...S()],
    ["--backend=cpu", ...S()],
    [...S(), "--backend", "cpu"],
  ]) {
    const r = run(argv);
    assert.is(r.status, 0, `${argv.join(" ")}: ${r.errors.join("\n")}`);
  }
  const twice = run(["--backend", "cpu", ...S("--backend", "cpu")]);
  assert.is(twice.status, 2);
  assert.match(twice.errors[0]!, /^cdiff sample: --backend is given twice/);
  assert.match(helpText("sample"), /--backend NAME/);
});

test("--help for every command lists its options; cdiff help <command> too", () => {
  for (const cmd of ["customise", "sample", "merge", "compress", "stack", "analyze", "eval"]) {
    const r = run([cmd, "--help"]);
    assert.is(r.status, 0, cmd);
    const text = r.out.join("\n");
    assert.ok(text.startsWith(`usage: cdiff ${cmd} `), text.slice(0, 80));
    assert.match(text, /\n {2}--help +this help/);
    assert.is(text, helpText(cmd));
    assert.equal(run(["help", cmd]).out, r.out);
  }
  const c = helpText("customise");
  for (const flag of ["--steps N", "--batch N", "--lr X", "--resolution N", "--max-image-megapixels X", "--resume"])
    assert.ok(c.includes(flag), flag);
  assert.match(helpText(), /Exit status: 0 done, 1 failed .*, 2 misuse of the command line/);
});

test.run();
