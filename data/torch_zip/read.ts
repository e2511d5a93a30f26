// Reading PyTorch checkpoints: sniffing the file kind, and a zip checkpoint's pickle resolved against its storages.
import * as fs from "node:fs";
import { FormatError } from "../../engine/errors.ts";
import type { PyValue, TorchTensor, TorchZipOptions } from "./values.ts";
import { centralDirectory, openOrFail, readEntry } from "./zip.ts";
import { STORAGE_TYPES, decode, unpickle } from "./pickle.ts";

/**
 * What a file holds, from its first bytes: a bare pickle (torch.save before 1.6, pickle.dump), a zip
 * archive (PyTorch's format since 1.6), or neither (null).
 */
export function sniffTorchFile(file: string): "pickle" | "torch-zip" | null {
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(4);
    const n = fs.readSync(fd, b, 0, 4, 0);
    if (n >= 2 && b[0] === 0x80 && b[1]! >= 2 && b[1]! <= 5) return "pickle";
    if (n >= 4 && b.readUInt32LE(0) === 0x04034b50) return "torch-zip";
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether `file` starts like a zip archive (PyTorch's format since 1.6). */
export function isTorchZip(file: string): boolean {
  return sniffTorchFile(file) === "torch-zip";
}

/**
 * Reads a PyTorch zip checkpoint without executing its pickle: the saved object as plain values,
 * with tensors as {@link TorchTensor}. Malformed or hostile files are a FormatError naming the file.
 */
export function readTorchZip(file: string, opts: TorchZipOptions = {}): PyValue {
  const fd = openOrFail(file);
  try {
    const size = fs.fstatSync(fd).size;
    const entries = centralDirectory(fd, size, file);
    const pkl = [...entries.values()].filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (pkl.length !== 1)
      throw new FormatError(`${file}: expected one <archive>/data.pkl in the zip, found ${pkl.length}`);
    const root = pkl[0]!.name.slice(0, -"data.pkl".length);
    const order = entries.get(`${root}byteorder`);
    if (
      order &&
      Buffer.from(readEntry(fd, order, file))
        .toString("latin1")
        .trim() !== "little"
    )
      throw new FormatError(`${file}: big-endian checkpoints are not read`);
    const storages = new Map<string, { dtype: TorchTensor["dtype"]; values: Float32Array | Float64Array }>();
    const budget = { elements: opts.maxElements ?? 2 ** 31 };
    const storage = (key: string, type: string, numel: number) => {
      const st = STORAGE_TYPES[type];
      if (!st)
        throw new FormatError(
          `${file}: storage type torch.${type} is not read (float32, float16, bfloat16 and float64 are)`,
        );
      if (!Number.isInteger(numel) || numel < 0)
        throw new FormatError(`${file}: storage ${key} declares ${numel} elements`);
      const hit = storages.get(key);
      if (hit) return hit;
      const e = entries.get(`${root}data/${key}`);
      if (!e) throw new FormatError(`${file}: storage ${key} has no entry ${root}data/${key}`);
      if (numel * st.bytes > e.size)
        throw new FormatError(
          `${file}: storage ${key} declares ${numel} ${st.dtype} elements (${numel * st.bytes} bytes) but its entry holds ${e.size} bytes`,
        );
      const s = {
        dtype: st.dtype,
        values: decode(readEntry(fd, { ...e, size: numel * st.bytes }, file), st.dtype, numel),
      };
      storages.set(key, s);
      return s;
    };
    return unpickle(readEntry(fd, pkl[0]!, file), file, storage, budget, opts.maxDepth ?? 256);
  } finally {
    fs.closeSync(fd);
  }
}
