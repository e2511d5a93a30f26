// a delta folder changes as one unit: a writer killed (SIGKILL) at each of its write points leaves the
// old delta or the new one, never a mix; no temporaries after success; stale ones are cleaned
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { COMMIT_JOURNAL, cleanStaleTemps, committedPath, crashHooks, isTempName } from "../../data/atomic.ts";
import { loadDelta, saveDelta } from "../../tune/delta.ts";
import { deltaOf } from "./children/deltas.ts";
import { tmpDir } from "./tiny.ts";

const CHILD = fileURLToPath(new URL("./children/delta_writer.ts", import.meta.url));

function write(dir: string, which: "A" | "B"): void {
  const { delta, config } = deltaOf(which);
  saveDelta(dir, delta, {}, { json: { "custom_diffusion_config.json": config } });
}

/** "A", "B", "none" (no delta), or a description of the mix. */
function classify(dir: string): string {
  let d;
  try {
    d = loadDelta(dir);
  } catch (e) {
    if (/has no pytorch_custom_diffusion_weights/.test((e as Error).message))
      return fs.readdirSync(dir).some((n) => !isTempName(n)) ? "mix: files without weights" : "none";
    return `unreadable: ${(e as Error).message}`;
  }
  const cfgPath = committedPath(dir, "custom_diffusion_config.json");
  const cfg = cfgPath ? (JSON.parse(fs.readFileSync(cfgPath, "utf8")) as { run: string }).run : "?";
  const vals = [...d.unet.values()].map((t) => t.data[0]);
  const toks = [...d.tokens.keys()].join(",");
  const fp = d.baseFingerprint;
  if (
    cfg === "A" &&
    fp === "fp-A" &&
    vals.join() === "1,1.100000023841858" &&
    toks === "<new1>,<new2>" &&
    d.tokens.get("<new1>")![0] === 1
  )
    return "A";
  if (
    cfg === "B" &&
    fp === "fp-B" &&
    vals.join() === "2,2.0999999046325684" &&
    toks === "<new1>" &&
    d.tokens.get("<new1>")![0] === 2
  )
    return "B";
  return `mix: config ${cfg}, fingerprint ${fp}, values ${vals}, tokens ${toks}`;
}

function tempsIn(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => isTempName(n) || n === COMMIT_JOURNAL);
}

/** Every point at which the writer can be interrupted, in order (recorded in this process). */
function writePoints(intoExisting: boolean): string[] {
  const dir = tmpDir();
  if (intoExisting) write(dir, "A");
  const points: string[] = [];
  crashHooks.trace = (p) => points.push(p);
  try {
    write(dir, "B");
  } finally {
    delete crashHooks.trace;
  }
  return points;
}

function killAt(dir: string, point: string): void {
  const r = spawnSync(process.execPath, ["--import", "tsx", CHILD, dir, "B"], {
    env: { ...process.env, CDIFF_TEST_CHILD: "delta-writer", CDIFF_CRASH_AT: point },
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.is(
    r.signal,
    "SIGKILL",
    `the writer should have been killed at ${point} (status ${r.status}, ${r.stderr.slice(-500)})`,
  );
  assert.not.ok(r.stdout.includes("written"), point);
}

test("a writer killed at each write point into a folder holding a delta leaves the old delta or the new one", () => {
  const points = writePoints(true);
  // three temporaries, the journal, three renames, the old <new2> token removed
  for (const p of [
    "commit:temp:pytorch_custom_diffusion_weights.safetensors",
    "commit:temp:<new1>.safetensors",
    "commit:temp:custom_diffusion_config.json",
    "commit:journal",
    "commit:rename:<new1>.safetensors",
    "commit:remove:<new2>.safetensors",
    "commit:done",
  ]) {
    assert.ok(points.includes(p), `${p} among ${points.join(" ")}`);
  }
  const journal = points.indexOf("commit:journal");
  for (const [i, point] of points.entries()) {
    const dir = tmpDir();
    write(dir, "A");
    killAt(dir, point);
    const want = i < journal ? "A" : "B";
    assert.ok(
      tempsIn(dir).length > 0 || point === "commit:done" || i >= journal,
      `${point}: the kill should leave temporaries or a journal`,
    );
    assert.is(classify(dir), want, `killed at ${point}`);
    // the next writer (or a start in the folder) cleans up: no temporaries, no journal, a readable delta
    cleanStaleTemps(dir);
    assert.equal(tempsIn(dir), [], `${point}: ${tempsIn(dir).join(", ")}`);
    assert.is(classify(dir), want, `after cleaning, killed at ${point}`);
    if (want === "B")
      assert.not.ok(
        fs.existsSync(path.join(dir, "<new2>.safetensors")),
        "the old token file is gone with the old delta",
      );
    write(dir, "A");
    assert.is(classify(dir), "A");
    assert.equal(tempsIn(dir), []);
  }
});

test("a writer killed while writing into a new folder leaves no delta or the whole new one", () => {
  const points = writePoints(false);
  const journal = points.indexOf("commit:journal");
  for (const point of [points[0]!, points[journal - 1]!, "commit:journal", points[journal + 1]!]) {
    const dir = tmpDir();
    killAt(dir, point);
    assert.is(classify(dir), points.indexOf(point) < journal ? "none" : "B", point);
  }
});

test("after a successful write there are no temporaries; a stale temporary of a dead process is removed, a live one's kept", () => {
  const dir = tmpDir();
  write(dir, "A");
  write(dir, "B");
  assert.equal(tempsIn(dir), []);
  assert.equal(fs.readdirSync(dir).sort(), [
    "<new1>.safetensors",
    "custom_diffusion_config.json",
    "pytorch_custom_diffusion_weights.safetensors",
  ]);
  // a process that has ended: its pid is free
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  const deadPid = Number(dead.stdout);
  const live = process.ppid;
  fs.writeFileSync(path.join(dir, `.<new1>.safetensors.${deadPid}.abc123.tmp`), "half");
  fs.writeFileSync(path.join(dir, `custom_diffusion_config.json.${deadPid}.tmp`), "{"); // the older naming
  fs.mkdirSync(path.join(dir, `checkpoint-4.tmp-${deadPid}`));
  fs.writeFileSync(path.join(dir, `.x.safetensors.${live}.abc123.tmp`), "in progress");
  const removed = cleanStaleTemps(dir);
  assert.equal(
    removed.sort(),
    [
      `.<new1>.safetensors.${deadPid}.abc123.tmp`,
      `checkpoint-4.tmp-${deadPid}`,
      `custom_diffusion_config.json.${deadPid}.tmp`,
    ].sort(),
  );
  assert.equal(tempsIn(dir), [`.x.safetensors.${live}.abc123.tmp`]);
  assert.is(classify(dir), "B");
});

test("a folder moved aside (.old) by a killed replace is put back when its place is empty", () => {
  const root = tmpDir();
  const dead = Number(
    spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout,
  );
  fs.mkdirSync(path.join(root, `.checkpoint-2.${dead}.q1.old`));
  fs.writeFileSync(path.join(root, `.checkpoint-2.${dead}.q1.old`, "state.json"), "{}");
  fs.mkdirSync(path.join(root, `.checkpoint-2.${dead}.q2.tmp`));
  cleanStaleTemps(root);
  assert.equal(fs.readdirSync(root), ["checkpoint-2"]);
  assert.ok(fs.existsSync(path.join(root, "checkpoint-2", "state.json")));
});

test.run();
