// reads test/fixtures/torch_linspace/golden.json: torch.linspace float32 values per CPU kernel (see its "source")
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";

export interface LinspaceCase {
  name: string;
  start: number;
  end: number;
  steps: number;
  square: boolean;
  float32_le_base64: string;
}

export const TORCH_LINSPACE = JSON.parse(
  fs.readFileSync(fileURLToPath(new URL("../../fixtures/torch_linspace/golden.json", import.meta.url)), "utf8"),
) as {
  source: string;
  kernels: Record<"avx2" | "avx512" | "default", LinspaceCase[]>;
};

/** The float32 values of a case. */
export function decodeValues(c: LinspaceCase): Float32Array {
  const b = Buffer.from(c.float32_le_base64, "base64");
  const out = new Float32Array(b.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
  return out;
}

/** The values of the named case of a kernel. */
export function torchLinspaceGolden(kernel: "avx2" | "avx512" | "default", name: string): Float32Array {
  const c = TORCH_LINSPACE.kernels[kernel].find((x) => x.name === name);
  if (!c) throw new Error(`torch_linspace golden: no case ${name} for ${kernel}`);
  return decodeValues(c);
}
