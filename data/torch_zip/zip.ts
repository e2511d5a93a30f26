// The zip layer of PyTorch checkpoints: the central directory read and validated (zip64 included), entries
// read by offset; and writing a zip of stored entries.
import * as fs from "node:fs";
import { FormatError } from "../../engine/errors.ts";

interface Entry {
  name: string;
  offset: number; // data start
  size: number;
}

export function openOrFail(file: string): number {
  try {
    return fs.openSync(file, "r");
  } catch (e) {
    throw new FormatError(`${file}: cannot open (${(e as Error).message})`);
  }
}

function readAt(fd: number, pos: number, n: number, file: string): Buffer {
  const b = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    const r = fs.readSync(fd, b, got, n - got, pos + got);
    if (r === 0) throw new FormatError(`${file}: truncated (wanted ${n} bytes at ${pos})`);
    got += r;
  }
  return b;
}

export function readEntry(fd: number, e: Entry, file: string): Uint8Array {
  return readAt(fd, e.offset, e.size, file);
}

/** The zip's entries by name, validated: stored (not compressed), in bounds, not overlapping, safe names. */
export function centralDirectory(fd: number, size: number, file: string): Map<string, Entry> {
  if (size < 22) throw new FormatError(`${file}: not a zip archive (${size} bytes)`);
  const tailLen = Math.min(size, 22 + 65535);
  const tail = readAt(fd, size - tailLen, tailLen, file);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--)
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd < 0) throw new FormatError(`${file}: no zip end-of-central-directory record (truncated or not a zip)`);
  let count = tail.readUInt16LE(eocd + 10),
    cdSize = tail.readUInt32LE(eocd + 12),
    cdOff = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOff === 0xffffffff) {
    // zip64: the locator sits just before the end record
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50)
      throw new FormatError(`${file}: zip64 end record locator missing`);
    const recOff = Number(tail.readBigUInt64LE(loc + 8));
    if (recOff + 56 > size) throw new FormatError(`${file}: zip64 end record out of bounds`);
    const rec = readAt(fd, recOff, 56, file);
    if (rec.readUInt32LE(0) !== 0x06064b50) throw new FormatError(`${file}: zip64 end record missing`);
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdOff = Number(rec.readBigUInt64LE(48));
  }
  if (cdOff + cdSize > size || count * 46 > cdSize)
    throw new FormatError(
      `${file}: central directory (${count} entries, ${cdSize} bytes at ${cdOff}) does not fit the ${size}-byte file`,
    );
  const cd = readAt(fd, cdOff, cdSize, file);
  const out = new Map<string, Entry>();
  const spans: [number, number, string][] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50)
      throw new FormatError(`${file}: central directory entry ${i} is damaged`);
    const method = cd.readUInt16LE(p + 10);
    let comp = cd.readUInt32LE(p + 20),
      raw = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28),
      extraLen = cd.readUInt16LE(p + 30),
      commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length)
      throw new FormatError(`${file}: central directory entry ${i} overruns the directory`);
    const name = cd.toString("utf8", p + 46, p + 46 + nameLen);
    // zip64 extra field: the 64-bit values of the fields set to 0xffffffff, in order
    for (let x = p + 46 + nameLen; x + 4 <= p + 46 + nameLen + extraLen;) {
      const id = cd.readUInt16LE(x),
        len = cd.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        const next = () => {
          if (q + 8 > x + 4 + len) throw new FormatError(`${file}: zip64 field of ${name} is short`);
          const v = Number(cd.readBigUInt64LE(q));
          q += 8;
          return v;
        };
        if (raw === 0xffffffff) raw = next();
        if (comp === 0xffffffff) comp = next();
        if (local === 0xffffffff) local = next();
      }
      x += 4 + len;
    }
    p += 46 + nameLen + extraLen + commentLen;
    if (name.split("/").some((s) => s === "..") || name.startsWith("/") || name.includes("\\") || name.includes("\0"))
      throw new FormatError(`${file}: unsafe entry name "${name}"`);
    if (method !== 0)
      throw new FormatError(
        `${file}: entry ${name} is compressed (method ${method}); PyTorch stores entries uncompressed`,
      );
    if (comp !== raw) throw new FormatError(`${file}: entry ${name} has compressed size ${comp} but size ${raw}`);
    if (local + 30 > cdOff) throw new FormatError(`${file}: entry ${name} starts outside the archive`);
    const lh = readAt(fd, local, 30, file);
    if (lh.readUInt32LE(0) !== 0x04034b50) throw new FormatError(`${file}: entry ${name} has no local header`);
    const start = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
    if (start + raw > cdOff)
      throw new FormatError(`${file}: entry ${name} (${raw} bytes at ${start}) runs past the archive`);
    if (out.has(name)) throw new FormatError(`${file}: entry ${name} appears twice`);
    out.set(name, { name, offset: start, size: raw });
    spans.push([local, start + raw, name]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++)
    if (spans[i]![0] < spans[i - 1]![1])
      throw new FormatError(`${file}: entries ${spans[i - 1]![2]} and ${spans[i]![2]} overlap`);
  return out;
}

/** A zip of stored entries (CRC-32 filled in), data aligned to 64 bytes as PyTorch aligns it. */
export function zipStored(entries: readonly (readonly [string, Uint8Array])[]): Uint8Array {
  const parts: Uint8Array[] = [],
    central: Uint8Array[] = [];
  let off = 0;
  for (const [name, data] of entries) {
    const nb = Buffer.from(name, "utf8");
    const pad = (64 - ((off + 30 + nb.length + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0xcafe, 0);
    extra.writeUInt16LE(pad, 2);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(nb.length, 26);
    lh.writeUInt16LE(extra.length, 28);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(nb.length, 28);
    ch.writeUInt32LE(off, 42);
    central.push(ch, nb);
    parts.push(lh, nb, extra, data);
    off += 30 + nb.length + extra.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(off, 16);
  return Buffer.concat([...parts, cd, end]);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 255]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
