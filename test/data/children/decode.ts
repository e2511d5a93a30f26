// child process of limits.test.ts: decodes one image file and reports the outcome, the time taken and
// the peak resident memory of this process (process.resourceUsage().maxRSS)
import { readImage } from "../../../data/images.ts";

if (process.env.CDIFF_TEST_CHILD === "decode") {
  const [file, maxPixels] = process.argv.slice(2) as [string, string | undefined];
  const before = process.resourceUsage().maxRSS;
  const t0 = performance.now();
  let outcome: string;
  try {
    const img = readImage(file, maxPixels ? { maxPixels: Number(maxPixels) } : {});
    outcome = `decoded ${img.width}x${img.height}`;
  } catch (e) {
    outcome = `${(e as Error).name}: ${(e as Error).message}`;
  }
  const ms = performance.now() - t0;
  process.stdout.write(
    JSON.stringify({ outcome, ms, maxRSSKB: process.resourceUsage().maxRSS, startRSSKB: before }) + "\n",
  );
}
