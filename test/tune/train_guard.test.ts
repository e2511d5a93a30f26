// training that cannot go silently wrong: a diverging run stops with a named error and writes nothing
// non-finite; the output folder is checked before step 1; resume skips a damaged newest checkpoint;
// no temporaries are left after a run, and stale ones of killed runs are removed at the next start
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { spawnSync } from "node:child_process";
import { NumericalError, ConfigError } from "../../engine/errors.ts";
import { COMMIT_JOURNAL, isTempName } from "../../data/atomic.ts";
import { readSafetensors, writeSafetensors } from "../../data/safetensors.ts";
import { customise } from "../../tune/train.ts";
import { loadDelta } from "../../tune/delta.ts";
import { conceptFolder, tinyPipeline, tmpDir } from "./tiny.ts";

const concept = () => [
  { instance_prompt: "a <new1> square", class_prompt: "square", instance_data_dir: conceptFolder([1, 0, 0]) },
];

function walk(dir: string): string[] {
  return fs.readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return fs.statSync(p).isDirectory() ? [p, ...walk(p)] : [p];
  });
}

/** Every value of every safetensors file under `dir` is finite (the count of files checked). */
function allFinite(dir: string): number {
  const files = walk(dir).filter((f) => f.endsWith(".safetensors"));
  for (const f of files)
    for (const [k, t] of readSafetensors(f).tensors)
      assert.ok(t.data.every(Number.isFinite), `${f}: ${k} is not finite`);
  return files.length;
}

test("a diverging run (lr 1e6, 1e30, 1e300) stops with a NumericalError naming the step, and writes nothing non-finite", () => {
  for (const lr of [1e6, 1e30, 1e300]) {
    const out = tmpDir();
    const logs: string[] = [];
    let err: Error | null = null;
    try {
      customise(tinyPipeline(), {
        concepts: concept(),
        outputDir: out,
        maxTrainSteps: 40,
        learningRate: lr,
        checkpointingSteps: 2,
        seed: 1,
        log: (s) => logs.push(s),
      });
    } catch (e) {
      err = e as Error;
    }
    assert.ok(err instanceof NumericalError, `lr ${lr}: ${err}`);
    assert.match(
      err!.message,
      /training diverged at step \d+ of 40: (the loss is NaN|the gradient norm is|the weights of .* non-finite)/,
    );
    assert.match(err!.message, /Try a learning rate \(--lr\) 10 or more times lower/);
    assert.not.ok(fs.existsSync(path.join(out, "pytorch_custom_diffusion_weights.safetensors")), "no final delta");
    allFinite(out);
    // the newest checkpoint (if any) is a good one: it loads, and is finite
    const cks = fs.existsSync(path.join(out, "checkpoints")) ? fs.readdirSync(path.join(out, "checkpoints")) : [];
    for (const c of cks) loadDelta(path.join(out, "checkpoints", c));
    const step = Number(/at step (\d+)/.exec(err!.message)![1]);
    assert.ok(
      cks.every((c) => Number(c.split("-")[1]) < step),
      `checkpoints ${cks} are before step ${step}`,
    );
  }
});

test("loadDelta refuses a delta holding NaN (NumericalError naming the tensor)", () => {
  const dir = tmpDir();
  const w = new Float32Array(16).fill(0.5);
  w[3] = NaN;
  writeSafetensors(
    path.join(dir, "pytorch_custom_diffusion_weights.safetensors"),
    new Map([
      [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_custom_diffusion.weight",
        { shape: [4, 4], data: w },
      ],
    ]),
    { metadata: { format: "pt" } },
  );
  assert.throws(
    () => loadDelta(dir),
    (e: Error) =>
      e instanceof NumericalError &&
      /attn2\.to_k\.weight holds 1 non-finite value \(first NaN at index 3\)/.test(e.message),
  );
});

test("an output path under a file fails before step 1, naming the file", () => {
  const file = path.join(tmpDir(), "plain-file");
  fs.writeFileSync(file, "x");
  const logs: string[] = [];
  const t0 = performance.now();
  assert.throws(
    () =>
      customise(tinyPipeline(), {
        concepts: concept(),
        outputDir: path.join(file, "out"),
        maxTrainSteps: 5,
        log: (s) => logs.push(s),
      }),
    (e: Error) => e instanceof ConfigError && e.message.includes(`${file} is a file, not a folder`),
  );
  assert.not.ok(
    logs.some((l) => /^step |^data:/.test(l)),
    logs.join("\n"),
  );
  assert.ok(performance.now() - t0 < 2000);
});

test("a read-only output folder fails before step 1 (EROFS simulated: tests run as root, where permissions do not stop writes)", () => {
  const out = tmpDir();
  // the real file system call is replaced by one that fails as a read-only mount does, for this folder only
  const fsc = createRequire(import.meta.url)("node:fs") as typeof fs;
  const orig = fsc.writeFileSync;
  fsc.writeFileSync = ((p: fs.PathOrFileDescriptor, ...rest: unknown[]) => {
    if (typeof p === "string" && p.startsWith(out))
      throw Object.assign(new Error(`EROFS: read-only file system, open '${p}'`), { code: "EROFS" });
    return (orig as (...a: unknown[]) => void)(p, ...rest);
  }) as typeof fs.writeFileSync;
  syncBuiltinESMExports();
  const logs: string[] = [];
  try {
    assert.throws(
      () =>
        customise(tinyPipeline(), { concepts: concept(), outputDir: out, maxTrainSteps: 5, log: (s) => logs.push(s) }),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message === `output folder ${out} is not writable (EROFS: read-only file system); choose another folder`,
    );
  } finally {
    fsc.writeFileSync = orig;
    syncBuiltinESMExports();
  }
  assert.not.ok(
    logs.some((l) => /^step |^data:/.test(l)),
    logs.join("\n"),
  );
  // and without the simulation, where the process may not write (not root), a real read-only folder
  if (process.getuid?.() !== 0) {
    const ro = tmpDir();
    fs.chmodSync(ro, 0o555);
    assert.throws(
      () => customise(tinyPipeline(), { concepts: concept(), outputDir: ro, maxTrainSteps: 5, log: () => {} }),
      /is not writable \((EACCES|EROFS)/,
    );
    fs.chmodSync(ro, 0o755);
  }
});

test("an output folder on /proc is refused at once (a recursive mkdir loops there)", () => {
  const t0 = performance.now();
  assert.throws(
    () =>
      customise(tinyPipeline(), {
        concepts: concept(),
        outputDir: "/proc/self/cdiff-out/x",
        maxTrainSteps: 5,
        log: () => {},
      }),
    /\/proc.* is on a system file system/,
  );
  assert.ok(performance.now() - t0 < 2000);
});

test("no temporaries remain after a run with checkpoints; stale ones of a killed run are removed at the next start", () => {
  const out = tmpDir();
  const dead = Number(
    spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout,
  );
  fs.mkdirSync(path.join(out, "checkpoints"));
  const stale = [
    path.join(out, `.pytorch_custom_diffusion_weights.safetensors.${dead}.k2j4.tmp`),
    path.join(out, "checkpoints", `checkpoint-2.tmp-${dead}`),
    path.join(out, "checkpoints", `.checkpoint-4.${dead}.x9.tmp`),
  ];
  fs.writeFileSync(stale[0]!, "truncated");
  fs.mkdirSync(stale[1]!);
  fs.mkdirSync(stale[2]!);
  customise(tinyPipeline(), {
    concepts: concept(),
    outputDir: out,
    maxTrainSteps: 6,
    learningRate: 1e-3,
    checkpointingSteps: 2,
    log: () => {},
  });
  const left = walk(out).filter(
    (p) => isTempName(path.basename(p)) || path.basename(p) === COMMIT_JOURNAL || path.basename(p).startsWith("."),
  );
  assert.equal(left, []);
  assert.ok(allFinite(out) >= 2 + 2 * 3);
  assert.equal(fs.readdirSync(path.join(out, "checkpoints")).sort(), ["checkpoint-2", "checkpoint-4"]);
  assert.ok(fs.existsSync(path.join(out, "checkpoints", "checkpoint-4", "manifest.json")));
});

test("resume skips a damaged newest checkpoint (truncated state.json, missing optimizer file, bad field) and says so", () => {
  const dir = conceptFolder([0, 1, 0]);
  const spec = {
    concepts: [{ instance_prompt: "a <new1> square", class_prompt: "square", instance_data_dir: dir }],
    maxTrainSteps: 6,
    trainBatchSize: 2,
    learningRate: 5e-3,
    seed: 3,
    checkpointingSteps: 2,
    log: () => {},
  };
  const full = customise(tinyPipeline(), { ...spec, outputDir: tmpDir() });
  const damages: [string, (ck: string) => void, RegExp][] = [
    [
      "truncated state.json",
      (ck) => fs.truncateSync(path.join(ck, "state.json"), 10),
      /state\.json is \d+ bytes, the manifest says \d+ \(truncated\?\)/,
    ],
    [
      "missing optimizer file",
      (ck) => fs.rmSync(path.join(ck, "optimizer.safetensors")),
      /optimizer\.safetensors is missing/,
    ],
    [
      "a bad field (no manifest, as older checkpoints)",
      (ck) => {
        fs.rmSync(path.join(ck, "manifest.json"));
        const st = JSON.parse(fs.readFileSync(path.join(ck, "state.json"), "utf8")) as Record<string, unknown>;
        fs.writeFileSync(path.join(ck, "state.json"), JSON.stringify({ ...st, cursor: "x" }));
      },
      /"cursor" should be an index into order/,
    ],
  ];
  for (const [what, damage, reason] of damages) {
    const out = tmpDir();
    customise(tinyPipeline(), { ...spec, outputDir: out, stopAfter: 4 });
    damage(path.join(out, "checkpoints", "checkpoint-4"));
    const logs: string[] = [];
    const r = customise(tinyPipeline(), { ...spec, outputDir: out, resume: true, log: (s) => logs.push(s) });
    const note = logs.find((l) => l.startsWith("resume: skipped damaged checkpoint-4"));
    assert.ok(note, `${what}: ${logs.join("\n")}`);
    assert.match(note!, reason);
    assert.match(note!, /resuming from the newest intact checkpoint, checkpoint-2/);
    assert.ok(logs.some((l) => /resumed from .*checkpoint-2 at step 2/.test(l)));
    // continuing from step 2 reproduces the uninterrupted run exactly
    assert.equal(r.losses, full.losses, what);
    for (const [k, v] of full.delta.unet) assert.equal(Array.from(r.delta.unet.get(k)!.data), Array.from(v.data), k);
  }
  // none intact: an error listing each one
  const out = tmpDir();
  customise(tinyPipeline(), { ...spec, outputDir: out, stopAfter: 4 });
  for (const c of ["checkpoint-2", "checkpoint-4"])
    fs.writeFileSync(path.join(out, "checkpoints", c, "state.json"), "{");
  assert.throws(
    () => customise(tinyPipeline(), { ...spec, outputDir: out, resume: true }),
    /no intact checkpoint in .*checkpoint-4 \(.*\); checkpoint-2 \(.*\)/,
  );
});

test.run();
