// Retrieval regularisation (Custom Diffusion paper, section 3): real images whose captions are close to the
// class prompt in text-feature space (cosine > 0.85), taken offline from a local image-caption corpus
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../engine/errors.ts";
import { writeFileAtomic, writeJsonAtomic } from "../data/atomic.ts";
import { cosine } from "./evaluate.ts";

/** Any text encoder: one feature vector per text (CLIP get_text_features, a pooled text-encoder output, ...). */
export type TextFeatureFn = (texts: readonly string[]) => ArrayLike<number>[];

/** One image of a corpus with its caption; `image` is an absolute path. */
export interface CorpusEntry {
  image: string;
  caption: string;
}

/** Inputs of {@link retrieveRegularisation}. */
export interface RetrievalOptions {
  /**
   * The corpus: a folder of images (PNG/JPEG) with `captions.txt` (one caption per image, in sorted
   * file-name order), a folder with `images.txt` + `caption.txt` (this function's own output), or a
   * manifest file: `.json` (an array of {image, caption}), `.jsonl` (one such object a line) or
   * `.tsv` (image <TAB> caption a line; a first line "image<TAB>caption" is a header). Relative image
   * paths are relative to the manifest's folder.
   */
  corpus: string;
  /** the class prompt ("dog"), compared with every caption */
  classPrompt: string;
  textFeatures: TextFeatureFn;
  /** keep captions with cosine > threshold (default 0.85, the paper's value for CLIP ViT-L/14 text features) */
  threshold?: number;
  /** keep at most this many, best first (default 200) */
  max?: number;
  /** output folder: images.txt, caption.txt, retrieval.json */
  out: string;
  /** captions per textFeatures call (default 256) */
  batchSize?: number;
  log?: (line: string) => void;
}

/** One scored corpus entry. */
export interface ScoredEntry extends CorpusEntry {
  score: number;
}

/** What {@link retrieveRegularisation} returns. */
export interface RetrievalResult {
  /** the output folder, usable as a concept's `class_data_dir` */
  out: string;
  /** corpus entries scored */
  total: number;
  /** entries above the threshold (before the `max` cut) */
  passed: number;
  /** the entries written, best first */
  kept: ScoredEntry[];
  threshold: number;
  /** the cosine distribution over the whole corpus */
  distribution: { max: number; p99: number; p90: number; p50: number; mean: number; min: number };
}

/** retrieval.json lists at most this many scored entries, best first. */
const SCORES_WRITTEN = 2000;

const IMAGE_EXT = new Set([".png", ".jpg", ".jpeg"]);

function readLines(file: string): string[] {
  const lines = fs.readFileSync(file, "utf8").split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === "") lines.pop();
  return lines;
}

/** Removes line breaks and tabs from a caption (so the written caption.txt keeps one caption a line). */
const cleanCaption = (c: string): string => c.replace(/\s+/g, " ").trim();

function manifestEntry(v: unknown, where: string, corpus: string): { image: string; caption: string } {
  if (
    typeof v !== "object" ||
    v === null ||
    typeof (v as Record<string, unknown>).image !== "string" ||
    typeof (v as Record<string, unknown>).caption !== "string"
  ) {
    throw new ConfigError(
      `retrieval: corpus ${corpus}: ${where} must be an object with string "image" and "caption" fields`,
    );
  }
  const r = v as { image: string; caption: string };
  return { image: r.image, caption: r.caption };
}

/**
 * Reads a corpus (see {@link RetrievalOptions.corpus}) into entries with absolute image paths.
 * @throws ConfigError naming the corpus when it is missing, malformed, has a caption count that does
 *   not match its images, or lists image files that do not exist
 */
export function readCorpus(corpus: string): CorpusEntry[] {
  if (!fs.existsSync(corpus)) throw new ConfigError(`retrieval: corpus ${corpus} does not exist`);
  let raw: { image: string; caption: string }[];
  let base: string;
  if (fs.statSync(corpus).isDirectory()) {
    base = corpus;
    const imagesTxt = path.join(corpus, "images.txt"),
      captionTxt = path.join(corpus, "caption.txt"),
      captionsTxt = path.join(corpus, "captions.txt");
    if (fs.existsSync(imagesTxt) && fs.existsSync(captionTxt)) {
      const imgs = readLines(imagesTxt),
        caps = readLines(captionTxt);
      if (imgs.length !== caps.length)
        throw new ConfigError(
          `retrieval: corpus ${corpus}: images.txt has ${imgs.length} lines but caption.txt has ${caps.length}`,
        );
      raw = imgs.map((image, i) => ({ image, caption: caps[i]! }));
    } else {
      if (!fs.existsSync(captionsTxt))
        throw new ConfigError(
          `retrieval: corpus ${corpus} is a folder without captions.txt (one caption per image, in sorted file order) or images.txt + caption.txt`,
        );
      const imgs = fs
        .readdirSync(corpus)
        .filter((f) => IMAGE_EXT.has(path.extname(f).toLowerCase()))
        .sort();
      const caps = readLines(captionsTxt);
      if (imgs.length !== caps.length)
        throw new ConfigError(
          `retrieval: corpus ${corpus} has ${imgs.length} images but ${caps.length} captions in captions.txt`,
        );
      raw = imgs.map((image, i) => ({ image, caption: caps[i]! }));
    }
  } else {
    base = path.dirname(corpus);
    const ext = path.extname(corpus).toLowerCase();
    const text = fs.readFileSync(corpus, "utf8");
    if (ext === ".json") {
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch (e) {
        throw new ConfigError(`retrieval: corpus ${corpus} is not valid JSON (${(e as Error).message})`);
      }
      if (!Array.isArray(v))
        throw new ConfigError(`retrieval: corpus ${corpus} must hold a JSON array of {image, caption}`);
      raw = v.map((e, i) => manifestEntry(e, `entry ${i}`, corpus));
    } else if (ext === ".jsonl") {
      raw = readLines(corpus).map((l, i) => {
        try {
          return manifestEntry(JSON.parse(l), `line ${i + 1}`, corpus);
        } catch (e) {
          if (e instanceof ConfigError) throw e;
          throw new ConfigError(
            `retrieval: corpus ${corpus}: line ${i + 1} is not valid JSON (${(e as Error).message})`,
          );
        }
      });
    } else if (ext === ".tsv") {
      const lines = readLines(corpus);
      if (lines.length > 0 && /^image\tcaption$/i.test(lines[0]!.trim())) lines.shift();
      raw = lines.map((l, i) => {
        const tab = l.indexOf("\t");
        if (tab < 0)
          throw new ConfigError(`retrieval: corpus ${corpus}: line ${i + 1} has no tab between image and caption`);
        return { image: l.slice(0, tab), caption: l.slice(tab + 1) };
      });
    } else throw new ConfigError(`retrieval: corpus ${corpus} must be a folder or a .json, .jsonl or .tsv manifest`);
  }
  if (raw.length === 0) throw new ConfigError(`retrieval: corpus ${corpus} has no entries`);
  const entries = raw.map((e) => ({ image: path.resolve(base, e.image), caption: cleanCaption(e.caption) }));
  const missing = entries.filter((e) => !fs.existsSync(e.image));
  if (missing.length > 0) {
    throw new ConfigError(
      `retrieval: corpus ${corpus} lists ${missing.length} image file(s) that do not exist: ${missing
        .slice(0, 5)
        .map((e) => e.image)
        .join(", ")}${missing.length > 5 ? ", ..." : ""}`,
    );
  }
  return entries;
}

function l2(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

/**
 * Retrieval regularisation, offline: ranks the corpus captions by the cosine similarity of their
 * text features to the class prompt's, keeps those with cosine > `threshold` (best first, at most
 * `max`), and writes `out/images.txt` (absolute image paths) + `out/caption.txt` (the format
 * tune/train.ts reads as a concept's `class_data_dir`) + `out/retrieval.json` (the best 2,000 scores
 * and the distribution over all). Identical captions are encoded once.
 * @throws ConfigError naming the corpus when no caption passes (retrieval.json is still written, with
 *   the best captions, to help choose a threshold), or when the corpus is missing or malformed
 */
export function retrieveRegularisation(o: RetrievalOptions): RetrievalResult {
  const log = o.log ?? ((s: string) => console.log(s));
  const threshold = o.threshold ?? 0.85;
  const max = o.max ?? 200;
  const bs = o.batchSize ?? 256;
  if (!(threshold >= -1 && threshold <= 1))
    throw new ConfigError(`retrieval: threshold must be a cosine in [-1, 1], got ${threshold}`);
  if (!(Number.isInteger(max) && max >= 1))
    throw new ConfigError(`retrieval: max must be a positive integer, got ${max}`);
  const entries = readCorpus(o.corpus);
  const unique = [...new Set(entries.map((e) => e.caption))];
  const [query] = o.textFeatures([o.classPrompt]);
  if (!query || l2(query) === 0)
    throw new ConfigError(
      `retrieval: the text encoder gave no (or a zero) feature for the class prompt "${o.classPrompt}"`,
    );
  const scoreOf = new Map<string, number>();
  for (let b0 = 0; b0 < unique.length; b0 += bs) {
    const batch = unique.slice(b0, b0 + bs);
    const feats = o.textFeatures(batch);
    if (feats.length !== batch.length)
      throw new ConfigError(
        `retrieval: the text encoder returned ${feats.length} features for ${batch.length} captions`,
      );
    batch.forEach((c, i) => scoreOf.set(c, cosine(query, feats[i]!)));
  }
  const scored: ScoredEntry[] = entries.map((e) => ({ ...e, score: scoreOf.get(e.caption)! }));
  const ranked = scored
    .map((e, i) => ({ e, i }))
    .sort((a, b) => b.e.score - a.e.score || a.i - b.i)
    .map(({ e }) => e);
  const passing = ranked.filter((e) => e.score > threshold);
  const kept = passing.slice(0, max);
  const s = ranked.map((e) => e.score);
  const at = (q: number) => s[Math.min(s.length - 1, Math.round((1 - q) * (s.length - 1)))]!;
  const distribution = {
    max: s[0]!,
    p99: at(0.99),
    p90: at(0.9),
    p50: at(0.5),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    min: s[s.length - 1]!,
  };
  fs.mkdirSync(o.out, { recursive: true });
  const r4 = (x: number) => +x.toFixed(4);
  writeJsonAtomic(path.join(o.out, "retrieval.json"), {
    corpus: path.resolve(o.corpus),
    class_prompt: o.classPrompt,
    threshold,
    max,
    total: entries.length,
    passed: passing.length,
    kept: kept.length,
    distribution: Object.fromEntries(Object.entries(distribution).map(([k, v]) => [k, r4(v)])),
    // the best SCORES_WRITTEN entries (all of a small corpus): enough to choose a threshold
    scores: ranked.slice(0, SCORES_WRITTEN).map((e) => ({ image: e.image, caption: e.caption, score: r4(e.score) })),
  });
  const best = ranked
    .slice(0, 5)
    .map((e) => `"${e.caption}" ${e.score.toFixed(3)}`)
    .join(", ");
  if (kept.length === 0) {
    for (const f of ["images.txt", "caption.txt"]) fs.rmSync(path.join(o.out, f), { force: true }); // no stale list from an earlier run
    throw new ConfigError(
      `retrieval: no caption of corpus ${o.corpus} (${entries.length} entries) has cosine > ${threshold} with "${o.classPrompt}"; best: ${best}. Lower the threshold or use another corpus (scores in ${path.join(o.out, "retrieval.json")})`,
    );
  }
  writeFileAtomic(path.join(o.out, "images.txt"), kept.map((e) => e.image).join("\n") + "\n");
  writeFileAtomic(path.join(o.out, "caption.txt"), kept.map((e) => e.caption).join("\n") + "\n");
  log(
    `retrieval: ${passing.length} of ${entries.length} captions of ${o.corpus} have cosine > ${threshold} with "${o.classPrompt}"; kept ${kept.length} (max ${max}) in ${o.out}; best: ${best}`,
  );
  return { out: o.out, total: entries.length, passed: passing.length, kept, threshold, distribution };
}
