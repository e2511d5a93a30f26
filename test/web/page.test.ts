// The web page (web/, issue 13) end to end in headless Chromium (Debian's `chromium`, driven by
// puppeteer-core; no browser is downloaded): `startWebServer` builds and serves the page, the page
// loads the world model in its worker, samples (the canvas must not be blank), trains Custom Diffusion
// on two world images (held-out "unicorn face", class "horse face") for a few steps, and the delta it
// downloads (a zip) loads with the library and equals, bit for bit, the delta `customise` writes in
// Node for the same images and settings. Screenshots before and after training go to out/web/
// (CI artifacts); CDIFF_WEB_DOCS=1 also writes docs/web.png for the README.
// Without chromium the test is skipped with a warning, except under CI=true, where it fails.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { chwToImage, encodePng } from "../../data/images.ts";
import { readSafetensors } from "../../data/safetensors.ts";
import { DELTA_WEIGHTS, loadDelta } from "../../tune/delta.ts";
import { loadHeldoutConcepts, loadWorldDataset } from "../../world/dataset.ts";
import { startWebServer } from "../../web/server.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const OUT = path.join(ROOT, "out", "web");
const STEPS = 6;
const THREADS = 2;

function findChromium(): string | null {
  for (const c of [process.env.CHROMIUM, "chromium", "chromium-browser"]) {
    if (!c) continue;
    const r = spawnSync("sh", ["-c", `command -v ${c}`], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

/** Entries of a stored (uncompressed) zip, as zipStored writes them. */
function unzipStored(bytes: Uint8Array): Map<string, Uint8Array> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    out = new Map<string, Uint8Array>();
  let p = 0;
  while (p + 30 <= bytes.length && dv.getUint32(p, true) === 0x04034b50) {
    const method = dv.getUint16(p + 8, true),
      size = dv.getUint32(p + 18, true),
      n = dv.getUint16(p + 26, true),
      x = dv.getUint16(p + 28, true);
    assert.is(method, 0, "the page's zip is stored");
    out.set(
      new TextDecoder().decode(bytes.subarray(p + 30, p + 30 + n)),
      bytes.slice(p + 30 + n + x, p + 30 + n + x + size),
    );
    p += 30 + n + x + size;
  }
  return out;
}

const chromium = findChromium();
if (!chromium) {
  if (process.env.CI === "true") {
    test("web page in headless Chromium", () =>
      assert.unreachable("CI=true but no chromium on PATH: apt-get install -y chromium (.ci/run does)"));
  } else {
    console.warn(
      "\n  !!! test/web/page.test.ts SKIPPED: no chromium on PATH (apt-get install -y chromium, or CHROMIUM=/path/to/chrome)\n",
    );
  }
} else {
  test("web page: sample, train, download the delta; it equals the Node run bit for bit", async () => {
    const { default: puppeteer } = await import("puppeteer-core");
    fs.mkdirSync(OUT, { recursive: true });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cdiff-web-"));
    const t = { start: performance.now() } as Record<string, number>;
    const lap = (k: string): void => void (t[k] = (performance.now() - t.start) / 1000);
    // two world images of the held-out "unicorn face" (the demo's default concept), as PNG files
    const ds = loadWorldDataset();
    const concept = loadHeldoutConcepts(ds).find((c) => c.name === "unicorn face")!;
    const files = concept.images.slice(0, 2).map((im, i) => {
      const f = path.join(tmp, `unicorn_${i}.png`);
      fs.writeFileSync(f, encodePng(chwToImage(im, 3, ds.size, ds.size)));
      return f;
    });
    const bad = path.join(tmp, "notes.png");
    fs.writeFileSync(bad, "not an image");
    const server = await startWebServer({ port: 0, outDir: path.join(tmp, "build"), log: () => {} });
    lap("built");
    const browser = await puppeteer.launch({
      executablePath: chromium,
      userDataDir: path.join(tmp, "profile"),
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    const errors: string[] = [];
    try {
      const page = await browser.newPage();
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warn") errors.push(m.text());
      });
      await page.setViewport({ width: 860, height: 900 });
      const downloads = path.join(tmp, "downloads");
      fs.mkdirSync(downloads);
      const cdp = await browser.target().createCDPSession();
      await cdp.send("Browser.setDownloadBehavior", {
        behavior: "allow",
        downloadPath: downloads,
        eventsEnabled: true,
      });
      await page.goto(`${server.url}?threads=${THREADS}`);
      await page.waitForFunction('!document.getElementById("sample").disabled || document.body.dataset.error', {
        timeout: 60_000,
      });
      const backend = await page.$eval("#backend", (e) => e.textContent ?? "");
      assert.match(backend, /backend cpu .*2 threads, cross-origin isolated: yes/);
      lap("loaded");

      // sampling: a non-blank canvas
      await page.click("#sample");
      await page.waitForFunction('document.body.dataset.sampled === "1" || document.body.dataset.error', {
        timeout: 120_000,
      });
      // counted in the page: pixels that are not white, and distinct colours, of the sample canvas
      const stats = (await page.evaluate(`(() => {
        const cv = document.getElementById("samples"), d = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
        let nonWhite = 0;
        const colours = new Set();
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240) nonWhite++;
          colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        }
        return { w: cv.width, h: cv.height, nonWhite, colours: colours.size };
      })()`)) as { w: number; h: number; nonWhite: number; colours: number };
      assert.ok(stats.w >= 8 * 64 && stats.h >= 64, `sample canvas ${stats.w}x${stats.h}`);
      assert.ok(
        stats.nonWhite > 0.1 * stats.w * stats.h && stats.colours > 50,
        `the sample canvas looks blank: ${JSON.stringify(stats)}`,
      );
      const sampleInfo = await page.$eval("#sampleInfo", (e) => e.textContent ?? "");
      lap("sampled");
      await page.screenshot({ path: path.join(OUT, "before.png"), fullPage: true });

      // a bad file gets a message, not a broken page; the two images are taken
      const input = (await page.$("#files"))!;
      await (input as unknown as { uploadFile(...p: string[]): Promise<void> }).uploadFile(bad, ...files);
      await page.waitForFunction('!document.getElementById("train").disabled', { timeout: 10_000 });
      assert.match(await page.$eval("#fileErr", (e) => e.textContent ?? ""), /notes\.png: not a PNG or JPEG/);
      assert.is(await page.evaluate("window.cdiffState.files.length"), 2);

      await page.evaluate(`document.getElementById("trainSteps").value = "${STEPS}"`);
      await page.click("#train");
      // the page stays responsive while the worker trains
      await page.waitForFunction(
        '(document.body.dataset.progress ?? "").startsWith("1/") || document.body.dataset.trained === "1"',
        { timeout: 120_000, polling: 20 },
      );
      const t1 = performance.now();
      await page.evaluate("document.title");
      const responseMs = performance.now() - t1;
      assert.ok(responseMs < 1500, `the page answered in ${responseMs.toFixed(0)} ms during training`);
      await page.waitForFunction('document.body.dataset.trained === "1" || document.body.dataset.error', {
        timeout: 300_000,
      });
      const err = (await page.evaluate('document.body.dataset.error ?? ""')) as string;
      assert.is(err, "", `the page reported: ${err}`);
      assert.is(await page.evaluate("document.body.dataset.progress"), `${STEPS}/${STEPS}`);
      assert.is(await page.evaluate('document.getElementById("progress").value'), STEPS);
      const trainInfo = await page.$eval("#trainInfo", (e) => e.textContent ?? "");
      lap("trained");
      await page.click("#download");
      const zipPath = path.join(downloads, "custom-diffusion-delta.zip");
      for (let i = 0; i < 200 && !fs.existsSync(zipPath); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(
        fs.existsSync(zipPath),
        `the delta zip was downloaded (${downloads}: ${fs.existsSync(downloads) ? fs.readdirSync(downloads).join(", ") || "empty" : "absent"}; page errors: ${errors.join("; ")})`,
      );
      await page.screenshot({ path: path.join(OUT, "after.png"), fullPage: true });
      if (process.env.CDIFF_WEB_DOCS === "1")
        fs.copyFileSync(path.join(OUT, "after.png"), path.join(ROOT, "docs", "web.png"));
      lap("downloaded");
      // the zip loads back into the page, and sampling uses its token
      const deltaInput = (await page.$("#deltaFiles"))!;
      await (deltaInput as unknown as { uploadFile(...p: string[]): Promise<void> }).uploadFile(zipPath);
      await page.waitForFunction("document.body.dataset.deltaLoaded !== undefined || document.body.dataset.error", {
        timeout: 60_000,
      });
      assert.is(await page.evaluate("document.body.dataset.deltaLoaded"), "<new1>");
      await page.evaluate('document.getElementById("prompt").value = "<new1> horse face"');
      await page.click("#sample");
      await page.waitForFunction('document.body.dataset.sampled === "2" || document.body.dataset.error', {
        timeout: 120_000,
      });
      assert.is((await page.evaluate('document.body.dataset.error ?? ""')) as string, "");
      lap("reloaded");

      // the downloaded delta loads with the library ...
      const pageDelta = path.join(tmp, "page-delta");
      fs.mkdirSync(pageDelta);
      const entries = unzipStored(fs.readFileSync(zipPath));
      for (const [name, bytes] of entries) fs.writeFileSync(path.join(pageDelta, path.basename(name)), bytes);
      assert.ok(
        entries.has(`delta/${DELTA_WEIGHTS}`) && entries.has("delta/<new1>.safetensors"),
        `zip entries: ${[...entries.keys()].join(", ")}`,
      );
      const web = loadDelta(pageDelta);
      assert.is(web.freezeModel, "crossattn_kv");
      // ... and equals the Node run of the same settings (the demo's defaults; the world's "horse face" images regularise)
      const nodeData = path.join(tmp, "node-data");
      fs.mkdirSync(path.join(nodeData, "concept"), { recursive: true });
      fs.mkdirSync(path.join(nodeData, "class"), { recursive: true });
      files.forEach((f, i) => fs.copyFileSync(f, path.join(nodeData, "concept", `${String(i).padStart(3, "0")}.png`)));
      ds.classes[concept.classIndex].imageIndices.forEach((idx, i) =>
        fs.writeFileSync(
          path.join(nodeData, "class", `${String(i).padStart(3, "0")}.png`),
          encodePng(chwToImage(ds.images[idx], 3, ds.size, ds.size)),
        ),
      );
      // a process of its own, with relaxed SIMD as Chromium has it (the page's backend line names the variant)
      const relaxed = /relaxed SIMD/.test(backend);
      const r = spawnSync(
        process.execPath,
        [
          ...(relaxed ? ["--experimental-wasm-relaxed-simd"] : []),
          "--import",
          "tsx",
          path.join(ROOT, "test", "web", "node_customise.ts"),
          JSON.stringify({
            concept: path.join(nodeData, "concept"),
            class: path.join(nodeData, "class"),
            classWord: concept.class,
            out: path.join(tmp, "node-delta"),
            steps: STEPS,
            threads: THREADS,
          }),
        ],
        { cwd: ROOT, encoding: "utf8", timeout: 300_000 },
      );
      assert.is(r.status, 0, `the Node run failed: ${r.stderr}`);
      assert.is(
        JSON.parse(r.stdout.trim().split("\n").pop()!).variant,
        relaxed ? "relaxed" : "simd",
        "the Node run used the page's kernel variant",
      );
      lap("node");
      const node = loadDelta(path.join(tmp, "node-delta"));
      assert.is(web.baseFingerprint, node.baseFingerprint, "the page's sha256 fingerprint");
      assert.equal([...web.unet.keys()], [...node.unet.keys()]);
      let maxDiff = 0;
      for (const [k, v] of node.unet) {
        const w = web.unet.get(k)!.data;
        for (let i = 0; i < v.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(w[i] - v.data[i]));
      }
      const tokDiff = Math.max(...node.tokens.get("<new1>")!.map((x, i) => Math.abs(x - web.tokens.get("<new1>")![i])));
      const a = readSafetensors(path.join(pageDelta, DELTA_WEIGHTS)),
        b = readSafetensors(path.join(tmp, "node-delta", DELTA_WEIGHTS));
      assert.equal(a.metadata, b.metadata);
      assert.is(maxDiff, 0, `page vs Node delta: max |difference| ${maxDiff}`);
      assert.is(tokDiff, 0, `page vs Node <new1> row: max |difference| ${tokDiff}`);
      assert.ok(
        Buffer.compare(
          fs.readFileSync(path.join(pageDelta, DELTA_WEIGHTS)),
          fs.readFileSync(path.join(tmp, "node-delta", DELTA_WEIGHTS)),
        ) === 0,
        "the weights files are byte-identical",
      );
      const unexpected = errors.filter((e) => !/favicon/.test(e));
      assert.equal(unexpected, [], "no page errors or warnings");
      console.log(
        `  web: ${backend}\n  web: the page answered in ${responseMs.toFixed(0)} ms during training\n  web: ${sampleInfo}\n  web: ${trainInfo}\n  web: timings (s from start): ${Object.entries(
          t,
        )
          .filter(([k]) => k !== "start")
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(", ")}; the Node run of the same ${STEPS} steps matched bit for bit`,
      );
    } finally {
      await browser.close();
      await server.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test.run();
