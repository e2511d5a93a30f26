// The notebooks in examples/notebooks/ and their runner: the committed notebooks are executed, with their
// outputs (images where they show images), for the Deno kernel; the runner's parsing of failures and its
// output-kind comparison; and, where Jupyter and Deno are installed, the runner itself on a notebook with a
// deliberately failing cell (it must fail and name the cell) and on one whose outputs changed kind.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const DIR = path.join(ROOT, "examples", "notebooks");
const RUNNER = path.join(DIR, "run.mjs");
const FIXTURES = path.join(ROOT, "test", "fixtures", "notebooks");
// a plain-JavaScript module: imported by path so the type checker does not need declarations for it
type Runner = {
  outputKinds(cell: unknown): string[];
  compareKinds(committed: unknown, executed: unknown): string[];
  failureFromStderr(nb: unknown, stderr: string): { cell: number | null; message: string };
  missingOutputs(nb: unknown): string[];
};
const runnerPath: string = RUNNER;
let loaded: Runner | null = null;
const runner = async (): Promise<Runner> => (loaded ??= (await import(runnerPath)) as Runner);

type Output = { output_type: string; name?: string; data?: Record<string, unknown>; ename?: string };
type Cell = {
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: Output[];
  id?: string;
};
type Notebook = { cells: Cell[]; metadata: { kernelspec?: { name: string } }; nbformat: number };

const src = (c: Cell) => (Array.isArray(c.source) ? c.source.join("") : c.source);
const notebooks = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith(".ipynb"))
  .sort();

test("the six notebooks are there, for the Deno kernel, executed, with images and no errors", async () => {
  const R = await runner();
  assert.equal(notebooks.length, 6, notebooks.join(", "));
  for (const f of notebooks) {
    const text = fs.readFileSync(path.join(DIR, f), "utf8");
    const nb = JSON.parse(text) as Notebook;
    assert.equal(nb.nbformat, 4, f);
    assert.equal(nb.metadata.kernelspec?.name, "deno", `${f}: kernel`);
    const code = nb.cells.filter((c) => c.cell_type === "code");
    assert.ok(code.length > 3, f);
    for (const c of code) {
      assert.ok(c.execution_count != null, `${f}: a code cell was never executed: ${src(c).slice(0, 60)}`);
      assert.not.ok(
        (c.outputs ?? []).some((o) => o.output_type === "error"),
        `${f}: a cell has an error output`,
      );
      // imports stay inside the project (no registry or URL imports that would need the network)
      for (const m of src(c).matchAll(/from\s+"([^"]+)"/g))
        assert.ok(/^(\.\.?\/|node:)/.test(m[1]!), `${f}: import of ${m[1]}`);
    }
    assert.equal(
      R.missingOutputs(nb),
      [],
      `${f}: every cell that shows an image has one, and every cell that prints printed`,
    );
    assert.ok(
      code.some((c) => (c.outputs ?? []).some((o) => o.data?.["image/png"])),
      `${f} shows at least one image`,
    );
    assert.ok(new Set(nb.cells.map((c) => c.id)).size === nb.cells.length, `${f}: cell ids are unique`);
  }
});

test("output kinds: streams by name, rich outputs by MIME types, in order", async () => {
  const R = await runner();
  const cell = {
    outputs: [
      { output_type: "stream", name: "stdout" },
      { output_type: "stream", name: "stdout" },
      { output_type: "display_data", data: { "text/plain": "x", "image/png": "..." } },
    ],
  };
  assert.equal(R.outputKinds(cell), ["stream:stdout", "image/png+text/plain"]);
  const committed = { cells: [{ cell_type: "code", source: "show(x)", execution_count: 1, outputs: cell.outputs }] };
  const lost = {
    cells: [{ cell_type: "code", source: "show(x)", outputs: [{ output_type: "stream", name: "stdout" }] }],
  };
  const problems = R.compareKinds(committed, lost);
  assert.equal(problems.length, 1);
  assert.match(
    problems[0]!,
    /cell 1 .*committed outputs \[stream:stdout, image\/png\+text\/plain\], re-executed \[stream:stdout\]/,
  );
  assert.equal(R.compareKinds(committed, committed), []);
  assert.match(
    R.compareKinds({ cells: [{ cell_type: "code", source: "1", execution_count: null, outputs: [] }] }, committed)[0]!,
    /no outputs/,
  );
});

test("failures are traced to the cell from nbconvert's messages (errors and timeouts)", async () => {
  const R = await runner();
  const nb = JSON.parse(fs.readFileSync(path.join(FIXTURES, "failing.ipynb"), "utf8")) as Notebook;
  const err = `Traceback...\nnbclient.exceptions.CellExecutionError: An error occurred while executing the following cell:\n------------------\n${src(nb.cells[2]!)}\n------------------\n\nError: deliberate failure\n    at boom (<anonymous>:3:9)\n`;
  const f = R.failureFromStderr(nb, err);
  assert.equal(f.cell, 3);
  assert.match(f.message, /deliberate failure/);
  const timeout = `nbclient.exceptions.CellTimeoutError: A cell timed out while it was being executed, after 5 seconds.\nThe message was: Cell execution timed out.\nHere is a preview of the cell contents:\n-------------------\n${src(nb.cells[1]!)}\n-------------------\n`;
  const t = R.failureFromStderr(nb, timeout);
  assert.equal(t.cell, 2);
  assert.match(t.message, /timed out/);
  assert.equal(R.failureFromStderr(nb, "something else went wrong").cell, null);
});

// the runner on real notebooks needs Jupyter (nbconvert) and Deno 2; --no-install keeps the test from downloading Deno
test("the runner fails on a deliberately failing cell and on changed output kinds, naming notebook and cell", () => {
  const run = (files: string[]) =>
    spawnSync(process.execPath, [RUNNER, "--no-install", "--timeout", "60", ...files], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 180_000,
    });
  const r = run([path.join(FIXTURES, "failing.ipynb"), path.join(FIXTURES, "changed_kinds.ipynb")]);
  if (r.status === 2) {
    console.log(`  (skipped: ${(r.stderr || r.stdout).trim().split("\n").pop()})`);
    return;
  }
  const out = r.stdout;
  assert.equal(r.status, 1, out + r.stderr);
  assert.match(
    out,
    /FAIL test\/fixtures\/notebooks\/failing\.ipynb: cell 3 failed after [\d.]+ s: error\n\s+Error: deliberate failure/,
  );
  assert.not.match(out, /cell 4 never runs/);
  assert.match(
    out,
    /FAIL test\/fixtures\/notebooks\/changed_kinds\.ipynb: re-executing changed the kinds of outputs \(1 cell\):\n\s+cell 2 .*committed outputs \[image\/png\+text\/plain\], re-executed \[(stream:stdout|nothing)\]/,
  );
  assert.match(out, /\n0 passed, 2 failed\n$/);
});

test.run();
