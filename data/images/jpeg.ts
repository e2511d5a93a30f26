// JPEG decoding: the marker list checked here (frame header limits), the pixels by jpeg-js.
import jpeg from "jpeg-js";
import { DEFAULT_MAX_PIXELS, checkLimits, errText, fail } from "./image.ts";
import type { DecodeOptions, Image } from "./image.ts";

export function decodeJpegChecked(bytes: Uint8Array, name: string, opts: DecodeOptions): Image {
  const n = bytes.length;
  let pos = 2;
  let sof = -1;
  let width = 0;
  let height = 0;
  let comps = 0;
  while (sof < 0) {
    if (pos + 2 > n) fail(name, `truncated JPEG: file ends at byte ${n} before a frame header`);
    if (bytes[pos] !== 0xff)
      fail(name, `corrupt JPEG: expected a marker at byte ${pos}, got 0x${bytes[pos]!.toString(16)}`);
    const marker = bytes[pos + 1]!;
    if (marker === 0xff) {
      pos += 1;
      continue;
    } // fill byte
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xd9) fail(name, "corrupt JPEG: end-of-image marker before any frame header");
    if (marker === 0xda) fail(name, "corrupt JPEG: scan data before any frame header");
    if (pos + 4 > n) fail(name, `truncated JPEG: file ends inside the marker at byte ${pos}`);
    const segLen = (bytes[pos + 2]! << 8) | bytes[pos + 3]!;
    if (segLen < 2) fail(name, `corrupt JPEG: marker 0x${marker.toString(16)} at byte ${pos} has length ${segLen}`);
    if (pos + 2 + segLen > n)
      fail(
        name,
        `truncated JPEG: marker 0x${marker.toString(16)} at byte ${pos} needs ${segLen + 2} bytes, only ${n - pos} remain`,
      );
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (segLen < 8) fail(name, `corrupt JPEG: frame header of ${segLen} bytes`);
      if (marker > 0xc2)
        fail(name, `unsupported JPEG coding process (SOF${marker - 0xc0}: lossless, hierarchical or arithmetic-coded)`);
      const precision = bytes[pos + 4]!;
      height = (bytes[pos + 5]! << 8) | bytes[pos + 6]!;
      width = (bytes[pos + 7]! << 8) | bytes[pos + 8]!;
      comps = bytes[pos + 9]!;
      if (precision !== 8) fail(name, `unsupported JPEG sample precision ${precision} bits`);
      if (height === 0) fail(name, "unsupported JPEG: height deferred to a DNL marker");
      if (comps !== 1 && comps !== 3 && comps !== 4) fail(name, `unsupported JPEG with ${comps} components`);
      checkLimits(name, "JPEG", width, height, opts);
      sof = pos;
    }
    pos += 2 + segLen;
  }
  // the end-of-image marker cannot occur inside entropy-coded data (0xff is stuffed there), so its absence means truncation
  let eoi = false;
  for (let i = n - 2; i >= pos; i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) {
      eoi = true;
      break;
    }
  }
  if (!eoi) fail(name, `truncated JPEG: no end-of-image marker after the frame header (${n} bytes)`);

  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const maxMemoryMB = opts.maxMemoryMB ?? Math.max(512, Math.ceil((maxPixels * 20) / (1024 * 1024)));
  let out: { width: number; height: number; data: Uint8Array };
  try {
    out = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      tolerantDecoding: true,
      maxResolutionInMP: maxPixels / 1e6,
      maxMemoryUsageInMB: maxMemoryMB,
    });
  } catch (e) {
    fail(name, `corrupt or unsupported JPEG (${errText(e)})`);
  }
  if (out.width !== width || out.height !== height || out.data.length !== width * height * 3) {
    fail(
      name,
      `corrupt JPEG: decoder returned ${out.width}x${out.height} (${out.data.length} bytes) for a ${width}x${height} header`,
    );
  }
  const pixels = width * height;
  if (comps === 1) {
    const data = new Float32Array(pixels);
    for (let i = 0; i < pixels; i++) data[i] = out.data[i * 3]! / 255;
    return { width, height, channels: 1, data };
  }
  const data = new Float32Array(pixels * 3);
  for (let i = 0; i < data.length; i++) data[i] = out.data[i]! / 255;
  return { width, height, channels: 3, data };
}
