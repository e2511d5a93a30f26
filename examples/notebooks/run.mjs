#!/usr/bin/env node
// Runs the notebooks in examples/notebooks/ headlessly through Jupyter with the Deno kernel, or opens them.
//
//   node examples/notebooks/run.mjs                 execute every notebook; fail on any cell error or timeout, and
//                                                   when re-executing changes the kinds of a cell's outputs
//   node examples/notebooks/run.mjs --open          open them in Jupyter (Notebook or Lab) with the Deno kernel
//   node examples/notebooks/run.mjs --update A.ipynb   execute and write the outputs back (after editing a notebook)
//
// Options: --timeout S (per cell, default 300), --self-test (first check that a notebook with a failing cell
// and one whose outputs changed kind both fail), --install (only install the kernel), --no-install (never
// download Deno), --no-compare. Notebook paths may follow; the default is every examples/notebooks/*.ipynb.
//
// The kernel: Deno 2 (`deno jupyter --kernel`). Deno is found as $DENO, as `deno` on the PATH (version 2 or
// later), or in the cache folder ($CDIFF_NOTEBOOK_CACHE, default ~/.cache/custom-diffusion-ts/notebooks),
// where it is installed from npm on first use (the `deno` package, pinned below). The kernel spec is
// written to <cache>/jupyter/kernels/deno/kernel.json and found through JUPYTER_PATH, so nothing is
// installed into the user's Jupyter. Jupyter itself (nbconvert, nbclient, ipykernel) comes from the
// system: Debian `apt-get install jupyter-nbconvert python3-nbclient python3-ipykernel jupyter-client
// jupyter-core`, or `pip install nbconvert nbclient ipykernel`.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import {
  cellSeconds,
  compareKinds,
  failureFromStderr,
  missingOutputs,
  notebookJson,
  stripTiming,
} from "./notebook_format.mjs";

export const DENO_VERSION = "2.9.6";
export const KERNEL_NAME = "deno";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..");
const APT =
  "apt-get install -y --no-install-recommends jupyter-nbconvert python3-nbclient python3-ipykernel jupyter-client jupyter-core";

/** Exit code when the tools cannot be found or installed (distinct from a failing notebook). */
export const EXIT_UNAVAILABLE = 2;

export class Unavailable extends Error {}

export function cacheDir() {
  return (
    process.env.CDIFF_NOTEBOOK_CACHE ||
    path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "custom-diffusion-ts", "notebooks")
  );
}

function denoVersion(bin) {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (r.status !== 0 || !r.stdout) return null;
  const m = /deno (\d+)\.(\d+)\.(\d+)/.exec(r.stdout);
  return m ? { major: Number(m[1]), text: `${m[1]}.${m[2]}.${m[3]}` } : null;
}

/** The binary inside an npm install of the `deno` package (the package copies it next to its bin script). */
function denoInPrefix(prefix) {
  const exe = process.platform === "win32" ? "deno.exe" : "deno";
  const nm = path.join(prefix, "node_modules");
  const cands = [path.join(nm, "deno", exe)];
  if (fs.existsSync(path.join(nm, "@deno")))
    for (const d of fs.readdirSync(path.join(nm, "@deno"))) cands.push(path.join(nm, "@deno", d, exe));
  return cands.find((c) => fs.existsSync(c) && denoVersion(c)) ?? null;
}

/** Finds Deno 2 ($DENO, PATH, cache) or installs the pinned version into the cache. */
export function locateDeno({ install = true, log = console.log } = {}) {
  if (process.env.DENO) {
    const v = denoVersion(process.env.DENO);
    if (!v || v.major < 2) throw new Unavailable(`$DENO=${process.env.DENO} is not Deno 2 or later`);
    return { bin: process.env.DENO, version: v.text, source: "$DENO" };
  }
  const onPath = denoVersion("deno");
  if (onPath && onPath.major >= 2) {
    const which = spawnSync(process.platform === "win32" ? "where" : "which", ["deno"], { encoding: "utf8" })
      .stdout?.split(/\r?\n/)[0]
      ?.trim();
    return { bin: which || "deno", version: onPath.text, source: "PATH" };
  }
  const prefix = path.join(cacheDir(), `deno-${DENO_VERSION}`);
  let bin = denoInPrefix(prefix);
  if (!bin) {
    if (!install)
      throw new Unavailable(
        `Deno 2 is not installed (no $DENO, no deno on the PATH, nothing in ${prefix}); run without --no-install to install it`,
      );
    log(`installing Deno ${DENO_VERSION} from npm into ${prefix} (once; about 40 MB to download)`);
    fs.mkdirSync(prefix, { recursive: true });
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    const r = spawnSync(
      npm,
      ["install", "--prefix", prefix, "--no-audit", "--no-fund", "--loglevel=error", `deno@${DENO_VERSION}`],
      { stdio: "inherit", shell: process.platform === "win32" },
    );
    if (r.status !== 0) throw new Unavailable(`npm install deno@${DENO_VERSION} failed (exit ${r.status})`);
    bin = denoInPrefix(prefix);
    if (!bin)
      throw new Unavailable(`npm installed deno@${DENO_VERSION} into ${prefix}, but no working binary was found there`);
  }
  return { bin, version: denoVersion(bin).text, source: "cache" };
}

/** Writes the Deno kernel spec under <cache>/jupyter and returns the JUPYTER_PATH entry that finds it. */
export function writeKernelSpec(denoBin) {
  const dataDir = path.join(cacheDir(), "jupyter");
  const dir = path.join(dataDir, "kernels", KERNEL_NAME);
  fs.mkdirSync(dir, { recursive: true });
  const spec = {
    argv: [denoBin, "jupyter", "--kernel", "--conn", "{connection_file}"],
    display_name: "Deno",
    language: "typescript",
  };
  fs.writeFileSync(path.join(dir, "kernel.json"), JSON.stringify(spec, null, 2) + "\n");
  return dataDir;
}

/** Checks that Jupyter's notebook runner is there. */
export function checkJupyter() {
  const r = spawnSync("jupyter", ["nbconvert", "--version"], { encoding: "utf8" });
  if (r.status !== 0) {
    throw new Unavailable(
      `Jupyter's notebook runner (jupyter nbconvert) was not found. On Debian or Ubuntu: sudo ${APT}; elsewhere: python3 -m pip install nbconvert nbclient ipykernel`,
    );
  }
  return r.stdout.trim();
}

export function jupyterEnv(dataDir) {
  const prev = process.env.JUPYTER_PATH;
  // Deno prints a colour-coded "unstable" warning on the kernel's stderr: keep the logs plain
  return { ...process.env, JUPYTER_PATH: prev ? `${dataDir}${path.delimiter}${prev}` : dataDir, NO_COLOR: "1" };
}

// ---- notebooks ------------------------------------------------------------------------------------

export {
  cellSeconds,
  compareKinds,
  failureFromStderr,
  missingOutputs,
  notebookJson,
  outputKinds,
  stripTiming,
} from "./notebook_format.mjs";

/** Executes one notebook; resolves to { ok, seconds, executed?, cell?, message? }. */
export function executeNotebook(file, { env, timeout = 300, workDir }) {
  const nb = JSON.parse(fs.readFileSync(file, "utf8"));
  const outName = `${path.basename(file, ".ipynb")}.executed.ipynb`;
  const args = [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    `--ExecutePreprocessor.kernel_name=${KERNEL_NAME}`,
    `--ExecutePreprocessor.timeout=${timeout}`,
    "--output-dir",
    workDir,
    "--output",
    outName,
    file,
  ];
  const t0 = performance.now();
  return new Promise((resolve) => {
    // the kernel starts in the notebook's folder, so `../../engine/index.ts` imports work as in Jupyter
    const child = spawn("jupyter", args, { env, cwd: path.dirname(file), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stdout.on("data", () => {});
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const out = path.join(workDir, outName);
      if (code !== 0 || !fs.existsSync(out)) return resolve({ ok: false, seconds, ...failureFromStderr(nb, stderr) });
      const executed = JSON.parse(fs.readFileSync(out, "utf8"));
      const errIdx = executed.cells.findIndex((c) => (c.outputs ?? []).some((o) => o.output_type === "error"));
      if (errIdx >= 0) {
        const e = executed.cells[errIdx].outputs.find((o) => o.output_type === "error");
        return resolve({ ok: false, seconds, cell: errIdx + 1, message: `error\n    ${e.ename}: ${e.evalue}` });
      }
      resolve({ ok: true, seconds, executed, committed: nb });
    });
  });
}

export function defaultNotebooks() {
  return fs
    .readdirSync(HERE)
    .filter((f) => f.endsWith(".ipynb"))
    .sort()
    .map((f) => path.join(HERE, f));
}

const rel = (p) => path.relative(process.cwd(), p) || p;

/**
 * Executes notebooks one after another and prints one line per notebook, failures with the notebook and
 * cell, and a closing `N passed, M failed`. Returns the number that failed.
 */
export async function runNotebooks(files, { env, timeout = 300, compare = true, update = false, log = console.log }) {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "cdiff-notebooks-"));
  const t0 = performance.now();
  let passed = 0,
    failed = 0;
  try {
    for (const file of files) {
      const name = rel(file);
      let r = await executeNotebook(file, { env, timeout, workDir });
      let retried = "";
      // the Deno kernel (2.x) can publish a cell's last outputs after reporting the cell finished when the
      // machine is busy, and Jupyter then records the cell without them: one more run tells that from a change
      const check = (x) => (update ? missingOutputs(x.executed) : compare ? compareKinds(x.committed, x.executed) : []);
      if (r.ok && check(r).length) {
        retried = `; re-run once after: ${check(r).join("; ")}`;
        r = await executeNotebook(file, { env, timeout, workDir });
      }
      if (!r.ok) {
        failed++;
        log(
          `FAIL ${name}: ${r.cell ? `cell ${r.cell}` : "a cell"} failed after ${r.seconds.toFixed(1)} s: ${r.message}`,
        );
        continue;
      }
      const secs = cellSeconds(r.executed);
      const slow = secs.reduce((best, s, i) => (s !== null && (best < 0 || s > secs[best]) ? i : best), -1);
      const problems = check(r);
      if (problems.length) {
        failed++;
        log(
          `FAIL ${name}: ${update ? "outputs missing" : "re-executing changed the kinds of outputs"} (${problems.length} cell${problems.length > 1 ? "s" : ""}):`,
        );
        for (const p of problems) log(`    ${p}`);
        continue;
      }
      if (update) fs.writeFileSync(file, notebookJson(stripTiming(r.executed)));
      passed++;
      log(
        `ok   ${name} (${r.seconds.toFixed(1)} s${slow >= 0 ? `; slowest cell ${slow + 1}: ${secs[slow].toFixed(1)} s` : ""}${retried})${update ? " - outputs written back" : ""}`,
      );
    }
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  if (files.length > 1) log(`${files.length} notebooks in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  log(`${passed} passed, ${failed} failed`);
  return failed;
}

/** The runner's own check: a notebook with a failing cell and one whose outputs changed kind must both fail. */
export async function selfTest({ env, log = console.log }) {
  const dir = path.join(ROOT, "test", "fixtures", "notebooks");
  const lines = [];
  const failedCount = await runNotebooks([path.join(dir, "failing.ipynb"), path.join(dir, "changed_kinds.ipynb")], {
    env,
    timeout: 60,
    log: (l) => lines.push(l),
  });
  const text = lines.join("\n");
  const ok =
    failedCount === 2 &&
    /failing\.ipynb: cell 3 failed/.test(text) &&
    /deliberate failure/.test(text) &&
    /changed_kinds\.ipynb: re-executing changed/.test(text) &&
    /image\/png/.test(text);
  log(
    `self-test: ${ok ? "the runner reports the failing cell and the changed outputs" : "FAILED - the runner did not report the deliberate failures as expected:"}`,
  );
  if (!ok) for (const l of lines) log(`    ${l}`);
  return ok;
}

async function main(argv) {
  const flags = new Set(argv.filter((a) => a.startsWith("--")));
  const ti = argv.indexOf("--timeout");
  const timeout = ti >= 0 ? Number(argv[ti + 1]) : 300;
  const files = argv.filter((a, i) => !a.startsWith("--") && argv[i - 1] !== "--timeout").map((f) => path.resolve(f));
  if (flags.has("--help") || flags.has("-h")) {
    const lines = fs
      .readFileSync(fileURLToPath(import.meta.url), "utf8")
      .split("\n")
      .slice(1);
    console.log(
      lines
        .slice(
          0,
          lines.findIndex((l) => !l.startsWith("//")),
        )
        .map((l) => l.replace(/^\/\/ ?/, ""))
        .join("\n"),
    );
    return 0;
  }
  let env, deno;
  try {
    deno = locateDeno({ install: !flags.has("--no-install") });
    const dataDir = writeKernelSpec(deno.bin);
    env = jupyterEnv(dataDir);
    console.log(
      `kernel: Deno ${deno.version} (${deno.source}: ${deno.bin}), spec in ${path.join(dataDir, "kernels", KERNEL_NAME)}`,
    );
    if (flags.has("--install")) return 0;
    if (!flags.has("--open")) console.log(`runner: ${checkJupyter()}`);
  } catch (e) {
    if (e instanceof Unavailable) {
      console.error(`notebooks: ${e.message}`);
      return EXIT_UNAVAILABLE;
    }
    throw e;
  }
  if (flags.has("--open")) return openJupyter(env);
  if (flags.has("--self-test") && !(await selfTest({ env }))) return 1;
  const list = files.length ? files : defaultNotebooks();
  return (await runNotebooks(list, {
    env,
    timeout,
    compare: !flags.has("--no-compare"),
    update: flags.has("--update"),
  }))
    ? 1
    : 0;
}

/** Opens Jupyter Lab or Notebook on examples/notebooks with the Deno kernel on JUPYTER_PATH. */
function openJupyter(env) {
  for (const app of ["lab", "notebook"]) {
    if (spawnSync("jupyter", [app, "--version"], { encoding: "utf8" }).status === 0) {
      console.log(
        `opening Jupyter ${app === "lab" ? "Lab" : "Notebook"} on ${rel(HERE)} (kernel "Deno"); Ctrl+C stops it`,
      );
      const root = process.getuid?.() === 0 ? ["--allow-root"] : []; // Jupyter refuses root without it (containers, CI machines)
      return spawnSync("jupyter", [app, ...root, HERE], { env, stdio: "inherit" }).status ?? 1;
    }
  }
  console.error(
    `notebooks: neither Jupyter Lab nor Jupyter Notebook was found. On Debian or Ubuntu: sudo apt-get install jupyter-notebook; elsewhere: python3 -m pip install jupyterlab. Then run this again. (Other frontends such as VS Code find the kernel once Deno has registered it with Jupyter: deno jupyter --install.)`,
  );
  return EXIT_UNAVAILABLE;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
