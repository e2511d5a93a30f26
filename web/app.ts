// The page (main thread): never runs the engine itself (the cpu backend's calling thread blocks in
// Atomics.wait, which a page's main thread may not), only posts to the engine worker and draws.
import { zipStored } from "../data/torch_zip.ts";
import type { SampleRequest, TrainRequest } from "./protocol.ts";

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const SCALE = 4;
const state = {
  ready: false,
  busy: false,
  files: [] as { name: string; bytes: Uint8Array }[],
  delta: null as { name: string; bytes: Uint8Array }[] | null,
  losses: [] as [number, number][],
  total: 0,
};
(window as unknown as { cdiffState: typeof state }).cdiffState = state;

const engine = new Worker(new URL("./engine.js", import.meta.url), { type: "module", name: "cdiff-engine" });
const send = (m: unknown, transfer: Transferable[] = []): void => engine.postMessage(m, transfer);

function setBusy(b: boolean): void {
  state.busy = b;
  ($("sample") as HTMLButtonElement).disabled = b || !state.ready;
  ($("train") as HTMLButtonElement).disabled = b || !state.ready || state.files.length === 0;
  document.body.dataset.busy = String(b);
}

/** Draws CHW [-1, 1] images (size x size) into rows of a canvas, nearest-neighbour upscaled. */
function drawRows(canvas: HTMLCanvasElement, rows: Float32Array[][], size = 16, cols = 8): void {
  const pad = 2,
    cell = size * SCALE + pad;
  const nCols = Math.max(1, Math.min(cols, Math.max(...rows.map((r) => r.length))));
  canvas.width = nCols * cell + pad;
  canvas.height = rows.length * cell + pad;
  const ctx = canvas.getContext("2d")!;
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const tile = document.createElement("canvas");
  tile.width = tile.height = size;
  const tctx = tile.getContext("2d")!;
  rows.forEach((row, r) =>
    row.slice(0, nCols).forEach((chw, c) => {
      const img = tctx.createImageData(size, size),
        n = size * size;
      for (let i = 0; i < n; i++) {
        for (let ch = 0; ch < 3; ch++)
          img.data[4 * i + ch] = Math.round(Math.max(0, Math.min(1, (chw[ch * n + i] + 1) / 2)) * 255);
        img.data[4 * i + 3] = 255;
      }
      tctx.putImageData(img, 0, 0);
      ctx.drawImage(tile, pad + c * cell, pad + r * cell, size * SCALE, size * SCALE);
    }),
  );
}

function drawLoss(): void {
  const c = $("loss") as HTMLCanvasElement,
    ctx = c.getContext("2d")!;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, c.width, c.height);
  ctx.strokeStyle = "#ccc";
  ctx.strokeRect(0.5, 0.5, c.width - 1, c.height - 1);
  const pts = state.losses;
  if (pts.length === 0) return;
  const maxL = Math.max(...pts.map((p) => p[1])),
    minL = Math.min(...pts.map((p) => p[1]));
  const x = (s: number): number => 30 + ((c.width - 40) * s) / Math.max(1, state.total);
  const y = (l: number): number => 10 + (c.height - 25) * (1 - (l - minL) / Math.max(1e-9, maxL - minL));
  ctx.strokeStyle = "#36c";
  ctx.beginPath();
  pts.forEach(([s, l], i) => (i ? ctx.lineTo(x(s), y(l)) : ctx.moveTo(x(s), y(l))));
  ctx.stroke();
  ctx.fillStyle = "#444";
  ctx.font = "10px monospace";
  ctx.fillText(`loss ${maxL.toFixed(3)}`, 2, 10);
  ctx.fillText(`${minL.toFixed(3)}  (step ${pts[pts.length - 1][0]})`, 2, c.height - 3);
}

function log(line: string): void {
  const el = $("log");
  el.textContent += line + "\n";
  el.scrollTop = el.scrollHeight;
}

let sampleId = 0;
$("sample").addEventListener("click", () => {
  setBusy(true);
  $("sampleInfo").textContent = "sampling...";
  const req: SampleRequest = {
    type: "sample",
    id: ++sampleId,
    prompt: ($("prompt") as HTMLInputElement).value,
    n: +($("n") as HTMLInputElement).value || 8,
    steps: +($("steps") as HTMLInputElement).value || 25,
    seed: +($("seed") as HTMLInputElement).value || 0,
  };
  send(req);
});

// image files: 1-8 PNG/JPEG, checked by their magic bytes here and decoded again by the library in the worker
async function addFiles(list: FileList | File[]): Promise<void> {
  const errs: string[] = [];
  for (const f of [...list]) {
    const bytes = new Uint8Array(await f.arrayBuffer());
    const png = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
    const jpg = bytes[0] === 0xff && bytes[1] === 0xd8;
    if (!png && !jpg) {
      errs.push(`${f.name}: not a PNG or JPEG image (skipped)`);
      continue;
    }
    try {
      const bmp = await createImageBitmap(new Blob([bytes]));
      const c = document.createElement("canvas");
      c.width = c.height = 48;
      const ctx = c.getContext("2d")!;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(bmp, 0, 0, 48, 48);
      $("thumbs").append(c);
    } catch {
      errs.push(`${f.name}: the browser cannot decode it (damaged?); skipped`);
      continue;
    }
    if (state.files.length >= 8) {
      errs.push(`${f.name}: at most 8 images (skipped)`);
      continue;
    }
    state.files.push({ name: f.name, bytes });
  }
  $("fileErr").textContent = errs.join("\n");
  setBusy(state.busy);
}
($("files") as HTMLInputElement).addEventListener(
  "change",
  (e) => void addFiles((e.target as HTMLInputElement).files ?? []),
);
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  void addFiles(e.dataTransfer?.files ?? []);
});

let trainStart = 0;
$("train").addEventListener("click", () => {
  const classWord = ($("classWord") as HTMLInputElement).value.trim();
  const steps = Math.round(+($("trainSteps") as HTMLInputElement).value);
  if (!classWord) {
    $("trainErr").textContent = "give a class word (what the concept is a kind of, e.g. horse face)";
    return;
  }
  if (!(steps >= 1 && steps <= 2000)) {
    $("trainErr").textContent = "steps: a whole number from 1 to 2000";
    return;
  }
  $("trainErr").textContent = "";
  $("log").textContent = "";
  state.losses = [];
  state.total = steps;
  ($("progress") as HTMLProgressElement).max = steps;
  ($("progress") as HTMLProgressElement).value = 0;
  ($("download") as HTMLButtonElement).disabled = true;
  drawLoss();
  setBusy(true);
  trainStart = performance.now();
  const prompts = ($("prompts") as HTMLTextAreaElement).value
    .split("\n")
    .map((s) => s.trim())
    .filter(Boolean)
    .slice(0, 4);
  const req: TrainRequest = {
    type: "train",
    files: state.files.map((f) => ({ name: f.name, bytes: f.bytes.slice() })),
    classWord,
    prompts,
    options: { steps },
  };
  send(req);
});

$("download").addEventListener("click", () => {
  if (!state.delta) return;
  const zip = zipStored(state.delta.map((f) => [`delta/${f.name}`, f.bytes] as const));
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([zip as BlobPart], { type: "application/zip" }));
  a.download = "custom-diffusion-delta.zip";
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
});

/** Entries of a zip file (stored or deflated). */
async function unzip(bytes: Uint8Array): Promise<{ name: string; bytes: Uint8Array }[]> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    out: { name: string; bytes: Uint8Array }[] = [];
  let p = 0;
  while (p + 30 <= bytes.length && dv.getUint32(p, true) === 0x04034b50) {
    const method = dv.getUint16(p + 8, true),
      csize = dv.getUint32(p + 18, true),
      nlen = dv.getUint16(p + 26, true),
      xlen = dv.getUint16(p + 28, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 30, p + 30 + nlen));
    const data = bytes.subarray(p + 30 + nlen + xlen, p + 30 + nlen + xlen + csize);
    const body =
      method === 0
        ? data.slice()
        : new Uint8Array(
            await new Response(
              new Blob([data as BlobPart]).stream().pipeThrough(new DecompressionStream("deflate-raw")),
            ).arrayBuffer(),
          );
    if (!name.endsWith("/")) out.push({ name: name.split("/").pop()!, bytes: body });
    p += 30 + nlen + xlen + csize;
  }
  return out;
}
($("deltaFiles") as HTMLInputElement).addEventListener("change", async (e) => {
  const files: { name: string; bytes: Uint8Array }[] = [];
  for (const f of [...((e.target as HTMLInputElement).files ?? [])]) {
    const b = new Uint8Array(await f.arrayBuffer());
    if (f.name.endsWith(".zip")) files.push(...(await unzip(b)));
    else files.push({ name: f.name, bytes: b });
  }
  setBusy(true);
  send({ type: "loadDelta", files });
});

engine.addEventListener("message", (e: MessageEvent) => {
  const m = e.data;
  const line = (x: { backend: string; variant: string; threads: number; isolated: boolean }): string =>
    `backend ${x.backend} (${x.variant === "relaxed" ? "WebAssembly relaxed SIMD" : x.variant === "simd" ? "WebAssembly SIMD" : "plain TypeScript"}), ${x.threads} thread${x.threads > 1 ? "s" : ""}, cross-origin isolated: ${x.isolated ? "yes" : "no (one thread)"}`;
  switch (m.type) {
    case "ready":
      state.ready = true;
      $("backend").textContent = `${line(m)}; world model loaded in ${(m.ms / 1000).toFixed(1)} s`;
      $("classes").innerHTML = (m.classes as string[]).map((c) => `<option value="${c}">`).join("");
      setBusy(false);
      break;
    case "samples":
      drawRows($("samples") as HTMLCanvasElement, [m.images]);
      $("sampleInfo").textContent =
        `"${m.prompt}": ${m.images.length} images, ${m.msPerStep.toFixed(0)} ms per denoising step`;
      $("backend").textContent = `${line(m)}; last sampling ${m.msPerStep.toFixed(0)} ms per step`;
      document.body.dataset.sampled = String(m.id);
      setBusy(false);
      break;
    case "log": {
      log(m.line);
      const r = /^step (\d+)\/\d+\s+loss ([\d.eE+-]+)/.exec(m.line);
      if (r) {
        state.losses.push([+r[1], +r[2]]);
        drawLoss();
      }
      break;
    }
    case "progress": {
      ($("progress") as HTMLProgressElement).value = m.step;
      const rate = m.step / m.seconds,
        eta = (m.total - m.step) / rate;
      $("trainInfo").textContent = `step ${m.step}/${m.total}, ${rate.toFixed(2)} steps/s, ETA ${eta.toFixed(0)} s`;
      document.body.dataset.progress = `${m.step}/${m.total}`;
      break;
    }
    case "trained": {
      const rows = document.createElement("div");
      const add = (label: string, imgs: Float32Array[]): void => {
        const r = document.createElement("div");
        r.className = "row";
        const s = document.createElement("span");
        s.textContent = label;
        const c = document.createElement("canvas");
        drawRows(c, [imgs]);
        r.append(s, c);
        rows.append(r);
      };
      add("your images (targets)", []);
      const targets = rows.lastChild as HTMLElement;
      targets.querySelector("canvas")!.replaceWith(
        ...[...$("thumbs").children]
          .map((t) => t.cloneNode(true) as HTMLCanvasElement)
          .map((c, i) => {
            c.getContext("2d")!.drawImage($("thumbs").children[i] as HTMLCanvasElement, 0, 0);
            return c;
          }),
      );
      for (const b of m.before) add(`before: "${b.prompt}"`, b.images);
      for (const a of m.after) add(`after: "${a.prompt}"`, a.images);
      $("grid").replaceChildren(rows);
      state.delta = m.files;
      state.losses = (m.losses as number[]).map((l, i) => [i + 1, l]);
      drawLoss();
      ($("download") as HTMLButtonElement).disabled = false;
      $("trainInfo").textContent =
        `trained ${m.losses.length} steps in ${m.seconds.toFixed(1)} s (${(m.losses.length / m.seconds).toFixed(2)} steps/s; page total ${((performance.now() - trainStart) / 1000).toFixed(1)} s with sampling); final loss ${m.losses[m.losses.length - 1].toFixed(4)}`;
      document.body.dataset.trained = "1";
      setBusy(false);
      break;
    }
    case "deltaLoaded":
      document.body.dataset.deltaLoaded = (m.tokens as string[]).join(",");
      $("sampleInfo").textContent = `delta loaded: prompts may use ${(m.tokens as string[]).join(", ")}`;
      setBusy(false);
      break;
    case "error":
      $(m.of === "train" ? "trainErr" : m.of === "init" ? "backend" : "sampleInfo").textContent =
        `error (${m.of}): ${m.message}`;
      document.body.dataset.error = m.message;
      setBusy(false);
      break;
  }
});
engine.addEventListener("error", (e) => {
  $("backend").textContent = `the engine worker failed to start: ${e.message}`;
});
// ?threads=N sets the cpu kernels' thread count (the calling thread included; default: the hardware's)
const threads = Number(new URLSearchParams(location.search).get("threads") ?? NaN);
send({ type: "init", ...(threads >= 1 ? { threads } : {}) });
