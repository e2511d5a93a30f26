// Loads the small world's built corpus (world/data: PNG sheets of 16x16 emoji + JSON index) as
// CHW float images in [-1, 1] with captions, the held-out concepts and the caption lines.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { imageToCHW, readImage, type Image } from "../data/images.ts";
import { FormatError } from "../engine/errors.ts";
import { VENDORS, type Vendor } from "./build_dataset.ts";

/** Folder of the committed built dataset. */
export const WORLD_DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), "data");
const FORMAT = "small-world-dataset/1";

/** One training class. */
export interface WorldClass {
  /** The training caption ("dog face"). */
  caption: string;
  /** emoji-datasource short name. */
  emoji: string;
  /** Unicode code points, dash separated ("1F436"). */
  unified: string;
  /** Unicode name, lowercase. */
  name: string;
  /** Indices into {@link WorldDataset.images} of this class's images. */
  imageIndices: number[];
}

/** The training corpus. */
export interface WorldDataset {
  /** Image side in pixels (16). */
  size: number;
  classes: WorldClass[];
  /** Each (3, size, size) CHW in [-1, 1]. */
  images: Float32Array[];
  /** Class index of each image. */
  labels: number[];
  /** Caption of each image (its class caption). */
  captions: string[];
  /** Artwork vendor of each image. */
  vendors: Vendor[];
  /** Sorted CLIP token ids the caption corpus uses, bos (49406) and eos (49407) included. */
  tokenIds: number[];
  /** Templates the caption lines were made with ("{}" is the caption). */
  captionTemplates: string[];
}

/** A held-out concept (never in pretraining). */
export interface HeldoutConcept {
  /** What it is ("unicorn face"). */
  name: string;
  emoji: string;
  unified: string;
  /** Its class: a training caption ("horse face"). */
  class: string;
  /** Index of that class in {@link WorldDataset.classes}. */
  classIndex: number;
  /** Modifier token the prompts use ("<new1>"). */
  token: string;
  /** Prompts in this world's vocabulary, with {@link token}. */
  prompts: string[];
  /** Each (3, size, size) CHW in [-1, 1]. */
  images: Float32Array[];
  vendors: Vendor[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function readJson(path: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new FormatError(`world dataset: cannot read ${path}: ${(e as Error).message}`);
  }
  if (!isRecord(raw) || raw["format"] !== FORMAT)
    throw new FormatError(`world dataset: ${path} is not a ${FORMAT} file`);
  return raw;
}

function need<T>(ok: boolean, value: T, path: string, what: string): T {
  if (!ok) throw new FormatError(`world dataset: ${path}: ${what}`);
  return value;
}

function isVendor(v: unknown): v is Vendor {
  return typeof v === "string" && (VENDORS as readonly string[]).includes(v);
}

/** Reads a sheet and returns a function cutting tile k out as CHW [-1, 1]. */
function sheetReader(
  dir: string,
  meta: Record<string, unknown>,
  path: string,
): { size: number; tile: (k: number) => Float32Array } {
  const size = meta["size"];
  const cols = meta["cols"];
  const sheetName = meta["sheet"];
  if (
    typeof size !== "number" ||
    !Number.isInteger(size) ||
    size < 1 ||
    typeof cols !== "number" ||
    !Number.isInteger(cols) ||
    cols < 1
  ) {
    throw new FormatError(`world dataset: ${path}: size and cols must be positive integers`);
  }
  if (typeof sheetName !== "string" || sheetName.includes("/") || sheetName.includes("\\")) {
    throw new FormatError(`world dataset: ${path}: sheet must be a file name in the same folder`);
  }
  const sheet = readImage(join(dir, sheetName));
  if (sheet.channels !== 3 || sheet.width % size !== 0 || sheet.height % size !== 0 || sheet.width > cols * size) {
    throw new FormatError(
      `world dataset: ${sheetName} must be RGB tiles of ${size} px, at most ${cols} per row; got ${sheet.width}x${sheet.height} px with ${sheet.channels} channels`,
    );
  }
  return {
    size,
    tile(k: number): Float32Array {
      const x0 = (k % cols) * size;
      const y0 = Math.floor(k / cols) * size;
      if (!Number.isInteger(k) || k < 0 || x0 + size > sheet.width || y0 + size > sheet.height) {
        throw new FormatError(
          `world dataset: ${path}: tile ${k} is outside ${sheetName} (${sheet.width}x${sheet.height} px, ${cols} tiles per row)`,
        );
      }
      const data = new Float32Array(size * size * 3);
      for (let y = 0; y < size; y++) {
        const from = ((y0 + y) * sheet.width + x0) * 3;
        data.set(sheet.data.subarray(from, from + size * 3), y * size * 3);
      }
      const img: Image = { width: size, height: size, channels: 3, data };
      return imageToCHW(img); // (3, size, size)
    },
  };
}

/**
 * Loads the training corpus (train.json + its sheet).
 * @param dir folder of the built dataset (default world/data)
 * @throws FormatError for a missing, foreign or inconsistent file
 */
export function loadWorldDataset(dir: string = WORLD_DATA_DIR): WorldDataset {
  const path = join(dir, "train.json");
  const meta = readJson(path);
  const { size, tile } = sheetReader(dir, meta, path);
  const rawClasses = meta["classes"];
  const rawImages = meta["images"];
  const tokenIds = meta["tokenIds"];
  const templates = meta["captionTemplates"];
  if (
    !Array.isArray(rawClasses) ||
    !Array.isArray(rawImages) ||
    !Array.isArray(tokenIds) ||
    !Array.isArray(templates)
  ) {
    throw new FormatError(`world dataset: ${path}: classes, images, tokenIds and captionTemplates must be arrays`);
  }
  const classes: WorldClass[] = rawClasses.map((c: unknown, i: number) => {
    const ok = isRecord(c) && ["caption", "emoji", "unified", "name"].every((k) => typeof c[k] === "string");
    const r = need(
      ok,
      c as Record<string, string>,
      path,
      `classes[${i}] needs caption, emoji, unified and name strings`,
    );
    return { caption: r["caption"]!, emoji: r["emoji"]!, unified: r["unified"]!, name: r["name"]!, imageIndices: [] };
  });
  const ds: WorldDataset = {
    size,
    classes,
    images: [],
    labels: [],
    captions: [],
    vendors: [],
    tokenIds: tokenIds.map((t: unknown, i: number) =>
      need(
        typeof t === "number" && Number.isInteger(t) && t >= 0 && (i === 0 || t > (tokenIds[i - 1] as number)),
        t as number,
        path,
        "tokenIds must be increasing non-negative integers",
      ),
    ),
    captionTemplates: templates.map((t: unknown) =>
      need(typeof t === "string" && t.includes("{}"), t as string, path, "captionTemplates must be strings with {}"),
    ),
  };
  rawImages.forEach((e: unknown, i: number) => {
    const ok =
      isRecord(e) &&
      typeof e["class"] === "number" &&
      Number.isInteger(e["class"]) &&
      e["class"] >= 0 &&
      e["class"] < classes.length &&
      isVendor(e["vendor"]) &&
      typeof e["tile"] === "number";
    const r = need(
      ok,
      e as { class: number; vendor: Vendor; tile: number },
      path,
      `images[${i}] needs a class index, a vendor and a tile`,
    );
    classes[r.class]!.imageIndices.push(ds.images.length);
    ds.images.push(tile(r.tile));
    ds.labels.push(r.class);
    ds.captions.push(classes[r.class]!.caption);
    ds.vendors.push(r.vendor);
  });
  classes.forEach((c) => need(c.imageIndices.length > 0, 0, path, `class "${c.caption}" has no image`));
  return ds;
}

/**
 * Loads the held-out concepts (heldout.json + its sheet); `classIndex` refers to `train`'s classes.
 * @throws FormatError when a concept's class is not a training caption or an entry is malformed
 */
export function loadHeldoutConcepts(train: WorldDataset, dir: string = WORLD_DATA_DIR): HeldoutConcept[] {
  const path = join(dir, "heldout.json");
  const meta = readJson(path);
  const { tile } = sheetReader(dir, meta, path);
  const raw = meta["concepts"];
  if (!Array.isArray(raw)) throw new FormatError(`world dataset: ${path}: concepts must be an array`);
  const byCaption = new Map(train.classes.map((c, i) => [c.caption, i]));
  return raw.map((c: unknown, i: number) => {
    const ok =
      isRecord(c) &&
      ["name", "emoji", "unified", "class", "token"].every((k) => typeof c[k] === "string") &&
      Array.isArray(c["prompts"]) &&
      c["prompts"].every((p) => typeof p === "string") &&
      Array.isArray(c["images"]);
    const r = need(ok, c as Record<string, unknown>, path, `concepts[${i}] is malformed`);
    const cls = r["class"] as string;
    const classIndex = need(
      byCaption.has(cls),
      byCaption.get(cls)!,
      path,
      `concept "${String(r["name"])}" has class "${cls}", not a training caption`,
    );
    const images: Float32Array[] = [];
    const vendors: Vendor[] = [];
    for (const im of r["images"] as unknown[]) {
      const okIm = isRecord(im) && isVendor(im["vendor"]) && typeof im["tile"] === "number";
      const m = need(
        okIm,
        im as { vendor: Vendor; tile: number },
        path,
        `concept "${String(r["name"])}" has a malformed image entry`,
      );
      images.push(tile(m.tile));
      vendors.push(m.vendor);
    }
    return {
      name: r["name"] as string,
      emoji: r["emoji"] as string,
      unified: r["unified"] as string,
      class: cls,
      classIndex,
      token: r["token"] as string,
      prompts: r["prompts"] as string[],
      images,
      vendors,
    };
  });
}

/** The caption lines (training captions under every template), for regularisation features. */
export function loadCaptionLines(dir: string = WORLD_DATA_DIR): string[] {
  return readFileSync(join(dir, "captions.txt"), "utf8")
    .split("\n")
    .filter((l) => l.length > 0);
}

/** Replaces a concept's modifier token in its prompts (e.g. "<new1>" -> "<new2>" for a second concept). */
export function promptsWithToken(concept: HeldoutConcept, token: string): string[] {
  return concept.prompts.map((p) => p.split(concept.token).join(token));
}

/**
 * Deterministic per-class split: for class k with n >= 2 images, image number (k mod n) of the class
 * goes to validation and the rest to training (so both vendors appear in validation, alternating);
 * classes with one image stay in training.
 * @returns image indices into `ds.images`
 */
export function splitTrainValidation(ds: WorldDataset): { train: number[]; validation: number[] } {
  const train: number[] = [];
  const validation: number[] = [];
  ds.classes.forEach((c, k) => {
    const n = c.imageIndices.length;
    c.imageIndices.forEach((idx, j) => (n >= 2 && j === k % n ? validation : train).push(idx));
  });
  return { train: train.sort((a, b) => a - b), validation: validation.sort((a, b) => a - b) };
}

/** Stacks images (each (3, size, size)) into one (N, 3, size, size) buffer in the given order. */
export function stackImages(images: Float32Array[], indices?: number[]): Float32Array {
  const order = indices ?? images.map((_, i) => i);
  if (order.length === 0) return new Float32Array(0);
  const per = images[order[0]!]!.length;
  const out = new Float32Array(order.length * per); // (N, 3, size, size)
  order.forEach((idx, n) => {
    const img = images[idx];
    if (img === undefined || img.length !== per)
      throw new FormatError(`stackImages: image ${idx} is missing or of another size`);
    out.set(img, n * per);
  });
  return out;
}
