// The notebook side of the runner: what a cell showed (by kind), comparing committed and re-executed
// outputs, the failing cell from nbconvert's stderr, cell timings, and writing notebooks as Jupyter does.
// Plain JavaScript like run.mjs, so it runs with node alone.

const src = (cell) => (Array.isArray(cell.source) ? cell.source.join("") : (cell.source ?? ""));

/**
 * What a cell showed, by kind: the stream names (stdout/stderr, however the text was split) and, in
 * order, the MIME types of each rich output (an image where an image was); errors by name.
 */
export function outputKinds(cell) {
  const streams = new Set(),
    rich = [];
  for (const o of cell.outputs ?? []) {
    if (o.output_type === "stream") streams.add(o.name);
    else if (o.output_type === "error") rich.push(`error:${o.ename}`);
    else
      rich.push(
        Object.keys(o.data ?? {})
          .sort()
          .join("+"),
      );
  }
  return [...[...streams].sort().map((s) => `stream:${s}`), ...rich];
}

/**
 * Cells that call `show(` (the notebooks' image helper) but have no image output, or `console.log(` but
 * printed nothing: what --update checks before writing outputs back.
 */
export function missingOutputs(nb) {
  return nb.cells.flatMap((c, i) => {
    if (c.cell_type !== "code") return [];
    const outs = c.outputs ?? [],
      what = [];
    if (/\bshow\(/.test(src(c)) && !outs.some((o) => o.data?.["image/png"])) what.push("no image");
    if (/\bconsole\.log\(/.test(src(c)) && !outs.some((o) => o.output_type === "stream" && o.name === "stdout"))
      what.push("no printed text");
    return what.length ? [`cell ${i + 1} (${firstLine(c)}) has ${what.join(" and ")}`] : [];
  });
}

/** Differences between the committed and the re-executed outputs, as lines naming the cell. */
export function compareKinds(committed, executed) {
  const problems = [];
  const a = committed.cells.filter((c) => c.cell_type === "code"),
    b = executed.cells.filter((c) => c.cell_type === "code");
  if (!a.some((c) => c.execution_count != null))
    return ["the committed notebook has no outputs (run the runner with --update on it and commit the result)"];
  a.forEach((c, i) => {
    const ka = outputKinds(c).join(", ") || "nothing",
      kb = outputKinds(b[i] ?? {}).join(", ") || "nothing";
    if (ka !== kb)
      problems.push(
        `cell ${committed.cells.indexOf(c) + 1} (${firstLine(c)}): committed outputs [${ka}], re-executed [${kb}]`,
      );
  });
  return problems;
}

function firstLine(cell) {
  const l =
    src(cell)
      .split("\n")
      .find((x) => x.trim()) ?? "";
  return l.length > 60 ? `${l.slice(0, 57)}...` : l;
}

/** The failing cell from nbconvert's stderr (a CellExecutionError or CellTimeoutError), as 1-based index + message. */
export function failureFromStderr(nb, stderr) {
  const cells = nb.cells;
  const find = (text, prefix) => {
    const t = text.replace(/\r\n/g, "\n").trim();
    if (!t) return -1;
    return cells.findIndex(
      (c) => c.cell_type === "code" && (prefix ? src(c).trim().startsWith(t) : src(c).trim() === t),
    );
  };
  let m =
    /CellExecutionError: An error occurred while executing the following cell:\n-{18}\n([\s\S]*?)\n-{18}\n([\s\S]*)$/.exec(
      stderr,
    );
  if (m) {
    let i = find(m[1], false);
    if (i < 0) i = find(m[1].split("\n")[0], true);
    const detail = m[2]
      .trim()
      .split("\n")
      .filter((l) => l.trim())
      .slice(0, 12)
      .join("\n    ");
    return { cell: i >= 0 ? i + 1 : null, message: `error\n    ${detail}` };
  }
  m =
    /CellTimeoutError: (A cell timed out[^\n]*)[\s\S]*?Here is a preview of the cell contents:\n-+\n([\s\S]*?)\n-+/.exec(
      stderr,
    );
  if (m) {
    const preview = m[2].replace(/^\[?'|'\]?$/g, "").split(/\n|\\n/)[0];
    const i = find(preview, true);
    return { cell: i >= 0 ? i + 1 : null, message: m[1] };
  }
  const tail = stderr.trim().split("\n").slice(-15).join("\n    ");
  return { cell: null, message: `nbconvert failed\n    ${tail}` };
}

/** Seconds each code cell took, from the timing nbclient records in the cell metadata. */
export function cellSeconds(nb) {
  return nb.cells.map((c) => {
    const e = c.metadata?.execution;
    if (!e?.["iopub.execute_input"] || !e["shell.execute_reply"]) return null;
    return (Date.parse(e["shell.execute_reply"]) - Date.parse(e["iopub.execute_input"])) / 1000;
  });
}

/** JSON as Jupyter writes notebooks (keys sorted, indent 1, trailing newline), so saving in Jupyter gives small diffs. */
export function notebookJson(nb) {
  const sort = (v) =>
    Array.isArray(v)
      ? v.map(sort)
      : v && typeof v === "object"
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sort(v[k])]),
          )
        : v;
  return JSON.stringify(sort(nb), null, 1) + "\n";
}

/** The executed notebook without the per-cell timing metadata (what --update writes). */
export function stripTiming(nb) {
  for (const c of nb.cells) {
    if (c.metadata?.execution) delete c.metadata.execution;
  }
  return nb;
}
