// bounded work on hostile or oversized inputs: image sizes are checked against a limit before decoding
// (measured in a child process: time and peak resident memory), safetensors headers are bounded in
// tensor count before parsing, and a tensor too large to allocate is a named error with the file name
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { crc32, deflateSync } from "node:zlib";
import jpeg from "jpeg-js";
import { FormatError } from "../../engine/errors.ts";
import { DEFAULT_MAX_PIXELS, decodeImage } from "../../data/images.ts";
import { MAX_TENSORS, readSafetensors } from "../../data/safetensors.ts";

const CHILD = fileURLToPath(new URL("./children/decode.ts", import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cd-limits-"));
/** Peak resident memory a refused decode may add to the child's own start-up (KiB), and its whole bound. */
const EXTRA_KB = 16 * 1024,
  TOTAL_KB = 200 * 1024;

function pngChunk(type: string, body: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  const tb = Buffer.concat([Buffer.from(type, "latin1"), Buffer.from(body)]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(tb) >>> 0);
  return Buffer.concat([len, tb, crc]);
}

/** A valid 8-bit gray PNG of w x h (all black, so it compresses to almost nothing). */
function grayPng(w: number, h: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 0;
  const raw = Buffer.alloc(h * (1 + w));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", deflateSync(raw)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

/** A 16x16 JPEG whose frame header is patched to claim w x h (about 600 bytes). */
function lyingJpeg(w: number, h: number): Buffer {
  const b = Buffer.from(jpeg.encode({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 4).fill(90) }, 50).data);
  let p = 2;
  while (!(b[p] === 0xff && b[p + 1] === 0xc0)) p += 2 + ((b[p + 2]! << 8) | b[p + 3]!);
  b.writeUInt16BE(h, p + 5);
  b.writeUInt16BE(w, p + 7);
  return b;
}

function decodeInChild(file: string): { outcome: string; ms: number; maxRSSKB: number; startRSSKB: number } {
  const r = spawnSync(process.execPath, ["--import", "tsx", CHILD, file], {
    env: { ...process.env, CDIFF_TEST_CHILD: "decode" },
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as {
    outcome: string;
    ms: number;
    maxRSSKB: number;
    startRSSKB: number;
  };
}

test("an 8192x8192 PNG (valid, ~70 KB) and a ~600-byte JPEG claiming 8192x8192 are refused before decoding, fast and in bounded memory", () => {
  const files = [
    [path.join(dir, "big.png"), grayPng(8192, 8192), "PNG"],
    [path.join(dir, "lying.jpg"), lyingJpeg(8192, 8192), "JPEG"],
  ] as const;
  for (const [file, bytes, kind] of files) {
    fs.writeFileSync(file, bytes);
    const r = decodeInChild(file);
    assert.ok(
      r.outcome.startsWith(
        `FormatError: images: ${file}: ${kind} header declares 8192x8192 (67.1 megapixels), above the limit`,
      ),
      r.outcome,
    );
    assert.match(r.outcome, /--max-image-megapixels/);
    assert.ok(r.ms < 500, `${kind}: ${r.ms.toFixed(1)} ms`);
    assert.ok(
      r.maxRSSKB - r.startRSSKB < EXTRA_KB && r.maxRSSKB < TOTAL_KB,
      `${kind} (${bytes.length} bytes): maxRSS ${(r.maxRSSKB / 1024).toFixed(1)} MiB, ${((r.maxRSSKB - r.startRSSKB) / 1024).toFixed(1)} MiB over the start`,
    );
  }
  assert.ok(fs.statSync(files[1][0]).size < 1000);
});

test("the default limit is 25 megapixels and can be raised", () => {
  assert.is(DEFAULT_MAX_PIXELS, 25_000_000);
  const png = grayPng(300, 200);
  assert.throws(
    () => decodeImage(png, "p.png", { maxPixels: 59_999 }),
    /300x200 .* above the limit of .* 0\.1 megapixels/,
  );
  assert.is(decodeImage(png, "p.png", { maxPixels: 60_000 }).width, 300);
});

function safetensorsFile(file: string, header: object | string, dataBytes: number): void {
  const h = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h]));
  fs.truncateSync(file, 8 + h.length + dataBytes); // sparse: the data section takes no disk
}

test("a safetensors header declaring more tensors than the limit is refused before it is parsed", () => {
  const n = MAX_TENSORS + 1;
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
  const file = path.join(dir, "many.safetensors");
  safetensorsFile(file, `{${parts.join(",")}}`, 0);
  const t0 = performance.now();
  assert.throws(
    () => readSafetensors(file),
    (e: Error) =>
      e instanceof FormatError &&
      e.message === `safetensors: ${file}: header declares ${n} tensors, more than the limit of ${MAX_TENSORS}`,
  );
  assert.ok(performance.now() - t0 < 1000, `${(performance.now() - t0).toFixed(0)} ms`);
});

test("a sparse file declaring a 40 GB tensor gets a FormatError naming the file, the tensor and the size", () => {
  const file = path.join(dir, "huge.safetensors");
  const n = 10_000_000_000;
  safetensorsFile(file, { "up.weight": { dtype: "F32", shape: [100_000, 100_000], data_offsets: [0, 4 * n] } }, 4 * n);
  assert.throws(
    () => readSafetensors(file),
    (e: Error) =>
      e instanceof FormatError &&
      e.message.startsWith(`safetensors: ${file}: tensor "up.weight" [100000, 100000] has ${n} elements (40.0 GB)`),
  );
  fs.rmSync(file);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test.run();
